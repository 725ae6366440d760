// walship: the command line, a thin front over the library the VFS uses.
//
//   walship restore [-o PATH] [--if-db-not-exists] [--if-replica-exists]
//                   [--generation G] [--txid N] [--timestamp RFC3339] URL
//   walship generations [--json] URL
//
// URL and credentials follow the same rules as the VFS (README.md). Exit codes: 0 success (or
// nothing to do under an --if-* flag), 1 failure, 2 usage error, 3 the replica has no data.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "format.h"
#include "restore.h"
#include "walship/s3/store.h"

using namespace walship;

namespace {

constexpr int kOk = 0, kFail = 1, kUsage = 2, kNoData = 3;

void usage(FILE* out) {
    fprintf(out,
            "usage: walship restore [-o PATH] [--if-db-not-exists] [--if-replica-exists]\n"
            "                       [--generation G] [--txid N] [--timestamp RFC3339] URL\n"
            "       walship generations [--json] URL\n"
            "\n"
            "URL is s3://bucket/prefix[?endpoint=...&region=...&force_path_style=true] or file:///dir.\n"
            "Without URL, WALSHIP_REPLICA_URL is used; without -o, WALSHIP_DB.\n");
}

std::string iso_time(int64_t ms) {
    if (ms <= 0) return "-";
    time_t t = time_t(ms / 1000);
    struct tm tm {};
    gmtime_r(&t, &tm);
    char buf[40];
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    return std::string(buf) + "." + std::to_string(1000 + ms % 1000).substr(1) + "Z";
}

// Parses RFC 3339 ("2026-11-25T06:37:11Z", "...T06:37:11.5+01:00") into ms since the epoch.
bool parse_rfc3339(const std::string& s, int64_t* ms) {
    struct tm tm {};
    const char* rest = strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
    if (!rest) return false;
    int64_t frac = 0;
    if (*rest == '.') {
        int digits = 0;
        rest++;
        while (*rest >= '0' && *rest <= '9') {
            if (digits < 3) frac = frac * 10 + (*rest - '0'), digits++;
            rest++;
        }
        while (digits++ < 3) frac *= 10;
    }
    int64_t offset = 0;
    if (*rest == 'Z' || *rest == 'z') rest++;
    else if (*rest == '+' || *rest == '-') {
        int h = 0, m = 0;
        if (sscanf(rest + 1, "%2d:%2d", &h, &m) != 2) return false;
        offset = (h * 60 + m) * 60 * (*rest == '+' ? 1 : -1);
        rest += 6;
    } else return false;
    if (*rest) return false;
    *ms = (int64_t(timegm(&tm)) - offset) * 1000 + frac;
    return true;
}

bool exists_nonempty(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && st.st_size > 0;
}

int cmd_restore(std::vector<std::string> args) {
    RestoreOptions opt;
    bool if_db_not_exists = false, if_replica_exists = false;
    std::string url;
    for (size_t i = 0; i < args.size(); i++) {
        const std::string& a = args[i];
        auto value = [&](const char* name) -> std::string {
            if (i + 1 >= args.size()) {
                fprintf(stderr, "walship restore: %s needs a value\n", name);
                exit(kUsage);
            }
            return args[++i];
        };
        if (a == "-o" || a == "--output") opt.output = value("-o");
        else if (a == "--if-db-not-exists") if_db_not_exists = true;
        else if (a == "--if-replica-exists") if_replica_exists = true;
        else if (a == "--generation") {
            std::string g = value("--generation");
            auto id = parse_generation(g);
            if (!id) {
                fprintf(stderr, "walship restore: invalid generation '%s' (16 hex digits)\n", g.c_str());
                return kUsage;
            }
            opt.generation = *id;
        } else if (a == "--txid") {
            std::string t = value("--txid");
            char* end = nullptr;
            unsigned long long v = strtoull(t.c_str(), &end, 10);
            if (t.empty() || *end) {
                fprintf(stderr, "walship restore: invalid txid '%s'\n", t.c_str());
                return kUsage;
            }
            opt.txid = v;
        } else if (a == "--timestamp") {
            std::string t = value("--timestamp");
            int64_t ms;
            if (!parse_rfc3339(t, &ms)) {
                fprintf(stderr, "walship restore: invalid timestamp '%s' (RFC 3339, e.g. 2026-01-02T15:04:05Z)\n", t.c_str());
                return kUsage;
            }
            opt.timestamp_ms = ms;
        } else if (!a.empty() && a[0] == '-') {
            fprintf(stderr, "walship restore: unknown option %s\n", a.c_str());
            return kUsage;
        } else if (url.empty()) url = a;
        else {
            fprintf(stderr, "walship restore: unexpected argument %s\n", a.c_str());
            return kUsage;
        }
    }
    if (url.empty() && getenv("WALSHIP_REPLICA_URL")) url = getenv("WALSHIP_REPLICA_URL");
    if (opt.output.empty() && getenv("WALSHIP_DB")) opt.output = getenv("WALSHIP_DB");
    if (url.empty()) {
        fprintf(stderr, "walship restore: no replica URL (give one or set WALSHIP_REPLICA_URL)\n");
        return kUsage;
    }
    if (opt.output.empty()) {
        fprintf(stderr, "walship restore: no output path (use -o PATH or set WALSHIP_DB)\n");
        return kUsage;
    }
    if (if_db_not_exists && exists_nonempty(opt.output)) {
        printf("database %s already exists, skipping restore\n", opt.output.c_str());
        return kOk;
    }
    if (!if_db_not_exists && exists_nonempty(opt.output)) {
        fprintf(stderr, "walship restore: %s already exists (remove it, or use --if-db-not-exists)\n", opt.output.c_str());
        return kFail;
    }
    auto store = s3::open_store(url);
    if (!store.ok()) {
        fprintf(stderr, "walship restore: %s\n", store.error().str().c_str());
        return kFail;
    }
    if (isatty(STDERR_FILENO)) {
        opt.progress = [](uint64_t done, uint64_t total) {
            fprintf(stderr, "\rrestoring: %llu/%llu objects", (unsigned long long)done, (unsigned long long)total);
            if (done == total) fprintf(stderr, "\n");
        };
    }
    auto r = restore(*store.value(), opt);
    if (!r.ok()) {
        if (r.error().kind == s3::ErrorKind::NotFound && if_replica_exists && !opt.txid && !opt.timestamp_ms && !opt.generation) {
            printf("no replica data in %s, skipping restore\n", store.value()->describe().c_str());
            return kOk;
        }
        fprintf(stderr, "walship restore: %s\n", r.error().str().c_str());
        return r.error().kind == s3::ErrorKind::NotFound ? kNoData : kFail;
    }
    printf("restored %s from %s: generation %s, txid %llu (%s), %u pages of %u bytes, %llu objects, %llu bytes downloaded%s\n",
           opt.output.c_str(), store.value()->describe().c_str(), generation_name(r->generation).c_str(),
           (unsigned long long)r->txid, iso_time(r->last_ts_ms).c_str(), r->pages, r->page_size,
           (unsigned long long)r->objects, (unsigned long long)r->bytes, r->checksum_verified ? ", database checksum verified" : "");
    return kOk;
}

int cmd_generations(std::vector<std::string> args) {
    bool json = false;
    std::string url;
    for (auto& a : args) {
        if (a == "--json") json = true;
        else if (!a.empty() && a[0] == '-') {
            fprintf(stderr, "walship generations: unknown option %s\n", a.c_str());
            return kUsage;
        } else url = a;
    }
    if (url.empty() && getenv("WALSHIP_REPLICA_URL")) url = getenv("WALSHIP_REPLICA_URL");
    if (url.empty()) {
        fprintf(stderr, "walship generations: no replica URL (give one or set WALSHIP_REPLICA_URL)\n");
        return kUsage;
    }
    auto store = s3::open_store(url);
    if (!store.ok()) {
        fprintf(stderr, "walship generations: %s\n", store.error().str().c_str());
        return kFail;
    }
    auto gens = list_generations(*store.value());
    if (!gens.ok()) {
        fprintf(stderr, "walship generations: %s\n", gens.error().str().c_str());
        return kFail;
    }
    if (json) {
        printf("[");
        for (size_t i = 0; i < gens->size(); i++) {
            auto& g = gens.value()[i];
            printf("%s{\"generation\":\"%s\",\"created\":\"%s\",\"snapshots\":%llu,\"segments\":%llu,\"first_txid\":%llu,\"last_txid\":%llu,\"bytes\":%llu,\"complete\":%s}",
                   i ? "," : "", generation_name(g.id).c_str(), iso_time(g.created_ms).c_str(), (unsigned long long)g.snapshots,
                   (unsigned long long)g.segments, (unsigned long long)g.first_txid, (unsigned long long)g.last_txid,
                   (unsigned long long)g.bytes, g.complete ? "true" : "false");
        }
        printf("]\n");
        return kOk;
    }
    printf("%-16s  %-24s  %9s  %9s  %10s  %10s  %12s\n", "generation", "created", "snapshots", "segments", "first_txid", "last_txid", "bytes");
    for (auto& g : gens.value())
        printf("%-16s  %-24s  %9llu  %9llu  %10llu  %10llu  %12llu%s\n", generation_name(g.id).c_str(), iso_time(g.created_ms).c_str(),
               (unsigned long long)g.snapshots, (unsigned long long)g.segments, (unsigned long long)g.first_txid,
               (unsigned long long)g.last_txid, (unsigned long long)g.bytes, g.complete ? "" : "  (no snapshot yet)");
    return kOk;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        usage(stderr);
        return kUsage;
    }
    std::string cmd = argv[1];
    std::vector<std::string> args(argv + 2, argv + argc);
    if (cmd == "restore") return cmd_restore(args);
    if (cmd == "generations") return cmd_generations(args);
    if (cmd == "-h" || cmd == "--help" || cmd == "help") {
        usage(stdout);
        return kOk;
    }
    fprintf(stderr, "walship: unknown command '%s'\n", cmd.c_str());
    usage(stderr);
    return kUsage;
}

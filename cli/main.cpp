// walship: the command line, a thin front over the library the VFS uses.
//
//   walship restore [-o PATH] [--if-db-not-exists] [--if-replica-exists]
//                   [--generation G] [--txid N] [--timestamp RFC3339] URL
//   walship generations [--json] URL
//   walship snapshots [--json] URL
//   walship status [--json] [--db PATH] URL
//   walship verify [--sample N] [--json] URL
//   walship snapshot [--db PATH] [URL]
//
// URL and credentials follow the same rules as the VFS (README.md). Exit codes: 0 success (or
// nothing to do under an --if-* flag), 1 failure, 2 usage error, 3 the replica has no data.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <string>
#include <set>
#include <tuple>
#include <vector>

#include <sqlite3.h>

#include <fstream>
#include <random>

#include "fileio.h"
#include "format.h"
#include "restore.h"
#include "retention.h"
#include "sidefile.h"
#include "walship.h"
#include "walship_uri.h"
#include "wal.h"
#include "walship/s3/store.h"

using namespace walship;

namespace {

constexpr int kOk = 0, kFail = 1, kUsage = 2, kNoData = 3;

// Files and directories an interrupted command removes (Ctrl-C, SIGTERM, SIGHUP): a restore's
// temporary file is as large as the database. Fixed buffers: the handler only calls unlink/rmdir.
struct Leftovers {
    char files[6][4096];
    char dir[4096];
    volatile sig_atomic_t n = 0, armed = 0;
};
Leftovers leftovers;

void on_interrupt(int sig) {
    if (leftovers.armed) {
        for (int i = 0; i < leftovers.n; i++) ::unlink(leftovers.files[i]);
        if (leftovers.dir[0]) ::rmdir(leftovers.dir);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

// Removed if the command is interrupted from now on (paths that do not fit are not registered).
void remove_if_interrupted(const std::vector<std::string>& files, const std::string& dir = "") {
    leftovers.armed = 0;
    int n = 0;
    for (auto& f : files)
        if (f.size() < sizeof leftovers.files[0] && n < 6) snprintf(leftovers.files[n++], sizeof leftovers.files[0], "%s", f.c_str());
    leftovers.n = n;
    snprintf(leftovers.dir, sizeof leftovers.dir, "%s", dir.size() < sizeof leftovers.dir ? dir.c_str() : "");
    leftovers.armed = 1;
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) signal(sig, on_interrupt);
}

void usage(FILE* out) {
    fprintf(out,
            "usage: walship restore [-o PATH] [--if-db-not-exists] [--if-replica-exists]\n"
            "                       [--generation G] [--txid N] [--timestamp RFC3339] URL\n"
            "       walship generations [--json] URL\n"
            "       walship snapshots [--json] URL\n"
            "       walship status [--json] [--db PATH] URL\n"
            "       walship verify [--sample N] [--json] URL\n"
            "       walship snapshot [--db PATH] [URL]\n"
            "\n"
            "URL is s3://bucket/prefix[?endpoint=...&region=...&force_path_style=true] or file:///dir.\n"
            "Without URL, WALSHIP_REPLICA_URL is used; without -o, WALSHIP_DB.\n");
}

std::string iso_time(int64_t ms) { return ms <= 0 ? "-" : utc_time(ms); }

// A time as a JSON value: a quoted ISO time, or null when there is none.
std::string json_time(int64_t ms) { return ms <= 0 ? "null" : "\"" + iso_time(ms) + "\""; }

// Parses RFC 3339 ("2026-11-25T06:37:11Z", "...t06:37:11.5+01:00") into ms since the epoch;
// every field is checked (a 30 February or a +99:99 offset is refused, not normalised).
bool parse_rfc3339(const std::string& s, int64_t* ms) {
    size_t pos = 0;
    auto number = [&](size_t digits, int lo, int hi, int* out) {
        if (pos + digits > s.size()) return false;
        int v = 0;
        for (size_t k = 0; k < digits; k++) {
            char c = s[pos + k];
            if (c < '0' || c > '9') return false;
            v = v * 10 + (c - '0');
        }
        pos += digits;
        *out = v;
        return v >= lo && v <= hi;
    };
    auto literal = [&](const char* any) {
        if (pos >= s.size() || !strchr(any, s[pos])) return false;
        pos++;
        return true;
    };
    int y, mo, d, h, mi, sec;
    if (!number(4, 1970, 9999, &y) || !literal("-") || !number(2, 1, 12, &mo) || !literal("-") || !number(2, 1, 31, &d) ||
        !literal("Tt") || !number(2, 0, 23, &h) || !literal(":") || !number(2, 0, 59, &mi) || !literal(":") || !number(2, 0, 60, &sec))
        return false;
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > days[mo - 1] + (mo == 2 && leap)) return false;
    int64_t frac = 0;
    if (pos < s.size() && s[pos] == '.') {
        pos++;
        int digits = 0;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
            if (digits < 3) frac = frac * 10 + (s[pos] - '0');
            digits++;
            pos++;
        }
        if (digits == 0) return false;
        for (; digits < 3; digits++) frac *= 10;
    }
    int64_t offset = 0;
    if (literal("Zz")) {
    } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
        int sign = s[pos++] == '+' ? 1 : -1, oh, om;
        if (!number(2, 0, 23, &oh) || !literal(":") || !number(2, 0, 59, &om)) return false;
        offset = sign * (oh * 60 + om) * 60;
    } else {
        return false;
    }
    if (pos != s.size()) return false;
    struct tm tm {};
    tm.tm_year = y - 1900, tm.tm_mon = mo - 1, tm.tm_mday = d, tm.tm_hour = h, tm.tm_min = mi, tm.tm_sec = sec;
    *ms = (int64_t(timegm(&tm)) - offset) * 1000 + frac;
    return true;
}

// A non-negative decimal integer that fits in 64 bits, nothing else.
bool parse_u64(const std::string& t, uint64_t* v) {
    if (t.empty() || t.size() > 20 || t.find_first_not_of("0123456789") != std::string::npos) return false;
    errno = 0;
    unsigned long long x = strtoull(t.c_str(), nullptr, 10);
    if (errno == ERANGE) return false;
    *v = x;
    return true;
}

// " (the directory D does not exist)" for a file:// location whose directory is missing (a typo
// reads as "no data" there: a directory store has no bucket to be missing), else "".
std::string missing_directory(const s3::Store& store) {
    const std::string d = store.describe();
    struct stat st {};
    if (d.compare(0, 7, "file://") != 0 || ::stat(d.c_str() + 7, &st) == 0) return "";
    return " (the directory " + d.substr(7) + " does not exist)";
}

// A request that failed at the store says which store: its answer alone ("HTTP 404 NoSuchBucket",
// "timeout") does not name the bucket or the endpoint.
std::string at_store(const s3::Store& store, const s3::Error& e) {
    using s3::ErrorKind;
    const bool request = e.kind == ErrorKind::Network || e.kind == ErrorKind::Timeout || e.kind == ErrorKind::Server ||
                         e.kind == ErrorKind::Throttled || e.kind == ErrorKind::AccessDenied || e.kind == ErrorKind::BadRequest ||
                         e.http_status != 0;
    std::string msg = e.str();
    if (msg.rfind("restore: ", 0) == 0) msg.erase(0, 9);
    return request ? store.describe() + ": " + msg : msg;
}

int cmd_restore(std::vector<std::string> args) {
    RestoreOptions opt;
    bool if_db_not_exists = false, if_replica_exists = false;
    std::string url;
    std::set<std::string> given;  // options that take a value
    for (size_t i = 0; i < args.size(); i++) {
        const std::string& a = args[i];
        auto value = [&](const char* name) -> std::string {
            if (i + 1 >= args.size()) {
                fprintf(stderr, "walship restore: %s needs a value\n", name);
                exit(kUsage);
            }
            if (!given.insert(name).second) {
                fprintf(stderr, "walship restore: %s given twice\n", name);
                exit(kUsage);
            }
            return args[++i];
        };
        if (a == "-o" || a == "--output") opt.output = value("-o");
        else if (a == "--if-db-not-exists") if_db_not_exists = true;
        else if (a == "--if-replica-exists") if_replica_exists = true;
        else if (a == "--generation") {
            std::string g = value("--generation");
            std::string lower = g;  // as printed (lowercase), or typed in capitals
            std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return char(std::tolower(c)); });
            auto id = parse_generation(lower);
            if (!id) {
                fprintf(stderr, "walship restore: invalid generation '%s' (16 hex digits)\n", g.c_str());
                return kUsage;
            }
            opt.generation = *id;
        } else if (a == "--txid") {
            std::string t = value("--txid");
            uint64_t v = 0;
            if (!parse_u64(t, &v)) {
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
    if (opt.txid && opt.timestamp_ms) {
        fprintf(stderr, "walship restore: --txid and --timestamp both choose the point to restore; give one\n");
        return kUsage;
    }
    // A symbolic link is followed, as SQLite follows it when it opens the database.
    for (int hops = 0; hops < 40; hops++) {
        char target[4096];
        ssize_t n = readlink(opt.output.c_str(), target, sizeof(target) - 1);
        if (n <= 0) break;
        target[n] = 0;
        const size_t slash = opt.output.rfind('/');
        opt.output = target[0] == '/' || slash == std::string::npos ? std::string(target) : opt.output.substr(0, slash + 1) + target;
    }
    struct stat out_st {};
    if (::stat(opt.output.c_str(), &out_st) == 0 && S_ISDIR(out_st.st_mode)) {
        fprintf(stderr, "walship restore: %s is a directory (give the database file's path)\n", opt.output.c_str());
        return kFail;
    }
    // A FIFO or a device is never replaced (the restore would end with "appeared while restoring").
    if (::stat(opt.output.c_str(), &out_st) == 0 && !S_ISREG(out_st.st_mode)) {
        fprintf(stderr, "walship restore: %s is not a regular file (give the database file's path)\n", opt.output.c_str());
        return kFail;
    }
    if (if_db_not_exists && file_size(opt.output) > 0) {
        printf("database %s already exists, skipping restore\n", opt.output.c_str());
        return kOk;
    }
    if (!if_db_not_exists && file_size(opt.output) > 0) {
        fprintf(stderr, "walship restore: %s already exists (remove it, or use --if-db-not-exists)\n", opt.output.c_str());
        return kFail;
    }
    // A process that has the (empty) database open would go on with its own file and WAL beside
    // the restored one: the database would be neither.
    if (std::string who = SideFile::open_elsewhere(opt.output); !who.empty()) {
        fprintf(stderr, "walship restore: %s is open in another process (%s): stop the application first (with restore=auto it restores the database itself when it starts)\n",
                opt.output.c_str(), who.c_str());
        return kFail;
    }
    opt.refuse_open = true;
    auto store = s3::open_store(url);
    if (!store.ok()) {
        fprintf(stderr, "walship restore: %s\n", store.error().str().c_str());
        return kFail;
    }
    // Side files left by the database that was at this path describe that database (status --db
    // compared the replica with them). They go before the restore, while no database is there,
    // unless a process holds their locks (a walship application restoring it itself, which makes
    // this restore find a database at the end and leave it).
    if (!SideFile::in_use(opt.output)) {
        ::unlink((opt.output + "-walship").c_str());
        ::unlink((opt.output + "-walship-spill").c_str());
    }
    if (isatty(STDERR_FILENO)) {
        opt.progress = [](uint64_t done, uint64_t total) {
            fprintf(stderr, "\rrestoring: %llu/%llu objects", (unsigned long long)done, (unsigned long long)total);
            if (done == total) fprintf(stderr, "\n");
        };
    }
    bool progress_shown = false;
    if (opt.progress) {
        auto show = opt.progress;
        opt.progress = [show, &progress_shown](uint64_t done, uint64_t total) { progress_shown = done != total, show(done, total); };
    }
    remove_if_interrupted({restore_temp_name(opt.output)});
    auto r = restore(*store.value(), opt);
    if (!r.ok() && progress_shown) fprintf(stderr, "\n");  // end the unfinished progress line
    if (!r.ok() && if_db_not_exists && file_size(opt.output) > 0) {
        printf("database %s appeared while restoring, skipping restore (it was left as it is)\n", opt.output.c_str());
        return kOk;
    }
    if (!r.ok()) {
        if (is_no_replica_data(r.error()) && if_replica_exists && !opt.txid && !opt.timestamp_ms && !opt.generation) {
            printf("no replica data in %s%s, skipping restore\n", store.value()->describe().c_str(), missing_directory(*store.value()).c_str());
            return kOk;
        }
        std::string msg = at_store(*store.value(), r.error()) + (is_no_replica_data(r.error()) ? missing_directory(*store.value()) : "");
        fprintf(stderr, "walship restore: %s\n", msg.c_str());
        return is_no_replica_data(r.error()) ? kNoData : kFail;
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
        } else if (url.empty()) {
            url = a;
        } else {
            fprintf(stderr, "walship generations: unexpected argument %s\n", a.c_str());
            return kUsage;
        }
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
        fprintf(stderr, "walship generations: %s\n", at_store(*store.value(), gens.error()).c_str());
        return kFail;
    }
    if (json) {
        printf("[");
        for (size_t i = 0; i < gens->size(); i++) {
            auto& g = gens.value()[i];
            printf("%s{\"generation\":\"%s\",\"created\":%s,\"snapshots\":%llu,\"segments\":%llu,\"first_txid\":%llu,\"last_txid\":%llu,\"bytes\":%llu,\"complete\":%s}",
                   i ? "," : "", generation_name(g.id).c_str(), json_time(g.created_ms).c_str(), (unsigned long long)g.snapshots,
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
               (unsigned long long)g.last_txid, (unsigned long long)g.bytes, g.complete ? "" : g.segments ? "  (no snapshot: damaged, it cannot be restored)" : "  (no snapshot yet)");
    return kOk;
}

// Common parsing for the inspection verbs: flags, then the URL (or WALSHIP_REPLICA_URL).
struct Args {
    bool json = false;
    std::string url, db;
    int sample = 0;
};

bool parse_args(const char* verb, std::vector<std::string> args, Args* a) {
    // Each verb's own options (usage()); another verb's is a usage error, not silently ignored.
    const std::string v = verb;
    auto takes = [&](const std::string& opt) {
        if (opt == "--json") return v != "snapshot";
        if (opt == "--db") return v == "status" || v == "snapshot";
        if (opt == "--sample") return v == "verify";
        return false;
    };
    for (size_t i = 0; i < args.size(); i++) {
        const std::string& x = args[i];
        if ((x == "--json" || x == "--db" || x == "--sample") && !takes(x)) {
            fprintf(stderr, "walship %s: %s is not an option of %s\n", verb, x.c_str(), verb);
            return false;
        }
        if (x == "--json") a->json = true;
        else if (x == "--db" || x == "--sample") {
            if (i + 1 >= args.size()) {
                fprintf(stderr, "walship %s: %s needs a value\n", verb, x.c_str());
                return false;
            }
            if (x == "--db") a->db = args[++i];
            else {
                uint64_t n = 0;
                if (!parse_u64(args[++i], &n) || n > 10000) {
                    fprintf(stderr, "walship %s: invalid --sample '%s' (a count from 0 to 10000)\n", verb, args[i].c_str());
                    return false;
                }
                a->sample = int(n);
            }
        } else if (!x.empty() && x[0] == '-') {
            fprintf(stderr, "walship %s: unknown option %s\n", verb, x.c_str());
            return false;
        } else if (a->url.empty()) {
            a->url = x;
        } else {
            fprintf(stderr, "walship %s: unexpected argument %s\n", verb, x.c_str());
            return false;
        }
    }
    if (a->url.empty() && getenv("WALSHIP_REPLICA_URL")) a->url = getenv("WALSHIP_REPLICA_URL");
    if (a->db.empty() && getenv("WALSHIP_DB")) a->db = getenv("WALSHIP_DB");
    if (a->url.empty()) {
        fprintf(stderr, "walship %s: no replica URL (give one or set WALSHIP_REPLICA_URL)\n", verb);
        return false;
    }
    return true;
}

std::unique_ptr<s3::Store> open_or_report(const char* verb, const std::string& url) {
    auto store = s3::open_store(url);
    if (!store.ok()) {
        fprintf(stderr, "walship %s: %s\n", verb, store.error().str().c_str());
        return nullptr;
    }
    return std::move(store.value());
}

int cmd_snapshots(std::vector<std::string> args) {
    Args a;
    if (!parse_args("snapshots", args, &a)) return kUsage;
    auto store = open_or_report("snapshots", a.url);
    if (!store) return kFail;
    auto listing = store->list("generations/");
    if (!listing.ok()) {
        fprintf(stderr, "walship snapshots: %s\n", at_store(*store, listing.error()).c_str());
        return kFail;
    }
    auto objs = parse_listing(listing->objects);
    // A snapshot in parts: its size is the sum of its objects.
    std::map<std::tuple<uint64_t, uint64_t, uint64_t>, uint64_t> part_bytes;
    for (auto& o : objs)
        if (o.k.part) part_bytes[{o.k.gen, o.k.first, o.k.ts_ms}] += o.size;
    if (a.json) printf("[");
    else printf("%-16s  %10s  %-24s  %12s\n", "generation", "txid", "time", "bytes");
    bool first = true;
    for (auto& o : objs) {
        if (!o.k.snapshot || o.k.part) continue;
        uint64_t size = o.size + part_bytes[{o.k.gen, o.k.first, o.k.ts_ms}];
        if (a.json) {
            printf("%s{\"generation\":\"%s\",\"txid\":%llu,\"time\":%s,\"bytes\":%llu,\"key\":\"%s\"}", first ? "" : ",",
                   generation_name(o.k.gen).c_str(), (unsigned long long)o.k.first, json_time(int64_t(o.k.ts_ms)).c_str(),
                   (unsigned long long)size, json_escape(o.key).c_str());
        } else {
            printf("%-16s  %10llu  %-24s  %12llu\n", generation_name(o.k.gen).c_str(), (unsigned long long)o.k.first,
                   iso_time(int64_t(o.k.ts_ms)).c_str(), (unsigned long long)size);
        }
        first = false;
    }
    if (a.json) printf("]\n");
    return kOk;
}

// The replica's newest position, and (with --db) the local database's, side by side.
int cmd_status(std::vector<std::string> args) {
    Args a;
    if (!parse_args("status", args, &a)) return kUsage;
    if (struct stat st {}; !a.db.empty() && ::stat(a.db.c_str(), &st) != 0) {
        fprintf(stderr, "walship status: --db %s: %s\n", a.db.c_str(), strerror(errno));  // (a typo would read "no side file")
        return kFail;
    }
    auto store = open_or_report("status", a.url);
    if (!store) return kFail;
    auto listing = store->list("generations/");
    if (!listing.ok()) {
        fprintf(stderr, "walship status: %s\n", at_store(*store, listing.error()).c_str());
        return kFail;
    }
    auto objs = parse_listing(listing->objects);
    uint64_t gen = 0, last_txid = 0, last_ts = 0, bytes = 0, snapshots = 0, segments = 0;
    // The generation a restore would take: the newest with a whole snapshot. A newer one holding
    // only parts (a first snapshot being uploaded, or abandoned) is shown apart.
    uint64_t newest = 0;
    for (auto& o : objs) {
        newest = std::max(newest, o.k.gen);
        if (o.k.snapshot && !o.k.part) gen = std::max(gen, o.k.gen);
    }
    if (!gen) gen = newest;
    const uint64_t unfinished = newest != gen ? newest : 0;
    for (auto& o : objs) {
        bytes += o.size;
        if (o.k.gen != gen) continue;
        if (!o.k.part) (o.k.snapshot ? snapshots : segments)++;
        if (o.k.last >= last_txid) last_txid = o.k.last, last_ts = std::max(last_ts, o.k.ts_ms);
    }
    // Local side: the side file next to the database says how far shipping got, and who ships.
    bool have_local = false, pending_frames = false, pending_spill = false;
    uint64_t shipped = 0, pid = 0, local_gen = 0, local_txid = 0;
    bool shipper_alive = false;
    if (!a.db.empty()) {
        std::ifstream f(a.db + "-walship", std::ios::binary);
        char buf[sizeof(SideState)] = {};
        if (f.read(buf, sizeof buf) && memcmp(buf, kSideMagic, 8) == 0) {
            have_local = true;
            memcpy(&shipped, buf + offsetof(SideState, shipped), 8);
            memcpy(&pid, buf + offsetof(SideState, shipper_pid), 8);
            memcpy(&local_gen, buf + offsetof(SideState, generation), 8);
            memcpy(&local_txid, buf + offsetof(SideState, txid), 8);
            shipper_alive = pid != 0 && kill(pid_t(pid), 0) == 0;
            uint64_t spill_len = 0, spill_shipped = 0;
            memcpy(&spill_len, buf + offsetof(SideState, spill_len), 8);
            memcpy(&spill_shipped, buf + offsetof(SideState, spill_shipped), 8);
            pending_spill = spill_len > spill_shipped;
            // Commits in the WAL past the shipped position (the wal-index, while a connection has
            // the database open; without one SQLite rebuilds it from the WAL at the next open).
            std::ifstream shm(a.db + "-shm", std::ios::binary);
            char hdr[136] = {};
            ShmHeader h;
            if (shm.read(hdr, sizeof hdr) && read_shm_header(hdr, &h) && h.mx_frame > 0 && pack_position(h.salt2, h.mx_frame) != shipped)
                pending_frames = true;
        }
    }
    const bool in_step = have_local && local_gen == gen && local_txid == last_txid && !pending_frames && !pending_spill;
    int64_t age = last_ts ? int64_t(time(nullptr)) * 1000 - int64_t(last_ts) : -1;
    std::set<uint64_t> generations;
    for (auto& o : objs) generations.insert(o.k.gen);
    if (a.json) {
        printf("{\"replica\":\"%s\",\"generations\":%zu,\"generation\":\"%s\",\"last_txid\":%llu,\"last_commit\":%s,"
               "\"snapshots\":%llu,\"segments\":%llu,\"objects\":%zu,\"bytes\":%llu",
               json_escape(store->describe()).c_str(), generations.size(), gen ? generation_name(gen).c_str() : "",
               (unsigned long long)last_txid, json_time(int64_t(last_ts)).c_str(), (unsigned long long)snapshots,
               (unsigned long long)segments, objs.size(), (unsigned long long)bytes);
        if (unfinished) printf(",\"unfinished_generation\":\"%s\"", generation_name(unfinished).c_str());
        if (have_local)
            printf(",\"local\":{\"database\":\"%s\",\"generation\":\"%s\",\"shipped_txid\":%llu,\"shipped_wal_frame\":%llu,"
                   "\"shipper_pid\":%llu,\"shipper_running\":%s,\"in_step\":%s}",
                   json_escape(a.db).c_str(), local_gen ? generation_name(local_gen).c_str() : "", (unsigned long long)local_txid,
                   (unsigned long long)(shipped & 0xffffffff), (unsigned long long)pid, shipper_alive ? "true" : "false",
                   in_step ? "true" : "false");
        printf("}\n");
        return kOk;
    }
    printf("replica:      %s\n", store->describe().c_str());
    if (!gen) {
        std::string foreign;
        for (auto& o : listing->objects)
            if (foreign.empty() && is_foreign_key(o.key)) foreign = o.key;
        if (foreign.empty()) printf("state:        no data%s\n", missing_directory(*store).c_str());
        else printf("state:        no walship data, but objects walship does not write (%s: another tool's replica, such as Litestream's?)\n", foreign.c_str());
        return kOk;
    }
    printf("generation:   %s (%llu snapshots, %llu segments)\n", generation_name(gen).c_str(), (unsigned long long)snapshots, (unsigned long long)segments);
    printf("last txid:    %llu, committed %s (%lld s ago)\n", (unsigned long long)last_txid, iso_time(int64_t(last_ts)).c_str(), (long long)(age / 1000));
    printf("objects:      %zu, %llu bytes in all generations\n", objs.size(), (unsigned long long)bytes);
    if (unfinished)
        printf("unfinished:   generation %s has no whole snapshot yet (its first snapshot is being uploaded, or was abandoned)\n",
               generation_name(unfinished).c_str());
    if (!a.db.empty()) {
        if (!have_local) printf("local:        %s has no walship side file (not opened with walship since it was created or restored)\n", a.db.c_str());
        else
        {
            std::string where = local_gen != gen ? "of generation " + (local_gen ? generation_name(local_gen) : std::string("-")) + ", not the replica's latest"
                                : local_txid == last_txid ? "the replica's latest"
                                : local_txid < last_txid  ? std::to_string(last_txid - local_txid) + " behind the replica's latest (after a crash the side file can lag the bucket by the last uploads; else another writer)"
                                                          : std::to_string(local_txid - last_txid) + " past the replica's latest (objects missing?)";
            printf("local:        %s: shipped through txid %llu (%s), WAL frame %llu; shipper %s\n", a.db.c_str(),
                   (unsigned long long)local_txid, where.c_str(), (unsigned long long)(shipped & 0xffffffff),
                   shipper_alive ? ("running (pid " + std::to_string(pid) + ")").c_str() : "not running");
            if (pending_frames || pending_spill)
                printf("unshipped:    %s\n", pending_frames && pending_spill ? "commits in the WAL and in the spill file are not in the replica yet"
                                              : pending_frames              ? "commits in the WAL are not in the replica yet"
                                                                            : "commits in the spill file are not in the replica yet");
        }
    }
    return kOk;
}

// Restores the latest state (and a sample of older points) to temporary files and checks them.
int cmd_verify(std::vector<std::string> args) {
    Args a;
    if (!parse_args("verify", args, &a)) return kUsage;
    auto store = open_or_report("verify", a.url);
    if (!store) return kFail;
    const char* tmpdir = getenv("TMPDIR");
    std::string tmpl = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/walship-verify-XXXXXX";
    if (!mkdtemp(&tmpl[0])) {
        fprintf(stderr, "walship verify: cannot create a directory %s: %s\n", tmpl.c_str(), strerror(errno));
        return kFail;
    }
    std::string dir = tmpl;
    const std::string copy = dir + "/verify.db";
    remove_if_interrupted({restore_temp_name(copy), copy, copy + "-wal", copy + "-shm", copy + "-journal"}, dir);
    struct Check {
        std::string what;
        bool ok;
        std::string detail;
    };
    std::vector<Check> checks;
    bool no_data = false;  // the location holds no walship data: exit 3, as restore
    auto check_point = [&](const std::string& what, RestoreOptions opt) -> RestoreInfo {
        opt.output = copy;
        if (isatty(STDERR_FILENO))
            opt.progress = [&](uint64_t done, uint64_t total) {
                fprintf(stderr, "\rverifying %s: %llu/%llu objects", what.c_str(), (unsigned long long)done, (unsigned long long)total);
                if (done == total) fprintf(stderr, "\n");
            };
        auto r = restore(*store, opt);
        if (!r.ok()) {
            no_data = no_data || is_no_replica_data(r.error());
            checks.push_back({what, false, at_store(*store, r.error())});
            return {};
        }
        sqlite3* db = nullptr;
        std::string result;
        // immutable: no -shm or -wal next to the copy (it is deleted right after).
        if (sqlite3_open_v2(("file:" + opt.output + "?immutable=1").c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, "unix") == SQLITE_OK) {
            sqlite3_stmt* st = nullptr;
            if (sqlite3_prepare_v2(db, "pragma integrity_check", -1, &st, nullptr) == SQLITE_OK) {
                for (int rows = 0; rows < 10 && sqlite3_step(st) == SQLITE_ROW; rows++)  // "ok", or a row per problem
                    result += (result.empty() ? "" : "; ") + std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
            }
            sqlite3_finalize(st);
        }
        if (result.empty()) result = std::string("failed: ") + (db ? sqlite3_errmsg(db) : "cannot open the restored copy");
        sqlite3_close(db);
        bool ok = result == "ok";
        checks.push_back({what, ok, "txid " + std::to_string(r->txid) + ", " + std::to_string(r->pages) + " pages, checksums verified" +
                                        (r->checksum_verified ? " (objects and database)" : " (objects)") + ", integrity_check: " + result});
        // The point restored, but around damaged objects: the replica needs attention (what
        // retention deletes next may be the way around).
        for (auto& d : r->damaged) checks.push_back({what, false, "damaged object, restored around it: " + d});
        for (const char* suffix : {"", "-wal", "-shm", "-journal"}) ::unlink((opt.output + suffix).c_str());
        return r.value();
    };
    RestoreInfo latest = check_point("latest", {});
    // Every object of the latest generation, read whole: the restores read only the objects on
    // their paths, and a damaged older segment shows only when a point in it is restored. And no
    // txid from the oldest snapshot to the latest state that no object holds: a lost segment
    // makes the points in it unrestorable (a sample would find it only by chance).
    if (latest.generation) {
        auto listing = store->list(generation_prefix(latest.generation));
        if (!listing.ok()) {
            checks.push_back({"objects", false, "listing the generation failed: " + at_store(*store, listing.error())});
        } else {
            auto objs = parse_listing(listing->objects);
            uint64_t oldest_snap = UINT64_MAX, bytes = 0, read = 0;
            std::vector<std::pair<uint64_t, uint64_t>> held;  // txid ranges objects hold
            for (auto& o : objs) {
                if (o.k.gen != latest.generation || o.k.last > latest.txid) continue;  // (written since the restore)
                if (o.k.snapshot && !o.k.part) oldest_snap = std::min(oldest_snap, o.k.first);
                if (!o.k.part) held.push_back({o.k.snapshot ? o.k.last : o.k.first, o.k.last});
            }
            for (size_t i = 0; i < objs.size(); i++) {
                auto& o = objs[i];
                if (o.k.gen != latest.generation || o.k.last > latest.txid) continue;
                if (isatty(STDERR_FILENO)) fprintf(stderr, "\rverifying every object: %zu/%zu", i + 1, objs.size());
                auto got = store->get(o.key);
                if (!got.ok()) {
                    if (got.error().kind == s3::ErrorKind::NotFound) continue;  // deleted since the listing (retention)
                    checks.push_back({"objects", false, o.key + ": " + at_store(*store, got.error())});
                    continue;
                }
                read++, bytes += got->size();
                ObjectHeader h;
                std::string body, err = open_object(got.value(), &h, &body);
                std::vector<Txn> txns;
                if (err.empty() && (h.generation != o.k.gen || h.last_txid != o.k.last || (!o.k.snapshot && h.first_txid != o.k.first)))
                    err = "its header says generation " + generation_name(h.generation) + " txids " + std::to_string(h.first_txid) + "-" +
                          std::to_string(h.last_txid) + ", not what its name says";
                if (err.empty() && !o.k.snapshot) err = decode_segment_body(h, body, &txns);
                if (!err.empty()) checks.push_back({"objects", false, "damaged object " + o.key + ": " + err});
            }
            if (isatty(STDERR_FILENO) && !objs.empty()) fprintf(stderr, "\n");
            std::sort(held.begin(), held.end());
            uint64_t through = oldest_snap;  // every txid up to here is held
            std::string gaps;
            for (auto& [first, last] : held) {
                if (oldest_snap == UINT64_MAX || last <= through) continue;
                if (first > through + 1) gaps += (gaps.empty() ? "" : ", ") + std::to_string(through + 1) + "-" + std::to_string(first - 1);
                through = std::max(through, last);
            }
            if (oldest_snap != UINT64_MAX && through < latest.txid)
                gaps += (gaps.empty() ? "" : ", ") + std::to_string(through + 1) + "-" + std::to_string(latest.txid);
            if (!gaps.empty())
                checks.push_back({"objects", false, "no object holds txids " + gaps + " of generation " + generation_name(latest.generation) +
                                                        " (a lost segment: points in them cannot be restored)"});
            else
                checks.push_back({"objects", true, std::to_string(read) + " objects (" + std::to_string(bytes) + " bytes) read whole, checksums verified; txids " +
                                                       std::to_string(oldest_snap == UINT64_MAX ? latest.txid : oldest_snap) + "-" +
                                                       std::to_string(latest.txid) + " restorable"});
        }
    }
    // Older points: distinct transactions of the latest generation from its oldest snapshot on
    // (retention deleted what came before it, by design), at most all of them.
    uint64_t oldest = latest.txid;
    if (latest.generation && a.sample > 0) {
        auto listing = store->list(generation_prefix(latest.generation) + "snapshots/");
        if (listing.ok()) {
            for (auto& o : parse_listing(listing->objects))
                if (o.k.snapshot && !o.k.part && o.k.gen == latest.generation) oldest = std::min<uint64_t>(oldest, o.k.first);
        } else {
            checks.push_back({"snapshots", false, "listing the generation's snapshots failed: " + listing.error().str()});
        }
    }
    if (latest.generation && a.sample > 0 && latest.txid > oldest) {
        std::mt19937_64 rng(std::random_device{}());
        std::set<uint64_t> picked;
        const uint64_t span = latest.txid - oldest + 1;
        while (picked.size() < std::min<uint64_t>(uint64_t(a.sample), span)) picked.insert(oldest + rng() % span);
        for (uint64_t txid : picked) {
            RestoreOptions opt;
            opt.generation = latest.generation;
            opt.txid = txid;
            check_point("txid " + std::to_string(txid), opt);
        }
    }
    rmdir(dir.c_str());
    bool all = !checks.empty();
    for (auto& c : checks) all = all && c.ok;
    if (a.json) {
        printf("{\"ok\":%s,\"checks\":[", all ? "true" : "false");
        for (size_t i = 0; i < checks.size(); i++)
            printf("%s{\"point\":\"%s\",\"ok\":%s,\"detail\":\"%s\"}", i ? "," : "", json_escape(checks[i].what).c_str(),
                   checks[i].ok ? "true" : "false", json_escape(checks[i].detail).c_str());
        printf("]}\n");
    } else {
        for (auto& c : checks) printf("%-8s %-14s %s\n", c.ok ? "ok" : "FAILED", c.what.c_str(), c.detail.c_str());
        printf("%s\n", all ? "verify: ok" : "verify: FAILED");
    }
    return all ? kOk : no_data ? kNoData : kFail;
}

// Takes a snapshot now: opens the database through walship and asks its shipper.
int cmd_snapshot(std::vector<std::string> args) {
    Args a;
    if (!parse_args("snapshot", args, &a)) return kUsage;
    if (a.db.empty()) {
        fprintf(stderr, "walship snapshot: no database (use --db PATH or set WALSHIP_DB)\n");
        return kUsage;
    }
    // A mistyped path must not become a new database (auto-restore would create it).
    struct stat st_db {};
    if (::stat(a.db.c_str(), &st_db) != 0 || !S_ISREG(st_db.st_mode)) {
        fprintf(stderr, "walship snapshot: no database at %s\n", a.db.c_str());
        return kFail;
    }
    // Nor may a file that is not a database get side files and wait for a snapshot that never comes.
    char magic[16] = {};
    FILE* f = fopen(a.db.c_str(), "rb");
    const size_t got = f ? fread(magic, 1, sizeof magic, f) : 0;
    if (f) fclose(f);
    if (got != sizeof magic || memcmp(magic, "SQLite format 3", 16) != 0) {
        fprintf(stderr, "walship snapshot: %s is %s\n", a.db.c_str(), !f ? "not readable" : got == 0 ? "empty (no database to snapshot)" : "not an SQLite database");
        return kFail;
    }
    walship_register(0);
    std::string uri = walship::replica_uri(a.db, a.url);
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(uri.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, "walship") != SQLITE_OK) {
        fprintf(stderr, "walship snapshot: cannot open %s: %s\n", a.db.c_str(), db ? sqlite3_errmsg(db) : "?");
        sqlite3_close(db);
        return kFail;
    }
    sqlite3_busy_timeout(db, 10000);
    sqlite3_stmt* st = nullptr;
    int rc = sqlite3_prepare_v2(db, "select count(*) from sqlite_schema", -1, &st, nullptr);
    if (rc == SQLITE_OK && sqlite3_step(st) != SQLITE_ROW) rc = sqlite3_errcode(db);
    sqlite3_finalize(st);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "walship snapshot: cannot read %s: %s\n", a.db.c_str(), sqlite3_errmsg(db));
        sqlite3_close(db);
        return kFail;
    }
    rc = sqlite3_prepare_v2(db, "pragma walship_snapshot", -1, &st, nullptr);
    bool ok = rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW;
    if (ok) printf("snapshot: %s\n", sqlite3_column_text(st, 0));
    else {
        std::string msg = sqlite3_errmsg(db);  // walship's messages start with "walship: "
        fprintf(stderr, "walship snapshot: %s\n", msg.compare(0, 9, "walship: ") == 0 ? msg.c_str() + 9 : msg.c_str());
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return ok ? kOk : kFail;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        usage(stderr);
        return kUsage;
    }
    // A file size limit (ulimit -f) makes a write fail with EFBIG, reported like a full disk,
    // instead of killing the command halfway through a restore.
    signal(SIGXFSZ, SIG_IGN);
    std::string cmd = argv[1];
    std::vector<std::string> args(argv + 2, argv + argc);
    // `walship VERB --help` (or -h) prints the usage, whatever else follows.
    const bool verb = cmd == "restore" || cmd == "generations" || cmd == "snapshots" || cmd == "status" || cmd == "verify" || cmd == "snapshot";
    if (verb && std::find_if(args.begin(), args.end(), [](const std::string& a) { return a == "--help" || a == "-h"; }) != args.end()) {
        usage(stdout);
        return kOk;
    }
    if (cmd == "restore") return cmd_restore(args);
    if (cmd == "generations") return cmd_generations(args);
    if (cmd == "snapshots") return cmd_snapshots(args);
    if (cmd == "status") return cmd_status(args);
    if (cmd == "verify") return cmd_verify(args);
    if (cmd == "snapshot") return cmd_snapshot(args);
    if (cmd == "-h" || cmd == "--help" || cmd == "help") {
        usage(stdout);
        return kOk;
    }
    fprintf(stderr, "walship: unknown command '%s'\n", cmd.c_str());
    usage(stderr);
    return kUsage;
}

// Benchmark driver: the same workload for plain SQLite, walship and Litestream (which runs beside
// it as its own process). Prints one JSON object of figures; it passes or fails nothing.
//
//   walship-bench write SYSTEM DB URL N        N single-row INSERT transactions, synchronous=NORMAL
//   walship-bench rate SYSTEM DB URL TPS SECS  a steady rate of transactions (for lag and cost)
//   walship-bench fill SYSTEM DB URL MB TXNS   a database of about MB megabytes, then TXNS more transactions
//   walship-bench lag SYSTEM DB URL N PORT [GAP_MS]  N commits GAP_MS (300) apart; for each, the time until the
//                                              store (behind the counting proxy on PORT) receives a PUT
//   walship-bench idle SYSTEM DB URL SECS       one commit, then SECS seconds without writes
//
// SYSTEM: plain (WAL mode, no replication), walship, walship-remote, external (WAL mode; a
// replicator such as Litestream runs outside).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "walship.h"

using Clock = std::chrono::steady_clock;

namespace {

std::string encode(const std::string& s) {
    std::string o;
    for (unsigned char c : s) {
        if (isalnum(c) || strchr("-_.~/:", c)) o += char(c);
        else {
            char b[4];
            snprintf(b, sizeof b, "%%%02X", c);
            o += b;
        }
    }
    return o;
}

sqlite3* open_db(const std::string& system, const std::string& path, const std::string& url) {
    sqlite3* db = nullptr;
    int rc;
    if (system == "walship" || system == "walship-remote") {
        walship_register(0);
        std::string uri = "file:" + path + "?replica=" + encode(url) + (system == "walship-remote" ? "&durability=remote" : "");
        rc = sqlite3_open_v2(uri.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, "walship");
    } else {
        rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
    }
    if (rc != SQLITE_OK) {
        fprintf(stderr, "open: %s\n", sqlite3_errmsg(db));
        exit(1);
    }
    sqlite3_busy_timeout(db, 10000);
    sqlite3_exec(db, "pragma journal_mode=wal", nullptr, nullptr, nullptr);
    // walship-remote waits in the WAL sync of FULL; the others run NORMAL, as most apps do.
    sqlite3_exec(db, system == "walship-remote" ? "pragma synchronous=FULL" : "pragma synchronous=NORMAL", nullptr, nullptr, nullptr);
    sqlite3_exec(db, "create table if not exists t(id integer primary key, v text)", nullptr, nullptr, nullptr);
    return db;
}

double cpu_seconds() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

long max_rss_kb() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

long long file_size(const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 ? st.st_size : 0;
}

double pct(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, size_t(double(v.size()) * p))];
}

// One transaction; returns its commit latency in ms.
double commit_one(sqlite3* db, sqlite3_stmt* ins, long i) {
    auto t0 = Clock::now();
    std::string v = "row " + std::to_string(i) + " some payload to make the row realistic";
    sqlite3_bind_text(ins, 1, v.c_str(), -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(ins);
    sqlite3_reset(ins);
    if (rc != SQLITE_DONE) fprintf(stderr, "insert: %s\n", sqlite3_errmsg(db));
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// PUT requests the counting proxy on 127.0.0.1:port has seen (its /__stats lists one per line).
int proxy_puts(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        close(fd);
        return -1;
    }
    const char* req = "GET /__stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if (write(fd, req, strlen(req)) < 0) {
        close(fd);
        return -1;
    }
    // Read the headers, then Content-Length bytes (the proxy may keep the connection open).
    std::string all;
    char buf[65536];
    ssize_t n;
    size_t want = std::string::npos;
    while (want == std::string::npos || all.size() < want) {
        n = read(fd, buf, sizeof buf);
        if (n <= 0) break;
        all.append(buf, size_t(n));
        size_t end = all.find("\r\n\r\n");
        if (want == std::string::npos && end != std::string::npos) {
            size_t cl = all.find("Content-Length:");
            if (cl == std::string::npos) cl = all.find("content-length:");
            want = cl == std::string::npos ? all.size() : end + 4 + size_t(atol(all.c_str() + cl + 15));
        }
    }
    close(fd);
    int puts = 0;
    for (size_t at = all.find("\nPUT "); at != std::string::npos; at = all.find("\nPUT ", at + 1)) puts++;
    return puts;
}

void flush_if_walship(const std::string& system, sqlite3* db) {
    if (system.rfind("walship", 0) == 0) sqlite3_exec(db, "pragma walship_flush=600000", nullptr, nullptr, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: see the header of walship_bench.cpp\n");
        return 2;
    }
    std::string mode = argv[1], system = argv[2], path = argv[3], url = argv[4];
    sqlite3* db = open_db(system, path, url);
    sqlite3_stmt* ins = nullptr;
    sqlite3_prepare_v2(db, "insert into t(v) values(?)", -1, &ins, nullptr);
    std::vector<double> lat;
    long long max_wal = 0;
    double cpu0 = cpu_seconds();
    auto t0 = Clock::now();
    double flush_ms = 0;
    if (mode == "write") {
        long n = atol(argv[5]);
        for (long i = 0; i < n; i++) {
            lat.push_back(commit_one(db, ins, i));
            if (i % 500 == 0) max_wal = std::max(max_wal, file_size(path + "-wal"));
        }
    } else if (mode == "rate") {
        double tps = atof(argv[5]);
        double secs = argc > 6 ? atof(argv[6]) : 10;
        auto period = std::chrono::duration<double>(1.0 / tps);
        auto next = Clock::now();
        for (long i = 0; std::chrono::duration<double>(Clock::now() - t0).count() < secs; i++) {
            std::this_thread::sleep_until(next);
            next += std::chrono::duration_cast<Clock::duration>(period);
            lat.push_back(commit_one(db, ins, i));
            max_wal = std::max(max_wal, file_size(path + "-wal"));
        }
    } else if (mode == "lag") {
        long n = atol(argv[5]);
        int port = atoi(argv[6]);
        int gap_ms = argc > 7 ? atoi(argv[7]) : 300;
        for (long i = 0; i < n; i++) {
            std::this_thread::sleep_for(std::chrono::milliseconds(gap_ms));
            int before = proxy_puts(port);
            auto c0 = Clock::now();
            commit_one(db, ins, i);
            while (proxy_puts(port) <= before && std::chrono::duration<double>(Clock::now() - c0).count() < 10)
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            lat.push_back(std::chrono::duration<double, std::milli>(Clock::now() - c0).count());
        }
    } else if (mode == "idle") {
        commit_one(db, ins, 0);
        flush_if_walship(system, db);
        std::this_thread::sleep_for(std::chrono::duration<double>(atof(argv[5])));
    } else if (mode == "fill") {
        double mb = atof(argv[5]);
        long txns = argc > 6 ? atol(argv[6]) : 0;
        sqlite3_exec(db, "create table if not exists big(id integer primary key, b blob)", nullptr, nullptr, nullptr);
        long rows = long(mb * 1024 * 1024 / 8000);
        for (long done = 0; done < rows; done += 1000) {
            std::string sql = "insert into big(b) select randomblob(4000) || zeroblob(4000) from (with recursive s(x) as (select 1 union all select x+1 from s where x < 1000) select x from s)";
            sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
        }
        flush_if_walship(system, db);
        for (long i = 0; i < txns; i++) lat.push_back(commit_one(db, ins, i));
    }
    double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    auto f0 = Clock::now();
    flush_if_walship(system, db);
    flush_ms = std::chrono::duration<double, std::milli>(Clock::now() - f0).count();
    max_wal = std::max(max_wal, file_size(path + "-wal"));
    std::string status;
    if (system.rfind("walship", 0) == 0) {
        sqlite3_stmt* st = nullptr;
        sqlite3_prepare_v2(db, "pragma walship_status", -1, &st, nullptr);
        if (sqlite3_step(st) == SQLITE_ROW) status = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    double cpu = cpu_seconds() - cpu0;
    sqlite3_finalize(ins);
    printf("{\"mode\":\"%s\",\"system\":\"%s\",\"txns\":%zu,\"seconds\":%.3f,\"tps\":%.1f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,"
           "\"max_wal_bytes\":%lld,\"cpu_s\":%.3f,\"max_rss_kb\":%ld,\"flush_ms\":%.1f,\"db_bytes\":%lld,\"status\":%s}\n",
           mode.c_str(), system.c_str(), lat.size(), wall, double(lat.size()) / wall, pct(lat, 0.5), pct(lat, 0.9), pct(lat, 0.99), max_wal, cpu,
           max_rss_kb(), flush_ms, file_size(path), status.empty() ? "null" : status.c_str());
    sqlite3_close(db);
    return 0;
}

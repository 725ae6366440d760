// Benchmark driver: the same workload for plain SQLite, walship and Litestream (which runs beside
// it as its own process). Prints one JSON object of figures on stdout; it passes or fails nothing.
// bench/run.py runs it; see there for the whole picture.
//
//   walship-bench write  SYSTEM DB URL N [START_AT]     N single-row INSERT transactions, as fast as
//                                                      possible (START_AT: steady-clock second to begin,
//                                                      so several writer processes start together);
//                                                      walship: timing starts once the first snapshot is up
//   walship-bench rate   SYSTEM DB URL TPS SECS        a steady rate of transactions
//   walship-bench idle   SYSTEM DB URL SECS            one commit, then SECS seconds without writes
//   walship-bench open   SYSTEM DB URL                 open (walship: first snapshot), flush, close
//   walship-bench fill   DB MB                         plain SQLite: build a database of about MB megabytes
//   walship-bench lag    SYSTEM DB URL N GAP_MS PROXY BUCKET BUSY_TPS RESTORE_CMD [MAX_SECS]
//        N marked commits, one per GAP_MS at least (GAP_MS < 0: a random 0..-GAP_MS pause after each); BUSY_TPS > 0 adds a background writer. For each
//        mark: after every successful PUT the counting proxy (127.0.0.1:PROXY) sees for BUCKET, run
//        RESTORE_CMD (its "{out}" replaced by a temporary path; it restores straight from the store,
//        not through the proxy) and look for the mark in the restored database. The sample is the
//        time from COMMIT returning to the end of the PUT after which the mark was restorable. When
//        a further PUT ended while that restore ran, the sample takes the later PUT's end (an upper
//        bound) and counts as ambiguous. RESTORE_CMD "-": no restores; each mark carries 16 random
//        bytes and the output lists [id, commit time, token hex] per mark ("marks"), for run.py to
//        ask the proxy which upload first carried each (the Litestream runs: see run.py).
//   walship-bench outage SYSTEM DB URL TPS SECS PROXY BUCKET MODE
//        TPS transactions/s for SECS with the store reachable, SECS with every request to BUCKET
//        failing (MODE 503) or never answered (MODE stall), SECS reachable again; commit latency
//        per phase, then the time walship_flush needs to ship everything.
//
// SYSTEM: plain (WAL mode, no replication), walship, walship-remote (durability=remote),
// external (WAL mode; a replicator such as Litestream runs outside). synchronous=NORMAL everywhere
// (durability=remote waits for the bucket after the commit, not in a sync). BENCH_LAT_OUT=FILE
// writes every commit latency (ms). BENCH_IDLE_THREAD=MS adds a thread that only sleeps (waking
// every MS ms, 0: never), for what a second thread alone costs a single-threaded writer.
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "walship.h"
#include "walship_uri.h"

using Clock = std::chrono::steady_clock;

namespace {

double now_s() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

void must(int rc, sqlite3* db, const char* what) {
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "%s: %s\n", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        exit(1);
    }
}

// SQLite's own busy handler for sqlite3_busy_timeout(db, 30000) (the sleeps of
// sqliteDefaultBusyCallback, through the connection's VFS), counting its calls and the sleeps asked for: several writers meet at the
// write lock, and each BUSY costs a sleep of at least 1 ms.
long busy_calls = 0;
double busy_slept_ms = 0;
int busy_wait(void* db, int count) {
    static const int delays[] = {1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100};
    static const int totals[] = {0, 1, 3, 8, 18, 33, 53, 78, 103, 128, 178, 228};
    const int n = int(sizeof delays / sizeof delays[0]);
    int delay = count < n ? delays[count] : delays[n - 1];
    int prior = count < n ? totals[count] : totals[n - 1] + delay * (count - (n - 1));
    if (prior + delay > 30000) {
        delay = 30000 - prior;
        if (delay <= 0) return 0;
    }
    busy_calls++;
    busy_slept_ms += delay;
    // Through the connection's VFS, as SQLite's own handler sleeps (sqlite3OsSleep(db->pVfs)).
    sqlite3_vfs* vfs = nullptr;
    if (sqlite3_file_control(static_cast<sqlite3*>(db), "main", SQLITE_FCNTL_VFS_POINTER, &vfs) == SQLITE_OK && vfs)
        vfs->xSleep(vfs, delay * 1000);
    else
        usleep(useconds_t(delay) * 1000);
    return 1;
}

bool is_walship(const std::string& system) { return system.rfind("walship", 0) == 0; }

sqlite3* open_db(const std::string& system, const std::string& path, const std::string& url) {
    sqlite3* db = nullptr;
    int rc;
    if (is_walship(system)) {
        walship_register(0);
        std::string uri = walship::replica_uri(path, url, system == "walship-remote" ? "&durability=remote" : "");
        rc = sqlite3_open_v2(uri.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, "walship");
    } else {
        rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
    }
    must(rc, db, "open");
    sqlite3_busy_handler(db, busy_wait, db);
    // Processes starting together on a new database: switching it to WAL needs the exclusive
    // lock, and SQLite answers BUSY at once (no busy handler) when another holds a shared one.
    for (int i = 0; (rc = sqlite3_exec(db, "pragma journal_mode=wal", nullptr, nullptr, nullptr)) == SQLITE_BUSY && i < 200; i++) usleep(10000);
    must(rc, db, "journal_mode");
    must(sqlite3_exec(db, "pragma synchronous=NORMAL", nullptr, nullptr, nullptr), db,
         "synchronous");
    must(sqlite3_exec(db, "create table if not exists t(id integer primary key, v text)", nullptr, nullptr, nullptr), db, "create");
    return db;
}

double cpu_seconds(int who = RUSAGE_SELF) {
    rusage ru{};
    getrusage(who, &ru);
    return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// The kernel's part of it (system time).
double sys_seconds(int who) {
    rusage ru{};
    getrusage(who, &ru);
    return double(ru.ru_stime.tv_sec) + double(ru.ru_stime.tv_usec) / 1e6;
}

// The application thread's context switches: waits (voluntary) and preemptions (involuntary).
std::pair<long, long> thread_switches() {
    rusage ru{};
    getrusage(RUSAGE_THREAD, &ru);
    return {ru.ru_nvcsw, ru.ru_nivcsw};
}

// The other threads of this process (walship's shipper): their wake-ups (voluntary context
// switches) in all, from /proc.
long other_threads_wakeups() {
    long n = 0;
    const long self = long(syscall(SYS_gettid));
    DIR* d = opendir("/proc/self/task");
    while (dirent* e = d ? readdir(d) : nullptr) {
        if (e->d_name[0] == '.' || atol(e->d_name) == self) continue;
        FILE* f = fopen((std::string("/proc/self/task/") + e->d_name + "/status").c_str(), "r");
        char line[256];
        while (f && fgets(line, sizeof line, f))
            if (strncmp(line, "voluntary_ctxt_switches:", 24) == 0) n += atol(line + 24);
        if (f) fclose(f);
    }
    if (d) closedir(d);
    return n;
}

// Peak RSS of this process image (VmHWM; getrusage's ru_maxrss carries the parent's peak across exec).
long max_rss_kb() {
    FILE* f = fopen("/proc/self/status", "r");
    long kb = 0;
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) kb = atol(line + 6);
    if (f) fclose(f);
    return kb;
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

std::string summary(const char* name, const std::vector<double>& v) {
    char b[256];
    snprintf(b, sizeof b, "\"%s\":{\"n\":%zu,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}", name, v.size(), pct(v, 0.5),
             pct(v, 0.9), pct(v, 0.99), v.empty() ? 0 : *std::max_element(v.begin(), v.end()));
    return b;
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

// One HTTP GET to the counting proxy; returns the body.
std::string proxy_get(int port, const std::string& target) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        close(fd);
        return "";
    }
    std::string req = "GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n";
    if (write(fd, req.data(), req.size()) < 0) {
        close(fd);
        return "";
    }
    std::string all;
    char buf[65536];
    size_t want = std::string::npos;
    while (want == std::string::npos || all.size() < want) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) break;
        all.append(buf, size_t(n));
        size_t end = all.find("\r\n\r\n");
        if (want == std::string::npos && end != std::string::npos) {
            size_t cl = all.find("Content-Length:");
            want = cl == std::string::npos ? all.size() : end + 4 + size_t(atol(all.c_str() + cl + 15));
        }
    }
    close(fd);
    size_t end = all.find("\r\n\r\n");
    return end == std::string::npos ? "" : all.substr(end + 4);
}

// Successful PUTs to bucket that ended after `after`, and the newest end.
std::pair<int, double> puts_after(int port, const std::string& bucket, double after) {
    char t[64];
    snprintf(t, sizeof t, "%.9f", after + 1e-7);  // past `after` itself, whatever the rounding
    std::string body = proxy_get(port, "/__puts?bucket=" + bucket + "&after=" + t);
    int n = 0;
    double last = 0;
    sscanf(body.c_str(), "%d %lf", &n, &last);
    return {n, last};
}

void flush_if_walship(const std::string& system, sqlite3* db) {
    if (is_walship(system) && !getenv("BENCH_NO_FLUSH")) {  // BENCH_NO_FLUSH: for profiling with the store down
        char* err = nullptr;
        if (sqlite3_exec(db, "pragma walship_flush=600000", nullptr, nullptr, &err) != SQLITE_OK) {
            fprintf(stderr, "walship_flush: %s\n", err ? err : "?");
            sqlite3_free(err);
        }
    }
}

std::string walship_status(const std::string& system, sqlite3* db) {
    std::string status;
    if (!is_walship(system)) return status;
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "pragma walship_status", -1, &st, nullptr);
    if (st && sqlite3_step(st) == SQLITE_ROW) status = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return status;
}

// Is mark `id` in the database file at path? (Opened read-only and immutable: nothing is written.)
bool has_mark(const std::string& path, long id) {
    sqlite3* db = nullptr;
    std::string uri = "file:" + path + "?immutable=1";
    bool found = false;
    if (sqlite3_open_v2(uri.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, "unix") == SQLITE_OK) {
        sqlite3_stmt* st = nullptr;
        if (sqlite3_prepare_v2(db, "select 1 from m where id=?", -1, &st, nullptr) == SQLITE_OK) {
            sqlite3_bind_int64(st, 1, id);
            found = sqlite3_step(st) == SQLITE_ROW;
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return found;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
    for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
    return s;
}

void write_latencies(const std::vector<double>& lat) {
    const char* out = getenv("BENCH_LAT_OUT");
    if (!out) return;
    FILE* f = fopen(out, "w");
    if (!f) return;
    for (double x : lat) fprintf(f, "%.4f\n", x);
    fclose(f);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: see the header of bench/walship_bench.cpp\n");
        return 2;
    }
    std::string mode = argv[1];
    if (mode == "fill") {  // plain SQLite, no replication: the large database for the restore benchmark
        std::string path = argv[2];
        double mb = atof(argv[3]);
        sqlite3* db = open_db("plain", path, "");
        // Half random, half zeros: compressible about 2:1, like much real data.
        const char* sql =
            "create table if not exists big(id integer primary key, b blob);"
            "insert into big(b) select randomblob(2000) || zeroblob(2000) from "
            "(with recursive s(x) as (select 1 union all select x+1 from s where x < 2500) select x from s)";
        auto t0 = Clock::now();
        while (file_size(path) + file_size(path + "-wal") < mb * 1e6) must(sqlite3_exec(db, sql, nullptr, nullptr, nullptr), db, "fill");
        must(sqlite3_exec(db, "pragma wal_checkpoint(truncate)", nullptr, nullptr, nullptr), db, "checkpoint");
        sqlite3_close(db);
        printf("{\"mode\":\"fill\",\"db_bytes\":%lld,\"seconds\":%.3f}\n", file_size(path), std::chrono::duration<double>(Clock::now() - t0).count());
        return 0;
    }
    if (argc < 5) {
        fprintf(stderr, "usage: see the header of bench/walship_bench.cpp\n");
        return 2;
    }
    std::string system = argv[2], path = argv[3], url = argv[4];
    // BENCH_IDLE_THREAD=MS: a second thread that only sleeps, waking every MS ms (0: never), for
    // what any in-process replicator costs a single-threaded application before it does
    // anything (the kernel and libc take slower paths in a process with several threads).
    if (const char* e = getenv("BENCH_IDLE_THREAD"))
        std::thread([ms = atoi(e)] {
            for (;;) std::this_thread::sleep_for(std::chrono::milliseconds(ms > 0 ? ms : 3600000));
        }).detach();
    auto arg = [&](int i, const char* d) { return std::string(argc > i ? argv[i] : d); };
    double cpu0 = cpu_seconds();
    auto open0 = Clock::now();
    sqlite3* db = open_db(system, path, url);
    double open_ms = std::chrono::duration<double, std::milli>(Clock::now() - open0).count();
    sqlite3_stmt* ins = nullptr;
    must(sqlite3_prepare_v2(db, "insert into t(v) values(?)", -1, &ins, nullptr), db, "prepare");
    std::vector<double> lat;
    std::string extra;
    long long max_wal = 0;
    double cpu_start = cpu_seconds(), thread_cpu_start = cpu_seconds(RUSAGE_THREAD), thread_sys_start = sys_seconds(RUSAGE_THREAD);
    auto switches0 = thread_switches();
    long other_wakeups0 = other_threads_wakeups();
    auto t0 = Clock::now();

    if (mode == "write") {
        long n = atol(argv[5]);
        double start_at = atof(arg(6, "0").c_str());
        // As the Litestream runs do (run.py waits for its first snapshot), start timing once the
        // replica has its first snapshot: the burst measures steady replication, not start-up.
        flush_if_walship(system, db);
        // Every system then starts from a quiet machine: the store and walship's thread have
        // finished with the snapshot, as run.py lets Litestream settle after its first one.
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        while (now_s() < start_at) std::this_thread::sleep_for(std::chrono::microseconds(200));
        cpu_start = cpu_seconds();
        thread_cpu_start = cpu_seconds(RUSAGE_THREAD);
        thread_sys_start = sys_seconds(RUSAGE_THREAD);
        switches0 = thread_switches();
        other_wakeups0 = other_threads_wakeups();
        t0 = Clock::now();
        lat.reserve(size_t(n));
        for (long i = 0; i < n; i++) {
            lat.push_back(commit_one(db, ins, i));
            if (i % 256 == 0) max_wal = std::max(max_wal, file_size(path + "-wal"));
        }
    } else if (mode == "rate") {
        double tps = atof(argv[5]), secs = atof(arg(6, "10").c_str());
        auto period = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / tps));
        auto next = Clock::now();
        for (long i = 0; std::chrono::duration<double>(Clock::now() - t0).count() < secs; i++) {
            std::this_thread::sleep_until(next);
            next += period;
            lat.push_back(commit_one(db, ins, i));
            if (i % 16 == 0) max_wal = std::max(max_wal, file_size(path + "-wal"));
        }
    } else if (mode == "idle") {
        lat.push_back(commit_one(db, ins, 0));
        flush_if_walship(system, db);
        std::this_thread::sleep_for(std::chrono::duration<double>(atof(argv[5])));
    } else if (mode == "open") {
        // walship: opening an existing database with a replica takes the first snapshot; flush waits for it.
    } else if (mode == "lag") {
        long n = atol(argv[5]);
        int gap_ms = atoi(argv[6]);
        srand(12345);
        int port = atoi(argv[7]);
        std::string bucket = argv[8];
        double busy_tps = atof(argv[9]);
        std::string restore_cmd = argv[10];
        double max_secs = argc > 11 ? atof(argv[11]) : 1e9;  // stop taking marks after this long
        std::string out = path + ".lagprobe.db";
        // restore_cmd "-": no restores here. Each mark carries 16 random bytes, and run.py asks the
        // counting proxy for the first upload whose body holds them (Litestream's segments are
        // LZ4 frames, whose first copy of bytes never seen before is literal).
        const bool scan = restore_cmd == "-";
        std::mt19937_64 rng(std::random_device{}());
        std::string marks;  // scan: [id, commit time, token] per mark
        must(sqlite3_exec(db, "create table if not exists m(id integer primary key, t real, tok blob)", nullptr, nullptr, nullptr), db, "create m");
        flush_if_walship(system, db);
        std::atomic<bool> stop{false};
        std::thread busy;
        long busy_n = 0;
        if (busy_tps > 0) {
            busy = std::thread([&] {
                sqlite3* bdb = open_db(system, path, url);
                sqlite3_stmt* bins = nullptr;
                sqlite3_prepare_v2(bdb, "insert into t(v) values(?)", -1, &bins, nullptr);
                auto period = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / busy_tps));
                auto next = Clock::now();
                while (!stop) {
                    std::this_thread::sleep_until(next);
                    next += period;
                    commit_one(bdb, bins, busy_n++);
                }
                sqlite3_finalize(bins);
                sqlite3_close(bdb);
            });
            std::this_thread::sleep_for(std::chrono::seconds(2));
        }
        sqlite3_stmt* mark = nullptr;
        must(sqlite3_prepare_v2(db, "insert into m(id, t, tok) values(?, ?, ?)", -1, &mark, nullptr), db, "prepare m");
        std::vector<double> lo, restore_ms;
        int ambiguous = 0, timeouts = 0, restores = 0, misses = 0;
        auto next = Clock::now();
        auto lag0 = Clock::now();
        for (long i = 1; i <= n && std::chrono::duration<double>(Clock::now() - lag0).count() < max_secs; i++) {
            std::this_thread::sleep_until(next);
            auto c0 = Clock::now();
            sqlite3_bind_int64(mark, 1, i);
            sqlite3_bind_double(mark, 2, now_s());
            unsigned char tok[16];
            for (auto& x : tok) x = static_cast<unsigned char>(rng());
            sqlite3_bind_blob(mark, 3, tok, sizeof tok, SQLITE_TRANSIENT);
            if (sqlite3_step(mark) != SQLITE_DONE) fprintf(stderr, "mark: %s\n", sqlite3_errmsg(db));
            sqlite3_reset(mark);
            double c = now_s();
            if (scan) {
                char m[96];
                int k = snprintf(m, sizeof m, "%s[%ld,%.9f,\"", marks.empty() ? "" : ",", i, c);
                for (unsigned char x : tok) k += snprintf(m + k, sizeof m - size_t(k), "%02x", x);
                marks += std::string(m, size_t(k)) + "\"]";
                next = gap_ms > 0 ? c0 + std::chrono::milliseconds(gap_ms) : Clock::now() + std::chrono::milliseconds(rand() % (1 - gap_ms));
                continue;
            }
            // gap_ms < 0: a random pause of 0..-gap_ms after this mark is restorable (busy runs, so the
            // marks do not lock onto the upload cycle); otherwise the next mark gap_ms after this one.
            next = c0 + std::chrono::milliseconds(gap_ms > 0 ? gap_ms : 0);
            double seen = c;  // PUTs that ended up to here have been checked
            bool done = false;
            while (!done && now_s() - c < 60) {
                auto [cnt, last] = puts_after(port, bucket, seen);
                if (cnt == 0) {
                    std::this_thread::sleep_for(std::chrono::milliseconds(1));
                    continue;
                }
                double r0 = now_s();
                int rc = ::system(replace_all(restore_cmd, "{out}", out).c_str());
                restores++;
                restore_ms.push_back((now_s() - r0) * 1000);
                if (rc == 0 && has_mark(out, i)) {
                    auto [later, last2] = puts_after(port, bucket, last);
                    if (later > 0) ambiguous++;
                    lo.push_back((last - c) * 1000);
                    lat.push_back(((later > 0 ? last2 : last) - c) * 1000);
                    done = true;
                } else {
                    misses++;
                    seen = last;
                }
            }
            if (!done) timeouts++;
            if (gap_ms < 0) next = Clock::now() + std::chrono::milliseconds(rand() % (1 - gap_ms));
            if (Clock::now() > next) next = Clock::now();
        }
        stop = true;
        if (busy.joinable()) busy.join();
        sqlite3_finalize(mark);
        unlink(out.c_str());
        char b[512];
        snprintf(b, sizeof b, ",\"ambiguous\":%d,\"timeouts\":%d,\"restores\":%d,\"misses\":%d,\"busy_txns\":%ld,", ambiguous, timeouts, restores,
                 misses, busy_n);
        extra = b + summary("lower_bound", lo) + "," + summary("restore", restore_ms) + ",\"marks\":[" + marks + "]";
    } else if (mode == "outage") {
        double tps = atof(argv[5]), secs = atof(argv[6]);
        int port = atoi(argv[7]);
        std::string bucket = argv[8], fault = argv[9];
        auto period = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / tps));
        std::vector<double> phase[3];
        auto next = Clock::now();
        long i = 0;
        for (int p = 0; p < 3; p++) {
            if (p == 1) proxy_get(port, "/__fault?bucket=" + bucket + "&mode=" + fault);
            if (p == 2) proxy_get(port, "/__fault?bucket=" + bucket + "&mode=off");
            auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(secs));
            while (Clock::now() < end) {
                std::this_thread::sleep_until(next);
                next += period;
                if (next < Clock::now()) next = Clock::now();
                double ms = commit_one(db, ins, i++);
                phase[p].push_back(ms);
                lat.push_back(ms);
                max_wal = std::max(max_wal, file_size(path + "-wal"));
            }
            if (p == 1) extra += ",\"status_during_outage\":" + (walship_status(system, db).empty() ? "null" : walship_status(system, db));
        }
        extra += "," + summary("before", phase[0]) + "," + summary("during", phase[1]) + "," + summary("after", phase[2]);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode.c_str());
        return 2;
    }
    double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    double cpu_work = cpu_seconds() - cpu_start;
    double writer_cpu = cpu_seconds(RUSAGE_THREAD) - thread_cpu_start;  // the application's thread alone
    double writer_sys = sys_seconds(RUSAGE_THREAD) - thread_sys_start;
    auto switches = thread_switches();
    long other_wakeups = other_threads_wakeups() - other_wakeups0;
    auto f0 = Clock::now();
    flush_if_walship(system, db);
    double flush_ms = std::chrono::duration<double, std::milli>(Clock::now() - f0).count();
    max_wal = std::max(max_wal, file_size(path + "-wal"));
    std::string status = walship_status(system, db);
    sqlite3_finalize(ins);
    long long wal_before_close = file_size(path + "-wal");
    sqlite3_close(db);
    double cpu = cpu_seconds() - cpu0;
    write_latencies(lat);
    printf("{\"mode\":\"%s\",\"system\":\"%s\",\"txns\":%zu,\"seconds\":%.3f,\"tps\":%.1f,%s,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,"
           "\"max_wal_bytes\":%lld,\"wal_before_close\":%lld,\"cpu_work_s\":%.4f,\"writer_cpu_s\":%.4f,\"writer_sys_s\":%.4f,\"writer_waits\":%ld,\"writer_preempted\":%ld,\"other_threads_wakeups\":%ld,\"cpu_s\":%.4f,\"max_rss_kb\":%ld,\"open_ms\":%.1f,"
           "\"flush_ms\":%.1f,\"busy_calls\":%ld,\"busy_slept_ms\":%.0f,\"db_bytes\":%lld%s,\"status\":%s}\n",
           mode.c_str(), system.c_str(), lat.size(), wall, double(lat.size()) / wall, summary("commit", lat).c_str(), pct(lat, 0.5), pct(lat, 0.9),
           pct(lat, 0.99), max_wal, wal_before_close, cpu_work, writer_cpu, writer_sys, switches.first - switches0.first, switches.second - switches0.second, other_wakeups, cpu, max_rss_kb(), open_ms, flush_ms, busy_calls, busy_slept_ms, file_size(path), extra.c_str(),
           status.empty() ? "null" : status.c_str());
    return 0;
}

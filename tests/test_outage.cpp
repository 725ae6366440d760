// Object storage down or failing for a while (through the fault proxy): the application keeps
// writing and never sees an error, walship_status tells what is happening, and everything is
// shipped once the store is back. Past max_wal_size the hold on WAL resets is released and a new
// generation restores correctly. Commit latencies are printed (figures, not assertions).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <chrono>
#include <thread>

#include "restore.h"
#include "sidefile.h"
#include "retention.h"
#include "support/db.h"
#include "support/proxy.h"
#include "support/test_server.h"
#include "walship.h"

using namespace walship;
using namespace walship::test;

namespace {

struct Registered {
    Registered() { use_walship(); }
} registered;

double p99(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[std::min(v.size() - 1, size_t(v.size() * 0.99))];
}

// Runs n single-row transactions and returns their commit latencies in ms.
std::vector<double> write_rows(Db& db, int n) {
    std::vector<double> ms;
    for (int i = 0; i < n; i++) {
        auto t0 = std::chrono::steady_clock::now();
        db.exec("insert into t(v) values(randomblob(200))");
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    return ms;
}

// Creates the test table, commits n rows and waits until they are in the bucket.
void rows_in_bucket(Db& db, int n) {
    db.exec("create table t(id integer primary key, v blob)");
    write_rows(db, n);
    REQUIRE(db.text("pragma walship_flush") == "ok");
}

// Flips one bit of the byte at `at` in a file (a damaged spill record).
void flip_byte(const std::string& path, long long at) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(at);
    char c = 0;
    f.read(&c, 1);
    f.seekp(at);
    c = char(c ^ 0x20);
    f.write(&c, 1);
}

// Peak resident memory since the last reset_peak_rss() (Linux: /proc/self/status VmHWM), in bytes.
long long peak_rss() {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
    return -1;
}
void reset_peak_rss() { std::ofstream("/proc/self/clear_refs") << "5"; }

long long file_size(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

size_t generations(const std::string& url) {
    auto store = s3::open_store(url, test::env());
    REQUIRE(store.ok());
    auto gens = list_generations(*store.value());
    REQUIRE(gens.ok());
    return gens->size();
}

// Restores the latest state and compares it with the database page by page; returns its path.
std::string restore_and_compare(const std::string& url, const std::string& path) {
    auto store = s3::open_store(url, test::env());
    REQUIRE(store.ok());
    RestoreOptions opt;
    opt.output = temp_dir() + "/restored.db";
    auto r = restore(*store.value(), opt);
    REQUIRE(r.ok());
    CHECK(compare_pages(path, opt.output, 4096) == "");
    return opt.output;
}

}  // namespace

TEST_CASE("store down, then failing with 500s and stalls: no error reaches the app, nothing is lost", "[outage][integration]") {
    Proxy& proxy = Proxy::get();
    proxy.reset();
    std::string url = Proxy::get().new_url();
    std::string path = temp_dir() + "/outage.db";
    std::vector<double> before, during, after;
    {
        Db db(uri(path, url, "sync_interval=100"));
        db.exec("create table t(id integer primary key, v blob)");
        before = write_rows(db, 300);
        REQUIRE(db.text("pragma walship_flush") == "ok");

        proxy.fault("reset", 1000000);  // the store is down: every connection is dropped
        during = write_rows(db, 300);
        std::this_thread::sleep_for(std::chrono::milliseconds(1500));
        auto more = write_rows(db, 300);
        during.insert(during.end(), more.begin(), more.end());
        std::string status = db.text("pragma walship_status");
        INFO(status);
        CHECK(status.find("\"last_error\":\"\"") == std::string::npos);
        CHECK(status.find("\"pending_frames\":0,") == std::string::npos);
        std::string err;
        CHECK(db.try_exec("pragma walship_flush=300", &err) != SQLITE_OK);
        // Checkpoints keep working: a TRUNCATE resets the WAL at once, its unshipped frames wait
        // in the spill file.
        CHECK(db.text("pragma wal_checkpoint(TRUNCATE)") == "0");
        CHECK(file_size(path + "-wal") == 0);
        CHECK(status_field(db, "spill_bytes") > 0);

        proxy.reset();  // back, but flaky: 500s, SlowDown and stalls for a while
        proxy.fault("500", 3);
        proxy.fault("503", 3);
        proxy.fault("stall", 1);
        after = write_rows(db, 300);
        REQUIRE(db.text("pragma walship_flush=60000") == "ok");
        CHECK(db.text("pragma walship_status").find("\"last_error\":\"\"") != std::string::npos);
        CHECK(db.integer("select count(*) from t") == 1200);
    }
    restore_and_compare(url, path);
    printf("outage: commit p99 %.2f ms with the store up, %.2f ms while it was down, %.2f ms while it was flaky\n", p99(before), p99(during), p99(after));
}

TEST_CASE("store down: the WAL still resets like plain SQLite's, unshipped frames wait in the spill file and ship in the same generation", "[outage][spill][integration]") {
    Proxy& proxy = Proxy::get();
    proxy.reset();
    std::string url = Proxy::get().new_url();
    std::string path = temp_dir() + "/spill.db";
    {
        Db db(uri(path, url, "sync_interval=100"));
        db.exec("pragma wal_autocheckpoint=50");
        rows_in_bucket(db, 10);
        proxy.fault("reset", 1000000);
        long long max_wal = 0;
        for (int i = 0; i < 40; i++) {
            write_rows(db, 50);
            max_wal = std::max(max_wal, file_size(path + "-wal"));
        }
        std::string status = db.text("pragma walship_status");
        INFO(status);
        // 2,000 commits of one or two frames each: about 40 resets at 50 frames. Held resets
        // would have grown the WAL past 8 MB.
        CHECK(max_wal < 100 * 4120);
        // The spill keeps the last version of each page per reset, not every frame (8 MB here).
        CHECK(status_field(db, "spill_bytes") > 20 * 4096);
        CHECK(status_field(db, "spill_bytes") < 2000000);
        CHECK(file_size(path + "-walship-spill") >= status_field(db, "spill_bytes"));
        // The database shrinks (pages past the new end must not come back), then more resets.
        db.exec("delete from t where id % 3 = 0");
        db.exec("vacuum");
        CHECK(db.text("pragma wal_checkpoint(TRUNCATE)") == "0");
        write_rows(db, 100);
        proxy.reset();
        REQUIRE(db.text("pragma walship_flush=60000") == "ok");
        CHECK(status_field(db, "spill_bytes") == 0);
        CHECK(file_size(path + "-walship-spill") == 0);
        CHECK(db.integer("select count(*) from t") == 2010 - 670 + 100);
    }
    restore_and_compare(url, path);
    CHECK(generations(url) == 1);
}

TEST_CASE("a large transaction streaming from the WAL when a reset spills it and new frames overwrite it: the upload is abandoned, the spill ships it", "[outage][spill][integration]") {
    Proxy& proxy = Proxy::get();
    proxy.reset();
    std::string url = Proxy::get().new_url();
    std::string path = temp_dir() + "/large-race.db";
    {
        Db db(uri(path, url, "sync_interval=100"));
        db.exec("pragma wal_autocheckpoint=0");
        rows_in_bucket(db, 10);
        proxy.reset();
        // 40 MB in one transaction: its segment is streamed as a multipart upload whose first
        // request (once 16 MiB of it are compressed) is answered 3 s late. Meanwhile the WAL is
        // checkpointed and reset (walship spills the transaction first) and written over.
        proxy.fault("delay", 1);
        db.exec("insert into t(v) select randomblob(4000) from " + series(10000));
        bool started = false;
        for (int i = 0; i < 200 && !started; i++) {
            std::vector<std::string> lines;
            proxy.requests(&lines);
            for (auto& l : lines) started = started || (l.rfind("POST ", 0) == 0 && l.find("uploads") != std::string::npos);
            if (!started) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        REQUIRE(started);
        CHECK(db.text("pragma wal_checkpoint(TRUNCATE)") == "0");
        write_rows(db, 300);
        REQUIRE(db.text("pragma walship_flush=60000") == "ok");
        CHECK(status_field(db, "spill_bytes") == 0);
        CHECK(db.integer("select count(*) from t") == 10310);
        std::vector<std::string> lines;
        proxy.requests(&lines);
        bool aborted = false;
        for (auto& l : lines) aborted = aborted || (l.rfind("DELETE ", 0) == 0 && l.find("uploadId=") != std::string::npos);
        CHECK(aborted);  // the streamed upload was abandoned, not completed with overwritten pages
    }
    restore_and_compare(url, path);
    CHECK(generations(url) == 1);
}

TEST_CASE("a spill record of a WAL past the wal-index's first 32 KiB region (over 4,062 frames) restores exactly", "[outage][spill][integration]") {
    Proxy& proxy = Proxy::get();
    proxy.reset();
    std::string url = Proxy::get().new_url();
    std::string path = temp_dir() + "/bigspill.db";
    {
        Db db(uri(path, url, "sync_interval=100"));
        db.exec("pragma wal_autocheckpoint=0");
        rows_in_bucket(db, 10);
        proxy.fault("reset", 1000000);
        db.exec("create index tv on t(v)");
        write_rows(db, 6000);  // several frames per commit (table and index): well past 8,158 frames
        db.exec("update t set v = randomblob(300) where id % 7 = 0");
        CHECK(file_size(path + "-wal") > 8200LL * 4120);
        CHECK(db.text("pragma wal_checkpoint(TRUNCATE)") == "0");
        CHECK(status_field(db, "spill_bytes") > 0);
        proxy.reset();
        REQUIRE(db.text("pragma walship_flush=60000") == "ok");
        CHECK(db.integer("select count(*) from t") == 6010);
    }
    restore_and_compare(url, path);
    CHECK(generations(url) == 1);
}

TEST_CASE("the spill file cannot be written (as on a full disk): WAL resets are held instead, the app sees no error, nothing is lost", "[outage][spill][integration]") {
    Proxy& proxy = Proxy::get();
    proxy.reset();
    std::string url = Proxy::get().new_url();
    std::string path = temp_dir() + "/nospill.db";
    {
        Db db(uri(path, url, "sync_interval=100"));
        db.exec("pragma wal_autocheckpoint=50");
        rows_in_bucket(db, 10);
        REQUIRE(::mkdir((path + "-walship-spill").c_str(), 0755) == 0);  // open(O_RDWR) fails: EISDIR
        proxy.fault("reset", 1000000);
        write_rows(db, 500);
        CHECK(db.text("pragma wal_checkpoint(TRUNCATE)") == "1");  // busy: the reset is held
        CHECK(file_size(path + "-wal") > 100 * 4120);
        CHECK(status_field(db, "wal_reset_held_ms") > 0);
        CHECK(db.text("pragma walship_status").find("\"needs_snapshot\":false") != std::string::npos);
        ::rmdir((path + "-walship-spill").c_str());
        proxy.reset();
        REQUIRE(db.text("pragma walship_flush=60000") == "ok");
        CHECK(db.text("pragma wal_checkpoint(TRUNCATE)") == "0");
        CHECK(file_size(path + "-wal") == 0);
        CHECK(db.integer("select count(*) from t") == 510);
    }
    restore_and_compare(url, path);
    CHECK(generations(url) == 1);
}

TEST_CASE("a full disk when the side file an older walship made (4 KiB) must grow: the database replicates without commit-time slots, and nothing crashes", "[outage][integration]") {
    // A small tmpfs, filled: a store into a mapped page that the file system cannot back is
    // SIGBUS. Needs root to mount.
    const std::string dir = temp_dir() + "/tiny-fs";
    ::mkdir(dir.c_str(), 0755);
    if (std::system(("mount -t tmpfs -o size=1m tmpfs '" + dir + "' 2>/dev/null").c_str()) != 0) {
        WARN("cannot mount a tmpfs here (not root?): not tested");
        return;
    }
    struct Unmount {
        std::string dir;
        ~Unmount() { (void)std::system(("umount -l '" + dir + "'").c_str()); }
    } unmount{dir};
    std::string url = new_s3_url();
    const std::string path = dir + "/db";
    // Plain SQLite made the database; its WAL file keeps its size (later commits overwrite it), and
    // its connection stays open, so the -shm file stays too.
    auto plain_db = std::make_unique<Db>(path, "unix");
    Db& plain = *plain_db;
    int persist = 1;
    REQUIRE(sqlite3_file_control(plain.get(), "main", SQLITE_FCNTL_PERSIST_WAL, &persist) == SQLITE_OK);
    plain.exec("pragma journal_mode=wal");
    plain.exec("create table t(id integer primary key, v blob)");
    plain.exec("insert into t(v) select randomblob(1000) from " + series(100));
    REQUIRE(plain.text("pragma wal_checkpoint(TRUNCATE)") == "0");
    plain.exec("insert into t(v) select randomblob(1000) from " + series(40));  // a WAL of 40-odd pages
    REQUIRE(plain.text("pragma wal_checkpoint(PASSIVE)") == "0");
    {
        // The side file as an older walship left it: 4 KiB, its magic, nothing shipped.
        std::string side(4096, '\0');
        memcpy(&side[0], kSideMagic, 8);
        std::ofstream(path + "-walship", std::ios::binary).write(side.data(), long(side.size()));
    }
    {
        std::ofstream filler(dir + "/filler", std::ios::binary);
        std::string block(4096, 'x');
        while (filler.write(block.data(), long(block.size())) && filler.flush()) {
        }
    }
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        alarm(60);
        int code = 0;
        sqlite3* db = nullptr;
        auto step = [&](const char* sql, int fail_code) {
            if (code == 0 && sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
                fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
                code = fail_code;
            }
        };
        if (sqlite3_open_v2(uri(path, url).c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, "walship") != SQLITE_OK) {
            fprintf(stderr, "open: %s\n", sqlite3_errmsg(db));
            _exit(3);
        }
        step("pragma walship_flush", 4);
        step("pragma wal_checkpoint(RESTART)", 5);  // the next commit overwrites the WAL from its start
        step("insert into t(v) values(randomblob(500))", 6);
        step("insert into t(v) values(randomblob(500))", 7);
        step("pragma walship_flush", 8);
        sqlite3_close(db);
        _exit(code);
    }
    int status = 0;
    waitpid(child, &status, 0);
    INFO("child: " << (WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status)) : "exit " + std::to_string(WEXITSTATUS(status))));
    REQUIRE((WIFEXITED(status) && WEXITSTATUS(status) == 0));
    CHECK(plain.integer("select count(*) from t") == 142);
    {
        // A new database on the full disk: its side file cannot be made, and the open says so.
        sqlite3* db = nullptr;
        int rc = sqlite3_open_v2(uri(dir + "/new.db", new_s3_url()).c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, "walship");
        std::string msg = sqlite3_errmsg(db);
        sqlite3_close(db);
        CHECK(rc != SQLITE_OK);
        CHECK(msg.find("new.db-walship") != std::string::npos);
        CHECK(msg.find("No space left on device") != std::string::npos);
    }
    ::unlink((dir + "/filler").c_str());
    plain_db.reset();  // the last connection: its close checkpoints the WAL into the database file
    restore_and_compare(url, path);
}

TEST_CASE("a restart with frames waiting in the spill file continues the generation, a damaged spill file starts a new one", "[outage][spill][integration]") {
    Proxy& proxy = Proxy::get();
    for (bool damage : {false, true}) {
        INFO((damage ? "damaged spill" : "intact spill"));
        proxy.reset();
        std::string url = Proxy::get().new_url();
        std::string path = temp_dir() + (damage ? "/spill-bad.db" : "/spill-ok.db");
        {
            Db db(uri(path, url, "sync_interval=100&close_timeout=200"));
            db.exec("pragma wal_autocheckpoint=50");
            db.exec("create table t(id integer primary key, v blob)");
            write_rows(db, 10);
            REQUIRE(db.text("pragma walship_flush") == "ok");
            proxy.fault("reset", 1000000);
            write_rows(db, 1000);
            CHECK(status_field(db, "spill_bytes") > 0);
        }  // closes without reaching the store: the spill file and the WAL stay
        long long spill = file_size(path + "-walship-spill");
        REQUIRE(spill > 64 + 4120);
        if (damage) {
            flip_byte(path + "-walship-spill", spill / 2);
        }
        proxy.reset();
        {
            Db db(uri(path, url, "sync_interval=100"));
            write_rows(db, 10);
            REQUIRE(db.text("pragma walship_flush=60000") == "ok");
            CHECK(status_field(db, "spill_bytes") == 0);
            CHECK(db.integer("select count(*) from t") == 1020);
        }
        restore_and_compare(url, path);
        CHECK(generations(url) == (damage ? 2u : 1u));
    }
}

TEST_CASE("spill records shipped but not marked so (the shipper died): the next process marks them, and its flush returns", "[outage][spill][integration]") {
    use_walship();
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/stale-spill.db";
    std::string spilled;
    for (bool wal_kept : {true, false}) {
        INFO((wal_kept ? "the WAL continues the replica" : "the database equals the replica"));
        std::unique_ptr<Db> holder;  // a plain connection: the WAL outlives walship's last one
        {
            Db db(uri(path, url, "sync_interval=60s"));
            db.exec("create table if not exists t(id integer primary key, v blob)");
            if (wal_kept) holder = std::make_unique<Db>(path, nullptr);
            REQUIRE(db.text("pragma walship_flush") == "ok");
            for (int i = 0; i < 20; i++) db.exec("insert into t(v) values(randomblob(500))");  // paced: not shipped yet
            REQUIRE(db.text("pragma wal_checkpoint(TRUNCATE)") == "0");                        // the reset spills them
            REQUIRE(status_field(db, "spill_bytes") > 0);
            std::ifstream f(path + "-walship-spill", std::ios::binary);
            spilled.assign(std::istreambuf_iterator<char>(f), {});
            db.exec("insert into t(v) values(randomblob(500))");
            REQUIRE(db.text("pragma walship_flush") == "ok");  // ships the spill, then the new WAL
            CHECK(status_field(db, "spill_bytes") == 0);
        }
        CHECK(file_size(path + "-walship-spill") == 0);
        // As if the shipping process had died after uploading the records and publishing its
        // position, before it marked them shipped: they are back, counted as unshipped.
        std::ofstream(path + "-walship-spill", std::ios::binary) << spilled;
        {
            int fd = ::open((path + "-walship").c_str(), O_RDWR);
            REQUIRE(fd >= 0);
            void* m = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            REQUIRE(m != MAP_FAILED);
            auto* side = static_cast<SideState*>(m);
            side->spill_len = spilled.size();
            side->spill_shipped = 0;
            munmap(m, 4096);
            ::close(fd);
        }
        {
            Db db(uri(path, url, "flush_timeout=5000"));
            db.exec("insert into t(v) values(randomblob(500))");
            std::string err;
            CHECK(db.try_exec("pragma walship_flush", &err) == SQLITE_OK);
            INFO(err);
            CHECK(status_field(db, "spill_bytes") == 0);
        }
        holder.reset();
        CHECK(file_size(path + "-walship-spill") == 0);
        restore_and_compare(url, path);
        CHECK(generations(url) == 1u);
    }
}

TEST_CASE("a spill record larger than a segment ships streamed from the spill file: little memory, exact restore, a damaged one starts a new generation", "[outage][spill][integration]") {
    Proxy& proxy = Proxy::get();
    for (bool damage : {false, true}) {
        INFO((damage ? "damaged record" : "intact record"));
        proxy.reset();
        std::string url = Proxy::get().new_url();
        std::string path = temp_dir() + (damage ? "/bigrec-bad.db" : "/bigrec-ok.db");
        Db db(uri(path, url, "sync_interval=100"));
        db.exec("pragma wal_autocheckpoint=0");
        rows_in_bucket(db, 10);
        proxy.fault("reset", 1000000);
        // About 100 MB of pages in one transaction (zeros: they compress to little, so what the
        // upload buffers stays small and the pages themselves are what memory would show).
        db.exec("insert into t(v) select zeroblob(4000) from " + series(25000));
        write_rows(db, 5);
        CHECK(db.text("pragma wal_checkpoint(TRUNCATE)") == "0");  // one record: the large transaction and the five
        write_rows(db, 5);
        CHECK(db.text("pragma wal_checkpoint(TRUNCATE)") == "0");  // a second, small record
        long long spill = file_size(path + "-walship-spill");
        REQUIRE(spill > 100000000LL);
        if (damage) {
            flip_byte(path + "-walship-spill", spill / 2);
        }
        reset_peak_rss();
        const long long before = peak_rss();
        proxy.reset();
        REQUIRE(db.text("pragma walship_flush=60000") == "ok");
        const long long grew = peak_rss() - before;
        CHECK(status_field(db, "spill_bytes") == 0);
        CHECK(db.integer("select count(*) from t") == 25020);
#if !defined(__SANITIZE_ADDRESS__)  // ASan keeps freed memory in quarantine
        INFO("peak RSS grew by " << grew << " bytes while shipping the spill");
        CHECK(grew < 40000000LL);  // held whole, the record's pages alone would be 100 MB
#else
        (void)grew;
#endif
        restore_and_compare(url, path);
        CHECK(generations(url) == (damage ? 2u : 1u));
    }
}

TEST_CASE("a long outage past max_wal_size: the WAL is released, a new generation follows, restore is exact", "[outage][integration]") {
    Proxy& proxy = Proxy::get();
    proxy.reset();
    std::string url = Proxy::get().new_url();
    std::string path = temp_dir() + "/cap.db";
    {
        Db db(uri(path, url, "sync_interval=100&max_wal_size=1048576"));
        db.exec("pragma wal_autocheckpoint=100");
        rows_in_bucket(db, 10);
        proxy.fault("503", 1000000);
        for (int i = 0; i < 60; i++) db.exec("insert into t(v) values(randomblob(60000))");  // ~4 MB of WAL
        std::string status = db.text("pragma walship_status");
        INFO(status);
        CHECK(status.find("\"needs_snapshot\":true") != std::string::npos);
        proxy.reset();
        REQUIRE(db.text("pragma walship_flush=60000") == "ok");
        CHECK(db.text("pragma walship_status").find("\"needs_snapshot\":false") != std::string::npos);
    }
    restore_and_compare(url, path);
    auto store = s3::open_store(url, test::env());
    auto gens = list_generations(*store.value());
    REQUIRE(gens.ok());
    // One more, or two: a snapshot whose state was read while the writes still reset the WAL past
    // the cap is followed by another (its upload cannot cover the frames of those resets).
    CHECK(gens->size() >= 2);
    CHECK(gens->size() <= 3);
}

TEST_CASE("the store comes back from an outage without the generation's snapshot (restarted without its data): a new generation starts, and the replica restores", "[outage][integration]") {
    Proxy& proxy = Proxy::get();
    proxy.reset();
    std::string url = Proxy::get().new_url();
    std::string bucket = url.substr(5, url.find('/', 5) - 5);
    std::string path = temp_dir() + "/lost.db";
    {
        Db db(uri(path, url, "sync_interval=100"));
        rows_in_bucket(db, 10);
        proxy.fault("503", 1000000);  // down
        write_rows(db, 10);
        std::this_thread::sleep_for(std::chrono::milliseconds(3000));  // past the client's own retries: an upload failed
        // Meanwhile the store lost everything (deleted straight at the server, not through the proxy).
        auto direct = s3::open_store("s3://" + bucket + "/db?endpoint=" + test::endpoint() + "&region=us-east-1", test::env());
        REQUIRE(direct.ok());
        auto listing = direct.value()->list("generations/");
        REQUIRE(listing.ok());
        REQUIRE(!listing->objects.empty());
        for (auto& o : listing->objects) REQUIRE(direct.value()->remove(o.key).ok());
        proxy.reset();  // back, empty
        write_rows(db, 10);
        REQUIRE(db.text("pragma walship_flush=60000") == "ok");
    }
    CHECK(generations(url) == 1);  // a new one: the old one's objects are gone
    restore_and_compare(url, path);
}

TEST_CASE("the store loses everything while no upload fails (a quiet outage): the retention listing notices, a new generation starts, and the replica restores", "[outage][integration]") {
    std::string url = Proxy::get().new_url();
    std::string bucket = url.substr(5, url.find('/', 5) - 5);
    std::string path = temp_dir() + "/quiet-lost.db";
    {
        Db db(uri(path, url, "sync_interval=100&retention_check_interval=1s&durability=remote"));
        db.exec("create table t(id integer primary key, v blob)");
        write_rows(db, 10);
        auto direct = s3::open_store("s3://" + bucket + "/db?endpoint=" + test::endpoint() + "&region=us-east-1", test::env());
        REQUIRE(direct.ok());
        auto listing = direct.value()->list("generations/");
        REQUIRE(listing.ok());
        for (auto& o : listing->objects) REQUIRE(direct.value()->remove(o.key).ok());
        std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // a retention run
        write_rows(db, 10);  // durability=remote: each returns once in the bucket, after the new snapshot
    }
    CHECK(generations(url) == 1);
    restore_and_compare(url, path);
}

TEST_CASE("the store unreachable from the open to the close: the close leaves the WAL unapplied, and the next open continues the same generation", "[outage][integration]") {
    Proxy& proxy = Proxy::get();
    proxy.reset();
    std::string url = Proxy::get().new_url();
    std::string path = temp_dir() + "/down-open-close.db";
    {
        Db db(uri(path, url));
        rows_in_bucket(db, 10);
    }
    proxy.fault("503", 1000000);  // down before the next open, until after its close
    {
        Db db(uri(path, url, "close_timeout=1s"));
        write_rows(db, 20);
    }
    proxy.reset();
    {
        Db db(uri(path, url));
        CHECK(db.integer("select count(*) from t") == 30);
        REQUIRE(db.text("pragma walship_flush=30000") == "ok");
    }
    CHECK(generations(url) == 1);  // the close's checkpoint had erased the proof: a second generation
    restore_and_compare(url, path);
}

// A writer killed with the store down after a WAL reset spilled its frames and after the next
// WAL's header was written, before its first frame; then, optionally, an older copy of the
// database put back with its old time.
void killed_after_spill_then_reopen(bool put_back_old_copy) {
    Proxy& proxy = Proxy::get();
    proxy.reset();
    std::string url = Proxy::get().new_url();
    std::string path = temp_dir() + "/header-only.db";
    {
        Db db(uri(path, url));
        rows_in_bucket(db, 10);
    }
    const std::string old_copy = temp_dir() + "/old-copy.db";
    REQUIRE(std::system(("cp -p '" + path + "' '" + old_copy + "'").c_str()) == 0);
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        alarm(30);
        sqlite3* db = nullptr;
        int rc = sqlite3_open_v2(uri(path, url).c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, "walship");
        if (rc == SQLITE_OK) rc = sqlite3_exec(db, "insert into t(v) values(randomblob(200)); pragma walship_flush", nullptr, nullptr, nullptr);
        try {
            proxy.fault("503", 1000000);  // down once this process ships
        } catch (...) {
            _exit(2);
        }
        int step = 0;
        for (int i = 0; i < 20 && rc == SQLITE_OK; i++, step++) rc = sqlite3_exec(db, "insert into t(v) values(randomblob(200))", nullptr, nullptr, nullptr);
        // The reset spills the unshipped frames, and the WAL is cut to nothing.
        if (rc == SQLITE_OK) rc = sqlite3_exec(db, "pragma wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr);
        if (rc != SQLITE_OK) fprintf(stderr, "child: step %d: %s (%d)\n", step, sqlite3_errmsg(db), sqlite3_extended_errcode(db));
        _exit(rc == SQLITE_OK ? 0 : 1);  // no close: as SIGKILL leaves it
    }
    int status = 0;
    waitpid(child, &status, 0);
    REQUIRE((WIFEXITED(status) && WEXITSTATUS(status) == 0));
    REQUIRE(file_size(path + "-walship-spill") > 0);
    REQUIRE(file_size(path + "-wal") == 0);
    // The next writer wrote the new WAL's header (salt-1 one past the spilled WAL's: the
    // wal-index header shows it) and was killed before its first frame.
    uint32_t shm_salt1 = 0;
    {
        std::ifstream shm(path + "-shm", std::ios::binary);
        shm.seekg(32);  // aSalt[0] of the wal-index header, native byte order
        REQUIRE(shm.read(reinterpret_cast<char*>(&shm_salt1), 4));
    }
    unsigned char hdr[32] = {};
    auto be32 = [&](int at, uint32_t v) {
        for (int i = 0; i < 4; i++) hdr[at + i] = uint8_t(v >> (24 - 8 * i));
    };
    be32(0, 0x377f0682), be32(4, 3007000), be32(8, 4096), be32(12, 1), be32(16, shm_salt1), be32(20, 0x12345678);
    std::ofstream(path + "-wal", std::ios::binary).write(reinterpret_cast<const char*>(hdr), sizeof hdr);
    if (put_back_old_copy) {
        // An older copy of the database put back with its old modification time (cp -p): the
        // spill no longer leads to it.
        REQUIRE(std::system(("cp -p '" + old_copy + "' '" + path + "' && touch -d '1 hour ago' '" + path + "'").c_str()) == 0);
    }
    proxy.reset();
    {
        Db db(uri(path, url));
        CHECK(db.integer("select count(*) from t") == (put_back_old_copy ? 10 : 31));
        write_rows(db, 5);
        REQUIRE(db.text("pragma walship_flush=30000") == "ok");
    }
    CHECK(generations(url) == (put_back_old_copy ? 2 : 1));
    restore_and_compare(url, path);
}

TEST_CASE("killed, store down, after a reset spilled and the next WAL's header (no frame) was written: the next open continues the generation", "[outage][spill][integration]") {
    killed_after_spill_then_reopen(false);  // a second generation without the fix
}

TEST_CASE("as above, then an older copy of the database put back with its old modification time: a new generation, equal to it", "[outage][spill][integration]") {
    killed_after_spill_then_reopen(true);  // by modification time the spill continued it: the replica differed
}

TEST_CASE("the store loses everything during a quiet minute (no request fails): the next upload notices, a new generation starts, and the replica restores", "[outage][integration]") {
    std::string url = Proxy::get().new_url();
    std::string bucket = url.substr(5, url.find('/', 5) - 5);
    std::string path = temp_dir() + "/quiet-minute.db";
    {
        Db db(uri(path, url, "sync_interval=100"));  // retention's hourly listing does not come in time
        rows_in_bucket(db, 10);
        auto direct = s3::open_store("s3://" + bucket + "/db?endpoint=" + test::endpoint() + "&region=us-east-1", test::env());
        REQUIRE(direct.ok());
        auto listing = direct.value()->list("generations/");
        REQUIRE(listing.ok());
        REQUIRE(!listing->objects.empty());
        for (auto& o : listing->objects) REQUIRE(direct.value()->remove(o.key).ok());
        std::this_thread::sleep_for(std::chrono::seconds(62));  // quiet: no upload, no failed request
        write_rows(db, 10);
        REQUIRE(db.text("pragma walship_flush=60000") == "ok");
    }
    CHECK(generations(url) == 1);  // a new one (a segment in the old one would follow a snapshot that is gone)
    restore_and_compare(url, path);
}

TEST_CASE("durability=remote: concurrent COMMITs share uploads, and when the store stays down COMMIT fails but the transaction stays committed and ships later", "[outage][remote][integration]") {
    Proxy& proxy = Proxy::get();
    proxy.reset();
    std::string url = Proxy::get().new_url();
    std::string path = temp_dir() + "/group.db";
    {
        Db db(uri(path, url, "durability=remote&flush_timeout=700"));
        db.exec("create table t(id integer primary key, who int, n int)");
        auto before = proxy.requests();
        db.exec("insert into t(who, n) values(-1, 0)");
        CHECK(proxy.requests() > before);  // the commit itself waited for an upload
        auto t_one = std::chrono::steady_clock::now();
        for (int i = 0; i < 25; i++) db.exec("insert into t(who, n) values(-1, " + std::to_string(i + 1) + ")");
        double one_rate = 25 / std::chrono::duration<double>(std::chrono::steady_clock::now() - t_one).count();

        // 8 connections commit 25 transactions each at once: each COMMIT returns only once its
        // transaction is in the bucket, and commits made while an upload is in flight share the next.
        constexpr int kThreads = 8, kEach = 25;
        std::vector<std::string> lines_before;
        proxy.requests(&lines_before);
        std::atomic<int> failures{0};
        std::vector<std::thread> threads;
        auto t0 = std::chrono::steady_clock::now();
        for (int w = 0; w < kThreads; w++) {
            threads.emplace_back([&, w] {
                Db c(uri(path, url, "durability=remote&flush_timeout=10000"));
                c.exec("pragma synchronous=NORMAL");  // what Django apps set; the wait does not need FULL
                for (int i = 0; i < kEach; i++)
                    if (c.try_exec("insert into t(who, n) values(" + std::to_string(w) + ", " + std::to_string(i) + ")") != SQLITE_OK) failures++;
            });
        }
        for (auto& t : threads) t.join();
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::vector<std::string> lines;
        proxy.requests(&lines);
        long puts = 0;
        for (size_t i = lines_before.size(); i < lines.size(); i++) puts += lines[i].rfind("PUT ", 0) == 0;
        std::printf("durability=remote: one connection %.0f commits/s; %d connections x %d commits: %ld PUTs, %.0f commits/s\n", one_rate,
                    kThreads, kEach, puts, kThreads * kEach / secs);
        CHECK(failures == 0);
        CHECK(db.integer("select count(*) from t") == 26 + kThreads * kEach);
        CHECK(puts > 0);
        CHECK(puts < kThreads * kEach / 2);  // group commit: far fewer uploads than commits

        proxy.fault("reset", 1000000);
        std::string err;
        auto t1 = std::chrono::steady_clock::now();
        CHECK(db.try_exec("insert into t(who, n) values(-2, 0)", &err) != SQLITE_OK);
        INFO(err);
        CHECK(std::chrono::steady_clock::now() - t1 < std::chrono::seconds(5));  // the timeout ends the wait
        // Committed locally, and visible to every connection: it was not lost, and it ships later.
        CHECK(db.integer("select count(*) from t where who = -2") == 1);
        Db reader(path, "unix", SQLITE_OPEN_READONLY);
        CHECK(reader.integer("select count(*) from t where who = -2") == 1);
        // The connection is usable: a read-only statement works and the next COMMIT reports too.
        CHECK(db.try_exec("insert into t(who, n) values(-3, 0)") != SQLITE_OK);
        CHECK(db.integer("select count(*) from t where who < -1") == 2);
        CHECK(status_field(db, "unconfirmed_commits") == 2);
        // Durability is per connection: a local-durability connection does not wait meanwhile.
        Db local(uri(path, url, "durability=local"));
        local.exec("insert into t(who, n) values(-5, 0)");
        proxy.reset();
        // The store is back: the two unconfirmed transactions ship (an upload that was retrying
        // against the dead store may need its own backoff first, longer than this connection's
        // 700 ms flush_timeout on a loaded machine), then the next COMMIT is confirmed at once.
        REQUIRE(db.text("pragma walship_flush=10000") == "ok");
        db.exec("insert into t(who, n) values(-4, 0)");
        CHECK(db.integer("select count(*) from t") == 30 + kThreads * kEach);
    }
    Db r(restore_and_compare(url, path), nullptr, SQLITE_OPEN_READONLY);
    CHECK(r.integer("select count(*) from t where who < -1") == 4);
}

TEST_CASE("durability=remote-strict: COMMIT waits for the bucket before it is visible, and when the store stays down it fails and nothing becomes visible", "[outage][remote][integration]") {
    Proxy& proxy = Proxy::get();
    proxy.reset();
    std::string url = Proxy::get().new_url();
    std::string path = temp_dir() + "/remote.db";
    {
        Db db(uri(path, url, "durability=remote-strict&flush_timeout=700"));
        std::string sync_err;
        CHECK(db.try_exec("pragma synchronous=NORMAL", &sync_err) != SQLITE_OK);
        CHECK(sync_err.find("synchronous=FULL") != std::string::npos);
        db.exec("create table t(id integer primary key, v text)");
        db.exec("insert into t(v) values('durable 1')");
        auto puts_before = proxy.requests();
        db.exec("insert into t(v) values('durable 2')");
        CHECK(proxy.requests() > puts_before);  // the commit itself waited for an upload
        proxy.fault("reset", 1000000);
        std::string err;
        CHECK(db.try_exec("insert into t(v) values('never confirmed')", &err) != SQLITE_OK);
        INFO(err);
        CHECK(db.integer("select count(*) from t where v = 'never confirmed'") == 0);
        Db reader(path, "unix", SQLITE_OPEN_READONLY);
        CHECK(reader.integer("select count(*) from t") == 2);
        proxy.reset();
        // The store is back; the client's retries and the new snapshot (the failed commit's
        // upload may have landed) take a moment, so the application retries, as it would.
        int attempts = 0;
        while (db.try_exec("insert into t(v) values('durable 3')") != SQLITE_OK && ++attempts < 30)
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
        CHECK(attempts < 30);
        CHECK(db.integer("select count(*) from t") == 3);
        CHECK(db.integer("select count(*) from t where v = 'never confirmed'") == 0);
    }
    restore_and_compare(url, path);
}

TEST_CASE("durability=remote-strict: a commit that failed stays rolled back when the WAL is recovered after a crash or a close", "[outage][remote][integration]") {
    Proxy& proxy = Proxy::get();
    proxy.reset();
    for (bool crash : {true, false}) {
        INFO((crash ? "crash" : "close"));
        proxy.reset();
        std::string url = Proxy::get().new_url();
        std::string path = temp_dir() + "/strict-gone.db";
        pid_t child = fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            alarm(60);
            int code = 0;
            {
                Db db(uri(path, url, "durability=remote-strict&flush_timeout=700&close_timeout=700"));
                db.exec("create table t(v text)");
                db.exec("insert into t values('durable')");
                proxy.fault("reset", 1000000);
                if (db.try_exec("insert into t values('rolled back')") == SQLITE_OK) code = 3;  // it was to fail
                if (db.integer("select count(*) from t") != 1) code = 4;
                if (crash) _exit(code);  // the WAL and the wal-index as a crash leaves them
            }
            _exit(code);
        }
        int status = 0;
        waitpid(child, &status, 0);
        proxy.reset();
        REQUIRE(WIFEXITED(status));
        REQUIRE(WEXITSTATUS(status) == 0);
        // SQLite's recovery rebuilds the wal-index from the WAL: the rolled-back frames were whole
        // and synced, and came back as a committed transaction (then shipped by the next open).
        {
            Db plain(path, "unix");
            CHECK(plain.integer("select count(*) from t where v = 'rolled back'") == 0);
            CHECK(plain.text("pragma integrity_check") == "ok");
        }
        Db db(uri(path, url));
        CHECK(db.integer("select count(*) from t") == 1);
        REQUIRE(db.text("pragma walship_flush=30000") == "ok");
    }
}

TEST_CASE("lag_ms counts while nothing can ship: a store down from the open (no generation to continue yet)", "[outage][integration]") {
    Proxy& proxy = Proxy::get();
    proxy.reset();
    std::string url = Proxy::get().new_url();
    std::string path = temp_dir() + "/lag-down.db";
    {
        Db db(uri(path, url));
        db.exec("create table t(v text)");
        REQUIRE(db.text("pragma walship_flush") == "ok");
    }
    proxy.fault("503", 1000000);
    {
        Db db(uri(path, url, "close_timeout=500"));
        db.exec("insert into t values('waits')");
        std::this_thread::sleep_for(std::chrono::milliseconds(4000));
        db.exec("insert into t values('waits too')");
        const std::string status = db.text("pragma walship_status");
        INFO(status);
        CHECK(json_number(status, "pending_txns") >= 2);
        // It read 0 while the resume failed. It counts from when the shipper first saw the
        // transaction (its first pass after the resume's retries): at least 1.5 s of the 4.
        CHECK(json_number(status, "lag_ms") >= 1500);
    }
    proxy.reset();
    {
        Db db(uri(path, url));
        CHECK(db.integer("select count(*) from t") == 2);  // (a connection that reads checkpoints at its close)
        REQUIRE(db.text("pragma walship_flush=30000") == "ok");
    }
    restore_and_compare(url, path);
}

TEST_CASE("wrong credentials: the app keeps working, status and flush name the access error, no secret is shown", "[outage][integration]") {
    Proxy& proxy = Proxy::get();
    proxy.reset();
    std::string url = Proxy::get().new_url();
    std::string path = temp_dir() + "/creds.db";
    {
        Db plain(path, nullptr);
        plain.exec("create table t(id integer primary key, v blob)");
    }
    proxy.fault("403", 1000000);  // what S3 answers a wrong key or secret
    {
        Db db(uri(path, url, "flush_timeout=1500"));
        write_rows(db, 50);
        std::string err;
        CHECK(db.try_exec("pragma walship_flush", &err) != SQLITE_OK);
        CHECK(err.find("AccessDenied") != std::string::npos);
        std::string status = db.text("pragma walship_status");
        CHECK(status.find("AccessDenied") != std::string::npos);
        CHECK(status.find("walship-test-secret-key") == std::string::npos);
        CHECK(err.find("walship-test-secret-key") == std::string::npos);
        proxy.reset();  // the operator fixes the credentials
        REQUIRE(db.text("pragma walship_flush=30000") == "ok");
    }
    restore_and_compare(url, path);
}

TEST_CASE("a bucket that does not exist: a new database refuses to open, an existing one keeps working, says so, and retries calmly", "[outage][integration]") {
    Proxy& proxy = Proxy::get();
    proxy.reset();
    std::string url = "s3://walship-no-such-bucket-" + new_bucket() + "/db?endpoint=" + proxy.endpoint() + "&region=us-east-1";
    std::string dir = temp_dir();
    std::string err;
    // Auto-restore cannot tell "no replica yet" from "no bucket": the open fails rather than run unreplicated.
    CHECK(Db::open_rc(uri(dir + "/new.db", url), &err) != SQLITE_OK);

    std::string path = dir + "/old.db";
    {
        Db plain(path, nullptr);
        plain.exec("create table t(id integer primary key, v blob)");
    }
    auto t0 = std::chrono::steady_clock::now();
    {
        Db db(uri(path, url, "flush_timeout=1500&close_timeout=2000"));
        write_rows(db, 20);
        proxy.reset();
        CHECK(db.try_exec("pragma walship_flush", &err) != SQLITE_OK);
        CHECK(err.find("NoSuchBucket") != std::string::npos);
        CHECK(db.text("pragma walship_status").find("NoSuchBucket") != std::string::npos);
        // A waiting flush retries every 250 ms, not in a loop (each attempt is a LIST or two).
        int n = proxy.requests();
        INFO(n << " requests during a 1.5 s flush");
        CHECK(n <= 30);
        t0 = std::chrono::steady_clock::now();
    }
    // The close waits close_timeout once (not once before its checkpoint and again after), and keeps the WAL.
    double close_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    CHECK(close_ms < 3500);
    struct stat st {};
    CHECK((::stat((path + "-wal").c_str(), &st) == 0 && st.st_size > 0));
}

TEST_CASE("a listed object that answers 404 is an error, never \"no data\": restore fails and auto-restore refuses to open", "[outage][integration]") {
    Proxy& proxy = Proxy::get();
    proxy.reset();
    std::string url = Proxy::get().new_url();
    std::string path = temp_dir() + "/gone.db";
    {
        Db db(uri(path, url));
        db.exec("create table t(x)");
        for (int i = 0; i < 5; i++) db.exec("insert into t values(randomblob(100))");
        REQUIRE(db.text("pragma walship_flush") == "ok");
    }
    auto store = store_for(url);
    // The two LISTs of a restore pass; every GET after them answers 404 NoSuchKey (as when an
    // object vanishes between the listing and its download), through all the restore's attempts.
    auto fail_gets = [&] {
        proxy.reset();
        for (int attempt = 0; attempt < 3; attempt++) {
            proxy.fault("pass", 2);
            proxy.fault("404", 8);
        }
    };
    fail_gets();
    RestoreOptions opt;
    opt.output = temp_dir() + "/gone-restored.db";
    auto r = restore(*store, opt);
    std::vector<std::string> lines;
    proxy.requests(&lines);
    REQUIRE(lines.size() >= 3);
    CHECK(lines[2].rfind("GET ", 0) == 0);
    CHECK(lines[2].find("list-type") == std::string::npos);
    REQUIRE_FALSE(r.ok());
    CHECK_FALSE(is_no_replica_data(r.error()));
    CHECK(r.error().str().find("NoSuchKey") != std::string::npos);
    CHECK_FALSE(file_exists(opt.output));
    // Auto-restore of a lost database: the open fails; no empty database, no new generation.
    remove_db_files(path);
    fail_gets();
    std::string err;
    CHECK(Db::open_rc(uri(path, url), &err) != SQLITE_OK);
    CHECK_FALSE(file_exists(path));
    proxy.reset();
    auto gens = list_generations(*store);
    REQUIRE(gens.ok());
    CHECK(gens->size() == 1);
    // With the store answering again, the same open restores.
    {
        Db db(uri(path, url));
        CHECK(db.integer("select count(*) from t") == 5);
    }
}

TEST_CASE("a store that stops answering: before any error, walship_status says how long a request has had no answer and what it is retried after, and a flush that times out says so", "[outage][integration]") {
    Proxy& proxy = Proxy::get();
    proxy.reset();
    std::string url = Proxy::get().new_url();
    std::string path = temp_dir() + "/stalled.db";
    ::setenv("WALSHIP_S3_TIMEOUT_MS", "3000", 1);  // a hung request ends after 3 s, and is tried again
    {
        Db db(uri(path, url, "sync_interval=0"));
        db.exec("create table t(x)");
        REQUIRE(db.text("pragma walship_flush") == "ok");
        CHECK(status_field(db, "store_stalled_ms") < 1000);
        CHECK(status_text(db, "store_retrying").empty());
        proxy.fault("stall", 1);  // the upload of the next commit hangs,
        proxy.fault("503", 3);    // and its next three attempts are answered 503 SlowDown
        db.exec("insert into t values(1)");
        std::this_thread::sleep_for(std::chrono::milliseconds(2000));
        const long long stalled = status_field(db, "store_stalled_ms");
        CHECK(stalled >= 1500);
        CHECK(stalled < 3000);
        CHECK(status_text(db, "last_error").empty());  // the request has not failed (yet)
        std::string err;
        CHECK(db.try_exec("pragma walship_flush=100", &err) != SQLITE_OK);
        CHECK_THAT(err, Catch::Contains("flush timed out") && Catch::Contains("has had no answer (no byte moved) for") &&
                            Catch::Contains("127.0.0.1"));
        // Past the stall timeout the attempt ends and the request is tried again: the status says
        // after what, while the 503s and their backoff last.
        std::string retrying;
        for (int i = 0; i < 600 && retrying.find("SlowDown") == std::string::npos; i++) {
            retrying = status_text(db, "store_retrying");
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        INFO("store_retrying: " << retrying);
        CHECK_THAT(retrying, Catch::Contains("put_object") && Catch::Contains("SlowDown") && Catch::Contains("of 5)"));
        CHECK(status_text(db, "last_error").empty());
        // The fifth attempt is answered: everything ships, and the status is quiet again.
        REQUIRE(db.text("pragma walship_flush=30000") == "ok");
        CHECK(status_field(db, "store_stalled_ms") < 1000);  // (0, or a request of the shipper's own just begun)
        CHECK(status_text(db, "store_retrying").empty());
        CHECK(status_text(db, "last_error").empty());
    }
    ::unsetenv("WALSHIP_S3_TIMEOUT_MS");
    restore_and_compare(url, path);
}

TEST_CASE("a store that hangs during a snapshot: the snapshot lets go of the WAL once it grows by max_wal_size, and nothing is lost", "[outage][integration]") {
    Proxy& proxy = Proxy::get();
    proxy.reset();
    std::string url = Proxy::get().new_url();
    std::string path = temp_dir() + "/hung-snap.db";
    ::setenv("WALSHIP_S3_TIMEOUT_MS", "5000", 1);  // hung requests end sooner (5 attempts each still)
    long long max_wal = 0;
    {
        Db db(uri(path, url, "sync_interval=100&max_wal_size=1MiB"));
        db.exec("create table t(id integer primary key, v blob)");
        // 40 MB: more than the snapshot upload buffers, so it reads under its mark while it uploads.
        db.exec("insert into t(v) select randomblob(4000) from " + series(10000));
        REQUIRE(db.text("pragma walship_flush") == "ok");
        CHECK(db.text("pragma wal_checkpoint(TRUNCATE)") == "0");
        proxy.fault("stall", 1000000);  // every request hangs
        // A snapshot asked for now reads under a reader mark, so SQLite cannot reset the WAL behind it.
        std::thread snap([&] {
            Db other(uri(path, url, "flush_timeout=8s"));
            std::string err;
            other.try_exec("pragma walship_snapshot", &err);
        });
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        // About 1.2 MB/s of WAL for 8 s: held by the snapshot, the WAL would reach about 10 MB.
        for (int i = 0; i < 40; i++) {
            write_rows(db, 60);
            max_wal = std::max(max_wal, file_size(path + "-wal"));
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
        snap.join();
        INFO("the WAL reached " << max_wal << " bytes");
        CHECK(max_wal < 6000000LL);  // max_wal_size, plus a second or two of writes before the snapshot lets go
        CHECK(status_field(db, "errors") > 0);
        proxy.reset();
        REQUIRE(db.text("pragma walship_flush=120000") == "ok");
        CHECK(db.integer("select count(*) from t") == 10000 + 40 * 60);
    }
    ::unsetenv("WALSHIP_S3_TIMEOUT_MS");
    restore_and_compare(url, path);
}

TEST_CASE("a store that hangs during a snapshot asked for at the start of a new WAL: the snapshot lets go of it at max_wal_size too", "[outage][integration]") {
    Proxy& proxy = Proxy::get();
    proxy.reset();
    std::string url = Proxy::get().new_url();
    std::string path = temp_dir() + "/hung-fresh.db";
    ::setenv("WALSHIP_S3_TIMEOUT_MS", "5000", 1);
    {
        Db plain(path, "unix");  // a database made without walship; its WAL goes at its close
        plain.exec("pragma journal_mode=wal");
        plain.exec("create table t(id integer primary key, v blob)");
        plain.exec("insert into t(v) select randomblob(1000) from " + series(10000));
    }
    const std::string u = uri(path, url, "max_wal_size=2MiB&snapshot_part_size=64KiB");
    long long max_wal = 0;
    {
        Db db(u);
        REQUIRE(db.text("pragma walship_flush=60000") == "ok");  // the first generation, at txid 0
        std::atomic<bool> stop{false};
        std::thread writer([&] {
            Db w(u);
            while (!stop) {
                w.exec("insert into t(v) values(randomblob(800))");
                std::this_thread::sleep_for(std::chrono::milliseconds(2));
            }
        });
        std::thread snap([&] {
            std::string err;
            db.try_exec("pragma walship_snapshot=15000", &err);
        });
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        proxy.fault("stall", 1);  // the snapshot's upload hangs (then its retry, after 5 s)
        for (int i = 0; i < 40; i++) {
            max_wal = std::max(max_wal, file_size(path + "-wal"));
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
        stop = true;
        writer.join();
        snap.join();
        INFO("the WAL reached " << max_wal << " bytes");
        // Its mark was at frame 0 under the salts before SQLite drew the WAL's first ones: the WAL
        // grew for as long as the request hung (11 MB here before; 5.5 MB now: max_wal_size, the
        // second the check takes, and the WAL reset that follows).
        CHECK(max_wal < 8000000LL);
        proxy.reset();
        REQUIRE(db.text("pragma walship_flush=120000") == "ok");
    }
    ::unsetenv("WALSHIP_S3_TIMEOUT_MS");
    restore_and_compare(url, path);
}

TEST_CASE("a store that hangs: the last close returns after close_timeout (the request in flight is cancelled), keeps the WAL, and nothing is lost", "[outage][integration]") {
    Proxy& proxy = Proxy::get();
    proxy.reset();
    std::string url = Proxy::get().new_url();
    std::string path = temp_dir() + "/hung.db";
    {
        Db db(uri(path, url, "sync_interval=0"));
        db.exec("create table t(x)");
        REQUIRE(db.text("pragma walship_flush") == "ok");
    }
    auto t0 = std::chrono::steady_clock::now();
    {
        Db db(uri(path, url, "sync_interval=0&close_timeout=500ms"));
        proxy.fault("stall", 1000);  // every request hangs (the S3 client's own timeout is 30 s, 5 attempts)
        for (int i = 0; i < 5; i++) db.exec("insert into t values(" + std::to_string(i) + ")");
        std::this_thread::sleep_for(std::chrono::milliseconds(200));  // an upload is in flight
        t0 = std::chrono::steady_clock::now();
    }
    double close_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    INFO("close took " << close_s << " s");
    CHECK(close_s < 1.3);  // (a request used to end up to a second after its cancel)
    struct stat st {};
    CHECK((::stat((path + "-wal").c_str(), &st) == 0 && st.st_size > 0));
    proxy.reset();
    {
        Db db(uri(path, url));  // the store is back: the kept WAL ships
        REQUIRE(db.text("pragma walship_flush") == "ok");
        CHECK(db.integer("select count(*) from t") == 5);
    }
    Db r(restore_and_compare(url, path), nullptr, SQLITE_OPEN_READONLY);
    CHECK(r.integer("select count(*) from t") == 5);
}

// The VFS end to end: capture, ship, restore, compared page by page, against the local S3 server
// (moto) and the directory store.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "config.h"
#include "format.h"
#include "restore.h"
#include "retention.h"
#include "support/db.h"
#include "support/test_server.h"
#include "walship.h"

using namespace walship;
using namespace walship::test;

namespace {

struct Registered {
    Registered() { use_walship(); }
} registered;

// An application's static object may open a database through walship before main and close it
// after main returns (ASan reports it if walship's method tables are gone by then).
struct OpenAcrossMain {
    std::string path = "/tmp/walship-static-" + std::to_string(getpid()) + ".db";
    sqlite3* db = nullptr;
    OpenAcrossMain() {
        walship_register(0);
        if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, "walship") == SQLITE_OK)
            sqlite3_exec(db, "create table if not exists t(x); insert into t values(1)", nullptr, nullptr, nullptr);
    }
    ~OpenAcrossMain() {
        sqlite3_exec(db, "insert into t values(2)", nullptr, nullptr, nullptr);
        sqlite3_close(db);
        unlink(path.c_str());
    }
} open_across_main;

TEST_CASE("a database opened through walship before main works", "[vfs]") {
    REQUIRE(open_across_main.db);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(open_across_main.db, "select count(*) from t", -1, &st, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    CHECK(sqlite3_column_int(st, 0) == 1);
    sqlite3_finalize(st);
}

// Restores the replica's latest state to `out`; returns the error text or "".
std::string restore_to(const std::string& url, const std::string& out, RestoreInfo* info = nullptr) {
    auto store = store_for(url);
    RestoreOptions opt;
    opt.output = out;
    auto r = restore(*store, opt);
    if (!r.ok()) return r.error().str();
    if (info) *info = r.value();
    return "";
}

std::string blob_sql(std::mt19937_64& rng, int max_len) {
    int len = int(rng() % uint64_t(max_len)) + 1;
    return "randomblob(" + std::to_string(len) + ")";
}

// A random mix of what applications do; each statement outside BEGIN is its own transaction.
void random_workload(Db& db, std::mt19937_64& rng, int steps) {
    db.exec("create table if not exists a(id integer primary key, k integer, v blob)");
    db.exec("create index if not exists a_k on a(k)");
    int tables = 0;
    for (int i = 0; i < steps; i++) {
        int op = int(rng() % 100);
        if (op < 40) {
            int n = int(rng() % 20) + 1;
            db.exec("insert into a(k, v) select abs(random()) % 1000, " + blob_sql(rng, 2000) + " from " + series(n));
        } else if (op < 55) {
            db.exec("update a set v = " + blob_sql(rng, 3000) + ", k = k + 1 where k % 7 = " + std::to_string(rng() % 7));
        } else if (op < 65) {
            db.exec("delete from a where k % 11 = " + std::to_string(rng() % 11));
        } else if (op < 70) {
            std::string t = "t" + std::to_string(tables++);
            db.exec("create table " + t + "(x, y)");
            db.exec("insert into " + t + " select value, randomblob(50) from " + series(30));
            if (rng() % 2) db.exec("alter table " + t + " add column z default 'zz'");
            if (rng() % 3 == 0) db.exec("drop table " + t);
        } else if (op < 72) {
            db.exec("vacuum");
        } else if (op < 75) {
            db.exec(rng() % 2 ? "pragma wal_checkpoint(TRUNCATE)" : "pragma wal_checkpoint(PASSIVE)");
        } else if (op < 85) {
            // A transaction that spills to the WAL and rolls back: nothing of it may be captured.
            db.exec("begin");
            db.exec("insert into a(k, v) select 5000, randomblob(3000) from " + series(200));
            db.exec("rollback");
        } else if (op < 90) {
            db.exec("insert into a(k, v) values(9999, " + blob_sql(rng, 300000) + ")");  // overflow pages
        } else {
            // Several statements in one transaction, rewriting the same pages.
            db.exec("begin");
            for (int j = 0; j < 5; j++) db.exec("update a set k = k + 1 where id % 5 = " + std::to_string(j));
            db.exec("commit");
        }
    }
}

// Closes the source (SQLite checkpoints it fully), restores, and compares page by page.
void check_round_trip(const std::string& url, const std::string& src, int page_size) {
    std::string out = temp_dir() + "/restored.db";
    RestoreInfo info;
    std::string err = restore_to(url, out, &info);
    REQUIRE(err == "");
    CHECK(info.checksum_verified);
    CHECK(int(info.page_size) == page_size);
    std::string diff = compare_pages(src, out, page_size);
    INFO("source " << src << " restored " << out);
    REQUIRE(diff == "");
    Db r(out, nullptr, SQLITE_OPEN_READONLY);
    REQUIRE(r.text("pragma integrity_check") == "ok");
}

void run_workload_case(const std::string& url, int page_size, bool autocheckpoint, uint64_t seed, const std::string& extra = "") {
    std::string dir = temp_dir();
    std::string path = dir + "/src.db";
    {
        Db db(uri(path, url, extra));
        db.exec("pragma page_size=" + std::to_string(page_size));
        db.exec("pragma cache_size=20");  // small cache: transactions spill to the WAL
        db.exec(autocheckpoint ? "pragma wal_autocheckpoint=50" : "pragma wal_autocheckpoint=0");
        std::mt19937_64 rng(seed);
        random_workload(db, rng, 120);
        REQUIRE(db.text("pragma journal_mode") == "wal");
        REQUIRE(db.integer("pragma page_size") == page_size);
        REQUIRE(db.text("pragma walship_flush") == "ok");
    }
    check_round_trip(url, path, page_size);
}

}  // namespace

TEST_CASE("random workloads restore page by page, several page sizes, autocheckpoint on", "[vfs][integration]") {
    for (int ps : {512, 1024, 4096, 16384, 65536}) {
        DYNAMIC_SECTION("page size " << ps) { run_workload_case(new_s3_url(), ps, true, 1000 + uint64_t(ps)); }
    }
}

TEST_CASE("random workloads restore page by page, autocheckpoint off", "[vfs][integration]") {
    for (int ps : {1024, 4096, 8192}) {
        DYNAMIC_SECTION("page size " << ps) { run_workload_case(new_s3_url(), ps, false, 2000 + uint64_t(ps)); }
    }
}

TEST_CASE("synchronous=FULL without powersafe overwrite pads commits, and padding is not a transaction", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/pad.db";
    long long last_txid = 0;
    {
        Db db(uri(path, url, "psow=0&sync_interval=0"));
        db.exec("pragma synchronous=FULL");
        db.exec("create table t(x)");
        for (int i = 0; i < 20; i++) {
            db.exec("insert into t values(randomblob(100))");
            REQUIRE(db.text("pragma walship_flush") == "ok");
        }
        std::string s = db.text("pragma walship_status");
        last_txid = std::stoll(s.substr(s.find("\"txid\":") + 7));
    }
    // Every txid is one real commit: each adds exactly one row (padding frames add none).
    auto store = store_for(url);
    long long base = -1;
    for (long long txid = 0; txid <= last_txid; txid++) {
        RestoreOptions opt;
        opt.output = temp_dir() + "/p.db";
        opt.txid = uint64_t(txid);
        auto r = restore(*store, opt);
        REQUIRE(r.ok());
        Db db(opt.output, nullptr, SQLITE_OPEN_READONLY);
        long long rows = db.integer("select count(*) from t");
        if (base < 0) base = rows;
        CHECK(rows == base + txid);
    }
    CHECK(base + last_txid == 20);
    check_round_trip(url, path, 4096);
}

TEST_CASE("directory store (file://) round trip", "[vfs]") {
    std::string url = "file://" + temp_dir() + "/replica";
    run_workload_case(url, 4096, true, 7);
}

TEST_CASE("files of every kind share the underlying VFS's methods: other locking styles, plain files, both durabilities", "[vfs][integration]") {
    // walship opens every file in place and puts its methods in front of the underlying ones:
    // one set per underlying method table. nolock=1 makes SQLite's unix VFS use another table
    // (one without shared memory, so that database stays in rollback-journal mode).
    std::string dir = temp_dir();
    std::string url_a = new_s3_url(), url_b = new_s3_url();
    Db a(uri(dir + "/a.db", url_a));
    Db b(uri(dir + "/b.db", url_b, "durability=remote"));
    Db plain("file:" + dir + "/plain.db?nolock=1");  // through walship, not replicated
    for (Db* db : {&a, &b, &plain}) {  // what the shell's .vfsname shows
        char* name = nullptr;
        REQUIRE(sqlite3_file_control(db->get(), "main", SQLITE_FCNTL_VFSNAME, &name) == SQLITE_OK);
        CHECK(std::string(name ? name : "") == "walship/unix");
        sqlite3_free(name);
    }
    for (Db* db : {&a, &b, &plain}) db->exec("create table t(x)");
    CHECK(plain.text("pragma journal_mode") == "delete");
    for (int i = 0; i < 300; i++) {
        a.exec("insert into t values(randomblob(3000))");
        plain.exec("insert into t values(randomblob(3000))");
        if (i % 10 == 0) b.exec("insert into t values(randomblob(3000))");  // each waits for the bucket
    }
    // Not replicated: the status says so, and a flush or snapshot fails (nothing reaches a bucket).
    CHECK(plain.text("pragma walship_status").rfind("{\"replicating\":false,\"reason\":\"no replica location", 0) == 0);
    CHECK(a.text("pragma walship_status").rfind("{\"replicating\":true,", 0) == 0);
    for (const char* pragma : {"pragma walship_flush", "PRAGMA Walship_Snapshot=100"}) {
        std::string err;
        CHECK(plain.try_exec(pragma, &err) == SQLITE_ERROR);
        CHECK(err.find("this database is not replicated") != std::string::npos);
    }
    CHECK(status_field(b, "pending_txns") == 0);       // durability=remote: in the bucket at COMMIT
    REQUIRE(a.text("pragma walship_flush") == "ok");
    for (auto& [db, url, name] : {std::tuple{&a, url_a, "a"}, std::tuple{&b, url_b, "b"}}) {
        std::string out = dir + "/out-" + name + ".db";
        REQUIRE(restore_to(url, out) == "");
        db->exec("pragma wal_checkpoint(TRUNCATE)");
        CHECK(compare_pages(dir + "/" + name + ".db", out, 4096) == "");
    }
}

TEST_CASE("rolled-back transactions never reach the replica", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/rb.db";
    {
        Db db(uri(path, url));
        db.exec("pragma cache_size=10");
        db.exec("create table t(x)");
        db.exec("insert into t values(1)");
        db.exec("begin");
        db.exec("insert into t select randomblob(4000) from " + series(500));
        db.exec("rollback");
        db.exec("insert into t values(2)");
        REQUIRE(db.text("pragma walship_flush") == "ok");
    }
    std::string out = temp_dir() + "/out.db";
    REQUIRE(restore_to(url, out) == "");
    Db r(out, nullptr, SQLITE_OPEN_READONLY);
    CHECK(r.integer("select count(*) from t") == 2);
    CHECK(r.integer("select sum(x) from t") == 3);
}

TEST_CASE("auto-restore: a deleted database comes back on the next open", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/auto.db";
    {
        Db db(uri(path, url));
        db.exec("create table notes(id integer primary key, body text)");
        db.exec("insert into notes(body) select 'note ' || value from " + series(500));
        REQUIRE(db.text("pragma walship_flush") == "ok");
    }
    remove_db_files(path);
    REQUIRE_FALSE(file_exists(path));
    {
        Db db(uri(path, url));
        CHECK(db.integer("select count(*) from notes") == 500);
        db.exec("insert into notes(body) values('after restore')");
        REQUIRE(db.text("pragma walship_flush") == "ok");
    }
    remove_db_files(path);
    {
        Db db(uri(path, url, "restore=off"));
        CHECK(db.integer("select count(*) from sqlite_schema") == 0);
    }
    remove_db_files(path);
    Db db(uri(path, url));
    CHECK(db.integer("select count(*) from notes") == 501);
}

namespace {
std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
void spit(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }
}  // namespace

TEST_CASE("auto-restore: the database file deleted, its WAL left behind: the data comes back, not an empty database in a new generation", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/stale-wal.db";
    std::string wal;
    {
        Db db(uri(path, url));
        db.exec("create table notes(id integer primary key, body text)");
        db.exec("insert into notes(body) select 'note ' || value from " + series(100));
        REQUIRE(db.text("pragma walship_flush") == "ok");
        wal = slurp(path + "-wal");  // as a crash leaves it
    }
    REQUIRE(wal.size() > 32);
    remove_db_files(path);
    spit(path + "-wal", wal);  // SQLite deletes a WAL beside a database of no pages
    {
        Db db(uri(path, url));
        CHECK(db.integer("select count(*) from notes") == 100);
    }
    std::string out = temp_dir() + "/stale-wal-restored.db";
    REQUIRE(restore_to(url, out) == "");
    Db r(out, nullptr);
    CHECK(r.integer("select count(*) from notes") == 100);
}

TEST_CASE("restore leaves alone a database that appears at the destination (or is opened) while it runs, and removes a stale hot journal beside a missing one", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string dir = temp_dir();
    std::string path = dir + "/source.db";
    Db db(uri(path, url));
    db.exec("create table t(x)");
    db.exec("insert into t select value from " + series(50));
    REQUIRE(db.text("pragma walship_flush") == "ok");
    auto store = store_for(url);
    {
        // An application creates the database (and its WAL) during the download.
        RestoreOptions opt;
        opt.output = dir + "/appeared.db";
        bool created = false;
        opt.progress = [&](uint64_t, uint64_t) {
            if (created) return;
            created = true;
            spit(opt.output, std::string(4096, 'a'));
            spit(opt.output + "-wal", "the application's WAL");
        };
        auto r = restore(*store, opt);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().str().find("appeared while restoring") != std::string::npos);
        CHECK(slurp(opt.output) == std::string(4096, 'a'));
        CHECK(slurp(opt.output + "-wal") == "the application's WAL");
    }
    {
        // The command's restore (refuse_open): an empty file that a connection opened meanwhile
        // stays (that connection would go on with its own file and put its WAL beside this one).
        RestoreOptions opt;
        opt.output = dir + "/opened.db";
        opt.refuse_open = true;
        spit(opt.output, "");
        sqlite3* app = nullptr;
        opt.progress = [&](uint64_t, uint64_t) {
            if (app) return;
            REQUIRE(sqlite3_open_v2(opt.output.c_str(), &app, SQLITE_OPEN_READWRITE, "unix") == SQLITE_OK);
            REQUIRE(sqlite3_exec(app, "begin; select count(*) from sqlite_master", nullptr, nullptr, nullptr) == SQLITE_OK);
        };
        auto r = restore(*store, opt);
        sqlite3_close_v2(app);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().str().find("opened.db was opened while restoring") != std::string::npos);
        CHECK(slurp(opt.output).empty());
        CHECK_FALSE(file_exists(restore_temp_name(opt.output)));
    }
    {
        // A hot journal left by another database at that path would be played back into the restored one.
        std::string out = dir + "/journal.db";
        spit(out + "-journal", std::string(8192, '\x5a'));
        REQUIRE(restore_to(url, out) == "");
        CHECK_FALSE(file_exists(out + "-journal"));
        Db r(out, nullptr);
        CHECK(r.text("pragma integrity_check") == "ok");
        CHECK(r.integer("select count(*) from t") == 50);
    }
}

TEST_CASE("a new database's first transaction (SQLite runs it in rollback-journal mode) is in the bucket when walship_flush says ok", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string dir = temp_dir();
    Db db(uri(dir + "/first.db", url));
    db.exec("begin; create table t(x); insert into t values('first'); commit");
    REQUIRE(db.text("pragma walship_flush") == "ok");
    // Restored while the database is still open: nothing depends on a later commit or the close.
    REQUIRE(restore_to(url, dir + "/restored.db") == "");
    Db restored(dir + "/restored.db", nullptr);
    CHECK(restored.text("select x from t") == "first");
    // The next transactions continue the same generation.
    db.exec("insert into t values('second')");
    REQUIRE(db.text("pragma walship_flush") == "ok");
    REQUIRE(restore_to(url, dir + "/restored2.db") == "");
    Db restored2(dir + "/restored2.db", nullptr);
    CHECK(restored2.integer("select count(*) from t") == 2);
    CHECK(status_field(db, "txid") >= 1);
}

TEST_CASE("a database created through walship is in WAL format on disk: SQLite without walship writes it while the application has it open", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string dir = temp_dir();
    std::string path = dir + "/made.db";
    Db db(uri(path, url));
    db.exec("create table t(x)");  // the first transaction: rollback-journal mode
    db.exec("insert into t values(1)");
    db.exec("pragma wal_checkpoint(TRUNCATE)");  // an empty WAL: SQLite goes by the file's bytes
    REQUIRE(db.text("pragma walship_flush") == "ok");
    std::string head = slurp(path).substr(18, 2);
    CHECK(head == std::string("\x02\x02", 2));
    // An administrator's sqlite3 shell (the unix VFS). It took rollback mode from bytes 1/1 and
    // waited for an exclusive lock that the application's connection never gives: "database is locked".
    {
        sqlite3* admin = nullptr;
        REQUIRE(sqlite3_open_v2(path.c_str(), &admin, SQLITE_OPEN_READWRITE, "unix") == SQLITE_OK);
        sqlite3_busy_timeout(admin, 2000);
        char* err = nullptr;
        int rc = sqlite3_exec(admin, "insert into t values(2)", nullptr, nullptr, &err);
        INFO((err ? err : ""));
        sqlite3_free(err);
        CHECK(rc == SQLITE_OK);
        sqlite3_close(admin);
    }
    CHECK(db.integer("select count(*) from t") == 2);
    REQUIRE(db.text("pragma walship_flush") == "ok");
    db.exec("pragma wal_checkpoint(TRUNCATE)");
    REQUIRE(restore_to(url, dir + "/restored.db") == "");
    CHECK(compare_pages(path, dir + "/restored.db", 4096) == "");
}

TEST_CASE("a second connection of the process to a replicated database, opened without replica=, is part of its replication", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string dir = temp_dir();
    std::string path = dir + "/two.db";
    Db db(uri(path, url, "sync_interval=10s"));
    db.exec("pragma wal_autocheckpoint=0");
    db.exec("create table t(x)");
    db.exec("insert into t select value from " + series(5));
    REQUIRE(db.text("pragma walship_flush") == "ok");
    db.exec("insert into t select value from " + series(3000));  // unshipped: the next upload is 10 s away
    // It was a plain connection: its status said "replicating":false, and its TRUNCATE checkpoint
    // reset the WAL under the unshipped frames, which ended the generation.
    Db other("file:" + path);
    CHECK(other.text("pragma walship_status").find("\"replicating\":true") != std::string::npos);
    other.exec("pragma wal_checkpoint(TRUNCATE)");
    CHECK(slurp(path + "-wal").empty());
    REQUIRE(db.text("pragma walship_flush") == "ok");
    auto gens = walship::list_generations(*store_for(url));
    REQUIRE(gens.ok());
    CHECK(gens->size() == 1);
    REQUIRE(restore_to(url, dir + "/restored.db") == "");
    Db r(dir + "/restored.db", nullptr);
    CHECK(r.integer("select count(*) from t") == 3005);
}

TEST_CASE("a new database closed after its first transaction is in the bucket (the close ships it)", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string dir = temp_dir();
    {
        Db db(uri(dir + "/once.db", url));
        db.exec("begin; create table t(x); insert into t values('only'); commit");  // one transaction, then close
    }
    REQUIRE(restore_to(url, dir + "/restored.db") == "");
    Db restored(dir + "/restored.db", nullptr);
    CHECK(restored.text("select x from t") == "only");
}

TEST_CASE("environment configuration: WALSHIP_REPLICA_URL and WALSHIP_DB", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string dir = temp_dir();
    std::string path = dir + "/env.db", other = dir + "/other.db";
    setenv("WALSHIP_REPLICA_URL", url.c_str(), 1);
    setenv("WALSHIP_DB", path.c_str(), 1);
    {
        Db db("file:" + path);
        db.exec("create table t(x); insert into t values(42)");
        CHECK(db.text("pragma walship_flush") == "ok");
        Db o("file:" + other);  // not WALSHIP_DB: passes through, no replication
        o.exec("create table u(y)");
        CHECK(o.text("pragma walship_status").rfind("{\"replicating\":false", 0) == 0);
    }
    unsetenv("WALSHIP_REPLICA_URL");
    unsetenv("WALSHIP_DB");
    CHECK_FALSE(file_exists(other + "-walship"));
    std::string out = dir + "/out.db";
    REQUIRE(restore_to(url, out) == "");
    Db r(out, nullptr, SQLITE_OPEN_READONLY);
    CHECK(r.integer("select x from t") == 42);
}

TEST_CASE("WALSHIP_REPLICA_URL without WALSHIP_DB replicates the first database, and VACUUM INTO, ATTACH and other targets open unreplicated", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string dir = temp_dir();
    std::string path = dir + "/main.db";
    setenv("WALSHIP_REPLICA_URL", url.c_str(), 1);
    unsetenv("WALSHIP_DB");
    {
        Db db("file:" + path);
        db.exec("create table t(x); insert into t values(42)");
        REQUIRE(db.text("pragma walship_flush") == "ok");
        db.exec("vacuum into '" + dir + "/copy.db'");
        db.exec("attach '" + dir + "/side.db' as side; create table side.s(y); insert into side.s values(7)");
        CHECK(db.integer("select y from side.s") == 7);
        Db other("file:" + dir + "/other.db");
        other.exec("create table u(z)");
        CHECK(other.text("pragma walship_status").rfind("{\"replicating\":false", 0) == 0);
        db.exec("insert into t values(43)");
        REQUIRE(db.text("pragma walship_flush") == "ok");
    }
    unsetenv("WALSHIP_REPLICA_URL");
    CHECK_FALSE(file_exists(dir + "/copy.db-walship"));
    CHECK_FALSE(file_exists(dir + "/side.db-walship"));
    Db copy(dir + "/copy.db", nullptr, SQLITE_OPEN_READONLY);
    CHECK(copy.integer("select count(*) from t") == 1);
    std::string out = dir + "/out.db";
    REQUIRE(restore_to(url, out) == "");
    Db r(out, nullptr, SQLITE_OPEN_READONLY);
    CHECK(r.integer("select count(*) from t") == 2);
}

TEST_CASE("two databases cannot share one replica location", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string dir = temp_dir();
    Db a(uri(dir + "/a.db", url));
    a.exec("create table t(x)");
    std::string err;
    CHECK(Db::open_rc(uri(dir + "/b.db", url), &err) != SQLITE_OK);
}

TEST_CASE("walship_status reports the replication state", "[vfs][integration]") {
    std::string url = new_s3_url();
    Db db(uri(temp_dir() + "/s.db", url));
    db.exec("create table t(x); insert into t values(1)");
    REQUIRE(db.text("pragma walship_flush") == "ok");
    std::string s = db.text("pragma walship_status");
    for (const char* field : {"\"generation\":\"", "\"txid\":", "\"pending_txns\":0", "\"pending_bytes\":0", "\"lag_ms\":0",
                              "\"uploads\":", "\"upload_bytes\":", "\"last_error\":\"\""})
        CHECK(s.find(field) != std::string::npos);
    CHECK(s.find("\"generation\":\"\"") == std::string::npos);
}

TEST_CASE("early write-back: under synchronous=NORMAL walship syncs a growing WAL ahead of the checkpoint, under OFF it does not, and the replica restores exactly", "[vfs][integration]") {
    using Clock = std::chrono::steady_clock;
    for (const char* sync : {"NORMAL", "OFF"}) {
        DYNAMIC_SECTION("synchronous=" << sync) {
            std::string url = new_s3_url();
            std::string path = temp_dir() + "/wb.db";
            {
                Db db(uri(path, url));
                db.exec(std::string("pragma synchronous=") + sync + "; create table t(x)");
                // About 1,000 frames of 4 KiB (one WAL at the default autocheckpoint), three times.
                for (int i = 0; i < 3000; i++) db.exec("insert into t values(randomblob(3000))");
                // The requests are served on walship's thread: give it a moment for the last.
                auto t0 = Clock::now();
                while (std::string(sync) == "NORMAL" && status_field(db, "wal_writebacks") < 2 && Clock::now() - t0 < std::chrono::seconds(5))
                    std::this_thread::sleep_for(std::chrono::milliseconds(10));
                long long n = status_field(db, "wal_writebacks");
                INFO(n << " write-backs");
                if (std::string(sync) == "NORMAL") CHECK(n >= 2);  // about 3 a WAL after the first checkpoint's sync (requests waiting together are one)
                else CHECK(n == 0);
                REQUIRE(db.text("pragma walship_flush") == "ok");
            }
            std::string out = temp_dir() + "/wb-restored.db";
            REQUIRE(restore_to(url, out) == "");
            CHECK(compare_pages(path, out, 4096) == "");
        }
    }
}

TEST_CASE("pacing: steady writes make about one upload per sync_interval, and a commit after a quiet interval ships at once", "[vfs][integration]") {
    using Clock = std::chrono::steady_clock;
    std::string url = new_s3_url();
    Db db(uri(temp_dir() + "/pace.db", url, "sync_interval=2s"));
    db.exec("create table t(x)");
    REQUIRE(db.text("pragma walship_flush") == "ok");
    // A commit every 10 ms for 4.5 s: two intervals and a bit. The bucket of two uploads allows
    // one extra at the start; the rest ship one upload per interval, every commit of it at once.
    long long before = status_field(db, "uploads");
    auto end = Clock::now() + std::chrono::milliseconds(4500);
    int commits = 0;
    while (Clock::now() < end) {
        db.exec("insert into t values(randomblob(100))");
        commits++;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    long long during = status_field(db, "uploads") - before;
    INFO(commits << " commits, " << during << " uploads");
    CHECK(during >= 2);  // it shipped while the commits went on, without a flush
    CHECK(during <= 5);  // 4.5 s / 2 s + the start of the burst + one in flight at the end
    // After a quiet interval: a commit ships at once, and so does a second one half an interval
    // later (the bucket's second upload; strict pacing would hold it until the interval ends);
    // a third right after that waits for the interval.
    auto txid = [&] { return status_field(db, "txid"); };
    auto shipped_within = [&](long long want, int ms) {
        auto t0 = Clock::now();
        while (txid() < want && Clock::now() - t0 < std::chrono::milliseconds(ms)) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        return txid() >= want;
    };
    std::this_thread::sleep_for(std::chrono::milliseconds(4500));  // the bucket refills: two intervals
    REQUIRE(status_field(db, "pending_txns") == 0);
    long long t = txid();
    db.exec("insert into t values(1)");
    CHECK(shipped_within(t + 1, 1500));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    db.exec("insert into t values(2)");
    CHECK(shipped_within(t + 2, 1000));
    db.exec("insert into t values(3)");
    CHECK_FALSE(shipped_within(t + 3, 700));
    CHECK(shipped_within(t + 3, 4000));
}

TEST_CASE("pacing: steady writes that reset the WAL between uploads still make one upload per sync_interval, and restore exactly", "[vfs][integration]") {
    using Clock = std::chrono::steady_clock;
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/cycle.db";
    int commits = 0;
    {
    Db db(uri(path, url, "sync_interval=1s"));
    db.exec("pragma wal_autocheckpoint=20; create table t(x)");
    REQUIRE(db.text("pragma walship_flush") == "ok");
    // Each commit writes a page or two; the WAL is checkpointed every 20 pages and reset at the
    // next commit, many times an interval: the transactions of the WALs reset before their upload
    // (spilled) and those of the live WAL go up in one object, not two.
    long long before = status_field(db, "uploads");
    auto end = Clock::now() + std::chrono::milliseconds(6500);
    while (Clock::now() < end) {
        db.exec("insert into t values(randomblob(1500))");
        commits++;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    long long during = status_field(db, "uploads") - before;
    INFO(commits << " commits, " << during << " uploads");
    CHECK(during >= 2);
    CHECK(during <= 9);  // as without WAL resets: 6.5 s / 1 s, + 2 for the bucket at the start, + one in flight (14 when they went up apart)
    REQUIRE(db.text("pragma walship_flush") == "ok");
    }
    std::string out = temp_dir() + "/restored.db";
    RestoreInfo info;
    REQUIRE(restore_to(url, out, &info) == "");
    CHECK(compare_pages(path, out, 4096) == "");
    Db r(out, nullptr, SQLITE_OPEN_READONLY);
    CHECK(r.integer("select count(*) from t") == commits);
}

TEST_CASE("a sqlite3 shell TRUNCATE while spilled transactions wait: a new generation, restored exactly", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/shell-reset.db";
    auto insert = [](Db& db, int n) {
        for (int i = 0; i < n; i++) db.exec("insert into t(x) values(randomblob(500))");
    };
    {
        Db db(uri(path, url, "sync_interval=10s"));
        db.exec("create table t(a integer primary key, x)");
        REQUIRE(db.text("pragma walship_flush") == "ok");
        insert(db, 10);
        db.exec("pragma wal_checkpoint(TRUNCATE)");  // walship's reset: the 10 are spilled
        insert(db, 10);
        db.exec("pragma wal_checkpoint(TRUNCATE)");
        insert(db, 50);  // in a WAL that the shell checkpoints into the database and resets
        REQUIRE(std::system(("sqlite3 '" + path + "' 'pragma wal_checkpoint(TRUNCATE);' >/dev/null").c_str()) == 0);
        insert(db, 5);
        REQUIRE(db.text("pragma walship_flush=20000") == "ok");
        CHECK(status_field(db, "txid") >= 0);
    }
    std::string out = temp_dir() + "/restored.db";
    RestoreInfo info;
    REQUIRE(restore_to(url, out, &info) == "");
    CHECK(compare_pages(path, out, 4096) == "");  // (was: malformed, or the 55 after the shell missing)
    Db r(out, nullptr, SQLITE_OPEN_READONLY);
    CHECK(r.integer("select count(*) from t") == 75);
    CHECK(r.text("pragma integrity_check") == "ok");
}

TEST_CASE("store unreachable: the app keeps working, status shows the error, flush times out", "[vfs][integration]") {
    std::string path = temp_dir() + "/down.db";
    {
        Db plain(path, nullptr);  // an existing database, so no restore is attempted
        plain.exec("create table t(x); insert into t values(1)");
    }
    std::string url = "s3://bucket/db?endpoint=http://127.0.0.1:9&region=us-east-1";
    Db db(uri(path, url, "flush_timeout=1500"));
    for (int i = 0; i < 50; i++) db.exec("insert into t values(randomblob(100))");
    CHECK(db.integer("select count(*) from t") == 51);
    std::string err;
    CHECK(db.try_exec("pragma walship_flush", &err) != SQLITE_OK);
    INFO(err);
    CHECK(err.find("timed out") != std::string::npos);
    // It says what is still waiting: the 50 transactions, and the store's error.
    CHECK(err.find("50 transactions") != std::string::npos);
    CHECK(err.find("the database is not in the bucket yet (its first snapshot is not uploaded)") != std::string::npos);
    CHECK(err.find("not in the bucket yet") != std::string::npos);
    CHECK(err.find("last error: ") != std::string::npos);
    CHECK(err.find("walship-test-secret-key") == std::string::npos);
    // A snapshot asked for with its own timeout waits that long, not flush_timeout.
    std::string serr;
    CHECK(db.try_exec("pragma walship_snapshot=300", &serr) != SQLITE_OK);
    CHECK(serr.find("within 300 ms") != std::string::npos);
    CHECK(db.try_exec("pragma walship_snapshot=soon", &serr) != SQLITE_OK);
    CHECK(serr.find("invalid walship_snapshot timeout 'soon'") != std::string::npos);
    std::string s = db.text("pragma walship_status");
    CHECK(s.find("\"last_error\":\"\"") == std::string::npos);
    CHECK(s.find("walship-test-secret-key") == std::string::npos);
}

TEST_CASE("auto-restore from an unreachable store fails the open with a clear error", "[vfs][integration]") {
    std::string path = temp_dir() + "/new.db";
    std::string err;
    int rc = Db::open_rc(uri(path, "s3://bucket/db?endpoint=http://127.0.0.1:9&region=us-east-1"), &err);
    CHECK(rc == SQLITE_CANTOPEN);
    CHECK(err.find("127.0.0.1:9") != std::string::npos);  // sqlite3_errmsg says why, not only "unable to open"
    CHECK_FALSE(file_exists(path));
}

TEST_CASE("a replicated database in a directory the process cannot write: read-write fails saying so, read-only answers as SQLite without walship", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string dir = temp_dir() + "/locked";
    REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
    std::string path = dir + "/x.db";
    {
        Db db(uri(path, url));
        db.exec("create table t(x); insert into t values(1)");
        REQUIRE(db.text("pragma walship_flush") == "ok");
    }
    REQUIRE(!file_exists(path + "-wal"));
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        alarm(30);
        if (::chmod(dir.c_str(), 0555) != 0) _exit(11);
        // Root writes anywhere: as root, the files go to nobody and the child becomes nobody.
        if (geteuid() == 0) {
            for (const char* f : {"", "-shm", "-walship"}) (void)!chown((path + f).c_str(), 65534, 65534);
            if (setgid(65534) != 0 || setuid(65534) != 0) _exit(10);
        }
        sqlite3* db = nullptr;
        int rc = sqlite3_open_v2(uri(path, url).c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, "walship");
        const bool said = rc != SQLITE_OK && std::string(sqlite3_errmsg(db)).find("is not writable") != std::string::npos;
        sqlite3_close(db);
        if (!said) _exit(12);
        // Read-only, it answers as SQLite without walship does on the same file: a database in
        // WAL format whose WAL is gone and cannot be created does not open (SQLite's own rule).
        auto count = [&](const std::string& name, const char* vfs, bool* slow_close) {
            sqlite3* c = nullptr;
            int n = -1;
            if (sqlite3_open_v2(name.c_str(), &c, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, vfs) == SQLITE_OK) {
                sqlite3_stmt* st = nullptr;
                n = sqlite3_prepare_v2(c, "select count(*) from t", -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -2;
                sqlite3_finalize(st);
            }
            auto t0 = std::chrono::steady_clock::now();
            sqlite3_close(c);
            if (slow_close) *slow_close = std::chrono::steady_clock::now() - t0 > std::chrono::seconds(2);  // a close waiting for a flush
            return n;
        };
        bool slow = false;
        const int plain = count("file:" + path, "unix", nullptr), replicated = count(uri(path, url, "mode=ro"), "walship", &slow);
        if (replicated != plain) _exit(14);
        if (slow) _exit(15);
        _exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    ::chmod(dir.c_str(), 0755);
    // 12: the read-write open did not say why; 14: read-only, walship answered otherwise than SQLite; 15: its close waited.
    CHECK((WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)) == 0);
}

TEST_CASE("invalid settings fail the open", "[vfs]") {
    std::string dir = temp_dir();
    std::string url = "file://" + dir + "/r";
    std::string err;
    // sqlite3_errmsg names the setting (SQLite alone would say "unable to open database file").
    const std::pair<std::string, std::string> cases[] = {
        {uri(dir + "/x.db", url, "sync_interval=abc"), "sync_interval"},
        {uri(dir + "/x.db", url, "restore=maybe"), "restore"},
        {uri(dir + "/x.db", url, "snapshot_part_size=1000"), "snapshot_part_size"},  // below 64 KiB
        {uri(dir + "/x.db", url, "durabilty=remote"), "durability"},
        {uri(dir + "/x.db", "ftp://nowhere/x"), "ftp"},
        {"file:" + dir + "/x.db?replica=", "replica is empty"},  // replica=$URL, the variable unset
        // Each of these opened unreplicated without a word: the replica under another name, a
        // setting for a database with no replica location, the replica URL's own parameters.
        {"file:" + dir + "/x.db?replica_url=" + url, "'replica_url' (did you mean replica?)"},
        {"file:" + dir + "/x.db?REPLICA=" + url, "'REPLICA' (did you mean replica?)"},
        {"file:" + dir + "/x.db?Durability=remote", "'Durability' (did you mean durability?)"},
        {"file:" + dir + "/x.db?durability=remote", "'durability' is set for " + dir + "/x.db, which has no replica location"},
        {"file:" + dir + "/x.db?endpoint=http://127.0.0.1:9", "'endpoint' without replica="},
    };
    for (auto& [u, named] : cases) {
        INFO(u);
        CHECK(Db::open_rc(u, &err) == SQLITE_CANTOPEN);
        INFO(err);
        CHECK(err.find(named) != std::string::npos);
        CHECK(err.find("walship") != std::string::npos);
    }
    CHECK_FALSE(file_exists(dir + "/x.db"));
    // ATTACH runs no automatic extension: the refused database fails its first use instead.
    Db ok(uri(dir + "/ok.db", url));
    CHECK(ok.try_exec("attach '" + uri(dir + "/x.db", url, "durabilty=remote") + "' as x", &err) != SQLITE_OK);
    CHECK_FALSE(file_exists(dir + "/x.db"));
}

namespace {
// resolve_config on a URI filename built the way SQLite builds one for xOpen.
bool config_from(std::vector<std::pair<std::string, std::string>> params, walship::Config* cfg, std::string* err) {
    params.insert(params.begin(), {"replica", "file:///tmp/walship-config-test"});
    std::vector<const char*> flat;
    for (auto& [k, v] : params) flat.push_back(k.c_str()), flat.push_back(v.c_str());
    sqlite3_filename f = sqlite3_create_filename("/tmp/c.db", "/tmp/c.db-journal", "/tmp/c.db-wal", int(params.size()), flat.data());
    bool ok = walship::resolve_config(f, "/tmp/c.db", cfg, err);
    sqlite3_free_filename(f);
    return ok;
}
}  // namespace

TEST_CASE("times and sizes take units", "[vfs]") {
    walship::Config cfg;
    std::string err;
    REQUIRE(config_from({{"sync_interval", "250"}, {"flush_timeout", "2s"}, {"close_timeout", "1.5m"}, {"max_wal_size", "64MiB"},
                         {"snapshot_part_size", "8MB"}, {"retention", "7d"}},
                        &cfg, &err));
    CHECK(cfg.sync_interval_ms == 250);
    CHECK(cfg.flush_timeout_ms == 2000);
    CHECK(cfg.close_timeout_ms == 90000);
    CHECK(cfg.max_wal_bytes == 64ull << 20);
    CHECK(cfg.snapshot_part_bytes == 8000000);
    CHECK(cfg.retention_ms == 7LL * 86400 * 1000);
    REQUIRE(config_from({{"sync_interval", "100ms"}, {"max_wal_size", "2g"}, {"snapshot_part_size", "65536"}}, &cfg, &err));
    CHECK(cfg.sync_interval_ms == 100);
    CHECK(cfg.max_wal_bytes == 2ull << 30);
    CHECK(cfg.snapshot_part_bytes == 65536);
    // Out of range or unreadable: the error names the setting, the value and what is expected.
    for (auto [k, v] : std::vector<std::pair<std::string, std::string>>{{"sync_interval", "2h"},
                                                                        {"sync_interval", "1 s"},
                                                                        {"sync_interval", "-5"},
                                                                        {"flush_timeout", "0"},
                                                                        {"max_wal_size", "1KiB"},
                                                                        {"max_wal_size", "64XB"},
                                                                        {"snapshot_part_size", "2GiB"},
                                                                        {"zstd_level", "3x"}}) {
        INFO(k << "=" << v);
        err.clear();
        CHECK_FALSE(config_from({{k, v}}, &cfg, &err));
        CHECK(err.find(k + " '" + v + "'") != std::string::npos);
    }
    // Durations past 100 years would overflow the clock's nanoseconds.
    err.clear();
    CHECK_FALSE(config_from({{"retention_check_interval", "200000d"}}, &cfg, &err));
    CHECK(err.find("retention_check_interval '200000d'") != std::string::npos);
    REQUIRE(config_from({{"snapshot_interval", "3650d"}}, &cfg, &err));
    CHECK(cfg.snapshot_interval_ms == 3650LL * 86400 * 1000);
}

TEST_CASE("a misspelt setting is an error, not a default kept in silence, and an unencoded replica URL's query is put back together", "[vfs]") {
    walship::Config cfg;
    std::string err;
    for (auto [k, meant] : std::vector<std::pair<std::string, std::string>>{{"durabilty", "durability"},
                                                                           {"sync_intervall", "sync_interval"},
                                                                           {"retension", "retention"},
                                                                           {"replca", "replica"}}) {
        INFO(k);
        err.clear();
        CHECK_FALSE(config_from({{k, "remote"}}, &cfg, &err));
        CHECK(err.find("'" + k + "'") != std::string::npos);
        CHECK(err.find("did you mean " + meant) != std::string::npos);
    }
    // SQLite's own parameters and other names pass.
    REQUIRE(config_from({{"mode", "rwc"}, {"cache", "shared"}, {"psow", "1"}, {"vfs", "walship"}, {"_txlock", "immediate"}}, &cfg, &err));
    // "file:c.db?replica=s3://b/p?endpoint=E&region=R&force_path_style=true", unencoded: SQLite
    // hands walship replica=s3://b/p?endpoint=E, region=R and force_path_style=true.
    std::vector<std::pair<std::string, std::string>> split{{"replica", "s3://b/p?endpoint=http://127.0.0.1:9"}, {"region", "eu-west-3"}, {"force_path_style", "true"}};
    std::vector<const char*> flat;
    for (auto& [k, v] : split) flat.push_back(k.c_str()), flat.push_back(v.c_str());
    sqlite3_filename f = sqlite3_create_filename("/tmp/c.db", "/tmp/c.db-journal", "/tmp/c.db-wal", int(split.size()), flat.data());
    REQUIRE(walship::resolve_config(f, "/tmp/c.db", &cfg, &err));
    sqlite3_free_filename(f);
    CHECK(cfg.replica_url == "s3://b/p?endpoint=http://127.0.0.1:9&region=eu-west-3&force_path_style=true");
}

TEST_CASE("a replicated database stays in WAL mode", "[vfs]") {
    std::string dir = temp_dir();
    std::string path = dir + "/j.db";
    {
        Db plain(path, nullptr);
        plain.exec("pragma journal_mode=delete; create table t(x); insert into t values(1)");
    }
    Db db(uri(path, "file://" + dir + "/r"));
    CHECK(db.integer("select count(*) from t") == 1);
    CHECK(db.text("pragma journal_mode") == "wal");
    std::string err;
    CHECK(db.try_exec("pragma journal_mode=delete", &err) != SQLITE_OK);
    CHECK(err.find("WAL mode") != std::string::npos);
    CHECK(db.try_exec("pragma locking_mode=exclusive", &err) != SQLITE_OK);
    db.exec("insert into t values(2)");
    CHECK(file_exists(path + "-wal"));
}

TEST_CASE("corrupted objects are detected and never produce a database file", "[vfs]") {
    std::string dir = temp_dir();
    std::string url = "file://" + dir + "/r";
    {
        Db db(uri(dir + "/c.db", url));
        db.exec("create table t(x); insert into t select randomblob(500) from " + series(100));
        db.exec("insert into t values(1)");
        REQUIRE(db.text("pragma walship_flush") == "ok");
    }
    auto store = store_for(url);
    auto listing = store->list("generations/");
    REQUIRE(listing.ok());
    for (auto& o : listing->objects) {
        // Flip one byte in the middle of each object in turn.
        auto original = store->get(o.key);
        REQUIRE(original.ok());
        std::string bad = original.value();
        bad[bad.size() / 2] ^= 0x5a;
        REQUIRE(store->put(o.key, bad).ok());
        std::string out = dir + "/out.db";
        std::string err = restore_to(url, out);
        INFO(o.key);
        CHECK(err.find("corrupt") != std::string::npos);
        CHECK_FALSE(file_exists(out));
        REQUIRE(store->put(o.key, original.value()).ok());
    }
    REQUIRE(restore_to(url, dir + "/good.db") == "");
}

TEST_CASE("the newest generation's only snapshot damaged: restore fails, it does not fall back to the older generation", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/newest-damaged.db";
    {
        Db db(uri(path, url, "sync_interval=0"));
        db.exec("create table t(x)");
        for (int i = 0; i < 5; i++) db.exec("insert into t values(" + std::to_string(i) + ")");
        REQUIRE(db.text("pragma walship_flush") == "ok");
    }
    {
        Db plain(path, "unix");  // written without walship: the next start cannot continue the generation
        plain.exec("insert into t values(100)");
    }
    {
        Db db(uri(path, url, "sync_interval=0"));
        for (int i = 5; i < 10; i++) db.exec("insert into t values(" + std::to_string(i) + ")");
        REQUIRE(db.text("pragma walship_flush") == "ok");
    }
    auto store = store_for(url);
    auto gens = list_generations(*store);
    REQUIRE(gens.ok());
    REQUIRE(gens->size() == 2);
    auto listing = store->list(generation_prefix(gens->back().id));
    REQUIRE(listing.ok());
    std::string snap;
    for (auto& o : parse_listing(listing->objects))
        if (o.k.snapshot) snap = o.key;
    REQUIRE(!snap.empty());
    auto original = store->get(snap);
    REQUIRE(original.ok());
    std::string bad = original.value();
    bad[bad.size() / 2] ^= 0x01;
    REQUIRE(store->put(snap, bad).ok());
    std::string out = temp_dir() + "/newest-damaged-restored.db";
    std::string err = restore_to(url, out);
    CHECK(err.find(snap) != std::string::npos);
    CHECK_FALSE(file_exists(out));
    // Asked for by name, the older generation still restores (its 5 rows).
    RestoreOptions opt;
    opt.output = out;
    opt.generation = gens->front().id;
    auto r = restore(*store, opt);
    REQUIRE(r.ok());
    Db db(out, nullptr, SQLITE_OPEN_READONLY);
    CHECK(db.integer("select count(*) from t") == 5);
}

TEST_CASE("a damaged snapshot is restored around through an older snapshot and the segments after it, never to an earlier point", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/around.db";
    {
        Db db(uri(path, url, "sync_interval=0"));
        db.exec("create table t(x)");
        // The generation's first snapshot first (a slow start could otherwise take it after the
        // inserts, and the requested one below would be at txid 0 too).
        REQUIRE(db.text("pragma walship_flush") == "ok");
        for (int i = 0; i < 20; i++) db.exec("insert into t values(randomblob(300))");
        REQUIRE(db.text("pragma walship_flush") == "ok");
        REQUIRE(db.text("pragma walship_snapshot") == "ok");
        for (int i = 0; i < 20; i++) db.exec("insert into t values(randomblob(300))");
        REQUIRE(db.text("pragma walship_flush") == "ok");
    }
    auto store = store_for(url);
    auto listing = store->list("generations/");
    REQUIRE(listing.ok());
    std::string newest_snap, last_seg;
    uint64_t newest = 0, last = 0;
    for (auto& o : parse_listing(listing->objects)) {
        if (o.k.snapshot && !o.k.part && o.k.first >= newest) newest = o.k.first, newest_snap = o.key;
        if (!o.k.snapshot && o.k.last >= last) last = o.k.last, last_seg = o.key;
    }
    REQUIRE(newest > 0);
    REQUIRE(last > newest);
    auto damage = [&](const std::string& key) {
        auto original = store->get(key);
        REQUIRE(original.ok());
        std::string bad = original.value();
        bad[bad.size() / 2] ^= 0x5a;
        REQUIRE(store->put(key, bad).ok());
        return original.value();
    };
    // The newest snapshot damaged: the first one and every segment since lead to the same state.
    std::string snap_bytes = damage(newest_snap);
    std::string out = temp_dir() + "/around-restored.db";
    RestoreInfo info;
    REQUIRE(restore_to(url, out, &info) == "");
    CHECK(info.txid == last);
    CHECK(info.checksum_verified);
    CHECK(compare_pages(path, out, 4096) == "");
    // The last segment damaged too: no other object holds its transactions. The restore fails,
    // naming the damaged object, and does not fall back to an earlier point.
    damage(last_seg);
    ::unlink(out.c_str());
    std::string err = restore_to(url, out);
    CHECK(err.find("corrupt") != std::string::npos);
    INFO(err);
    CHECK(err.find(last_seg.substr(last_seg.rfind('/') + 1)) != std::string::npos);
    CHECK_FALSE(file_exists(out));
}

TEST_CASE("the format's hashes match FORMAT.md's definitions, fed whole or in pieces", "[vfs][format]") {
    // Expected values from an implementation written from FORMAT.md's text alone (Python).
    auto pattern = [](size_t n) {
        std::string s(n, '\0');
        for (size_t i = 0; i < n; i++) s[i] = char((i * 7 + 3) & 0xff);
        return s;
    };
    auto object_hash = [](const std::string& b) {
        ObjectHash h;
        h.update(b.data(), b.size());
        return h.value();
    };
    CHECK(object_hash("") == 0xb49c4d244ced8f56ull);
    CHECK(object_hash("abc") == 0x149137a0ed3fee88ull);
    CHECK(object_hash(pattern(64)) == 0x4d89ff25f6773348ull);
    CHECK(object_hash(pattern(1000)) == 0x5b8d7060fd0419aeull);
    CHECK(page_hash(3, pattern(4096).data(), 4096) == 0xefca23b9a41c36e9ull);
    CHECK(page_hash(1, pattern(512).data(), 512) == 0x212e919023a0384bull);
    // Any split of the input gives the same hash.
    std::string data = pattern(1000);
    std::mt19937 rng(7);
    for (int round = 0; round < 50; round++) {
        ObjectHash h;
        for (size_t at = 0; at < data.size();) {
            size_t n = std::min<size_t>(rng() % 70, data.size() - at);
            h.update(data.data() + at, n);
            at += n;
        }
        CHECK(h.value() == 0x5b8d7060fd0419aeull);
    }
}

TEST_CASE("version 2 objects (SHA-256 trailer) still restore, alone or mixed with version 3, and a changed version or trailer byte is refused", "[vfs][format]") {
    std::string dir = temp_dir();
    std::string url = "file://" + dir + "/r";
    std::string path = dir + "/v.db";
    {
        // A snapshot in parts (the database of about 500 KB exists before replication starts:
        // 8 parts, however uploads are batched) and segments.
        Db(path, "unix").exec("create table t(x); insert into t select randomblob(800) || zeroblob(800) from " + series(300));
        Db db(uri(path, url, "snapshot_part_size=65536"));
        for (int i = 0; i < 20; i++) db.exec("insert into t values(randomblob(" + std::to_string(100 + i) + "))");
        REQUIRE(db.text("pragma walship_flush") == "ok");
    }
    auto store = store_for(url);
    auto listing = store->list("generations/");
    REQUIRE(listing.ok());
    REQUIRE(listing->objects.size() >= 8);
    REQUIRE(std::any_of(listing->objects.begin(), listing->objects.end(), [](const s3::ObjectInfo& o) { return o.key.find("/segments/") != std::string::npos; }));
    std::map<std::string, std::string> v3;
    for (auto& o : listing->objects) {
        auto got = store->get(o.key);
        REQUIRE(got.ok());
        REQUIRE(got->size() > kHeaderSize + kTrailerSize);
        CHECK(int(got.value()[9]) == 3);  // what this build writes
        CHECK(got->substr(got->size() - 24) == std::string(24, '\0'));
        v3[o.key] = got.value();
    }
    // The same objects as a version 2 writer made them: version byte 2, SHA-256 trailer.
    for (auto& [key, object] : v3) {
        std::string v2 = object.substr(0, object.size() - 32);
        v2[9] = 2;
        v2.resize(v2.size() - 8);
        append_trailer(v2, get_u64le(reinterpret_cast<const unsigned char*>(object.data()) + object.size() - kTrailerSize));
        REQUIRE(v2.size() == object.size());
        REQUIRE(store->put(key, v2).ok());
    }
    RestoreInfo info;
    REQUIRE(restore_to(url, dir + "/from-v2.db", &info) == "");
    CHECK(info.checksum_verified);
    CHECK(compare_pages(path, dir + "/from-v2.db", 4096) == "");
    // A generation continued after an upgrade holds both versions: every other object back to 3.
    bool flip = false;
    for (auto& [key, object] : v3)
        if ((flip = !flip)) REQUIRE(store->put(key, object).ok());
    REQUIRE(restore_to(url, dir + "/mixed.db") == "");
    CHECK(compare_pages(path, dir + "/mixed.db", 4096) == "");

    // Version 3 objects labelled 2 (or the other way round), a damaged trailer, an unknown version.
    auto refused = [&](const std::string& key, const std::string& bad, const std::string& says) {
        INFO(key << ": " << says);
        REQUIRE(store->put(key, bad).ok());
        std::string out = dir + "/bad.db";
        std::string err = restore_to(url, out);
        CHECK(err.find(says) != std::string::npos);
        CHECK(err.find(key.substr(key.rfind('/') + 1)) != std::string::npos);
        CHECK_FALSE(file_exists(out));
    };
    for (auto& [key, object] : v3) {
        std::string relabelled = object;
        relabelled[9] = 2;
        refused(key, relabelled, "corrupted");
        std::string tail = object;
        tail[tail.size() - 1] ^= 1;  // one of the zero bytes after the hash
        refused(key, tail, "corrupted");
        std::string future = object;
        future[9] = 4;
        refused(key, future, "unsupported walship object version 4");
        REQUIRE(store->put(key, object).ok());
    }
    REQUIRE(restore_to(url, dir + "/again.db") == "");
    CHECK(compare_pages(path, dir + "/again.db", 4096) == "");
}

TEST_CASE("a snapshot in parts restores page by page, and a missing, damaged or misplaced part is refused", "[vfs][integration]") {
    for (int page_size : {4096, 1024}) {
        for (std::string url : {"file://" + temp_dir() + "/r", new_s3_url()}) {
            INFO(url << " page size " << page_size);
            std::string dir = temp_dir();
            std::string path = dir + "/parts.db";
            {
                // An existing database of ~2 MB, replicated for the first time: its first snapshot
                // is in parts of 64 KiB of pages.
                Db plain(path, "unix");
                plain.exec("pragma page_size=" + std::to_string(page_size));
                plain.exec("pragma journal_mode=wal");
                plain.exec("create table t(id integer primary key, v blob)");
                plain.exec("insert into t(v) select randomblob(1500) || zeroblob(500) from " + series(1000));
            }
            {
                Db db(uri(path, url, "snapshot_part_size=65536"));
                db.exec("insert into t(v) values(randomblob(100))");
                REQUIRE(db.text("pragma walship_flush") == "ok");
            }
            auto store = store_for(url);
            auto listing = store->list("generations/");
            REQUIRE(listing.ok());
            std::vector<std::string> parts;
            for (auto& o : listing->objects)
                if (o.key.size() > 5 && o.key.compare(o.key.size() - 5, 5, ".part") == 0) parts.push_back(o.key);
            uint64_t db_bytes = uint64_t(Db(path, "unix", SQLITE_OPEN_READONLY).integer("pragma page_count")) * page_size;
            CHECK(parts.size() == (db_bytes + 65535) / 65536 - 1);
            REQUIRE(parts.size() >= 10);
            std::string out = dir + "/restored.db";
            RestoreInfo info;
            REQUIRE(restore_to(url, out, &info) == "");
            CHECK(info.checksum_verified);
            CHECK(info.objects >= parts.size() + 1);
            CHECK(compare_pages(path, out, page_size) == "");

            // A missing part, a damaged one, or one part's object under another's key: refused,
            // and no database file appears.
            auto a = store->get(parts[3]), b = store->get(parts[4]);
            REQUIRE(a.ok());
            REQUIRE(b.ok());
            auto attempt = [&](const std::string& what) {
                INFO(what);
                std::string bad_out = dir + "/bad.db";
                std::string err = restore_to(url, bad_out);
                INFO(err);
                CHECK(err.find(parts[3].substr(parts[3].rfind('/') + 1)) != std::string::npos);  // names the object
                CHECK_FALSE(file_exists(bad_out));
                return err;
            };
            REQUIRE(store->remove(parts[3]).ok());
            CHECK(attempt("missing").find("parts, the replica holds") != std::string::npos);
            std::string damaged = a.value();
            damaged[damaged.size() / 2] ^= 0x5a;
            REQUIRE(store->put(parts[3], damaged).ok());
            CHECK(attempt("damaged").find("corrupted") != std::string::npos);
            REQUIRE(store->put(parts[3], b.value()).ok());
            CHECK(attempt("misplaced").find("continue") != std::string::npos);
            REQUIRE(store->put(parts[3], a.value()).ok());
            REQUIRE(restore_to(url, dir + "/again.db") == "");
            CHECK(compare_pages(path, dir + "/again.db", page_size) == "");
        }
    }
}

TEST_CASE("a replica with no data is reported as such", "[vfs][integration]") {
    auto store = store_for(new_s3_url());
    RestoreOptions opt;
    opt.output = temp_dir() + "/none.db";
    auto r = restore(*store, opt);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == s3::ErrorKind::NotFound);
    CHECK(is_no_replica_data(r.error()));
    CHECK_FALSE(file_exists(opt.output));
}

TEST_CASE("a replica whose snapshot is gone is damaged, not empty: restore and auto-restore fail, nothing starts empty", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/nosnap.db";
    {
        Db db(uri(path, url));
        db.exec("create table t(x)");
        REQUIRE(db.text("pragma walship_flush") == "ok");
        for (int i = 0; i < 5; i++) db.exec("insert into t values(randomblob(100))");
        REQUIRE(db.text("pragma walship_flush") == "ok");
    }
    auto store = store_for(url);
    auto listing = store->list("generations/");
    REQUIRE(listing.ok());
    int segments = 0;
    for (auto& o : parse_listing(listing->objects)) {
        if (o.k.snapshot) REQUIRE(store->remove(o.key).ok());
        else segments++;
    }
    REQUIRE(segments > 0);
    RestoreOptions opt;
    opt.output = temp_dir() + "/nosnap-restored.db";
    auto r = restore(*store, opt);
    REQUIRE_FALSE(r.ok());
    CHECK_FALSE(is_no_replica_data(r.error()));
    CHECK(r.error().str().find("no snapshot") != std::string::npos);
    CHECK_FALSE(file_exists(opt.output));
    // The database is lost locally: the open fails instead of starting a new, empty generation.
    remove_db_files(path);
    std::string err;
    CHECK(Db::open_rc(uri(path, url), &err) != SQLITE_OK);  // the reason is in walship's log (SQLite has no way to carry it)
    CHECK_FALSE(file_exists(path));
    auto gens = list_generations(*store);
    REQUIRE(gens.ok());
    CHECK(gens->size() == 1);
}

TEST_CASE("a newer generation that lost its snapshot fails restore instead of silently giving the older generation", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/older.db";
    {
        Db db(uri(path, url));
        db.exec("create table t(x)");
        REQUIRE(db.text("pragma walship_flush") == "ok");
        db.exec("insert into t values(1)");
        REQUIRE(db.text("pragma walship_flush") == "ok");
    }
    auto store = store_for(url);
    auto listing = store->list("generations/");
    REQUIRE(listing.ok());
    uint64_t gen = 0;
    std::string seg;
    for (auto& o : parse_listing(listing->objects))
        if (!o.k.snapshot) gen = o.k.gen, seg = o.key;
    REQUIRE(!seg.empty());
    // A later generation whose snapshot is gone: only a segment of it is left.
    uint64_t newer = gen + (uint64_t(1000) << 16);
    auto body = store->get(seg);
    REQUIRE(body.ok());
    REQUIRE(store->put(segment_key(newer, 1, 1, (newer >> 16) + 10), body.value()).ok());
    RestoreOptions opt;
    opt.output = temp_dir() + "/older-restored.db";
    auto r = restore(*store, opt);
    REQUIRE_FALSE(r.ok());
    CHECK_FALSE(is_no_replica_data(r.error()));
    CHECK(r.error().str().find("no snapshot") != std::string::npos);
    CHECK_FALSE(file_exists(opt.output));
    opt.generation = gen;  // the older generation on purpose still restores
    REQUIRE(restore(*store, opt).ok());
}

TEST_CASE("restore to an earlier transaction gives exactly the database as of that commit", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/pitr.db";
    std::map<long long, long long> rows_at;  // txid -> rows
    {
        Db db(uri(path, url, "sync_interval=0"));
        db.exec("create table t(x)");
        for (int i = 1; i <= 20; i++) {
            db.exec("insert into t values(" + std::to_string(i) + ")");
            REQUIRE(db.text("pragma walship_flush") == "ok");
            rows_at[status_field(db, "txid")] = i;
        }
    }
    REQUIRE(rows_at.size() == 20);
    auto store = store_for(url);
    for (auto [txid, rows] : rows_at) {
        RestoreOptions opt;
        opt.output = temp_dir() + "/p.db";
        opt.txid = uint64_t(txid);
        auto r = restore(*store, opt);
        REQUIRE(r.ok());
        CHECK(r->txid == uint64_t(txid));
        Db db(opt.output, nullptr, SQLITE_OPEN_READONLY);
        CHECK(db.integer("select count(*) from t") == rows);
        CHECK(db.integer("select max(x) from t") == rows);
    }
    RestoreOptions opt;
    opt.output = temp_dir() + "/p.db";
    opt.txid = uint64_t(rows_at.rbegin()->first + 1);
    auto r = restore(*store, opt);
    CHECK_FALSE(r.ok());
    CHECK_FALSE(file_exists(opt.output));
}

TEST_CASE("a transaction larger than the shipper reads at once, or than a segment, ships and restores exactly", "[vfs][integration]") {
    // The shipper reads the WAL 1 MiB at a time and fills segments up to 16 MiB of pages: a
    // transaction of 20 MiB spans twenty reads and makes a segment of its own, and the small ones
    // around it share the reads it starts and ends in. Both durabilities (a remote-durable COMMIT
    // waits for its upload).
    for (std::string durability : {"local", "remote"}) {
        INFO("durability=" << durability);
        std::string url = new_s3_url();
        std::string path = temp_dir() + "/big-" + durability + ".db";
        {
            Db db(uri(path, url, "durability=" + durability + "&flush_timeout=60000"));
            db.exec("pragma wal_autocheckpoint=0");
            db.exec("create table t(id integer primary key, v blob)");
            db.exec("insert into t(v) values(randomblob(100))");
            db.exec("insert into t(v) select randomblob(4000) from " + series(5000));
            db.exec("insert into t(v) values(randomblob(100))");
            db.exec("begin; update t set v = randomblob(3000) where id % 2 = 0; insert into t(v) values(zeroblob(5000000)); commit");
            db.exec("insert into t(v) values(randomblob(100))");
            REQUIRE(db.text("pragma walship_flush=60000") == "ok");
            CHECK(status_field(db, "pending_frames") == 0);
            CHECK(db.integer("select count(*) from t") == 5004);
        }
        check_round_trip(url, path, 4096);
    }
}

TEST_CASE("transactions larger than a segment stream from the WAL: several in a row, synchronous=FULL padding after them, each point restorable", "[vfs][integration]") {
    // Over max_segment_bytes (16 MiB) of pages, a transaction is read twice from the WAL and
    // streamed into its own segment. Between them small ones, a page rewritten many times within
    // one large transaction (only its last version ships), and a WAL reset.
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/large-stream.db";
    std::map<long long, long long> rows_at;  // txid -> rows
    {
        Db db(uri(path, url, "durability=remote&flush_timeout=60000"));
        db.exec("pragma synchronous=FULL");
        db.exec("pragma wal_autocheckpoint=0");
        db.exec("pragma cache_size=100");  // the large transactions spill pages to the WAL early and again later
        db.exec("create table t(id integer primary key, v blob)");
        db.exec("create table c(n)");
        db.exec("insert into c values(0)");
        auto mark = [&] { rows_at[status_field(db, "txid")] = db.integer("select count(*) from t"); };
        mark();
        db.exec("insert into t(v) select randomblob(4000) from " + series(5000));  // 20 MB
        mark();
        db.exec("insert into t(v) values(randomblob(100))");
        mark();
        db.exec("begin; update t set v = randomblob(3900) where id % 3 = 0; update c set n = n + 1; "
                "insert into t(v) select randomblob(4000) from " + series(3000) + "; update c set n = n + 1; commit");
        mark();
        db.exec("begin; insert into t(v) select randomblob(4000) from " + series(4500) + "; commit");  // right after another large one
        mark();
        CHECK(db.text("pragma wal_checkpoint(TRUNCATE)") == "0");
        db.exec("insert into t(v) select randomblob(4000) from " + series(4500));
        mark();
        db.exec("delete from t where id % 2 = 0");
        mark();
        REQUIRE(db.text("pragma walship_flush=60000") == "ok");
        CHECK(status_field(db, "pending_frames") == 0);
        CHECK(status_field(db, "errors") == 0);
    }
    REQUIRE(rows_at.size() == 7);
    check_round_trip(url, path, 4096);
    auto store = store_for(url);
    for (auto [txid, rows] : rows_at) {
        INFO("txid " << txid);
        RestoreOptions opt;
        opt.output = temp_dir() + "/large-stream-p.db";
        opt.txid = uint64_t(txid);
        auto r = restore(*store, opt);
        REQUIRE(r.ok());
        CHECK(r->txid == uint64_t(txid));
        Db db(opt.output, nullptr, SQLITE_OPEN_READONLY);
        CHECK(db.integer("select count(*) from t") == rows);
        CHECK(db.text("pragma integrity_check") == "ok");
    }
}

TEST_CASE("restore streams segments too large to fetch ahead, and stops inside a merged one at the requested transaction", "[vfs][integration]") {
    // Remote durability uploads each commit as its own segment; compaction merges every eight
    // into one (here about 10 MB, past the size restore downloads whole ahead of its turn). Once
    // the database is closed the merged-away segments are gone, so a point inside a merged
    // segment is reached by reading it to the end and applying only the transactions up to it.
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/stream-restore.db";
    std::map<long long, long long> rows_at;  // txid -> rows
    {
        Db db(uri(path, url, "durability=remote&flush_timeout=60000"));
        db.exec("create table t(id integer primary key, v blob)");
        for (int i = 0; i < 17; i++) {
            db.exec("insert into t(v) select randomblob(4000) from " + series(300));
            rows_at[status_field(db, "txid")] = db.integer("select count(*) from t");
        }
        CHECK(status_field(db, "compactions") >= 2);
    }
    auto store = store_for(url);
    auto listing = store->list("generations/");
    REQUIRE(listing.ok());
    size_t large = 0;
    for (auto& o : listing->objects)
        if (o.key.find(".seg") != std::string::npos && o.size > (8u << 20)) large++;
    CHECK(large >= 2);
    check_round_trip(url, path, 4096);
    for (auto [txid, rows] : rows_at) {
        INFO("txid " << txid);
        RestoreOptions opt;
        opt.output = temp_dir() + "/stream-restore-p.db";
        opt.txid = uint64_t(txid);
        auto r = restore(*store, opt);
        REQUIRE(r.ok());
        CHECK(r->txid == uint64_t(txid));
        CHECK(r->checksum_verified);
        Db db(opt.output, nullptr, SQLITE_OPEN_READONLY);
        CHECK(db.integer("select count(*) from t") == rows);
        CHECK(db.text("pragma integrity_check") == "ok");
    }
    // One flipped byte in the middle of a large segment: no restore past it, and no file.
    std::string victim;
    for (auto& o : listing->objects)
        if (o.key.find(".seg") != std::string::npos && o.size > (8u << 20)) victim = o.key;
    auto bytes = store->get(victim);
    REQUIRE(bytes.ok());
    std::string damaged = bytes.value();
    damaged[damaged.size() / 2] ^= 0x20;
    REQUIRE(store->put(victim, damaged).ok());
    RestoreOptions opt;
    opt.output = temp_dir() + "/stream-restore-damaged.db";
    auto r = restore(*store, opt);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == s3::ErrorKind::Corrupt);
    INFO(r.error().str());
    CHECK(r.error().str().find("restore") != std::string::npos);
    CHECK_FALSE(file_exists(opt.output));
}

TEST_CASE("remote durabilities with psow=0 (SQLite pads each commit to a sector with copies of its commit frame, syncing among them): commits confirm at once, one generation", "[vfs][integration]") {
    for (std::string durability : {"remote-strict", "remote"}) {
        for (int page_size : {1024, 4096, 65536}) {
            INFO(durability << ", page size " << page_size);
            std::string url = new_s3_url();
            std::string path = temp_dir() + "/psow-" + durability + "-" + std::to_string(page_size) + ".db";
            {
                Db plain(path, "unix");
                plain.exec("pragma page_size=" + std::to_string(page_size));
                plain.exec("pragma journal_mode=wal");
                plain.exec("create table t(id integer primary key, v blob)");
            }
            {
                Db db(uri(path, url, "durability=" + durability + "&psow=0&flush_timeout=10000"));
                db.exec("pragma synchronous=FULL");
                auto t0 = std::chrono::steady_clock::now();
                for (int i = 0; i < 10; i++) db.exec("insert into t(v) values(randomblob(" + std::to_string(100 + i * 700) + "))");
                double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
                CHECK(ms < 5000);  // no commit waited for flush_timeout
                CHECK(status_field(db, "errors") == 0);
                CHECK(db.text("pragma wal_checkpoint(TRUNCATE)") == "0");
            }
            auto store = store_for(url);
            auto gens = list_generations(*store);
            REQUIRE(gens.ok());
            CHECK(gens->size() == 1);
            check_round_trip(url, path, page_size);
        }
    }
}

TEST_CASE("restarts continue the same generation and lose nothing", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/restart.db";
    for (int i = 0; i < 8; i++) {
        Db db(uri(path, url));
        db.exec("create table if not exists t(i, v)");
        db.exec("insert into t values(" + std::to_string(i) + ", randomblob(3000))");
        if (i % 3 == 1) db.exec("pragma wal_checkpoint(TRUNCATE)");
    }
    auto store = store_for(url);
    auto gens = list_generations(*store);
    REQUIRE(gens.ok());
    CHECK(gens->size() == 1);
    check_round_trip(url, path, 4096);
}

TEST_CASE("a writer outside walship (plain SQLite) writes and checkpoints: a new generation, restored correctly", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/foreign.db";
    auto store = store_for(url);
    {
        Db a(uri(path, url));
        a.exec("create table t(x)");
        a.exec("insert into t select randomblob(200) from " + series(300));
        REQUIRE(a.text("pragma walship_flush") == "ok");
        // While walship is running: the plain connection's commits go through the same WAL,
        // but its TRUNCATE checkpoint resets the WAL behind walship's back.
        Db b(path, "unix");
        b.exec("insert into t select randomblob(300) from " + series(100));
        b.exec("pragma wal_checkpoint(TRUNCATE)");
        b.exec("insert into t values('from plain sqlite')");
        a.exec("insert into t values('from walship')");
        REQUIRE(a.text("pragma walship_flush") == "ok");
    }
    check_round_trip(url, path, 4096);
    // While walship is not running at all.
    {
        Db b(path, "unix");
        b.exec("insert into t select randomblob(300) from " + series(50));
    }
    {
        Db a(uri(path, url));
        a.exec("insert into t values('back with walship')");
        REQUIRE(a.text("pragma walship_flush") == "ok");
    }
    check_round_trip(url, path, 4096);
    auto gens = list_generations(*store);
    REQUIRE(gens.ok());
    CHECK(gens->size() >= 2);
}

TEST_CASE("a WAL reset walship allowed continues the generation", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/resets.db";
    {
        Db db(uri(path, url, "sync_interval=0"));
        db.exec("pragma wal_autocheckpoint=20");
        db.exec("create table t(x)");
        for (int i = 0; i < 300; i++) db.exec("insert into t values(randomblob(500))");
        db.exec("pragma wal_checkpoint(TRUNCATE)");
        for (int i = 0; i < 50; i++) db.exec("insert into t values(randomblob(500))");
        REQUIRE(db.text("pragma walship_flush") == "ok");
    }
    auto store = store_for(url);
    auto gens = list_generations(*store);
    REQUIRE(gens.ok());
    CHECK(gens->size() == 1);
    check_round_trip(url, path, 4096);
}

namespace {
// The snapshot objects (not parts) of a replica, as parsed keys.
std::vector<ParsedKey> snapshot_objects(const std::string& url) {
    auto listing = store_for(url)->list("generations/");
    REQUIRE(listing.ok());
    std::vector<ParsedKey> out;
    for (auto& o : parse_listing(listing->objects))
        if (o.k.snapshot && !o.k.part) out.push_back(o.k);
    return out;
}
}  // namespace

TEST_CASE("PRAGMA walship_snapshot after WAL resets writes a snapshot at the latest txid, and replication goes on", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/snapreset.db";
    {
        Db db(uri(path, url));  // default sync_interval: the shipper is paced between uploads
        db.exec("create table t(x)");
        for (int round = 0; round < 3; round++) {
            INFO("round " << round);
            for (int i = 0; i < 20; i++) db.exec("insert into t values(randomblob(300))");
            REQUIRE(db.text("pragma walship_flush") == "ok");
            REQUIRE(db.text("pragma wal_checkpoint(TRUNCATE)") == "0");  // a new WAL follows
            db.exec("insert into t values(randomblob(300))");
            size_t before = snapshot_objects(url).size();
            REQUIRE(db.text("pragma walship_snapshot") == "ok");
            // The snapshot is in the bucket when the pragma returns, at the commit before it.
            auto snaps = snapshot_objects(url);
            CHECK(snaps.size() == before + 1);
            uint64_t newest = 0;
            for (auto& k : snaps) newest = std::max(newest, k.first);
            CHECK(newest == uint64_t(status_field(db, "txid")));
            CHECK(status_field(db, "errors") == 0);
        }
        db.exec("insert into t values(1)");
        REQUIRE(db.text("pragma walship_flush") == "ok");
    }
    check_round_trip(url, path, 4096);
}

TEST_CASE("an explicit wal_checkpoint(TRUNCATE) succeeds at once while the shipper waits for its interval", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/ckpt.db";
    {
        Db db(uri(path, url, "sync_interval=5s"));
        db.exec("create table t(x)");
        REQUIRE(db.text("pragma walship_flush") == "ok");
        for (int round = 0; round < 3; round++) {
            INFO("round " << round);
            for (int i = 0; i < 5; i++) db.exec("insert into t values(randomblob(300))");
            REQUIRE(db.text("pragma walship_flush") == "ok");
            REQUIRE(db.text("pragma wal_checkpoint(TRUNCATE)") == "0");
            // Commits into the new WAL, which the shipper (paced: the flush used its uploads)
            // has not looked at yet. busy = 0: the checkpoint waits for the shipper's position
            // instead of refusing (SQLite would answer SQLITE_BUSY at once).
            for (int i = 0; i < 3; i++) db.exec("insert into t values(randomblob(300))");
            auto t0 = std::chrono::steady_clock::now();
            REQUIRE(db.text("pragma wal_checkpoint(TRUNCATE)") == "0");
            CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(400));
            CHECK(db.integer("select count(*) from t") == 8 * (round + 1));
        }
        REQUIRE(db.text("pragma walship_flush") == "ok");
        CHECK(status_field(db, "errors") == 0);
    }
    auto gens = list_generations(*store_for(url));
    REQUIRE(gens.ok());
    CHECK(gens->size() == 1);
    check_round_trip(url, path, 4096);
}

TEST_CASE("walship_status counts the transactions committed and not yet shipped", "[vfs][integration]") {
    std::string url = new_s3_url();
    Db db(uri(temp_dir() + "/pending.db", url, "sync_interval=10s"));
    db.exec("create table t(x)");
    REQUIRE(db.text("pragma walship_flush") == "ok");
    CHECK(status_field(db, "pending_txns") == 0);
    // The first commits after a quiet interval may ship at once (pacing lets two uploads through);
    // after them the shipper waits for its interval, and every commit counts.
    for (int i = 0; i < 10; i++) db.exec("insert into t values(randomblob(100))");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    long long p0 = status_field(db, "pending_txns");
    CHECK(p0 <= 10);
    for (int i = 0; i < 6; i++) db.exec("insert into t values(randomblob(100))");
    long long p1 = status_field(db, "pending_txns");
    CHECK(p1 == p0 + 6);
    db.exec("begin; insert into t values(1); insert into t values(2); commit");  // one transaction
    for (int i = 0; i < 4; i++) db.exec("insert into t values(randomblob(5000))");  // two frames each
    CHECK(status_field(db, "pending_txns") == p1 + 5);
    CHECK(status_field(db, "pending_frames") >= p1 + 9);
    CHECK(status_field(db, "pending_bytes") > 0);
    REQUIRE(db.text("pragma walship_flush") == "ok");
    CHECK(status_field(db, "pending_txns") == 0);
    CHECK(status_field(db, "pending_frames") == 0);
    CHECK(status_field(db, "pending_bytes") == 0);
}

TEST_CASE("walship_status on a connection that has not read yet counts what is pending, and this process keeps its locks on the wal-index", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/fresh-status.db";
    Db a(uri(path, url, "sync_interval=10s"));
    a.exec("create table t(x)");
    REQUIRE(a.text("pragma walship_flush") == "ok");
    for (int i = 0; i < 10; i++) a.exec("insert into t values(randomblob(100))");
    REQUIRE(status_field(a, "pending_txns") > 0);  // (pacing: the first two may have shipped)
    Db b(uri(path, url));  // has not read: no wal-index mapped
    CHECK(status_field(b, "pending_txns") == status_field(a, "pending_txns"));  // read 0 before
    // Every connection of this process still holds SQLite's shared lock on the wal-index's
    // "DMS" byte (unix VFS: byte 128 of the -shm file), which tells the next process that opens
    // the database that the wal-index is live. (A status that opened and closed the -shm file
    // dropped it, and the next process reinitialised the wal-index under this one.)
    pid_t child = fork();
    if (child == 0) {
        int fd = ::open((path + "-shm").c_str(), O_RDWR);
        struct flock lk {};
        lk.l_type = F_WRLCK;
        lk.l_whence = SEEK_SET;
        lk.l_start = 128;
        lk.l_len = 1;
        _exit(fd >= 0 && fcntl(fd, F_GETLK, &lk) == 0 && lk.l_type != F_UNLCK ? 0 : 1);
    }
    int st = 0;
    waitpid(child, &st, 0);
    CHECK((WIFEXITED(st) && WEXITSTATUS(st) == 0));
    REQUIRE(a.text("pragma walship_flush") == "ok");
    CHECK(status_field(b, "pending_txns") == 0);
}

TEST_CASE("ROLLBACK TO after a cache spill (SQLite 3.40.1 leaves committed frames with blank checksums): nothing committed is lost, locally or in the replica", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/rollbackto.db";
    {
        Db db(uri(path, url, "flush_timeout=5s"));
        db.exec("create table t(id integer primary key, v)");
        db.exec("insert into t(v) values(1)");
        REQUIRE(db.text("pragma walship_flush") == "ok");
        db.exec("pragma cache_size=100");  // the savepoint's pages spill into the WAL
        db.exec("begin; savepoint x");
        for (int i = 0; i < 20000; i++) db.exec("insert into t(v) values(randomblob(300))");
        db.exec("rollback to x; insert into t(v) values('after'); commit");
        REQUIRE(db.text("pragma walship_flush") == "ok");
        for (int i = 0; i < 20; i++) db.exec("insert into t(v) values(" + std::to_string(i) + ")");
        REQUIRE(db.text("pragma walship_flush") == "ok");
        CHECK(status_field(db, "errors") <= 2);  // reported, not repeated in a loop
        CHECK(db.integer("select count(*) from t where v = 'after'") == 1);
    }
    {
        Db db(path, nullptr);
        CHECK(db.integer("select count(*) from t where v = 'after'") == 1);
        CHECK(db.integer("select count(*) from t") == 22);
        CHECK(db.text("pragma integrity_check") == "ok");
    }
    check_round_trip(url, path, 4096);
}

TEST_CASE("a replicated database in a directory that does not exist fails to open (and does not hang)", "[vfs][integration]") {
    std::string url = new_s3_url();
    std::string err;
    CHECK(Db::open_rc(uri(temp_dir() + "/no/such/dir/x.db", url), &err) != SQLITE_OK);
    // The registry is usable afterwards.
    Db db(uri(temp_dir() + "/after.db", url));
    db.exec("create table t(x)");
    CHECK(db.text("pragma walship_flush") == "ok");
}

TEST_CASE("writers meeting at the write lock: busy_timeout still waits its whole time for a long transaction, and each writer's rows land", "[vfs][integration]") {
    // Under remote durability walship ends SQLite's first busy sleeps (1, 2, 5 ms) early once the
    // holder of the WAL write lock commits; a holder that keeps it must still cost the waiter its
    // busy_timeout.
    std::string dir = temp_dir();
    std::string url = new_s3_url();
    std::string path = dir + "/busy.db";
    const std::string remote = "durability=remote";
    Db a(uri(path, url, remote));
    a.exec("create table t(who, n)");
    Db b(uri(path, url, remote));
    sqlite3_busy_timeout(b.get(), 300);
    a.exec("begin immediate; insert into t values('a', 0)");
    auto t0 = std::chrono::steady_clock::now();
    std::string err;
    CHECK(b.try_exec("insert into t values('b', 0)", &err) == SQLITE_BUSY);
    auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    CHECK(waited >= 290);  // (at most 8 ms less than asked)
    a.exec("commit");

    // Three threads of short transactions on one database, each a connection: every row lands.
    auto writer = [&](const char* who) {
        Db db(uri(path, url, remote));
        sqlite3_busy_timeout(db.get(), 5000);
        for (int i = 1; i <= 100; i++) db.exec(std::string("insert into t values('") + who + "', " + std::to_string(i) + ")");
    };
    std::thread x(writer, "x"), y(writer, "y");
    writer("z");
    x.join();
    y.join();
    CHECK(a.integer("select count(*) from t where who in ('x', 'y', 'z')") == 300);
    REQUIRE(a.text("pragma walship_flush") == "ok");
    std::string out = dir + "/out.db";
    REQUIRE(restore_to(url, out) == "");
    a.exec("pragma wal_checkpoint(TRUNCATE)");
    CHECK(compare_pages(path, out, 4096) == "");
}

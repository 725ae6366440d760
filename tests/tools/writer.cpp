// A writer process for the crash and multi-process tests.
//
//   walship-test-writer run DB URL WRITER_ID [durability] [snapshots]
//       inserts rows until SIGTERM (then closes the database and exits 0); after each COMMIT prints
//       "C <id>" (the row id, now committed); every so often checkpoints, and with "snapshots" asks
//       for snapshots from a second thread. Rows carry 100-4,099 random bytes, or exactly
//       WALSHIP_TEST_PAD bytes when that is set.
//   walship-test-writer count DB URL
//       opens the database (auto-restoring it if missing) and prints "N <rows in log>".
//   walship-test-writer flush DB URL
//       opens the database (which ships what is left in the WAL), flushes, closes; exit 0 if ok.
//   walship-test-writer status DB URL
//       opens the database, prints PRAGMA walship_status (one line of JSON), closes.
#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>

#include "walship.h"
#include "walship_uri.h"

static volatile sig_atomic_t terminated = 0;

static sqlite3* open_db(const std::string& path, const std::string& url, const std::string& extra) {
    std::string uri = walship::replica_uri(path, url, extra);
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(uri.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, "walship") != SQLITE_OK) {
        fprintf(stderr, "open failed: %s\n", db ? sqlite3_errmsg(db) : "?");
        exit(3);
    }
    sqlite3_busy_timeout(db, 30000);
    return db;
}

int main(int argc, char** argv) {
    if (argc < 4) return 2;
    std::string mode = argv[1], path = argv[2], url = argv[3];
    walship_register(0);
    if (mode == "count") {  // prints the number of rows (after an auto-restore, if one happens)
        sqlite3* db = open_db(path, url, "");
        sqlite3_stmt* st = nullptr;
        if (sqlite3_prepare_v2(db, "select count(*) from log", -1, &st, nullptr) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
            fprintf(stderr, "count: %s\n", sqlite3_errmsg(db));
            return 1;
        }
        printf("N %lld\n", (long long)sqlite3_column_int64(st, 0));
        sqlite3_finalize(st);
        sqlite3_close(db);
        return 0;
    }
    if (mode == "status") {
        sqlite3* db = open_db(path, url, "");
        sqlite3_stmt* st = nullptr;
        if (sqlite3_prepare_v2(db, "pragma walship_status", -1, &st, nullptr) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
            fprintf(stderr, "status: %s\n", sqlite3_errmsg(db));
            return 1;
        }
        printf("%s\n", reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
        sqlite3_finalize(st);
        sqlite3_close(db);
        return 0;
    }
    if (mode == "flush") {
        sqlite3* db = open_db(path, url, "");
        char* err = nullptr;
        // Read first, so SQLite recovers the WAL a killed writer left, then wait for shipping.
        int rc = sqlite3_exec(db, "select count(*) from sqlite_schema; pragma walship_flush", nullptr, nullptr, &err);
        if (rc != SQLITE_OK) fprintf(stderr, "flush: %s\n", err ? err : "?");
        sqlite3_close(db);
        return rc == SQLITE_OK ? 0 : 1;
    }
    int writer = argc > 4 ? atoi(argv[4]) : 0;
    std::string durability = argc > 5 ? argv[5] : "local";
    bool snapshots = argc > 6 && std::string(argv[6]) == "snapshots";
    // Set before the database opens: a SIGTERM that comes while it opens still closes it cleanly.
    signal(SIGTERM, [](int) { terminated = 1; });
    sqlite3* db = open_db(path, url, "&durability=" + durability + "&sync_interval=100");
    sqlite3_exec(db, "create table if not exists log(id integer primary key, writer int, pad blob)", nullptr, nullptr, nullptr);
    std::atomic<bool> stop{false};
    std::thread snapper;
    if (snapshots) {
        snapper = std::thread([&] {
            sqlite3* s = open_db(path, url, "&durability=" + durability);
            while (!stop) {
                usleep(150000);
                sqlite3_exec(s, "pragma walship_snapshot", nullptr, nullptr, nullptr);
            }
            sqlite3_close(s);
        });
    }
    std::mt19937 rng{unsigned(getpid())};
    const char* pad = getenv("WALSHIP_TEST_PAD");
    sqlite3_stmt* ins = nullptr;
    sqlite3_prepare_v2(db, "insert into log(writer, pad) values(?, randomblob(?))", -1, &ins, nullptr);
    for (long i = 0; !terminated; i++) {
        sqlite3_bind_int(ins, 1, writer);
        sqlite3_bind_int(ins, 2, pad ? atoi(pad) : 100 + int(rng() % 4000));
        int rc = sqlite3_step(ins);
        sqlite3_reset(ins);
        if (rc != SQLITE_DONE) {
            // Not confirmed in time: not counted (remote-strict rolled it back; remote committed it
            // locally and ships it later, which the checks allow).
            fprintf(stderr, "insert failed: %s\n", sqlite3_errmsg(db));
            continue;
        }
        printf("C %lld\n", (long long)sqlite3_last_insert_rowid(db));
        fflush(stdout);
        // Like an application, not a tight loop: SQLite's write lock is not fair, and a writer
        // that never pauses can starve the others.
        usleep(100 + rng() % 400);
        if (i % 200 == 199) sqlite3_exec(db, "pragma wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr);
    }
    stop = true;
    if (snapper.joinable()) snapper.join();
    sqlite3_finalize(ins);
    return sqlite3_close(db) == SQLITE_OK ? 0 : 1;
}

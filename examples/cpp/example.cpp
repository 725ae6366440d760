// A C++ program with walship linked in statically: register the VFS, open a database with a
// replica location, write, and wait until the writes are in the bucket.
//
//   walship-example DB_PATH REPLICA_URL [ROWS]
#include <sqlite3.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "walship.h"
#include "walship_uri.h"

static int check(sqlite3* db, int rc, const char* what) {
    if (rc != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
    return rc;
}

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s DB_PATH REPLICA_URL [ROWS]\n", argv[0]);
        return 2;
    }
    int rows = argc > 3 ? atoi(argv[3]) : 1000;
    if (walship_register(1) != SQLITE_OK) return 1;  // "walship" becomes the default VFS

    std::string uri = walship::replica_uri(argv[1], argv[2]);  // both parts percent-encoded
    sqlite3* db = nullptr;
    check(db, sqlite3_open_v2(uri.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, nullptr), "open");
    sqlite3_busy_timeout(db, 5000);
    check(db, sqlite3_exec(db, "create table if not exists kv(k integer primary key, v text)", nullptr, nullptr, nullptr), "create");
    sqlite3_stmt* ins = nullptr;
    check(db, sqlite3_prepare_v2(db, "insert into kv(v) values(?)", -1, &ins, nullptr), "prepare");
    for (int i = 0; i < rows; i++) {
        std::string v = "value " + std::to_string(i);
        sqlite3_bind_text(ins, 1, v.c_str(), -1, SQLITE_TRANSIENT);
        if (sqlite3_step(ins) != SQLITE_DONE) check(db, SQLITE_ERROR, "insert");
        sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    // PRAGMA walship_flush returns "ok" once everything committed is in the bucket.
    sqlite3_stmt* flush = nullptr;
    check(db, sqlite3_prepare_v2(db, "pragma walship_flush", -1, &flush, nullptr), "flush");
    int rc = sqlite3_step(flush);
    printf("flush: %s\n", rc == SQLITE_ROW ? (const char*)sqlite3_column_text(flush, 0) : sqlite3_errmsg(db));
    sqlite3_finalize(flush);
    sqlite3_close(db);
    return rc == SQLITE_ROW ? 0 : 1;
}

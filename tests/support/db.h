// Test helpers for databases: a small RAII connection, page-by-page file comparison.
#pragma once

#include <sqlite3.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "walship/s3/store.h"

namespace walship::test {

class Db {
public:
    explicit Db(const std::string& uri, const char* vfs = "walship", int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI);
    ~Db();
    Db(const Db&) = delete;
    Db& operator=(const Db&) = delete;
    sqlite3* get() const { return db_; }
    void exec(const std::string& sql);            // throws with SQLite's message
    int try_exec(const std::string& sql, std::string* err = nullptr);
    std::string text(const std::string& sql);      // first column of the first row
    long long integer(const std::string& sql);
    static int open_rc(const std::string& uri, std::string* err);

private:
    sqlite3* db_ = nullptr;
};

// Describes the first difference between two database files, or "" when identical page by page.
std::string compare_pages(const std::string& a, const std::string& b, int page_size);
bool file_exists(const std::string& path);
void remove_db_files(const std::string& path);  // db, -wal, -shm, -walship
std::string uri(const std::string& path, const std::string& replica, const std::string& extra = "");
std::string url_encode(const std::string& s);
// A table of the integers 1..n, column `value`, for "... from " + series(n) (the generate_series
// extension is not in the library).
std::string series(int n);

// For test binaries linked with walship: dummy credentials in the environment and the "walship"
// VFS registered (not as the default). Safe to call more than once.
void use_walship();
// Opens a replica location with the test credentials (fails the test on error).
std::unique_ptr<s3::Store> store_for(const std::string& url);
// A field of a flat JSON object such as walship_status's: a number; a text as it stands (escapes kept).
long long json_number(const std::string& json, const std::string& field);
std::string json_text(const std::string& json, const std::string& field);
// A numeric field of PRAGMA walship_status.
long long status_field(Db& db, const std::string& field);
// A text field of PRAGMA walship_status, as it stands in the JSON (escapes kept).
std::string status_text(Db& db, const std::string& field);

}  // namespace walship::test

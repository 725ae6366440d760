#include "support/db.h"

#include <catch2/catch.hpp>

#include "support/test_server.h"
#include "walship.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iterator>

namespace walship::test {

Db::Db(const std::string& uri, const char* vfs, int flags) {
    int rc = sqlite3_open_v2(uri.c_str(), &db_, flags, vfs);
    if (rc != SQLITE_OK) {
        std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
        sqlite3_close(db_);
        db_ = nullptr;
        throw std::runtime_error("open " + uri + ": " + msg);
    }
    sqlite3_busy_timeout(db_, 10000);
}

Db::~Db() { sqlite3_close(db_); }

int Db::open_rc(const std::string& uri, std::string* err) {
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(uri.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, "walship");
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, "select count(*) from sqlite_schema", nullptr, nullptr, nullptr);
    if (err) *err = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return rc;
}

int Db::try_exec(const std::string& sql, std::string* err) {
    char* msg = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &msg);
    if (err) *err = msg ? msg : "";
    sqlite3_free(msg);
    return rc;
}

void Db::exec(const std::string& sql) {
    std::string err;
    if (try_exec(sql, &err) != SQLITE_OK) throw std::runtime_error("exec '" + sql.substr(0, 80) + "': " + err);
}

std::string Db::text(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK)
        throw std::runtime_error("prepare '" + sql + "': " + sqlite3_errmsg(db_));
    std::string out;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_text(st, 0)) out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        std::string msg = sqlite3_errmsg(db_);
        sqlite3_finalize(st);
        throw std::runtime_error("step '" + sql + "': " + msg);
    }
    sqlite3_finalize(st);
    return out;
}

long long Db::integer(const std::string& sql) { return std::stoll(text(sql)); }

static std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

std::string compare_pages(const std::string& a, const std::string& b, int page_size) {
    std::string x = slurp(a), y = slurp(b);
    if (x.size() != y.size()) return "sizes differ: " + std::to_string(x.size()) + " vs " + std::to_string(y.size());
    for (size_t off = 0; off < x.size(); off += size_t(page_size))
        if (x.compare(off, size_t(page_size), y, off, size_t(page_size)) != 0)
            return "page " + std::to_string(off / size_t(page_size) + 1) + " differs";
    return "";
}

bool file_exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
}

void remove_db_files(const std::string& path) {
    for (const char* suffix : {"", "-wal", "-shm", "-walship", "-walship-spill", "-journal"}) ::unlink((path + suffix).c_str());
}

std::string url_encode(const std::string& s) {
    std::string o;
    for (unsigned char c : s) {
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/' || c == ':') o += char(c);
        else {
            char b[4];
            snprintf(b, sizeof b, "%%%02X", c);
            o += b;
        }
    }
    return o;
}

std::string series(int n) {
    return "(with recursive s(value) as (select 1 union all select value + 1 from s where value < " + std::to_string(n) + ") select value from s)";
}

std::string uri(const std::string& path, const std::string& replica, const std::string& extra) {
    std::string u = "file:" + path + "?replica=" + url_encode(replica);
    if (!extra.empty()) u += "&" + extra;
    return u;
}

void use_walship() {
    set_process_env();
    walship_register(0);
}

std::unique_ptr<s3::Store> store_for(const std::string& url) {
    auto s = s3::open_store(url, env());
    if (!s.ok()) FAIL(s.error().str());
    return std::move(s.value());
}

long long json_number(const std::string& json, const std::string& field) {
    size_t at = json.find("\"" + field + "\":");
    REQUIRE(at != std::string::npos);
    return std::stoll(json.substr(at + field.size() + 3));
}

std::string json_text(const std::string& json, const std::string& field) {
    size_t at = json.find("\"" + field + "\":\"");
    REQUIRE(at != std::string::npos);
    size_t from = at + field.size() + 4, end = from;
    while (end < json.size() && json[end] != '"') end += json[end] == '\\' ? 2 : 1;
    return json.substr(from, end - from);
}

long long status_field(Db& db, const std::string& field) { return json_number(db.text("pragma walship_status"), field); }

std::string status_text(Db& db, const std::string& field) { return json_text(db.text("pragma walship_status"), field); }

}  // namespace walship::test

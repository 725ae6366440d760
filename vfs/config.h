// Per-database settings: where it replicates and how, from URI parameters or WALSHIP_* variables.
// Also the lifecycle log (stderr, WALSHIP_LOG_LEVEL) shared by the VFS, shipper and restore.
#pragma once

#include <cstdint>
#include <string>

namespace walship {

// durability=local|remote|remote-strict (see docs/DESIGN.md, "Pacing and durability").
enum class Durability { Local, Remote, RemoteStrict };

struct Config {
    std::string db_path;          // absolute path of the database file
    std::string replica_url;      // empty: this database does not replicate
    bool url_from_env = false;    // WALSHIP_REPLICA_URL without WALSHIP_DB: meant for one database of the process
    int sync_interval_ms = 1000;  // at most one upload per interval under steady writes
    bool restore_auto = true;     // restore=auto|off
    Durability durability = Durability::Local;
    int flush_timeout_ms = 30000;          // walship_flush and remote-durability commits
    int close_timeout_ms = 10000;          // how long the last close waits for shipping
    int zstd_level = 3;
    int snapshot_part_bytes = 64 << 20;  // snapshots of larger databases are split into objects of this many bytes of pages
    uint64_t max_wal_bytes = 1ull << 30;   // WAL size cap while holding resets (see DESIGN.md)
    uint64_t max_segment_bytes = 16u << 20;  // raw page bytes per segment object
    int64_t snapshot_interval_ms = 24 * 3600 * 1000LL;  // a new snapshot after this long (if written to)
    int64_t retention_ms = 24 * 3600 * 1000LL;          // restorable window
    int64_t retention_check_ms = 3600 * 1000LL;         // how often retention runs (default min(1 h, retention/2))
};

// Parses a duration: "250ms", "15s", "30m", "24h", "7d", or a number of milliseconds.
bool parse_duration_ms(const std::string& s, int64_t* ms);

// Resolves the configuration for a database being opened. `uri_db` is the zName SQLite passed to
// xOpen (it carries URI parameters). Fills *error and returns false on an invalid value.
bool resolve_config(const char* uri_db, const std::string& path, Config* cfg, std::string* error);

enum class LogLevel { Error = 0, Warn = 1, Info = 2, Debug = 3 };
// One line to stderr (when at or above WALSHIP_LOG_LEVEL, default info) and to sqlite3_log.
void log(LogLevel level, const std::string& message);
inline void log_info(const std::string& m) { log(LogLevel::Info, m); }
inline void log_warn(const std::string& m) { log(LogLevel::Warn, m); }
inline void log_error(const std::string& m) { log(LogLevel::Error, m); }
inline void log_debug(const std::string& m) { log(LogLevel::Debug, m); }

}  // namespace walship

// Settings resolution and the lifecycle log (see config.h).
#include "config.h"

#include "sqlite.h"

#include <cctype>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <algorithm>
#include <mutex>
#include <vector>

#include <unistd.h>

namespace walship {

// A setting from the URI, else from WALSHIP_<NAME>; false when neither gives one. A URI parameter
// given empty ("close_timeout=") counts as given (and is then refused as invalid); an empty
// environment variable counts as unset.
static bool setting(const char* uri_db, const char* name, std::string* out) {
    if (uri_db) {
        if (const char* v = sqlite3_uri_parameter(uri_db, name)) {
            *out = v;
            return true;
        }
    }
    std::string env = "WALSHIP_";
    for (const char* p = name; *p; p++) env += char(std::toupper(static_cast<unsigned char>(*p)));
    const char* v = std::getenv(env.c_str());
    *out = v ? v : "";
    return !out->empty();
}

static bool parse_int(const std::string& s, long long lo, long long hi, long long* out) {
    if (s.empty()) return false;
    char* end = nullptr;
    long long v = std::strtoll(s.c_str(), &end, 10);
    if (*end != '\0' || v < lo || v > hi) return false;
    *out = v;
    return true;
}

// Resolves a path so that the same file always gets the same name (WALSHIP_DB matching).
static std::string normalize_path(const std::string& p) {
    char buf[4096];
    if (realpath(p.c_str(), buf)) return buf;
    // The file may not exist yet: resolve its directory.
    auto slash = p.rfind('/');
    std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : p.substr(0, slash));
    std::string base = slash == std::string::npos ? p : p.substr(slash + 1);
    if (realpath(dir.c_str(), buf)) return std::string(buf) + (std::string(buf) == "/" ? "" : "/") + base;
    return p;
}

// Bytes, or a size with a unit: K, Ki, KiB (1024) or KB (1000), and the same for M, G and T.
static bool parse_bytes(const std::string& s, long long* out) {
    if (s.empty()) return false;
    char* end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    if (end == s.c_str() || !(v >= 0)) return false;
    std::string unit;
    for (const char* p = end; *p; p++) unit += char(std::tolower(static_cast<unsigned char>(*p)));
    static const std::string kUnits = "kmgt";
    double mult = 1;
    if (!unit.empty() && unit != "b") {
        size_t i = kUnits.find(unit[0]);
        std::string rest = unit.substr(1);
        double base = rest == "b" ? 1000 : (rest.empty() || rest == "i" || rest == "ib") ? 1024 : 0;
        if (i == std::string::npos || base == 0) return false;
        for (size_t k = 0; k <= i; k++) mult *= base;
    }
    if (v * mult > 9.2e18) return false;
    *out = static_cast<long long>(v * mult);
    return true;
}

// At most 100 years (the steady clock counts nanoseconds in 64 bits: about 292 years).
static constexpr double kMaxDurationMs = 100 * 365.25 * 86400e3;

bool parse_duration_ms(const std::string& s, int64_t* ms) {
    if (s.empty()) return false;
    char* end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    if (end == s.c_str() || !(v >= 0) || v > 1e15) return false;
    std::string unit(end);
    double mult = unit.empty() || unit == "ms" ? 1 : unit == "s" ? 1e3 : unit == "m" ? 60e3 : unit == "h" ? 3600e3 : unit == "d" ? 86400e3 : -1;
    if (mult < 0 || v * mult > kMaxDurationMs) return false;
    *ms = int64_t(v * mult);
    return true;
}

// Edit distance (insertions, deletions, substitutions), for "did you mean".
static size_t distance(const std::string& a, const std::string& b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); j++) row[j] = j;
    for (size_t i = 1; i <= a.size(); i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); j++) {
            size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diag = up;
        }
    }
    return row[b.size()];
}

static const char* const kSettings[] = {"replica", "sync_interval", "restore", "durability", "flush_timeout", "close_timeout",
                                        "max_wal_size", "snapshot_interval", "retention", "retention_check_interval",
                                        "snapshot_part_size", "zstd_level"};

static std::string lower(std::string s) {
    for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// A name close to a setting's but not one (a typo would otherwise silently keep the default, as
// "durabilty=remote" would keep local durability, and "replica_url=" or "REPLICA=" would leave the
// database unreplicated): the setting meant, else "". URI parameter names are case-sensitive.
// The name in `names` that `lname` (lower case) is one or two letters off or, failing that, the
// replica's own name when lname mentions the replica; else "".
static std::string near_miss(const std::string& lname, const std::vector<std::string>& names, const std::string& replica) {
    for (auto& k : names)
        if (distance(lname, k) <= 2) return k;
    return lname.find("replica") != std::string::npos ? replica : "";
}

static std::string misspelt_setting(const std::string& name) {
    static const std::vector<std::string> settings(std::begin(kSettings), std::end(kSettings));
    if (std::find(settings.begin(), settings.end(), name) != settings.end()) return "";
    return near_miss(lower(name), settings, "replica");
}

// WALSHIP_ variables close to one walship reads but not one (WALSHIP_REPLICA_URI, WALSHIP_REPLICA,
// WALSHIP_DURABILTY): each is warned of once per process, replicating or not (a misspelt
// WALSHIP_REPLICA_URL leaves every database unreplicated). Others (another program's) pass.
static void warn_misspelt_environment() {
    static std::atomic<bool> done{false};
    if (done.exchange(true)) return;
    std::vector<std::string> known = {"replica_url", "db", "log_level", "s3_timeout_ms", "s3_attempts"};
    for (const char* k : kSettings)
        if (std::string(k) != "replica") known.push_back(k);
    for (char** e = environ; *e; e++) {
        const std::string var(*e, strcspn(*e, "="));
        if (var.compare(0, 8, "WALSHIP_") != 0) continue;
        const std::string name = lower(var.substr(8));
        if (std::find(known.begin(), known.end(), name) != known.end()) continue;
        std::string meant = near_miss(name, known, "replica_url");
        if (meant.empty()) continue;
        for (auto& c : meant) c = char(std::toupper(static_cast<unsigned char>(c)));
        log_warn("unknown environment variable " + var + " (did you mean WALSHIP_" + meant + "?); it is not read");
    }
}

bool resolve_config(const char* uri_db, const std::string& path, Config* cfg, std::string* error) {
    cfg->db_path = path;
    const char* given = uri_db ? sqlite3_uri_parameter(uri_db, "replica") : nullptr;
    if (given && !*given) {
        // "replica=$URL" with the variable unset: running unreplicated would go unnoticed.
        *error = "walship: the URI parameter replica is empty (an unset variable?): give the replica URL, or leave the parameter out";
        return false;
    }
    cfg->replica_url = given ? given : "";
    if (!cfg->replica_url.empty()) {
        // "file:app.db?replica=s3://b/p?endpoint=E&region=R" unencoded: SQLite splits the replica
        // URL's own query at '&', so its later parameters arrive as parameters of the database.
        for (const char* k : {"endpoint", "region", "force_path_style"}) {
            const char* v = sqlite3_uri_parameter(uri_db, k);
            if (!v) continue;
            cfg->replica_url += (cfg->replica_url.find('?') == std::string::npos ? "?" : "&") + std::string(k) + "=" + v;
        }
    }
    warn_misspelt_environment();
    std::vector<std::string> uri_settings;  // walship settings given as URI parameters
    if (uri_db) {
        for (int i = 0;; i++) {
            const char* key = sqlite3_uri_key(uri_db, i);
            if (!key) break;
            std::string meant = misspelt_setting(key);
            if (!meant.empty()) {
                *error = std::string("walship: unknown URI parameter '") + key + "' (did you mean " + meant + "?)";
                return false;
            }
            if (std::find(std::begin(kSettings), std::end(kSettings), std::string(key)) != std::end(kSettings) && std::string(key) != "replica")
                uri_settings.push_back(key);
            // The replica URL's own parameters, split off by SQLite, with no replica= to go back to
            // (the replica from WALSHIP_REPLICA_URL, say): they would be dropped without a word.
            for (const char* k : {"endpoint", "region", "force_path_style"})
                if (!given && std::string(key) == k) {
                    *error = std::string("walship: URI parameter '") + k + "' without replica=: it belongs in the replica URL (replica=s3://bucket/prefix?" + k + "=...)";
                    return false;
                }
        }
    }
    if (cfg->replica_url.empty()) {
        const char* url = std::getenv("WALSHIP_REPLICA_URL");
        const char* db = std::getenv("WALSHIP_DB");
        if (url && *url && (!db || !*db || normalize_path(db) == normalize_path(path))) {
            cfg->replica_url = url;
            cfg->url_from_env = !db || !*db;
        }
    }
    if (cfg->replica_url.empty()) {
        // A walship setting on a database with no replica location is a mistake (a replica
        // meant for it that went elsewhere): it would open unreplicated without a word.
        if (!uri_settings.empty()) {
            *error = "walship: URI parameter '" + uri_settings[0] + "' is set for " + path +
                     ", which has no replica location (no replica= parameter, and WALSHIP_REPLICA_URL is unset or WALSHIP_DB names another database)";
            return false;
        }
        return true;
    }

    struct IntSetting {
        const char* name;
        enum { Number, Millis, Bytes } kind;
        long long lo, hi;
        int64_t* target;
    };
    int64_t sync_ms = cfg->sync_interval_ms, flush_ms = cfg->flush_timeout_ms, close_ms = cfg->close_timeout_ms,
            zstd = cfg->zstd_level, part = cfg->snapshot_part_bytes, max_wal = int64_t(cfg->max_wal_bytes);
    const IntSetting ints[] = {
        {"sync_interval", IntSetting::Millis, 0, 3600000, &sync_ms},
        {"flush_timeout", IntSetting::Millis, 1, 3600000, &flush_ms},
        {"close_timeout", IntSetting::Millis, 0, 3600000, &close_ms},
        {"zstd_level", IntSetting::Number, -5, 19, &zstd},
        {"snapshot_part_size", IntSetting::Bytes, 65536, 1 << 30, &part},
        {"max_wal_size", IntSetting::Bytes, 1 << 20, 1ll << 50, &max_wal},
    };
    for (auto& s : ints) {
        std::string v;
        if (!setting(uri_db, s.name, &v)) continue;
        long long n = 0;
        bool ok = false;
        if (s.kind == IntSetting::Millis) {
            int64_t ms = 0;
            ok = parse_duration_ms(v, &ms);
            n = ms;
        } else {
            ok = s.kind == IntSetting::Bytes ? parse_bytes(v, &n) : parse_int(v, LLONG_MIN, LLONG_MAX, &n);  // range: below
        }
        if (!ok || n < s.lo || n > s.hi) {
            std::string range = std::to_string(s.lo) + " to " + std::to_string(s.hi);
            *error = std::string("walship: invalid ") + s.name + " '" + v + "' (expected " +
                     (s.kind == IntSetting::Millis  ? "milliseconds or a duration like 250ms, 1s, 2m: " + range + " ms"
                      : s.kind == IntSetting::Bytes ? "bytes or a size like 64MiB, 1GiB: " + range + " bytes"
                                                    : "an integer from " + range) +
                     ")";
            return false;
        }
        *s.target = n;
    }
    cfg->sync_interval_ms = int(sync_ms), cfg->flush_timeout_ms = int(flush_ms), cfg->close_timeout_ms = int(close_ms);
    cfg->zstd_level = int(zstd), cfg->snapshot_part_bytes = int(part), cfg->max_wal_bytes = uint64_t(max_wal);
    struct DurationSetting {
        const char* name;
        int64_t* target;
    } durations[] = {{"snapshot_interval", &cfg->snapshot_interval_ms}, {"retention", &cfg->retention_ms}, {"retention_check_interval", &cfg->retention_check_ms}};
    bool check_set = false;
    for (auto& d : durations) {
        std::string value;
        if (!setting(uri_db, d.name, &value)) continue;
        if (!parse_duration_ms(value, d.target) || *d.target <= 0) {
            *error = std::string("walship: invalid ") + d.name + " '" + value + "' (a duration like 30s, 15m, 24h, or milliseconds; at most 100 years)";
            return false;
        }
        if (d.target == &cfg->retention_check_ms) check_set = true;
    }
    if (!check_set) cfg->retention_check_ms = std::min<int64_t>(3600 * 1000LL, std::max<int64_t>(cfg->retention_ms / 2, 1000));
    std::string v;
    if (!setting(uri_db, "restore", &v) || v == "auto") cfg->restore_auto = true;
    else if (v == "off") cfg->restore_auto = false;
    else {
        *error = "walship: invalid restore '" + v + "' (expected auto or off)";
        return false;
    }
    if (!setting(uri_db, "durability", &v) || v == "local") cfg->durability = Durability::Local;
    else if (v == "remote") cfg->durability = Durability::Remote;
    else if (v == "remote-strict") cfg->durability = Durability::RemoteStrict;
    else {
        *error = "walship: invalid durability '" + v + "' (expected local, remote or remote-strict)";
        return false;
    }
    return true;
}

static LogLevel configured_level() {
    const char* v = std::getenv("WALSHIP_LOG_LEVEL");
    if (!v) return LogLevel::Info;
    std::string s(v);
    if (s == "error") return LogLevel::Error;
    if (s == "warn" || s == "warning") return LogLevel::Warn;
    if (s == "debug") return LogLevel::Debug;
    if (s == "off" || s == "none") return LogLevel(-1);
    static std::atomic<bool> warned{false};
    if (s != "info" && !warned.exchange(true))
        fprintf(stderr, "walship: unknown WALSHIP_LOG_LEVEL '%s' (expected error, warn, info, debug or off); logging at info\n", v);
    return LogLevel::Info;
}

void log(LogLevel level, const std::string& message) {
    static const char* names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    static std::mutex mu;
    int code = level == LogLevel::Error ? SQLITE_ERROR : level == LogLevel::Warn ? SQLITE_WARNING : SQLITE_NOTICE;
    // Errors handed on to SQLite start with "walship: "; the log line says so already.
    const std::string text = message.compare(0, 9, "walship: ") == 0 ? message.substr(9) : message;
    if (level <= LogLevel::Warn) sqlite3_log(code, "walship: %s", text.c_str());
    if (int(level) > int(configured_level())) return;
    auto now = std::chrono::system_clock::now();
    std::time_t t = std::chrono::system_clock::to_time_t(now);
    int ms = int(std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    std::lock_guard<std::mutex> lock(mu);
    fprintf(stderr, "%s.%03dZ walship %s %s\n", ts, ms, names[int(level)], text.c_str());
}

}  // namespace walship

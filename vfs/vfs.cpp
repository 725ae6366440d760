/*
** vfs.cpp: the "walship" shim VFS.
**
** Registering: `.load ./libwalship` (entry point sqlite3_walship_init) or walship_register(1).
** Both put the VFS "walship" over the default VFS and make it the default.
**
** Every file is the underlying VFS's own, opened in place: walship puts its methods in front of
** the few calls it needs (see MethodTables) and the rest go straight through. For a main
** database that has a replica location (URI parameter replica=, or WALSHIP_REPLICA_URL/WALSHIP_DB),
** the shim also:
**   - restores the database from the replica before opening it when it is missing or empty;
**   - keeps the database in WAL mode (page 1's format bytes read as WAL; journal_mode and
**     locking_mode=EXCLUSIVE changes are refused);
**   - tells the shipper about commits (release of the WAL write lock, xShmLock slot 0);
**   - refuses WAL resets (exclusive lock on reader slots 1..4) while committed frames are not yet
**     in the bucket, so nothing unshipped is ever overwritten;
**   - keeps the -wal file at close while frames are unshipped (SQLITE_FCNTL_PERSIST_WAL);
**   - answers PRAGMA walship_status, walship_flush and walship_snapshot.
** Remote durability: durability=remote makes COMMIT wait, after the write lock is released
** (SQLITE_FCNTL_COMMIT_PHASETWO), until the transaction is in the bucket, so concurrent commits
** share uploads; durability=remote-strict waits in the commit's WAL sync, before the transaction
** is visible. No C++ exception crosses into SQLite: every callback catches.
*/
#ifdef WALSHIP_STATIC
#include <sqlite3.h>
#else
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1
#endif

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <string>
#include <unordered_set>

#include "config.h"
#include "fileio.h"
#include "restore.h"
#include "shipper.h"
#include "wal.h"
#include "walship.h"

namespace walship {
namespace {

constexpr const char* kVfsName = "walship";

enum class Kind { PassThrough, MainDb, Wal, Refused };

// walship's part of an open file. It lives right after the underlying VFS's file, which starts at
// the sqlite3_file SQLite hands us: the methods walship does not need are the underlying file's
// own, called by SQLite directly (see MethodTables).
struct File {
    const sqlite3_io_methods* real;     // the underlying file's methods
    Kind kind;
    std::shared_ptr<Shipper>* shipper;  // MainDb: owned (a Wal file uses its db's)
    volatile void* shm0;                // MainDb: wal-index region 0 as mapped for this connection
    File* db;                           // Wal: the main database file of the same connection
    File* wal;                          // MainDb: the connection's open WAL file, if any
    uint32_t page_size;                 // Wal: from the WAL header written through this file
    uint32_t last_commit_frame;         // MainDb: this connection's last commit frame not yet confirmed
    uint32_t salt2;                     // MainDb: salt-2 of the WAL that frame is in
    uint64_t commit_cksum;              // MainDb: that frame's WAL checksum (cksum1 << 32 | cksum2)
    uint32_t strict_frame;              // MainDb: a remote-strict commit confirmed, not yet shown (salt2, strict_cksum)
    uint64_t strict_cksum;
    bool reread_page1;                  // MainDb: a rollback-mode commit happened; see db_write
    Durability durability;              // MainDb: this connection's, like synchronous
    bool exclusive;                     // MainDb: holds the exclusive lock and Shipper::begin_exclusive
    bool close_flush_failed;            // MainDb: the flush before the last close's checkpoint timed out
    bool saw_wal;                       // MainDb: this connection mapped the wal-index (was in WAL mode)
    char* refused;                      // Refused: why the open failed (sqlite3_malloc'd)
    uint64_t locked_at;                 // MainDb: the WAL position (salt2 << 32 | mxFrame) when it took the write lock
    const char* wal_name;               // Wal: its path (SQLite keeps the string until xClose)
    int writeback_fd;                   // Wal: 1 + a descriptor of it for early write-back; 0 not open, -1 failed
    int64_t writeback_from;             // Wal: where it was at the last write-back request
    bool wal_synced;                    // Wal: SQLite synced it through this handle (synchronous is not OFF)
};

sqlite3_vfs walship_vfs;
sqlite3_vfs* base_vfs = nullptr;
size_t file_offset = 0;  // of File within the sqlite3_file: the underlying VFS's szOsFile, aligned

File* F(sqlite3_file* f) { return reinterpret_cast<File*>(reinterpret_cast<char*>(f) + file_offset); }
sqlite3_file* file_of(File* p) { return reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(p) - file_offset); }
const sqlite3_io_methods* R(sqlite3_file* f) { return F(f)->real; }
Shipper* S(sqlite3_file* f) {
    File* p = F(f)->kind == Kind::Wal ? F(f)->db : F(f);
    return p && p->shipper ? p->shipper->get() : nullptr;
}

#define GUARD(expr)                 \
    try {                           \
        expr;                       \
    } catch (...) {                 \
        return SQLITE_IOERR_NOMEM;  \
    }

// ---- SQLite's first busy sleeps ------------------------------------------------------------
//
// Writers meet at the WAL write lock: one holds it for the microseconds of its commit, and the
// others get BUSY (or, having waited, BUSY_SNAPSHOT: a commit overtook their read snapshot), and
// SQLite's busy handler sleeps 1 ms, then 2, then 5, before it tries again. Writers released
// together by a remote-durable upload meet there at every upload, and the 1 ms sleep takes a
// commit past the next upload (see Shipper::gather_commits). So when a thread sleeps 5 ms or less
// right after its connection (durability=remote or remote-strict: a remote-strict commit holds
// the lock for a PUT's round trip) met another writer at the write lock, walship ends the sleep when
// the holder is done: once the wal-index shows its commit, or at once after BUSY_SNAPSHOT (the
// lock was free: the connection just had it). Otherwise the sleep is the full one (a holder that
// rolls back, or holds the lock longer). A busy timeout then waits at most 8 ms less in wall time
// than asked, per wait (SQLite counts the sleeps it asked for, not the time they took). Under
// durability=local SQLite's sleeps stand: four local writers that retried at once collided more
// often (p99 0.13 ms against plain SQLite's 0.05 in a benchmark run).
struct Contention {
    File* file = nullptr;
    int64_t at_ns = 0;
    uint64_t pos = 0;       // the wal-index position (salt2 << 32 | mxFrame) then
    bool snapshot = false;  // the connection had the lock and let it go without a commit
};
thread_local Contention contention;
// The replicated main databases open now: a sleep looks at the file of its thread's contention
// only while it is open (a shared lock; a close takes it exclusively).
std::shared_mutex live_mu;
std::unordered_set<File*>& live_files() {
    static auto* files = new std::unordered_set<File*>;  // never destroyed (as all_tables)
    return *files;
}
// A fork() while another thread sleeps here would leave the lock held in the child, and the
// child's next close would wait for ever: fork waits for the sleeps (at most 5 ms) to end, and the
// child starts from a new lock (glibc's read-write lock knows its writer by thread id, which the
// child's thread does not share, so unlocking the inherited one would not release it).
const int live_atfork = pthread_atfork([] { live_mu.lock(); }, [] { live_mu.unlock(); }, [] { new (&live_mu) std::shared_mutex(); });

int64_t mono_ns() {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return int64_t(t.tv_sec) * 1000000000 + t.tv_nsec;
}

void note_contention(File* p, uint64_t pos, bool snapshot) noexcept {
    contention.file = p;
    contention.at_ns = mono_ns();
    contention.pos = pos;
    contention.snapshot = snapshot;
}

// True when it slept (until the holder of the write lock committed, or the whole time).
bool sleep_until_write_lock_free(int us) noexcept {
    const Contention c = contention;
    contention.file = nullptr;
    const int64_t start = mono_ns();
    if (!c.file || us > 5000 || start - c.at_ns > 200000) return false;
    try {
        std::shared_lock<std::shared_mutex> lock(live_mu);
        if (!live_files().count(c.file) || !c.file->shm0) return false;
        const int64_t deadline = start + int64_t(us) * 1000;
        if (c.snapshot) return true;  // the lock was free a moment ago: try again now
        for (;;) {
            if (mono_ns() >= deadline) return true;
            struct timespec pause {0, 10000};
            nanosleep(&pause, nullptr);
            uint32_t salt2 = 0, mx_frame = 0;
            if (read_shm_position(c.file->shm0, &salt2, &mx_frame) && pack_position(salt2, mx_frame) != c.pos) return true;
        }
    } catch (...) {
        return false;
    }
}

// ---- every file SQLite opens through walship ------------------------------------------------

// walship's pragmas on a database it does not replicate (no replica location for it, or opened
// read-only in a directory it cannot write): the status says so, and a flush or snapshot fails,
// since nothing will ever reach a bucket. SQLite ignores pragmas it does not know, so without this
// a flush would look like success.
int unreplicated_pragma(void* arg) {
    char** a = static_cast<char**>(arg);
    const char* why = "no replica location for it (a replica= URI parameter, or WALSHIP_REPLICA_URL with WALSHIP_DB unset or naming it), "
                      "or it opened read-only in a directory walship cannot write";
    if (sqlite3_stricmp(a[1], "walship_status") == 0) {
        a[0] = sqlite3_mprintf("{\"replicating\":false,\"reason\":\"%s\"}", why);
        return SQLITE_OK;
    }
    a[0] = sqlite3_mprintf("walship: this database is not replicated (%s), so %s has nothing to do", why, a[1]);
    return SQLITE_ERROR;
}

// The VFS name reads "walship/<underlying>" (PRAGMA vfsname).
int x_fcntl(sqlite3_file* f, int op, void* arg) {
    if (op == SQLITE_FCNTL_PRAGMA) {
        const char* name = static_cast<char**>(arg)[1];
        if (name && (sqlite3_stricmp(name, "walship_status") == 0 || sqlite3_stricmp(name, "walship_flush") == 0 || sqlite3_stricmp(name, "walship_snapshot") == 0))
            return unreplicated_pragma(arg);
    }
    if (op == SQLITE_FCNTL_VFSNAME) {
        int rc = R(f)->xFileControl(f, op, arg);
        char** out = static_cast<char**>(arg);
        char* below = rc == SQLITE_OK ? *out : nullptr;
        *out = below ? sqlite3_mprintf("%s/%s", kVfsName, below) : sqlite3_mprintf("%s", kVfsName);
        sqlite3_free(below);
        return SQLITE_OK;
    }
    return R(f)->xFileControl(f, op, arg);
}

// ---- replicating main database -------------------------------------------------------------

int db_close(sqlite3_file* f) noexcept {
    File* p = F(f);
    try {
        std::unique_lock<std::shared_mutex> lock(live_mu);
        live_files().erase(p);
    } catch (...) {
    }
    if (contention.file == p) contention.file = nullptr;
    int rc = p->real->xClose(f);
    if (p->shipper && p->exclusive) {
        p->exclusive = false;
        (*p->shipper)->end_exclusive();
    }
    if (p->shipper) {
        try {
            // The last connection, and it never left rollback-journal mode (it ran only a new
            // database's first transaction): there is no WAL to keep for the next open, so ship
            // now, as the close of a WAL-mode database does (the shipper switches it to WAL mode).
            Shipper* s = p->shipper->get();
            const std::string& path = s->config().db_path;
            struct stat st {};
            if (p->shipper->use_count() == 1 && !p->saw_wal && ::stat((path + "-wal").c_str(), &st) != 0 && file_size(path) > 0) {
                std::string err;
                if (s->flush(s->config().close_timeout_ms, &err) != SQLITE_OK)
                    log_warn("closed " + path + " before its first snapshot reached the bucket; it is taken on the next open (" + err + ")");
            }
            delete p->shipper;  // the last connection's release stops and joins the shipper thread
        } catch (...) {
        }
    }
    p->shipper = nullptr;
    return rc;
}

int db_shm_map(sqlite3_file* f, int pg, int sz, int extend, void volatile** pp) noexcept {
    int rc = R(f)->xShmMap(f, pg, sz, extend, pp);
    if (rc == SQLITE_OK && pg == 0) {
        F(f)->shm0 = *pp;
        F(f)->saw_wal = true;
    }
    return rc;
}

int db_shm_unmap(sqlite3_file* f, int del) noexcept {
    F(f)->shm0 = nullptr;
    return R(f)->xShmUnmap(f, del);
}

int db_read(sqlite3_file* f, void* buf, int amt, sqlite3_int64 off) noexcept {
    int rc = R(f)->xRead(f, buf, amt, off);
    if (rc != SQLITE_OK) return rc;
    unsigned char* p = static_cast<unsigned char*>(buf);
    // Keep the database in WAL mode: report the file format bytes (18, 19) as 2 (WAL).
    if (off == 0 && amt >= 20 && memcmp(p, "SQLite format 3", 16) == 0 && p[18] == 1 && p[19] == 1) p[18] = p[19] = 2;
    // After a rollback-mode commit (only the first transaction of a new database has one), make
    // the pager's change-counter check fail once so it drops its cache, re-reads page 1 and
    // switches to WAL for the next transaction.
    if (off == 24 && amt == 16 && F(f)->reread_page1) {
        F(f)->reread_page1 = false;
        p[15] ^= 0xff;
    }
    return rc;
}

int db_write(sqlite3_file* f, const void* buf, int amt, sqlite3_int64 off) noexcept {
    const unsigned char* p = static_cast<const unsigned char*>(buf);
    if (off != 0 || amt < 20 || p[18] != 1 || p[19] != 1 || memcmp(p, "SQLite format 3", 16) != 0) return R(f)->xWrite(f, buf, amt, off);
    // Page 1 in rollback-journal format: a new database's first transaction. The file gets the WAL
    // format bytes, as `PRAGMA journal_mode=WAL` would write them: SQLite without walship (the
    // sqlite3 shell, a restored copy) then opens it in WAL mode too. It took the bytes for
    // rollback mode when the WAL was empty or missing, and waited for an exclusive lock that
    // walship's connections, holding theirs while open in WAL mode, never give ("database is locked").
    unsigned char* copy = static_cast<unsigned char*>(sqlite3_malloc(amt));
    if (!copy) return SQLITE_IOERR_NOMEM;
    memcpy(copy, p, size_t(amt));
    copy[18] = copy[19] = 2;
    int rc = R(f)->xWrite(f, copy, amt, off);
    sqlite3_free(copy);
    if (rc == SQLITE_OK) F(f)->reread_page1 = true;
    return rc;
}

// Returns a pragma's answer through SQLITE_FCNTL_PRAGMA's argument array.
int pragma_result(void* arg, int rc, const std::string& text) {
    char** a = static_cast<char**>(arg);
    a[0] = sqlite3_mprintf("%s", text.c_str());
    return rc;
}

int db_pragma(sqlite3_file* f, void* arg) {
    char** a = static_cast<char**>(arg);
    std::string name = a[1] ? a[1] : "";
    std::string value = a[2] ? a[2] : "";
    for (auto& c : name) c = char(tolower(c));
    for (auto& c : value) c = char(tolower(c));
    Shipper* s = S(f);
    if (name == "walship_status") {
        if (F(f)->shm0 || R(f)->iVersion < 2) return pragma_result(arg, SQLITE_OK, s->status_json(F(f)->shm0));
        // A connection that has not read yet (the status as its first statement) has no wal-index
        // mapped: map it for this answer, as its first read would, and let go of it after (as
        // SQLite does when it closes). Never open and close the -shm file by hand: closing any
        // descriptor of it drops every POSIX lock this process holds on it, SQLite's included.
        void volatile* p = nullptr;
        if (R(f)->xShmMap(f, 0, 32768, 0, &p) != SQLITE_OK) p = nullptr;
        std::string status = s->status_json(p);
        R(f)->xShmUnmap(f, 0);
        return pragma_result(arg, SQLITE_OK, status);
    }
    if (name == "walship_flush" || name == "walship_snapshot") {
        // PRAGMA walship_flush=MS / walship_snapshot=MS: another timeout than flush_timeout.
        int timeout = s->config().flush_timeout_ms;
        int64_t ms = 0;
        if (!value.empty() && (!parse_duration_ms(value, &ms) || ms > 24 * 3600 * 1000))
            return pragma_result(arg, SQLITE_ERROR, "walship: invalid " + name + " timeout '" + value + "' (milliseconds, or a duration such as 5s)");
        if (!value.empty()) timeout = int(ms);
        std::string err;
        int rc = name == "walship_flush" ? s->flush(timeout, &err) : s->snapshot(timeout, &err);
        if (rc == SQLITE_OK) return pragma_result(arg, SQLITE_OK, "ok");
        return pragma_result(arg, SQLITE_ERROR, err);
    }
    if (name == "journal_mode" && value.empty()) return pragma_result(arg, SQLITE_OK, "wal");
    if (name == "journal_mode" && value != "wal")
        return pragma_result(arg, SQLITE_ERROR, "walship: a replicated database must stay in WAL mode (journal_mode=" + value + " refused)");
    if (name == "locking_mode" && value == "exclusive")
        return pragma_result(arg, SQLITE_ERROR, "walship: locking_mode=EXCLUSIVE is not supported on a replicated database");
    if (name == "synchronous" && F(f)->durability == Durability::RemoteStrict && !value.empty() && value != "full" && value != "2" && value != "extra" && value != "3")
        return pragma_result(arg, SQLITE_ERROR, "walship: durability=remote-strict needs synchronous=FULL (the commit waits in the WAL sync)");
    return R(f)->xFileControl(f, SQLITE_FCNTL_PRAGMA, arg);
}

__attribute__((noinline)) int db_fcntl_watched(sqlite3_file* f, int op, void* arg) noexcept {
    try {
        if (op == SQLITE_FCNTL_PRAGMA) return db_pragma(f, arg);
        if (op == SQLITE_FCNTL_COMMIT_PHASETWO && F(f)->last_commit_frame && F(f)->durability == Durability::Remote) {
            // durability=remote: the transaction is committed and the write lock released, so
            // other connections' commits join the same upload while this one waits (group commit).
            // This connection still holds its WAL read lock, so no checkpoint can copy its frames
            // and no reset can move them while it waits. A timeout cannot undo the commit: COMMIT
            // reports it, and the transaction ships later.
            uint32_t frame = F(f)->last_commit_frame;
            F(f)->last_commit_frame = 0;
            std::string err;
            if (S(f)->flush_through(F(f)->salt2, frame, F(f)->commit_cksum, true, &err) != SQLITE_OK) {
                log_error("remote-durable commit not confirmed: " + err);
                return SQLITE_IOERR;
            }
            return x_fcntl(f, op, arg);
        }
        if (op == SQLITE_FCNTL_PERSIST_WAL) {
            int* v = static_cast<int*>(arg);
            int rc = R(f)->xFileControl(f, op, arg);
            if (*v == 1 || !F(f)->shm0) return rc;
            // SQLite is about to delete the WAL at close: ship what is left first, and keep the WAL
            // if that does not finish in time (the next open ships it).
            ShmHeader h;
            if (read_shm_header(F(f)->shm0, &h) && !S(f)->wal_chain_intact(h)) {
                // The close's checkpoint copied every frame the wal-index counts into the
                // database; SQLite's recovery would replay only the frames before the break, over
                // newer pages. Let SQLite delete it (the next open starts a new generation).
                log_warn("not keeping the WAL of " + S(f)->config().db_path + ": its checksum chain is broken before its last committed frame");
            } else if (S(f)->wal_proves_continuity()) {
                // Without a database checksum in the replica's last object, the next open proves
                // continuity from the WAL's checksum chain: keep the WAL.
                *v = 1;
            } else if (read_shm_header(F(f)->shm0, &h) && S(f)->unshipped(&h)) {
                std::string err;
                // The close's checkpoint is done: let the shipper read the database again.
                if (F(f)->exclusive) {
                    F(f)->exclusive = false;
                    S(f)->end_exclusive();
                }
                // One close waits close_timeout once: after a flush that already timed out, keep the WAL.
                int frc = SQLITE_BUSY;
                if (F(f)->close_flush_failed) err = "the store did not take them within close_timeout";
                else {
                    S(f)->closing();
                    frc = S(f)->flush(S(f)->config().close_timeout_ms, &err);
                }
                if (frc != SQLITE_OK || S(f)->unshipped(&h)) {
                    log_warn("closing " + S(f)->config().db_path + " with unshipped transactions; the WAL is kept and they ship on the next open (" + err + ")");
                    *v = 1;
                }
            }
            return SQLITE_OK;
        }
        return x_fcntl(f, op, arg);
    } catch (...) {
        return SQLITE_IOERR_NOMEM;
    }
}

// A few calls per transaction: walship's own cases, else straight through (tail calls, as db_shm_lock).
int db_fcntl(sqlite3_file* f, int op, void* arg) {
    if (op == SQLITE_FCNTL_PRAGMA || op == SQLITE_FCNTL_PERSIST_WAL || (op == SQLITE_FCNTL_COMMIT_PHASETWO && F(f)->last_commit_frame))
        return db_fcntl_watched(f, op, arg);
    return x_fcntl(f, op, arg);
}

int db_lock(sqlite3_file* f, int level) noexcept {
    if (level != SQLITE_LOCK_EXCLUSIVE || F(f)->exclusive) return R(f)->xLock(f, level);
    // The last connection is closing (the only exclusive lock in WAL mode): SQLite checkpoints the
    // WAL into the database and deletes it once it holds this lock. Ask for the lock first: while
    // a connection of another process has the database open, SQLite neither checkpoints nor
    // deletes anything, and there is nothing to wait for (it used to wait close_timeout here).
    int rc = R(f)->xLock(f, level);
    if (rc != SQLITE_OK) return rc;
    if (F(f)->shm0) {
        // Ship before the checkpoint, so the next open can prove continuity. Not while holding
        // the lock: another process may open the database meanwhile.
        ShmHeader h;
        std::string err;
        try {
            if (read_shm_header(F(f)->shm0, &h) && S(f)->unshipped(&h)) {
                R(f)->xUnlock(f, SQLITE_LOCK_SHARED);
                S(f)->closing();
                F(f)->close_flush_failed = S(f)->flush(S(f)->config().close_timeout_ms, &err) != SQLITE_OK;
            }
        } catch (...) {
        }
        rc = R(f)->xLock(f, level);  // (a no-op when still held)
        if (rc != SQLITE_OK) return rc;
        // The close's checkpoint takes no checkpoint lock (SQLite holds the database exclusively):
        // refuse it here as any checkpoint is refused while walship has no position in this WAL
        // (the store was unreachable since the open), which would erase the proof that the replica
        // continues; SQLite then keeps the WAL, and the next open ships it in the same generation.
        try {
            // (Not a WAL whose checksum chain is broken: kept, recovery would drop the commits
            // after the break; checkpointed, the database keeps them and a new generation starts.)
            if (read_shm_header(F(f)->shm0, &h) && S(f)->wal_chain_intact(h) && !S(f)->allow_checkpoint(h)) {
                R(f)->xUnlock(f, SQLITE_LOCK_SHARED);
                log_warn("closing " + S(f)->config().db_path + " without a checkpoint: walship has no position in its WAL yet (" +
                         (err.empty() ? std::string("the store was not reached") : err) + "); the WAL is kept and ships on the next open");
                return SQLITE_BUSY;
            }
        } catch (...) {
        }
    }
    S(f)->begin_exclusive();
    F(f)->exclusive = true;
    return SQLITE_OK;
}

int db_unlock(sqlite3_file* f, int level) noexcept {
    int rc = R(f)->xUnlock(f, level);
    if (level < SQLITE_LOCK_EXCLUSIVE && F(f)->exclusive) {
        F(f)->exclusive = false;
        S(f)->end_exclusive();
    }
    return rc;
}

// A lock of the wal-index for an application connection. When it is busy while walship's own
// connection in this process runs (OwnConnection: it may be rebuilding the wal-index under every
// lock), wait for that connection (at most 2 s) and try once more.
__attribute__((noinline)) int shm_lock_after_own(sqlite3_file* f, int ofst, int n, int flags) noexcept {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (OwnConnection::active.load() > 0 && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    return R(f)->xShmLock(f, ofst, n, flags);
}

inline int shm_lock(sqlite3_file* f, int ofst, int n, int flags) {
    int rc = R(f)->xShmLock(f, ofst, n, flags);
    if (rc == SQLITE_BUSY && (flags & SQLITE_SHM_LOCK) && OwnConnection::active.load() > 0) return shm_lock_after_own(f, ofst, n, flags);
    return rc;
}

__attribute__((noinline)) int db_shm_lock_watched(sqlite3_file* f, int ofst, int n, int flags) noexcept {
    try {
        Shipper* s = S(f);
        if (flags == (SQLITE_SHM_LOCK | SQLITE_SHM_EXCLUSIVE) && ofst == kShmReadLock0 + 1 && n == kShmNumReaders - 1 && F(f)->shm0) {
            // A WAL reset (restart or truncate) asks for all reader slots but 0. Once it has them
            // no one reads the WAL, so walship may copy unshipped frames aside before saying yes.
            int rc = shm_lock(f, ofst, n, flags);
            if (rc != SQLITE_OK) return rc;
            ShmHeader h;
            auto region = [f](int i) -> const volatile void* {
                void volatile* p = nullptr;
                return R(f)->xShmMap(f, i, 32768, 0, &p) == SQLITE_OK ? p : nullptr;
            };
            File* wal = F(f)->wal;  // the WAL as SQLite wrote it, through its own handle
            auto read = [wal](void* buf, size_t len, uint64_t off) {
                return wal && wal->real->xRead(file_of(wal), buf, int(len), sqlite3_int64(off)) == SQLITE_OK;
            };
            bool ok = false;
            try {
                ok = !read_shm_header(F(f)->shm0, &h) || s->allow_wal_reset(h, region, read);
            } catch (...) {
                ok = false;  // release the reader slots below: SQLite does not unlock what it was refused
            }
            if (!ok) {
                R(f)->xShmLock(f, ofst, n, SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE);
                return SQLITE_BUSY;
            }
            return SQLITE_OK;
        }
        if (flags == (SQLITE_SHM_LOCK | SQLITE_SHM_EXCLUSIVE) && ofst == kShmCkptLock && n == 1 && F(f)->shm0) {
            // A checkpoint copies the WAL into the database; until walship has established its
            // position in this WAL, that would erase the proof that the replica continues.
            ShmHeader h;
            if (read_shm_header(F(f)->shm0, &h) && !s->allow_checkpoint(h)) return SQLITE_BUSY;
        }
        return shm_lock(f, ofst, n, flags);
    } catch (...) {
        return SQLITE_IOERR_NOMEM;
    }
}

// The WAL write lock: taking it begins a write transaction; releasing it tells the shipper of a commit.
__attribute__((noinline)) int db_shm_lock_write(sqlite3_file* f, int ofst, int n, int flags) noexcept {
    uint32_t salt2 = 0, mx_frame = 0;
    if (flags == (SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE) && F(f)->shm0 && read_shm_position(F(f)->shm0, &salt2, &mx_frame)) {
        if (mx_frame && pack_position(salt2, mx_frame) != F(f)->locked_at) {
            // Still under the write lock: the wal-index shows this transaction's commit.
            try {
                S(f)->record_commit(salt2, mx_frame);
            } catch (...) {
            }
        } else if (F(f)->durability != Durability::Local) {
            note_contention(F(f), pack_position(salt2, mx_frame), true);  // no commit: maybe BUSY_SNAPSHOT
        }
    }
    int rc = shm_lock(f, ofst, n, flags);
    if (rc == SQLITE_BUSY && F(f)->durability != Durability::Local && F(f)->shm0 && read_shm_position(F(f)->shm0, &salt2, &mx_frame))
        note_contention(F(f), pack_position(salt2, mx_frame), false);
    if (flags == (SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE)) {
        try {
            if (F(f)->strict_frame) {
                S(f)->commit_shown(F(f)->salt2, F(f)->strict_frame, F(f)->strict_cksum);
                F(f)->strict_frame = 0;
            }
            S(f)->notify();
        } catch (...) {
        }  // the shipper's own polling finds the commit
    } else if (rc == SQLITE_OK) {
        F(f)->last_commit_frame = 0;
        F(f)->locked_at = F(f)->shm0 && read_shm_position(F(f)->shm0, &salt2, &mx_frame) ? pack_position(salt2, mx_frame) : 0;
    }
    return rc;
}

// Several calls per transaction, so only a dispatch of tail calls (not noexcept: that would make
// the compiler keep a frame around the call into SQLite). The readers' slots go straight through,
// except a WAL reset's request for slots 1..4; a reader taking slot 1 alone to move its read
// mark, once per transaction, is not a reset.
int db_shm_lock(sqlite3_file* f, int ofst, int n, int flags) {
    if (ofst == kShmWriteLock && n == 1) return db_shm_lock_write(f, ofst, n, flags);
    if (ofst == kShmCkptLock || (ofst == kShmReadLock0 + 1 && n == kShmNumReaders - 1 && flags == (SQLITE_SHM_LOCK | SQLITE_SHM_EXCLUSIVE)))
        return db_shm_lock_watched(f, ofst, n, flags);
    return shm_lock(f, ofst, n, flags);
}

// ---- WAL of a replicating database ---------------------------------------------------------

// Early write-back (writeback.h): each kChunk the WAL grows by, the Shipper's write-back thread
// syncs it. Only once SQLite has synced this WAL itself: under synchronous=OFF it never does, and
// neither does walship.
__attribute__((noinline)) void start_writeback(sqlite3_file* f, int64_t at) {
    File* p = F(f);
    p->writeback_from = at;
    Shipper* s = S(f);
    if (!p->wal_synced || !s || s->forked()) return;  // (a child of fork() has no write-back thread)
    if (p->writeback_fd == 0) {
        const int fd = p->wal_name ? ::open(p->wal_name, O_RDONLY | O_CLOEXEC) : -1;
        p->writeback_fd = fd >= 0 ? fd + 1 : -1;
    }
    const int fd = p->writeback_fd > 0 ? ::fcntl(p->writeback_fd - 1, F_DUPFD_CLOEXEC, 0) : -1;
    if (fd >= 0) s->writeback().request(fd);
}

// Every WAL write of a replicating connection passes here (the offset is all it needs).
inline void note_wal_write(sqlite3_file* f, int64_t off) {
    File* p = F(f);
    if (off == 0) p->writeback_from = 0;  // a new or reset WAL
    else if (off - p->writeback_from >= Writeback::kChunk) start_writeback(f, off);
}

// The WAL header and frame headers: walship notes the page size and each commit frame.
__attribute__((noinline)) int wal_write_header(sqlite3_file* f, const void* buf, int amt, sqlite3_int64 off) noexcept {
    File* p = F(f);
    const unsigned char* b = static_cast<const unsigned char*>(buf);
    int rc = p->real->xWrite(f, buf, amt, off);
    if (rc != SQLITE_OK) return rc;
    note_wal_write(f, off);
    if (off == 0 && amt >= 32) {
        p->page_size = get_u32be(b + 8);
    } else if (amt == int(kWalFrameHeaderSize) && off >= int64_t(kWalHeaderSize) && get_u32be(b + 4) != 0) {
        // A commit frame's header (remote durability waits for it in the sync that follows).
        if (!p->page_size) {
            unsigned char hdr[kWalHeaderSize];
            if (p->real->xRead(f, hdr, sizeof hdr, 0) == SQLITE_OK) p->page_size = get_u32be(hdr + 8);
        }
        uint64_t fsz = kWalFrameHeaderSize + uint64_t(p->page_size);
        // The transaction's own commit frame (its header may be written again, with checksums
        // rewritten), not the copies of it that SQLite pads the WAL with to a sector boundary
        // under psow=0: it syncs among those, so a later one may be half written.
        const uint32_t frame = uint32_t((uint64_t(off) - kWalHeaderSize) / fsz) + 1;
        if (p->page_size && (uint64_t(off) - kWalHeaderSize) % fsz == 0 && (!p->db->last_commit_frame || p->db->last_commit_frame == frame)) {
            p->db->last_commit_frame = frame;
            p->db->salt2 = get_u32be(b + 12);
            p->db->commit_cksum = uint64_t(get_u32be(b + 16)) << 32 | get_u32be(b + 20);
        }
    }
    return rc;
}

// durability=local: only the write-back.
int wal_write_local(sqlite3_file* f, const void* buf, int amt, sqlite3_int64 off) noexcept {
    note_wal_write(f, off);
    return R(f)->xWrite(f, buf, amt, off);
}

int wal_sync_local(sqlite3_file* f, int flags) noexcept {
    F(f)->wal_synced = true;
    return R(f)->xSync(f, flags);
}

int wal_write(sqlite3_file* f, const void* buf, int amt, sqlite3_int64 off) noexcept {
    // Page images (half of all writes) pass straight through.
    if (off != 0 && amt != int(kWalFrameHeaderSize)) return R(f)->xWrite(f, buf, amt, off);
    return wal_write_header(f, buf, amt, off);
}

int wal_sync(sqlite3_file* f, int flags) noexcept {
    F(f)->wal_synced = true;
    int rc = R(f)->xSync(f, flags);
    Shipper* s = S(f);
    File* db = F(f)->db;
    if (rc != SQLITE_OK || !s || db->durability != Durability::RemoteStrict || !db->last_commit_frame) return rc;
    try {
        // durability=remote-strict: the commit becomes visible only after this sync returns, so
        // waiting here means COMMIT returns once the transaction is in the bucket, and failing
        // here rolls it back (it never becomes visible locally).
        std::string err;
        uint32_t frame = db->last_commit_frame;
        db->last_commit_frame = 0;
        if (s->flush_through(db->salt2, frame, db->commit_cksum, false, &err) != SQLITE_OK) {
            log_error("remote-durable commit failed: " + err);
            // SQLite rolls the transaction back, but its frames are in the WAL, whole and synced,
            // past the wal-index's end: the recovery that rebuilds the wal-index (the next open
            // after a crash, or of a WAL kept at close) took them as committed, and the rolled
            // back transaction came back, locally and then in the replica. A zeroed commit frame
            // header ends the chain before it. (Under the write lock: no one else writes here.)
            if (F(f)->page_size) {
                unsigned char none[kWalFrameHeaderSize] = {};
                const int64_t at = int64_t(kWalHeaderSize) + int64_t(frame - 1) * (int64_t(kWalFrameHeaderSize) + F(f)->page_size);
                if (R(f)->xWrite(f, none, sizeof none, at) == SQLITE_OK) R(f)->xSync(f, flags);
            }
            return SQLITE_IOERR_FSYNC;
        }
        db->strict_frame = frame;  // shown once the write lock is released (commit_shown)
        db->strict_cksum = db->commit_cksum;
    } catch (...) {
        return SQLITE_IOERR_FSYNC;
    }
    return SQLITE_OK;
}

int w_close(sqlite3_file* f) noexcept {
    if (F(f)->writeback_fd > 0) ::close(F(f)->writeback_fd - 1);
    if (F(f)->db && F(f)->db->wal == F(f)) F(f)->db->wal = nullptr;
    F(f)->db = nullptr;
    return R(f)->xClose(f);
}

int wal_truncate(sqlite3_file* f, sqlite3_int64 size) noexcept {
    // walLimitSize at close may truncate a WAL we asked SQLite to keep.
    Shipper* s = S(f);
    if (s && size == 0 && s->wal_has_unshipped()) return SQLITE_OK;
    return R(f)->xTruncate(f, size);
}

// ---- a main database walship refused to open ------------------------------------------------

// SQLite reports a failed xOpen as "unable to open database file", whatever the reason. So when
// walship refuses a main database (bad settings, an unusable replica URL, a failed auto-restore)
// the open goes ahead on no file at all: it reads as empty, and writing or locking it fails. The
// automatic extension below (check_open, run by SQLite at the end of every sqlite3_open) then
// fails the open with walship's reason, which sqlite3_errmsg shows. Where SQLite runs no automatic
// extension (ATTACH), the first statement fails with an I/O error; the reason is in the log.
int r_close(sqlite3_file* f) noexcept {
    sqlite3_free(F(f)->refused);
    F(f)->refused = nullptr;
    return SQLITE_OK;
}
int r_read(sqlite3_file*, void* buf, int amt, sqlite3_int64) noexcept {
    memset(buf, 0, size_t(amt));
    return SQLITE_IOERR_SHORT_READ;
}
int r_write(sqlite3_file*, const void*, int, sqlite3_int64) noexcept { return SQLITE_IOERR_WRITE; }
int r_truncate(sqlite3_file*, sqlite3_int64) noexcept { return SQLITE_IOERR_TRUNCATE; }
int r_sync(sqlite3_file*, int) noexcept { return SQLITE_IOERR_FSYNC; }
int r_size(sqlite3_file*, sqlite3_int64* size) noexcept {
    *size = 0;
    return SQLITE_OK;
}
int r_lock(sqlite3_file*, int) noexcept { return SQLITE_IOERR_LOCK; }
int r_unlock(sqlite3_file*, int) noexcept { return SQLITE_OK; }
int r_reserved(sqlite3_file*, int* out) noexcept {
    *out = 0;
    return SQLITE_OK;
}
int r_fcntl(sqlite3_file*, int, void*) noexcept { return SQLITE_NOTFOUND; }
int r_sector(sqlite3_file*) noexcept { return 4096; }
int r_device(sqlite3_file*) noexcept { return 0; }
sqlite3_io_methods make_refused_methods() {
    sqlite3_io_methods m{};
    m.iVersion = 1;
    m.xClose = r_close, m.xRead = r_read, m.xWrite = r_write, m.xTruncate = r_truncate, m.xSync = r_sync;
    m.xFileSize = r_size, m.xLock = r_lock, m.xUnlock = r_unlock, m.xCheckReservedLock = r_reserved;
    m.xFileControl = r_fcntl, m.xSectorSize = r_sector, m.xDeviceCharacteristics = r_device;
    return m;
}
const sqlite3_io_methods refused_methods = make_refused_methods();

int refuse(sqlite3_file* file, const std::string& why) noexcept {
    log_error(why);
    File* p = F(file);
    p->kind = Kind::Refused;
    const bool named = why.compare(0, 9, "walship: ") == 0;  // settings errors say so already
    p->refused = sqlite3_mprintf("%s%s", named ? "" : "walship: ", why.c_str());
    if (!p->refused) return SQLITE_CANTOPEN;
    file->pMethods = &refused_methods;
    return SQLITE_OK;
}

// The VFS a connection's main database was opened with, when it is not walship ("" otherwise).
std::string other_vfs(sqlite3* db) {
    sqlite3_vfs* vfs = nullptr;
    if (sqlite3_file_control(db, "main", SQLITE_FCNTL_VFS_POINTER, &vfs) != SQLITE_OK || !vfs || !vfs->zName) return "";
    return std::strcmp(vfs->zName, kVfsName) == 0 ? "" : vfs->zName;
}

// The automatic extension: fails the open of a database walship refused, with the reason; and of
// one given replica= but opened with another VFS (vfs=unix in its URI, or sqlite3_open_v2's VFS
// argument), which would never replicate.
int check_open(sqlite3* db, char** err, const sqlite3_api_routines*) {
    sqlite3_file* f = nullptr;
    if (sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &f) != SQLITE_OK || !f) return SQLITE_OK;
    if (f->pMethods == &refused_methods) {
        if (err) *err = sqlite3_mprintf("%s", F(f)->refused);
        return SQLITE_CANTOPEN;
    }
    const char* name = sqlite3_db_filename(db, "main");
    if (name && *name && sqlite3_uri_parameter(name, "replica")) {
        try {
            std::string vfs = other_vfs(db);
            if (!vfs.empty()) {
                if (err)
                    *err = sqlite3_mprintf("walship: %s has replica= but is opened with the VFS '%s', which does not replicate (leave out vfs=, or use vfs=walship)",
                                           name, vfs.c_str());
                return SQLITE_CANTOPEN;
            }
        } catch (...) {
            return SQLITE_NOMEM;
        }
    }
    return SQLITE_OK;
}

// ---- the VFS -------------------------------------------------------------------------------

// The methods SQLite calls for walship's files: the underlying file's own, with walship's in the
// places it needs them, so that every other call goes straight to the underlying VFS. One set
// per underlying method table (SQLite's unix VFS has one per locking style), made at its first open.
struct MethodTables {
    const sqlite3_io_methods* real;
    sqlite3_io_methods pass;        // any file walship does not replicate
    sqlite3_io_methods presenting;  // the shipper's own connection that opens the WAL (open_presenting_wal)
    sqlite3_io_methods db;          // a replicated main database
    sqlite3_io_methods wal_local;   // its WAL, durability=local: only close and truncate
    sqlite3_io_methods wal_remote;  // its WAL, remote durabilities: also the commit frames and syncs
};
std::mutex tables_mu;
// Made at first use and never destroyed: open files point into it, and an application's static
// objects may open a database before this file's statics exist or close it after they are gone.
std::deque<MethodTables>& all_tables() {
    static auto* tables = new std::deque<MethodTables>;  // never shrinks
    return *tables;
}

const MethodTables& tables_for(const sqlite3_io_methods* real) {
    std::lock_guard<std::mutex> lock(tables_mu);
    auto& tables = all_tables();
    for (const auto& t : tables)
        if (t.real == real) return t;
    MethodTables t{};
    t.real = real;
    t.pass = *real;
    t.pass.xFileControl = x_fcntl;
    t.presenting = t.pass;
    t.presenting.xRead = db_read;
    t.db = t.pass;
    t.db.xClose = db_close;
    t.db.xRead = db_read;
    t.db.xWrite = db_write;
    t.db.xLock = db_lock;
    t.db.xUnlock = db_unlock;
    t.db.xFileControl = db_fcntl;
    if (real->iVersion >= 2) {
        t.db.xShmMap = db_shm_map;
        t.db.xShmLock = db_shm_lock;
        t.db.xShmUnmap = db_shm_unmap;
    }
    t.wal_local = t.pass;
    t.wal_local.xClose = w_close;
    t.wal_local.xTruncate = wal_truncate;
    t.wal_local.xWrite = wal_write_local;
    t.wal_local.xSync = wal_sync_local;
    t.wal_remote = t.wal_local;
    t.wal_remote.xWrite = wal_write;
    t.wal_remote.xSync = wal_sync;
    tables.push_back(t);
    return tables.back();
}

thread_local bool opening_presenting = false;  // set by open_presenting_wal around its open

int v_open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) noexcept {
    File* p = F(file);
    memset(p, 0, sizeof(File));
    p->kind = Kind::PassThrough;
    std::unique_ptr<std::shared_ptr<Shipper>> shipper;
    const bool presenting = opening_presenting && (flags & SQLITE_OPEN_MAIN_DB);
    try {
        if ((flags & SQLITE_OPEN_MAIN_DB) && name && !presenting) {
            Config cfg;
            std::string err;
            if (!resolve_config(name, name, &cfg, &err)) return refuse(file, err);
            // Another connection of this process replicates the file: this one is part of it
            // too, whatever its URI says. A pass-through connection's checkpoint could reset the
            // WAL under unshipped frames (a gap in the replica's history, and a new generation).
            std::shared_ptr<Shipper> s = cfg.replica_url.empty() ? Shipper::running(name) : nullptr;
            // SQLite (the -wal, the wal-index) and walship (the side and spill files) create files
            // beside the database: in a directory the process cannot write, with no -wal there,
            // a replicating open cannot work (a SELECT failed with "attempt to write a readonly
            // database" and every close waited for a flush). Read-only, it opens as plain SQLite
            // would, unreplicated; read-write, it fails saying why.
            if (!cfg.replica_url.empty()) {
                std::string path(name);
                std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
                if (dir.empty()) dir = "/";
                struct stat st {};
                const int denied = ::faccessat(AT_FDCWD, dir.c_str(), W_OK, AT_EACCESS) != 0 ? errno : 0;
                if (denied && ::stat((path + "-wal").c_str(), &st) != 0) {
                    if (!(flags & SQLITE_OPEN_READONLY))
                        return refuse(file, "walship: cannot replicate " + path + ": its directory " + dir + " is not writable (" + strerror(denied) +
                                                "), and SQLite and walship create files beside the database; open it read-only (mode=ro) to read it");
                    log_info(path + " opens read-only without replication: its directory is not writable");
                    cfg.replica_url.clear();
                }
            }
            if (!cfg.replica_url.empty()) {
                s = Shipper::acquire(base_vfs, cfg, &err);
                if (!s && !err.empty()) return refuse(file, err + " (opening " + std::string(name) + ")");
                if (s && cfg.restore_auto && file_size(name) == 0 && !s->restore_if_empty(&err)) return refuse(file, err);
                if (s && !cfg.restore_auto && file_size(name) == 0) s->opened_empty_without_restore();
            }
            if (s) {  // (else it passes through unreplicated: see Shipper::acquire)
                shipper = std::make_unique<std::shared_ptr<Shipper>>(std::move(s));
                p->kind = Kind::MainDb;
                p->durability = cfg.durability;
            }
        } else if ((flags & SQLITE_OPEN_WAL) && name) {
            sqlite3_file* db = sqlite3_database_file_object(name);
            if (db && db->pMethods && db->pMethods->xFileControl == db_fcntl && F(db)->shipper) {
                p->kind = Kind::Wal;
                p->db = F(db);
                p->wal_name = name;
            }
        }
    } catch (...) {
        return SQLITE_CANTOPEN;
    }
    // The underlying VFS opens its file in place; on failure SQLite closes it through its own methods.
    int rc = base_vfs->xOpen(base_vfs, name, file, flags, out_flags);
    if (rc != SQLITE_OK || !file->pMethods) {
        p->db = nullptr;
        return rc;
    }
    p->real = file->pMethods;
    const MethodTables* t = nullptr;
    try {
        t = &tables_for(p->real);
    } catch (...) {
        p->real->xClose(file);
        file->pMethods = nullptr;
        return SQLITE_NOMEM;
    }
    if (p->kind == Kind::MainDb) {
        try {
            std::unique_lock<std::shared_mutex> lock(live_mu);
            live_files().insert(p);
        } catch (...) {
            p->real->xClose(file);
            file->pMethods = nullptr;
            return SQLITE_NOMEM;
        }
        p->shipper = shipper.release();
    }
    if (p->kind == Kind::Wal) p->db->wal = p;
    if (p->kind == Kind::MainDb) file->pMethods = &t->db;
    else if (p->kind == Kind::Wal) file->pMethods = p->db->durability == Durability::Local ? &t->wal_local : &t->wal_remote;
    else file->pMethods = presenting ? &t->presenting : &t->pass;
    return SQLITE_OK;
}


int v_delete(sqlite3_vfs*, const char* name, int sync) noexcept { return base_vfs->xDelete(base_vfs, name, sync); }
int v_access(sqlite3_vfs*, const char* name, int flags, int* out) noexcept { return base_vfs->xAccess(base_vfs, name, flags, out); }
int v_fullpath(sqlite3_vfs*, const char* name, int n, char* out) noexcept { return base_vfs->xFullPathname(base_vfs, name, n, out); }
void* v_dlopen(sqlite3_vfs*, const char* name) noexcept { return base_vfs->xDlOpen(base_vfs, name); }
void v_dlerror(sqlite3_vfs*, int n, char* msg) noexcept { base_vfs->xDlError(base_vfs, n, msg); }
void (*v_dlsym(sqlite3_vfs*, void* h, const char* sym))(void) { return base_vfs->xDlSym(base_vfs, h, sym); }
void v_dlclose(sqlite3_vfs*, void* h) noexcept { base_vfs->xDlClose(base_vfs, h); }
int v_random(sqlite3_vfs*, int n, char* out) noexcept { return base_vfs->xRandomness(base_vfs, n, out); }
int v_sleep(sqlite3_vfs*, int us) noexcept {
    if (contention.file && sleep_until_write_lock_free(us)) return us;
    return base_vfs->xSleep(base_vfs, us);
}
int v_time(sqlite3_vfs*, double* t) noexcept { return base_vfs->xCurrentTime(base_vfs, t); }
int v_lasterror(sqlite3_vfs*, int n, char* msg) noexcept { return base_vfs->xGetLastError ? base_vfs->xGetLastError(base_vfs, n, msg) : 0; }
int v_time64(sqlite3_vfs*, sqlite3_int64* t) noexcept { return base_vfs->xCurrentTimeInt64(base_vfs, t); }
int v_setsyscall(sqlite3_vfs*, const char* n, sqlite3_syscall_ptr p) noexcept { return base_vfs->xSetSystemCall(base_vfs, n, p); }
sqlite3_syscall_ptr v_getsyscall(sqlite3_vfs*, const char* n) noexcept { return base_vfs->xGetSystemCall(base_vfs, n); }
const char* v_nextsyscall(sqlite3_vfs*, const char* n) noexcept { return base_vfs->xNextSystemCall(base_vfs, n); }

std::mutex register_mu;

}  // namespace

// Opens the database (read-write, not replicated) with its format bytes read as WAL, as the
// application's connections see it: SQLite then opens the WAL and the wal-index without rewriting
// page 1, which PRAGMA journal_mode=WAL would do (and the state would no longer equal the replica's).
int open_presenting_wal(const std::string& path, sqlite3** db) {
    opening_presenting = true;
    int rc = sqlite3_open_v2(path.c_str(), db, SQLITE_OPEN_READWRITE, kVfsName);
    opening_presenting = false;
    return rc;
}

}  // namespace walship

using namespace walship;

extern "C" const char* walship_vfs_name(void) { return kVfsName; }

extern "C" int walship_register(int make_default) {
    std::lock_guard<std::mutex> lock(register_mu);
    if (sqlite3_vfs* existing = sqlite3_vfs_find(kVfsName)) {
        return make_default ? sqlite3_vfs_register(existing, 1) : SQLITE_OK;
    }
    base_vfs = sqlite3_vfs_find(nullptr);
    if (!base_vfs) return SQLITE_ERROR;
    sqlite3_vfs& v = walship_vfs;
    v.iVersion = 3;
    file_offset = (size_t(base_vfs->szOsFile) + alignof(File) - 1) / alignof(File) * alignof(File);
    v.szOsFile = int(file_offset + sizeof(File));
    v.mxPathname = base_vfs->mxPathname;
    v.zName = kVfsName;
    v.xOpen = v_open;
    v.xDelete = v_delete;
    v.xAccess = v_access;
    v.xFullPathname = v_fullpath;
    v.xDlOpen = v_dlopen;
    v.xDlError = v_dlerror;
    v.xDlSym = v_dlsym;
    v.xDlClose = v_dlclose;
    v.xRandomness = v_random;
    v.xSleep = v_sleep;
    v.xCurrentTime = v_time;
    v.xGetLastError = v_lasterror;
    v.xCurrentTimeInt64 = v_time64;
    v.xSetSystemCall = v_setsyscall;
    v.xGetSystemCall = v_getsyscall;
    v.xNextSystemCall = v_nextsyscall;
    int v_num = sqlite3_libversion_number();
    if (v_num < 3044006 || (v_num >= 3045000 && v_num < 3050007) || (v_num >= 3051000 && v_num < 3051003))
        log(LogLevel::Warn, std::string("SQLite ") + sqlite3_libversion() +
                                " has the WAL-reset bug (a checkpoint racing a WAL reset can lose committed pages; fixed in 3.51.3, 3.50.7, 3.44.6)");
    int rc = sqlite3_vfs_register(&v, make_default);
    if (rc == SQLITE_OK) rc = sqlite3_auto_extension(reinterpret_cast<void (*)(void)>(check_open));
    return rc;
}

extern "C" __attribute__((visibility("default"))) int sqlite3_walship_init(sqlite3* db, char** err, const sqlite3_api_routines* api) {
#ifndef WALSHIP_STATIC
    SQLITE_EXTENSION_INIT2(api);
#else
    (void)api;
#endif
    int rc = walship_register(1);
    if (rc != SQLITE_OK) {
        if (err) *err = sqlite3_mprintf("walship: could not register the VFS");
        return rc;
    }
    // The connection that loads walship opened its database before walship existed: a database
    // meant to replicate (sqlite3 app.db, then .load) would not, on this connection, without a word.
    try {
        const char* name = db ? sqlite3_db_filename(db, "main") : nullptr;
        Config cfg;
        std::string ignored;
        if (name && *name && !other_vfs(db).empty() && resolve_config(name, name, &cfg, &ignored) && !cfg.replica_url.empty())
            log_warn(std::string(name) + " was opened before walship was loaded, so this connection does not replicate it: open it again " +
                     "(in the sqlite3 shell .open " + name + ", or load walship first: sqlite3 -cmd '.load libwalship' " + name +
                     "; in Python, a new sqlite3.connect after load_extension)");
    } catch (...) {
    }
    return SQLITE_OK_LOAD_PERMANENTLY;
}

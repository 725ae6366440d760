// The shipper thread: from committed WAL frames to segments in the bucket (see shipper.h and
// docs/DESIGN.md). Everything slow (reading the WAL, zstd, the network) happens here, never on the
// application's write path.
#include "shipper.h"

#include "restore.h"
#include "fileio.h"
#include "retention.h"
#include "spill.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <zstd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <new>

namespace walship {

using Clock = std::chrono::steady_clock;

int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch()).count();
}

namespace {

std::mutex registry_mu;
std::map<std::string, std::weak_ptr<Shipper>>& registry() {
    static std::map<std::string, std::weak_ptr<Shipper>> r;
    return r;
}

// A fork() while another thread holds the registry lock would leave it locked in the child. The
// child's inherited shippers let go of the parent's ship lock (SideFile::reopen_after_fork).
const int registry_atfork = pthread_atfork([] { registry_mu.lock(); }, [] { registry_mu.unlock(); }, [] {
    for (auto& entry : registry())
        if (auto s = entry.second.lock()) s->after_fork_in_child();
    registry_mu.unlock();
});
std::map<std::string, std::string>& location_owner() {  // canonical replica URL -> db path
    static std::map<std::string, std::string> r;
    return r;
}

// Streams an object: header, zstd-compressed body, trailer; hashes as it goes (snapshots, and
// segments of transactions too large to hold in memory).
class SnapshotWriter {
public:
    SnapshotWriter(s3::ObjectWriter* w, int level) : w_(w) {
        cctx_ = ZSTD_createCCtx();
        ZSTD_CCtx_setParameter(cctx_, ZSTD_c_compressionLevel, level);
        out_.resize(ZSTD_CStreamOutSize());
    }
    ~SnapshotWriter() { ZSTD_freeCCtx(cctx_); }
    s3::Status raw(const void* p, size_t n) {
        digest_.update(p, n);
        return w_->write(p, n);
    }
    s3::Status page(const void* p, size_t n, ZSTD_EndDirective mode = ZSTD_e_continue) {
        ZSTD_inBuffer in{p, n, 0};
        for (;;) {
            ZSTD_outBuffer out{&out_[0], out_.size(), 0};
            size_t rem = ZSTD_compressStream2(cctx_, &out, &in, mode);
            if (ZSTD_isError(rem)) return s3::make_error(s3::ErrorKind::Io, std::string("zstd: ") + ZSTD_getErrorName(rem));
            if (out.pos) {
                s3::Status st = raw(out.dst, out.pos);
                if (!st.ok()) return st;
            }
            if (mode == ZSTD_e_end ? rem == 0 : in.pos == in.size) return {};
        }
    }
    s3::Status finish(uint64_t db_checksum) {
        s3::Status st = page(nullptr, 0, ZSTD_e_end);
        if (!st.ok()) return st;
        std::string& t = trailer_;
        t.clear();
        put_u64le(t, db_checksum);
        digest_.update(t.data(), t.size());
        t += digest_.value();
        st = w_->write(t.data(), t.size());
        if (!st.ok()) return st;
        return w_->commit();
    }
    const std::string& trailer() const { return trailer_; }  // after finish: the object's last bytes

private:
    s3::ObjectWriter* w_;
    ZSTD_CCtx* cctx_;
    ObjectDigest digest_;
    std::string out_, trailer_;
};

}  // namespace

std::shared_ptr<Shipper> Shipper::acquire(sqlite3_vfs* base, const Config& cfg, std::string* error) {
    auto loc = s3::parse_location(cfg.replica_url, s3::Environment::from_process());
    if (!loc.ok()) {
        *error = "walship: " + loc.error().str();
        return nullptr;
    }
    std::string canon = loc->url();
    std::unique_lock<std::mutex> lock(registry_mu);
    auto it = registry().find(cfg.db_path);
    if (it != registry().end()) {
        if (auto s = it->second.lock(); s && !s->forked()) {
            auto o = location_owner().find(canon);
            if (o == location_owner().end() || o->second != cfg.db_path) {
                std::string current;
                for (auto& [where, path] : location_owner())
                    if (path == cfg.db_path) current = where;
                *error = "walship: " + cfg.db_path + " is already replicating to " + (current.empty() ? "another location" : current) +
                         " in this process, not to " + canon + " (one database has one replica location)";
                return nullptr;
            }
            return s;
        }
    }
    auto owner = location_owner().find(canon);
    if (owner != location_owner().end() && owner->second != cfg.db_path) {
        auto other = registry().find(owner->second);
        auto live = other != registry().end() ? other->second.lock() : nullptr;
        if (live && !live->forked()) {
            // WALSHIP_REPLICA_URL alone names no database: it replicates the first one this
            // process opened, and the others (a VACUUM INTO target, an ATTACHed or .backup file)
            // open unreplicated (an empty *error says so to the caller).
            if (cfg.url_from_env) {
                log_info(cfg.db_path + " opens without replication: WALSHIP_REPLICA_URL replicates " + owner->second +
                         " in this process (set WALSHIP_DB to choose the database)");
                error->clear();
                return nullptr;
            }
            *error = "walship: replica location " + canon + " is already used by " + owner->second +
                     "; two databases cannot share one replica location";
            return nullptr;
        }
    }
    // A copy inherited through fork() (an application that opened the database, then forked its
    // workers) is never destroyed in the child: its thread does not exist there, and its ship lock
    // (an OFD lock, shared with the parent), store connections and TLS sessions are the parent's.
    // The child gets a Shipper of its own.
    std::shared_ptr<Shipper> s(new Shipper(base, cfg), [](Shipper* p) {
        if (!p->forked()) delete p;
    });
    if (!s->start(loc.value(), error)) {
        lock.unlock();  // ~Shipper takes the registry lock
        return nullptr;
    }
    registry()[cfg.db_path] = s;
    location_owner()[canon] = cfg.db_path;
    return s;
}

std::shared_ptr<Shipper> Shipper::running(const std::string& db_path) {
    std::lock_guard<std::mutex> lock(registry_mu);
    auto it = registry().find(db_path);
    auto s = it != registry().end() ? it->second.lock() : nullptr;
    return s && !s->forked() ? s : nullptr;
}

Shipper::Shipper(sqlite3_vfs* base, Config cfg) : base_(base), cfg_(std::move(cfg)) {}

namespace {
// The database file's device, inode, size and change time (ns): see SideState::spill_db.
bool db_fingerprint(const std::string& path, uint64_t out[4]) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return false;
    out[0] = uint64_t(st.st_dev), out[1] = uint64_t(st.st_ino), out[2] = uint64_t(st.st_size);
    out[3] = uint64_t(st.st_ctim.tv_sec) * 1000000000ull + uint64_t(st.st_ctim.tv_nsec);
    return true;
}
// A fingerprint kept in the side file (spill_db, reset_db), and whether it is this one.
void save_fingerprint(std::atomic<uint64_t>* to, const uint64_t fp[4]) {
    for (int i = 0; i < 4; i++) to[i] = fp[i];
}
bool same_fingerprint(const std::atomic<uint64_t>* saved, const uint64_t fp[4]) {
    for (int i = 0; i < 4; i++)
        if (saved[i].load() != fp[i]) return false;
    return true;
}

// FNV-1a.
uint64_t fnv1a(const std::string& s) {
    uint64_t hash = 1469598103934665603ull;
    for (unsigned char c : s) hash = (hash ^ c) * 1099511628211ull;
    return hash;
}

int64_t steady_ms() { return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count(); }
}  // namespace

// One replica location serves one database. Across machines the retention LIST finds a second
// writer; on this machine each process that opens a database with a replica location holds a
// shared lock on a file named for the location ($TMPDIR or /tmp, walship-<uid>/), which names the
// database that holds it: a process opening another database with that location is refused at
// the open. The location is the replica URL as parsed (bucket, prefix, endpoint, region): the
// same bucket name on two servers is two locations; one server spelt two ways is not caught here.
// Returns the fd holding the claim (or -1 when the directory is unusable: not checked), or the
// refusal in *error.
static int claim_location(const std::string& where, const std::string& db_path, std::string* error) {
    const char* tmp = std::getenv("TMPDIR");
    const std::string dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/walship-" + std::to_string(getuid());
    const uint64_t hash = fnv1a(where);
    ::mkdir(dir.c_str(), 0700);
    struct stat st {};
    if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 077)) return -1;
    char name[40];
    std::snprintf(name, sizeof name, "/location-%016llx", (unsigned long long)hash);
    int fd = ::open((dir + name).c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return -1;
    auto lock = [fd](short type, off_t at) {  // (never waits: see byte 1)
        struct flock fl {};
        fl.l_type = type, fl.l_whence = SEEK_SET, fl.l_start = at, fl.l_len = 1;
        return fcntl(fd, F_OFD_SETLK, &fl) == 0;
    };
    // Byte 1: one claim at a time (a few system calls long; a process stopped inside one would
    // hold it: after 2 s the open goes on without the check).
    bool serial = false;
    for (int i = 0; i < 400 && !(serial = lock(F_WRLCK, 1)); i++) ::usleep(5000);
    if (!serial) {
        ::close(fd);
        return -1;
    }
    struct flock fl {};
    fl.l_type = F_WRLCK, fl.l_whence = SEEK_SET, fl.l_start = 0, fl.l_len = 1;
    const bool held = fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;  // byte 0: the holders
    char buf[4200] = {};
    ssize_t n = held ? ::pread(fd, buf, sizeof buf - 1, 0) : 0;
    std::string owner(buf, n > 0 ? size_t(n) : 0), pid;
    if (auto nl = owner.find('\n'); nl != std::string::npos) pid = owner.substr(nl + 1), owner.resize(nl);
    while (!pid.empty() && pid.back() == '\n') pid.pop_back();
    if (held && !owner.empty() && owner != db_path) {
        ::close(fd);  // (drops the claim lock too)
        *error = "walship: replica location " + where + " is already used by " + owner + (pid.empty() ? "" : " (pid " + pid + ")") +
                 " on this machine; two databases cannot share one replica location (give each its own prefix)";
        return -2;
    }
    if (!held || owner.empty()) {
        std::string text = db_path + "\n" + std::to_string(getpid()) + "\n";
        if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, text.data(), text.size(), 0) != ssize_t(text.size())) {
            ::close(fd);
            return -1;
        }
    }
    const bool claimed = lock(F_RDLCK, 0);
    lock(F_UNLCK, 1);
    if (!claimed) {
        ::close(fd);
        return -1;
    }
    return fd;
}

void Shipper::closing() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!close_deadline_ms_) close_deadline_ms_ = steady_ms() + cfg_.close_timeout_ms;
}

bool Shipper::start(const s3::Location& l, std::string* error) {
    auto st = s3::open_store(cfg_.replica_url, s3::Environment::from_process());
    if (!st.ok()) {
        *error = "walship: " + st.error().str();
        return false;
    }
    store_ = std::move(st.value());
    // A snapshot reads under a reader mark, so SQLite cannot reset the WAL past it while it
    // uploads: if the WAL grows by more than max_wal_size meanwhile (a store that hangs, or writes
    // outpacing a slow upload), the snapshot's requests end and it is tried again later.
    store_->set_interrupt([this] { return snapshot_holds_wal_too_long(); });
    if (!side_.open(cfg_.db_path, error)) return false;
    if (!side_.commit_slots())
        log_warn("cannot grow " + cfg_.db_path + "-walship (" + side_.alloc_error() + "): replicating without its commit-time slots, so points in time are approximate until it can");
    // Processes compare the bucket and prefix (or the directory) only: one server may be named
    // several ways (localhost or 127.0.0.1, a region's endpoint or the global one, path style or
    // not), and refusing a worker that names the same bucket differently would be worse than not
    // noticing two servers that hold buckets of the same name.
    const std::string id = l.scheme == s3::Location::Scheme::File ? "file://" + l.dir : "s3://" + l.bucket + "/" + l.prefix;
    replica_ = l.url().substr(0, sizeof(SideState::replica) - 1);  // (shown in the message)
    replica_hash_ = fnv1a(id) | 1;  // never 0 (0: not known)
    *error = foreign_replica();
    if (!error->empty()) return false;
    location_fd_ = claim_location(l.url(), cfg_.db_path, error);
    if (location_fd_ == -2) return false;
    notified_ = true;  // the first pass runs at once: it takes the ship lock if no process holds it
    thread_ = std::thread([this] { run(); });
    return true;
}

Shipper::~Shipper() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    done_cv_.notify_all();
    if (side_.state()) {
        side_.state()->wake.fetch_add(1);
        futex_wake(&side_.state()->wake);
    }
    if (thread_.joinable()) {
        // A request to a store that hangs can take minutes (timeouts and retries): the close
        // waits close_timeout in all (counted from the close's first flush), then cancels it.
        std::unique_lock<std::mutex> lock(mu_);
        int64_t deadline = close_deadline_ms_ ? close_deadline_ms_ : steady_ms() + cfg_.close_timeout_ms;
        if (!done_cv_.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(0, deadline - steady_ms())), [&] { return exited_; })) {
            log_warn("closing " + cfg_.db_path + ": cancelling a request to " + store_->describe() + " still running after close_timeout");
            store_->cancel();
        }
        lock.unlock();
        thread_.join();
    }
    close_handles();
    if (spill_fd_ >= 0) ::close(spill_fd_);
    if (location_fd_ >= 0) ::close(location_fd_);
    if (is_shipper_) {
        SideState* side = side_.state();
        if (side_.commit_slots()) {  // no requests of ours to wait on, nothing unshipped as far as we know
            store_->share_waiting(nullptr);
            side->shipper_wait.clear();
            side->shipper_unshipped_since_ms = 0;
        }
        // Operators read logs: the last line of a clean stop says what the replica holds.
        if (have_generation_)
            log_info("stopped replicating " + cfg_.db_path + " (pid " + std::to_string(getpid()) + "): the replica holds generation " +
                     generation_name(generation_) + " through txid " + std::to_string(txid_));
        side->shipper_pid = 0;
        side_.unlock(SideFile::kShipLock);
        // A remote-durable commit of another process waiting for us sees at once that nobody
        // ships, and has its own process take over (flush_through).
        side->shipped_seq.fetch_add(1);
        futex_wake(&side->shipped_seq);
    }
    std::lock_guard<std::mutex> lock(registry_mu);
    auto it = registry().find(cfg_.db_path);
    if (it != registry().end() && it->second.expired()) registry().erase(it);
    for (auto o = location_owner().begin(); o != location_owner().end();) {
        if (o->second == cfg_.db_path && registry().find(cfg_.db_path) == registry().end()) o = location_owner().erase(o);
        else ++o;
    }
}

void Shipper::commit_shown(uint32_t salt2, uint32_t frame, uint64_t cksum) {
    SideState* s = side_.state();
    uint64_t spec = s->spec_pos.load();
    volatile void* shm = shm0_.load();
    ShmHeader h;
    if (spec != pack_position(salt2, frame) || s->spec_cksum.load() != cksum || !shm || !read_shm_header(shm, &h) ||
        h.salt2 != salt2 || h.mx_frame < frame)
        return;
    s->spec_pos.compare_exchange_strong(spec, 0);
}

void Shipper::notify() {
    // On the commit path: cheap unless a shipper sleeps waiting for commits (this process's thread,
    // or the shipping process's). While it is paced by sync_interval it wakes on its own timer.
    if (!notified_.load() && !notified_.exchange(true) && idle_wait_.load()) {
        std::lock_guard<std::mutex> lock(mu_);
        cv_.notify_one();
    }
    SideState* s = side_.state();
    if (s->shipper_idle.load()) {
        s->wake.fetch_add(1);
        futex_wake(&s->wake);
    }
    // Nobody ships (the shipping process closed the database): this process's thread takes the
    // ship lock now, not at its next attempt (200 ms). A shipper that died leaves its pid; that
    // case waits for the attempt (or, for a remote-durable commit, see flush_through).
    if (!is_shipper_ && s->shipper_pid.load() == 0) wake();
}

void Shipper::wake() {
    notified_ = true;
    {
        std::lock_guard<std::mutex> lock(mu_);
        cv_.notify_one();
    }
    SideState* s = side_.state();
    s->wake.fetch_add(1);
    futex_wake(&s->wake);
}

// PRAGMA walship_snapshot: asks the shipping process (this one or another) for a snapshot and
// waits until one taken after the request is in the bucket.
int Shipper::snapshot(int timeout_ms, std::string* error) {
    if (*error = foreign_replica(); !error->empty()) return SQLITE_ERROR;
    SideState* side = side_.state();
    const uint64_t ticket = side->snapshot_asked.fetch_add(1) + 1;
    wake();
    if (wait_shipped([&] { return side->snapshot_done.load() >= ticket; }, Clock::now() + std::chrono::milliseconds(timeout_ms), true))
        return SQLITE_OK;
    std::lock_guard<std::mutex> lock(mu_);
    *error = "walship: snapshot not written within " + std::to_string(timeout_ms) + " ms" + store_wait_note();
    *error += last_error_note_locked();
    return SQLITE_BUSY;
}

bool Shipper::snapshot_wanted() const {
    const SideState* side = side_.state();
    return side->snapshot_asked.load() > side->snapshot_done.load();
}

namespace {
bool covers(uint64_t pos, const ShmHeader& h) { return uint32_t(pos >> 32) == h.salt2 && uint32_t(pos) >= h.mx_frame; }
// A remote-durable commit (of any process) asked for frames that are not shipped yet.
bool commit_waiting(const SideState* side) {
    uint64_t asked = side->ship_through.load(), shipped = side->shipped.load();
    return asked != 0 && ((asked >> 32) != (shipped >> 32) || uint32_t(asked) > uint32_t(shipped));
}
}  // namespace

// Whether what was committed when a flush began (target_) is in the bucket, as far as the side
// file tells. Once the shipper follows a WAL after the target's, the target's frames were shipped
// (or spilled and shipped) before it moved on: it enters a new WAL only after that.
bool Shipper::reached_target(const ShmHeader& now) const {
    SideState* s = side_.state();
    if (s->needs_snapshot.load()) return false;
    uint64_t shipped_spill = s->spill_shipped.load();
    if (shipped_spill < s->spill_len.load() && shipped_spill < target_spill_) return false;
    if (target_.mx_frame == 0) return true;
    uint64_t pos = s->shipped.load();
    if (uint32_t(pos >> 32) == target_.salt2) return uint32_t(pos) >= target_.mx_frame;
    return now.salt2 != target_.salt2 && uint32_t(pos >> 32) == now.salt2;
}

bool Shipper::unshipped(const ShmHeader* h) const {
    SideState* s = side_.state();
    if (!h || s->needs_snapshot.load() || s->spill_shipped.load() < s->spill_len.load()) return true;
    return h->mx_frame != 0 && !covers(s->shipped.load(), *h);
}

int Shipper::open_spill(std::string* error) {
    std::lock_guard<std::mutex> lock(spill_mu_);
    if (spill_fd_ < 0) {
        std::string path = spill_path(cfg_.db_path);
        spill_fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (spill_fd_ < 0) *error = "cannot open " + path + ": " + strerror(errno);
    }
    return spill_fd_;
}

bool Shipper::allow_wal_reset(const ShmHeader& h, const ShmRegion& region, const WalRead& wal) {
    SideState* s = side_.state();
    if (h.mx_frame == 0 || covers(s->shipped.load(), h)) {
        s->reset_allowed = h.salt2;  // everything shipped: the shipper may follow to the next WAL
        if (side_.commit_slots()) {  // (past an older walship's 4 KiB file: only where it could grow)
            s->reset_db_salt2 = 0;
            uint64_t fp[4] = {};
            if (db_fingerprint(cfg_.db_path, fp)) {
                save_fingerprint(s->reset_db, fp);
                s->reset_db_salt2 = h.salt2;
            }
        }
        s->holding_since_ms = 0;
        return true;
    }
    // A snapshot is due anyway, or an earlier call spilled everything (a RESTART checkpoint takes
    // the lock without resetting; the writer after it resets).
    if (covers(s->spilled.load(), h)) {
        s->holding_since_ms = 0;
        return true;
    }
    if (s->needs_snapshot.load()) {
        // Counted: a snapshot whose state was read before this reset must not clear the need.
        s->needs_snapshot.fetch_add(1);
        s->holding_since_ms = 0;
        return true;
    }
    // What is kept locally for the bucket: this WAL and the spill not yet shipped. Past
    // max_wal_size, let SQLite reset the WAL and start a new generation once the store is back.
    uint64_t wal_bytes = uint64_t(h.mx_frame) * (h.page_size + kWalFrameHeaderSize) + kWalHeaderSize;
    uint64_t held = wal_bytes + s->spill_len.load() - std::min(s->spill_len.load(), s->spill_shipped.load());
    if (held > cfg_.max_wal_bytes) {
        if (s->needs_snapshot.fetch_add(1) == 0)
            log_warn("unshipped WAL and spill passed max_wal_size (" + std::to_string(held) +
                     " bytes); allowing the WAL reset, a new snapshot will be taken");
        s->holding_since_ms = 0;
        return true;
    }
    // Copy the unshipped frames' pages into the spill file and let the reset go ahead.
    std::string err;
    if (open_spill(&err) >= 0) {
        std::lock_guard<std::mutex> lock(spill_mu_);
        side_.lock_wait(SideFile::kSpillLock);
        uint64_t pos = s->shipped.load(), sp = s->spilled.load();
        uint32_t first = 1;
        if (uint32_t(pos >> 32) == h.salt2) first = std::max(first, uint32_t(pos) + 1);
        if (uint32_t(sp >> 32) == h.salt2) first = std::max(first, uint32_t(sp) + 1);
        bool spilled = false;
        try {
            spilled = spill_append(spill_fd_, wal, region, s, h, first, cfg_.max_wal_bytes, &spill_buf_, &err);
        } catch (const std::bad_alloc&) {
            err = "out of memory building a spill record";  // the reset is held instead, as for a full disk
        }
        if (spill_buf_.size() > (4u << 20)) std::string().swap(spill_buf_);  // kept for the usual few pages, not for an outage's
        if (spilled) {
            uint64_t fp[4] = {};
            db_fingerprint(cfg_.db_path, fp);
            save_fingerprint(s->spill_db, fp);
        }
        side_.unlock(SideFile::kSpillLock);
        if (spilled) {
            s->holding_since_ms = 0;
            notify();  // a paced shipper ships the record at its interval; an idle one now
            return true;
        }
    }
    uint64_t expected = 0;
    if (s->holding_since_ms.compare_exchange_strong(expected, uint64_t(now_ms())))
        log_warn("holding a WAL reset for unshipped frames: " + err);
    wake();
    return false;
}

bool Shipper::allow_checkpoint(const ShmHeader& h) {
    SideState* s = side_.state();
    if (h.mx_frame == 0 || s->needs_snapshot.load()) return true;
    if (covers(s->shipped.load(), h)) {
        s->holding_since_ms = 0;  // caught up: the reset after this checkpoint will go ahead
        return true;
    }
    uint64_t wal_bytes = uint64_t(h.mx_frame) * (h.page_size + kWalFrameHeaderSize) + kWalHeaderSize;
    if (wal_bytes > cfg_.max_wal_bytes) return true;
    // Until a shipper has a position in this WAL (or follows it through the spill), the database
    // file must stay as it was, to prove that the replica continues (DESIGN.md).
    auto established = [&] { return uint32_t(s->shipped.load() >> 32) == h.salt2 || s->spill_shipped.load() < s->spill_len.load(); };
    // While a reset is held (the spill is full), a checkpoint after every commit would copy one
    // frame and sync twice: let checkpoints through only in batches.
    if (s->holding_since_ms.load() && h.mx_frame - std::min(h.mx_frame, h.n_backfill) < 1000) return false;
    if (established()) return true;
    // A paced shipper takes its position in a new WAL only at its next pass (up to sync_interval
    // away), and SQLite does not retry a refused checkpoint lock: an explicit wal_checkpoint would
    // answer SQLITE_BUSY at once. So wake the shipper (of whichever process) and wait for the
    // position, which takes a pass of memory reads. Once per WAL: refused, the checkpoint is tried
    // again after a later commit, and every commit must not pay a wait while the shipper cannot
    // take a position (no generation yet, the store down at the start).
    if (ckpt_waited_salt2_.exchange(h.salt2) == h.salt2) return false;
    wake();
    return wait_shipped(established, Clock::now() + std::chrono::milliseconds(kCheckpointWaitMs), false);
}

int Shipper::flush(int timeout_ms, std::string* error) {
    if (*error = foreign_replica(); !error->empty()) return SQLITE_ERROR;
    std::unique_lock<std::mutex> lock(mu_);
    uint64_t ticket = ++flush_requested_;
    lock.unlock();
    wake();
    lock.lock();
    bool done = done_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return flush_done_ >= ticket || stop_; });
    if (done && flush_done_ >= ticket) return SQLITE_OK;
    const std::string last_error = last_error_note_locked();
    lock.unlock();
    *error = "walship: flush timed out after " + std::to_string(timeout_ms) + " ms: " + waiting_for() + last_error;
    log_warn(*error);
    return SQLITE_BUSY;
}

std::string Shipper::foreign_replica() {
    SideState* side = side_.state();
    const uint64_t theirs = side->replica_hash.load();
    if (!theirs || !replica_hash_ || theirs == replica_hash_ || is_shipper_ || !side_.held_elsewhere(SideFile::kShipLock)) return "";
    char text[sizeof(SideState::replica)];
    memcpy(text, side->replica, sizeof text);
    text[sizeof text - 1] = 0;
    return "walship: " + cfg_.db_path + " is replicated to " + text + " by process " + std::to_string(side->shipper_pid.load()) + ", not to " +
           replica_ + " as this connection asks (every process must name the same replica)";
}

// For a flush that timed out: what is not in the bucket yet, and what the shipping side is at
// (from the side file, which every process shares).
std::string Shipper::waiting_for() {
    SideState* side = side_.state();
    Pending p = count_pending(shm0_.load());
    // Without a generation of its own, the shipper either has not found the replica's position
    // yet (the side file names a generation: the store was not reached since it started) or has
    // not uploaded a first snapshot.
    std::string s = !is_shipper_ || have_generation_ ? ""
                    : side->generation.load() ? "this process has not found the replica's position yet (the store has not answered, or the last error says why); "
                                              : "the database is not in the bucket yet (its first snapshot is not uploaded); ";
    s += std::to_string(p.txns) + " transactions (" + std::to_string(p.bytes) + " bytes) not in the bucket yet";
    const uint64_t pos = side->shipped.load(), pid = side->shipper_pid.load();
    ShmHeader h;
    if (shm0_.load() && read_shm_header(shm0_.load(), &h))
        s += "; WAL " + hex32(h.salt2) + " at frame " + std::to_string(h.mx_frame) + ", shipped through " + hex32(uint32_t(pos >> 32)) + " frame " +
             std::to_string(uint32_t(pos));
    if (side->spill_len.load() > side->spill_shipped.load())
        s += "; spill file: " + std::to_string(side->spill_len.load() - side->spill_shipped.load()) + " bytes to ship";
    if (side->needs_snapshot.load()) s += "; a new generation is due";
    if (side->snapshot_asked.load() > side->snapshot_done.load()) s += "; a snapshot is asked for";
    if (side->holding_since_ms.load()) s += "; a WAL reset is held";
    if (!pid) s += "; no process ships";
    else if (pid != uint64_t(getpid())) s += "; process " + std::to_string(pid) + " ships";
    return s + store_wait_note();
}

// What the store is doing to this process's requests, for messages about waits that ran out:
// "" unless a request has moved no byte for a second or more, or is being retried after an error
// (neither is an error yet: that comes after the request's timeouts and retries, minutes later).
std::string Shipper::store_wait_note() const {
    const s3::StoreWait w = store_wait();
    std::string s;
    if (w.stalled_ms >= 1000)
        s += "; a request to " + store_->describe() + " has had no answer (no byte moved) for " + std::to_string(w.stalled_ms) + " ms";
    if (!w.retrying.empty()) s += "; retrying after: " + w.retrying;
    return s;
}

void Shipper::set_error(const std::string& e) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stats_.last_error != e) log_error(e);
    set_last_error_locked(e);
    stats_.errors++;
}

// The one place this process's last error changes: the shipping process publishes each change.
// Called with mu_ held.
void Shipper::set_last_error_locked(const std::string& e) {
    if (stats_.last_error == e) return;
    stats_.last_error = e;
    publish_error(e);
}

// The shipping process's last error into the side file (SideState::shipper_error), for the
// other processes. Called with mu_ held, whenever this process's last error changes.
void Shipper::publish_error(const std::string& e) {
    SideState* side = side_.state();
    if (is_shipper_ && side_.commit_slots()) s3::write_shared_text(side->error_seq, side->shipper_error, sizeof side->shipper_error, e);
}

// When the oldest transaction not yet shipped was committed (as the shipper saw it; 0: none), for
// lag_ms. Called with mu_ held; the shipping process publishes it for the others.
void Shipper::set_unshipped_since_locked(int64_t ms) {
    if (stats_.oldest_unshipped_ms == ms) return;
    stats_.oldest_unshipped_ms = ms;
    publish_unshipped_since(ms);
}

void Shipper::publish_unshipped_since(int64_t ms) {
    if (is_shipper_ && side_.commit_slots()) side_.state()->shipper_unshipped_since_ms = ms;
}

// When the oldest transaction not yet in the bucket was committed, from the commit slots (0: not
// known, such as a commit walship did not see). Walking the ring from its oldest slot: the first
// slot after the last one the shipped position covers or, with none in the shipped WAL covered,
// the first in that WAL. If the ring went round since, its oldest slot: a lower bound of the lag.
int64_t Shipper::oldest_unshipped_commit_ms() const {
    if (!side_.commit_slots()) return 0;
    const SideState* s = side_.state();
    const uint64_t shipped = s->shipped.load();
    const uint32_t salt2 = uint32_t(shipped >> 32), frame = uint32_t(shipped);
    const uint32_t next = s->commit_next.load();
    int64_t first_after = 0;
    bool covered = false;
    for (uint32_t i = next - std::min<uint32_t>(next, SideState::kCommitSlots); i != next; i++) {
        const SideState::CommitSlot& slot = s->commit_slots[i % SideState::kCommitSlots];
        const uint64_t k = slot.key.load();
        const int64_t ms = int64_t(slot.ms.load());
        if (!k || slot.key.load() != k) continue;  // (being rewritten)
        const bool same_wal = uint32_t(k >> 32) == salt2;
        if (same_wal && uint32_t(k) <= frame) {
            covered = true;
            first_after = 0;
        } else if ((covered || same_wal) && !first_after) {
            first_after = ms;
        }
    }
    return first_after;
}

// What the store keeps waiting: this process's requests or, when none of its own waits and
// another process ships, that process's (from the side file).
s3::StoreWait Shipper::store_wait() const {
    s3::StoreWait w = store_->waiting();
    if (w.stalled_ms || !w.retrying.empty() || is_shipper_ || !side_.commit_slots()) return w;
    return side_.state()->shipper_wait.read();
}

// This process's last error or, when it has none and another process ships, that process's
// (from the side file). Called with mu_ held.
std::string Shipper::last_error_locked() const {
    if (!stats_.last_error.empty() || is_shipper_ || !side_.commit_slots()) return stats_.last_error;
    const SideState* side = side_.state();
    return s3::read_shared_text(side->error_seq, side->shipper_error, sizeof side->shipper_error);
}

// "; last error: ..." (see last_error_locked) for messages, or "". Called with mu_ held.
std::string Shipper::last_error_note_locked() const {
    const std::string last = last_error_locked();
    return last.empty() ? "" : "; last error: " + last;
}

void Shipper::publish_position() {
    SideState* side = side_.state();
    side->state_checksum_ok = 0;  // a crash in between leaves no false proof
    side->generation = generation_;
    side->txid = txid_;
    side->state_checksum = checksum_.value();
    side->state_checksum_ok = have_checksum_ ? 1 : 0;
    side->last_ship_ms = uint64_t(now_ms());
    side->shipped = pack_position(salt2_, frame_);
    side->shipped_seq.fetch_add(1);
    if (side->shipped_waiters.load()) futex_wake(&side->shipped_seq);
}

// What is committed locally and not yet in the bucket (by whichever process ships), counted now
// from the wal-index, the WAL's frame headers after the shipped position and the spill file.
Shipper::Pending Shipper::count_pending(const volatile void* shm0) {
    Pending p;
    SideState* side = side_.state();
    ShmHeader h;
    if (shm0 && read_shm_header(shm0, &h) && h.mx_frame) {
        uint64_t pos = side->shipped.load();
        uint32_t first = uint32_t(pos >> 32) == h.salt2 ? std::min(uint32_t(pos), h.mx_frame) : 0;
        p.frames = h.mx_frame - first;
        p.bytes = p.frames * (uint64_t(h.page_size) + kWalFrameHeaderSize);
        int fd = p.frames ? ::open((cfg_.db_path + "-wal").c_str(), O_RDONLY | O_CLOEXEC) : -1;
        const size_t fsz = kWalFrameHeaderSize + h.page_size;
        std::string buf;
        for (uint32_t f = first; fd >= 0 && f < h.mx_frame;) {
            uint32_t n = std::min<uint32_t>(h.mx_frame - f, uint32_t(std::max<size_t>(1, (1u << 20) / fsz)));
            buf.resize(size_t(n) * fsz);
            if (!pread_all(fd, &buf[0], buf.size(), off_t(kWalHeaderSize) + off_t(f) * off_t(fsz))) break;  // reset meanwhile
            for (uint32_t i = 0; i < n; i++) {
                WalFrameHeader fh = parse_frame_header(reinterpret_cast<const unsigned char*>(buf.data()) + size_t(i) * fsz);
                if (fh.salt1 == h.salt1 && fh.salt2 == h.salt2 && fh.commit_size) p.txns++;
            }
            f += n;
        }
        if (fd >= 0) ::close(fd);
    }
    uint64_t off = side->spill_shipped.load(), len = side->spill_len.load();
    int fd = off < len ? ::open(spill_path(cfg_.db_path).c_str(), O_RDONLY | O_CLOEXEC) : -1;
    SpillRecord r;
    while (fd >= 0 && off < len && read_spill_record(fd, off, len, &r)) {  // each record ships as one transaction
        p.txns++;
        p.frames += r.count;
        p.bytes += r.size;
        off = r.offset + r.size;
    }
    if (fd >= 0) ::close(fd);
    return p;
}

std::string Shipper::status_json(const volatile void* shm0) {
    Pending pending = count_pending(shm0);
    std::lock_guard<std::mutex> lock(mu_);
    int64_t now = now_ms();
    // How long the oldest transaction not yet in the bucket has waited, the same in every process:
    // from its commit time, or (a commit walship did not see) since the shipping process saw it.
    int64_t since = 0;
    if (pending.txns) {
        const int64_t seen = is_shipper_ || !side_.commit_slots() ? stats_.oldest_unshipped_ms : side_.state()->shipper_unshipped_since_ms.load();
        const int64_t committed = oldest_unshipped_commit_ms();
        since = seen && committed ? std::min(seen, committed) : std::max(seen, committed);
    }
    int64_t lag = since ? std::max<int64_t>(0, now - since) : 0;
    std::string s = "{";
    s += "\"replicating\":true";
    s += ",\"database\":\"" + json_escape(cfg_.db_path) + "\"";
    s += ",\"replica\":\"" + json_escape(store_->describe()) + "\"";
    s += ",\"shipper\":" + std::string(is_shipper_ ? "true" : "false");
    s += ",\"shipper_pid\":" + std::to_string(side_.state()->shipper_pid.load());
    // The shipping process may be another one: the side file says what it last shipped.
    uint64_t gen = is_shipper_ ? generation_ : side_.state()->generation.load();
    uint64_t txid = is_shipper_ ? txid_ : side_.state()->txid.load();
    s += ",\"generation\":\"" + (gen ? generation_name(gen) : std::string()) + "\"";
    s += ",\"txid\":" + std::to_string(txid);
    s += ",\"pending_frames\":" + std::to_string(pending.frames);
    s += ",\"pending_bytes\":" + std::to_string(pending.bytes);
    s += ",\"pending_txns\":" + std::to_string(pending.txns);
    s += ",\"lag_ms\":" + std::to_string(lag);
    s += ",\"uploads\":" + std::to_string(stats_.uploads);
    s += ",\"upload_bytes\":" + std::to_string(stats_.upload_bytes);
    s += ",\"txns_shipped\":" + std::to_string(stats_.txns_shipped);
    s += ",\"snapshots\":" + std::to_string(stats_.snapshots);
    s += ",\"compactions\":" + std::to_string(stats_.compactions);
    s += ",\"last_snapshot_txid\":" + std::to_string(last_snapshot_txid_);
    s += ",\"errors\":" + std::to_string(stats_.errors);
    s += ",\"unconfirmed_commits\":" + std::to_string(stats_.unconfirmed_commits);
    s += ",\"needs_snapshot\":" + std::string(side_.state()->needs_snapshot.load() ? "true" : "false");
    s += ",\"spill_bytes\":" + std::to_string(side_.state()->spill_len.load() - std::min(side_.state()->spill_len.load(), side_.state()->spill_shipped.load()));
    s += ",\"wal_reset_held_ms\":" + std::to_string(side_.state()->holding_since_ms.load() ? now - int64_t(side_.state()->holding_since_ms.load()) : 0);
    s += ",\"wal_writebacks\":" + std::to_string(writeback_.done());
    s += ",\"sqlite_version\":\"" + std::string(sqlite3_libversion()) + "\"";
    int v = sqlite3_libversion_number();
    bool reset_bug = v < 3044006 || (v >= 3045000 && v < 3050007) || (v >= 3051000 && v < 3051003);
    s += ",\"wal_reset_bug\":" + std::string(reset_bug ? "true" : "false");
    s += ",\"last_error\":\"" + json_escape(last_error_locked()) + "\"";
    // Not errors (yet): a request in flight that the store has not answered, or one being retried.
    const s3::StoreWait w = store_wait();
    s += ",\"store_stalled_ms\":" + std::to_string(w.stalled_ms);
    s += ",\"store_retrying\":\"" + json_escape(w.retrying) + "\"";
    s += "}";
    return s;
}

// The first transaction of a new database runs in rollback-journal mode (SQLite takes WAL mode from
// page 1, which did not exist yet), so there is no WAL until the next transaction, and the shipper,
// which reads through the WAL index, could not take the first snapshot: a flush answered "ok" with
// nothing in the bucket. A private connection switches the file to WAL mode now (at once if no
// transaction is open) and keeps the WAL when it closes.
bool Shipper::switch_to_wal() {
    OwnConnection own;
    sqlite3* db = nullptr;
    bool ok = open_presenting_wal(cfg_.db_path, &db) == SQLITE_OK;
    if (ok) {
        int persist = 1;
        sqlite3_file_control(db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
        // Nor does it checkpoint when it closes. If the application's last connection closed
        // meanwhile (its own checkpoint found this one still open and skipped), this connection
        // would be the last one, and its checkpoint, which does not wait for the shipper as the
        // application's does (db_lock), would copy unshipped commits into the database before the
        // shipper had proven that the replica continues: a new generation with a full snapshot.
        sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
        ok = sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr) == SQLITE_OK;
    }
    // Attach to the wal-index while the private connection keeps it initialised (the first user
    // of a -shm file in a process clears it).
    if (ok) ok = open_handles();
    if (!ok) log_debug("switching " + cfg_.db_path + " to WAL mode: " + (db ? sqlite3_errmsg(db) : "cannot open"));
    sqlite3_close(db);
    return ok;
}

bool Shipper::open_handles() {
    if (!db_) {
        std::string wal = cfg_.db_path + "-wal";
        struct stat st {};
        if (::stat(wal.c_str(), &st) != 0) return false;  // not in WAL mode (yet)
        sqlite3_filename name = sqlite3_create_filename(cfg_.db_path.c_str(), (cfg_.db_path + "-journal").c_str(), wal.c_str(), 0, nullptr);
        db_ = static_cast<sqlite3_file*>(sqlite3_malloc(base_->szOsFile));
        memset(db_, 0, size_t(base_->szOsFile));
        int out = 0;
        int rc = base_->xOpen(base_, name, db_, SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_READWRITE, &out);
        if (rc != SQLITE_OK || !db_->pMethods || db_->pMethods->iVersion < 2) {
            if (db_->pMethods) db_->pMethods->xClose(db_);
            sqlite3_free(db_);
            sqlite3_free_filename(name);
            db_ = nullptr;
            return false;
        }
        name_ = name;
        void volatile* p = nullptr;
        rc = db_->pMethods->xShmMap(db_, 0, 32768, 0, &p);
        if (rc != SQLITE_OK || !p) {
            close_handles();
            return false;
        }
        shm0_ = p;
    }
    std::string wal = cfg_.db_path + "-wal";
    struct stat st {};
    if (::stat(wal.c_str(), &st) != 0) return false;
    if (wal_fd_ < 0 || st.st_ino != wal_ino_) {
        if (wal_fd_ >= 0) ::close(wal_fd_);
        wal_fd_ = ::open(wal.c_str(), O_RDONLY | O_CLOEXEC);
        if (wal_fd_ < 0) return false;
        wal_ino_ = st.st_ino;
    }
    return true;
}

void Shipper::close_handles() {
    if (wal_fd_ >= 0) ::close(wal_fd_);
    wal_fd_ = -1;
    if (db_) {
        // Also after a map that answered no region yet: the handle holds the shm node either way.
        shm0_ = nullptr;
        db_->pMethods->xShmUnmap(db_, 0);
        db_->pMethods->xClose(db_);
        sqlite3_free(db_);
        db_ = nullptr;
    }
    if (name_) sqlite3_free_filename(name_);
    name_ = nullptr;
}

void Shipper::record_commit(uint32_t salt2, uint32_t frame) {
    // Under the WAL write lock: one writer at a time, in every process (see SideState).
    if (!side_.commit_slots()) return;
    SideState* s = side_.state();
    const uint64_t key = pack_position(salt2, frame), ms = uint64_t(now_ms());
    const uint32_t next = s->commit_next.load(std::memory_order_relaxed);
    SideState::CommitSlot& last = s->commit_slots[(next - 1) % SideState::kCommitSlots];
    const uint64_t last_key = last.key.load(std::memory_order_relaxed);
    if (next && last.ms.load(std::memory_order_relaxed) == ms && last_key && uint32_t(last_key >> 32) == salt2 && last_key < key) {
        last.key.store(key);  // the same millisecond: its later commit (the time stays)
    } else {
        SideState::CommitSlot& slot = s->commit_slots[next % SideState::kCommitSlots];
        slot.key.store(0);
        slot.ms.store(ms);
        slot.key.store(key);
        s->commit_next.store(next + 1);
    }
    s->commit_seq.store(s->commit_seq.load(std::memory_order_relaxed) + 1);
}

void Shipper::harvest_commit_times() {
    SideState* s = side_.state();
    const uint32_t seq = s->commit_seq.load();
    if (seq == harvested_seq_) return;
    harvested_seq_ = seq;
    if (harvested_.size() > 65536) harvested_.clear();  // (not shipped for long: a bound, not a loss of data)
    for (const SideState::CommitSlot& slot : s->commit_slots) {
        const uint64_t k = slot.key.load();
        if (!k) continue;
        const uint64_t ms = slot.ms.load();
        if (slot.key.load() == k) harvested_.emplace(k, ms);  // (else being rewritten)
    }
}

uint64_t Shipper::commit_time(uint32_t salt2, uint32_t frame) {
    // The first slot at or after the commit in its WAL: its own millisecond's (the slot names that
    // millisecond's last commit). None (a commit that walship did not see, or the ring went round
    // since: a shipper that did not copy it for a second) gives a later commit's time, an upper
    // bound, or, with none in this WAL, now.
    const uint64_t key = pack_position(salt2, frame);
    auto first_at_or_after = [&] {
        auto it = harvested_.lower_bound(key);
        return it != harvested_.end() && uint32_t(it->first >> 32) == salt2 ? it->second : 0;
    };
    uint64_t ms = first_at_or_after();
    if (!ms) {
        harvest_commit_times();  // (committed since the last copy)
        ms = first_at_or_after();
    }
    return ms ? ms : uint64_t(now_ms());
}

uint64_t Shipper::stamp(uint64_t txid, uint32_t salt2, uint32_t frame) {
    // The same transaction keeps its time (and so its object name) across retries. Times never
    // go back within the replica (a clock stepped back), so a point in time is one place in it.
    auto it = ts_by_txid_.find(txid);
    if (it != ts_by_txid_.end()) return it->second;
    last_stamp_ = std::max(last_stamp_, commit_time(salt2, frame));
    ts_by_txid_.emplace(txid, last_stamp_);
    // Harvested times of this WAL up to this commit are used; those of other WALs are of the past
    // (the shipper reads WALs in order), unless a later one's are already here (a WAL reset).
    harvested_.erase(harvested_.lower_bound(pack_position(salt2, 0)), harvested_.upper_bound(pack_position(salt2, frame)));
    return last_stamp_;
}

bool Shipper::snapshot_holds_wal_too_long() {
    if (!snapshot_reading_.load() || !shm0_.load()) return false;
    const uint64_t mark = snapshot_mark_.load();
    ShmHeader h;
    if (!read_shm_header(shm0_, &h)) return false;
    // A mark at frame 0 of a WAL never written yet: SQLite draws new salts with the first frame
    // (the WAL grew without bound while such a snapshot hung: the salts never matched again).
    // Under a mark past frame 0 the WAL cannot reset, so other salts mean nothing held.
    const bool same_wal = h.salt2 == uint32_t(mark >> 32);
    if (!same_wal && uint32_t(mark) != 0) return false;
    const uint32_t from = same_wal ? uint32_t(mark) : 0;
    if (h.mx_frame <= from) return false;
    const uint64_t grown = uint64_t(h.mx_frame - from) * (h.page_size + kWalFrameHeaderSize);
    if (grown <= cfg_.max_wal_bytes) return false;
    if (!snapshot_interrupted_.exchange(true))
        log_warn("the WAL grew by " + std::to_string(grown) + " bytes (past max_wal_size) while a snapshot held it; abandoning the snapshot, it will be tried again");
    return true;
}

bool Shipper::read_header(ShmHeader* h) {
    for (int i = 0; i < 100; i++) {
        if (read_shm_header(shm0_, h)) return true;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return false;
}

void Shipper::run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
        bool urgent = flush_requested_ > flush_done_ || (is_shipper_ && snapshot_wanted());
        if (!is_shipper_ && urgent) {
            // Another process ships: wait for the side file to show our commits shipped.
            done_cv_.wait_for(lock, std::chrono::milliseconds(5));
        } else if (is_shipper_ && urgent && Clock::now() < std::max(urgent_retry_at(), resume_retry_at_)) {
            // A flush or a waiting commit does not wait for the error backoff, but after a failed
            // attempt it retries every 250 ms, not in a loop (a wrong bucket or key fails at once);
            // a resume that found the database busy is retried after 20 ms.
            cv_.wait_until(lock, std::max(urgent_retry_at(), resume_retry_at_), [&] { return stop_; });
            if (stop_) break;
        } else if (!notified_ && !urgent) {
            // The shipper polls the wal-index (memory, no requests) for commits that do not wake it
            // (a writer outside walship). While paced it sleeps until the next upload is due: a
            // flush, a waiting remote-durable commit or a held WAL reset wakes it (wake()).
            auto wait = std::chrono::milliseconds(is_shipper_ ? 25 : kShipLockRetryMs);
            auto now = Clock::now();
            bool paced = next_upload_ > now;
            if (paced && (is_shipper_ || next_upload_ - now < wait))
                wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_upload_ - now) + std::chrono::milliseconds(1);
            if (paced && is_shipper_ && commit_waiting(side_.state())) {
                // A waiting remote-durable commit retries 250 ms after a failed upload, not at the
                // error backoff: the pass that found it too early must not sleep past its timeout.
                auto retry = std::max(urgent_retry_at(), now + std::chrono::milliseconds(25));
                if (retry < next_upload_) wait = std::chrono::duration_cast<std::chrono::milliseconds>(retry - now) + std::chrono::milliseconds(1);
            }
            // Only a shipper waiting for commits wants them to wake it. A process that does not
            // ship tries the ship lock every 200 ms; waking it at every commit would cost each
            // of its commits a context switch and a lock attempt.
            idle_wait_ = is_shipper_ && !paced;
            if (is_shipper_) {
                // On the side file's futex, so that other processes' commits wake us too.
                SideState* side = side_.state();
                side->shipper_idle = paced ? 0 : 1;
                lock.unlock();
                // wake_seen_ was read before the last pass looked for work: a commit of another
                // process that asked during that pass (its upload) ends this wait at once.
                // While paced, the wait wakes every kHarvestMs to copy the commit slots' times
                // (commits keep coming, and the slots hold only the last 1,024 ms of them).
                if (!notified_) {
                    const auto until = Clock::now() + wait;
                    for (;;) {
                        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
                        if (left <= 0 || side->wake.load() != wake_seen_) break;
                        futex_wait(&side->wake, wake_seen_, int(paced ? std::min<int64_t>(left, kHarvestMs) : left));
                        if (!paced) break;
                        harvest_commit_times();
                    }
                }
                lock.lock();
                side->shipper_idle = 0;
            } else if (!notified_) {
                cv_.wait_for(lock, wait);
            }
            idle_wait_ = false;
            if (stop_) break;
            urgent = flush_requested_ > flush_done_ || (is_shipper_ && snapshot_wanted());
        }
        notified_ = false;
        uint64_t ticket = flush_requested_;
        lock.unlock();
        wake_seen_ = side_.state()->wake.load();

        if (!is_shipper_ && side_.try_lock(SideFile::kShipLock)) {
            is_shipper_ = true;
            side_.state()->shipper_pid = uint64_t(getpid());
            if (side_.state()->replica_hash.load() != replica_hash_ || strncmp(side_.state()->replica, replica_.c_str(), sizeof(SideState::replica)) != 0) {
                side_.state()->replica_hash = 0;
                memset(side_.state()->replica, 0, sizeof(SideState::replica));
                memcpy(side_.state()->replica, replica_.data(), replica_.size());
                side_.state()->replica_hash = replica_hash_;
            }
            // A request left by a process that died waiting would keep looking like a waiting commit.
            if (side_.state()->shipped_waiters.load() == 0) side_.state()->ship_through = 0;
            {  // what the others report of the shipping process is not the last shipper's any more
                std::lock_guard<std::mutex> guard(mu_);
                publish_error(stats_.last_error);
                publish_unshipped_since(stats_.oldest_unshipped_ms);
            }
            if (side_.commit_slots()) store_->share_waiting(&side_.state()->shipper_wait);
            log_info("replicating " + cfg_.db_path + " to " + store_->describe() + " (pid " + std::to_string(getpid()) + ")");
        }
        if (!is_shipper_) {
            // A process naming another replica may have taken the ship lock since this one opened.
            std::string foreign = foreign_replica();
            if (!foreign.empty() && foreign != foreign_reported_) set_error(foreign);
            foreign_reported_ = foreign;
        }
        // Caught up when everything committed before this pass began is in the bucket (by
        // whichever process ships). Without a WAL, everything committed is in the database file,
        // which is in the bucket once there is a generation (see switch_to_wal).
        bool caught_up = true, handles = open_handles();
        if (!handles && is_shipper_ && !have_generation_ && file_size(cfg_.db_path) > 0) {
            handles = Clock::now() >= next_wal_switch_ && switch_to_wal();
            if (!handles) {
                // Busy (a transaction is open) or impossible (a read-only file): retried after
                // 250 ms, doubling up to 10 s; a flush waits for the same retries, not in a loop.
                caught_up = false;
                if (Clock::now() >= next_wal_switch_) {
                    wal_switch_wait_ms_ = std::min(10000, wal_switch_wait_ms_ ? wal_switch_wait_ms_ * 2 : 250);
                    next_wal_switch_ = Clock::now() + std::chrono::milliseconds(wal_switch_wait_ms_);
                }
                resume_retry_at_ = next_wal_switch_;
            } else {
                wal_switch_wait_ms_ = 0;
            }
        }
        if (handles) {
            ShmHeader h;
            caught_up = false;
            if (read_header(&h)) {
                if (is_shipper_) {
                    ship_pass(urgent);
                    caught_up = !unshipped(&h);
                } else {
                    // Another process ships. The target is what was committed when this flush
                    // began: under steady writes the live end of the WAL is never reached.
                    if (ticket != target_ticket_) {
                        target_ticket_ = ticket;
                        target_ = h;
                        target_spill_ = side_.state()->spill_len.load();
                        side_.state()->flush_asked.fetch_add(1);  // not at the interval: now
                        wake();
                    }
                    caught_up = reached_target(h);
                }
            }
        }

        lock.lock();
        if (caught_up && ticket > flush_done_) {
            flush_done_ = ticket;
            done_cv_.notify_all();
        }
    }
    lock.unlock();
    delete_merged(true);  // leave no leftovers (unless uploads are failing)
    lock.lock();
    exited_ = true;
    done_cv_.notify_all();
}

// A remote-durable commit waiting for an upload does not wait for the interval, and after a
// failed upload it retries sooner than the error backoff (which grows to 30 s): at most every
// 250 ms, so that a store that is back confirms the commit before its flush_timeout.
Clock::time_point Shipper::urgent_retry_at() const {
    if (backoff_ms_ <= kUrgentRetryMs) return Clock::time_point{};
    return next_upload_ - std::chrono::milliseconds(backoff_ms_ - kUrgentRetryMs);
}

bool Shipper::commit_may_retry() const { return Clock::now() >= urgent_retry_at(); }

// Group commit across processes. Remote-durable committers that the last upload answered commit
// again a moment later (a few writers in a loop, or gunicorn workers under load), a few
// microseconds apart. An upload started at the first of them would carry it alone, and the others
// would wait for it and then for their own: two round trips. So while fewer commits have asked
// than the last upload carried, the shipper waits for the rest, at most half a PUT's round trip
// plus 1 ms (and 5 ms in all) after that upload answered: the writers released together meet at
// the WAL write lock, and SQLite's busy handler sleeps 1 ms at the first BUSY (a writer whose
// snapshot another commit overtook gets BUSY_SNAPSHOT even after waiting for the lock). A lone
// writer (a batch of one), commits that come later than that, and remote-strict commits (each
// holds the write lock while it waits, so they come one at a time; they are not counted) never
// wait here.
void Shipper::gather_commits() {
    SideState* side = side_.state();
    if (last_batch_ < 2 || !commit_waiting(side)) return;
    const auto window = std::chrono::microseconds(std::min<int64_t>(put_us_ / 2 + 1000, 5000));
    const auto until = confirmed_at_ + window;
    for (;;) {
        const uint32_t seen = side->wake.load();
        if (side->remote_asks.load() - asks_at_upload_ >= last_batch_) return;
        const auto left = std::chrono::duration_cast<std::chrono::microseconds>(until - Clock::now()).count();
        if (left <= 0) return;
        futex_wait_us(&side->wake, seen, left);
    }
}

void Shipper::ship_pass(bool urgent) {
    gather_commits();
    ShmHeader h;
    if (!read_header(&h)) return;
    harvest_commit_times();
    SideState* side = side_.state();
    const bool want_snapshot = snapshot_wanted();
    if (want_snapshot) urgent = true;  // asked for: not at the interval
    const uint64_t flush_asked = side->flush_asked.load();
    if (flush_asked != flush_asked_seen_) urgent = true, flush_asked_seen_ = flush_asked;  // another process flushes
    // sync_interval and error backoff; the loop wakes us when it is time. A held WAL reset does not
    // wait for the interval, nor does a remote-durable commit whose frames are in the spill file.
    const bool commit_asks = commit_waiting(side);
    if (commit_asks) last_remote_commit_ms_ = now_ms();
    if (side->holding_since_ms.load() || (commit_asks && side->spill_len.load() > spill_off_ && commit_may_retry())) urgent = true;
    const bool paced = Clock::now() < next_upload_ && !urgent;
    if (broken_salt2_ && broken_salt2_ == h.salt2 && h.mx_frame) {
        if (Clock::now() >= next_upload_) truncate_broken_wal();  // (a flush does not hurry it)
        return;
    }
    broken_salt2_ = 0;
    // Nothing ships until a generation (or the snapshot it needs) is up: lag_ms counts from now,
    // as it does below for frames past the shipped position (it read 0 through a whole outage
    // that began before anything shipped, or after a WAL reset past max_wal_size).
    if (h.mx_frame && (!have_generation_ || side->needs_snapshot.load())) {
        std::lock_guard<std::mutex> lock(mu_);
        if (!stats_.oldest_unshipped_ms) set_unshipped_since_locked(now_ms());
    }
    if (paced && !have_generation_) return;
    if (!have_generation_) {
        Resume r = try_resume();
        if (r == Resume::No) start_generation(not_continued_.empty() ? "no generation to continue" : not_continued_);
        if (r == Resume::Busy) next_upload_ = resume_retry_at_ = Clock::now() + std::chrono::milliseconds(20);
        if (r == Resume::Error) {
            backoff_ms_ = backoff_ms_ ? std::min(backoff_ms_ * 2, 30000) : 500;
            next_upload_ = Clock::now() + std::chrono::milliseconds(backoff_ms_);
        }
        return;
    }
    if (side->needs_snapshot.load()) {
        if (!paced) start_generation("the WAL was reset before it was shipped, a remote-durable commit failed, or the replica lost objects");
        return;
    }
    // Spilled records ship at the interval too, before anything of the live WAL: a write burst
    // costs one upload per interval, not one per WAL cycle. At an ordinary paced upload their last
    // transactions go up in one object with the live WAL's (Deferred): not two uploads.
    const bool defer = !urgent && h.mx_frame > 0 && side->spec_pos.load() == 0 && side->ship_through.load() == 0 &&
                       now_ms() - last_snapshot_ms_ < cfg_.snapshot_interval_ms;
    if (side->spill_len.load() > spill_off_ && (paced || !ship_spill(defer))) return;
    struct ResolveDeferred {  // whatever way this pass ends, they do not wait for the next one
        Shipper* s;
        ~ResolveDeferred() { s->resolve_deferred(); }
    } resolve_deferred_at_end{this};
    if (h.salt1 == salt1_ && h.salt2 == salt2_) last_seen_mx_ = std::max(last_seen_mx_, h.mx_frame);
    // A remote-durable commit may ask for frames that the wal-index does not show yet; for the
    // first commit into a new WAL file even the salts are only in the file's header.
    uint64_t through = side->ship_through.load();
    const ShmHeader visible = h;
    if (!check_speculative(visible, through)) return;
    uint32_t through_salt2 = uint32_t(through >> 32), through_frame = uint32_t(through);
    if (through_salt2 == h.salt2 && through_frame > h.mx_frame) {
        h.mx_frame = through_frame;
    } else if (through_salt2 != h.salt2 && h.mx_frame == 0 && through_frame > 0) {
        unsigned char hdr[kWalHeaderSize];
        WalHeader wh;
        if (pread_all(wal_fd_, hdr, sizeof hdr, 0) && parse_wal_header(hdr, &wh) && wh.salt2 == through_salt2) {
            h.salt1 = wh.salt1;
            h.salt2 = wh.salt2;
            h.mx_frame = through_frame;
        }
    }
    if (h.salt1 != salt1_ || h.salt2 != salt2_) {
        // A new WAL. Continue only if nothing of the old one is missing: walship allowed its reset
        // with everything shipped or spilled, or the old one never showed a committed frame.
        if (wal_ended_cleanly(salt1_, salt2_, frame_, ended_frame_, last_seen_mx_, &h, 0)) {
            enter_wal(h.salt1, h.salt2);
        } else {
            if (resolve_deferred()) start_generation("the WAL was reset by a writer outside walship");
            return;
        }
    }
    if (h.mx_frame < frame_) {
        if (resolve_deferred()) start_generation("the WAL is shorter than what was shipped");
        return;
    }
    // A remote-durable commit waiting for its frames does not wait for the interval.
    bool waiting = through_salt2 == h.salt2 && through_frame > frame_ && commit_may_retry();
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (h.mx_frame == frame_) set_unshipped_since_locked(0);
        else if (!stats_.oldest_unshipped_ms) set_unshipped_since_locked(now_ms());
    }
    // A requested snapshot, or one snapshot_interval after the last: at the next upload, after the
    // frames up to now, whether or not writes go on (a snapshot waiting for a quiet moment never
    // came under steady writes, and retention then never deleted anything).
    const bool interval_due = txid_ > last_snapshot_txid_ && now_ms() - last_snapshot_ms_ >= cfg_.snapshot_interval_ms;
    if ((want_snapshot || interval_due) && !paced) {
        if (!resolve_deferred()) return;
        const char* why = want_snapshot ? "requested" : tail_snapshot_ ? "segments follow the newest snapshot" : "snapshot_interval";
        if ((h.mx_frame == frame_ || ship_ahead(visible, h)) && !snapshot_in_generation(why))
            resume_retry_at_ = Clock::now() + std::chrono::milliseconds(20);  // (reader slots busy, say): not in a loop
        maintain();
        return;
    }
    if (h.mx_frame > frame_ && (!paced || waiting)) {
        if (waiting) {
            const uint64_t asks = side->remote_asks.load();
            last_batch_ = asks - asks_at_upload_;
            asks_at_upload_ = asks;
        }
        ship_ahead(visible, h);
        if (waiting) confirmed_at_ = Clock::now();
    }
    if (!resolve_deferred()) return;
    if (!have_checksum_ && frame_ == h.mx_frame && h.salt2 == salt2_) recover_checksum();
    maintain();
}

// After a resume that could not carry the database checksum along (through the spill file, or
// proof 3), compute it from the local state once caught up: later objects carry it again, and the
// side file keeps it for the next start.
void Shipper::recover_checksum() {
    if (now_ms() < next_checksum_try_ms_) return;
    next_checksum_try_ms_ = now_ms() + 10000;  // it reads the whole database: not on every pass
    DbChecksum sum;
    StateInfo info;
    auto hash = [&](uint32_t pg, const std::string& page) {
        sum.set_page(pg, page.data(), page.size());
        return true;
    };
    if (!read_state(frame_, &info, hash) || info.frame != frame_ || info.shm.salt2 != salt2_) return;
    checksum_ = sum;
    have_checksum_ = true;
    publish_position();
    log_debug("database checksum recomputed at txid " + std::to_string(txid_));
}

// SQLite (seen with 3.40.1) can commit frames whose headers it never completes: a ROLLBACK TO
// after the cache spilled into the WAL leaves the next transaction's frames with zero salts and
// checksums. The wal-index counts them, so SQLite reads and checkpoints them, but its recovery
// after a crash stops before them, and no shipper can verify them or the frames after them. The
// database file, once checkpointed through the wal-index, holds them: the shipper checkpoints and
// truncates the WAL itself (truncate_broken_wal) and starts a new generation from the database.
void Shipper::wal_chain_broken(uint32_t salt2, uint32_t frame) {
    if (broken_salt2_ != salt2) {
        broken_salt2_ = salt2;
        side_.state()->needs_snapshot.fetch_add(1);  // WAL resets go ahead; a new generation follows
        set_error("the WAL checksum chain is broken at frame " + std::to_string(frame) +
                  " although SQLite counts the frame as committed (SQLite 3.40.1 leaves such frames after a ROLLBACK TO "
                  "that followed a cache spill); checkpointing the WAL into the database and starting a new generation");
    }
    backoff_ms_ = backoff_ms_ ? std::min(backoff_ms_ * 2, 30000) : 100;
    next_upload_ = resume_retry_at_ = Clock::now() + std::chrono::milliseconds(backoff_ms_);  // also for a waiting flush
}

void Shipper::truncate_broken_wal() {
    OwnConnection own;
    sqlite3* db = nullptr;
    bool ok = sqlite3_open_v2(cfg_.db_path.c_str(), &db, SQLITE_OPEN_READWRITE, base_->zName) == SQLITE_OK;
    int busy = 1;
    if (ok) {
        sqlite3_busy_timeout(db, 200);
        sqlite3_stmt* st = nullptr;
        ok = sqlite3_prepare_v2(db, "PRAGMA wal_checkpoint(TRUNCATE)", -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW;
        if (ok) busy = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    if (ok && busy == 0) {
        log_info("checkpointed and truncated the WAL of " + cfg_.db_path + " (its checksum chain was broken)");
        broken_salt2_ = 0;
        backoff_ms_ = 0;
        next_upload_ = Clock::now();
        return;
    }
    backoff_ms_ = backoff_ms_ ? std::min(backoff_ms_ * 2, 30000) : 100;  // readers or a writer were busy: later
    next_upload_ = resume_retry_at_ = Clock::now() + std::chrono::milliseconds(backoff_ms_);
}

// True when the WAL's checksum chain is intact through the wal-index's last frame (so that
// SQLite's recovery at the next open would rebuild exactly what the wal-index shows). Called at
// close, from the application's thread: its own descriptor, not the shipper's.
bool Shipper::wal_chain_intact(const ShmHeader& h) {
    if (h.mx_frame == 0) return true;
    int fd = ::open((cfg_.db_path + "-wal").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    StateInfo info;
    bool ok = walk_wal_chain(fd, h.mx_frame, &info) && info.shm.salt1 == h.salt1 && info.shm.salt2 == h.salt2;
    ::close(fd);
    return ok;
}

// Scheduled work of the shipping process: deleting what compaction merged, and retention runs.
void Shipper::maintain() {
    delete_merged(false);
    auto now = Clock::now();
    if (next_retention_ == Clock::time_point{}) next_retention_ = now + std::chrono::milliseconds(cfg_.retention_check_ms);
    if (now >= next_retention_) {
        next_retention_ = now + std::chrono::milliseconds(cfg_.retention_check_ms);
        run_retention();
    }
}

bool Shipper::upload(const std::string& key, const std::string& object) {
    s3::PutOptions opt;
    opt.if_none_match = true;
    const auto t0 = Clock::now();
    s3::Status st = store_->put(key, object, opt);
    if (st.ok()) {
        const int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
        put_us_ = put_us_ ? put_us_ + (us - put_us_) / 8 : us;
    }
    if (st.kind == s3::ErrorKind::PreconditionFailed) {
        // An earlier attempt may have landed although its answer was lost: same bytes are fine.
        auto existing = store_->get(key);
        if (existing.ok() && existing.value() == object) st = {};
        else st = s3::make_error(s3::ErrorKind::PreconditionFailed, "put_object: " + key + " already exists with other content");
    }
    if (!st.ok()) {
        upload_failed(key, st);
        return false;
    }
    uploaded(object.size());
    return true;
}

void Shipper::upload_failed(const std::string& key, const s3::Status& st, const char* what) {
    set_error(std::string(what) + " " + key + " failed: " + st.str());
    check_snapshot_ = true;  // the store is down or failing: will it still hold our objects?
    backoff_ms_ = backoff_ms_ ? std::min(backoff_ms_ * 2, 30000) : 500;
    next_upload_ = Clock::now() + std::chrono::milliseconds(backoff_ms_);
    if (st.kind == s3::ErrorKind::PreconditionFailed) {
        have_generation_ = false;  // someone else wrote this generation: start over
    }
}

// Before the first segment after failed uploads: a store that comes back from an outage may have
// lost what it held (restarted without its data, a bucket recreated), and segments after a lost
// snapshot restore nothing. One LIST of the generation's snapshots tells; when they are gone, a
// new generation must start (commits waiting for the bucket wait for its snapshot). False then,
// and when the listing fails (the upload would fail too).
bool Shipper::snapshot_still_there() {
    // Also after a quiet minute: a store restarted without its data meanwhile fails no upload.
    if (!check_snapshot_ && Clock::now() - last_upload_ok_ < std::chrono::seconds(kQuietCheckS)) return true;
    auto listing = store_->list(generation_prefix(generation_) + "snapshots/");
    if (!listing.ok()) {
        upload_failed(generation_prefix(generation_) + "snapshots/", listing.error(), "listing");
        return false;
    }
    check_snapshot_ = false;
    for (auto& o : parse_listing(listing->objects))
        if (o.k.gen == generation_ && o.k.snapshot && !o.k.part) return last_upload_ok_ = Clock::now(), true;
    set_error("the generation's snapshot is gone from " + store_->describe() + " (the store lost objects); starting a new generation");
    side_.state()->needs_snapshot.fetch_add(1);
    return false;
}

void Shipper::uploaded(uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    if (backoff_ms_ && !stats_.last_error.empty()) log_info("uploads to " + store_->describe() + " recovered");
    last_upload_ok_ = Clock::now();
    backoff_ms_ = 0;
    set_last_error_locked("");
    stats_.uploads++;
    stats_.upload_bytes += bytes;
    stats_.last_ship_ms = now_ms();
    // Pacing as a bucket of two uploads refilled one per sync_interval (GCRA): steady writes get
    // one upload per interval, as before, but one upload that ran late (a slow store, a busy
    // machine) does not make the next quiet commit wait for the interval, and every later one
    // after it. The bucket never owes more than one interval (a snapshot's many parts).
    const auto now = Clock::now();
    const auto interval = std::chrono::milliseconds(cfg_.sync_interval_ms);
    pace_tat_ = std::min(std::max(pace_tat_, now) + interval, now + 2 * interval);
    next_upload_ = pace_tat_ - interval;
}

// ship_frames, through frames the wal-index may not show yet (`h` raised to a remote-durable
// commit's frame): those are marked in the side file before they are shipped, and their commit
// frame's checksum once they are, so that only their committer counts them as shipped.
bool Shipper::ship_ahead(const ShmHeader& visible, const ShmHeader& h) {
    SideState* side = side_.state();
    const bool ahead = h.salt2 != visible.salt2 || h.mx_frame > visible.mx_frame;
    if (ahead) {
        side->spec_cksum = 0;
        side->spec_rival = 0;
        side->spec_pos = pack_position(h.salt2, h.mx_frame);
    }
    // Frames past the wal-index's end are a remote-durable commit's, asked for before they show.
    // Another position may still be asked for there: one a committer asked for and then died
    // (or failed) before its commit showed, when the next commit wrote fewer frames over its
    // own. Such a stale frame ends the chain; it is not a broken chain of committed frames.
    committed_mx_ = h.salt2 == visible.salt2 ? visible.mx_frame : 0;
    bool ok = ship_frames(h);
    committed_mx_ = UINT32_MAX;
    if (ahead) {
        if (salt2_ == h.salt2 && (salt2_ != visible.salt2 || frame_ > visible.mx_frame)) {
            side->spec_cksum = uint64_t(cksum1_) << 32 | cksum2_;
            side->spec_pos = pack_position(salt2_, frame_);
        } else {
            side->spec_pos = 0;
        }
        side->shipped_seq.fetch_add(1);
        futex_wake(&side->shipped_seq);
    }
    return ok;
}

// Frames shipped ahead of the wal-index (ship_ahead) belong to a commit that should show there
// once its connection's WAL sync returns. If it does, with the same frame at that place, they
// were committed as shipped. If instead the committer died (or its commit failed), another commit
// rewrites the same frames: the bucket then holds a transaction the database never had, and a
// new generation must start (a snapshot). False when that is so (the next pass takes it).
bool Shipper::check_speculative(const ShmHeader& visible, uint64_t through) {
    SideState* side = side_.state();
    const uint64_t spec = side->spec_pos.load();
    if (!spec) return true;
    const uint32_t s2 = uint32_t(spec >> 32), to = uint32_t(spec);
    const uint64_t want = side->spec_cksum.load();
    const size_t frame_size = kWalFrameHeaderSize + page_size_;
    auto frame_is_ours = [&](uint32_t f) {
        unsigned char b[kWalFrameHeaderSize];
        if (!page_size_ || !pread_all(wal_fd_, b, sizeof b, off_t(kWalHeaderSize) + off_t(f - 1) * off_t(frame_size))) return false;
        WalFrameHeader fh = parse_frame_header(b);
        return fh.salt2 == s2 && (uint64_t(fh.cksum1) << 32 | fh.cksum2) == want && want != 0;
    };
    uint32_t shown = 0;  // the frames of that WAL the wal-index shows committed
    bool same_wal = visible.salt2 == s2;
    if (same_wal) {
        shown = visible.mx_frame;
    } else {
        unsigned char hdr[kWalHeaderSize];
        WalHeader wh;
        same_wal = pread_all(wal_fd_, hdr, sizeof hdr, 0) && parse_wal_header(hdr, &wh) && wh.salt2 == s2;  // not shown yet
    }
    bool phantom;
    if (same_wal && shown >= to) {
        phantom = !frame_is_ours(to);
    } else if (same_wal) {
        // Not committed yet. While only its committer asks (for that frame), it may still be waiting.
        const uint64_t rival = side->spec_rival.load();
        // Another commit can write only after the marked one released the write lock, which it
        // holds until its commit shows: so a request for any other frame of that WAL (or for the
        // same one, with another frame there now) means it died or failed.
        const bool other_asks = (uint32_t(rival >> 32) == s2 && uint32_t(rival) != 0) ||
                                (uint32_t(through >> 32) == s2 && uint32_t(through) != 0 && (uint32_t(through) != to || !frame_is_ours(to)));
        if (!other_asks) return true;
        phantom = true;
    } else {
        phantom = true;  // the WAL was reset without that commit ever showing
    }
    side->spec_pos = 0;
    side->spec_rival = 0;
    if (!phantom) return true;
    log_warn("frames uploaded for a remote-durable commit that never completed (its process died, or the commit failed) are in " +
             store_->describe() + "; starting a new generation");
    side->needs_snapshot.fetch_add(1);
    side->shipped_seq.fetch_add(1);
    futex_wake(&side->shipped_seq);
    return false;
}

// Checks frame `frame` (read into fr) against the WAL's salts and the checksum chain (c1, c2),
// which it advances. False when it does not continue the chain: reading the WAL raced a reset
// that spilled these frames (they are in the spill now), the frame is past what the wal-index
// showed committed when the pass began (not written yet, or left by a commit that never showed:
// see ship_frames), or the chain is broken.
bool Shipper::chain_frame(const unsigned char* fr, uint32_t frame, uint32_t* c1, uint32_t* c2, WalFrameHeader* fh) {
    *fh = parse_frame_header(fr);
    wal_checksum(big_endian_, fr, 8, c1, c2);
    wal_checksum(big_endian_, fr + kWalFrameHeaderSize, page_size_, c1, c2);
    if (fh->salt1 == salt1_ && fh->salt2 == salt2_ && fh->cksum1 == *c1 && fh->cksum2 == *c2 && fh->pgno != 0) return true;
    if (frame > committed_mx_) return false;
    ShmHeader now;
    if (read_header(&now) && !wal_moved_on(now)) wal_chain_broken(salt2_, frame);
    return false;
}

bool Shipper::ship_frames(const ShmHeader& h) {
    const uint32_t end = h.mx_frame;
    while (frame_ < end) {
        if (frame_ == 0) {
            unsigned char hdr[kWalHeaderSize];
            WalHeader wh;
            if (!pread_all(wal_fd_, hdr, sizeof hdr, 0) || !parse_wal_header(hdr, &wh) || wh.salt1 != salt1_ || wh.salt2 != salt2_) {
                return false;  // header not written yet or racing a reset: next pass
            }
            if (wh.page_size != page_size_) {
                start_generation("the page size changed");
                return false;
            }
            big_endian_ = wh.big_endian_cksum();
            cksum1_ = wh.cksum1;
            cksum2_ = wh.cksum2;
        }
        const size_t frame_size = kWalFrameHeaderSize + page_size_;
        std::vector<Txn> txns;
        Txn cur;
        uint32_t f = frame_, c1 = cksum1_, c2 = cksum2_;
        uint32_t seg_end = frame_, e1 = c1, e2 = c2;
        // Deferred spill transactions come first in this upload: the live ones are numbered after.
        const uint64_t base = txid_ + (deferred_.active ? deferred_.txns.size() : 0);
        uint64_t bytes = deferred_.active ? deferred_.bytes : 0;
        std::string& buf = wal_buf_;  // kept between passes: no allocation (and page faults) per pass
        const uint32_t chunk = uint32_t(std::max<size_t>(1, (1u << 20) / frame_size));
        bool prev_commit = prev_commit_valid_;
        bool large = false;  // a transaction of more than a segment's bytes: streamed on its own
        bool chain_ends = false;
        while (f < end && bytes < cfg_.max_segment_bytes && !large && !chain_ends) {
            uint32_t n = std::min(chunk, end - f);
            buf.resize(size_t(n) * frame_size);
            if (!pread_all(wal_fd_, &buf[0], buf.size(), off_t(kWalHeaderSize) + off_t(f) * off_t(frame_size))) {
                // A TRUNCATE checkpoint can cut the file after a reset that spilled these frames
                // (the next pass reads the spill, or sees the new WAL); anything else is an error.
                ShmHeader now;
                if (read_header(&now) && wal_moved_on(now)) return false;
                set_error("reading " + cfg_.db_path + "-wal failed at frame " + std::to_string(f + 1));
                return false;
            }
            uint32_t i = 0;
            for (; i < n && bytes < cfg_.max_segment_bytes; i++) {
                const unsigned char* fr = reinterpret_cast<const unsigned char*>(buf.data()) + size_t(i) * frame_size;
                WalFrameHeader fh;
                if (!chain_frame(fr, f + i + 1, &c1, &c2, &fh)) {
                    if (f + i + 1 <= committed_mx_) return false;
                    chain_ends = true;  // past the committed frames: ship the transactions before it
                    break;
                }
                std::string page(reinterpret_cast<const char*>(fr + kWalFrameHeaderSize), page_size_);
                if (fh.commit_size && cur.pages.empty() && prev_commit && fh.pgno == prev_pgno_ &&
                    fh.commit_size == prev_commit_size_ && page == prev_page_) {
                    // Padding after a commit (synchronous=FULL): a copy of the commit frame.
                    seg_end = f + i + 1, e1 = c1, e2 = c2;
                    continue;
                }
                cur.pages[fh.pgno] = page;
                if (!fh.commit_size && uint64_t(cur.pages.size()) * (page_size_ + 4) >= cfg_.max_segment_bytes) {
                    large = true;
                    break;
                }
                prev_commit = fh.commit_size != 0;
                if (fh.commit_size) {
                    prev_pgno_ = fh.pgno;
                    prev_commit_size_ = fh.commit_size;
                    prev_page_ = page;
                    cur.txid = base + txns.size() + 1;
                    cur.ts_ms = stamp(cur.txid, salt2_, f + i + 1);
                    cur.db_pages = fh.commit_size;
                    bytes += cur.pages.size() * (page_size_ + 4);
                    txns.push_back(std::move(cur));
                    cur = Txn();
                    seg_end = f + i + 1, e1 = c1, e2 = c2;
                }
            }
            f += i;  // a transaction may go on in the next chunk
        }
        // What follows seg_end (a transaction the WAL does not hold all of yet, or one that did not
        // fit in this segment) is read again from its first frame next time.
        if (large && txns.empty()) {
            cur = Txn();
            if (!resolve_deferred() || !ship_large_txn(seg_end, e1, e2, end)) return false;
            continue;
        }
        if (txns.empty()) {
            if (!resolve_deferred()) return false;
            if (seg_end > frame_) {  // only padding
                frame_ = seg_end, cksum1_ = e1, cksum2_ = e2;
                publish_position();
                continue;
            }
            return false;
        }
        const bool merged = deferred_.active;
        if (merged) {
            txns.insert(txns.begin(), std::make_move_iterator(deferred_.txns.begin()), std::make_move_iterator(deferred_.txns.end()));
            deferred_.txns.clear();
        }
        if (!ship_txns(txns, salt1_, salt2_, seg_end, e1, e2)) {
            prev_commit_valid_ = false;
            if (merged) take_back_deferred();
            return false;
        }
        frame_ = seg_end;
        cksum1_ = e1;
        cksum2_ = e2;
        prev_commit_valid_ = true;
        if (merged) deferred_.active = false, spill_off_ = deferred_.off;
        publish_position();
        if (merged) spill_consumed();
        std::lock_guard<std::mutex> lock(mu_);
        if (frame_ >= end) set_unshipped_since_locked(0);
    }
    return true;
}

// A pass reading the WAL raced a reset: the wal-index now shows another WAL, or the reset spilled
// the frames being read. The next pass follows the new WAL or ships the spill.
bool Shipper::wal_moved_on(const ShmHeader& now) const {
    return now.salt1 != salt1_ || now.salt2 != salt2_ || side_.state()->spill_len.load() > spill_off_;
}

// True when the WAL with these salts, followed up to `frame`, was reset by walship with nothing
// lost (everything shipped at the reset, or spilled: `ended`, a spill record ended at that frame,
// and no larger mxFrame was ever seen), and `next` (the live WAL's header, or null for a spill
// record's WAL with salt-1 `next_salt1`) is the WAL that reset started, with no other between
// them: a reset by a writer outside walship (a plain sqlite3 shell's TRUNCATE checkpoint) leaves
// its WAL's transactions shipped by nobody. A reset adds one to salt-1 (walRestartHeader). A
// writer whose connection never reset a WAL draws new random salts for the WAL it begins (after
// another connection's TRUNCATE checkpoint, or the first writer after a crash): then it is the
// database file that shows nothing came between, as it is when no checkpoint has written it since
// that reset (the side file's fingerprint of it then; a WAL reset by another writer was first
// checkpointed into it). A spill record's WAL is known by salt-1 alone. Before any WAL (salts 0),
// the first one's salts are random.
bool Shipper::wal_ended_cleanly(uint32_t salt1, uint32_t salt2, uint32_t frame, uint32_t ended, uint32_t seen, const ShmHeader* next,
                                uint32_t next_salt1) const {
    SideState* side = side_.state();
    if (salt1 == 0 && salt2 == 0 && frame == 0 && seen == 0) return true;
    const bool by_reset = side->reset_allowed.load() == salt2 && side->shipped.load() == pack_position(salt2, frame);
    const bool by_spill = ended > 0 && ended == frame && seen <= ended;
    if (!by_reset && !by_spill) return false;
    if ((next ? next->salt1 : next_salt1) == salt1 + 1) return true;
    if (!next || next->n_backfill != 0) return false;
    uint64_t fp[4] = {};
    if (!db_fingerprint(cfg_.db_path, fp)) return false;
    // (The fingerprint of the last spill append is this WAL's only if no record came after it.)
    const bool last_record = side->spill_len.load() == (deferred_.active ? deferred_.off : spill_off_);
    return (by_spill && last_record && same_fingerprint(side->spill_db, fp)) ||
           (by_reset && side_.commit_slots() && side->reset_db_salt2.load() == salt2 && same_fingerprint(side->reset_db, fp));
}

// Uploads transactions as one segment that ends at WAL position (salt1, salt2, frame, c1, c2),
// with the database checksum carried along; on success they count as shipped.
bool Shipper::ship_txns(std::vector<Txn>& txns, uint32_t salt1, uint32_t salt2, uint32_t frame, uint32_t c1, uint32_t c2) {
    DbChecksum saved = checksum_;
    for (Txn& t : txns) {
        if (have_checksum_) {
            for (auto& [pgno, data] : t.pages) checksum_.set_page(pgno, data.data(), data.size());
            checksum_.truncate(t.db_pages);
        }
        t.has_checksum = have_checksum_;
        t.db_checksum = checksum_.value();
    }
    ObjectHeader oh;
    oh.flags = have_checksum_ ? kFlagDbChecksum : 0;
    oh.page_size = page_size_;
    oh.generation = generation_;
    oh.first_txid = txns.front().txid;
    oh.last_txid = txns.back().txid;
    oh.first_ts_ms = txns.front().ts_ms;
    oh.last_ts_ms = txns.back().ts_ms;
    oh.db_pages = txns.back().db_pages;
    oh.txn_count = uint32_t(txns.size());
    oh.wal_salt1 = salt1;
    oh.wal_salt2 = salt2;
    oh.wal_frame = frame;
    oh.wal_cksum1 = c1;
    oh.wal_cksum2 = c2;
    uint64_t body_len = 0;
    std::string frames = compress_segment_body(txns, cfg_.zstd_level, &body_len);  // frees the pages
    // The heap the pages took goes back to the system (it would stay with the process).
#ifdef __GLIBC__
    if (body_len >= kTrimBytes) malloc_trim(0);
#endif
    if (!upload_segment(oh, body_len, std::move(frames), txns.back().db_checksum)) {
        checksum_ = saved;
        return false;
    }
    txid_ = oh.last_txid;
    txid_ts_ = oh.last_ts_ms;
    for (auto it = ts_by_txid_.begin(); it != ts_by_txid_.end() && it->first <= txid_;) it = ts_by_txid_.erase(it);
    db_pages_ = oh.db_pages;
    std::lock_guard<std::mutex> lock(mu_);
    stats_.txns_shipped += txns.size();
    return true;
}

// A transaction with more than a segment's bytes of pages (max_segment_bytes) goes up on its own,
// streamed from the WAL instead of read into memory. A first pass over its frames checks their
// checksum chain and notes, per frame, its page number and the hash of its page (16 bytes a
// frame); the second reads the last version of each page again, in page order, and compresses it
// into a streaming (multipart) upload, checking it against its hash: a WAL reset that spilled
// the transaction and overwrote its frames meanwhile aborts the upload, and the next pass ships
// it from the spill file. `from` is the frame before the transaction, (c1, c2) the checksum chain
// there, `end` the WAL's last committed frame.
bool Shipper::ship_large_txn(uint32_t from, uint32_t c1, uint32_t c2, uint32_t end) {
    struct Frame {
        uint32_t pgno, frame;
        uint64_t hash;
    };
    std::vector<Frame> frames;
    const size_t frame_size = kWalFrameHeaderSize + page_size_;
    const uint32_t chunk = uint32_t(std::max<size_t>(1, (1u << 20) / frame_size));
    std::string& buf = wal_buf_;
    auto offset = [&](uint32_t frame) { return off_t(kWalHeaderSize) + off_t(frame - 1) * off_t(frame_size); };
    uint32_t commit = 0, db_pages = 0, commit_pgno = 0;
    std::string commit_page;
    for (uint32_t f = from; f < end && !commit;) {
        uint32_t n = std::min(chunk, end - f);
        buf.resize(size_t(n) * frame_size);
        if (!pread_all(wal_fd_, &buf[0], buf.size(), offset(f + 1))) {
            ShmHeader now;
            if (read_header(&now) && wal_moved_on(now)) return false;
            set_error("reading " + cfg_.db_path + "-wal failed at frame " + std::to_string(f + 1));
            return false;
        }
        for (uint32_t i = 0; i < n; i++) {
            const unsigned char* fr = reinterpret_cast<const unsigned char*>(buf.data()) + size_t(i) * frame_size;
            WalFrameHeader fh;
            if (!chain_frame(fr, f + i + 1, &c1, &c2, &fh)) return false;
            frames.push_back({fh.pgno, f + i + 1, page_hash(fh.pgno, fr + kWalFrameHeaderSize, page_size_)});
            if (fh.commit_size) {
                commit = f + i + 1;
                db_pages = fh.commit_size;
                commit_pgno = fh.pgno;
                commit_page.assign(reinterpret_cast<const char*>(fr + kWalFrameHeaderSize), page_size_);
                break;
            }
        }
        f += n;
    }
    if (!commit || !snapshot_still_there()) return false;  // !commit: a race (mxFrame ends at a commit): next pass
    // The last version of each page, in page order.
    std::stable_sort(frames.begin(), frames.end(), [](const Frame& a, const Frame& b) { return a.pgno < b.pgno; });
    size_t kept = 0;
    for (size_t i = 0; i < frames.size(); i++) {
        if (i + 1 < frames.size() && frames[i + 1].pgno == frames[i].pgno) continue;
        frames[kept++] = frames[i];
    }
    frames.resize(kept);

    DbChecksum saved = checksum_;
    if (have_checksum_) {
        for (const Frame& fr : frames) checksum_.set_hash(fr.pgno, fr.hash);
        checksum_.truncate(db_pages);
    }
    std::string frame(frame_size, '\0');
    auto feed = [&](const PagePut& put) {
        for (const Frame& fr : frames) {
            const unsigned char* p = reinterpret_cast<const unsigned char*>(frame.data());
            if (!pread_all(wal_fd_, &frame[0], frame_size, offset(fr.frame))) return false;
            WalFrameHeader fh = parse_frame_header(p);
            if (fh.salt1 != salt1_ || fh.salt2 != salt2_ || fh.pgno != fr.pgno ||
                page_hash(fr.pgno, p + kWalFrameHeaderSize, page_size_) != fr.hash)
                return false;
            if (!put(fr.pgno, frame.data() + kWalFrameHeaderSize)) return true;
        }
        return true;
    };
    // Moved (false): the frames were overwritten after a reset that spilled them (or the WAL was cut).
    if (upload_txn_stream(db_pages, uint32_t(frames.size()), salt1_, salt2_, commit, c1, c2, feed) != Streamed::Shipped) {
        checksum_ = saved;
        return false;
    }
    frame_ = commit, cksum1_ = c1, cksum2_ = c2;
    prev_commit_valid_ = true;  // padding after this commit (synchronous=FULL) is recognised
    prev_pgno_ = commit_pgno;
    prev_commit_size_ = db_pages;
    prev_page_ = std::move(commit_page);
    publish_position();
    std::lock_guard<std::mutex> lock(mu_);
    if (frame_ >= end) set_unshipped_since_locked(0);
    return true;
}

// One transaction (the next txid) as a segment of its own, compressed 1 MiB at a time into a
// streaming (multipart) upload, for ship_large_txn and ship_spill. `feed` hands every page of it,
// in page order, to `put` (which answers false once the upload failed) and answers false when its
// source no longer holds what the first pass saw: the upload is aborted then. The caller has set
// checksum_ to the state after the transaction; (salt1, salt2, frame, c1, c2) is the WAL position
// after it.
Shipper::Streamed Shipper::upload_txn_stream(uint32_t db_pages, uint32_t page_count, uint32_t salt1, uint32_t salt2,
                                             uint32_t frame, uint32_t c1, uint32_t c2, const std::function<bool(const PagePut&)>& feed) {
    const uint64_t txid = txid_ + 1;
    const uint64_t ts = stamp(txid, salt2, frame);
    ObjectHeader oh;
    oh.kind = ObjectKind::Segment;
    oh.flags = have_checksum_ ? kFlagDbChecksum : 0;
    oh.page_size = page_size_;
    oh.generation = generation_;
    oh.first_txid = oh.last_txid = txid;
    oh.first_ts_ms = oh.last_ts_ms = ts;
    oh.db_pages = db_pages;
    oh.txn_count = 1;
    oh.wal_salt1 = salt1;
    oh.wal_salt2 = salt2;
    oh.wal_frame = frame;
    oh.wal_cksum1 = c1;
    oh.wal_cksum2 = c2;
    oh.body_len = 32 + uint64_t(page_count) * (4 + page_size_);
    unsigned char hb[kHeaderSize];
    encode_header(oh, hb);
    const std::string key = segment_key(generation_, txid, txid, ts);
    auto w = store_->open_writer(key, s3::PutOptions{true, "application/octet-stream"});
    SnapshotWriter sw(w.get(), cfg_.zstd_level);
    s3::Status st = sw.raw(hb, sizeof hb);
    std::string in;  // body bytes, compressed 1 MiB at a time
    put_u64le(in, txid);
    put_u64le(in, ts);
    put_u32le(in, db_pages);
    put_u32le(in, page_count);
    put_u64le(in, have_checksum_ ? checksum_.value() : 0);
    uint32_t fed = 0;
    auto put = [&](uint32_t pgno, const char* page) {
        if (!st.ok()) return false;
        put_u32le(in, pgno);
        in.append(page, page_size_);
        fed++;
        if (in.size() >= (1u << 20)) {
            st = sw.page(in.data(), in.size());
            in.clear();
        }
        return st.ok();
    };
    const bool source_ok = feed(put) && (!st.ok() || fed == page_count);
    if (st.ok() && source_ok) st = sw.page(in.data(), in.size());
    if (st.ok() && source_ok) {
        st = sw.finish(checksum_.value());
        if (st.kind == s3::ErrorKind::PreconditionFailed) {
            // An earlier attempt may have landed although its answer was lost: the same object
            // (its size and trailer: the hash of every byte) is fine.
            auto info = store_->head(key);
            const std::string& t = sw.trailer();
            if (info.ok() && info->size == w->bytes_written() && info->size >= t.size()) {
                auto tail = store_->get(key, s3::ByteRange{info->size - t.size(), t.size()});
                if (tail.ok() && tail.value() == t) st = {};
            }
            if (!st.ok()) st = s3::make_error(s3::ErrorKind::PreconditionFailed, "put_object: " + key + " already exists with other content");
        }
    }
    if (!source_ok || !st.ok()) {
        w->abort();
        if (source_ok) upload_failed(key, st);
        return source_ok ? Streamed::StoreFailed : Streamed::SourceChanged;
    }
    uploaded(w->bytes_written());
    levels_.clear();  // compaction merges small segments only; none merges across this one
    txid_ = txid;
    txid_ts_ = ts;
    for (auto it = ts_by_txid_.begin(); it != ts_by_txid_.end() && it->first <= txid_;) it = ts_by_txid_.erase(it);
    db_pages_ = db_pages;
    std::lock_guard<std::mutex> lock(mu_);
    stats_.txns_shipped++;
    return Streamed::Shipped;
}

void Shipper::enter_wal(uint32_t salt1, uint32_t salt2) {
    salt1_ = salt1;
    salt2_ = salt2;
    frame_ = 0;
    last_seen_mx_ = 0;
    ended_frame_ = 0;
    if (!deferred_.active) publish_position();  // (else once the deferred transactions are up)
}

// Ships the spill file's records in order, each as one transaction and several to a segment,
// then empties the file. True when every record is shipped.
bool Shipper::ship_spill(bool defer_last) {
    SideState* side = side_.state();
    std::string err;
    if (open_spill(&err) < 0) {
        set_error(err);
        return false;
    }
    const uint64_t len = side->spill_len.load();
    while (spill_off_ < len) {
        // One segment: records while they fit, with the position after the last one.
        std::vector<Txn> txns;
        uint64_t bytes = 0, off = spill_off_;
        uint32_t s1 = salt1_, s2 = salt2_, frame = frame_, c1 = cksum1_, c2 = cksum2_, ended = ended_frame_, seen = last_seen_mx_;
        bool big_endian = big_endian_;
        while (off < len && bytes < cfg_.max_segment_bytes) {
            SpillRecord r;
            if (!read_spill_record(spill_fd_, off, len, &r)) {
                start_generation("the spill file is damaged at offset " + std::to_string(off));
                return false;
            }
            // A record of more than a segment's bytes goes up on its own, streamed from the file.
            const bool large = uint64_t(r.count) * (4 + r.page_size) > cfg_.max_segment_bytes;
            if (large && !txns.empty()) break;
            if (r.salt1 != s1 || r.salt2 != s2) {
                // The record starts a later WAL: the one followed must have ended cleanly.
                if (!wal_ended_cleanly(s1, s2, frame, ended, seen, nullptr, r.salt1) || r.first != 1) {
                    start_generation("the WAL was reset by a writer outside walship");
                    return false;
                }
                s1 = r.salt1, s2 = r.salt2, frame = 0, ended = 0, seen = 0;
            }
            seen = std::max(seen, r.last);
            if (r.last > frame) {
                // Frames up to `frame` may be in the record too (the shipper read them from the WAL
                // before the reset): its pages are their last versions, so applying them again is
                // harmless. A gap is not.
                bool continues = r.first <= frame + 1 && (r.first <= frame || frame == 0 || (r.chain_in1 == c1 && r.chain_in2 == c2));
                if (!continues || r.page_size != page_size_) {
                    start_generation("the spill file does not continue the replica (frames " + std::to_string(r.first) + ".." +
                                     std::to_string(r.last) + " after frame " + std::to_string(frame) + ")");
                    return false;
                }
                if (large) {
                    Streamed sr = ship_spill_record(r);
                    if (sr == Streamed::SourceChanged) start_generation("the spill file is damaged at offset " + std::to_string(off));
                    if (sr != Streamed::Shipped) return false;
                    frame = r.last, c1 = r.chain_out1, c2 = r.chain_out2, big_endian = r.big_endian;
                    ended = r.last;
                    off += r.size;
                    break;
                }
                std::vector<std::pair<uint32_t, std::string>> pages;
                if (!read_spill_pages(spill_fd_, r, &pages)) {
                    start_generation("the spill file is damaged at offset " + std::to_string(off));
                    return false;
                }
                Txn t;
                t.txid = txid_ + txns.size() + 1;
                t.ts_ms = stamp(t.txid, r.salt2, r.last);
                t.db_pages = r.db_pages;
                for (auto& [pg, data] : pages) t.pages[pg] = std::move(data);
                bytes += t.pages.size() * (page_size_ + 4);
                txns.push_back(std::move(t));
                frame = r.last, c1 = r.chain_out1, c2 = r.chain_out2, big_endian = r.big_endian;
            }
            ended = r.last;
            off += r.size;
        }
        if (defer_last && off >= len && !txns.empty() && bytes <= cfg_.max_segment_bytes / 2) {
            // The last of the spill: held back for the live WAL's upload (see Deferred).
            Deferred& d = deferred_;
            d.p_salt1 = salt1_, d.p_salt2 = salt2_, d.p_frame = frame_, d.p_c1 = cksum1_, d.p_c2 = cksum2_;
            d.p_ended = ended_frame_, d.p_seen = last_seen_mx_, d.p_big_endian = big_endian_, d.p_prev_valid = prev_commit_valid_;
            d.txns = std::move(txns);
            d.bytes = bytes, d.off = off, d.s1 = s1, d.s2 = s2, d.frame = frame, d.c1 = c1, d.c2 = c2;
            d.active = true;
            salt1_ = s1, salt2_ = s2, frame_ = frame, cksum1_ = c1, cksum2_ = c2, big_endian_ = big_endian;
            ended_frame_ = ended, last_seen_mx_ = seen;
            prev_commit_valid_ = false;
            return true;
        }
        if (!txns.empty() && !ship_txns(txns, s1, s2, frame, c1, c2)) return false;
        salt1_ = s1, salt2_ = s2, frame_ = frame, cksum1_ = c1, cksum2_ = c2, big_endian_ = big_endian;
        ended_frame_ = ended, last_seen_mx_ = seen;
        prev_commit_valid_ = false;
        spill_off_ = off;
        publish_position();
    }
    spill_consumed();
    return true;
}

// The deferred spill transactions go up on their own (the live WAL's did not follow them in this
// pass). False when that fails: the position goes back before them, and the next pass reads
// them from the spill again.
bool Shipper::resolve_deferred() {
    if (!deferred_.active) return true;
    Deferred& d = deferred_;
    d.active = false;
    if (!ship_txns(d.txns, d.s1, d.s2, d.frame, d.c1, d.c2)) {
        take_back_deferred();
        return false;
    }
    d.txns.clear();
    spill_off_ = d.off;
    publish_position();
    spill_consumed();
    return true;
}

void Shipper::take_back_deferred() {
    Deferred& d = deferred_;
    d.active = false;
    d.txns.clear();
    salt1_ = d.p_salt1, salt2_ = d.p_salt2, frame_ = d.p_frame, cksum1_ = d.p_c1, cksum2_ = d.p_c2;
    ended_frame_ = d.p_ended, last_seen_mx_ = d.p_seen, big_endian_ = d.p_big_endian, prev_commit_valid_ = d.p_prev_valid;
}

// A spill record of more than a segment's bytes (a large transaction the WAL reset overtook) as
// one transaction streamed from the spill file: a first pass checks the record's checksum and
// takes its pages' hashes into the database checksum, the second compresses them into the upload
// (checking the record's checksum again; the upload is aborted if it differs).
Shipper::Streamed Shipper::ship_spill_record(const SpillRecord& r) {
    DbChecksum saved = checksum_;
    if (!for_each_spill_page(spill_fd_, r, [&](uint32_t pg, const char* page) {
            if (have_checksum_) checksum_.set_page(pg, page, r.page_size);
            return true;
        })) {
        checksum_ = saved;
        return Streamed::SourceChanged;
    }
    if (have_checksum_) checksum_.truncate(r.db_pages);
    auto feed = [&](const PagePut& put) { return for_each_spill_page(spill_fd_, r, put); };
    Streamed sr = upload_txn_stream(r.db_pages, r.count, r.salt1, r.salt2, r.last, r.chain_out1, r.chain_out2, feed);
    if (sr != Streamed::Shipped) checksum_ = saved;
    return sr;
}

// Everything up to spill_off_ is shipped (or older than the position): publish that, and empty the
// file when no process appended meanwhile.
void Shipper::spill_consumed() {
    SideState* side = side_.state();
    side->spill_shipped = spill_off_;
    if (spill_off_ == 0 || spill_fd_ < 0) return;
    std::lock_guard<std::mutex> lock(spill_mu_);
    side_.lock_wait(SideFile::kSpillLock);
    if (side->spill_len.load() == spill_off_) {
        spill_off_ = 0;
        empty_spill_file(spill_fd_);
    }
    side_.unlock(SideFile::kSpillLock);
}

void Shipper::empty_spill_file(int fd) {
    // Emptied in the side file first: a crash before the truncate leaves bytes past spill_len,
    // which nothing reads (the next record overwrites them); the other order would leave
    // spill_len pointing past the end of an empty file.
    side_.state()->spill_len = 0;
    side_.state()->spill_shipped = 0;
    if (fd >= 0 && ::ftruncate(fd, 0) != 0) log_warn("cannot truncate " + spill_path(cfg_.db_path) + ": " + strerror(errno));
}

// Waits until done() holds, on the side file's shipped_seq (bumped by whichever process ships when
// its position moves or it records a snapshot), until the deadline or this shipper stops. With
// take_over, when nobody holds the ship lock any more (the shipping process closed the database,
// or died), this process's thread takes it now, not at its next attempt.
bool Shipper::wait_shipped(const std::function<bool()>& done, Clock::time_point deadline, bool take_over) {
    SideState* side = side_.state();
    for (;;) {
        uint32_t seq = side->shipped_seq.load();
        if (done()) return true;
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (Clock::now() >= deadline || stop_) return false;
        }
        side->shipped_waiters.fetch_add(1);
        futex_wait(&side->shipped_seq, seq, 10);  // the shipping process may be another one
        side->shipped_waiters.fetch_sub(1);
        if (take_over && !is_shipper_ && !side_.held_elsewhere(SideFile::kShipLock)) wake();
    }
}

int Shipper::flush_through(uint32_t salt2, uint32_t frame, uint64_t cksum, bool visible, std::string* error) {
    if (*error = foreign_replica(); !error->empty()) return SQLITE_ERROR;
    SideState* side = side_.state();
    uint64_t want = pack_position(salt2, frame);
    uint64_t cur = side->ship_through.load();
    while ((cur >> 32) != (want >> 32) || uint32_t(cur) < frame) {
        if (side->ship_through.compare_exchange_weak(cur, want)) break;
    }
    if (visible) side->remote_asks.fetch_add(1);  // (strict commits come one at a time: see gather_commits)
    wake();
    auto shipped = [&] {
        uint64_t pos = side->shipped.load();
        if (uint32_t(pos >> 32) != salt2 || uint32_t(pos) < frame || side->needs_snapshot.load()) return false;
        // Frames shipped ahead of the wal-index at or past ours are some committer's: ours only
        // when they end at our commit frame with its checksum (else a committer that died).
        uint64_t spec = side->spec_pos.load();
        if (spec && uint32_t(spec >> 32) == salt2 && uint32_t(spec) >= frame) {
            const uint64_t spec_ck = side->spec_cksum.load();
            if (uint32_t(spec) == frame && spec_ck == cksum) return true;
            if (uint32_t(spec) != frame || spec_ck != 0) {  // (0: its upload is still running)
                side->spec_rival = pack_position(salt2, frame);
                wake();
            }
            return false;
        }
        side->ship_through.compare_exchange_strong(want, pos);  // answered (unless a later commit asks)
        return true;
    };
    if (wait_shipped(shipped, Clock::now() + std::chrono::milliseconds(cfg_.flush_timeout_ms), true)) return SQLITE_OK;
    std::lock_guard<std::mutex> lock(mu_);
    // Stop asking for these frames before the interval.
    uint64_t mine = want;
    side->ship_through.compare_exchange_strong(mine, side->shipped.load());
    if (visible) {
        // Committed locally: it stays in the WAL (or the spill) and ships when the store answers.
        stats_.unconfirmed_commits++;
        *error = "walship: transaction committed locally but not confirmed in " + store_->describe() + " within " +
                 std::to_string(cfg_.flush_timeout_ms) + " ms; it ships once the store answers" + store_wait_note();
        *error += last_error_note_locked();
        return SQLITE_IOERR;
    }
    // Strict: the commit will fail and roll back (its frames will be overwritten). An upload of
    // them may still land, so the replica's history can no longer be trusted to match the
    // database: the next pass starts a new generation from a snapshot, and until then nothing
    // counts as shipped (later commits wait for that snapshot).
    side->needs_snapshot.fetch_add(1);
    *error = "walship: transaction not confirmed in " + store_->describe() + " within " + std::to_string(cfg_.flush_timeout_ms) + " ms (rolled back)" +
             store_wait_note();
    *error += last_error_note_locked();
    return SQLITE_IOERR;
}

bool Shipper::wal_proves_continuity() {
    SideState* s = side_.state();
    return s->generation.load() != 0 && s->state_checksum_ok.load() == 0;
}

bool Shipper::wal_has_unshipped() {
    volatile void* shm = shm0_.load();
    ShmHeader h;
    if (!shm || !read_shm_header(shm, &h)) return true;
    SideState* s = side_.state();
    return s->needs_snapshot.load() || (h.mx_frame != 0 && !covers(s->shipped.load(), h) && !covers(s->spilled.load(), h));
}

bool Shipper::restore_if_empty(std::string* error) {
    std::lock_guard<std::mutex> guard(restore_mu_);
    side_.lock_wait(SideFile::kRestoreLock);  // one process restores, the others wait
    // A WAL left next to a missing or empty database file does not count: SQLite deletes it when
    // it opens a database of no pages (walship never leaves a WAL beside an empty file: a new
    // database's first transaction writes the file), and restore removes it.
    bool empty = file_size(cfg_.db_path) == 0;
    bool ok = true;
    if (empty) {
        // Whatever a spill file holds belongs to the database that is gone.
        {
            std::lock_guard<std::mutex> lock(spill_mu_);
            side_.lock_wait(SideFile::kSpillLock);
            int fd = ::open(spill_path(cfg_.db_path).c_str(), O_RDWR | O_CLOEXEC);
            empty_spill_file(fd);  // (also the lengths when the file is missing)
            if (fd >= 0) ::close(fd);
            side_.unlock(SideFile::kSpillLock);
        }
        RestoreOptions opt;
        opt.output = cfg_.db_path;
        auto r = restore(*store_, opt);
        if (r.ok()) {
            log_info("restored " + cfg_.db_path + " from " + store_->describe() + " (generation " + generation_name(r->generation) +
                     ", txid " + std::to_string(r->txid) + ", " + std::to_string(r->pages) + " pages)");
        } else if (is_no_replica_data(r.error())) {
            log_info("no replica data in " + store_->describe() + "; starting " + cfg_.db_path + " empty");
        } else {
            *error = "walship: cannot restore " + cfg_.db_path + " from " + store_->describe() + ": " + r.error().str();
            ok = false;
        }
    }
    side_.unlock(SideFile::kRestoreLock);
    return ok;
}

// Takes a reader slot (1..4) whose read mark is `frame`, held shared, the way SQLite's readers do:
// checkpoints then copy nothing past `frame` into the database file, and no WAL reset can happen.
// When every slot is held at another mark (other connections' read transactions), shares the one
// with the highest mark below `frame`, as SQLite's readers do too: checkpoints then stop even
// earlier. Returns the slot, or -1 when none can be had.
int Shipper::acquire_read_mark(uint32_t frame) {
    const auto& m = db_->pMethods;
    volatile uint32_t* marks = reinterpret_cast<volatile uint32_t*>(static_cast<volatile char*>(shm0_.load()) + 100);
    for (int i = 1; i < kShmNumReaders; i++) {
        if (marks[i] != frame) continue;
        if (m->xShmLock(db_, kShmReadLock0 + i, 1, SQLITE_SHM_LOCK | SQLITE_SHM_SHARED) != SQLITE_OK) continue;
        if (marks[i] == frame) return i;
        m->xShmLock(db_, kShmReadLock0 + i, 1, SQLITE_SHM_UNLOCK | SQLITE_SHM_SHARED);
    }
    for (int i = 1; i < kShmNumReaders; i++) {
        if (m->xShmLock(db_, kShmReadLock0 + i, 1, SQLITE_SHM_LOCK | SQLITE_SHM_EXCLUSIVE) != SQLITE_OK) continue;
        marks[i] = frame;
        m->xShmLock(db_, kShmReadLock0 + i, 1, SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE);
        if (m->xShmLock(db_, kShmReadLock0 + i, 1, SQLITE_SHM_LOCK | SQLITE_SHM_SHARED) != SQLITE_OK) continue;
        if (marks[i] == frame) return i;
        m->xShmLock(db_, kShmReadLock0 + i, 1, SQLITE_SHM_UNLOCK | SQLITE_SHM_SHARED);
    }
    int best = -1;
    uint32_t best_mark = 0;
    for (int i = 1; i < kShmNumReaders; i++) {
        const uint32_t mark = marks[i];
        if (mark <= frame && (best < 0 || mark > best_mark)) best = i, best_mark = mark;
    }
    if (best < 0 || m->xShmLock(db_, kShmReadLock0 + best, 1, SQLITE_SHM_LOCK | SQLITE_SHM_SHARED) != SQLITE_OK) return -1;
    if (marks[best] == best_mark) return best;
    m->xShmLock(db_, kShmReadLock0 + best, 1, SQLITE_SHM_UNLOCK | SQLITE_SHM_SHARED);
    return -1;
}

bool Shipper::read_state(uint32_t limit, StateInfo* info, const PageFn& fn) {
    read_busy_ = false;
    if (!db_ || !shm0_.load()) return false;
    const auto& m = db_->pMethods;
    // The database file changes only by checkpoints, and they copy no frame past a reader's mark;
    // the one SQLite runs when this process's last connection closes runs without shm locks, and
    // state_mu_ serialises with it (see begin_exclusive). Writers are never blocked.
    std::lock_guard<std::mutex> state_guard(state_mu_);
    ShmHeader h0;
    if (!read_header(&h0)) return false;
    int slot = acquire_read_mark(std::min(limit, h0.mx_frame));
    if (slot < 0) {
        read_busy_ = true;
        return false;
    }
    struct Release {
        std::function<void()> f;
        ~Release() { f(); }
    } release{[&] { m->xShmLock(db_, kShmReadLock0 + slot, 1, SQLITE_SHM_UNLOCK | SQLITE_SHM_SHARED); }};

    info->spill_len = side_.state()->spill_len.load();  // no reset (so no spill) while we hold the mark
    ShmHeader h;
    if (!read_header(&h)) return false;
    if (h.salt1 != h0.salt1 || h.salt2 != h0.salt2) {  // a reset slipped in before our mark: retry
        read_busy_ = true;
        return false;
    }
    info->shm = h;
    info->frame = std::min(limit, h0.mx_frame);
    // A state before the end of the WAL exists only if the checkpoint has not copied past it.
    if (h.n_backfill > info->frame) {
        log_debug("state at frame " + std::to_string(info->frame) + " is gone: the checkpoint copied frames up to " + std::to_string(h.n_backfill));
        return false;
    }

    // Index the WAL: the last frame of each page within 1..frame, verifying the chain.
    std::map<uint32_t, uint32_t> latest;  // pgno -> frame
    uint32_t ps = 0, db_pages = 0;
    info->cksum1 = info->cksum2 = 0;
    if (info->frame > 0) {
        unsigned char hdr[kWalHeaderSize];
        WalHeader wh;
        if (!pread_all(wal_fd_, hdr, sizeof hdr, 0) || !parse_wal_header(hdr, &wh) || wh.salt1 != h.salt1 || wh.salt2 != h.salt2) return false;
        ps = wh.page_size;
        info->big_endian = wh.big_endian_cksum();
        uint32_t c1 = wh.cksum1, c2 = wh.cksum2;
        const size_t fsz = kWalFrameHeaderSize + ps;
        std::string buf;
        for (uint32_t f = 0; f < info->frame;) {
            uint32_t n = std::min<uint32_t>(info->frame - f, uint32_t(std::max<size_t>(1, (8u << 20) / fsz)));
            buf.resize(size_t(n) * fsz);
            if (!pread_all(wal_fd_, &buf[0], buf.size(), off_t(kWalHeaderSize) + off_t(f) * off_t(fsz))) return false;
            for (uint32_t i = 0; i < n; i++) {
                const unsigned char* fr = reinterpret_cast<const unsigned char*>(buf.data()) + size_t(i) * fsz;
                WalFrameHeader fh = parse_frame_header(fr);
                wal_checksum(info->big_endian, fr, 8, &c1, &c2);
                wal_checksum(info->big_endian, fr + kWalFrameHeaderSize, ps, &c1, &c2);
                if (fh.salt1 != wh.salt1 || fh.salt2 != wh.salt2 || fh.cksum1 != c1 || fh.cksum2 != c2) {
                    wal_chain_broken(h.salt2, f + i + 1);  // our read mark holds this WAL in place: not a race
                    return false;
                }
                latest[fh.pgno] = f + i + 1;
                if (fh.commit_size) db_pages = fh.commit_size;
            }
            f += n;
        }
        info->cksum1 = c1;
        info->cksum2 = c2;
        if (info->frame == h.mx_frame && h.n_page) db_pages = h.n_page;
    } else {
        unsigned char dbh[100];
        if (m->xRead(db_, dbh, sizeof dbh, 0) != SQLITE_OK) return false;
        uint32_t v = uint32_t(dbh[16]) << 8 | dbh[17];
        ps = v == 1 ? 65536 : v;
        sqlite3_int64 size = 0;
        m->xFileSize(db_, &size);
        if (ps >= 512) db_pages = uint32_t(size / ps);
    }
    if (ps < 512 || ps > 65536 || (ps & (ps - 1)) || db_pages == 0) {
        log_debug("no database state to read (page size " + std::to_string(ps) + ", " + std::to_string(db_pages) + " pages)");
        return false;
    }
    info->page_size = ps;
    info->db_pages = db_pages;
    std::string page(ps, '\0');
    for (uint32_t pg = 1; pg <= db_pages; pg++) {
        auto it = latest.find(pg);
        int rc;
        if (it != latest.end()) {
            off_t off = off_t(kWalHeaderSize) + off_t(it->second - 1) * off_t(kWalFrameHeaderSize + ps) + off_t(kWalFrameHeaderSize);
            rc = pread_all(wal_fd_, &page[0], ps, off) ? SQLITE_OK : SQLITE_IOERR;
        } else {
            rc = m->xRead(db_, &page[0], int(ps), sqlite3_int64(pg - 1) * ps);
            if (rc == SQLITE_IOERR_SHORT_READ) rc = SQLITE_OK;  // zero-filled, as SQLite reads it
        }
        if (rc != SQLITE_OK || !fn(pg, page)) return false;
    }
    return true;
}

void Shipper::note_snapshot_name(uint64_t gen, uint64_t txid, uint64_t ts) {
    SnapshotName& used = snapshot_name_used_;
    if (used.gen != gen) used = {gen, 0, 0};
    if (txid > used.txid || (txid == used.txid && ts > used.ts)) used.txid = txid, used.ts = ts;
}

// Streams a snapshot of the state at WAL frame `limit` (UINT32_MAX: the newest) as transaction
// `txid` of generation `gen`.
bool Shipper::write_snapshot(uint64_t gen, uint64_t txid, uint32_t limit, StateInfo* info, DbChecksum* sum) {
    // A large database is written as several objects of snapshot_part_size bytes of pages, so a
    // restore can download them in parallel: parts 1..n-1 (".part" keys) first, the ".snap" key
    // last, so that a snapshot exists only once all its parts do (FORMAT.md).
    // Named, like every object, for the commit time of its last transaction (FORMAT.md), so a
    // point in time between that commit and the snapshot finds it; at a generation's start, now.
    uint64_t snap_ts = gen == generation_ && txid == txid_ && txid_ts_ ? txid_ts_ : std::max<uint64_t>(last_stamp_, uint64_t(now_ms()));
    const SnapshotName& used = snapshot_name_used_;
    if (used.gen == gen && used.txid == txid && snap_ts <= used.ts) snap_ts = used.ts + 1;
    note_snapshot_name(gen, txid, snap_ts);
    const uint64_t asked = side_.state()->snapshot_asked.load();  // requests this snapshot answers
    std::unique_ptr<s3::ObjectWriter> w;
    std::unique_ptr<SnapshotWriter> sw;
    s3::Status st;
    bool wrong_place = false;
    ObjectHeader oh;
    uint32_t part_pages = 0, part = 0;  // part: the object being written, 1-based
    uint64_t part_base = 0, uploaded = 0, objects = 0;  // part_base: the checksum before its pages
    auto open_part = [&](uint32_t first) {
        part++;
        bool last = part == oh.part_count;
        oh.first_page = first;
        oh.body_len = uint64_t((last ? info->db_pages + 1 : first + part_pages) - first) * info->page_size;
        unsigned char hb[kHeaderSize];
        encode_header(oh, hb);
        std::string key = last ? snapshot_key(gen, txid, snap_ts) : snapshot_part_key(gen, txid, snap_ts, part);
        w = store_->open_writer(key, s3::PutOptions{true, "application/octet-stream"});
        sw = std::make_unique<SnapshotWriter>(w.get(), cfg_.zstd_level);
        part_base = sum->value();
        st = sw->raw(hb, sizeof hb);
    };
    bool read = read_state(limit, info, [&](uint32_t pg, const std::string& page) {
        if (!sw) {  // the header needs what read_state learned before the first page
            // A snapshot named for a transaction must hold exactly the state after it.
            if (limit != UINT32_MAX && (info->frame != limit || info->shm.salt2 != salt2_)) {
                wrong_place = true;
                return false;
            }
            oh.kind = ObjectKind::Snapshot;
            oh.flags = kFlagDbChecksum;
            oh.page_size = info->page_size;
            oh.generation = gen;
            oh.first_txid = oh.last_txid = txid;
            oh.first_ts_ms = oh.last_ts_ms = snap_ts;
            oh.db_pages = info->db_pages;
            oh.wal_salt1 = info->shm.salt1;
            oh.wal_salt2 = info->shm.salt2;
            oh.wal_frame = info->frame;
            oh.wal_cksum1 = info->cksum1;
            oh.wal_cksum2 = info->cksum2;
            snapshot_interrupted_ = false;
            snapshot_mark_ = pack_position(info->shm.salt2, info->frame);  // the frames after it are held
            snapshot_reading_ = true;
            part_pages = std::max<uint32_t>(1, uint32_t(cfg_.snapshot_part_bytes / info->page_size));
            oh.part_count = std::max<uint32_t>(1, (info->db_pages + part_pages - 1) / part_pages);
            open_part(1);
        } else if (st.ok() && part < oh.part_count && pg == part * part_pages + 1) {
            // A part is complete: its trailer carries the checksum of its own pages.
            st = sw->finish(sum->value() - part_base);
            uploaded += w->bytes_written();
            objects++;
            if (st.ok()) open_part(pg);
        }
        sum->set_page(pg, page.data(), page.size());
        if (st.ok()) st = sw->page(page.data(), page.size());
        return st.ok();
    });
    snapshot_reading_ = false;  // the read mark is released: nothing holds the WAL now
    if (read && sw && st.ok()) st = sw->finish(sum->value());  // the .snap object: the whole database's
    if (!read || !sw || !st.ok() || wrong_place) {
        if (w) w->abort();  // parts already up stay as leftovers that retention removes
        if (!st.ok()) {
            set_error(snapshot_interrupted_ ? "snapshot abandoned: the WAL grew past max_wal_size while the snapshot held it (" + st.str() + ")"
                                            : "snapshot upload to " + store_->describe() + " failed: " + st.str());
            backoff_ms_ = backoff_ms_ ? std::min(backoff_ms_ * 2, 30000) : 500;
            next_upload_ = Clock::now() + std::chrono::milliseconds(backoff_ms_);
        }
        return false;
    }
    uploaded += w->bytes_written();
    objects++;
    backoff_ms_ = 0;
    last_stamp_ = std::max(last_stamp_, snap_ts);  // later transactions are not named before it
    if (txid == 0) txid_ts_ = snap_ts;             // a generation's start: its time is the snapshot's
    last_snapshot_ms_ = now_ms();
    tail_snapshot_ = false;
    last_upload_ok_ = Clock::now();
    last_snapshot_txid_ = txid;
    levels_.clear();  // restores of later points start from this snapshot
    // Answers the requests made before this snapshot began.
    uint64_t done = side_.state()->snapshot_done.load();
    while (done < asked && !side_.state()->snapshot_done.compare_exchange_weak(done, asked)) {
    }
    side_.state()->shipped_seq.fetch_add(1);
    futex_wake(&side_.state()->shipped_seq);
    std::lock_guard<std::mutex> lock(mu_);
    stats_.snapshots++;
    stats_.uploads += objects;
    stats_.upload_bytes += uploaded;
    set_last_error_locked("");
    return true;
}

bool Shipper::start_generation(const std::string& why) {
    // Spill transactions held back for an upload with the live WAL's belong to this generation
    // (a new WAL's page size changed, say): up first, as they would have gone.
    resolve_deferred();
    // Restore takes the generation with the greatest id (its creation time in the high bits). A
    // clock behind the one that named an existing generation (a replacement host, a VM restored,
    // an NTP step) must not hide the new one behind it: its id then follows the greatest there.
    uint64_t gen = new_generation_id();
    auto listing = store_->list("generations/", "/");
    if (!listing.ok()) {
        set_error("listing " + store_->describe() + " failed: " + listing.error().str());
        backoff_ms_ = backoff_ms_ ? std::min(backoff_ms_ * 2, 30000) : 500;
        next_upload_ = Clock::now() + std::chrono::milliseconds(backoff_ms_);
        return false;
    }
    uint64_t newest = side_.state()->generation.load();
    for (const std::string& p : listing->common_prefixes) {
        std::string name = p.substr(0, p.size() - (p.empty() || p.back() != '/' ? 0 : 1));
        name = name.substr(name.rfind('/') + 1);
        if (auto id = parse_generation(name)) newest = std::max(newest, *id);
    }
    if (gen <= newest) gen = ((newest >> 16) + 1) << 16 | (gen & 0xffff);
    DbChecksum sum;
    StateInfo info;
    // needs_snapshot counts the WAL resets walship let through without shipping or spilling their
    // frames. One that happens after this read (while the snapshot uploads) leaves frames that the
    // snapshot does not hold and nothing recorded: the need stays, and the next pass snapshots again.
    uint64_t due = side_.state()->needs_snapshot.load();
    if (!write_snapshot(gen, 0, UINT32_MAX, &info, &sum)) return false;
    have_generation_ = true;
    have_checksum_ = true;
    generation_ = gen;
    txid_ = 0;
    adopt_position(info);
    checksum_ = sum;
    side_.state()->needs_snapshot.compare_exchange_strong(due, 0);
    spill_off_ = std::max(spill_off_, info.spill_len);  // the snapshot holds everything spilled before it
    spill_consumed();
    publish_position();
    {
        std::lock_guard<std::mutex> lock(mu_);
        set_unshipped_since_locked(0);
    }
    log_info("generation " + generation_name(gen) + " started (" + why + "): snapshot of " + std::to_string(info.db_pages) +
             " pages written to " + store_->describe());
    return true;
}

// A snapshot inside the current generation, exactly at the last shipped transaction.
bool Shipper::snapshot_in_generation(const std::string& why) {
    DbChecksum sum;
    StateInfo info;
    // Only at a transaction every connection can see (remote durability may have shipped frames
    // that the wal-index does not show yet).
    ShmHeader h;
    if (!read_header(&h) || h.mx_frame < frame_ || h.salt2 != salt2_) return false;
    if (!write_snapshot(generation_, txid_, frame_, &info, &sum)) return false;
    checksum_ = sum;
    have_checksum_ = true;
    log_info("snapshot of generation " + generation_name(generation_) + " at txid " + std::to_string(txid_) + " (" + why + "): " +
             std::to_string(info.db_pages) + " pages");
    return true;
}

// Uploads a segment. Compaction rides along: when a level already holds kFanout - 1 segments, the
// new segment absorbs them (one larger object, still one PUT) and they are deleted; this cascades
// up the levels, so restoring any point needs at most (kFanout - 1) segments per level.
bool Shipper::upload_segment(ObjectHeader oh, uint64_t body_len, std::string frames, uint64_t db_checksum) {
    std::vector<std::string> absorbed;
    if (frames.empty()) {
        set_error("zstd could not compress a segment");
        return false;
    }
    if (!snapshot_still_there()) return false;
    size_t level = 0;
    for (; level < levels_.size() && levels_[level].size() == kFanout - 1; level++) {
        uint64_t total = body_len;
        for (auto& item : levels_[level]) total += item.body_len;
        if (total > kMaxMergeBytes) break;  // this level is as large as segments get
        // The merged object's body is its parts' zstd frames in order: nothing is recompressed.
        std::string merged;
        for (auto& item : levels_[level]) {
            merged += item.frames;
            absorbed.push_back(item.key);
            oh.txn_count += item.txn_count;
            if (!(item.flags & kFlagDbChecksum)) oh.flags &= uint16_t(~kFlagDbChecksum);
        }
        oh.first_txid = levels_[level].front().first;
        oh.first_ts_ms = levels_[level].front().first_ts;
        merged += frames;
        frames.swap(merged);
        body_len = total;
    }
    std::string key = segment_key(generation_, oh.first_txid, oh.last_txid, oh.last_ts_ms);
    // Compaction keeps the compressed body of what it may merge later (at most kMaxMergeBytes).
    std::string kept = body_len <= kMaxMergeBytes ? frames : std::string();
    if (!upload(key, seal_segment(oh, body_len, std::move(frames), db_checksum))) return false;
    for (size_t l = 0; l < level && l < levels_.size(); l++) levels_[l].clear();
    if (levels_.size() <= level) levels_.resize(level + 1);
    if (levels_[level].size() >= kFanout - 1) levels_[level].clear();  // too large to merge further
    levels_[level].push_back({key, oh.first_txid, oh.first_ts_ms, oh.flags, oh.txn_count, body_len, std::move(kept)});
    // Keep the cache bounded: forget the largest level first (its objects simply stay as they are).
    auto cached = [&] {
        uint64_t n = 0;
        for (auto& l : levels_)
            for (auto& item : l) n += item.body_len;
        return n;
    };
    while (cached() > kMaxMergeBytes && !levels_.empty()) levels_.pop_back();
    if (!absorbed.empty()) {
        // Deleted after the position is published (maintain), not in front of a waiting commit.
        for (auto& k : absorbed) merged_away_.emplace_back(now_ms(), k);
        std::lock_guard<std::mutex> lock(mu_);
        stats_.compactions++;
    }
    return true;
}

// Deletes the segments that compaction merged into larger ones. A crash before this, or a failed
// delete, leaves them in the bucket, where they are redundant (restore prefers the merged object)
// until retention removes them.
void Shipper::delete_merged(bool at_end) {
    // Not while uploads fail (a request retrying against a dead store would hold up the next
    // upload). Not in front of a waiting commit, nor while remote-durable commits keep coming (the
    // next one would wait for the request): then in full batches, or once they pause.
    // A restore planned before the merge may still be about to read them: they stay for the
    // retention's grace period (5 minutes, or the retention if shorter), except at the last close.
    if (merged_away_.empty() || backoff_ms_ > 0) return;
    const int64_t grace = std::min<int64_t>(cfg_.retention_ms, 5 * 60 * 1000);
    size_t due = 0;
    while (due < merged_away_.size() && (at_end || merged_away_[due].first <= now_ms() - grace)) due++;
    if (due == 0) return;
    const bool remote = commit_waiting(side_.state()) || (last_remote_commit_ms_ && now_ms() - last_remote_commit_ms_ < kRemotePauseMs);
    if (!at_end && remote && due < kDeleteBatch) return;
    std::vector<std::string> keys;
    for (size_t i = 0; i < due; i++) keys.push_back(merged_away_[i].second);
    s3::Status st = store_->remove_many(keys);
    if (!st.ok()) log_warn("compaction: deleting merged segments failed (retention will retry): " + st.str());
    merged_away_.erase(merged_away_.begin(), merged_away_.begin() + long(due));
}

// Deletes what the retention window no longer needs (one listing, one batch delete).
void Shipper::run_retention() {
    auto listing = store_->list("generations/");
    if (!listing.ok()) {
        set_error("retention: listing " + store_->describe() + " failed: " + listing.error().str());
        return;
    }
    // Two databases must not share a location: a newer generation that is not ours means
    // another database (or a second copy of this one) is replicating here.
    uint64_t newest = 0;
    for (auto& o : listing->objects)
        if (auto k = parse_key(o.key)) newest = std::max(newest, k->gen);
    if (newest > generation_ && have_generation_) {
        set_error("another database is replicating to " + store_->describe() + " (its generation " + generation_name(newest) +
                  " is newer than this database's " + generation_name(generation_) + "); give each database its own replica location");
        return;  // and delete nothing
    }
    // Another writer in our own generation: a second host (or a copy of this database) that
    // restored from this location and continued the generation, so both append transactions with
    // the same txids. Seen from the listing: ranges one writer cannot produce (find_second_writer),
    // or an object past our txid other than the upload we may be retrying (it starts at txid_ + 1).
    // The writer that sees it moves to a new generation, so neither history mixes with the other's
    // from then on (and nothing is deleted on the strength of the mixed listing); the other then
    // sees a newer generation (above). Both say so until the setup is fixed.
    auto objects = parse_listing(listing->objects);
    if (have_generation_) {
        bool snapshot = false;
        for (auto& o : objects) snapshot = snapshot || (o.k.gen == generation_ && o.k.snapshot && !o.k.part);
        if (!snapshot) {
            set_error("the generation's snapshot is gone from " + store_->describe() + " (the store lost objects); starting a new generation");
            start_generation("the store lost the generation's snapshot");
            return;
        }
    }
    std::string foreign = have_generation_ ? find_second_writer(objects, generation_) : "";
    for (auto& o : objects) {
        if (!foreign.empty() || !have_generation_) break;
        if (o.k.gen == generation_ && (o.k.snapshot ? o.k.first > txid_ : (o.k.last > txid_ && o.k.first != txid_ + 1))) foreign = o.key;
    }
    if (!foreign.empty()) {
        set_error("another writer is appending to generation " + generation_name(generation_) + " in " + store_->describe() + " (" + foreign +
                  " was not written by this database, at txid " + std::to_string(txid_) + "); starting a new generation. Give each database its own replica location");
        start_generation("another writer shares the generation");
        return;
    }
    // A grace period keeps what a restore that started a little earlier may still be reading.
    int64_t grace = std::min<int64_t>(cfg_.retention_ms, 5 * 60 * 1000);
    auto drop = plan_retention(objects, now_ms() - cfg_.retention_ms - grace, generation_, now_ms() - grace);
    if (drop.empty()) return;
    s3::Status st = store_->remove_many(drop);
    if (!st.ok()) {
        set_error("retention: deleting from " + store_->describe() + " failed: " + st.str());
        return;
    }
    log_info("retention: deleted " + std::to_string(drop.size()) + " objects from " + store_->describe() + " (outside the " +
             std::to_string(cfg_.retention_ms / 1000) + " s window, or covered by merged segments)");
}

void Shipper::adopt_position(const StateInfo& info) {
    last_seen_mx_ = info.frame;
    ended_frame_ = 0;
    page_size_ = info.page_size;
    salt1_ = info.shm.salt1;
    salt2_ = info.shm.salt2;
    frame_ = info.frame;
    cksum1_ = info.cksum1;
    cksum2_ = info.cksum2;
    big_endian_ = info.big_endian;
    db_pages_ = info.db_pages;
    prev_commit_valid_ = false;
}

// After a restart: continue the newest generation when the local database provably continues
// it, so a restart costs a few requests instead of a new snapshot. Proof is either the WAL
// itself (same salts and the same cumulative checksum at the last shipped frame) or the state
// (the database checksum of the local state equals the replica's).
Shipper::Resume Shipper::try_resume() {
    auto gens = list_generations(*store_);
    if (!gens.ok()) {
        set_error("listing " + store_->describe() + " failed: " + gens.error().str());
        return Resume::Error;
    }
    const GenerationInfo* g = nullptr;
    for (auto& x : gens.value())
        if (x.complete) g = &x;
    not_continued_.clear();
    if (!g) return Resume::No;
    not_continued_ = "generation " + generation_name(g->id) + " (through txid " + std::to_string(g->last_txid) + ") does not continue from this database";
    if (opened_empty_no_restore_.exchange(false))
        log_warn("restore=off: " + cfg_.db_path + " was opened empty, and " + store_->describe() + " holds generation " + generation_name(g->id) +
                 " through txid " + std::to_string(g->last_txid) + ": the new generation of this database becomes the replica's latest state (walship restore gives it); the earlier one stays restorable with --generation " +
                 generation_name(g->id) + " until retention deletes it");
    // The object holding the newest transaction of that generation.
    auto listing = store_->list(generation_prefix(g->id));
    if (!listing.ok()) {
        set_error("listing " + store_->describe() + " failed: " + listing.error().str());
        return Resume::Error;
    }
    std::string key;
    uint64_t size = 0, best = 0;
    bool found = false;
    for (auto& o : listing->objects) {
        auto k = parse_key(o.key);
        if (!k || k->part || (found && k->last < best) || (found && k->last == best && !k->snapshot)) continue;
        key = o.key, size = o.size, best = k->last, found = true;
    }
    if (!found || size < kHeaderSize + kTrailerSize) return Resume::No;
    log_debug("resume: newest object is " + key);
    auto head = store_->get(key, s3::ByteRange{0, kHeaderSize});
    auto tail = store_->get(key, s3::ByteRange{size - kTrailerSize, kTrailerSize});
    if (!head.ok() || !tail.ok()) {
        set_error("reading " + key + " failed: " + (head.ok() ? tail.error().str() : head.error().str()));
        return Resume::Error;
    }
    ObjectHeader oh;
    if (!decode_header(reinterpret_cast<const unsigned char*>(head->data()), head->size(), &oh).empty() || tail->size() != kTrailerSize) return Resume::No;
    oh.db_checksum = get_u64le(reinterpret_cast<const unsigned char*>(tail->data()));
    bool have_sum = (oh.flags & kFlagDbChecksum) != 0;

    // Sampled before the wal-index header: every record up to here is of that WAL or an older one.
    SideState* side = side_.state();
    const uint64_t spill_len = side->spill_len.load();
    ShmHeader h;
    if (!read_header(&h)) return Resume::No;
    // Proof 1: the WAL still holds the replica's last frame.
    bool same_wal = oh.wal_frame > 0 && h.salt1 == oh.wal_salt1 && h.salt2 == oh.wal_salt2 && oh.wal_frame <= h.mx_frame;
    DbChecksum sum;
    StateInfo info;
    // The same two proofs through the spill file: a record holds the replica's last frame, or
    // starts the WAL that followed the replica's last one (whose reset walship allowed).
    bool in_spill = false;
    std::string err;
    log_debug("resume: the replica ends at frame " + std::to_string(oh.wal_frame) + " of WAL " + hex32(oh.wal_salt1) + "/" + hex32(oh.wal_salt2) +
              " (reset allowed: " + hex32(uint32_t(side->reset_allowed.load())) + "); the WAL is " + hex32(h.salt1) + "/" + hex32(h.salt2) + " with " + std::to_string(h.mx_frame) + " frames; spill " + std::to_string(spill_len) + " bytes");
    const uint64_t spill_off_before = spill_off_;
    if (!same_wal && oh.wal_frame > 0 && spill_len > 0 && open_spill(&err) >= 0) {
        SpillRecord r;
        for (uint64_t off = 0; !in_spill && read_spill_record(spill_fd_, off, spill_len, &r); off += r.size) {
            log_debug("resume: spill record " + hex32(r.salt1) + "/" + hex32(r.salt2) + " frames " + std::to_string(r.first) + ".." +
                      std::to_string(r.last));
            if (r.page_size != oh.page_size) continue;
            bool same = r.salt1 == oh.wal_salt1 && r.salt2 == oh.wal_salt2;
            // The replica's last frame just before the record (same checksum chain), or inside it
            // (the record repeats frames the shipper had shipped from the WAL), or at its end.
            bool before = same && r.first == oh.wal_frame + 1 && r.chain_in1 == oh.wal_cksum1 && r.chain_in2 == oh.wal_cksum2;
            bool inside = same && r.first <= oh.wal_frame && oh.wal_frame < r.last;
            bool at_end = same && r.last == oh.wal_frame && r.chain_out1 == oh.wal_cksum1 && r.chain_out2 == oh.wal_cksum2;
            bool follows = r.first == 1 && ((r.salt1 == oh.wal_salt1 + 1 && side->reset_allowed.load() == oh.wal_salt2) ||
                                            (side->shipped.load() == pack_position(r.salt2, 0) && side->generation.load() == g->id &&
                                             side->txid.load() == oh.last_txid));
            if (!before && !inside && !at_end && !follows) continue;
            bool in_record = before || inside || at_end;
            info.shm.salt1 = r.salt1;
            info.shm.salt2 = r.salt2;
            info.frame = in_record ? oh.wal_frame : 0;
            info.cksum1 = in_record ? oh.wal_cksum1 : 0;
            info.cksum2 = in_record ? oh.wal_cksum2 : 0;
            info.big_endian = r.big_endian;
            info.page_size = oh.page_size;
            info.db_pages = oh.db_pages;
            have_sum = false;
            in_spill = true;
            spill_off_ = off;
        }
        // The live WAL must continue the last record: the same WAL (the record repeats its
        // frames), or the one its reset started (a reset adds one to salt-1). Anything else (no
        // WAL, or one whose salts came from nowhere: plain SQLite opened the database after the
        // crash, checkpointed the WAL that followed the spill into the database and deleted it)
        // leaves transactions that neither the spill nor the WAL holds.
        SpillRecord last{};
        for (uint64_t off = spill_off_; in_spill && read_spill_record(spill_fd_, off, spill_len, &r); off += r.size) last = r;
        bool continues = (h.salt1 == last.salt1 && h.salt2 == last.salt2 && h.mx_frame >= last.last) || h.salt1 == last.salt1 + 1;
        if (!continues) {
            // Not the WAL the record's reset started, yet it may still follow the record: after a
            // crash SQLite's recovery shows a WAL without frames (cut to nothing by a TRUNCATE
            // checkpoint right after the record, or holding only the header of the next WAL) with
            // salts of 0, and the next writer starts a WAL with new random salts. What proves it
            // is the database file: the reset the record made possible found it holding every
            // frame up to the record's end, and it stays so until a checkpoint copies later frames
            // (none has: nothing is backfilled). The side file holds the file's device, inode,
            // size and change time as the last append found it: equal now, nothing wrote the file
            // since (a checkpoint by plain SQLite after the crash, a copy put back, even with its
            // old modification time, changes the change time or the inode).
            uint64_t fp[4] = {};
            continues = h.n_backfill == 0 && db_fingerprint(cfg_.db_path, fp) && same_fingerprint(side->spill_db, fp);
        }
        if (in_spill && !continues) {
            struct stat wal {}, db {}, spill {};
            int ws = ::stat((cfg_.db_path + "-wal").c_str(), &wal), ds = ::stat(cfg_.db_path.c_str(), &db), ss = ::stat(spill_path(cfg_.db_path).c_str(), &spill);
            log_debug("resume: wal stat " + std::to_string(ws) + " size " + std::to_string(wal.st_size) + ", db ctime " + std::to_string(db.st_ctim.tv_sec) + "." +
                      std::to_string(db.st_ctim.tv_nsec) + " (" + std::to_string(ds) + "), spill ctime " + std::to_string(spill.st_ctim.tv_sec) + "." +
                      std::to_string(spill.st_ctim.tv_nsec) + " (" + std::to_string(ss) + ")");
            log_debug("resume: the WAL " + hex32(h.salt1) + "/" + hex32(h.salt2) + " does not follow the spill file's last record (" +
                      hex32(last.salt1) + "/" + hex32(last.salt2) + " frames " + std::to_string(last.first) + ".." + std::to_string(last.last) + ")");
            in_spill = false;
            spill_off_ = spill_off_before;
            info = StateInfo{};
            have_sum = (oh.flags & kFlagDbChecksum) != 0;
        }
    }
    auto hash = [&](uint32_t pg, const std::string& page) {
        sum.set_page(pg, page.data(), page.size());
        return true;
    };
    if (in_spill) {
        log_debug("resume: the spill file continues the replica");
    } else if (same_wal) {
        // Reading the state at the replica's frame needs a reader slot marked there (or a free
        // one); commits waiting for this shipper (durability=remote, several processes) may hold
        // every slot at later marks until it ships. Then the WAL chain alone is the proof (below),
        // as when a checkpoint has copied past that frame.
        bool read = read_state(oh.wal_frame, &info, hash);
        if (!read && read_busy_) log_debug("resume: no reader slot for the state at frame " + std::to_string(oh.wal_frame) + "; proving by the WAL chain");
        if (read) {
            if (info.frame != oh.wal_frame || info.cksum1 != oh.wal_cksum1 || info.cksum2 != oh.wal_cksum2 || info.page_size != oh.page_size) return Resume::No;
            if (have_sum && sum.value() != oh.db_checksum) {
                // After a crash SQLite's recovery forgets how far the checkpoint had copied, so the
                // database file may hold later frames: the WAL chain is the proof, the database
                // checksum restarts at the next snapshot.
                log_debug("resume: WAL chain matches, database checksum not comparable");
                have_sum = false;
            } else if (!have_sum && info.shm.mx_frame == info.frame) {
                // The replica's last frame ends the WAL, so the state just read is exactly the
                // replica's: its checksum is known again (it was not, after a resume through the spill).
                have_sum = true;
            }
        } else {
            // The checkpoint already copied later frames: the WAL chain alone is the proof.
            // Verify it up to the replica's frame without reading the state.
            StateInfo chain;
            if (!verify_chain(oh.wal_frame, &chain) || chain.cksum1 != oh.wal_cksum1 || chain.cksum2 != oh.wal_cksum2) return Resume::No;
            info = chain;
            info.page_size = oh.page_size;
            info.db_pages = oh.db_pages;
            have_sum = false;
        }
    } else if (side->needs_snapshot.load() == 0 &&
               ((oh.wal_frame > 0 && side->reset_allowed.load() == oh.wal_salt2 && h.salt1 == oh.wal_salt1 + 1) ||
                (h.salt2 != oh.wal_salt2 && side->shipped.load() == pack_position(h.salt2, 0) && side->generation.load() == g->id &&
                 side->txid.load() == oh.last_txid))) {
        // Proof 3: walship allowed the reset of the replica's last WAL (so all of it was shipped)
        // and the current WAL directly follows it (a reset adds one to salt-1), or the last
        // shipper had shipped everything before the current WAL and moved on to it (the side file
        // says so, at the replica's last transaction): continue at its first frame. The database
        // checksum restarts at the next snapshot.
        info.shm = h;
        info.frame = 0;
        info.page_size = oh.page_size;
        info.db_pages = oh.db_pages;
        info.cksum1 = info.cksum2 = 0;
        have_sum = false;
        same_wal = true;
    } else {
        // Proof 2: the local state before the current WAL's frames (the database file), or the
        // whole local state, equals the replica's last state. Its checksum comes from the object,
        // or from the side file when the last shipper computed it at that same transaction.
        if (!have_sum && side->state_checksum_ok.load() && side->generation.load() == g->id && side->txid.load() == oh.last_txid) {
            oh.db_checksum = side->state_checksum.load();
            have_sum = true;
        }
        if (!have_sum) return Resume::No;
        bool read0 = read_state(0, &info, hash);
        if (!read0 && read_busy_) return Resume::Busy;
        bool equal = read0 && sum.value() == oh.db_checksum && info.page_size == oh.page_size;
        if (!equal) {
            log_debug("resume: database file " + std::string(read0 ? "differs (checksum " + std::to_string(sum.value()) + ")" : "not readable alone") +
                      "; comparing the whole local state");
            sum.reset();
            bool read = read_state(UINT32_MAX, &info, hash);
            if (!read && read_busy_) return Resume::Busy;
            equal = read && sum.value() == oh.db_checksum && info.page_size == oh.page_size;
        }
        if (!equal) {
            log_debug("resume: local state (frame " + std::to_string(info.frame) + ", checksum " + std::to_string(sum.value()) +
                      ") differs from " + key + " (checksum " + std::to_string(oh.db_checksum) + ")");
            return Resume::No;
        }
    }
    for (auto& o : listing->objects) {
        auto k = parse_key(o.key);
        if (k && k->snapshot && !k->part && k->first >= last_snapshot_txid_) {
            last_snapshot_txid_ = k->first;
            last_snapshot_ms_ = int64_t(k->ts_ms);
        }
        if (k && k->snapshot) note_snapshot_name(g->id, k->first, k->ts_ms);  // (parts too: an abandoned snapshot's)
    }
    // Compaction merges what one process uploads (it keeps the segments it merges in memory), so
    // processes that each live for a few commits leave a segment each: once kTailSegments follow
    // the newest snapshot, a snapshot is due at once, which bounds what a restore reads.
    size_t tail_segments = 0;
    for (auto& o : listing->objects) {
        auto k = parse_key(o.key);
        tail_segments += k && !k->snapshot && k->first > last_snapshot_txid_ ? 1 : 0;
    }
    if (tail_segments >= kTailSegments) {
        log_info(std::to_string(tail_segments) + " segments follow the newest snapshot of generation " + generation_name(g->id) + "; a snapshot is due");
        last_snapshot_ms_ = 0;
        tail_snapshot_ = true;  // (the reason the log gives)
    }
    have_generation_ = true;
    have_checksum_ = have_sum;
    generation_ = g->id;
    txid_ = oh.last_txid;
    last_stamp_ = std::max(last_stamp_, oh.last_ts_ms);
    txid_ts_ = oh.last_ts_ms;
    adopt_position(info);
    if (!in_spill) spill_off_ = std::max(spill_len, info.spill_len);  // older records than the WAL followed
    checksum_ = have_sum ? sum : DbChecksum();
    publish_position();
    // Records before spill_off_ are in the replica: say so, or they would count as unshipped for
    // good (a shipper that died after uploading them, before marking them), and every flush wait.
    spill_consumed();
    log_info("continuing generation " + generation_name(g->id) + " at txid " + std::to_string(txid_) + " (" +
             (in_spill ? "the spill file continues the replica" : same_wal ? "the WAL continues the replica" : "the database equals the replica") + ")");
    return Resume::Yes;
}

// Verifies the checksum chain of the WAL read through fd, frames 1..frames; on success *info has
// the WAL's salts and the chain at the last of them.
bool Shipper::walk_wal_chain(int fd, uint32_t frames, StateInfo* info) {
    unsigned char hdr[kWalHeaderSize];
    WalHeader wh;
    if (!pread_all(fd, hdr, sizeof hdr, 0) || !parse_wal_header(hdr, &wh)) return false;
    uint32_t c1 = wh.cksum1, c2 = wh.cksum2;
    const size_t fsz = kWalFrameHeaderSize + wh.page_size;
    std::string buf;
    for (uint32_t f = 0; f < frames;) {
        uint32_t n = std::min<uint32_t>(frames - f, uint32_t(std::max<size_t>(1, (1u << 20) / fsz)));
        buf.resize(size_t(n) * fsz);
        if (!pread_all(fd, &buf[0], buf.size(), off_t(kWalHeaderSize) + off_t(f) * off_t(fsz))) return false;
        for (uint32_t i = 0; i < n; i++) {
            const unsigned char* fr = reinterpret_cast<const unsigned char*>(buf.data()) + size_t(i) * fsz;
            WalFrameHeader fh = parse_frame_header(fr);
            wal_checksum(wh.big_endian_cksum(), fr, 8, &c1, &c2);
            wal_checksum(wh.big_endian_cksum(), fr + kWalFrameHeaderSize, wh.page_size, &c1, &c2);
            if (fh.salt1 != wh.salt1 || fh.salt2 != wh.salt2 || fh.cksum1 != c1 || fh.cksum2 != c2) return false;
        }
        f += n;
    }
    info->shm.salt1 = wh.salt1;
    info->shm.salt2 = wh.salt2;
    info->frame = frames;
    info->cksum1 = c1;
    info->cksum2 = c2;
    info->big_endian = wh.big_endian_cksum();
    return true;
}

bool Shipper::verify_chain(uint32_t frame, StateInfo* info) { return walk_wal_chain(wal_fd_, frame, info); }

}  // namespace walship

// The shipper: one per replicating database per process. It owns a background thread that reads
// committed transactions from the database's WAL (bounded by the wal-index header's mxFrame, so
// only committed frames are ever read), packs them into segments, compresses them with zstd and
// uploads them through a Store; a new generation starts with a consistent snapshot. The VFS
// (vfs.cpp) only notifies it of commits and asks it whether a WAL reset may go ahead.
//
// Only the process holding the ship lock (side file byte 0) uploads; it ships every process's
// commits because it reads them from the WAL. Other processes' shippers wait for the lock.
#pragma once

#include "sqlite.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config.h"
#include "format.h"
#include "sidefile.h"
#include "spill.h"
#include "wal.h"
#include "writeback.h"
#include "walship/s3/store.h"

namespace walship {

int open_presenting_wal(const std::string& path, sqlite3** db);  // vfs.cpp

// While walship's own short-lived connection to a database runs in this process (the shipper's
// switch to WAL mode, its checkpoint of a broken WAL), it may hold the wal-index's locks: the
// first user of a wal-index rebuilds it under all of them. An application connection that meets
// them gets SQLITE_BUSY_RECOVERY at once when it has no busy timeout, which without walship it
// would never have met; so its lock calls wait for these connections (vfs.cpp, shm_lock).
struct OwnConnection {
    OwnConnection() { active.fetch_add(1); }
    ~OwnConnection() { active.fetch_sub(1); }
    OwnConnection(const OwnConnection&) = delete;
    OwnConnection& operator=(const OwnConnection&) = delete;
    static inline std::atomic<int> active{0};
};

class Shipper {
public:
    // The shipper for cfg.db_path, created on first use. Fails (with a one-line message) when the
    // replica URL is invalid or already used by another database in this process.
    static std::shared_ptr<Shipper> acquire(sqlite3_vfs* base, const Config& cfg, std::string* error);
    // The shipper already replicating db_path in this process, if any.
    static std::shared_ptr<Shipper> running(const std::string& db_path);
    ~Shipper();

    const Config& config() const { return cfg_; }
    // This object was copied into a child process by fork(): it belongs to the parent.
    bool forked() const { return pid_ != ::getpid(); }
    // In a child of fork(): the copy lets go of the parent's locks, and does not count as the
    // shipping side (its thread does not exist here), so a connection used across the fork
    // against SQLite's advice fails its waits instead of waiting on nothing.
    void after_fork_in_child() {
        side_.reopen_after_fork();
        is_shipper_ = false;
    }

    // A connection of this process released the WAL write lock: a commit may be waiting.
    void notify();
    // A commit by this process: frames up to `frame` of the WAL with this salt-2 (side file slots).
    void record_commit(uint32_t salt2, uint32_t frame);
    // A remote-strict commit that the shipper shipped ahead of the wal-index now shows there.
    void commit_shown(uint32_t salt2, uint32_t frame, uint64_t cksum);
    // Wakes the shipper now (a WAL reset or a remote-durable commit is waiting).
    void wake();
    // Early write-back of the WAL (writeback.h), for this process's connections to the database.
    Writeback& writeback() { return writeback_; }
    // Asked by any connection about to reset the WAL (restart or truncate), holding the WAL's write
    // lock and reader slots 1..4: true if every committed frame of the current WAL is in the bucket
    // or now in the spill file (copied by this call), or the WAL passed its size cap.
    bool allow_wal_reset(const ShmHeader& h, const ShmRegion& region, const WalRead& wal);
    // Asked before a checkpoint: true once a shipper has a position in the current WAL (or the WAL
    // is empty or past its size cap).
    bool allow_checkpoint(const ShmHeader& h);
    // Waits until everything committed before the call is in the bucket. SQLITE_OK, or an error
    // code with *error set (timeout, store failing).
    int flush(int timeout_ms, std::string* error);
    // Committed frames not yet in the bucket (as far as the side file tells), in the WAL or the spill.
    bool unshipped(const ShmHeader* h) const;
    bool reached_target(const ShmHeader& now) const;  // see run(): a flush while another process ships
    // What is committed locally and not yet in the bucket.
    struct Pending {
        uint64_t frames = 0, bytes = 0, txns = 0;
    };
    // Another live process ships this database to a location other than this one's: the message.
    std::string foreign_replica();
    // What a flush that timed out still waits for, in a sentence (no secrets).
    std::string waiting_for();
    s3::StoreWait store_wait() const;
    int64_t oldest_unshipped_commit_ms() const;
    std::string store_wait_note() const;
    void set_unshipped_since_locked(int64_t ms);
    void publish_unshipped_since(int64_t ms);
    void set_last_error_locked(const std::string& e);
    void publish_error(const std::string& e);
    std::string last_error_locked() const;
    std::string last_error_note_locked() const;
    Pending count_pending(const volatile void* shm0);
    // PRAGMA walship_status, one JSON object; shm0 is the calling connection's wal-index (for what is pending).
    std::string status_json(const volatile void* shm0);
    // PRAGMA walship_snapshot: a snapshot of the current generation, taken by whichever process
    // ships, after this call began; waits for it. SQLITE_OK or an error with *error set.
    int snapshot(int timeout_ms, std::string* error);
    // The last connection of this process is closing: it waits close_timeout for the store in
    // all, from now (its flush, then any request still running when the shipper stops).
    void closing();
    bool snapshot_wanted() const;  // a snapshot was asked for and not yet written
    // Remote durability: waits until frames up to `frame` of the WAL with this salt2 are in the
    // bucket. `visible`: the commit is already visible (durability=remote, after the write lock is
    // released); else it is written but not visible yet and fails if this does (remote-strict).
    // SQLITE_OK or an error with *error set.
    int flush_through(uint32_t salt2, uint32_t frame, uint64_t cksum, bool visible, std::string* error);
    // True when the WAL holds committed frames that are not in the bucket (for xTruncate).
    bool wal_has_unshipped();
    // True when the replica's last object carries no database checksum, so only the WAL can prove
    // on the next open that the replica continues (keep it at close).
    bool wal_proves_continuity();
    // The WAL's checksum chain covers every frame the wal-index counts (read at close: a WAL that
    // SQLite's recovery would cut short must not be kept, see wal_chain_broken).
    bool wal_chain_intact(const ShmHeader& h);
    // Auto-restore: if the database file is still missing or empty (and has no WAL), restores it
    // from the replica. False with *error set when the replica cannot be read.
    bool restore_if_empty(std::string* error);
    // restore=off and the database file was empty at an open: if the replica has data, its new
    // generation (of an empty database) becomes the latest state: try_resume warns.
    void opened_empty_without_restore() { opened_empty_no_restore_ = true; }
    // A connection of this process takes (begin) or released (end) the database file's exclusive
    // lock: in WAL mode only the last connection's close does, to checkpoint without shm locks.
    // Consistent reads of the database wait meanwhile.
    void begin_exclusive() { state_mu_.lock(); }
    void end_exclusive() { state_mu_.unlock(); }

private:
    Shipper(sqlite3_vfs* base, Config cfg);
    bool start(const s3::Location& l, std::string* error);  // l: the replica URL, as acquire parsed it
    void run();
    void ship_pass(bool urgent);
    bool ship_spill(bool defer_last = false);
    bool resolve_deferred();
    int open_spill(std::string* error);
    void spill_consumed();
    void empty_spill_file(int fd);  // with the spill lock held: lengths to 0, then the file (fd < 0: lengths only)
    void enter_wal(uint32_t salt1, uint32_t salt2);
    bool wal_moved_on(const ShmHeader& now) const;
    bool wal_ended_cleanly(uint32_t salt1, uint32_t salt2, uint32_t frame, uint32_t ended, uint32_t seen, const ShmHeader* next,
                           uint32_t next_salt1) const;
    bool ship_txns(std::vector<Txn>& txns, uint32_t salt1, uint32_t salt2, uint32_t frame, uint32_t c1, uint32_t c2);
    bool open_handles();
    bool switch_to_wal();
    void close_handles();
    bool read_header(ShmHeader* h);
    bool snapshot_holds_wal_too_long();  // the store's interrupt (see start)
    uint64_t commit_time(uint32_t salt2, uint32_t frame);  // from the side file's commit slots
    // Copies the commit slots' times (the shipper thread, while paced and at each pass), so that
    // commits between uploads keep their own times rather than a later commit's.
    void harvest_commit_times();
    std::map<uint64_t, uint64_t> harvested_;  // (salt2 << 32 | commit frame) -> ms
    uint32_t harvested_seq_ = 0;              // the side file's commit_seq at the last harvest
    uint64_t stamp(uint64_t txid, uint32_t salt2, uint32_t frame);  // a transaction's time in the replica
    uint64_t last_stamp_ = 0;
    std::atomic<bool> snapshot_reading_{false};  // a snapshot reads under a read mark at:
    std::atomic<uint64_t> snapshot_mark_{0};      // (salt2 << 32) | the frame of that mark
    std::atomic<bool> snapshot_interrupted_{false};
    bool start_generation(const std::string& why);
    bool snapshot_in_generation(const std::string& why);
    bool upload_segment(ObjectHeader oh, uint64_t body_len, std::string frames, uint64_t db_checksum);
    void run_retention();
    void delete_merged(bool at_end);
    static constexpr int kHarvestMs = 500;  // how often a paced shipper copies the commit slots' times
    static constexpr int kShipLockRetryMs = 200;  // how often a process that does not ship tries the ship lock
    static constexpr int kUrgentRetryMs = 250;  // how often a flush or a waiting commit retries after a failure
    static constexpr int kCheckpointWaitMs = 500;  // how long a checkpoint waits for the shipper, once per WAL
    std::chrono::steady_clock::time_point urgent_retry_at() const;  // after a failure: 250 ms on, not the backoff
    bool commit_may_retry() const;
    void maintain();
    void recover_checksum();
    void wal_chain_broken(uint32_t salt2, uint32_t frame);
    void truncate_broken_wal();
    enum class Resume { Yes, No, Busy, Error };
    Resume try_resume();

    // A consistent state of the database as of WAL frame `frame` (the database file plus the
    // WAL's frames up to it), read while checkpoints and WAL resets are held off.
    struct StateInfo {
        ShmHeader shm;
        uint32_t frame = 0, page_size = 0, db_pages = 0, cksum1 = 0, cksum2 = 0;
        bool big_endian = false;
        uint64_t spill_len = 0;  // the spill's length then: its records are all older than this state
    };
    using PageFn = std::function<bool(uint32_t pgno, const std::string& page)>;
    bool read_state(uint32_t limit_frame, StateInfo* info, const PageFn& fn);
    bool wait_shipped(const std::function<bool()>& done, std::chrono::steady_clock::time_point deadline, bool take_over);
    static bool walk_wal_chain(int fd, uint32_t frames, StateInfo* info);  // verify_chain, wal_chain_intact
    bool verify_chain(uint32_t frame, StateInfo* info);
    int acquire_read_mark(uint32_t frame);
    bool read_busy_ = false;  // the last read_state failed for locks, not because the state is gone
    void adopt_position(const StateInfo& info);
    bool write_snapshot(uint64_t gen, uint64_t txid, uint32_t limit, StateInfo* info, DbChecksum* sum);
    bool ship_frames(const ShmHeader& h);
    bool chain_frame(const unsigned char* fr, uint32_t frame, uint32_t* c1, uint32_t* c2, WalFrameHeader* fh);
    bool upload(const std::string& key, const std::string& object);
    void upload_failed(const std::string& key, const s3::Status& st, const char* what = "upload of");  // the error, and backoff
    void uploaded(uint64_t bytes);  // stats and pacing after an upload
    bool snapshot_still_there();
    bool ship_large_txn(uint32_t from, uint32_t c1, uint32_t c2, uint32_t end);
    enum class Streamed { Shipped, StoreFailed, SourceChanged };
    using PagePut = std::function<bool(uint32_t pgno, const char* page)>;
    Streamed upload_txn_stream(uint32_t db_pages, uint32_t page_count, uint32_t salt1, uint32_t salt2, uint32_t frame,
                               uint32_t c1, uint32_t c2, const std::function<bool(const PagePut&)>& feed);
    Streamed ship_spill_record(const SpillRecord& r);
    bool check_speculative(const ShmHeader& visible, uint64_t through);
    bool ship_ahead(const ShmHeader& visible, const ShmHeader& h);
    void set_error(const std::string& e);
    void publish_position();

    sqlite3_vfs* base_;
    Config cfg_;
    std::string replica_;        // the replica location as processes compare it (see SideState::replica)
    uint64_t replica_hash_ = 0;
    std::string foreign_reported_;  // (the shipper thread's) the last foreign_replica() reported
    const pid_t pid_ = ::getpid();
    std::unique_ptr<s3::Store> store_;
    SideFile side_;

    std::thread thread_;
    Writeback writeback_;
    std::mutex mu_;
    std::condition_variable cv_, done_cv_;
    bool stop_ = false;
    bool exited_ = false;            // the thread has left its loop
    int64_t close_deadline_ms_ = 0;  // steady clock: when the last close stops waiting for the store
    std::atomic<bool> notified_{false};
    std::atomic<bool> idle_wait_{false};  // the shipper waits for commits (not paced)
    uint64_t flush_requested_ = 0, flush_done_ = 0;
    std::atomic<uint32_t> ckpt_waited_salt2_{0};  // the WAL for which a checkpoint waited for a position

    std::atomic<bool> is_shipper_{false};  // this process holds the ship lock (read by committers)

    // Shipper-thread state.
    uint32_t wake_seen_ = 0;
    uint64_t target_ticket_ = 0;  // the flush whose target_ is recorded (another process ships)
    ShmHeader target_{};
    uint64_t target_spill_ = 0;
    uint64_t flush_asked_seen_ = 0;  // the side file's flush_asked at the last pass
    sqlite3_file* db_ = nullptr;   // our own handle on the database through the base VFS
    sqlite3_filename name_ = nullptr;
    std::atomic<volatile void*> shm0_{nullptr};
    std::mutex restore_mu_;
    std::mutex state_mu_;
    std::mutex spill_mu_;  // with side file lock byte 2
    std::string spill_buf_;  // spill records are built here (under spill_mu_)
    int spill_fd_ = -1;
    int location_fd_ = -1;  // holds this database's claim on its replica location (claim_location)
    uint64_t spill_off_ = 0;     // shipper: the next spill record to read
    // The spill's last transactions, held back to go up in one object with the live WAL's that
    // follow them (one upload per interval, not two, when the WAL was reset between uploads).
    // The shipper's position is already past them; nothing is published until they are uploaded.
    struct Deferred {
        bool active = false;
        std::vector<Txn> txns;
        uint64_t bytes = 0, off = 0;  // their page bytes; the spill offset after them
        uint32_t s1 = 0, s2 = 0, frame = 0, c1 = 0, c2 = 0;  // the position after them
        // The position before them, taken back when their upload fails (the spill is read again).
        uint32_t p_salt1 = 0, p_salt2 = 0, p_frame = 0, p_c1 = 0, p_c2 = 0, p_ended = 0, p_seen = 0;
        bool p_big_endian = false, p_prev_valid = false;
    } deferred_;
    void take_back_deferred();
    uint32_t ended_frame_ = 0;   // shipper: the followed WAL was spilled through this frame at its reset
    int wal_fd_ = -1;
    ino_t wal_ino_ = 0;
    std::atomic<bool> have_generation_{false};  // (read by waiting_for in the application's thread)
    bool check_snapshot_ = false;
    std::chrono::steady_clock::time_point last_upload_ok_{};  // the last upload the store took
    static constexpr int kQuietCheckS = 60;  // after this long without one, the next segment checks the snapshot
    bool have_checksum_ = false;
    uint64_t generation_ = 0;
    uint64_t txid_ = 0;              // last shipped transaction
    uint32_t page_size_ = 0;
    uint32_t salt1_ = 0, salt2_ = 0; // the WAL being followed
    uint32_t frame_ = 0;             // last shipped frame of that WAL
    uint32_t last_seen_mx_ = 0;      // the largest mxFrame seen for that WAL
    uint32_t committed_mx_ = UINT32_MAX;  // while ship_frames runs: the wal-index's mxFrame when the pass began
    uint32_t cksum1_ = 0, cksum2_ = 0;  // WAL checksum chain at frame_
    bool big_endian_ = false;
    uint32_t db_pages_ = 0;
    DbChecksum checksum_;
    // The last commit frame shipped, to recognise synchronous=FULL padding frames after it.
    bool prev_commit_valid_ = false;
    uint32_t prev_pgno_ = 0, prev_commit_size_ = 0;
    std::string prev_page_;
    std::string wal_buf_;  // reading the live WAL, up to 1 MiB of frames at a time
    std::map<uint64_t, uint64_t> ts_by_txid_;  // commit times of transactions read but not yet shipped
    int64_t last_snapshot_ms_ = 0;
    bool tail_snapshot_ = false;  // the next scheduled snapshot is due for the segments after the last one
    int64_t next_checksum_try_ms_ = 0;
    uint64_t last_snapshot_txid_ = 0;
    std::atomic<bool> opened_empty_no_restore_{false};
    std::string not_continued_;  // try_resume's Resume::No: the generation it found, if any
    uint64_t txid_ts_ = 0;  // commit time of txid_ (0: not known, as at a generation's start)
    // The greatest (txid, time) any snapshot object of this generation was named with, complete or
    // not: a snapshot at the same txid takes a later time, so it never meets a leftover's name.
    struct SnapshotName {
        uint64_t gen = 0, txid = 0, ts = 0;
    } snapshot_name_used_;
    void note_snapshot_name(uint64_t gen, uint64_t txid, uint64_t ts);  // a name in use: keep the greatest
    std::chrono::steady_clock::time_point next_retention_{};
    // Compaction: recent segments per level, with their compressed bodies (zstd frames).
    struct CachedSegment {
        std::string key;
        uint64_t first, first_ts;
        uint16_t flags;
        uint32_t txn_count;
        uint64_t body_len;
        std::string frames;
    };
    static constexpr size_t kFanout = 8;
    static constexpr size_t kTailSegments = 64;  // segments after the newest snapshot that make one due at a resume
    static constexpr uint64_t kMaxMergeBytes = 32u << 20;
    std::vector<std::vector<CachedSegment>> levels_;
    std::vector<std::pair<int64_t, std::string>> merged_away_;  // absorbed by a merged segment (when), not yet deleted
    // Merged-away segments are deleted in one request per kDeleteBatch, or once remote-durable
    // commits have paused for kRemotePauseMs (a commit arriving during the request waits for it).
    static constexpr size_t kDeleteBatch = 1000;
    static constexpr uint64_t kTrimBytes = 16u << 20;  // a segment this large returns its heap after building
    static constexpr int64_t kRemotePauseMs = 2000;
    int64_t last_remote_commit_ms_ = 0;  // when a pass last found a remote-durable commit waiting
    // Group commit across processes (gather_commits): the side file's remote_asks when the last
    // upload for waiting commits began, how many it carried, when it answered, and a PUT's round
    // trip (moving average, microseconds).
    uint64_t asks_at_upload_ = 0, last_batch_ = 0;
    std::chrono::steady_clock::time_point confirmed_at_{};
    int64_t put_us_ = 0;
    void gather_commits();
    std::chrono::steady_clock::time_point next_upload_{};
    std::chrono::steady_clock::time_point pace_tat_{};  // pacing's theoretical arrival time (upload())
    std::chrono::steady_clock::time_point next_wal_switch_{};  // switch_to_wal failed: not before this
    int wal_switch_wait_ms_ = 0;
    // A resume found the database busy, or switch_to_wal failed: a flush retries not before this.
    std::chrono::steady_clock::time_point resume_retry_at_{};
    int backoff_ms_ = 0;
    uint32_t broken_salt2_ = 0;  // the WAL whose checksum chain breaks under committed frames (0: none)

    // Status, read by other threads under mu_.
    struct Stats {
        uint64_t uploads = 0, upload_bytes = 0, txns_shipped = 0, snapshots = 0, errors = 0, compactions = 0;
        uint64_t unconfirmed_commits = 0;  // durability=remote commits that timed out (committed locally)
        int64_t last_ship_ms = 0, oldest_unshipped_ms = 0, last_commit_ms = 0;
        std::string last_error;
    } stats_;
};

int64_t now_ms();

}  // namespace walship

// The "<db>-walship" side file: a small memory-mapped file (32 KiB) that every process using walship on a
// database shares. It says how far the WAL has been shipped (so any process's VFS can hold back a
// WAL reset that would discard unshipped frames) and carries three OFD locks: byte 0 is the ship
// lock (one process ships at a time; the lock dies with its holder), byte 1 serialises
// auto-restore, byte 2 serialises appending to and truncating the spill file.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "walship/s3/store.h"

namespace walship {

struct SideState {
    char magic[8];
    // (salt2 << 32) | frame: frames 1..frame of the WAL whose header has this salt2 are in the bucket.
    std::atomic<uint64_t> shipped;
    // salt2 of the last WAL whose reset walship allowed (so a shipper can tell walship's resets
    // from a foreign writer's).
    std::atomic<uint64_t> reset_allowed;
    std::atomic<uint64_t> shipper_pid;
    std::atomic<uint64_t> holding_since_ms;  // when a reset was first held back (0: none)
    std::atomic<uint64_t> needs_snapshot;    // 1: the WAL was reset under unshipped frames
    std::atomic<uint64_t> snapshotting;      // 1: a snapshot is being copied
    // Remote durability: a committing connection asks the shipper to ship through this position
    // (frames written but not yet visible in the wal-index).
    std::atomic<uint64_t> ship_through;
    // What the shipping process last put in the bucket, for walship_status in every process.
    std::atomic<uint64_t> generation;
    std::atomic<uint64_t> txid;
    std::atomic<uint64_t> last_ship_ms;
    // The spill file (spill.h): bytes of valid records, bytes whose frames the shipper has shipped,
    // and (salt2 << 32) | frame: frames 1..frame of that WAL are in the bucket or the spill.
    std::atomic<uint64_t> spill_len;
    std::atomic<uint64_t> spill_shipped;
    std::atomic<uint64_t> spilled;
    // The database checksum of the state at `txid` (when state_checksum_ok is 1): it proves, on the
    // next start, that a database equals the replica even when the replica's last object carries
    // no checksum (after a resume through the spill file).
    std::atomic<uint64_t> state_checksum;
    std::atomic<uint64_t> state_checksum_ok;
    // Futex words (shared between processes): `wake` is bumped to wake the shipping process's
    // thread (it sets shipper_idle while it waits for commits); `shipped_seq` is bumped whenever
    // `shipped` moves, for remote-durable commits waiting in any process (shipped_waiters > 0).
    std::atomic<uint32_t> wake;
    std::atomic<uint32_t> shipper_idle;
    std::atomic<uint32_t> shipped_seq;
    std::atomic<uint32_t> shipped_waiters;
    // PRAGMA walship_snapshot in any process bumps `snapshot_asked` (and `wake`); the shipping
    // process sets `snapshot_done` to the count it had read before the snapshot it then wrote
    // (and bumps `shipped_seq`), so each asker waits for a snapshot taken after its request.
    std::atomic<uint64_t> snapshot_asked;
    std::atomic<uint64_t> snapshot_done;
    // Bumped by a flush in a process that does not ship: the shipping process's next pass then
    // ships at once instead of at its interval.
    std::atomic<uint64_t> flush_asked;
    // Frames shipped ahead of the wal-index for a remote-durable commit not yet visible (its
    // connection waits in the WAL sync): (salt2 << 32) | the commit frame shipped, and that
    // frame's WAL checksum (cksum1 << 32 | cksum2; 0 while its upload runs). Until the commit
    // shows in the wal-index, only the committer whose frame and checksum these are counts as
    // shipped: if it died, another commit may rewrite the same frames (see check_speculative).
    std::atomic<uint64_t> spec_pos;
    std::atomic<uint64_t> spec_cksum;
    // (salt2 << 32) | frame of another commit that asked for frames under that mark: the marked
    // committer released the write lock without its commit showing, so it died or failed.
    std::atomic<uint64_t> spec_rival;
    // Commit times as an older walship wrote them (one slot per commit, 64 slots): no longer
    // written or read; kept so that the fields after them stay where older processes look.
    static constexpr int kOldCommitSlots = 64;
    std::atomic<uint32_t> old_commit_next;
    std::atomic<uint64_t> old_commit_key[kOldCommitSlots];
    std::atomic<uint64_t> old_commit_ms[kOldCommitSlots];
    // Where the process holding the ship lock replicates to: a hash of the bucket and prefix (or
    // the directory), and its URL (Location::url(), NUL-terminated) for messages; written when it
    // takes the lock (the hash is 0 while the text changes). A process naming another bucket or
    // prefix refuses to open the database while that shipper lives: its commits would go to the
    // other one. (Zero in an older file: not known.)
    std::atomic<uint64_t> replica_hash;
    char replica[1024];
    // The database file as the last spill append found it (device, inode, size, change time in
    // ns): the reset that append allowed left the file holding every frame up to the record's end.
    // A resume after a crash compares the file with it to tell that no checkpoint (of plain SQLite,
    // say) wrote it since. (Zero in an older file: never equal.)
    std::atomic<uint64_t> spill_db[4];
    // durability=remote commits that asked (flush_through), counted: the shipper waits a moment for
    // the committers its last upload answered to come back with their next commits, so that one
    // upload carries them all (gather_commits). (Zero in an older file.)
    std::atomic<uint64_t> remote_asks;
    // When transactions committed, one slot per millisecond: a commit through walship, under the
    // WAL write lock (one writer at a time), writes (salt2 << 32) | its commit frame and the wall
    // clock (ms) into the current slot if that slot is of the same millisecond and WAL (so the
    // slot ends up naming that millisecond's last commit), else into the next slot (its key is
    // cleared while it changes). The shipper stamps each transaction it ships with the time of the
    // first slot at or after it in its WAL, which is its own millisecond at any commit rate, so a
    // point-in-time restore lands on commits, not on when the shipper read them. 1,024 slots hold
    // at least 1,024 ms: a paced shipper copies them every kHarvestMs (500). `commit_seq` counts
    // the writes, so an unchanged ring is not copied again. (Zero in a file an older walship
    // made; such a walship writes only the old slots above, and the shipper stamps its commits
    // with the next time it knows in the same WAL, or its own clock.)
    // (A slot's two words share a cache line: a commit touches one page of the ring, not two.)
    static constexpr int kCommitSlots = 1024;
    struct CommitSlot {
        std::atomic<uint64_t> key;
        std::atomic<uint64_t> ms;
    };
    std::atomic<uint32_t> commit_next;
    std::atomic<uint32_t> commit_seq;
    CommitSlot commit_slots[kCommitSlots];
    // The shipping process's last error, for walship_status and timeout messages in every process
    // (a gunicorn worker that does not ship answers a health check too): NUL-terminated, no
    // secrets, "" once uploads succeed again. Written under `error_seq` (odd while the text
    // changes); a process that takes the ship lock writes its own (usually ""). (Zero in a file an
    // older walship made; written only where the file could grow, as the commit slots.)
    std::atomic<uint32_t> error_seq;
    char shipper_error[1020];
    // The rest of what walship_status reports of the shipping process in every process: when the
    // oldest transaction it has not shipped was committed, as it saw it (wall clock ms; 0: none
    // unshipped), for lag_ms; and what its store's requests wait on (store_stalled_ms,
    // store_retrying). Written by the process holding the ship lock, cleared when it lets go; a
    // process taking the lock writes its own. (Zero in a file an older walship made; written only
    // where the file could grow, as the commit slots.)
    std::atomic<int64_t> shipper_unshipped_since_ms;
    s3::SharedWait shipper_wait;
    // The database file (as spill_db) when walship last allowed a WAL reset with everything shipped,
    // and that WAL's salt-2 (0 while it changes): the shipper follows to a next WAL whose salts
    // are new random ones only when nothing wrote the file since (see wal_ended_cleanly). (Zero in
    // a file an older walship made: not known; written only where the file could grow.)
    std::atomic<uint64_t> reset_db[4];
    std::atomic<uint64_t> reset_db_salt2;
};

constexpr char kSideMagic[8] = {'W', 'S', 'H', 'P', 'S', 'I', 'D', '6'};

// Waits until *word != seen, a wake, or timeout_ms; wakes every waiter on *word (any process).
void futex_wait(std::atomic<uint32_t>* word, uint32_t seen, int timeout_ms);
void futex_wait_us(std::atomic<uint32_t>* word, uint32_t seen, int64_t timeout_us);
void futex_wake(std::atomic<uint32_t>* word);

inline uint64_t pack_position(uint32_t salt2, uint32_t frame) { return uint64_t(salt2) << 32 | frame; }

class SideFile {
public:
    SideFile() = default;
    ~SideFile();
    SideFile(const SideFile&) = delete;
    SideFile& operator=(const SideFile&) = delete;

    bool open(const std::string& db_path, std::string* error);
    SideState* state() const { return state_; }
    // False when the file's commit slots could not be allocated (a full disk): see open().
    bool commit_slots() const { return commit_slots_; }
    const std::string& alloc_error() const { return alloc_error_; }

    enum LockByte { kShipLock = 0, kRestoreLock = 1, kSpillLock = 2 };
    bool try_lock(LockByte b);
    void lock_wait(LockByte b);
    void unlock(LockByte b);
    bool held_elsewhere(LockByte b);  // another open file description holds the lock
    void reopen_after_fork();         // in a child of fork(): see sidefile.cpp
    // Whether a process holds one of the side file's locks (ships, restores or spills) for db_path.
    static bool in_use(const std::string& db_path);
    // Which process has the database open, as far as locks show ("" when none): a walship process
    // (the side file's locks), a connection in WAL mode (its locks on the -shm file and on the
    // database), a transaction. Call it from a process that holds no lock on these files.
    static std::string open_elsewhere(const std::string& db_path);

private:
    int fd_ = -1;
    SideState* state_ = nullptr;
    bool commit_slots_ = true;
    std::string alloc_error_;
};

}  // namespace walship

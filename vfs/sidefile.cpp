// The shared side file (see sidefile.h).
#include "sidefile.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <new>
#include <string>

namespace walship {

// An older walship made and mapped 4 KiB; the fields it knows keep their places, and the file
// grows (with zeros) when a newer one opens it.
static constexpr size_t kOldSideSize = 4096;
static constexpr size_t kSideSize = 32768;
static_assert(sizeof(SideState) <= kSideSize, "the side file maps 32 KiB");

SideFile::~SideFile() {
    if (state_) munmap(state_, kSideSize);
    if (fd_ >= 0) ::close(fd_);
}

bool SideFile::open(const std::string& db_path, std::string* error) {
    std::string path = db_path + "-walship";
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) {
        *error = "walship: cannot open " + path + ": " + strerror(errno);
        return false;
    }
    lock_wait(kRestoreLock);  // serialise initialisation
    off_t size = lseek(fd_, 0, SEEK_END);
    if (size < off_t(kSideSize) && ftruncate(fd_, kSideSize) != 0) {
        *error = "walship: cannot size " + path + ": " + strerror(errno);
        unlock(kRestoreLock);
        return false;
    }
    // Blocks for the whole file before it is mapped: a store into a mapped page that the file
    // system cannot back (a full disk) is SIGBUS, not an error. A file an older walship made
    // (4 KiB, all written) may not grow: then this process leaves the new part alone (no commit
    // slots: the shipper stamps commits with later ones' times, or its own clock).
    // (fallocate itself, not posix_fallocate: where the file system has no fallocate, glibc's
    // stand-in writes a byte into each block, which could overwrite what another process just
    // stored there; such a file stays as before, sparse.)
    if (int e = fallocate(fd_, 0, 0, off_t(kSideSize)) == 0 ? 0 : errno; e != 0 && e != EOPNOTSUPP && e != ENOSYS) {
        char magic[8] = {};
        if (size >= off_t(kOldSideSize) && pread(fd_, magic, 8, 0) == 8 && memcmp(magic, kSideMagic, 8) == 0) {
            commit_slots_ = false;
            alloc_error_ = strerror(e);
        } else {
            *error = "walship: cannot allocate " + path + " (" + std::to_string(kSideSize / 1024) + " KiB): " + strerror(e);
            unlock(kRestoreLock);
            return false;
        }
    }
    void* p = mmap(nullptr, kSideSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) {
        *error = "walship: cannot map " + path + ": " + strerror(errno);
        unlock(kRestoreLock);
        return false;
    }
    state_ = static_cast<SideState*>(p);
    if (memcmp(state_->magic, kSideMagic, 8) != 0) {
        // New or unrecognised: start from nothing shipped.
        memset(p, 0, sizeof(SideState));
        new (p) SideState{};
        memcpy(state_->magic, kSideMagic, 8);
        msync(p, kSideSize, MS_SYNC);
    }
    unlock(kRestoreLock);
    return true;
}

// A child of fork() inherits the descriptor and the mapping, both references to the parent's open
// file description, which keeps its OFD locks while any reference lives: the child would hold the
// parent's ship lock after the parent died (a daemon's parent that exits after forking), and no
// process would ship again. The child's copy moves to a description of its own, which holds no
// lock: the descriptor by dup3, the mapping by mapping the same file again at the same address
// (the same pages). Called from an atfork handler: system calls only.
void SideFile::reopen_after_fork() {
    if (fd_ < 0) return;
    // The same file through /proc/self/fd (not by path: it may have been replaced); digits by hand.
    char proc[32] = "/proc/self/fd/";
    char digits[12];
    int n = 0;
    for (unsigned v = unsigned(fd_); n == 0 || v; v /= 10) digits[n++] = char('0' + v % 10);
    for (size_t at = strlen(proc); n > 0;) proc[at++] = digits[--n];
    int fd = ::open(proc, O_RDWR | O_CLOEXEC);
    if (fd < 0) return;
    if (state_ && mmap(state_, kSideSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
        ::close(fd);
        return;
    }
    dup3(fd, fd_, O_CLOEXEC);
    ::close(fd);
}

static struct flock lock_byte(int byte, short type) {
    struct flock fl {};
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = 1024 + byte;  // outside the mapped state's hot bytes; any offset works
    fl.l_len = 1;
    return fl;
}

static bool ofd_lock(int fd, int byte, short type, bool wait) {
    struct flock fl = lock_byte(byte, type);
    for (;;) {
        if (fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl) == 0) return true;
        if (errno == EINTR) continue;
        return false;
    }
}

// Shared (not FUTEX_PRIVATE) futexes: the words live in a MAP_SHARED file mapping.
void futex_wait_us(std::atomic<uint32_t>* word, uint32_t seen, int64_t timeout_us) {
    struct timespec ts {time_t(timeout_us / 1000000), long(timeout_us % 1000000) * 1000L};
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, seen, &ts, nullptr, 0);
}

void futex_wait(std::atomic<uint32_t>* word, uint32_t seen, int timeout_ms) { futex_wait_us(word, seen, int64_t(timeout_ms) * 1000); }

void futex_wake(std::atomic<uint32_t>* word) {
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

bool SideFile::try_lock(LockByte b) { return ofd_lock(fd_, b, F_WRLCK, false); }
void SideFile::lock_wait(LockByte b) { ofd_lock(fd_, b, F_WRLCK, true); }
void SideFile::unlock(LockByte b) { ofd_lock(fd_, b, F_UNLCK, false); }

// Whether another open file description than fd's holds the lock byte (an error: assume held).
static bool ofd_held(int fd, int byte) {
    struct flock fl = lock_byte(byte, F_WRLCK);
    return fcntl(fd, F_OFD_GETLK, &fl) != 0 || fl.l_type != F_UNLCK;
}

bool SideFile::in_use(const std::string& db_path) {
    int fd = ::open((db_path + "-walship").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool held = ofd_held(fd, kShipLock) || ofd_held(fd, kRestoreLock) || ofd_held(fd, kSpillLock);
    ::close(fd);
    return held;
}

// Who holds a lock on [start, start + len) of path ("" when nobody does, or path is missing).
static std::string lock_holder(const std::string& path, off_t start, off_t len) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // (not waiting on a FIFO)
    if (fd < 0) return "";
    struct flock fl {};
    fl.l_type = F_WRLCK, fl.l_whence = SEEK_SET, fl.l_start = start, fl.l_len = len;
    const bool held = fcntl(fd, F_OFD_GETLK, &fl) != 0 || fl.l_type != F_UNLCK;
    ::close(fd);
    if (!held) return "";
    return (fl.l_pid > 0 ? "process " + std::to_string(fl.l_pid) : std::string("a process")) + " holds a lock on " + path;
}

std::string SideFile::open_elsewhere(const std::string& db_path) {
    if (in_use(db_path)) return "a walship process holds a lock on " + db_path + "-walship";
    // SQLite's unix VFS: the -shm file's DMS byte (held shared while a connection has the
    // wal-index open) and the database's PENDING, RESERVED and SHARED bytes (a WAL-mode connection
    // keeps its SHARED lock while open; in rollback mode, while a transaction runs).
    std::string who = lock_holder(db_path + "-shm", 128, 1);
    if (who.empty()) who = lock_holder(db_path, 0x40000000, 512);
    return who;
}

bool SideFile::held_elsewhere(LockByte b) { return ofd_held(fd_, b); }

}  // namespace walship

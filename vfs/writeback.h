// Early write-back of the WAL.
//
// With synchronous=NORMAL SQLite syncs the WAL only at a checkpoint, and that fsync writes out
// everything written since the last one (about 4 MB at the default 1,000 pages) while the
// application's thread waits: in a burst of small transactions on the test machine's disk, over
// a quarter of plain SQLite's time (docs/DESIGN.md). A replicating connection asks for a sync each
// time its WAL has grown by kChunk; this thread does them, so the checkpoint's own fsync finds
// little left to write.
// It only makes data durable sooner: nothing is written that that fsync would not have written.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace walship {

class Writeback {
public:
    static constexpr int64_t kChunk = 1 << 20;

    Writeback() = default;
    Writeback(const Writeback&) = delete;
    Writeback& operator=(const Writeback&) = delete;
    ~Writeback();

    // Syncs the file fd refers to (fdatasync) on this object's thread, started on first use. Takes
    // fd, a duplicate the caller made, and closes it. When a sync is already waiting to start it
    // covers this one's data: fd is closed and nothing more is done. Not for a child of fork():
    // the thread is not there (the caller asks Shipper::forked(), whose copy the child never uses).
    void request(int fd) noexcept;
    // Syncs done so far (walship_status: wal_writebacks).
    uint64_t done() const { return done_.load(std::memory_order_relaxed); }

private:
    void run();

    std::mutex mu_;
    std::condition_variable cv_;
    int fd_ = -1;  // waiting to be synced
    bool stop_ = false;
    std::atomic<uint64_t> done_{0};
    std::thread thread_;
};

}  // namespace walship

#include "writeback.h"

#include <unistd.h>

namespace walship {

Writeback::~Writeback() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
}

void Writeback::request(int fd) noexcept {
    try {
        std::lock_guard<std::mutex> lock(mu_);
        if (fd_ >= 0 || stop_) {
            ::close(fd);
            return;
        }
        if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
        fd_ = fd;
    } catch (...) {  // no thread: the checkpoint syncs as it always does
        ::close(fd);
        return;
    }
    cv_.notify_one();
}

void Writeback::run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
        cv_.wait(lock, [&] { return stop_ || fd_ >= 0; });
        if (stop_) return;
        const int fd = fd_;
        fd_ = -1;
        lock.unlock();
        // A failure is not ours to report: the checkpoint's own fsync meets the same error and
        // SQLite reports it there.
        ::fdatasync(fd);
        ::close(fd);
        done_.fetch_add(1, std::memory_order_relaxed);
        lock.lock();
    }
}

}  // namespace walship

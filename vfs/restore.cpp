// Restore (see restore.h and docs/FORMAT.md, "Restoring"): pick a generation and a snapshot,
// chain segments from it without gaps, download segments in parallel and apply them in order to a
// temporary file, verifying every object checksum and the database checksum as it goes.
#include "restore.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <deque>
#include <future>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <thread>

#include "config.h"
#include "fileio.h"
#include "format.h"
#include "sidefile.h"

namespace walship {

using s3::ErrorKind;
using s3::make_error;

namespace {

const char* const kNoReplicaData = "NoReplicaData";  // the error code of "the location holds no walship data"

struct Plan {
    uint64_t generation = 0;
    std::string snapshot_key;
    std::vector<std::string> part_keys;  // the snapshot's other parts, in order (FORMAT.md)
    uint64_t snapshot_txid = 0;
    std::vector<std::string> segment_keys;
    std::vector<uint64_t> segment_sizes;  // their sizes in the listing
    uint64_t last_txid = 0;  // last txid available in the chain
};

s3::Error corrupt(const std::string& key, const std::string& what) {
    return make_error(ErrorKind::Corrupt, "restore: " + key + ": " + what);
}

// Writes runs of pages on a second thread while the caller decompresses and hashes the next ones.
// Runs live in a few buffers aligned for O_DIRECT: a restore writes the file once and never reads
// it back, so copying every page into the page cache only costs CPU (most of a restore's, on a
// small machine) that the download and decompression need. Runs that are not block-aligned, and
// file systems without O_DIRECT, go through the page cache with early writeback.
class AsyncWriter {
public:
    static constexpr size_t kRun = 1u << 20;  // a multiple of every SQLite page size
    AsyncWriter(int fd, const std::string& path) : fd_(fd), path_(path) {
        direct_fd_ = ::open(path.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
        for (size_t i = 0; i < kBuffers; i++) {
            void* b = nullptr;
            if (posix_memalign(&b, kAlign, kRun) != 0) throw std::bad_alloc();
            all_.push_back(static_cast<char*>(b));
            free_.push_back(static_cast<char*>(b));
        }
    }
    ~AsyncWriter() {
        finish();
        for (char* b : all_) ::free(b);
        if (direct_fd_ >= 0) ::close(direct_fd_);
    }
    // A free buffer of kRun bytes (waits while all are queued); nullptr once a write has failed.
    char* buffer() {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return !free_.empty() || !error_.empty(); });
        if (!error_.empty()) return nullptr;
        char* b = free_.back();
        free_.pop_back();
        return b;
    }
    // Queues len bytes of a buffer from buffer() for offset `at`; it returns to the pool once
    // written. False once a write has failed.
    bool write(char* buf, size_t len, off_t at) {
        std::unique_lock<std::mutex> lock(mu_);
        if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
        queue_.push_back({buf, len, at});
        pending_++;
        cv_.notify_all();
        return error_.empty();
    }
    // Returns a buffer from buffer() that will not be written.
    void release(char* buf) {
        std::lock_guard<std::mutex> lock(mu_);
        free_.push_back(buf);
        cv_.notify_all();
    }
    // Waits until everything queued so far is written: "" or the error.
    std::string wait() {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return pending_ == 0; });
        return error_;
    }

private:
    // Writes what is queued, then stops the writing thread.
    void finish() {
        {
            std::lock_guard<std::mutex> lock(mu_);
            done_ = true;
        }
        cv_.notify_all();
        if (thread_.joinable()) thread_.join();
    }

    static constexpr size_t kBuffers = 6, kAlign = 4096;
    struct Run {
        char* buf;
        size_t len;
        off_t at;
    };

    void run() {
        std::unique_lock<std::mutex> lock(mu_);
        for (;;) {
            cv_.wait(lock, [&] { return !queue_.empty() || done_; });
            if (queue_.empty()) return;
            Run r = queue_.front();
            queue_.pop_front();
            bool failed = !error_.empty();
            lock.unlock();
            std::string err;
            if (!failed && !put(r)) err = "restore: writing " + path_ + " failed: " + strerror(errno);
            lock.lock();
            pending_--;
            free_.push_back(r.buf);
            if (!err.empty() && error_.empty()) error_ = err;
            cv_.notify_all();
        }
    }

    bool put(const Run& r) {
        if (direct_fd_ >= 0 && r.at % off_t(kAlign) == 0 && r.len % kAlign == 0) {
            if (pwrite_all(direct_fd_, r.buf, r.len, r.at)) return true;
            if (errno != EINVAL) return false;
            ::close(direct_fd_);  // the file system takes O_DIRECT opens but not the writes
            direct_fd_ = -1;
        }
        if (!pwrite_all(fd_, r.buf, r.len, r.at)) return false;
        // Start writing back to disk now, so the final fsync has little left to do.
        buffered_ += r.len;
        if (buffered_ >= (32u << 20)) {
            sync_file_range(fd_, 0, 0, SYNC_FILE_RANGE_WRITE);
            buffered_ = 0;
        }
        return true;
    }

    int fd_, direct_fd_ = -1;  // direct_fd_: writer thread only, after construction
    std::string path_;
    size_t buffered_ = 0;      // writer thread only
    std::vector<char*> all_, free_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Run> queue_;
    size_t pending_ = 0;  // runs queued and not yet written
    bool done_ = false;
    std::string error_;
    std::thread thread_;
};

// Allocates the restored file's blocks once, when the first snapshot header read gives the
// database's size: a full disk fails the restore before it downloads anything, and on ext4 the
// writing threads' O_DIRECT writes then go into allocated blocks side by side instead of taking
// turns to allocate them. File systems without fallocate just write.
class Allocation {
public:
    Allocation(int fd, const std::string& path) : fd_(fd), path_(path) {}
    const s3::Error& ensure(uint64_t bytes) {
        std::call_once(once_, [&] {
            if (bytes > 0 && fallocate(fd_, 0, 0, off_t(bytes)) != 0 && (errno == ENOSPC || errno == EFBIG || errno == EDQUOT))
                error_ = make_error(ErrorKind::Io, "restore: cannot allocate " + std::to_string(bytes) + " bytes (the snapshot's size) for " + path_ + ": " + strerror(errno));
        });
        return error_;
    }

private:
    int fd_;
    std::string path_;
    std::once_flag once_;
    s3::Error error_;
};

// Passes an object's bytes, fed in pieces, to `consume`, holding back in *held the last
// kTrailerSize seen so far (the trailer, checked once the object ends).
template <typename Consume>
bool feed_before_trailer(std::string* held, const char* p, size_t n, const Consume& consume) {
    if (held->size() + n <= kTrailerSize) {
        held->append(p, n);
        return true;
    }
    size_t usable = held->size() + n - kTrailerSize;
    size_t from_held = std::min(usable, held->size());
    if (from_held && !consume(held->data(), from_held)) return false;
    held->erase(0, from_held);
    size_t from_p = usable - from_held;
    if (from_p && !consume(p, from_p)) return false;
    held->append(p + from_p, n - from_p);
    return true;
}

// Receives one object of a snapshot in chunks: verifies its header and trailer, decompresses
// its pages straight into the writer's run buffers at their place in the file, and hashes them.
// The writer and the zstd context serve one object after another (their memory is set up once).
class SnapshotApplier {
public:
    SnapshotApplier(AsyncWriter& writer, Allocation& allocation, ZSTD_DCtx* dctx, const std::string& key, DbChecksum* sum)
        : writer_(writer), allocation_(allocation), key_(key), sum_(sum), dctx_(dctx) {
        ZSTD_DCtx_reset(dctx_, ZSTD_reset_session_only);
    }
    ~SnapshotApplier() {
        if (run_) writer_.release(run_);
    }
    // The object's bytes in order; the last kTrailerSize seen so far are held back (the trailer).
    bool feed(const char* p, size_t n) {
        return feed_before_trailer(&held_, p, n, [this](const char* q, size_t m) { return consume(q, m); });
    }
    s3::Error finish(ObjectHeader* out) {
        if (error_.ok() && run_len_ > 0) flush_run();
        std::string werr = writer_.wait();  // the snapshot is on disk before any segment applies
        if (error_.ok() && !werr.empty()) error_ = make_error(ErrorKind::Io, werr);
        if (!error_.ok()) return error_;
        if (!have_header_ || held_.size() != kTrailerSize) return corrupt(key_, "object is truncated");
        digest_.update(held_.data(), 8);
        if (digest_.value() != held_.substr(8)) return corrupt(key_, "checksum mismatch (object is corrupted)");
        if (!stream_done_ || left_ != 0 || run_len_ != 0) return corrupt(key_, "snapshot body is incomplete");
        *out = h_;
        out->db_checksum = get_u64le(reinterpret_cast<const unsigned char*>(held_.data()));  // checked by the caller
        return {};
    }
    const s3::Error& error() const { return error_; }
    // Waits for the writes queued so far (before the file is closed on any path).
    void drain() { writer_.wait(); }

private:
    bool consume(const char* p, size_t n) {
        if (!error_.ok()) return false;
        digest_.update(p, n);
        if (!have_header_) {
            size_t take = std::min(n, kHeaderSize - hdr_.size());
            hdr_.append(p, take);
            p += take;
            n -= take;
            if (hdr_.size() < kHeaderSize) return true;
            std::string err = decode_header(reinterpret_cast<const unsigned char*>(hdr_.data()), kHeaderSize, &h_);
            if (err.empty() && h_.kind != ObjectKind::Snapshot) err = "not a snapshot";
            if (!err.empty()) return fail(err);
            const s3::Error& room = allocation_.ensure(uint64_t(h_.db_pages) * h_.page_size);
            if (!room.ok()) {
                error_ = room;
                return false;
            }
            have_header_ = true;
            page_no_ = h_.first_page - 1;
            left_ = h_.body_len;
        }
        ZSTD_inBuffer in{p, n, 0};
        while (in.pos < in.size) {
            if (!run_ && left_ > 0 && !(run_ = writer_.buffer())) return fail_io();
            char spare;  // once every page is here, any further output is an error
            ZSTD_outBuffer out = left_ > 0 ? ZSTD_outBuffer{run_ + run_len_, size_t(std::min<uint64_t>(AsyncWriter::kRun - run_len_, left_)), 0}
                                           : ZSTD_outBuffer{&spare, 1, 0};
            size_t before = in.pos;
            size_t rc = ZSTD_decompressStream(dctx_, &out, &in);
            if (ZSTD_isError(rc)) return fail(std::string("zstd: ") + ZSTD_getErrorName(rc));
            if (left_ == 0 && out.pos > 0) return fail("snapshot has more pages than its header says");
            if (rc == 0) stream_done_ = true;
            if (left_ == 0 && in.pos == before) return fail("snapshot body does not end with its pages");
            run_len_ += out.pos;
            left_ -= out.pos;
            if ((run_len_ == AsyncWriter::kRun || left_ == 0) && run_len_ > 0 && !flush_run()) return false;
        }
        return true;
    }

    // Hashes the pages of the current run and hands it to the writer.
    bool flush_run() {
        if (run_len_ % h_.page_size != 0) return fail("snapshot body ends inside a page");
        off_t at = off_t(page_no_) * h_.page_size;
        for (size_t off = 0; off < run_len_; off += h_.page_size) sum_->set_page(++page_no_, run_ + off, h_.page_size);
        bool ok = writer_.write(run_, run_len_, at);
        run_ = nullptr;
        run_len_ = 0;
        return ok || fail_io();
    }

    bool fail(const std::string& what) {
        if (error_.ok()) error_ = corrupt(key_, what);
        return false;
    }
    bool fail_io() {
        if (error_.ok()) error_ = make_error(ErrorKind::Io, writer_.wait());
        return false;
    }

    AsyncWriter& writer_;
    Allocation& allocation_;
    std::string key_;
    DbChecksum* sum_;
    ObjectDigest digest_;
    ZSTD_DCtx* dctx_;
    std::string held_, hdr_;
    ObjectHeader h_;
    bool have_header_ = false, stream_done_ = false;
    char* run_ = nullptr;  // the run being filled (a writer buffer), run_len_ bytes so far
    size_t run_len_ = 0;
    uint64_t left_ = 0;    // body bytes still expected
    uint32_t page_no_ = 0; // the last page received
    s3::Error error_;
};

// Segments larger than this are not downloaded whole ahead of their turn: each is streamed and
// applied as it arrives (SegmentStreamer), so a restore's memory does not grow with the largest
// transaction in the replica.
constexpr uint64_t kStreamSegmentBytes = 8u << 20;

// Receives one segment object in chunks and applies its transactions to the file as they
// decompress. Everything it applies is checked as it goes (page numbers, transaction ids, each
// transaction's database checksum when the object carries them) and the object's hash at the
// end; any failure fails the restore attempt, whose file is discarded, so nothing unverified is
// kept. Transactions past the restore's target are read (for the hash) but not applied.
class SegmentStreamer {
public:
    SegmentStreamer(int fd, const std::string& path, const std::string& key, DbChecksum* sum, RestoreInfo* info, uint64_t target,
                    std::optional<int64_t> ts_limit, uint64_t generation)
        : fd_(fd), path_(path), key_(key), sum_(sum), info_(info), target_(target), ts_limit_(ts_limit), generation_(generation),
          dctx_(ZSTD_createDCtx(), ZSTD_freeDCtx) {
        out_.resize(ZSTD_DStreamOutSize());
    }
    // The object's bytes in order; the last kTrailerSize seen so far are held back (the trailer).
    bool feed(const char* p, size_t n) {
        return feed_before_trailer(&held_, p, n, [this](const char* q, size_t m) { return consume(q, m); });
    }
    s3::Error finish() {
        if (error_.ok() && !flush_run()) return error_;
        if (!error_.ok()) return error_;
        if (!have_header_ || held_.size() != kTrailerSize) return corrupt(key_, "object is truncated");
        digest_.update(held_.data(), 8);
        if (digest_.value() != held_.substr(8)) return corrupt(key_, "checksum mismatch (object is corrupted)");
        if (!stream_done_ || body_seen_ != h_.body_len || !rec_.empty() || in_txn_ || expect_ != h_.last_txid + 1)
            return corrupt(key_, "segment body is incomplete or does not match its header");
        return {};
    }
    bool stopped() const { return skipping_; }  // a transaction past the target was reached
    const s3::Error& error() const { return error_; }

private:
    bool consume(const char* p, size_t n) {
        if (!error_.ok()) return false;
        digest_.update(p, n);
        if (!have_header_) {
            size_t take = std::min(n, kHeaderSize - hdr_.size());
            hdr_.append(p, take);
            p += take;
            n -= take;
            if (hdr_.size() < kHeaderSize) return true;
            std::string err = decode_header(reinterpret_cast<const unsigned char*>(hdr_.data()), kHeaderSize, &h_);
            if (err.empty() && h_.kind != ObjectKind::Segment) err = "not a segment";
            if (err.empty() && (h_.generation != generation_ || h_.page_size != info_->page_size)) err = "belongs to another generation or page size";
            if (err.empty() && h_.first_txid != info_->txid + 1) err = "does not continue txid " + std::to_string(info_->txid);
            if (!err.empty()) return fail(err);
            have_header_ = true;
            expect_ = h_.first_txid;
            rec_size_ = 4 + size_t(h_.page_size);
        }
        ZSTD_inBuffer in{p, n, 0};
        while (in.pos < in.size) {
            ZSTD_outBuffer out{&out_[0], out_.size(), 0};
            size_t rc = ZSTD_decompressStream(dctx_.get(), &out, &in);
            if (ZSTD_isError(rc)) return fail(std::string("zstd: ") + ZSTD_getErrorName(rc));
            if (rc == 0) stream_done_ = true;
            body_seen_ += out.pos;
            if (body_seen_ > h_.body_len) return fail("segment body is longer than its header says");
            if (!parse(out_.data(), out.pos)) return false;
        }
        return true;
    }

    // Decompressed body bytes: a 32-byte transaction header, then its page records (FORMAT.md).
    bool parse(const char* q, size_t m) {
        while (m > 0) {
            size_t want = in_txn_ ? rec_size_ : 32;
            size_t take = std::min(m, want - rec_.size());
            rec_.append(q, take);
            q += take;
            m -= take;
            if (rec_.size() < want) return true;
            const auto* r = reinterpret_cast<const unsigned char*>(rec_.data());
            if (!in_txn_) {
                txid_ = get_u64le(r);
                ts_ = get_u64le(r + 8);
                db_pages_ = get_u32le(r + 16);
                pages_left_ = get_u32le(r + 20);
                db_checksum_ = get_u64le(r + 24);
                if (txid_ != expect_ || txid_ > h_.last_txid) return fail("segment transaction ids are not contiguous");
                expect_++;
                if (txid_ > target_ || (ts_limit_ && int64_t(ts_) > *ts_limit_)) skipping_ = true;
                in_txn_ = true;
            } else {
                uint32_t pgno = get_u32le(r);
                if (pgno == 0) return fail("segment has page number 0");
                if (!skipping_ && !add_page(pgno, rec_.data() + 4)) return false;
                pages_left_--;
            }
            rec_.clear();
            if (in_txn_ && pages_left_ == 0 && !end_txn()) return false;
        }
        return true;
    }

    // Pages go to the file in runs of consecutive page numbers (a segment lists them in order).
    bool add_page(uint32_t pgno, const char* data) {
        const uint32_t ps = h_.page_size;
        if (!run_.empty() && (pgno != run_first_ + run_.size() / ps || run_.size() >= (1u << 20)) && !flush_run()) return false;
        if (run_.empty()) run_first_ = pgno;
        run_.append(data, ps);
        sum_->set_page(pgno, data, ps);
        return true;
    }
    bool flush_run() {
        if (run_.empty()) return true;
        if (!pwrite_all(fd_, run_.data(), run_.size(), off_t(run_first_ - 1) * h_.page_size)) {
            error_ = make_error(ErrorKind::Io, "restore: writing " + path_ + " failed: " + strerror(errno));
            return false;
        }
        run_.clear();
        return true;
    }
    bool end_txn() {
        in_txn_ = false;
        if (skipping_) return true;
        sum_->truncate(db_pages_);
        const bool has_checksum = (h_.flags & kFlagDbChecksum) != 0;
        if (has_checksum && sum_->value() != db_checksum_) return fail("database checksum mismatch after txid " + std::to_string(txid_));
        info_->checksum_verified = has_checksum;
        info_->txid = txid_;
        info_->pages = db_pages_;
        info_->last_ts_ms = int64_t(ts_);
        return true;
    }
    bool fail(const std::string& what) {
        if (error_.ok()) error_ = corrupt(key_, what + " (object is corrupted)");
        return false;
    }

    int fd_;
    std::string path_, key_;
    DbChecksum* sum_;
    RestoreInfo* info_;
    uint64_t target_;
    std::optional<int64_t> ts_limit_;
    uint64_t generation_;
    std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx_;
    ObjectDigest digest_;
    ObjectHeader h_;
    std::string held_, hdr_, out_, rec_, run_;
    bool have_header_ = false, stream_done_ = false, in_txn_ = false, skipping_ = false;
    uint64_t body_seen_ = 0, expect_ = 0, txid_ = 0, ts_ = 0, db_checksum_ = 0;
    size_t rec_size_ = 0;
    uint32_t db_pages_ = 0, pages_left_ = 0, run_first_ = 0;
    s3::Error error_;
};

// A time before everything the replica holds: say where its history begins (the first snapshot
// of its oldest generation, one more LIST on this error's path).
static s3::Error nothing_before(s3::Store& store, int64_t ts_ms, const std::vector<GenerationInfo>& gens) {
    const GenerationInfo* oldest = nullptr;
    for (auto& g : gens)
        if (g.complete && (!oldest || g.id < oldest->id)) oldest = &g;
    std::string where;
    if (oldest) {
        int64_t first = -1;
        uint64_t txid = 0;
        if (auto listing = store.list(generation_prefix(oldest->id) + "snapshots/"); listing.ok())
            for (auto& o : listing->objects)
                if (auto k = parse_key(o.key); k && k->snapshot && !k->part && (first < 0 || int64_t(k->ts_ms) < first)) first = int64_t(k->ts_ms), txid = k->first;
        where = first < 0 ? "; its oldest generation began at " + utc_time(oldest->created_ms)
                          : "; the earliest point it holds is " + utc_time(first) + " (txid " + std::to_string(txid) + " of generation " + generation_name(oldest->id) + ")";
    }
    return make_error(ErrorKind::NotFound, "restore: the replica holds nothing at or before " + utc_time(ts_ms) +
                                               " (it is outside the retention window, or before replication began" + where + ")");
}

// Chooses the generation, snapshot and segment chain for the requested point.
// Objects in `damaged` (found corrupt by an earlier attempt) are not used: an older snapshot, or
// the smaller segments a merged one covers, may still lead to the same point.
s3::Result<Plan> make_plan(s3::Store& store, const RestoreOptions& opts, const std::set<std::string>& damaged) {
    std::string foreign;
    auto gens = list_generations(store, &foreign);
    if (!gens.ok()) return gens.error();
    std::vector<GenerationInfo> candidates;  // newest first
    for (auto it = gens->rbegin(); it != gens->rend(); ++it)
        if (it->complete && (!opts.generation || it->id == *opts.generation) &&
            (!opts.timestamp_ms || opts.generation || it->created_ms <= *opts.timestamp_ms))
            candidates.push_back(*it);
    if (opts.generation && candidates.empty())
        return make_error(ErrorKind::NotFound, "restore: generation " + generation_name(*opts.generation) + " not found (or it has no snapshot) in " + store.describe());
    if (candidates.empty()) {
        if (opts.timestamp_ms && !gens->empty())
            return nothing_before(store, *opts.timestamp_ms, gens.value());
        // Transactions without a snapshot to apply them to: someone deleted it. Not "no data":
        // an application starting empty over this would hide what the replica still holds.
        for (auto& g : gens.value())
            if (g.segments)
                return make_error(ErrorKind::Corrupt, "restore: generation " + generation_name(g.id) + " in " + store.describe() + " has " +
                                                          std::to_string(g.segments) + " segments but no snapshot (the replica is damaged)");
        // Another tool's replica (Litestream writes generations/ too): not "no data", or an
        // application would start empty over it and write its own history beside it.
        if (!foreign.empty())
            return make_error(ErrorKind::Corrupt, "restore: " + store.describe() + " holds no walship generations but objects walship does not write (" +
                                                      foreign + ": another tool's replica, such as Litestream's?); restore it with that tool, or give walship another prefix");
        // Only parts of a first snapshot that never completed (a crash during it): nothing was
        // ever replicated.
        return make_error(ErrorKind::NotFound, "restore: no generations with a snapshot in " + store.describe(), 0, kNoReplicaData);
    }
    // A newer generation with transactions but no snapshot lost its snapshot: restoring an older
    // generation instead would silently give an older state.
    for (auto& g : gens.value())
        if (!opts.generation && !g.complete && g.segments && g.id > candidates.front().id &&
            (!opts.timestamp_ms || g.created_ms <= *opts.timestamp_ms))
            return make_error(ErrorKind::Corrupt, "restore: generation " + generation_name(g.id) + " in " + store.describe() + " has " +
                                                      std::to_string(g.segments) + " segments but no snapshot (the replica is damaged; --generation " +
                                                      generation_name(candidates.front().id) + " restores the one before it)");
    const uint64_t target = opts.txid ? *opts.txid : UINT64_MAX;
    const uint64_t time = opts.timestamp_ms ? uint64_t(*opts.timestamp_ms) : UINT64_MAX;
    for (const GenerationInfo& g : candidates) {
        auto listing = store.list(generation_prefix(g.id));
        if (!listing.ok()) return listing.error();
        std::map<uint64_t, std::pair<std::string, uint64_t>> snapshots;          // txid -> key, time
        std::map<std::pair<uint64_t, uint64_t>, std::map<uint32_t, std::string>> parts;  // (txid, time) -> part -> key
        std::map<uint64_t, std::vector<ParsedKey>> segs;                           // first -> ranges
        std::map<std::pair<uint64_t, uint64_t>, std::string> seg_keys;
        std::map<std::string, uint64_t> sizes;
        int64_t first_snapshot_ms = -1;  // for the message when none is early enough
        for (auto& o : listing->objects) {
            sizes[o.key] = o.size;
            auto k = parse_key(o.key);
            if (!k || k->gen != g.id) continue;
            if (k->snapshot && !k->part && (first_snapshot_ms < 0 || int64_t(k->ts_ms) < first_snapshot_ms)) first_snapshot_ms = int64_t(k->ts_ms);
            if (k->part) {
                parts[{k->first, k->ts_ms}][k->part] = o.key;
            } else if (damaged.count(o.key)) {
                continue;
            } else if (k->snapshot) {
                if (k->first <= target && k->ts_ms <= time) snapshots[k->first] = {o.key, k->ts_ms};
            } else {
                segs[k->first].push_back(*k);
                seg_keys[{k->first, k->last}] = o.key;
            }
        }
        if (snapshots.empty()) {
            if (opts.generation || opts.txid) {
                return make_error(ErrorKind::NotFound, "restore: generation " + generation_name(g.id) + " has no snapshot at or before " +
                                                           (opts.txid ? "txid " + std::to_string(target) : utc_time(int64_t(time))) +
                                                           (first_snapshot_ms >= 0 ? " (its first is at " + utc_time(first_snapshot_ms) + ")" : ""));
            }
            continue;  // an older generation may cover that time
        }
        Plan plan;
        plan.generation = g.id;
        plan.snapshot_txid = snapshots.rbegin()->first;
        plan.snapshot_key = snapshots.rbegin()->second.first;
        for (auto& [n, key] : parts[{plan.snapshot_txid, snapshots.rbegin()->second.second}]) plan.part_keys.push_back(key);
        uint64_t pos = plan.snapshot_txid, pos_ts = 0;
        while (pos < target && pos_ts <= time) {
            auto it = segs.find(pos + 1);
            if (it == segs.end()) {
                if (segs.upper_bound(pos + 1) != segs.end())
                    return make_error(ErrorKind::Corrupt, "restore: generation " + generation_name(g.id) + " has a gap after txid " + std::to_string(pos));
                break;
            }
            // The longest segment that does not pass the target, else the shortest covering it.
            ParsedKey best = it->second.front();
            for (auto& c : it->second) {
                bool c_ok = c.last <= target, b_ok = best.last <= target;
                if ((c_ok && (!b_ok || c.last > best.last)) || (!c_ok && !b_ok && c.last < best.last)) best = c;
            }
            plan.segment_keys.push_back(seg_keys[{best.first, best.last}]);
            plan.segment_sizes.push_back(sizes[plan.segment_keys.back()]);
            pos = best.last;
            pos_ts = best.ts_ms;
        }
        if (opts.txid && pos < *opts.txid)
            return make_error(ErrorKind::NotFound, "restore: txid " + std::to_string(*opts.txid) + " is not in generation " + generation_name(g.id) + " (last is " + std::to_string(pos) + ")");
        plan.last_txid = pos;
        return plan;
    }
    return opts.timestamp_ms ? nothing_before(store, *opts.timestamp_ms, gens.value())
                             : make_error(ErrorKind::NotFound, "restore: the replica holds nothing at or before the requested point");
}

// Downloads the snapshot's objects into fd, several parts at once, and verifies them as one
// database: the same snapshot, pages that continue part to part through db_pages, each part's
// checksum of its own pages, and the whole database's checksum in the .snap object.
s3::Error apply_snapshot(s3::Store& store, const Plan& plan, int fd, const std::string& path, DbChecksum* sum, RestoreInfo* info) {
    constexpr size_t kStreams = 3;  // parts downloading at once
    std::vector<std::string> keys = plan.part_keys;
    keys.push_back(plan.snapshot_key);
    struct Part {
        ObjectHeader h;
        DbChecksum sum;
        s3::Error error;
        uint64_t bytes = 0;
    };
    std::vector<Part> parts(keys.size());
    std::atomic<size_t> next{0};
    std::atomic<bool> failed{false};
    Allocation allocation(fd, path);
    auto work = [&] {
        AsyncWriter writer(fd, path);
        std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
        for (size_t i; !failed && (i = next++) < keys.size();) {
            Part& part = parts[i];
            if (!dctx) {
                part.error = make_error(ErrorKind::Io, "restore: out of memory");
                failed = true;
                return;
            }
            SnapshotApplier applier(writer, allocation, dctx.get(), keys[i], &part.sum);
            bool stopped = false;  // another part failed: this one's error would say nothing
            s3::Error st = store.get_stream(keys[i], [&](const char* p, size_t n) {
                part.bytes += n;
                if (failed) stopped = true;
                return !stopped && applier.feed(p, n);
            });
            applier.drain();
            if (stopped) return;
            if (!applier.error().ok()) st = applier.error();  // its reason, not the aborted download's
            if (st.ok()) st = applier.finish(&part.h);
            if (!st.ok()) {
                part.error = st;
                failed = true;
            }
        }
    };
    std::vector<std::thread> workers;
    for (size_t i = 1; i < std::min(keys.size(), kStreams); i++) workers.emplace_back(work);
    work();
    for (auto& t : workers) t.join();
    for (auto& part : parts)
        if (!part.error.ok()) return part.error;

    const ObjectHeader& head = parts.back().h;
    if (head.part_count != keys.size()) {
        uint32_t p = 1;  // the first part missing (or, with too many, the first extra one)
        while (p <= plan.part_keys.size() && parse_key(plan.part_keys[p - 1])->part == p) p++;
        return corrupt(snapshot_part_key(plan.generation, plan.snapshot_txid, head.last_ts_ms, p),
                       "missing: the snapshot has " + std::to_string(head.part_count) + " parts, the replica holds " + std::to_string(keys.size()));
    }
    uint32_t next_page = 1;
    for (size_t i = 0; i < keys.size(); i++) {
        const ObjectHeader& h = parts[i].h;
        const bool last = i + 1 == keys.size();
        const uint32_t pages = uint32_t(h.body_len / h.page_size);
        std::string err;
        if (h.generation != plan.generation || h.first_txid != plan.snapshot_txid || h.last_ts_ms != head.last_ts_ms) err = "belongs to another snapshot";
        else if (h.page_size != head.page_size || h.db_pages != head.db_pages || h.part_count != head.part_count) err = "does not match " + plan.snapshot_key;
        else if (h.first_page != next_page || (last && h.first_page - 1 + pages != h.db_pages)) err = "its pages do not continue the previous part's";
        else if (!last && (h.flags & kFlagDbChecksum) && parts[i].sum.value() != h.db_checksum) err = "checksum mismatch in its pages";
        if (!err.empty()) return corrupt(keys[i], err);
        if (pages) sum->merge(parts[i].sum, h.first_page, h.first_page + pages - 1);
        next_page += pages;
        info->bytes += parts[i].bytes;
    }
    if (sum->value() != head.db_checksum) return corrupt(plan.snapshot_key, "database checksum mismatch after the snapshot");
    info->objects = keys.size();
    info->page_size = head.page_size;
    info->pages = head.db_pages;
    info->txid = head.last_txid;
    info->last_ts_ms = int64_t(head.last_ts_ms);
    return {};
}

}  // namespace

bool is_foreign_key(const std::string& key) { return !parse_key(key) && !key.empty() && key.back() != '/'; }

s3::Result<std::vector<GenerationInfo>> list_generations(s3::Store& store, std::string* foreign) {
    auto listing = store.list("generations/");
    if (!listing.ok()) return listing.error();
    std::map<uint64_t, GenerationInfo> gens;
    for (auto& o : listing->objects) {
        auto k = parse_key(o.key);
        if (!k && foreign && foreign->empty() && is_foreign_key(o.key)) *foreign = o.key;
        if (!k) continue;
        GenerationInfo& g = gens[k->gen];
        g.id = k->gen;
        g.created_ms = int64_t(k->gen >> 16);
        g.bytes += o.size;
        if (k->part) {
            // counted with its snapshot's .snap object (which exists only once every part does)
        } else if (k->snapshot) {
            g.snapshots++;
            if (!g.complete || k->first < g.first_txid) g.first_txid = k->first;
            g.complete = true;
        } else {
            g.segments++;
        }
        g.last_txid = std::max(g.last_txid, k->last);
    }
    std::vector<GenerationInfo> out;
    for (auto& [id, g] : gens) out.push_back(g);
    return out;
}

static s3::Result<RestoreInfo> restore_once(s3::Store& store, const RestoreOptions& opts, const std::set<std::string>& damaged,
                                            uint64_t must_gen, uint64_t must_reach, std::string* bad_key, uint64_t* planned_gen, uint64_t* planned_last);

static const char kRestoreMark[] = ".walship-restore-";

// The output's directory and file name.
static std::pair<std::string, std::string> split_output(const std::string& output) {
    size_t slash = output.rfind('/');
    if (slash == std::string::npos) return {".", output};
    return {output.substr(0, slash + (slash == 0)), output.substr(slash + 1)};
}

// The file a restore writes before renaming it into place: "<output>.walship-restore-<pid>", or
// "<dir>/.walship-restore-<pid>" when that name would be too long.
std::string restore_temp_name(const std::string& output) {
    const auto [dir, base] = split_output(output);
    std::string name = base + kRestoreMark + std::to_string(getpid());
    if (name.size() > NAME_MAX) name = kRestoreMark + std::to_string(getpid());
    return (dir == "/" ? "" : dir) + "/" + name;
}

// restore_temp_name(output), after removing the leftovers of restores that were killed (their
// process is gone): a database is large.
static std::string restore_temp_path(const std::string& output) {
    const auto [dir, base] = split_output(output);
    const std::string mark = kRestoreMark;
    if (DIR* d = opendir(dir.c_str())) {
        while (dirent* e = readdir(d)) {
            std::string name = e->d_name;
            size_t at = name.rfind(mark);
            bool ours = at != std::string::npos && (at == 0 || (at == base.size() && name.compare(0, at, base) == 0));
            if (!ours) continue;
            std::string pid = name.substr(at + mark.size());
            if (pid.empty() || pid.size() > 10 || pid.find_first_not_of("0123456789") != std::string::npos) continue;
            if (::kill(pid_t(std::stol(pid)), 0) != 0 && errno == ESRCH) {
                std::string path = dir + "/" + name;
                if (::unlink(path.c_str()) == 0) log_info("removed " + path + ", left by a restore that did not finish");
            }
        }
        closedir(d);
    }
    return restore_temp_name(output);
}

bool is_no_replica_data(const s3::Error& e) { return e.kind == ErrorKind::NotFound && e.code == kNoReplicaData; }

s3::Result<RestoreInfo> restore(s3::Store& store, const RestoreOptions& opts) {
    // Compaction and retention may delete a planned object while we run: plan again. A damaged
    // object is planned around when the replica holds another way to the same point (an older
    // snapshot and the segments after it, or the segments a merged one absorbed); the point
    // restored is never an earlier one, nor one of another generation (an older generation is
    // an earlier state of the database, whatever its txids).
    std::set<std::string> damaged;
    std::vector<s3::Error> damage;  // in the order found
    uint64_t must_gen = 0, must_reach = 0;
    for (int attempt = 1;;) {
        std::string bad_key;
        uint64_t planned_gen = 0, planned = 0;
        auto r = restore_once(store, opts, damaged, must_gen, must_reach, &bad_key, &planned_gen, &planned);
        if (r.ok()) {
            for (auto& d : damage) {
                log_warn(d.str() + "; restored around it from other objects of the replica");
                r->damaged.push_back(d.str());
            }
            return r;
        }
        if (r.error().kind == ErrorKind::Corrupt && !bad_key.empty() && damaged.size() < 8 && damaged.insert(bad_key).second) {
            if (damage.empty()) must_gen = planned_gen, must_reach = planned;
            damage.push_back(r.error());
            continue;
        }
        if (!damage.empty()) {  // no way around: name the damage that stopped it (and any other)
            s3::Error e = damage.back();
            for (size_t i = 0; i + 1 < damage.size(); i++) e.message += "; also " + damage[i].message;
            return e;
        }
        if (++attempt > 3 || r.error().kind != ErrorKind::NotFound || r.error().http_status != 404) return r;
    }
}

static s3::Result<RestoreInfo> restore_once(s3::Store& store, const RestoreOptions& opts, const std::set<std::string>& damaged,
                                            uint64_t must_gen, uint64_t must_reach, std::string* bad_key, uint64_t* planned_gen, uint64_t* planned_last) {
    if (opts.output.empty()) return make_error(ErrorKind::Config, "restore: no output path");
    auto plan = make_plan(store, opts, damaged);
    if (!plan.ok()) return plan.error();
    *planned_gen = plan->generation;
    *planned_last = plan->last_txid;
    if (must_gen && plan->generation != must_gen)
        return make_error(ErrorKind::Corrupt, "restore: without the damaged objects only an older generation (" + generation_name(plan->generation) +
                                                  ") could be restored, an earlier state of the database");
    if (plan->last_txid < must_reach)
        return make_error(ErrorKind::Corrupt, "restore: without the damaged objects the replica reaches only txid " + std::to_string(plan->last_txid));

    std::string tmp = restore_temp_path(opts.output);
    int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return make_error(ErrorKind::Io, "restore: cannot create " + tmp + ": " + strerror(errno));
    RestoreInfo info;
    info.generation = plan->generation;
    const uint64_t total = 1 + plan->part_keys.size() + plan->segment_keys.size();
    DbChecksum sum;
    // Segments: a window of parallel downloads (the first ones during the snapshot's), applied
    // strictly in order after it.
    // Large ones are not fetched ahead: they stream when their turn comes (SegmentStreamer).
    std::deque<std::future<s3::Result<std::string>>> inflight;  // invalid: to be streamed
    size_t next = 0;
    auto launch = [&] {
        while (next < plan->segment_keys.size() && inflight.size() < size_t(std::max(1, opts.parallelism))) {
            std::string key = plan->segment_keys[next];
            if (plan->segment_sizes[next++] > kStreamSegmentBytes) inflight.emplace_back();
            else inflight.push_back(std::async(std::launch::async, [&store, key] { return store.get(key); }));
        }
    };
    auto fail = [&](s3::Error e) -> s3::Result<RestoreInfo> {
        for (auto& f : inflight)
            if (f.valid()) f.wait();
        ::close(fd);
        ::unlink(tmp.c_str());
        return e;
    };
    launch();
    s3::Error st = apply_snapshot(store, plan.value(), fd, tmp, &sum, &info);
    if (!st.ok()) {
        if (st.kind == ErrorKind::Corrupt) *bad_key = plan->snapshot_key;  // with its parts
        return fail(st);
    }
    info.checksum_verified = true;
    if (opts.progress) opts.progress(info.objects, total);

    uint64_t target = opts.txid ? *opts.txid : UINT64_MAX;
    bool stop = false;
    for (size_t i = 0; i < plan->segment_keys.size() && !stop; i++) {
        const std::string& key = plan->segment_keys[i];
        if (!inflight.front().valid()) {
            inflight.pop_front();
            launch();
            SegmentStreamer ss(fd, tmp, key, &sum, &info, target, opts.timestamp_ms, plan->generation);
            uint64_t bytes = 0;
            s3::Error got = store.get_stream(key, [&](const char* p, size_t n) { return bytes += n, ss.feed(p, n); });
            if (!ss.error().ok()) got = ss.error();  // its reason, not the aborted download's
            if (got.ok()) got = ss.finish();
            if (!got.ok()) {
                if (got.kind == ErrorKind::Corrupt) *bad_key = key;
                return fail(got);
            }
            info.bytes += bytes;
            stop = ss.stopped();
            info.objects++;
            if (opts.progress) opts.progress(info.objects, total);
            continue;
        }
        auto got = inflight.front().get();
        inflight.pop_front();
        launch();
        if (!got.ok()) {
            return fail(got.error());
        }
        info.bytes += got->size();
        // Applied as it decompresses, like a streamed one: a small object can still hold a large
        // transaction (zero-filled pages compress to almost nothing).
        SegmentStreamer ss(fd, tmp, key, &sum, &info, target, opts.timestamp_ms, plan->generation);
        s3::Error applied = ss.feed(got->data(), got->size()) ? ss.finish() : ss.error();
        if (!applied.ok()) {
            if (applied.kind == ErrorKind::Corrupt) *bad_key = key;
            return fail(applied);
        }
        stop = ss.stopped();
        info.objects++;
        if (opts.progress) opts.progress(info.objects, total);
    }
    for (auto& f : inflight)
        if (f.valid()) f.wait();
    if (opts.timestamp_ms && info.last_ts_ms > *opts.timestamp_ms)
        return fail(make_error(ErrorKind::NotFound, "restore: nothing in the replica at or before the requested time"));

    if (ftruncate(fd, off_t(info.pages) * info.page_size) != 0 || fsync(fd) != 0)
        return fail(make_error(ErrorKind::Io, "restore: cannot finish " + tmp + ": " + strerror(errno)));
    ::close(fd);
    // Only a missing or empty file is replaced: a database that appeared while the restore ran (an
    // application started meanwhile, or another restore) is left alone, with its journal or WAL.
    struct stat out_st {};
    const int stat_rc = ::stat(opts.output.c_str(), &out_st), stat_errno = errno;
    const bool missing = stat_rc != 0 && stat_errno == ENOENT;
    if (!missing && (stat_rc != 0 || !S_ISREG(out_st.st_mode) || out_st.st_size != 0)) {
        ::unlink(tmp.c_str());
        return make_error(ErrorKind::Io, "restore: " + opts.output + (stat_rc != 0 ? ": " + std::string(strerror(stat_errno))
                                                                      : S_ISDIR(out_st.st_mode) ? " is a directory"
                                                                      : " appeared while restoring (not replaced)"));
    }
    if (!missing && opts.refuse_open) {
        if (std::string who = SideFile::open_elsewhere(opts.output); !who.empty()) {
            ::unlink(tmp.c_str());
            return make_error(ErrorKind::Io, "restore: " + opts.output + " was opened while restoring (" + who + "; not replaced)");
        }
    }
    // A -wal, -shm or hot -journal beside a missing or empty file belongs to a database that is
    // gone, and SQLite would apply the journal (or a WAL) to the restored file.
    for (const char* suffix : {"-wal", "-shm", "-journal"}) ::unlink((opts.output + suffix).c_str());
    int rc = missing ? ::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, opts.output.c_str(), RENAME_NOREPLACE)
                     : ::rename(tmp.c_str(), opts.output.c_str());
    if (rc != 0 && missing && errno == EINVAL) rc = ::rename(tmp.c_str(), opts.output.c_str());  // a file system without it
    if (rc != 0) {
        int e = errno;
        ::unlink(tmp.c_str());
        if (e == EEXIST) return make_error(ErrorKind::Io, "restore: " + opts.output + " appeared while restoring (not replaced)");
        return make_error(ErrorKind::Io, "restore: cannot rename into " + opts.output + ": " + strerror(e));
    }
    std::string dir = opts.output.find('/') == std::string::npos ? "." : opts.output.substr(0, opts.output.rfind('/'));
    if (dir.empty()) dir = "/";
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        ::close(dfd);
    }
    return info;
}

}  // namespace walship

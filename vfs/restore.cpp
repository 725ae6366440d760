// Restore (see restore.h and docs/FORMAT.md, "Restoring"): pick a generation and a snapshot,
// chain segments from it without gaps, download segments in parallel and apply them in order to a
// temporary file, verifying every object checksum and the database checksum as it goes.
#include "restore.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <future>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "fileio.h"
#include "format.h"

namespace walship {

using s3::ErrorKind;
using s3::make_error;

namespace {

struct Plan {
    uint64_t generation = 0;
    std::string snapshot_key;
    uint64_t snapshot_txid = 0;
    std::vector<std::string> segment_keys;
    uint64_t last_txid = 0;  // last txid available in the chain
};

s3::Error corrupt(const std::string& key, const std::string& what) {
    return make_error(ErrorKind::Corrupt, "restore: " + key + ": " + what);
}

// Writes runs of pages on a second thread while the caller decompresses and hashes the next ones.
class AsyncWriter {
public:
    explicit AsyncWriter(int fd) : fd_(fd) {}
    ~AsyncWriter() { finish(); }
    // Queues a run (waits while 4 are queued); false once a write has failed.
    bool write(std::string data, off_t at) {
        std::unique_lock<std::mutex> lock(mu_);
        if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
        cv_.wait(lock, [&] { return queue_.size() < 4 || !error_.empty(); });
        if (!error_.empty()) return false;
        queue_.push_back({std::move(data), at});
        cv_.notify_all();
        return true;
    }
    // Waits until everything queued is written: "" or the error.
    std::string finish() {
        {
            std::lock_guard<std::mutex> lock(mu_);
            done_ = true;
        }
        cv_.notify_all();
        if (thread_.joinable()) thread_.join();
        return error_;
    }

private:
    void run() {
        std::unique_lock<std::mutex> lock(mu_);
        for (;;) {
            cv_.wait(lock, [&] { return !queue_.empty() || done_; });
            if (queue_.empty()) return;
            auto [data, at] = std::move(queue_.front());
            queue_.pop_front();
            cv_.notify_all();
            lock.unlock();
            std::string err;
            if (!pwrite_all(fd_, data.data(), data.size(), at)) err = std::string("restore: write failed: ") + strerror(errno);
            // Start writing back to disk now, so the final fsync has little left to do.
            written_ += data.size();
            if (err.empty() && written_ >= (32u << 20)) {
                sync_file_range(fd_, 0, 0, SYNC_FILE_RANGE_WRITE);
                written_ = 0;
            }
            lock.lock();
            if (!err.empty() && error_.empty()) error_ = err;
            cv_.notify_all();
        }
    }

    int fd_;
    size_t written_ = 0;  // writer thread only
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::pair<std::string, off_t>> queue_;
    bool done_ = false;
    std::string error_;
    std::thread thread_;
};

// Receives a snapshot object in chunks: verifies its header and trailer, decompresses pages
// into the output file, and hashes them for the database checksum.
class SnapshotApplier {
public:
    SnapshotApplier(int fd, const std::string& key, DbChecksum* sum) : writer_(fd), key_(key), sum_(sum) {
        md_ = EVP_MD_CTX_new();
        EVP_DigestInit_ex(md_, EVP_sha256(), nullptr);
        dctx_ = ZSTD_createDCtx();
    }
    ~SnapshotApplier() {
        EVP_MD_CTX_free(md_);
        ZSTD_freeDCtx(dctx_);
    }
    bool feed(const char* p, size_t n) {
        held_.append(p, n);
        if (held_.size() <= kTrailerSize) return true;
        size_t usable = held_.size() - kTrailerSize;
        bool ok = consume(held_.data(), usable);
        held_.erase(0, usable);
        return ok;
    }
    s3::Error finish(ObjectHeader* out) {
        if (error_.ok() && !pending_.empty()) flush_pages();
        std::string werr = writer_.finish();  // the snapshot is on disk before any segment applies
        if (error_.ok() && !werr.empty()) error_ = make_error(ErrorKind::Io, werr);
        if (!error_.ok()) return error_;
        if (!have_header_ || held_.size() != kTrailerSize) return corrupt(key_, "object is truncated");
        EVP_DigestUpdate(md_, held_.data(), 8);
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        EVP_DigestFinal_ex(md_, md, &len);
        if (memcmp(md, held_.data() + 8, 32) != 0) return corrupt(key_, "checksum mismatch (object is corrupted)");
        if (!stream_done_ || page_no_ != h_.db_pages || !page_.empty()) return corrupt(key_, "snapshot body is incomplete");
        uint64_t want = get_u64le(reinterpret_cast<const unsigned char*>(held_.data()));
        if (sum_->value() != want) return corrupt(key_, "database checksum mismatch after the snapshot");
        *out = h_;
        return {};
    }
    const s3::Error& error() const { return error_; }
    // Waits for the writes queued so far (before the file is closed on any path).
    void drain() { writer_.finish(); }

private:
    bool consume(const char* p, size_t n) {
        if (!error_.ok()) return false;
        EVP_DigestUpdate(md_, p, n);
        if (!have_header_) {
            size_t take = std::min(n, kHeaderSize - hdr_.size());
            hdr_.append(p, take);
            p += take;
            n -= take;
            if (hdr_.size() < kHeaderSize) return true;
            std::string err = decode_header(reinterpret_cast<const unsigned char*>(hdr_.data()), kHeaderSize, &h_);
            if (err.empty() && h_.kind != ObjectKind::Snapshot) err = "not a snapshot";
            if (!err.empty()) {
                error_ = corrupt(key_, err);
                return false;
            }
            have_header_ = true;
            out_.resize(ZSTD_DStreamOutSize());
        }
        ZSTD_inBuffer in{p, n, 0};
        while (in.pos < in.size) {
            ZSTD_outBuffer out{&out_[0], out_.size(), 0};
            size_t rc = ZSTD_decompressStream(dctx_, &out, &in);
            if (ZSTD_isError(rc)) {
                error_ = corrupt(key_, std::string("zstd: ") + ZSTD_getErrorName(rc));
                return false;
            }
            if (!pages(out_.data(), out.pos)) return false;
            if (rc == 0) stream_done_ = true;
        }
        return true;
    }
    bool pages(const char* p, size_t n) {
        while (n > 0) {
            size_t take = std::min(n, size_t(h_.page_size) - page_.size());
            page_.append(p, take);
            p += take;
            n -= take;
            if (page_.size() == h_.page_size) {
                if (page_no_ >= h_.db_pages) {
                    error_ = corrupt(key_, "snapshot has more pages than its header says");
                    return false;
                }
                page_no_++;
                sum_->set_page(page_no_, page_.data(), page_.size());
                pending_ += page_;  // pages arrive in order: written in 1 MiB runs
                page_.clear();
                if (pending_.size() >= (1u << 20) && !flush_pages()) return false;
            }
        }
        return true;
    }

    bool flush_pages() {
        off_t at = off_t(page_no_) * h_.page_size - off_t(pending_.size());
        bool ok = writer_.write(std::move(pending_), at);
        pending_ = std::string();
        if (!ok) error_ = make_error(ErrorKind::Io, writer_.finish());
        return ok;
    }

    AsyncWriter writer_;
    std::string key_;
    DbChecksum* sum_;
    EVP_MD_CTX* md_;
    ZSTD_DCtx* dctx_;
    std::string held_, hdr_, out_, page_, pending_;
    ObjectHeader h_;
    bool have_header_ = false, stream_done_ = false;
    uint32_t page_no_ = 0;
    s3::Error error_;
};

// Chooses the generation, snapshot and segment chain for the requested point.
s3::Result<Plan> make_plan(s3::Store& store, const RestoreOptions& opts) {
    auto gens = list_generations(store);
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
            return make_error(ErrorKind::NotFound, "restore: the replica holds nothing at or before the requested time (it is outside the retention window)");
        return make_error(ErrorKind::NotFound, "restore: no generations with a snapshot in " + store.describe());
    }
    const uint64_t target = opts.txid ? *opts.txid : UINT64_MAX;
    const uint64_t time = opts.timestamp_ms ? uint64_t(*opts.timestamp_ms) : UINT64_MAX;
    for (const GenerationInfo& g : candidates) {
        auto listing = store.list(generation_prefix(g.id));
        if (!listing.ok()) return listing.error();
        std::map<uint64_t, std::string> snapshots;                                // txid -> key
        std::map<uint64_t, std::vector<ParsedKey>> segs;                           // first -> ranges
        std::map<std::pair<uint64_t, uint64_t>, std::string> seg_keys;
        for (auto& o : listing->objects) {
            auto k = parse_key(o.key);
            if (!k || k->gen != g.id) continue;
            if (k->snapshot) {
                if (k->first <= target && k->ts_ms <= time) snapshots[k->first] = o.key;
            } else {
                segs[k->first].push_back(*k);
                seg_keys[{k->first, k->last}] = o.key;
            }
        }
        if (snapshots.empty()) {
            if (opts.generation || opts.txid) {
                return make_error(ErrorKind::NotFound, "restore: generation " + generation_name(g.id) + " has no snapshot at or before " +
                                                           (opts.txid ? "txid " + std::to_string(target) : std::string("that time")));
            }
            continue;  // an older generation may cover that time
        }
        Plan plan;
        plan.generation = g.id;
        plan.snapshot_txid = snapshots.rbegin()->first;
        plan.snapshot_key = snapshots.rbegin()->second;
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
            pos = best.last;
            pos_ts = best.ts_ms;
        }
        if (opts.txid && pos < *opts.txid)
            return make_error(ErrorKind::NotFound, "restore: txid " + std::to_string(*opts.txid) + " is not in generation " + generation_name(g.id) + " (last is " + std::to_string(pos) + ")");
        plan.last_txid = pos;
        return plan;
    }
    return make_error(ErrorKind::NotFound, "restore: the replica holds nothing at or before the requested time (it is outside the retention window)");
}

s3::Error write_pages(int fd, const Txn& t, uint32_t ps) {
    for (auto& [pgno, data] : t.pages)
        if (pwrite(fd, data.data(), ps, off_t(pgno - 1) * ps) != ssize_t(ps))
            return make_error(ErrorKind::Io, std::string("restore: write failed: ") + strerror(errno));
    return {};
}

}  // namespace

s3::Result<std::vector<GenerationInfo>> list_generations(s3::Store& store) {
    auto listing = store.list("generations/");
    if (!listing.ok()) return listing.error();
    std::map<uint64_t, GenerationInfo> gens;
    for (auto& o : listing->objects) {
        auto k = parse_key(o.key);
        if (!k) continue;
        GenerationInfo& g = gens[k->gen];
        g.id = k->gen;
        g.created_ms = int64_t(k->gen >> 16);
        g.bytes += o.size;
        if (k->snapshot) {
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

static s3::Result<RestoreInfo> restore_once(s3::Store& store, const RestoreOptions& opts);

s3::Result<RestoreInfo> restore(s3::Store& store, const RestoreOptions& opts) {
    // Compaction and retention may delete a planned object while we run: plan again.
    for (int attempt = 1;; attempt++) {
        auto r = restore_once(store, opts);
        if (r.ok() || attempt == 3 || r.error().kind != ErrorKind::NotFound || r.error().http_status != 404) return r;
    }
}

static s3::Result<RestoreInfo> restore_once(s3::Store& store, const RestoreOptions& opts) {
    if (opts.output.empty()) return make_error(ErrorKind::Config, "restore: no output path");
    auto plan = make_plan(store, opts);
    if (!plan.ok()) return plan.error();

    std::string tmp = opts.output + ".walship-restore-" + std::to_string(getpid());
    int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return make_error(ErrorKind::Io, "restore: cannot create " + tmp + ": " + strerror(errno));
    auto fail = [&](s3::Error e) -> s3::Result<RestoreInfo> {
        ::close(fd);
        ::unlink(tmp.c_str());
        return e;
    };

    RestoreInfo info;
    info.generation = plan->generation;
    const uint64_t total = 1 + plan->segment_keys.size();
    DbChecksum sum;
    SnapshotApplier snap(fd, plan->snapshot_key, &sum);
    s3::Error st = store.get_stream(plan->snapshot_key, [&](const char* p, size_t n) {
        info.bytes += n;
        return snap.feed(p, n);
    });
    snap.drain();
    if (!snap.error().ok()) return fail(snap.error());
    if (!st.ok()) return fail(st);
    ObjectHeader sh;
    st = snap.finish(&sh);
    if (!st.ok()) return fail(st);
    info.objects = 1;
    info.page_size = sh.page_size;
    info.pages = sh.db_pages;
    info.txid = sh.last_txid;
    info.last_ts_ms = int64_t(sh.last_ts_ms);
    info.checksum_verified = true;
    if (opts.progress) opts.progress(1, total);

    // Segments: a window of parallel downloads, applied strictly in order.
    std::deque<std::future<s3::Result<std::string>>> inflight;
    size_t next = 0;
    auto launch = [&] {
        while (next < plan->segment_keys.size() && inflight.size() < size_t(std::max(1, opts.parallelism))) {
            std::string key = plan->segment_keys[next++];
            inflight.push_back(std::async(std::launch::async, [&store, key] { return store.get(key); }));
        }
    };
    launch();
    uint64_t target = opts.txid ? *opts.txid : UINT64_MAX;
    bool stop = false;
    for (size_t i = 0; i < plan->segment_keys.size() && !stop; i++) {
        auto got = inflight.front().get();
        inflight.pop_front();
        launch();
        const std::string& key = plan->segment_keys[i];
        if (!got.ok()) {
            for (auto& f : inflight) f.wait();
            return fail(got.error());
        }
        info.bytes += got->size();
        ObjectHeader h;
        std::string body;
        std::string err = open_object(got.value(), &h, &body);
        if (err.empty() && h.kind != ObjectKind::Segment) err = "not a segment";
        if (err.empty() && (h.generation != plan->generation || h.page_size != sh.page_size)) err = "belongs to another generation or page size";
        std::vector<Txn> txns;
        if (err.empty()) err = decode_segment_body(h, body, &txns);
        if (err.empty() && (txns.empty() || txns.front().txid != info.txid + 1)) err = "does not continue txid " + std::to_string(info.txid);
        if (!err.empty()) {
            for (auto& f : inflight) f.wait();
            return fail(corrupt(key, err));
        }
        for (const Txn& t : txns) {
            if (t.txid > target || (opts.timestamp_ms && int64_t(t.ts_ms) > *opts.timestamp_ms)) {
                stop = true;
                break;
            }
            st = write_pages(fd, t, h.page_size);
            if (!st.ok()) return fail(st);
            for (auto& [pgno, data] : t.pages) sum.set_page(pgno, data.data(), data.size());
            sum.truncate(t.db_pages);
            if (t.has_checksum && sum.value() != t.db_checksum) {
                for (auto& f : inflight) f.wait();
                return fail(corrupt(key, "database checksum mismatch after txid " + std::to_string(t.txid)));
            }
            info.checksum_verified = t.has_checksum;
            info.txid = t.txid;
            info.pages = t.db_pages;
            info.last_ts_ms = int64_t(t.ts_ms);
        }
        info.objects++;
        if (opts.progress) opts.progress(info.objects, total);
    }
    for (auto& f : inflight) f.wait();
    if (opts.timestamp_ms && info.last_ts_ms > *opts.timestamp_ms)
        return fail(make_error(ErrorKind::NotFound, "restore: nothing in the replica at or before the requested time"));

    if (ftruncate(fd, off_t(info.pages) * info.page_size) != 0 || fsync(fd) != 0)
        return fail(make_error(ErrorKind::Io, "restore: cannot finish " + tmp + ": " + strerror(errno)));
    ::close(fd);
    // The old -wal and -shm belong to the database being replaced.
    ::unlink((opts.output + "-wal").c_str());
    ::unlink((opts.output + "-shm").c_str());
    if (::rename(tmp.c_str(), opts.output.c_str()) != 0) {
        int e = errno;
        ::unlink(tmp.c_str());
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

// FileStore: the Store contract on a local directory (file:///dir). Objects are files under the
// directory named by their keys; each is written to a temporary file, fsync'd and renamed into
// place, so an object is either absent or whole, as on S3. Temporary files start with ".tmp-"
// and are never listed.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>

#include "walship/s3/store.h"

namespace fs = std::filesystem;

namespace walship::s3 {
namespace {

std::string errno_text(int e) { return std::strerror(e); }

std::string temp_name() {
    static std::atomic<uint64_t> seq{0};
    static const uint64_t salt = std::random_device{}();
    return ".tmp-" + std::to_string(getpid()) + "-" + std::to_string(salt % 100000) + "-" + std::to_string(seq++);
}

bool valid_key(const std::string& key) {
    if (key.empty() || key[0] == '/') return false;
    size_t start = 0;
    while (start <= key.size()) {
        size_t end = key.find('/', start);
        if (end == std::string::npos) end = key.size();
        std::string part = key.substr(start, end - start);
        if (part == "." || part == ".." || part.rfind(".tmp-", 0) == 0) return false;
        start = end + 1;
    }
    return true;
}

Status sync_dir(const std::string& dir) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (fd < 0) return make_error(ErrorKind::Io, "open directory " + dir + ": " + errno_text(errno));
    ::fsync(fd);
    ::close(fd);
    return {};
}

struct Counters {
    std::mutex mu;
    RequestCounts c;
};

class FileWriter;

class FileStore : public Store {
public:
    explicit FileStore(std::string dir) : dir_(std::move(dir)) {
        while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
    }

    std::string path_of(const std::string& key) const { return dir_ + "/" + key; }

    // Moves a finished temp file into place (exclusively when asked) and syncs the directory.
    Status publish(const std::string& tmp, const std::string& key, const PutOptions& opt, const char* op) {
        std::string dst = path_of(key);
        if (opt.if_none_match) {
            if (::link(tmp.c_str(), dst.c_str()) != 0) {
                int e = errno;
                ::unlink(tmp.c_str());
                if (e == EEXIST) return make_error(ErrorKind::PreconditionFailed, std::string(op) + ": " + key + " already exists", 412, "PreconditionFailed");
                return make_error(ErrorKind::Io, std::string(op) + ": " + dst + ": " + errno_text(e));
            }
            ::unlink(tmp.c_str());
        } else if (::rename(tmp.c_str(), dst.c_str()) != 0) {
            int e = errno;
            ::unlink(tmp.c_str());
            return make_error(ErrorKind::Io, std::string(op) + ": " + dst + ": " + errno_text(e));
        }
        return sync_dir(fs::path(dst).parent_path().string());
    }

    Result<int> create_temp(const std::string& key, std::string* tmp, const char* op) {
        if (!valid_key(key)) return make_error(ErrorKind::BadRequest, std::string(op) + ": invalid key '" + key + "'");
        fs::path dst(path_of(key));
        std::error_code ec;
        fs::create_directories(dst.parent_path(), ec);
        if (ec) return make_error(ErrorKind::Io, std::string(op) + ": " + dst.parent_path().string() + ": " + ec.message());
        *tmp = (dst.parent_path() / temp_name()).string();
        int fd = ::open(tmp->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) return make_error(ErrorKind::Io, std::string(op) + ": " + *tmp + ": " + errno_text(errno));
        return fd;
    }

    static Status write_all(int fd, const void* data, size_t len, const std::string& what) {
        const char* p = static_cast<const char*>(data);
        while (len > 0) {
            ssize_t n = ::write(fd, p, len);
            if (n < 0) {
                if (errno == EINTR) continue;
                return make_error(ErrorKind::Io, what + ": " + errno_text(errno));
            }
            p += n;
            len -= size_t(n);
        }
        return {};
    }

    Status put(const std::string& key, const std::string& data, const PutOptions& opt) override {
        std::string tmp;
        auto fd = create_temp(key, &tmp, "put_object");
        if (!fd.ok()) return fd.error();
        Status st = write_all(fd.value(), data.data(), data.size(), "put_object: " + tmp);
        if (st.ok() && ::fsync(fd.value()) != 0) st = make_error(ErrorKind::Io, "put_object: fsync " + tmp + ": " + errno_text(errno));
        ::close(fd.value());
        if (!st.ok()) {
            ::unlink(tmp.c_str());
            return st;
        }
        count([&](RequestCounts& c) { c.put++; c.bytes_up += data.size(); });
        return publish(tmp, key, opt, "put_object");
    }

    Status put_file(const std::string& key, const std::string& path, const PutOptions& opt) override {
        auto w = open_writer(key, opt);
        int in = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (in < 0) return make_error(ErrorKind::Io, "put_file: " + path + ": " + errno_text(errno));
        std::vector<char> buf(1 << 20);
        Status st;
        for (;;) {
            ssize_t n = ::read(in, buf.data(), buf.size());
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                st = make_error(ErrorKind::Io, "put_file: read " + path + ": " + errno_text(errno));
                break;
            }
            if (n == 0) break;
            st = w->write(buf.data(), size_t(n));
            if (!st.ok()) break;
        }
        ::close(in);
        if (!st.ok()) {
            w->abort();
            return st;
        }
        return w->commit();
    }

    std::unique_ptr<ObjectWriter> open_writer(const std::string& key, const PutOptions& opt) override;

    Status get_stream(const std::string& key, const Sink& sink, const ByteRange& range) override {
        if (!valid_key(key)) return make_error(ErrorKind::BadRequest, "get_object: invalid key '" + key + "'");
        std::string path = path_of(key);
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == ENOENT || e == ENOTDIR) return make_error(ErrorKind::NotFound, "get_object: " + key + ": no such object", 404, "NoSuchKey");
            return make_error(ErrorKind::Io, "get_object: " + path + ": " + errno_text(e));
        }
        struct stat sb {};
        ::fstat(fd, &sb);
        uint64_t size = uint64_t(sb.st_size);
        if (range.offset > 0 && range.offset >= size) {
            ::close(fd);
            return make_error(ErrorKind::BadRequest, "get_object: " + key + ": range starts past the end", 416, "InvalidRange");
        }
        uint64_t left = range.length ? std::min<uint64_t>(*range.length, size - range.offset) : size - range.offset;
        uint64_t off = range.offset;
        std::vector<char> buf(1 << 20);
        Status st;
        uint64_t total = 0;
        while (left > 0) {
            ssize_t n = ::pread(fd, buf.data(), std::min<uint64_t>(buf.size(), left), off_t(off));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                st = make_error(ErrorKind::Io, "get_object: read " + path + ": " + (n < 0 ? errno_text(errno) : "short file"));
                break;
            }
            if (!sink(buf.data(), size_t(n))) {
                st = make_error(ErrorKind::Io, "get_object: " + key + ": transfer aborted by receiver");
                break;
            }
            off += uint64_t(n);
            left -= uint64_t(n);
            total += uint64_t(n);
        }
        ::close(fd);
        count([&](RequestCounts& c) { c.get++; c.bytes_down += total; });
        return st;
    }

    Result<std::string> get(const std::string& key, const ByteRange& range) override {
        std::string out;
        Status st = get_stream(key, [&](const char* d, size_t n) { out.append(d, n); return true; }, range);
        if (!st.ok()) return st;
        return out;
    }

    Result<ObjectInfo> head(const std::string& key) override {
        count([](RequestCounts& c) { c.head++; });
        if (!valid_key(key)) return make_error(ErrorKind::BadRequest, "head_object: invalid key '" + key + "'");
        struct stat sb {};
        if (::stat(path_of(key).c_str(), &sb) != 0 || !S_ISREG(sb.st_mode))
            return make_error(ErrorKind::NotFound, "head_object: " + key + ": no such object", 404, "NoSuchKey");
        ObjectInfo info;
        info.key = key;
        info.size = uint64_t(sb.st_size);
        info.mtime_unix = sb.st_mtime;
        return info;
    }

    Status remove(const std::string& key) override {
        count([](RequestCounts& c) { c.del++; });
        if (!valid_key(key)) return make_error(ErrorKind::BadRequest, "delete_object: invalid key '" + key + "'");
        if (::unlink(path_of(key).c_str()) != 0 && errno != ENOENT)
            return make_error(ErrorKind::Io, "delete_object: " + path_of(key) + ": " + errno_text(errno));
        return {};
    }

    Status remove_many(const std::vector<std::string>& keys) override {
        for (auto& k : keys) {
            Status st = remove(k);
            if (!st.ok()) return st;
        }
        return {};
    }

    Result<Listing> list(const std::string& prefix, const std::string& delimiter) override {
        count([](RequestCounts& c) { c.list++; });
        Listing out;
        std::error_code ec;
        // Only walk the directory part of the prefix.
        std::string base = prefix.substr(0, prefix.rfind('/') == std::string::npos ? 0 : prefix.rfind('/'));
        fs::path root = base.empty() ? fs::path(dir_) : fs::path(dir_) / base;
        if (!fs::exists(root, ec)) return out;
        for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
            if (!it->is_regular_file(ec)) continue;
            std::string name = it->path().filename().string();
            if (name.rfind(".tmp-", 0) == 0) continue;
            std::string key = fs::relative(it->path(), dir_, ec).string();
            if (key.compare(0, prefix.size(), prefix) != 0) continue;
            if (!delimiter.empty()) {
                size_t d = key.find(delimiter, prefix.size());
                if (d != std::string::npos) {
                    out.common_prefixes.push_back(key.substr(0, d + delimiter.size()));
                    continue;
                }
            }
            ObjectInfo info;
            info.key = key;
            info.size = uint64_t(it->file_size(ec));
            struct stat sb {};
            if (::stat(it->path().c_str(), &sb) == 0) info.mtime_unix = sb.st_mtime;
            out.objects.push_back(std::move(info));
        }
        if (ec) return make_error(ErrorKind::Io, "list_objects: " + root.string() + ": " + ec.message());
        std::sort(out.objects.begin(), out.objects.end(), [](auto& a, auto& b) { return a.key < b.key; });
        std::sort(out.common_prefixes.begin(), out.common_prefixes.end());
        out.common_prefixes.erase(std::unique(out.common_prefixes.begin(), out.common_prefixes.end()), out.common_prefixes.end());
        return out;
    }

    std::string describe() const override { return "file://" + dir_; }

    RequestCounts counts() const override {
        std::lock_guard<std::mutex> lock(counters_.mu);
        return counters_.c;
    }

    template <class F>
    void count(F f) {
        std::lock_guard<std::mutex> lock(counters_.mu);
        f(counters_.c);
    }

private:
    std::string dir_;
    mutable Counters counters_;
};

class FileWriter : public ObjectWriter {
public:
    FileWriter(FileStore* store, std::string key, PutOptions opt) : store_(store), key_(std::move(key)), opt_(std::move(opt)) {
        auto fd = store_->create_temp(key_, &tmp_, "put_object");
        if (fd.ok()) fd_ = fd.value();
        else error_ = fd.error();
    }
    ~FileWriter() override { abort(); }

    Status write(const void* data, size_t len) override {
        if (!error_.ok()) return error_;
        error_ = FileStore::write_all(fd_, data, len, "put_object: " + tmp_);
        written_ += len;
        return error_;
    }

    Status commit() override {
        if (!error_.ok()) {
            abort();
            return error_;
        }
        if (fd_ < 0) return make_error(ErrorKind::Io, "put_object: " + key_ + ": writer already finished");
        if (::fsync(fd_) != 0) error_ = make_error(ErrorKind::Io, "put_object: fsync " + tmp_ + ": " + errno_text(errno));
        ::close(fd_);
        fd_ = -1;
        if (!error_.ok()) {
            ::unlink(tmp_.c_str());
            return error_;
        }
        store_->count([&](RequestCounts& c) { c.put++; c.bytes_up += written_; });
        return store_->publish(tmp_, key_, opt_, "put_object");
    }

    void abort() override {
        if (fd_ >= 0) {
            ::close(fd_);
            ::unlink(tmp_.c_str());
            fd_ = -1;
        }
    }

    uint64_t bytes_written() const override { return written_; }

private:
    FileStore* store_;
    std::string key_;
    PutOptions opt_;
    std::string tmp_;
    int fd_ = -1;
    uint64_t written_ = 0;
    Status error_;
};

std::unique_ptr<ObjectWriter> FileStore::open_writer(const std::string& key, const PutOptions& opt) {
    return std::make_unique<FileWriter>(this, key, opt);
}

}  // namespace

std::unique_ptr<Store> make_file_store(const std::string& dir) { return std::make_unique<FileStore>(dir); }

}  // namespace walship::s3

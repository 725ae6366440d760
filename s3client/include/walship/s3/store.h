// The storage interface the shipper, restore and the CLI use: a flat key space of immutable
// objects under one replica location. Two implementations: S3Store (any S3-compatible service,
// through S3Client) and FileStore (a local directory, for backups and the zero-setup default).
//
// Keys passed to a Store are relative to the location's prefix ("generations/…/…"); the store adds
// the prefix. Keys use '/' as separator and never start with '/'.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "walship/s3/error.h"
#include "walship/s3/location.h"

namespace walship::s3 {

struct ObjectInfo {
    std::string key;     // relative to the store's prefix
    uint64_t size = 0;
    std::string etag;
    int64_t mtime_unix = 0;  // seconds since the epoch, 0 if unknown
};

struct Listing {
    std::vector<ObjectInfo> objects;           // sorted by key
    std::vector<std::string> common_prefixes;  // relative, each ending with the delimiter
};

struct ByteRange {
    uint64_t offset = 0;
    std::optional<uint64_t> length;  // none: to the end
};

// Receives downloaded bytes in order; return false to abort the transfer.
using Sink = std::function<bool(const char* data, size_t len)>;

// A streamed upload of unknown length. write() as often as needed, then commit() (the object
// appears atomically, whole) or abort() (nothing appears). Destroying an uncommitted writer aborts.
class ObjectWriter {
public:
    virtual ~ObjectWriter() = default;
    virtual Status write(const void* data, size_t len) = 0;
    virtual Status commit() = 0;
    virtual void abort() = 0;
    virtual uint64_t bytes_written() const = 0;
};

struct PutOptions {
    bool if_none_match = false;  // fail with PreconditionFailed if the key exists
    std::string content_type = "application/octet-stream";
};

// Counters of requests made, for status output and cost benchmarks.
struct RequestCounts {
    uint64_t put = 0, get = 0, head = 0, list = 0, del = 0, bytes_up = 0, bytes_down = 0;
};

// What a store's requests are doing at this moment, for status reports: a store that accepts a
// request and never answers (or answers with errors that are retried) fails the request only
// after its timeouts and retries, minutes later; meanwhile this says so.
struct StoreWait {
    int64_t stalled_ms = 0;  // requests are in flight and no byte has moved for this long (0: none in flight)
    std::string retrying;    // the transient error a request in flight is being retried after ("" if none)
};

// A NUL-terminated text of at most size - 1 bytes in memory shared between processes, written by
// one process at a time under `seq`, a counter that is odd while the text changes (a seqlock):
// a reader copies it again when it changed meanwhile, and gets "" if it kept changing.
void write_shared_text(std::atomic<uint32_t>& seq, char* text, size_t size, const std::string& value);
std::string read_shared_text(const std::atomic<uint32_t>& seq, const char* text, size_t size);

// A StoreWait kept where other processes read it (walship: the side file, so that a process that
// does not ship reports the shipping process's requests): a store told to (Store::share_waiting)
// writes to it as its requests begin, move, are retried and end. Plain words in shared memory;
// the clock is CLOCK_MONOTONIC (std::chrono::steady_clock), the same in every process.
struct SharedWait {
    std::atomic<int32_t> in_flight;     // requests in flight, each with its retries counted once
    std::atomic<int64_t> last_move_ms;  // when a byte last moved in one of them
    std::atomic<uint32_t> seq;          // odd while `retrying` changes
    char retrying[500];                 // NUL-terminated: what StoreWait::retrying says

    StoreWait read() const;
    // Writers (one process at a time: the one holding walship's ship lock).
    void write(int32_t in_flight, int64_t last_move_ms, const std::string& retrying);
    void clear() { write(0, 0, ""); }
};

class Store {
public:
    virtual ~Store() = default;

    virtual Status put(const std::string& key, const std::string& data, const PutOptions& opt = {}) = 0;
    // Streams a local file; large files go up in parallel multipart parts (S3).
    virtual Status put_file(const std::string& key, const std::string& path, const PutOptions& opt = {}) = 0;
    virtual std::unique_ptr<ObjectWriter> open_writer(const std::string& key, const PutOptions& opt = {}) = 0;

    virtual Result<std::string> get(const std::string& key, const ByteRange& range = {}) = 0;
    virtual Status get_stream(const std::string& key, const Sink& sink, const ByteRange& range = {}) = 0;
    virtual Result<ObjectInfo> head(const std::string& key) = 0;

    virtual Status remove(const std::string& key) = 0;  // missing key is not an error
    virtual Status remove_many(const std::vector<std::string>& keys) = 0;

    // All keys under prefix (following continuation); with a delimiter, groups deeper keys
    // into common_prefixes.
    virtual Result<Listing> list(const std::string& prefix, const std::string& delimiter = "") = 0;

    // The location as a URL without secrets, for messages.
    virtual std::string describe() const = 0;
    // Ends requests in flight and fails later ones at once (for a closing application).
    virtual void cancel() {}
    // Requests end, without retries, while fn answers true (ClientOptions::interrupt). Set it
    // before any request runs. A directory store never waits on a server and ignores it.
    virtual void set_interrupt(std::function<bool()>) {}
    virtual RequestCounts counts() const = 0;
    // A directory store never waits on a server: nothing to say.
    virtual StoreWait waiting() const { return {}; }
    // From now on also writes what waiting() says to *to (nullptr: stop); see SharedWait.
    virtual void share_waiting(SharedWait*) {}
};

// Opens the store for a replica URL (s3://… or file:///…), taking credentials, region and endpoint
// from env (see location.h). Errors are Config errors naming what is wrong.
Result<std::unique_ptr<Store>> open_store(const std::string& url, const Environment& env = Environment::from_process());
Result<std::unique_ptr<Store>> open_store(const Location& loc);

// The directory store, exposed for tests and for open_store.
std::unique_ptr<Store> make_file_store(const std::string& dir);

}  // namespace walship::s3

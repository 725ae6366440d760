// S3Client: the raw S3 operations on bucket/key pairs, over libcurl, signed with SigV4.
//
// One client serves many threads: each request borrows a curl handle from a small pool (so
// connections are reused) and returns it afterwards. Every request is retried on transient
// failures (5xx, 429/503 SlowDown, timeouts, dropped connections) with exponential backoff and full
// jitter; 4xx answers that cannot succeed are returned at once. Errors are values whose message
// starts with the operation ("put_object: HTTP 403 AccessDenied: ..."); secrets never appear in
// them. Large uploads go up as multipart uploads with parts sent in parallel; downloads stream to a
// Sink. See docs/S3CLIENT.md.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "walship/s3/error.h"
#include "walship/s3/location.h"
#include "walship/s3/store.h"

namespace walship::s3 {

// What a client's requests are doing now (see StoreWait): how many are in flight, counting each
// with its retries as one, when a byte last moved in any of them, and the error the latest retry
// followed. Thread-safe; requests report to it as they run.
class RequestActivity {
public:
    void begin();                                   // a request (with its retries) starts
    void moved();                                   // a byte moved
    void retrying(const std::string& error);        // an attempt failed and the request tries again
    void end(const std::string& retried_error);     // the request ended (retried_error: its last retrying())
    StoreWait snapshot() const;
    // Also writes what snapshot() would say to *to from now on (nullptr: stop), starting with now.
    void share(SharedWait* to);

private:
    void share_locked();

    std::atomic<int> in_flight_{0};
    std::atomic<int64_t> last_move_ms_{0};  // steady clock
    mutable std::mutex mu_;
    std::string retrying_;
    std::atomic<SharedWait*> shared_{nullptr};
};

struct ClientOptions {
    // Timeouts. A request attempt fails with Timeout when connecting takes longer than
    // connect_timeout_ms, or when fewer than min_speed_bytes per second move for timeout_ms (a stall
    // or a trickle; also covers a server that accepts and never answers).
    long connect_timeout_ms = 10000;
    long timeout_ms = 30000;
    long min_speed_bytes = 1024;
    // Retries: max_attempts tries in all; before try n+1 sleep uniform(0, min(max, base * 2^n)).
    int max_attempts = 5;
    long backoff_base_ms = 100;
    long backoff_max_ms = 5000;
    // Multipart: objects larger than multipart_threshold go up in parts of part_size bytes
    // (grown when needed to stay within 10,000 parts), upload_threads parts at a time.
    uint64_t multipart_threshold = 16ull << 20;
    uint64_t part_size = 8ull << 20;
    int upload_threads = 4;
    // TLS: certificate verification is on unless turned off here (never do that in production).
    bool verify_tls = true;
    std::string ca_file;  // extra CA bundle, e.g. for a self-signed test server
    // Set to true to end every request in flight at once and fail later ones without retries
    // (a closing application must not wait for a dead store's timeouts). Shared by copies.
    std::shared_ptr<std::atomic<bool>> cancel = std::make_shared<std::atomic<bool>>(false);
    // While it answers true, requests in flight end (within about a second) and later ones fail
    // at once, without retries: the caller's own reason to stop waiting (walship: a snapshot that
    // holds the WAL past max_wal_size). Called from any thread that runs a request.
    std::shared_ptr<std::function<bool()>> interrupt;
    // Where requests report what they are doing (S3Client::waiting). Shared by copies.
    std::shared_ptr<RequestActivity> activity = std::make_shared<RequestActivity>();

    // Options from the environment: WALSHIP_S3_TIMEOUT_MS, WALSHIP_S3_ATTEMPTS (when set).
    static ClientOptions from_env(const Environment& env);
};

struct ListPage {
    std::vector<ObjectInfo> objects;  // full keys
    std::vector<std::string> common_prefixes;
    std::string next_continuation_token;  // empty when this was the last page
};

struct CompletedPart {
    int number = 0;
    std::string etag;
};

// Thread-safe request counters (by request type and bytes moved).
class Counters {
public:
    void add_put() { put_++; }
    void add_get() { get_++; }
    void add_head() { head_++; }
    void add_list() { list_++; }
    void add_del() { del_++; }
    void add_up(uint64_t n) { up_ += n; }
    void add_down(uint64_t n) { down_ += n; }
    RequestCounts snapshot() const;

private:
    std::atomic<uint64_t> put_{0}, get_{0}, head_{0}, list_{0}, del_{0}, up_{0}, down_{0};
};

class S3Client {
public:
    // loc gives endpoint, region, addressing style and credentials (bucket and prefix are ignored).
    explicit S3Client(const Location& loc, ClientOptions opt = {});
    ~S3Client();
    S3Client(const S3Client&) = delete;
    S3Client& operator=(const S3Client&) = delete;

    const ClientOptions& options() const { return opt_; }
    // Sets options().interrupt; before any request runs.
    void set_interrupt(std::function<bool()> fn) { opt_.interrupt = std::make_shared<std::function<bool()>>(std::move(fn)); }
    RequestCounts counts() const { return counts_.snapshot(); }
    // Whether requests are in flight without moving a byte, or being retried after an error.
    StoreWait waiting() const { return opt_.activity->snapshot(); }
    void share_waiting(SharedWait* to) { opt_.activity->share(to); }

    Status create_bucket(const std::string& bucket);

    Status put_object(const std::string& bucket, const std::string& key, const std::string& data,
                      const PutOptions& opt = {});
    // Streams a local file; above multipart_threshold it goes up as a parallel multipart upload.
    Status put_object_file(const std::string& bucket, const std::string& key, const std::string& path,
                           const PutOptions& opt = {});
    // A streaming writer: single PUT when it stays under multipart_threshold, multipart otherwise.
    std::unique_ptr<ObjectWriter> open_writer(const std::string& bucket, const std::string& key,
                                              const PutOptions& opt = {});

    Result<std::string> get_object(const std::string& bucket, const std::string& key, const ByteRange& range = {});
    // Streams the object to sink; a transfer cut short is resumed where it stopped (same ETag).
    Status get_object_stream(const std::string& bucket, const std::string& key, const Sink& sink,
                             const ByteRange& range = {});
    Result<ObjectInfo> head_object(const std::string& bucket, const std::string& key);

    Status delete_object(const std::string& bucket, const std::string& key);
    // Batch delete in chunks of 1,000 keys; keys that do not exist are not errors.
    Status delete_objects(const std::string& bucket, const std::vector<std::string>& keys);

    // One ListObjectsV2 page (max_keys ≤ 1000).
    Result<ListPage> list_objects_page(const std::string& bucket, const std::string& prefix,
                                       const std::string& delimiter, const std::string& continuation_token,
                                       int max_keys = 1000);
    // All pages (follows continuation tokens).
    Result<ListPage> list_objects(const std::string& bucket, const std::string& prefix, const std::string& delimiter = "");

    // Multipart upload steps (used by put_object_file and open_writer; public for tools and tests).
    Result<std::string> create_multipart_upload(const std::string& bucket, const std::string& key, const PutOptions& opt = {});
    Result<std::string> upload_part(const std::string& bucket, const std::string& key, const std::string& upload_id,
                                    int part_number, const char* data, size_t len);  // returns the ETag
    Status complete_multipart_upload(const std::string& bucket, const std::string& key, const std::string& upload_id,
                                     const std::vector<CompletedPart>& parts, const PutOptions& opt = {});
    Status abort_multipart_upload(const std::string& bucket, const std::string& key, const std::string& upload_id);

    struct Impl;

private:
    ClientOptions opt_;
    Counters counts_;
    std::unique_ptr<Impl> impl_;
};

// The S3 implementation of Store (used by open_store for s3:// locations).
std::unique_ptr<Store> make_s3_store(const Location& loc, ClientOptions opt = {});

}  // namespace walship::s3

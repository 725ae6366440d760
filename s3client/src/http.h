// The HTTP layer under S3Client (private): one request/response exchange on a libcurl easy
// handle, with RAII for CURL* and curl_slist*, a small pool of handles so connections are reused,
// and the translation of curl failures into Error values. Knows nothing of S3 or signing.
#pragma once

#include <atomic>
#include <curl/curl.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "walship/s3/error.h"

namespace walship::s3 {
class RequestActivity;
}

namespace walship::s3::http {

struct CurlDeleter {
    void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct MultiDeleter {
    void operator()(CURLM* m) const { curl_multi_cleanup(m); }
};
struct SlistDeleter {
    void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using CurlPtr = std::unique_ptr<CURL, CurlDeleter>;
using MultiPtr = std::unique_ptr<CURLM, MultiDeleter>;
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

// An easy handle and the multi handle it runs in: the multi keeps the connections for reuse (as
// curl_easy_perform's own would) and lets a transfer be watched between short polls.
struct Handle {
    CurlPtr easy;
    MultiPtr multi;
};

// Calls curl_global_init exactly once per process.
void global_init();

struct Request {
    std::string method;  // GET, PUT, POST, HEAD, DELETE
    std::string url;
    std::vector<std::pair<std::string, std::string>> headers;  // sent exactly as given
    const char* body = nullptr;  // request body (not copied; must outlive the call)
    size_t body_len = 0;
    long connect_timeout_ms = 10000;
    long stall_timeout_ms = 30000;  // abort when no byte moves for this long, or fewer than
    long min_speed = 1024;          // min_speed bytes/s move over a window this long
    bool verify_tls = true;
    std::string ca_file;
    const std::atomic<bool>* cancel = nullptr;  // when set to true, the transfer ends at once
    const std::function<bool()>* interrupt = nullptr;  // when it answers true, the transfer ends at once
    RequestActivity* activity = nullptr;                // told whenever bytes move
};

struct Response {
    long status = 0;
    std::map<std::string, std::string> headers;  // names lower-cased
    std::string body;            // the body when no sink took it (error bodies always land here)
    uint64_t body_bytes = 0;     // bytes received in the body (sink or not)
    bool sink_aborted = false;   // the sink returned false
};

// Receives the body of a 2xx response (the Response's status and headers are already set);
// return false to abort.
using BodySink = std::function<bool(const char* data, size_t len)>;

// Performs one exchange. A cancel or interrupt ends it within about 50 ms, waiting or not. Returns an Error (kind Network/Timeout/Config...) only when no HTTP answer
// arrived or the transfer broke; an HTTP error status is not an Error here. The message has no
// operation prefix; the caller adds it.
Error perform(Handle& h, const Request& req, Response& resp, const BodySink& sink = nullptr);

// A pool of handles; lease() hands out one (new or reused), and the lease puts it back.
class HandlePool {
public:
    class Lease {
    public:
        Lease(HandlePool* pool, Handle h) : pool_(pool), h_(std::move(h)) {}
        Lease(Lease&&) = default;
        ~Lease() { if (h_.easy) pool_->give_back(std::move(h_)); }
        Handle& get() { return h_; }
    private:
        HandlePool* pool_;
        Handle h_;
    };
    explicit HandlePool(size_t max_idle = 16) : max_idle_(max_idle) {}
    Lease lease();

private:
    void give_back(Handle h);
    std::mutex mu_;
    std::vector<Handle> idle_;
    size_t max_idle_;
};

}  // namespace walship::s3::http

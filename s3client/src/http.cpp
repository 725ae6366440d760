// One HTTP exchange on a libcurl easy handle. The handle is reset and configured per request
// (timeouts, TLS verification, no signals, no "Expect: 100-continue"), the body is sent from
// memory, response headers are collected lower-cased, and the body of a 2xx answer goes to the
// caller's sink while error bodies are kept for parsing. Curl failures become Error values
// (Timeout, Network, Config for TLS verification or bad URLs); the curl error text never holds
// credentials because none are in URLs.
#include "http.h"

#include "walship/s3/client.h"

#include <algorithm>
#include <chrono>
#include <cstring>

namespace walship::s3::http {
namespace {

struct Exchange {
    CURL* curl;
    const Request* req;
    Response* resp;
    const BodySink* sink;
    size_t sent = 0;
    // Progress watch (see on_progress).
    std::chrono::steady_clock::time_point last_move{}, window_start{};
    curl_off_t last_total = 0, window_total = 0;
    bool timed_out = false;
    bool interrupted = false;
};

// Ends the attempt when no byte moved for stall_timeout_ms, or when fewer than min_speed bytes/s
// moved over a whole window of stall_timeout_ms (a trickle). curl calls this at least about once
// a second even when nothing moves, so the limit holds to within about a second.
int on_progress(void* user, curl_off_t, curl_off_t dlnow, curl_off_t, curl_off_t ulnow) {
    auto* ex = static_cast<Exchange*>(user);
    if (ex->req->cancel && ex->req->cancel->load()) return 1;
    if (ex->req->interrupt && (*ex->req->interrupt)()) return ex->interrupted = true, 1;
    auto now = std::chrono::steady_clock::now();
    curl_off_t total = dlnow + ulnow;
    if (total != ex->last_total) {
        ex->last_total = total, ex->last_move = now;
        if (ex->req->activity) ex->req->activity->moved();
    }
    auto ms = [&](std::chrono::steady_clock::time_point t) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(now - t).count();
    };
    long limit = ex->req->stall_timeout_ms;
    if (ms(ex->last_move) >= limit) return ex->timed_out = true, 1;
    if (ms(ex->window_start) >= limit) {
        double need = std::max(1.0, (double)ex->req->min_speed * (double)limit / 1000.0);
        if ((double)(total - ex->window_total) < need) return ex->timed_out = true, 1;
        ex->window_start = now, ex->window_total = total;
    }
    return 0;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
    auto* ex = static_cast<Exchange*>(user);
    size_t len = size * n;
    std::string line(data, len);
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
    if (line.rfind("HTTP/", 0) == 0) {  // a new response (after 100 Continue or a redirect)
        ex->resp->headers.clear();
        return len;
    }
    size_t colon = line.find(':');
    if (colon == std::string::npos) return len;
    std::string name = line.substr(0, colon), value = line.substr(colon + 1);
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return (char)std::tolower(c); });
    size_t b = value.find_first_not_of(" \t");
    value = b == std::string::npos ? "" : value.substr(b);
    ex->resp->headers[name] = value;
    return len;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
    auto* ex = static_cast<Exchange*>(user);
    size_t len = size * n;
    long status = 0;
    curl_easy_getinfo(ex->curl, CURLINFO_RESPONSE_CODE, &status);
    ex->resp->status = status;  // status and headers are complete when the sink sees the body
    ex->resp->body_bytes += len;
    if (status >= 200 && status < 300 && ex->sink && *ex->sink) {
        bool keep_going = false;
        try {
            keep_going = (*ex->sink)(data, len);
        } catch (...) {
            keep_going = false;
        }
        if (!keep_going) {
            ex->resp->sink_aborted = true;
            return 0;  // makes curl stop with CURLE_WRITE_ERROR
        }
        return len;
    }
    if (status >= 300 && ex->resp->body.size() > (1u << 20)) return len;  // cap error bodies
    ex->resp->body.append(data, len);
    return len;
}

size_t on_read(char* buf, size_t size, size_t n, void* user) {
    auto* ex = static_cast<Exchange*>(user);
    size_t left = ex->req->body_len - ex->sent;
    size_t len = std::min(left, size * n);
    if (len) std::memcpy(buf, ex->req->body + ex->sent, len);
    ex->sent += len;
    return len;
}

int on_seek(void* user, curl_off_t offset, int origin) {
    auto* ex = static_cast<Exchange*>(user);
    if (origin != SEEK_SET || offset < 0 || (size_t)offset > ex->req->body_len) return CURL_SEEKFUNC_FAIL;
    ex->sent = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

Error curl_error(CURLcode rc, const char* errbuf, const Response& resp, const Request& req, bool stalled, bool interrupted) {
    if (interrupted) return make_error(ErrorKind::Network, "interrupted by the caller");
    if (stalled)
        return make_error(ErrorKind::Timeout, "timeout: less than " + std::to_string(req.min_speed) + " bytes/s for " +
                          std::to_string(req.stall_timeout_ms) + " ms");
    std::string detail = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    while (!detail.empty() && detail.back() == '\n') detail.pop_back();
    detail += " (curl " + std::to_string((int)rc) + ")";
    switch (rc) {
        case CURLE_OPERATION_TIMEDOUT:
            return make_error(ErrorKind::Timeout, "timeout: " + detail + " [connect limit " +
                              std::to_string(req.connect_timeout_ms) + " ms]");
        case CURLE_WRITE_ERROR:
        case CURLE_ABORTED_BY_CALLBACK:
            if (resp.sink_aborted) return make_error(ErrorKind::Io, "download stopped by the receiver");
            if (req.cancel && req.cancel->load()) return make_error(ErrorKind::Network, "cancelled (the store is closing)");
            return make_error(ErrorKind::Network, "network error: " + detail);
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_ISSUER_ERROR:
            return make_error(ErrorKind::Config, "TLS certificate verification failed: " + detail);
        case CURLE_URL_MALFORMAT:
        case CURLE_UNSUPPORTED_PROTOCOL:
            return make_error(ErrorKind::Config, "bad URL: " + detail);
        case CURLE_READ_ERROR:
            return make_error(ErrorKind::Io, "reading the request body: " + detail);
        default:
            return make_error(ErrorKind::Network, "network error: " + detail);
    }
}

}  // namespace

// curl_easy_perform, but watched: curl calls on_progress only about once a second while nothing
// moves, so a cancel (a close that has waited close_timeout) or an interrupt could wait that long.
static CURLcode run(Handle& h, const Request& req, bool* interrupted) {
    CURLM* m = h.multi.get();
    if (!m || !h.easy) return CURLE_OUT_OF_MEMORY;
    if (curl_multi_add_handle(m, h.easy.get()) != CURLM_OK) return CURLE_FAILED_INIT;
    CURLcode rc = CURLE_OK;
    for (int running = 1;;) {
        if (curl_multi_perform(m, &running) != CURLM_OK) {
            rc = CURLE_FAILED_INIT;
            break;
        }
        if (!running) {
            int left = 0;
            while (CURLMsg* msg = curl_multi_info_read(m, &left))
                if (msg->msg == CURLMSG_DONE) rc = msg->data.result;
            break;
        }
        if (req.cancel && req.cancel->load()) {
            rc = CURLE_ABORTED_BY_CALLBACK;
            break;
        }
        if (req.interrupt && (*req.interrupt)()) {
            *interrupted = true, rc = CURLE_ABORTED_BY_CALLBACK;
            break;
        }
        if (curl_multi_poll(m, nullptr, 0, 50, nullptr) != CURLM_OK) {
            rc = CURLE_FAILED_INIT;
            break;
        }
    }
    curl_multi_remove_handle(m, h.easy.get());
    return rc;
}

void global_init() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

Error perform(Handle& h, const Request& req, Response& resp, const BodySink& sink) {
    CURL* curl = h.easy.get();
    curl_easy_reset(curl);  // keeps the connection cache
    resp = Response{};
    Exchange ex{curl, &req, &resp, &sink};
    char errbuf[CURL_ERROR_SIZE] = {0};

    curl_slist* raw = nullptr;
    for (auto& [name, value] : req.headers) {
        std::string line = value.empty() ? name + ";" : name + ": " + value;
        raw = curl_slist_append(raw, line.c_str());
    }
    raw = curl_slist_append(raw, "Expect:");  // no 100-continue round trip
    SlistPtr headers(raw);

    curl_easy_setopt(curl, CURLOPT_URL, req.url.c_str());
    curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);  // a key "a/../b" is signed as it is: sent as it is
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(curl, CURLOPT_BUFFERSIZE, 512L * 1024);  // fewer, larger reads for big downloads
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, req.connect_timeout_ms);
    ex.last_move = ex.window_start = std::chrono::steady_clock::now();
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &ex);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, req.verify_tls ? 1L : 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, req.verify_tls ? 2L : 0L);
    if (!req.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, req.ca_file.c_str());
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &ex);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &ex);

    if (req.method == "HEAD") {
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    } else if (req.method == "PUT") {
        curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(curl, CURLOPT_READDATA, &ex);
        curl_easy_setopt(curl, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(curl, CURLOPT_SEEKDATA, &ex);
        curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)req.body_len);
    } else if (req.method == "POST") {
        curl_easy_setopt(curl, CURLOPT_POST, 1L);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req.body ? req.body : "");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req.body_len);
    } else if (req.method != "GET") {
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    }

    CURLcode rc = run(h, req, &ex.interrupted);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp.status);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, nullptr);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, nullptr);
    if (rc != CURLE_OK) return curl_error(rc, errbuf, resp, req, ex.timed_out, ex.interrupted);
    return {};
}

HandlePool::Lease HandlePool::lease() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (!idle_.empty()) {
            Handle h = std::move(idle_.back());
            idle_.pop_back();
            return Lease(this, std::move(h));
        }
    }
    global_init();
    return Lease(this, Handle{CurlPtr(curl_easy_init()), MultiPtr(curl_multi_init())});
}

void HandlePool::give_back(Handle h) {
    std::lock_guard<std::mutex> lock(mu_);
    if (idle_.size() < max_idle_) idle_.push_back(std::move(h));
}

}  // namespace walship::s3::http

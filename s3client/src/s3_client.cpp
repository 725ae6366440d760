// S3Client: S3's REST operations on top of http.cpp and the SigV4 signer. Each operation builds a
// Call (method, bucket, key, query, headers, body), which is addressed (virtual-hosted or path
// style), signed afresh for every attempt, performed on a pooled curl handle, counted, and turned
// into an Error by classify() — the one place where S3 error codes (NoSuchKey, SlowDown, ...)
// become error kinds. with_retries() repeats transient failures with exponential backoff and full
// jitter. Multipart uploads run parts on a few worker threads (PartUploader), shared by
// put_object_file (parts read from the file) and the streaming ObjectWriter.
#include "walship/s3/client.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "http.h"
#include "walship/s3/sigv4.h"

namespace walship::s3 {

RequestCounts Counters::snapshot() const {
    RequestCounts c;
    c.put = put_, c.get = get_, c.head = head_, c.list = list_, c.del = del_;
    c.bytes_up = up_, c.bytes_down = down_;
    return c;
}

ClientOptions ClientOptions::from_env(const Environment& env) {
    ClientOptions o;
    if (long v = std::atol(env.get("WALSHIP_S3_TIMEOUT_MS").c_str()); v > 0) o.timeout_ms = v, o.connect_timeout_ms = v;
    if (int v = std::atoi(env.get("WALSHIP_S3_ATTEMPTS").c_str()); v > 0) o.max_attempts = v;
    return o;
}

namespace {

// ---- small XML reading and writing (S3's responses are flat and predictable) ----

std::string xml_unescape(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); i++) {
        if (s[i] != '&') {
            out += s[i];
            continue;
        }
        size_t semi = s.find(';', i);
        if (semi == std::string::npos) {
            out += s[i];
            continue;
        }
        std::string ent = s.substr(i + 1, semi - i - 1);
        if (ent == "amp") out += '&';
        else if (ent == "lt") out += '<';
        else if (ent == "gt") out += '>';
        else if (ent == "quot") out += '"';
        else if (ent == "apos") out += '\'';
        else if (!ent.empty() && ent[0] == '#') {
            unsigned long cp = ent.size() > 1 && (ent[1] == 'x' || ent[1] == 'X') ? std::strtoul(ent.c_str() + 2, nullptr, 16)
                                                                                  : std::strtoul(ent.c_str() + 1, nullptr, 10);
            if (cp < 0x80) out += (char)cp;  // UTF-8 encode
            else if (cp < 0x800) out += (char)(0xC0 | (cp >> 6)), out += (char)(0x80 | (cp & 0x3F));
            else if (cp < 0x10000) out += (char)(0xE0 | (cp >> 12)), out += (char)(0x80 | ((cp >> 6) & 0x3F)), out += (char)(0x80 | (cp & 0x3F));
            else out += (char)(0xF0 | (cp >> 18)), out += (char)(0x80 | ((cp >> 12) & 0x3F)), out += (char)(0x80 | ((cp >> 6) & 0x3F)), out += (char)(0x80 | (cp & 0x3F));
        } else {
            out += s.substr(i, semi - i + 1);
        }
        i = semi;
    }
    return out;
}

std::string xml_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&apos;"; break;
            case '\r': out += "&#13;"; break;
            case '\n': out += "&#10;"; break;
            default: out += c;
        }
    }
    return out;
}

// Inner texts of every <tag>…</tag> (tags without attributes, not nested in themselves).
std::vector<std::string> xml_all(const std::string& xml, const std::string& tag) {
    std::vector<std::string> out;
    std::string open = "<" + tag + ">", close = "</" + tag + ">";
    size_t pos = 0;
    while ((pos = xml.find(open, pos)) != std::string::npos) {
        size_t start = pos + open.size();
        size_t end = xml.find(close, start);
        if (end == std::string::npos) break;
        out.push_back(xml.substr(start, end - start));
        pos = end + close.size();
    }
    return out;
}

std::string xml_first(const std::string& xml, const std::string& tag) {
    auto all = xml_all(xml, tag);
    return all.empty() ? std::string() : xml_unescape(all[0]);
}

// The document has the element root, closed ("<root ...>...</root>" or "<root .../>").
bool whole_xml(const std::string& xml, const std::string& root) {
    size_t open = xml.find("<" + root);
    if (open == std::string::npos) return false;
    size_t gt = xml.find('>', open);
    if (gt == std::string::npos) return false;
    return xml[gt - 1] == '/' || xml.find("</" + root + ">", gt) != std::string::npos;
}

std::string strip_quotes(std::string s) {
    if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
    return s;
}

int64_t parse_iso8601(const std::string& s) {  // "2024-01-02T03:04:05.000Z"
    struct tm tm {};
    if (!strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm)) return 0;
    return (int64_t)timegm(&tm);
}

std::string base64_md5(const std::string& data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(data.data(), data.size(), md, &n, EVP_md5(), nullptr);
    unsigned char out[64];
    int len = EVP_EncodeBlock(out, md, (int)n);
    return std::string((char*)out, (size_t)len);
}

bool is_ip_or_localhost(const std::string& host) {
    if (host == "localhost" || (!host.empty() && host[0] == '[')) return true;
    for (char c : host)
        if (!std::isdigit((unsigned char)c) && c != '.') return false;
    return true;
}

// ---- errors ----

// The one place where an S3 answer becomes an error kind.
ErrorKind kind_for(long status, const std::string& code) {
    if (code == "NoSuchKey" || code == "NoSuchBucket" || code == "NoSuchUpload" || status == 404) return ErrorKind::NotFound;
    if (code == "SlowDown" || code == "Throttling" || code == "ThrottlingException" || code == "RequestLimitExceeded" ||
        status == 429)
        return ErrorKind::Throttled;
    if (code == "RequestTimeout" || status == 408) return ErrorKind::Timeout;
    if (status == 503 && code.empty()) return ErrorKind::Throttled;  // a HEAD's SlowDown: no body to say so
    if (code == "NotImplemented" || status == 501) return ErrorKind::BadRequest;  // asking again cannot help
    if (code == "InternalError" || code == "ServiceUnavailable" || code == "ConditionalRequestConflict" || status >= 500)
        return ErrorKind::Server;
    if (status == 412 || code == "PreconditionFailed") return ErrorKind::PreconditionFailed;
    if (status == 401 || status == 403) return ErrorKind::AccessDenied;
    return ErrorKind::BadRequest;
}

// Error from a non-2xx answer (or a 2xx whose body is an <Error>, as CompleteMultipartUpload can).
Error classify(const std::string& op, const std::string& key, const http::Response& r) {
    std::string code = xml_first(r.body, "Code"), msg = xml_first(r.body, "Message");
    ErrorKind kind = kind_for(r.status, code);
    std::string text = op + ": HTTP " + std::to_string(r.status);
    if (!code.empty()) text += " " + code;
    text += ": " + (msg.empty() ? std::string(kind_name(kind)) : msg);
    if (code.empty() && kind == ErrorKind::AccessDenied)  // (a HEAD's answer has no body to say why)
        text += " (check the access key and secret, the bucket's policy, and this machine's clock)";
    if (!key.empty()) text += " (key '" + key + "')";
    return make_error(kind, text, (int)r.status, code);
}

enum class Count { Put, Get, Head, List, Del };

struct Call {
    std::string op;  // "put_object"
    std::string method;
    std::string bucket;
    std::string key;    // may be empty (bucket-level)
    std::string query;  // wire query, names sorted, values encoded
    std::vector<sigv4::Header> headers;
    const char* body = nullptr;
    size_t body_len = 0;
    std::string payload_hash;  // computed once (body does not change between attempts)
    Count count = Count::Get;
    const char* answer = nullptr;  // the XML root a 2xx answer must hold whole, e.g. "ListBucketResult"
};

}  // namespace

// ---- the client ----

struct S3Client::Impl {
    Location loc;
    http::HandlePool pool;
    bool path_style = false;
    std::string scheme, host;  // from the endpoint: "https", "s3.us-east-1.amazonaws.com[:port]"

    explicit Impl(const Location& l) : loc(l) {
        size_t sep = loc.endpoint.find("://");
        scheme = sep == std::string::npos ? "https" : loc.endpoint.substr(0, sep);
        host = sep == std::string::npos ? loc.endpoint : loc.endpoint.substr(sep + 3);
        std::string bare = host;
        if (!bare.empty() && bare[0] != '[') bare = bare.substr(0, bare.find(':'));
        path_style = loc.force_path_style || is_ip_or_localhost(bare);
    }

    // Buckets that cannot be DNS labels (dots break TLS wildcard names too) use path style.
    bool use_path_style(const std::string& bucket) const {
        if (path_style) return true;
        for (char c : bucket)
            if (c == '.' || c == '_' || std::isupper((unsigned char)c)) return true;
        return false;
    }
};

namespace {
int64_t steady_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

void RequestActivity::begin() {
    if (in_flight_.fetch_add(1) == 0) last_move_ms_ = steady_ms();  // the wait starts now
    if (shared_.load()) {
        std::lock_guard<std::mutex> lock(mu_);
        share_locked();
    }
}

void RequestActivity::moved() {
    const int64_t now = steady_ms();
    last_move_ms_ = now;
    if (SharedWait* s = shared_.load(std::memory_order_relaxed)) s->last_move_ms.store(now, std::memory_order_relaxed);
}

void RequestActivity::retrying(const std::string& error) {
    std::lock_guard<std::mutex> lock(mu_);
    retrying_ = error;
    share_locked();
}

void RequestActivity::end(const std::string& retried_error) {
    in_flight_.fetch_sub(1);
    std::lock_guard<std::mutex> lock(mu_);
    if (!retried_error.empty() && retrying_ == retried_error) retrying_.clear();  // not another request's since
    share_locked();
}

StoreWait RequestActivity::snapshot() const {
    StoreWait w;
    if (in_flight_.load() <= 0) return w;
    w.stalled_ms = std::max<int64_t>(0, steady_ms() - last_move_ms_.load());
    std::lock_guard<std::mutex> lock(mu_);
    w.retrying = retrying_;
    return w;
}

void RequestActivity::share(SharedWait* to) {
    std::lock_guard<std::mutex> lock(mu_);
    shared_ = to;
    share_locked();
}

// Called with mu_ held, so that writers of the shared words take turns.
void RequestActivity::share_locked() {
    if (SharedWait* s = shared_.load()) s->write(std::max(0, in_flight_.load()), last_move_ms_.load(), in_flight_.load() > 0 ? retrying_ : "");
}

void write_shared_text(std::atomic<uint32_t>& seq, char* text, size_t size, const std::string& value) {
    const size_t n = std::min(value.size(), size - 1);
    seq.fetch_add(1);  // odd: changing
    std::atomic_thread_fence(std::memory_order_release);
    memcpy(text, value.data(), n);
    text[n] = 0;
    std::atomic_thread_fence(std::memory_order_release);
    seq.fetch_add(1);
}

std::string read_shared_text(const std::atomic<uint32_t>& seq, const char* text, size_t size) {
    std::string buf(size, '\0');
    for (int attempt = 0; attempt < 100; attempt++) {
        const uint32_t before = seq.load(std::memory_order_acquire);
        if (before & 1) continue;
        memcpy(&buf[0], text, size);
        std::atomic_thread_fence(std::memory_order_acquire);
        if (seq.load() != before) continue;
        buf[size - 1] = 0;
        return buf.c_str();
    }
    return "";
}

StoreWait SharedWait::read() const {
    StoreWait w;
    if (in_flight.load() <= 0) return w;
    w.stalled_ms = std::max<int64_t>(0, steady_ms() - last_move_ms.load());
    w.retrying = read_shared_text(seq, retrying, sizeof retrying);
    return w;
}

void SharedWait::write(int32_t n, int64_t last_move, const std::string& text) {
    last_move_ms = last_move;
    write_shared_text(seq, retrying, sizeof retrying, text);
    in_flight = n;
}

S3Client::S3Client(const Location& loc, ClientOptions opt) : opt_(std::move(opt)), impl_(std::make_unique<Impl>(loc)) {
    http::global_init();
    if (!opt_.cancel) opt_.cancel = std::make_shared<std::atomic<bool>>(false);
    if (!opt_.activity) opt_.activity = std::make_shared<RequestActivity>();
    if (opt_.max_attempts < 1) opt_.max_attempts = 1;
    if (opt_.upload_threads < 1) opt_.upload_threads = 1;
    if (opt_.part_size < (5u << 20)) opt_.part_size = 5u << 20;  // S3's minimum part size
    if (opt_.multipart_threshold < opt_.part_size) opt_.multipart_threshold = opt_.part_size;
}

S3Client::~S3Client() = default;

namespace {

// One attempt: address, sign, perform, count, classify.
Error attempt(S3Client::Impl& im, const ClientOptions& opt, Counters& counts, const Call& c, http::Response& resp,
              const http::BodySink& sink) {
    bool path = im.use_path_style(c.bucket);
    std::string host = path || c.bucket.empty() ? im.host : c.bucket + "." + im.host;
    std::string wire_path = "/";
    if (path && !c.bucket.empty()) wire_path += c.bucket + (c.key.empty() ? "" : "/");
    wire_path += sigv4::uri_encode(c.key, true);

    sigv4::Request sreq;
    sreq.method = c.method;
    sreq.path = wire_path;
    sreq.query = c.query;
    sreq.headers.push_back({"Host", host});
    for (auto& h : c.headers) sreq.headers.push_back(h);
    sreq.payload_hash = c.payload_hash;
    sigv4::Options sopt;
    sopt.region = im.loc.region;
    sigv4::sign(sreq, {im.loc.access_key_id, im.loc.secret_access_key, im.loc.session_token}, std::time(nullptr), sopt);

    http::Request hreq;
    hreq.method = c.method;
    hreq.url = im.scheme + "://" + host + wire_path + (c.query.empty() ? "" : "?" + c.query);
    for (auto& h : sreq.headers) hreq.headers.emplace_back(h.name, h.value);
    hreq.body = c.body;
    hreq.body_len = c.body_len;
    hreq.connect_timeout_ms = opt.connect_timeout_ms;
    hreq.stall_timeout_ms = opt.timeout_ms;
    hreq.min_speed = opt.min_speed_bytes;
    hreq.verify_tls = opt.verify_tls;
    hreq.ca_file = opt.ca_file;
    hreq.cancel = opt.cancel.get();
    hreq.interrupt = opt.interrupt.get();
    hreq.activity = opt.activity.get();

    switch (c.count) {
        case Count::Put: counts.add_put(); break;
        case Count::Get: counts.add_get(); break;
        case Count::Head: counts.add_head(); break;
        case Count::List: counts.add_list(); break;
        case Count::Del: counts.add_del(); break;
    }
    counts.add_up(c.body_len);

    auto lease = im.pool.lease();
    if (!lease.get().easy || !lease.get().multi) return make_error(ErrorKind::Network, c.op + ": could not create a curl handle");
    Error e = http::perform(lease.get(), hreq, resp, sink);
    counts.add_down(resp.body_bytes);
    if (!e.ok()) {
        e.message = c.op + ": " + e.message + (c.key.empty() ? "" : " (key '" + c.key + "')");
        if (!path && !c.bucket.empty() && e.message.find("resolve host") != std::string::npos)
            e.message += " (virtual-hosted addressing puts the bucket in the host name; a server without bucket host names, as MinIO often is, needs force_path_style=true)";
        return e;
    }
    if (resp.status < 200 || resp.status >= 300) return classify(c.op, c.key, resp);
    if (c.answer && !whole_xml(resp.body, c.answer)) {
        // A proxy's or captive portal's page, or an answer cut short: not an empty listing.
        std::string start = resp.body.substr(0, 60);
        for (char& ch : start)
            if ((unsigned char)ch < 0x20 || (unsigned char)ch >= 0x7f) ch = ' ';
        return make_error(ErrorKind::Server, c.op + ": HTTP " + std::to_string(resp.status) + " but the answer is not a whole S3 " + c.answer +
                                                 (resp.body.empty() ? " (empty body)" : " (it starts '" + start + "')"),
                          (int)resp.status);
    }
    return {};
}

long backoff_ms(const ClientOptions& opt, int attempt_no) {  // full jitter
    thread_local std::mt19937_64 rng(std::random_device{}());
    double cap = std::min<double>((double)opt.backoff_max_ms, (double)opt.backoff_base_ms * std::pow(2.0, attempt_no));
    std::uniform_real_distribution<double> d(0, cap);
    return (long)d(rng);
}

// Runs fn(attempt_index) until it succeeds, fails permanently, or attempts run out.
Error with_retries(const ClientOptions& opt, const std::function<Error(int)>& fn) {
    struct Report {  // tells opt.activity the request runs, and which error it is retried after
        RequestActivity* a;
        std::string retried;
        explicit Report(RequestActivity* act) : a(act) {
            if (a) a->begin();
        }
        ~Report() {
            if (a) a->end(retried);
        }
    } report(opt.activity.get());
    Error e;
    auto cancelled = [&] { return opt.cancel && opt.cancel->load(); };
    auto interrupted = [&] { return opt.interrupt && (*opt.interrupt)(); };
    for (int i = 0; i < opt.max_attempts; i++) {
        if (i > 0) {
            auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(backoff_ms(opt, i - 1));
            while (!cancelled() && !interrupted() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        if (cancelled()) return make_error(ErrorKind::Network, "cancelled (the store is closing)" + (e.ok() ? std::string() : "; last error: " + e.message));
        if (interrupted()) return make_error(ErrorKind::Network, "interrupted by the caller" + (e.ok() ? std::string() : "; last error: " + e.message));
        e = fn(i);
        if (e.ok() || !e.transient()) return e;
        if (report.a && i + 1 < opt.max_attempts) {
            report.retried = e.message + " (attempt " + std::to_string(i + 1) + " of " + std::to_string(opt.max_attempts) + ")";
            report.a->retrying(report.retried);
        }
    }
    if (opt.max_attempts > 1) e.message += " (after " + std::to_string(opt.max_attempts) + " attempts)";
    return e;
}

std::string range_header(uint64_t offset, std::optional<uint64_t> length) {
    std::string h = "bytes=" + std::to_string(offset) + "-";
    if (length) h += std::to_string(offset + *length - 1);
    return h;
}

// A ranged GET must be answered 206 with a Content-Range starting at the byte asked for (and
// ending no later; S3 clips at the object's end). A server or proxy that ignores Range answers 200
// with the whole object, which a resumed download would hand on from byte 0 again; s3rver 3.7.1
// answers "bytes=0-0" with the whole object. Returns what is wrong, or "".
std::string range_mismatch(const http::Response& r, uint64_t off, std::optional<uint64_t> len) {
    auto it = r.headers.find("content-range");
    std::string cr = it == r.headers.end() ? "" : it->second;
    unsigned long long start = 0, end = 0;
    if (r.status == 206 && std::sscanf(cr.c_str(), "bytes %llu-%llu/", &start, &end) == 2 && start == off &&
        end >= start && (!len || end <= off + *len - 1))
        return "";
    return "asked for " + range_header(off, len) + ", got HTTP " + std::to_string(r.status) +
           (cr.empty() ? " without Content-Range" : " with Content-Range " + cr);
}

}  // namespace

// Performs a call with retries; the response of the last attempt is left in resp.
static Error run(S3Client::Impl& im, const ClientOptions& opt, Counters& counts, Call& c, http::Response& resp) {
    if (c.payload_hash.empty()) c.payload_hash = sigv4::sha256_hex(c.body ? c.body : "", c.body_len);
    return with_retries(opt, [&](int) { return attempt(im, opt, counts, c, resp, nullptr); });
}

Status S3Client::create_bucket(const std::string& bucket) {
    Call c{"create_bucket", "PUT", bucket, "", "", {}, nullptr, 0, "", Count::Put};
    std::string body;
    if (impl_->loc.region != "us-east-1") {
        body = "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>" +
               impl_->loc.region + "</LocationConstraint></CreateBucketConfiguration>";
        c.body = body.data(), c.body_len = body.size();
    }
    http::Response r;
    Error e = run(*impl_, opt_, counts_, c, r);
    if (!e.ok() && e.code == "BucketAlreadyOwnedByYou") return {};
    return e;
}

Result<std::string> S3Client::get_object(const std::string& bucket, const std::string& key, const ByteRange& range) {
    std::string out;
    Status st = get_object_stream(bucket, key, [&](const char* d, size_t n) { out.append(d, n); return true; }, range);
    if (!st.ok()) return st;
    return out;
}

Status S3Client::get_object_stream(const std::string& bucket, const std::string& key, const Sink& sink, const ByteRange& range) {
    if (range.length && *range.length == 0) return {};
    uint64_t delivered = 0;
    std::string etag;  // of the first answer; a resumed transfer must get the same object
    http::BodySink counting = [&](const char* d, size_t n) {
        if (!sink(d, n)) return false;
        delivered += n;
        return true;
    };
    return with_retries(opt_, [&](int) {
        Call c{"get_object", "GET", bucket, key, "", {}, nullptr, 0, sigv4::sha256_hex(""), Count::Get};
        uint64_t off = range.offset + delivered;
        std::optional<uint64_t> len = range.length;
        if (len) *len -= delivered;
        if (off > 0 || len) c.headers.push_back({"Range", range_header(off, len)});
        if (!etag.empty()) c.headers.push_back({"If-Match", "\"" + etag + "\""});
        http::Response r;
        std::string wrong;  // the answer is not the range asked for (checked before its first byte is passed on)
        bool first = true;
        http::BodySink checked = [&](const char* d, size_t n) {
            if (first && (off > 0 || len)) wrong = range_mismatch(r, off, len);
            first = false;
            return wrong.empty() && counting(d, n);
        };
        Error e = attempt(*impl_, opt_, counts_, c, r, checked);
        if (!wrong.empty()) return make_error(ErrorKind::Server, "get_object: " + wrong + " (key '" + key + "')");
        if (etag.empty() && r.status >= 200 && r.status < 300) etag = strip_quotes(r.headers["etag"]);
        if (e.kind == ErrorKind::PreconditionFailed && !etag.empty())
            e.message = "get_object: object changed while being downloaded (key '" + key + "')";
        return e;
    });
}

Result<ObjectInfo> S3Client::head_object(const std::string& bucket, const std::string& key) {
    Call c{"head_object", "HEAD", bucket, key, "", {}, nullptr, 0, "", Count::Head};
    http::Response r;
    Error e = run(*impl_, opt_, counts_, c, r);
    if (!e.ok()) return e;
    ObjectInfo info;
    info.key = key;
    info.size = std::strtoull(r.headers["content-length"].c_str(), nullptr, 10);
    info.etag = strip_quotes(r.headers["etag"]);
    time_t t = curl_getdate(r.headers["last-modified"].c_str(), nullptr);
    info.mtime_unix = t > 0 ? (int64_t)t : 0;
    return info;
}

Status S3Client::delete_object(const std::string& bucket, const std::string& key) {
    Call c{"delete_object", "DELETE", bucket, key, "", {}, nullptr, 0, "", Count::Del};
    http::Response r;
    Error e = run(*impl_, opt_, counts_, c, r);
    if (e.kind == ErrorKind::NotFound && e.code != "NoSuchBucket") return {};
    return e;
}

Status S3Client::delete_objects(const std::string& bucket, const std::vector<std::string>& keys) {
    for (size_t start = 0; start < keys.size(); start += 1000) {
        size_t end = std::min(keys.size(), start + 1000);
        std::string body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>";
        for (size_t i = start; i < end; i++) body += "<Object><Key>" + xml_escape(keys[i]) + "</Key></Object>";
        body += "</Delete>";
        Call c{"delete_objects", "POST", bucket, "", "delete=", {}, body.data(), body.size(), "", Count::Del, "DeleteResult"};
        c.headers.push_back({"Content-MD5", base64_md5(body)});  // S3 requires it for DeleteObjects
        c.headers.push_back({"Content-Type", "application/xml"});
        http::Response r;
        Error e = run(*impl_, opt_, counts_, c, r);
        if (!e.ok()) return e;
        for (auto& err : xml_all(r.body, "Error")) {  // per-key failures (quiet mode lists only these)
            std::string code = xml_first(err, "Code");
            if (code == "NoSuchKey") continue;
            http::Response fake;
            fake.status = code == "AccessDenied" ? 403 : code == "InternalError" ? 500 : 400;
            fake.body = "<Error>" + err + "</Error>";
            return classify("delete_objects", xml_first(err, "Key"), fake);
        }
    }
    return {};
}

Result<ListPage> S3Client::list_objects_page(const std::string& bucket, const std::string& prefix, const std::string& delimiter,
                                             const std::string& token, int max_keys) {
    std::string q;  // names in sorted order
    if (!token.empty()) q += "continuation-token=" + sigv4::uri_encode(token, false) + "&";
    if (!delimiter.empty()) q += "delimiter=" + sigv4::uri_encode(delimiter, false) + "&";
    q += "list-type=2&max-keys=" + std::to_string(max_keys);
    if (!prefix.empty()) q += "&prefix=" + sigv4::uri_encode(prefix, false);
    Call c{"list_objects", "GET", bucket, "", q, {}, nullptr, 0, "", Count::List, "ListBucketResult"};
    http::Response r;
    Error e = run(*impl_, opt_, counts_, c, r);
    if (!e.ok()) return e;
    ListPage page;
    for (auto& item : xml_all(r.body, "Contents")) {
        ObjectInfo o;
        o.key = xml_first(item, "Key");
        o.size = std::strtoull(xml_first(item, "Size").c_str(), nullptr, 10);
        o.etag = strip_quotes(xml_first(item, "ETag"));
        o.mtime_unix = parse_iso8601(xml_first(item, "LastModified"));
        page.objects.push_back(std::move(o));
    }
    for (auto& cp : xml_all(r.body, "CommonPrefixes")) page.common_prefixes.push_back(xml_first(cp, "Prefix"));
    if (xml_first(r.body, "IsTruncated") == "true") {
        page.next_continuation_token = xml_first(r.body, "NextContinuationToken");
        if (page.next_continuation_token.empty())
            return make_error(ErrorKind::BadRequest, "list_objects: truncated listing without a continuation token");
    }
    return page;
}

Result<ListPage> S3Client::list_objects(const std::string& bucket, const std::string& prefix, const std::string& delimiter) {
    ListPage all;
    std::string token;
    std::set<std::string> seen;  // a server that hands out a token twice would list forever
    do {
        auto page = list_objects_page(bucket, prefix, delimiter, token);
        if (!page.ok()) return page.error();
        if (!page->next_continuation_token.empty() && !seen.insert(page->next_continuation_token).second)
            return make_error(ErrorKind::Server, "list_objects: the server gave the same continuation token twice (a listing that does not end), after " +
                                                     std::to_string(all.objects.size() + page->objects.size()) + " keys");
        for (auto& o : page->objects) all.objects.push_back(std::move(o));
        for (auto& p : page->common_prefixes) all.common_prefixes.push_back(std::move(p));
        token = page->next_continuation_token;
    } while (!token.empty());
    return all;
}

// ---- multipart ----

Result<std::string> S3Client::create_multipart_upload(const std::string& bucket, const std::string& key, const PutOptions& opt) {
    Call c{"create_multipart_upload", "POST", bucket, key, "uploads=", {}, nullptr, 0, "", Count::Put};
    c.headers.push_back({"Content-Type", opt.content_type});
    http::Response r;
    Error e = run(*impl_, opt_, counts_, c, r);
    if (!e.ok()) return e;
    std::string id = xml_first(r.body, "UploadId");
    if (id.empty()) return make_error(ErrorKind::BadRequest, "create_multipart_upload: no UploadId in the answer (key '" + key + "')");
    return id;
}

Result<std::string> S3Client::upload_part(const std::string& bucket, const std::string& key, const std::string& upload_id,
                                          int part_number, const char* data, size_t len) {
    std::string q = "partNumber=" + std::to_string(part_number) + "&uploadId=" + sigv4::uri_encode(upload_id, false);
    Call c{"upload_part", "PUT", bucket, key, q, {}, data, len, "", Count::Put};
    http::Response r;
    Error e = run(*impl_, opt_, counts_, c, r);
    if (!e.ok()) return e;
    std::string etag = r.headers["etag"];
    if (etag.empty()) return make_error(ErrorKind::BadRequest, "upload_part: no ETag in the answer (key '" + key + "')");
    return etag;
}

Status S3Client::complete_multipart_upload(const std::string& bucket, const std::string& key, const std::string& upload_id,
                                           const std::vector<CompletedPart>& parts, const PutOptions& opt) {
    std::string body = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">";
    for (auto& p : parts)
        body += "<Part><PartNumber>" + std::to_string(p.number) + "</PartNumber><ETag>" + xml_escape(p.etag) + "</ETag></Part>";
    body += "</CompleteMultipartUpload>";
    Call c{"complete_multipart_upload", "POST", bucket, key, "uploadId=" + sigv4::uri_encode(upload_id, false), {},
           body.data(), body.size(), "", Count::Put};
    c.headers.push_back({"Content-Type", "application/xml"});
    if (opt.if_none_match) c.headers.push_back({"If-None-Match", "*"});
    c.payload_hash = sigv4::sha256_hex(body);
    http::Response r;
    // A 200 answer can still carry an <Error> (the failure happened after the headers went out).
    return with_retries(opt_, [&](int) {
        Error e = attempt(*impl_, opt_, counts_, c, r, nullptr);
        if (e.ok() && r.body.find("<Error>") != std::string::npos) {
            r.status = 500;
            e = classify(c.op, key, r);
        }
        return e;
    });
}

Status S3Client::abort_multipart_upload(const std::string& bucket, const std::string& key, const std::string& upload_id) {
    Call c{"abort_multipart_upload", "DELETE", bucket, key, "uploadId=" + sigv4::uri_encode(upload_id, false), {}, nullptr, 0,
           "", Count::Del};
    http::Response r;
    Error e = run(*impl_, opt_, counts_, c, r);
    return e.kind == ErrorKind::NotFound ? Error{} : e;
}

namespace {

// Uploads the parts of one multipart upload on a few threads. add() blocks while `threads` parts
// are queued or in flight, so memory stays at about threads × part size.
class PartUploader {
public:
    PartUploader(S3Client& c, std::string bucket, std::string key, std::string upload_id, int threads)
        : c_(c), bucket_(std::move(bucket)), key_(std::move(key)), id_(std::move(upload_id)), limit_((size_t)threads) {
        for (int i = 0; i < threads; i++) workers_.emplace_back([this] { work(); });
    }
    ~PartUploader() { stop(); }

    Status add(std::string data) {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return outstanding_ < limit_ || !error_.ok(); });
        if (!error_.ok()) return error_;
        int number = (int)parts_.size() + 1;
        parts_.push_back({number, ""});
        queue_.push_back({number, std::move(data)});
        outstanding_++;
        cv_.notify_all();
        return {};
    }

    // Waits for all parts, then completes the upload (or aborts it on any error).
    Status finish(const PutOptions& opt) {
        {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [&] { return outstanding_ == 0 || !error_.ok(); });
        }
        stop();
        if (!error_.ok()) {
            c_.abort_multipart_upload(bucket_, key_, id_);
            return error_;
        }
        Status st = c_.complete_multipart_upload(bucket_, key_, id_, parts_, opt);
        if (!st.ok()) c_.abort_multipart_upload(bucket_, key_, id_);
        return st;
    }

    void abort() {
        stop(true);
        c_.abort_multipart_upload(bucket_, key_, id_);
    }

private:
    struct Job {
        int number;
        std::string data;
    };

    void work() {
        for (;;) {
            Job job;
            bool failed;
            {
                std::unique_lock<std::mutex> lock(mu_);
                cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
                if (queue_.empty()) return;
                job = std::move(queue_.front());
                queue_.pop_front();
                failed = !error_.ok();
            }
            // After a failure the remaining parts are skipped (the upload will be aborted).
            Result<std::string> etag = failed ? Result<std::string>(make_error(ErrorKind::BadRequest, "skipped"))
                                              : c_.upload_part(bucket_, key_, id_, job.number, job.data.data(), job.data.size());
            std::lock_guard<std::mutex> lock(mu_);
            if (etag.ok()) parts_[(size_t)job.number - 1].etag = etag.value();
            else if (error_.ok()) error_ = etag.error();
            outstanding_--;
            cv_.notify_all();
        }
    }

    void stop(bool drop_queued = false) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            stopping_ = true;
            if (!error_.ok() || drop_queued) queue_.clear();
            cv_.notify_all();
        }
        for (auto& t : workers_)
            if (t.joinable()) t.join();
        workers_.clear();
    }

    S3Client& c_;
    std::string bucket_, key_, id_;
    size_t limit_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Job> queue_;
    std::vector<CompletedPart> parts_;
    size_t outstanding_ = 0;
    bool stopping_ = false;
    Error error_;
    std::vector<std::thread> workers_;
};

// Streaming writer: buffers up to the multipart threshold; past it, switches to a multipart upload
// and sends each full part as it fills.
class S3Writer : public ObjectWriter {
public:
    S3Writer(S3Client& c, std::string bucket, std::string key, PutOptions opt)
        : c_(c), bucket_(std::move(bucket)), key_(std::move(key)), opt_(std::move(opt)) {}
    ~S3Writer() override { abort(); }

    Status write(const void* data, size_t len) override {
        if (done_) return make_error(ErrorKind::BadRequest, "put_object: write after commit or abort (key '" + key_ + "')");
        if (!error_.ok()) return error_;
        buf_.append((const char*)data, len);
        written_ += len;
        const auto& o = c_.options();
        if (!up_ && buf_.size() > o.multipart_threshold) {
            auto id = c_.create_multipart_upload(bucket_, key_, opt_);
            if (!id.ok()) return error_ = id.error();
            up_ = std::make_unique<PartUploader>(c_, bucket_, key_, id.value(), o.upload_threads);
        }
        while (up_ && buf_.size() >= o.part_size) {
            Status st = up_->add(buf_.substr(0, o.part_size));
            buf_.erase(0, o.part_size);
            if (!st.ok()) return error_ = st;
        }
        return {};
    }

    Status commit() override {
        if (done_) return make_error(ErrorKind::BadRequest, "put_object: commit after commit or abort (key '" + key_ + "')");
        if (!error_.ok()) {
            abort();
            return error_;
        }
        done_ = true;
        if (!up_) return c_.put_object(bucket_, key_, buf_, opt_);
        Status st = buf_.empty() ? Status{} : up_->add(std::move(buf_));
        if (!st.ok()) {
            up_->abort();
            return st;
        }
        st = up_->finish(opt_);
        up_.reset();
        return st;
    }

    void abort() override {
        done_ = true;
        buf_.clear();
        if (up_) up_->abort();
        up_.reset();
    }

    uint64_t bytes_written() const override { return written_; }

private:
    S3Client& c_;
    std::string bucket_, key_;
    PutOptions opt_;
    std::string buf_;
    uint64_t written_ = 0;
    bool done_ = false;
    Error error_;
    std::unique_ptr<PartUploader> up_;
};

Status read_exact(int fd, std::string& buf, size_t len, uint64_t off, const std::string& path) {
    buf.resize(len);
    size_t got = 0;
    while (got < len) {
        ssize_t n = ::pread(fd, &buf[got], len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return make_error(ErrorKind::Io, "put_object: read " + path + ": " + (n < 0 ? std::strerror(errno) : "file shrank"));
        got += (size_t)n;
    }
    return {};
}

// A multipart upload of `size` bytes in parts of part_size (grown to stay within 10,000 parts),
// each part's bytes from read(offset, length, &buf); any failure aborts the upload.
using ReadPart = std::function<Status(uint64_t off, size_t len, std::string* buf)>;
Status put_in_parts(S3Client& c, const std::string& bucket, const std::string& key, uint64_t size, const PutOptions& opt,
                    const ReadPart& read) {
    uint64_t part = std::max<uint64_t>(c.options().part_size, (size + 9999) / 10000);
    auto id = c.create_multipart_upload(bucket, key, opt);
    if (!id.ok()) return id.error();
    PartUploader up(c, bucket, key, id.value(), c.options().upload_threads);
    for (uint64_t off = 0; off < size; off += part) {
        std::string buf;
        Status st = read(off, (size_t)std::min(part, size - off), &buf);
        if (st.ok()) st = up.add(std::move(buf));
        if (!st.ok()) {
            up.abort();
            return st;
        }
    }
    return up.finish(opt);
}

}  // namespace

std::unique_ptr<ObjectWriter> S3Client::open_writer(const std::string& bucket, const std::string& key, const PutOptions& opt) {
    return std::make_unique<S3Writer>(*this, bucket, key, opt);
}

Status S3Client::put_object_file(const std::string& bucket, const std::string& key, const std::string& path, const PutOptions& opt) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return make_error(ErrorKind::Io, "put_object: open " + path + ": " + std::strerror(errno));
    struct FdCloser {
        int fd;
        ~FdCloser() { ::close(fd); }
    } closer{fd};
    struct stat sb {};
    if (::fstat(fd, &sb) != 0) return make_error(ErrorKind::Io, "put_object: stat " + path + ": " + std::strerror(errno));
    uint64_t size = (uint64_t)sb.st_size;
    std::string buf;
    if (size <= opt_.multipart_threshold) {
        Status st = read_exact(fd, buf, (size_t)size, 0, path);
        return st.ok() ? put_object(bucket, key, buf, opt) : st;
    }
    return put_in_parts(*this, bucket, key, size, opt,
                        [&](uint64_t off, size_t len, std::string* part) { return read_exact(fd, *part, len, off, path); });
}

Status S3Client::put_object(const std::string& bucket, const std::string& key, const std::string& data, const PutOptions& opt) {
    if (data.size() > opt_.multipart_threshold)  // as put_object_file, from memory
        return put_in_parts(*this, bucket, key, data.size(), opt, [&](uint64_t off, size_t len, std::string* part) {
            *part = data.substr(off, len);
            return Status{};
        });
    Call c{"put_object", "PUT", bucket, key, "", {}, data.data(), data.size(), "", Count::Put};
    c.headers.push_back({"Content-Type", opt.content_type});
    if (opt.if_none_match) c.headers.push_back({"If-None-Match", "*"});
    http::Response r;
    return run(*impl_, opt_, counts_, c, r);
}

}  // namespace walship::s3

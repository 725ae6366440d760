// Fault tests: the S3 client talks to moto through tests/support/faultproxy.py, which injects
// 500s, 503 SlowDown, 403/404, stalls, slow answers, dropped and reset connections for the next N
// requests and counts what it saw. Transient faults are retried to success, permanent ones end at
// once with a clear error, nothing runs past its timeout bound, cut downloads resume where they
// stopped, and no error message ever contains the secret key or session token.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <sstream>
#include <thread>

#include "support/proxy.h"
#include "support/test_server.h"
#include "walship/s3/client.h"

using namespace walship::s3;
using walship::test::Proxy;
namespace wt = walship::test;

namespace {

const char* kSecret = "FAULTSECRET-Zq9wX7distinctive";
const char* kToken = "FAULTTOKEN-Pp3distinctive";

Environment secret_env() {
    Environment e;
    e.vars["AWS_ACCESS_KEY_ID"] = "AKIDFAULTS";
    e.vars["AWS_SECRET_ACCESS_KEY"] = kSecret;
    e.vars["AWS_SESSION_TOKEN"] = kToken;
    return e;
}

ClientOptions fast_options() {
    ClientOptions o;
    o.max_attempts = 4;
    o.backoff_base_ms = 20;
    o.backoff_max_ms = 200;
    o.timeout_ms = 1000;
    o.connect_timeout_ms = 1000;
    return o;
}

struct Fixture {
    Proxy& proxy = Proxy::get();
    std::string bucket = wt::new_bucket();
    std::unique_ptr<S3Client> client;
    std::vector<std::string> messages;  // every error string seen, checked for secrets at the end

    explicit Fixture(ClientOptions opt = fast_options(), const std::string& endpoint = "") {
        auto loc = parse_location("s3://" + bucket + "?endpoint=" + (endpoint.empty() ? proxy.endpoint() : endpoint), secret_env());
        REQUIRE(loc.ok());
        client = std::make_unique<S3Client>(loc.value(), opt);
        proxy.reset();
    }
    ~Fixture() {
        for (auto& m : messages) {
            CHECK(m.find(kSecret) == std::string::npos);
            CHECK(m.find(kToken) == std::string::npos);
        }
    }
    Status note(Status st) {
        if (!st.ok()) messages.push_back(st.str());
        return st;
    }
};

std::string joined(const std::vector<std::string>& xs) {
    std::string s;
    for (auto& x : xs) s += (s.empty() ? "" : " | ") + x;
    return s;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Upper bound for a failing operation: every attempt may use its whole stall limit (curl checks it
// at one-second granularity), plus the largest possible backoffs, plus slack.
double bound_s(const ClientOptions& o) {
    return o.max_attempts * (o.timeout_ms / 1000.0 + 1.5) + o.max_attempts * o.backoff_max_ms / 1000.0 + 2.0;
}

}  // namespace

TEST_CASE("500 errors are retried to success", "[s3][faults]") {
    Fixture f;
    f.proxy.fault("500", 2);
    REQUIRE(f.note(f.client->put_object(f.bucket, "k", "value")).ok());
    CHECK(f.proxy.requests() == 3);
    CHECK(f.client->counts().put == 3);
    f.proxy.fault("500", 3);
    auto got = f.client->get_object(f.bucket, "k");
    REQUIRE(got.ok());
    CHECK(got.value() == "value");
    CHECK(f.proxy.requests() == 3 + 4);
}

TEST_CASE("503 SlowDown is retried, and classified Throttled when it persists", "[s3][faults]") {
    Fixture f;
    f.proxy.fault("503", 3);
    REQUIRE(f.note(f.client->put_object(f.bucket, "k", "v")).ok());
    CHECK(f.proxy.requests() == 4);
    f.proxy.reset();
    f.proxy.fault("503", 10);
    Status st = f.note(f.client->put_object(f.bucket, "k", "v"));
    CHECK(st.kind == ErrorKind::Throttled);
    CHECK(st.code == "SlowDown");
    CHECK(st.http_status == 503);
    CHECK(st.str().rfind("put_object: HTTP 503 SlowDown: Please reduce your request rate.", 0) == 0);
    CHECK(st.str().find("after 4 attempts") != std::string::npos);
    CHECK(f.proxy.requests() == 4);
}

TEST_CASE("permanent errors end at once without retries", "[s3][faults]") {
    Fixture f;
    REQUIRE(f.client->put_object(f.bucket, "k", "v").ok());
    f.proxy.reset();

    f.proxy.fault("403", 1);
    Status denied = f.note(f.client->put_object(f.bucket, "k", "v"));
    CHECK(denied.kind == ErrorKind::AccessDenied);
    CHECK(denied.str().rfind("put_object: HTTP 403 AccessDenied: Access Denied", 0) == 0);
    CHECK(f.proxy.requests() == 1);

    f.proxy.fault("404", 1);
    auto missing = f.client->get_object(f.bucket, "k");
    f.note(missing.error());
    CHECK(missing.error().kind == ErrorKind::NotFound);
    CHECK(f.proxy.requests() == 2);

    f.proxy.fault("400", 1);
    auto bad = f.client->head_object(f.bucket, "k");
    f.note(bad.error());
    CHECK(bad.error().kind == ErrorKind::BadRequest);
    CHECK(f.proxy.requests() == 3);

    f.proxy.fault("501", 1);  // NotImplemented: asking again cannot help
    Status ni = f.note(f.client->put_object(f.bucket, "k", "v"));
    CHECK(ni.kind == ErrorKind::BadRequest);
    CHECK(ni.code == "NotImplemented");
    CHECK(f.proxy.requests() == 4);

    f.proxy.fault("403", 1);  // a HEAD's answer has no body: the message says what to check
    auto head_denied = f.client->head_object(f.bucket, "k");
    f.note(head_denied.error());
    CHECK(head_denied.error().kind == ErrorKind::AccessDenied);
    CHECK(head_denied.error().str().find("check the access key and secret") != std::string::npos);
    CHECK(f.proxy.requests() == 5);

    f.proxy.fault("503", 10);  // nor for SlowDown: still Throttled, and retried
    auto head_slow = f.client->head_object(f.bucket, "k");
    f.note(head_slow.error());
    CHECK(head_slow.error().kind == ErrorKind::Throttled);
    CHECK(f.proxy.requests() == 9);
    f.proxy.reset();

    auto real404 = f.client->get_object(f.bucket, "no-such-key");  // from the server itself
    f.note(real404.error());
    CHECK(real404.error().kind == ErrorKind::NotFound);
    CHECK(f.proxy.requests() == 1);
}

TEST_CASE("an answer that is not what S3 answers is an error, not an empty listing, and a listing that does not advance ends", "[s3][faults]") {
    Fixture f;
    REQUIRE(f.client->put_object(f.bucket, "a", "1").ok());
    REQUIRE(f.client->put_object(f.bucket, "b", "2").ok());
    for (const char* mode : {"html", "cut"}) {
        INFO(mode);
        f.proxy.reset();
        f.proxy.fault(mode, 10);  // a captive portal's page, or a listing cut short: retried, then an error
        auto l = f.client->list_objects(f.bucket, "");
        f.note(l.error());
        REQUIRE_FALSE(l.ok());
        CHECK(l.error().kind == ErrorKind::Server);
        CHECK(l.error().str().find("list_objects: HTTP 200 but the answer is not a whole S3 ListBucketResult") == 0);
        CHECK(f.proxy.requests() == 4);
        f.proxy.reset();
        f.proxy.fault(mode, 1);
        auto d = f.client->delete_objects(f.bucket, {"a"});  // retried: the second answer is the server's
        CHECK(d.ok());
        CHECK(f.proxy.requests() == 2);
        REQUIRE(f.client->put_object(f.bucket, "a", "1").ok());
    }
    f.proxy.reset();
    f.proxy.fault("html", 1);
    auto once = f.client->list_objects(f.bucket, "");  // a single bad answer is retried to the real listing
    REQUIRE(once.ok());
    CHECK(once->objects.size() == 2);
    f.proxy.reset();
    f.proxy.fault("sametoken", 100);
    auto loop = f.client->list_objects(f.bucket, "");
    f.note(loop.error());
    REQUIRE_FALSE(loop.ok());
    CHECK(loop.error().str().find("the server gave the same continuation token twice") != std::string::npos);
    CHECK(f.proxy.requests() == 2);
}

TEST_CASE("dropped and reset connections are retried and a cut download resumes", "[s3][faults]") {
    Fixture f;
    std::string data(3u << 20, '\0');
    for (size_t i = 0; i < data.size(); i++) data[i] = (char)(i * 131 % 251);
    f.proxy.fault("reset", 1);
    REQUIRE(f.note(f.client->put_object(f.bucket, "big", data)).ok());
    f.proxy.fault("drop", 1);
    REQUIRE(f.note(f.client->put_object(f.bucket, "small", "s")).ok());
    f.proxy.reset();

    f.proxy.fault("drop", 2);  // two GETs cut in the middle of the body
    std::string got;
    int calls = 0;
    REQUIRE(f.note(f.client->get_object_stream(f.bucket, "big", [&](const char* d, size_t n) {
        got.append(d, n);
        calls++;
        return true;
    })).ok());
    CHECK(got.size() == data.size());
    CHECK(got == data);
    std::vector<std::string> log;
    CHECK(f.proxy.requests(&log) == 3);
    REQUIRE(log.size() == 3);
    CHECK(log[0].find(" -") != std::string::npos);         // first: whole object
    CHECK(log[1].find("bytes=") != std::string::npos);     // then resumed from where it stopped
    CHECK(log[2].find("bytes=") != std::string::npos);
    CHECK(log[2] != log[1]);

    f.proxy.reset();
    f.proxy.fault("drop", 1);  // a ranged download resumes within its range
    auto part = f.client->get_object(f.bucket, "big", {1000, 2u << 20});
    REQUIRE(part.ok());
    CHECK(part.value() == data.substr(1000, 2u << 20));
}

TEST_CASE("an answer that is not the range asked for is refused, and a resumed download never repeats bytes", "[s3][faults]") {
    Fixture f;
    std::string data(3u << 20, '\0');
    for (size_t i = 0; i < data.size(); i++) data[i] = (char)(i * 131 % 251);
    REQUIRE(f.note(f.client->put_object(f.bucket, "big", data)).ok());
    f.proxy.reset();
    // The download is cut, and the resumed request reaches a server that ignores Range (HTTP 200,
    // the whole object from byte 0): that answer is refused, the next resume gets the rest.
    f.proxy.fault("drop", 1);
    f.proxy.fault("norange", 1);
    std::string got;
    Status st = f.note(f.client->get_object_stream(f.bucket, "big", [&](const char* d, size_t n) {
        got.append(d, n);
        return true;
    }));
    INFO(st.str());
    REQUIRE(st.ok());
    CHECK(got.size() == data.size());
    CHECK(got == data);
    CHECK(f.proxy.requests() == 3);
    // A ranged GET answered with the whole object fails instead of returning the wrong bytes.
    f.proxy.fault("norange", 10);
    auto part = f.client->get_object(f.bucket, "big", {100, 50});
    f.note(part.error());
    REQUIRE_FALSE(part.ok());
    CHECK(part.error().kind == ErrorKind::Server);
    CHECK(part.error().str().rfind("get_object: asked for bytes=100-149, got HTTP 200 without Content-Range", 0) == 0);
}

TEST_CASE("stalls are cut at the timeout and retried to success", "[s3][faults]") {
    Fixture f;
    f.proxy.fault("stall", 1);
    auto t0 = std::chrono::steady_clock::now();
    REQUIRE(f.note(f.client->put_object(f.bucket, "k", "v")).ok());
    double s = seconds_since(t0);
    CHECK(s >= 0.9);
    CHECK(s < 3.5);
    CHECK(f.proxy.requests() == 2);
}

TEST_CASE("while a request waits, waiting() says for how long no byte moved and which error it is retried after", "[s3][faults]") {
    ClientOptions o = fast_options();
    o.timeout_ms = 2000;
    o.backoff_base_ms = 300;  // backoffs of up to 300, 600 ms: long enough to be seen
    o.backoff_max_ms = 600;
    Fixture f(o);
    CHECK(f.client->waiting().stalled_ms == 0);
    CHECK(f.client->waiting().retrying.empty());
    f.proxy.fault("stall", 1);
    f.proxy.fault("500", 2);
    std::atomic<bool> done{false};
    Status st;
    std::thread t([&] {
        st = f.client->put_object(f.bucket, "k", "v");
        done = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    StoreWait w = f.client->waiting();
    CHECK(w.stalled_ms >= 900);  // counted from the request's start (nothing moved since)
    CHECK(w.stalled_ms < 2000);
    CHECK(w.retrying.empty());   // the first attempt is still running
    std::vector<std::string> seen;
    while (!done) {
        w = f.client->waiting();
        if (!w.retrying.empty() && (seen.empty() || seen.back() != w.retrying)) seen.push_back(w.retrying);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    t.join();
    REQUIRE(f.note(st).ok());
    INFO("retrying, as seen: " << joined(seen));
    // Each failed attempt's error stands there until the next attempt fails or the request ends
    // (a backoff of up to 300 or 600 ms, then an answer in milliseconds): polled every 2 ms, most
    // are seen, and each is what that attempt met.
    REQUIRE_FALSE(seen.empty());
    for (auto& m : seen) {
        const bool stalled = m.rfind("put_object: timeout", 0) == 0 && m.find("(attempt 1 of 4)") != std::string::npos;
        const bool failed = m.rfind("put_object: ", 0) == 0 && m.find("InternalError") != std::string::npos &&
                            (m.find("(attempt 2 of 4)") != std::string::npos || m.find("(attempt 3 of 4)") != std::string::npos);
        INFO(m);
        CHECK((stalled || failed));
    }
    for (auto& m : seen) f.messages.push_back(m);  // checked for secrets too
    CHECK(f.client->waiting().stalled_ms == 0);  // nothing in flight
    CHECK(f.client->waiting().retrying.empty());
}

TEST_CASE("no operation hangs past its timeout bound", "[s3][faults]") {
    ClientOptions o = fast_options();
    o.max_attempts = 3;
    Fixture f(o);
    REQUIRE(f.client->put_object(f.bucket, "k", std::string(500, 'x')).ok());
    f.proxy.reset();

    SECTION("server accepts and never answers") {
        f.proxy.fault("stall", 100);
        auto t0 = std::chrono::steady_clock::now();
        auto r = f.client->get_object(f.bucket, "k");
        double s = seconds_since(t0);
        f.note(r.error());
        CHECK(r.error().kind == ErrorKind::Timeout);
        CHECK(r.error().str().rfind("get_object: timeout", 0) == 0);
        CHECK(r.error().str().find("after 3 attempts") != std::string::npos);
        CHECK(f.proxy.requests() == 3);
        CHECK(s >= 3 * 0.9);
        CHECK(s < bound_s(o));
    }
    SECTION("server answers a few bytes a second") {
        f.proxy.fault("slow", 100);
        auto t0 = std::chrono::steady_clock::now();
        auto r = f.client->get_object(f.bucket, "k");
        double s = seconds_since(t0);
        f.note(r.error());
        CHECK(r.error().kind == ErrorKind::Timeout);
        CHECK(f.proxy.requests() == 3);
        CHECK(s < bound_s(o));
    }
    SECTION("a stalled upload") {
        f.proxy.fault("stall", 100);
        auto t0 = std::chrono::steady_clock::now();
        Status st = f.note(f.client->put_object(f.bucket, "k2", std::string(100000, 'y')));
        double s = seconds_since(t0);
        CHECK(st.kind == ErrorKind::Timeout);
        CHECK(s < bound_s(o));
    }
}

TEST_CASE("multipart upload retries failed parts, aborts on a permanent failure", "[s3][faults]") {
    ClientOptions o = fast_options();
    o.part_size = 5u << 20;
    o.multipart_threshold = 5u << 20;
    Fixture f(o);
    std::string dir = wt::temp_dir();
    std::string data(16u << 20, '\0');
    for (size_t i = 0; i < data.size(); i++) data[i] = (char)(i * 7 % 253);
    {
        std::ofstream out(dir + "/f.bin", std::ios::binary);
        out << data;
    }
    f.proxy.fault("500", 1);  // hits the create request
    REQUIRE(f.note(f.client->put_object_file(f.bucket, "mp", dir + "/f.bin")).ok());
    CHECK(f.client->get_object(f.bucket, "mp").value() == data);

    f.proxy.reset();
    f.proxy.fault("drop", 2);
    f.proxy.fault("503", 1);
    REQUIRE(f.note(f.client->put_object_file(f.bucket, "mp2", dir + "/f.bin")).ok());
    CHECK(f.client->get_object(f.bucket, "mp2").value() == data);

    f.proxy.reset();
    // Create succeeds, then the first part is denied: the upload is aborted and the error returned.
    std::vector<std::string> log;
    {
        auto writer = f.client->open_writer(f.bucket, "mp3");
        REQUIRE(writer->write(data.data(), 6u << 20).ok());  // past the threshold: create + part 1
        f.proxy.fault("403", 1);
        Status st = writer->write(data.data(), 10u << 20);
        if (st.ok()) st = writer->commit();
        f.note(st);
        CHECK(st.kind == ErrorKind::AccessDenied);
    }
    f.proxy.requests(&log);
    bool aborted = false;
    for (auto& l : log)
        if (l.rfind("DELETE ", 0) == 0 && l.find("uploadId=") != std::string::npos) aborted = true;
    CHECK(aborted);
    CHECK(f.client->head_object(f.bucket, "mp3").error().kind == ErrorKind::NotFound);
}

TEST_CASE("addressing and key encoding on the wire", "[s3][faults]") {
    Proxy& p = Proxy::get();
    std::string bucket = wt::new_bucket();
    auto check = [&](const std::string& query, const std::string& want_path, const std::string& want_host) {
        auto loc = parse_location("s3://" + bucket + "?endpoint=http://s3.localhost:" + p.port() + query, secret_env());
        REQUIRE(loc.ok());
        S3Client c(loc.value(), fast_options());
        p.reset();
        c.put_object(bucket, "dir/a b+c=d%e", "x");  // answer does not matter (moto reads Host its own way)
        std::vector<std::string> log;
        p.requests(&log);
        REQUIRE(!log.empty());
        CHECK(log[0] == "PUT " + want_path + " " + want_host + " -");
    };
    check("&force_path_style=true", "/" + bucket + "/dir/a%20b%2Bc%3Dd%25e", "s3.localhost:" + p.port());
    check("", "/dir/a%20b%2Bc%3Dd%25e", bucket + ".s3.localhost:" + p.port());
}

TEST_CASE("secrets never appear in error messages", "[s3][faults]") {
    std::vector<std::string> msgs;
    {
        Fixture f;
        for (const char* mode : {"403", "404", "400", "500", "503"}) {
            f.proxy.fault(mode, 100);
            f.note(f.client->put_object(f.bucket, "k", "v"));
            f.note(f.client->get_object(f.bucket, "k").error());
            f.note(f.client->list_objects(f.bucket, "").error());
            f.note(f.client->delete_objects(f.bucket, {"a", "b"}));
            f.proxy.reset();
        }
        f.proxy.fault("stall", 10);
        f.note(f.client->head_object(f.bucket, "k").error());
        f.proxy.reset();
        msgs = f.messages;
        CHECK(msgs.size() >= 21);
    }
    {
        ClientOptions o = fast_options();
        o.max_attempts = 2;
        Fixture refused(o, "http://127.0.0.1:1");
        refused.note(refused.client->put_object(refused.bucket, "k", "v"));
        msgs.insert(msgs.end(), refused.messages.begin(), refused.messages.end());
    }
    // Configuration errors with the secret in the environment or the URL.
    Environment e = secret_env();
    e.vars["AWS_ENDPOINT_URL_S3"] = std::string("http://u:") + kSecret + "@h";
    msgs.push_back(parse_location("s3://bkt/x", e).error().str());
    msgs.push_back(parse_location(std::string("s3://AKID:") + kSecret + "@bkt/x", secret_env()).error().str());
    msgs.push_back(open_store("ftp://bkt/x", secret_env()).error().str());
    msgs.push_back(open_store("s3://bkt/x?endpoint=nonsense", secret_env()).error().str());
    for (auto& m : msgs) {
        INFO(m);
        CHECK(!m.empty());
        CHECK(m.find(kSecret) == std::string::npos);
        CHECK(m.find(kToken) == std::string::npos);
    }
}

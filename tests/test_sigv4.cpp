// SigV4 against third-party vectors (tests/data/sigv4, see its README): every stage (canonical
// request, string to sign, signature, signed request) of every case of the AWS suite in header and
// in query (presigned) mode, the smithy-rs double-encoding extras, the S3 documentation's worked
// examples, and reviewed S3 cases for the pitfalls the suite does not cover.
#include <catch2/catch.hpp>

#include <dirent.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <set>

#include "support/test_server.h"
#include "walship/s3/sigv4.h"

using namespace walship::s3::sigv4;

namespace {

const std::string kEmptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return f ? std::string(std::istreambuf_iterator<char>(f), {}) : "";
}

bool exists(const std::string& path) { return std::ifstream(path).good(); }

// WALSHIP_SIGV4_DIR, else the copy vendored in the tree, else the shared copy beside the checkout.
std::string suite_dir() {
    if (const char* d = getenv("WALSHIP_SIGV4_DIR")) return d;
    std::string vendored = walship::test::source_dir() + "/tests/data/sigv4";
    if (exists(vendored + "/README.md")) return vendored;
    return walship::test::source_dir() + "/../shared/testdata/sigv4";
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    return s;
}

std::string trim(const std::string& s) {
    size_t b = s.find_first_not_of(' '), e = s.find_last_not_of(' ');
    return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::string percent_decode(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); i++) {
        if (s[i] == '%' && i + 2 < s.size() && isxdigit((unsigned char)s[i + 1]) && isxdigit((unsigned char)s[i + 2])) {
            out += char(std::stoi(s.substr(i + 1, 2), nullptr, 16));
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

// Minimal field extraction from context.json (flat keys, no escapes in these files).
std::string json_field(const std::string& j, const std::string& key) {
    size_t at = j.find("\"" + key + "\"");
    if (at == std::string::npos) return "";
    at = j.find(':', at) + 1;
    while (j[at] == ' ') at++;
    if (j[at] == '"') return j.substr(at + 1, j.find('"', at + 1) - at - 1);
    return j.substr(at, j.find_first_of(",}\n", at) - at);
}

std::time_t parse_iso(const std::string& s) {
    std::tm tm{};
    strptime(s.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return timegm(&tm);
}

// A request in the suite's loose HTTP/1.1 text form (README, "Parsing request.txt"): request line
// (the target may contain spaces), "Name:value" headers kept verbatim and in order, obs-fold
// continuation lines appended to the previous value with their '\n', blank line, body.
struct HttpText {
    std::string method, path, query, body;
    std::vector<Header> headers;
};

HttpText parse_http(const std::string& text) {
    HttpText h;
    size_t eol = std::min(text.find('\n'), text.size());
    std::string first = text.substr(0, eol);
    size_t sp = first.find(' ');
    h.method = first.substr(0, sp);
    std::string target = first.substr(sp + 1);
    const std::string version = " HTTP/1.1";
    if (target.size() >= version.size() && target.compare(target.size() - version.size(), version.size(), version) == 0)
        target.resize(target.size() - version.size());
    size_t q = target.find('?');
    h.path = target.substr(0, q);
    h.query = q == std::string::npos ? "" : target.substr(q + 1);
    size_t pos = eol + 1;
    while (pos < text.size()) {
        size_t e = std::min(text.find('\n', pos), text.size());
        std::string line = text.substr(pos, e - pos);
        pos = e + 1;
        if (line.empty()) break;
        if ((line[0] == ' ' || line[0] == '\t') && !h.headers.empty()) {
            h.headers.back().value += "\n" + line;
            continue;
        }
        size_t colon = line.find(':');
        h.headers.push_back({line.substr(0, colon), line.substr(colon + 1)});
    }
    h.body = pos < text.size() ? text.substr(pos) : "";
    return h;
}

std::multiset<std::string> header_set(const std::vector<Header>& headers, bool loose = false) {
    std::multiset<std::string> out;
    for (auto& h : headers) out.insert(loose ? lower(h.name) + ":" + trim(h.value) : h.name + ":" + h.value);
    return out;
}

// Query parameters as decoded (key, value) pairs: compares query strings whatever their encoding
// and parameter order.
std::multiset<std::pair<std::string, std::string>> query_set(const std::string& query) {
    std::multiset<std::pair<std::string, std::string>> out;
    size_t start = 0;
    while (start < query.size()) {
        size_t end = std::min(query.find('&', start), query.size());
        std::string item = query.substr(start, end - start);
        size_t eq = item.find('=');
        out.insert({percent_decode(item.substr(0, eq)), eq == std::string::npos ? "" : percent_decode(item.substr(eq + 1))});
        start = end + 1;
    }
    return out;
}

// How a case's request.txt path reaches the signer. The paths there are raw ("/example space/",
// "/ሴ"); the expected canonical URIs encode them exactly once. Two configurations give that:
//  - Generic: the upstream harness's configuration (aws-c-auth treats the request.txt path as the
//    wire path and, because the service is not S3, URI-encodes it again). The path is fed as
//    written with double_encode = true. Feeding an already-encoded "/example%20space/" here would
//    canonicalize to "%2520", which is what real double encoding means (see the smithy-rs extras).
//  - S3Wire: what s3_client does. The harness encodes the raw path once into a wire path
//    ("/example%20space/"), and the signer uses it as is (single encoding, double_encode = false).
// Both must reproduce every case; the suite has no '%' in any path, so the two cannot differ.
enum class Feed { Generic, S3Wire };

struct Case {
    std::string name, dir;
    Request req;
    std::string body;
    Credentials creds;
    Options opt;
    std::time_t when = 0;
    int expires = 3600;
};

Case load_case(const std::string& name, const std::string& dir, Feed feed) {
    Case c;
    c.name = name + (feed == Feed::Generic ? " [generic feed]" : " [s3 wire feed]");
    c.dir = dir;
    std::string ctx = slurp(dir + "/context.json");
    HttpText h = parse_http(slurp(dir + "/request.txt"));
    c.req = {h.method, h.path, h.query, h.headers, ""};
    c.body = h.body;
    c.creds = {json_field(ctx, "access_key_id"), json_field(ctx, "secret_access_key"), json_field(ctx, "token")};
    c.opt.region = json_field(ctx, "region");
    c.opt.service = json_field(ctx, "service");
    c.opt.double_encode = feed == Feed::Generic;
    if (feed == Feed::S3Wire) c.req.path = uri_encode(h.path, true);
    c.opt.normalize = json_field(ctx, "normalize") == "true";
    c.opt.add_content_sha256 = json_field(ctx, "sign_body") == "true";
    c.opt.omit_session_token = json_field(ctx, "omit_session_token") == "true";
    c.when = parse_iso(json_field(ctx, "timestamp"));
    c.expires = std::stoi(json_field(ctx, "expiration_in_seconds"));
    std::string signed_body = json_field(ctx, "signed_body_value");
    c.req.payload_hash = signed_body.empty() ? sha256_hex(c.body) : signed_body;
    return c;
}

// The 38 v4/ cases and extra-aws-c-auth-removed/post-unsigned-payload (header mode only), each fed
// both ways.
std::vector<Case> load_cases() {
    std::vector<std::pair<std::string, std::string>> dirs;
    std::string root = suite_dir() + "/v4";
    DIR* d = opendir(root.c_str());
    INFO("AWS SigV4 suite not found at " << root << " (set WALSHIP_SIGV4_DIR)");
    REQUIRE(d != nullptr);
    while (dirent* e = readdir(d))
        if (e->d_name[0] != '.') dirs.push_back({e->d_name, root + "/" + e->d_name});
    closedir(d);
    std::sort(dirs.begin(), dirs.end());
    REQUIRE(dirs.size() == 38);
    dirs.push_back({"post-unsigned-payload", suite_dir() + "/extra-aws-c-auth-removed/post-unsigned-payload"});
    std::vector<Case> cases;
    for (Feed feed : {Feed::Generic, Feed::S3Wire})
        for (auto& [name, dir] : dirs) cases.push_back(load_case(name, dir, feed));
    return cases;
}

}  // namespace

TEST_CASE("sigv4 suite, header mode: canonical request, string to sign, signature, signed request", "[sigv4]") {
    int checked = 0, failed = 0;
    for (const Case& c : load_cases()) {
        Request r = c.req;
        std::string creq = sign(r, c.creds, c.when, c.opt);
        std::string sts = string_to_sign(creq, c.when, c.opt);
        std::string sig = signature(signing_key(c.creds.secret_access_key, c.when, c.opt), sts);
        INFO("case " << c.name);
        for (auto& [stage, got] : {std::pair<std::string, std::string>{"canonical-request", creq}, {"string-to-sign", sts}, {"signature", sig}}) {
            INFO("stage header-" << stage);
            CHECK(got == slurp(c.dir + "/header-" + stage + ".txt"));
            failed += got != slurp(c.dir + "/header-" + stage + ".txt");
            checked++;
        }
        // The original headers plus exactly the ones the signer adds (compared as a multiset).
        INFO("stage header-signed-request");
        HttpText expected = parse_http(slurp(c.dir + "/header-signed-request.txt"));
        CHECK(header_set(r.headers) == header_set(expected.headers));
        failed += header_set(r.headers) != header_set(expected.headers);
        checked++;
    }
    CHECK(checked == 2 * 39 * 4);
    CHECK(failed == 0);
}

TEST_CASE("sigv4 suite, query (presigned) mode: canonical request, string to sign, signature, signed request", "[sigv4]") {
    int checked = 0, failed = 0;
    for (const Case& c : load_cases()) {
        if (!exists(c.dir + "/query-canonical-request.txt")) continue;  // post-unsigned-payload: header mode only
        Options opt = c.opt;
        opt.add_content_sha256 = false;  // query mode never adds the header; the payload line stays the body hash
        std::string q = presign_query(c.req, c.creds, c.when, c.expires, opt);
        size_t sig_at = q.find("&X-Amz-Signature=");
        REQUIRE(sig_at != std::string::npos);
        // The canonical request is recomputed from the returned query without the signature (and
        // without a token added after signing).
        Request r = c.req;
        r.query = q.substr(0, sig_at);
        std::string creq = canonical_request(r, opt);
        std::string sts = string_to_sign(creq, c.when, opt);
        std::string sig = q.substr(sig_at + 17, 64);
        INFO("case " << c.name);
        for (auto& [stage, got] : {std::pair<std::string, std::string>{"canonical-request", creq}, {"string-to-sign", sts}, {"signature", sig}}) {
            INFO("stage query-" << stage);
            CHECK(got == slurp(c.dir + "/query-" + stage + ".txt"));
            failed += got != slurp(c.dir + "/query-" + stage + ".txt");
            checked++;
        }
        // The presigned request: same method and headers, the query parameters compared decoded.
        INFO("stage query-signed-request");
        HttpText expected = parse_http(slurp(c.dir + "/query-signed-request.txt"));
        bool same = expected.method == c.req.method && header_set(expected.headers) == header_set(c.req.headers) &&
                    query_set(expected.query) == query_set(q);
        CHECK(same);
        failed += !same;
        checked++;
    }
    CHECK(checked == 2 * 38 * 4);
    CHECK(failed == 0);
}

TEST_CASE("sigv4: real double encoding for non-S3 services (smithy-rs extras)", "[sigv4]") {
    SECTION("double-url-encode: Lambda ARN path, %3A becomes %253A") {
        std::string dir = suite_dir() + "/extra-smithy-rs/double-url-encode";
        HttpText h = parse_http(slurp(dir + "/request.txt"));
        Request r{h.method, h.path, h.query, h.headers, sha256_hex(h.body)};
        Credentials creds{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""};
        Options opt;
        opt.region = "us-east-2";
        opt.service = "lambda";
        opt.double_encode = true;
        opt.add_content_sha256 = false;
        std::time_t when = parse_iso("2021-05-11T15:40:45Z");
        // The request already carries X-Amz-Date; signing replaces it with the same value.
        std::string creq = sign(r, creds, when, opt);
        CHECK(creq == slurp(dir + "/header-canonical-request.txt"));
        std::string sts = slurp(dir + "/header-string-to-sign.txt");
        REQUIRE(sts.back() == '\n');  // shipped with a trailing newline that is not part of it
        sts.pop_back();
        CHECK(string_to_sign(creq, when, opt) == sts);
        // Its Authorization line has a space after the colon: compare names and trimmed values.
        CHECK(header_set(r.headers, true) == header_set(parse_http(slurp(dir + "/header-signed-request.txt")).headers, true));
    }
    SECTION("double-encode-path: '@' encoded, %3D becomes %253D") {
        std::string dir = suite_dir() + "/extra-smithy-rs/double-encode-path";
        HttpText h = parse_http(slurp(dir + "/request.txt"));
        Request r{h.method, h.path, h.query, h.headers, sha256_hex(h.body)};
        Options opt;
        opt.service = "service";
        opt.double_encode = true;
        opt.add_content_sha256 = false;
        std::time_t when = parse_iso("2015-08-30T12:36:00Z");
        // Shipped inconsistent (README, "Extras"): its canonical request has another date than the
        // request. With the request's own date it is the canonical request that was signed.
        std::string expected = slurp(dir + "/header-canonical-request.txt");
        const std::string stale = "x-amz-date:20210511T154045Z";
        REQUIRE(expected.find(stale) != std::string::npos);
        expected.replace(expected.find(stale), stale.size(), "x-amz-date:20150830T123600Z");
        std::string creq = sign(r, {"ANOTREAL", "notrealrnrELgWzOk3IfjzDKtFBhDby", ""}, when, opt);
        CHECK(creq == expected);
        CHECK(header_set(r.headers, true) == header_set(parse_http(slurp(dir + "/header-signed-request.txt")).headers, true));
    }
}

namespace {

// One numbered example of s3-docs-examples.txt: the blocks between "-----" lines (canonical request,
// string to sign) and the "Signature" value.
struct DocExample {
    std::vector<std::string> blocks;
    std::string signature;
};

DocExample doc_example(int n) {
    std::string text = slurp(suite_dir() + "/s3-docs-examples.txt");
    size_t at = text.find("\n" + std::to_string(n) + ". ");
    REQUIRE(at != std::string::npos);
    size_t end = std::min(text.find("\n=====", text.find("\n=====", at) + 1), text.size());
    std::string sec = text.substr(at, end - at);
    DocExample ex;
    for (size_t open = sec.find("\n-----\n"); open != std::string::npos;) {
        size_t close = sec.find("\n-----", open + 7);
        ex.blocks.push_back(sec.substr(open + 7, close - open - 7));
        open = sec.find("\n-----\n", close + 6);
    }
    std::string label = "\nSignature ";
    size_t s = sec.find(label);
    if (s == std::string::npos) s = sec.find(label = "\nSeed signature ");
    REQUIRE(s != std::string::npos);
    ex.signature = sec.substr(sec.find_first_not_of(' ', s + label.size()), 64);
    return ex;
}

const Credentials kDocCreds{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};

void check_doc_example(int n, Request req, const std::string& body_hash_header = "") {
    std::time_t when = parse_iso("2013-05-24T00:00:00Z");
    Options opt;  // s3, us-east-1, single encoding, x-amz-content-sha256 added
    DocExample ex = doc_example(n);
    REQUIRE(ex.blocks.size() >= 2);
    std::string creq = sign(req, kDocCreds, when, opt);
    INFO("S3 docs example " << n);
    CHECK(creq == ex.blocks[0]);
    CHECK(string_to_sign(creq, when, opt) == ex.blocks[1]);
    std::string auth = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=" +
                       signed_headers(req.headers) + ", Signature=" + ex.signature;
    CHECK(req.headers.back().name == "Authorization");
    CHECK(req.headers.back().value == auth);
    if (!body_hash_header.empty()) CHECK(creq.substr(creq.rfind('\n') + 1) == body_hash_header);
}

}  // namespace

TEST_CASE("sigv4: S3 documentation examples (GET range, PUT, ?lifecycle, list, presign, chunked seed)", "[sigv4]") {
    const std::string host = "examplebucket.s3.amazonaws.com";
    CHECK(to_hex(signing_key(kDocCreds.secret_access_key, parse_iso("2013-05-24T00:00:00Z"), Options{})) ==
          "dbb893acc010964918f1fd433add87c70e8b0db6be30c1fbeafefa5ec6ba8378");
    SECTION("1. GET Object with Range") {
        check_doc_example(1, {"GET", "/test.txt", "", {{"Host", host}, {"Range", "bytes=0-9"}}, kEmptyHash}, kEmptyHash);
    }
    SECTION("2. PUT Object: '$' encoded once, Date signed") {
        std::string body_hash = sha256_hex(std::string("Welcome to Amazon S3."));
        check_doc_example(2,
                          {"PUT", "/test%24file.text", "",
                           {{"Host", host}, {"Date", "Fri, 24 May 2013 00:00:00 GMT"}, {"x-amz-storage-class", "REDUCED_REDUNDANCY"}},
                           body_hash},
                          body_hash);
        CHECK(uri_encode("/test$file.text", true) == "/test%24file.text");
    }
    SECTION("3. GET ?lifecycle: a parameter without value") {
        check_doc_example(3, {"GET", "/", "lifecycle", {{"Host", host}}, kEmptyHash});
    }
    SECTION("4. List objects ?max-keys=2&prefix=J") {
        check_doc_example(4, {"GET", "/", "max-keys=2&prefix=J", {{"Host", host}}, kEmptyHash});
    }
    SECTION("5. Presigned GET, 86400 s, UNSIGNED-PAYLOAD") {
        DocExample ex = doc_example(5);
        std::time_t when = parse_iso("2013-05-24T00:00:00Z");
        Options opt;
        opt.add_content_sha256 = false;
        Request req{"GET", "/test.txt", "", {{"Host", host}}, "UNSIGNED-PAYLOAD"};
        std::string q = presign_query(req, kDocCreds, when, 86400, opt);
        CHECK(q == "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
                   "&X-Amz-Date=20130524T000000Z&X-Amz-SignedHeaders=host&X-Amz-Expires=86400&X-Amz-Signature=" + ex.signature);
        req.query = q.substr(0, q.find("&X-Amz-Signature="));
        CHECK(canonical_request(req, opt) == ex.blocks[0]);
        CHECK(string_to_sign(ex.blocks[0], when, opt) == ex.blocks[1]);
    }
    SECTION("6. aws-chunked upload: the seed request (the chunk signatures are not implemented)") {
        DocExample ex = doc_example(6);
        std::time_t when = parse_iso("2013-05-24T00:00:00Z");
        Options opt;
        Request req{"PUT", "/examplebucket/chunkObject.txt", "",
                    {{"Host", "s3.amazonaws.com"}, {"x-amz-storage-class", "REDUCED_REDUNDANCY"}, {"Content-Encoding", "aws-chunked"},
                     {"x-amz-decoded-content-length", "66560"}, {"Content-Length", "66824"}},
                    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"};
        std::string creq = sign(req, kDocCreds, when, opt);
        CHECK(creq == ex.blocks[0]);
        CHECK(sha256_hex(creq) == "cee3fed04b70f867d036f722359b0b1f2f0e5dc0efadbc082b76c4c60e316455");
        CHECK(req.headers.back().value.find(", Signature=" + ex.signature) != std::string::npos);
    }
}

// Cases reviewed by hand for what neither suite covers. The expected canonical requests were
// written from the SigV4 rules, not produced by this signer; the signature over each was computed
// separately (Python hashlib/hmac over the canonical request shown).
TEST_CASE("sigv4: reviewed S3 cases ('%' in key, query without value, repeated keys, '+', sort order)", "[sigv4]") {
    std::time_t when = parse_iso("2026-01-02T03:04:05Z");
    Credentials creds{"AKIDWALSHIP", "secret/key+example", "FwoGZXIvYXdzE+token/="};
    Options opt;
    opt.region = "eu-west-3";

    SECTION("GET: '%', space, '+', '~', parentheses in the key; messy query; token; unsigned User-Agent") {
        // Key "100% done/a+b~(c)" in bucket my-bucket, path style; as s3_client builds the wire path.
        std::string path = "/my-bucket/" + uri_encode("100% done/a+b~(c)", true);
        CHECK(path == "/my-bucket/100%25%20done/a%2Bb~%28c%29");
        // "versions" has no value; "marker=" an empty one; versionId repeats (sorted by value, 'A' < 'z');
        // "max" sorts before "max-keys" (by key, then value: not by the joined "k=v" text, where
        // "max-keys=10" < "max=1"); "%2B" and a literal '+' both mean the character '+' (never a space).
        Request r{"GET", path, "versions&prefix=a%2Bb+c&versionId=z&versionId=A&marker=&max-keys=10&max=1",
                  {{"Host", "s3.eu-west-3.amazonaws.com"},
                   {"Range", "bytes=0-99"},
                   {"X-Amz-Meta-Note", "  two   spaces\there  "},
                   {"User-Agent", "walship/1.0"}},
                  kEmptyHash};
        std::string creq = sign(r, creds, when, opt);
        CHECK(creq ==
              "GET\n"
              "/my-bucket/100%25%20done/a%2Bb~%28c%29\n"
              "marker=&max=1&max-keys=10&prefix=a%2Bb%2Bc&versionId=A&versionId=z&versions=\n"
              "host:s3.eu-west-3.amazonaws.com\n"
              "range:bytes=0-99\n"
              "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
              "x-amz-date:20260102T030405Z\n"
              "x-amz-meta-note:two spaces here\n"
              "x-amz-security-token:FwoGZXIvYXdzE+token/=\n"
              "\n"
              "host;range;x-amz-content-sha256;x-amz-date;x-amz-meta-note;x-amz-security-token\n"
              "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        CHECK(r.headers.back().value ==
              "AWS4-HMAC-SHA256 Credential=AKIDWALSHIP/20260102/eu-west-3/s3/aws4_request, "
              "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date;x-amz-meta-note;x-amz-security-token, "
              "Signature=ba152d1686ea8b5025fbbad23e8648667b874aec7f50ff3bec078030f221c776");
        // S3 never normalizes and never encodes twice: dot segments, "//" and "%" stay as sent.
        CHECK(canonical_uri("/b/a/./x/../y//z%25", opt) == "/b/a/./x/../y//z%25");
        CHECK(canonical_uri("", opt) == "/");
    }
    SECTION("PUT with UNSIGNED-PAYLOAD, '=' and '&' in query values, signing twice") {
        Request r{"PUT", "/my-bucket/" + uri_encode("k=v&w", true), "tagging&x-id=" + uri_encode("a=b&c", false),
                  {{"Host", "s3.eu-west-3.amazonaws.com"}, {"Content-Length", "5"}},
                  "UNSIGNED-PAYLOAD"};
        CHECK(r.path == "/my-bucket/k%3Dv%26w");
        std::string creq = sign(r, creds, when, opt);
        CHECK(creq ==
              "PUT\n"
              "/my-bucket/k%3Dv%26w\n"
              "tagging=&x-id=a%3Db%26c\n"
              "content-length:5\n"
              "host:s3.eu-west-3.amazonaws.com\n"
              "x-amz-content-sha256:UNSIGNED-PAYLOAD\n"
              "x-amz-date:20260102T030405Z\n"
              "x-amz-security-token:FwoGZXIvYXdzE+token/=\n"
              "\n"
              "content-length;host;x-amz-content-sha256;x-amz-date;x-amz-security-token\n"
              "UNSIGNED-PAYLOAD");
        CHECK(r.headers.back().value.find("Signature=439773519cc035a36223b5d48307b879bbe9ba5ba0c5157a1cde7bacfa96a10f") != std::string::npos);
        // Re-signing (a retry, a later clock) replaces what signing added instead of repeating it.
        Request again = r;
        sign(again, creds, when + 60, opt);
        CHECK(again.headers.size() == r.headers.size());
        CHECK(header_set({again.headers.begin(), again.headers.begin() + 2}) == header_set({r.headers.begin(), r.headers.begin() + 2}));
    }
    SECTION("presigned GET with a session token and a response-content-disposition") {
        Options popt = opt;
        popt.add_content_sha256 = false;
        Request r{"GET", "/my-bucket/a%20b.txt", "response-content-disposition=" + uri_encode("attachment; filename=\"a b.txt\"", false),
                  {{"Host", "s3.eu-west-3.amazonaws.com"}},
                  "UNSIGNED-PAYLOAD"};
        std::string q = presign_query(r, creds, when, 600, popt);
        r.query = q.substr(0, q.find("&X-Amz-Signature="));
        CHECK(canonical_request(r, popt) ==
              "GET\n"
              "/my-bucket/a%20b.txt\n"
              "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDWALSHIP%2F20260102%2Feu-west-3%2Fs3%2Faws4_request"
              "&X-Amz-Date=20260102T030405Z&X-Amz-Expires=600&X-Amz-Security-Token=FwoGZXIvYXdzE%2Btoken%2F%3D"
              "&X-Amz-SignedHeaders=host&response-content-disposition=attachment%3B%20filename%3D%22a%20b.txt%22\n"
              "host:s3.eu-west-3.amazonaws.com\n"
              "\n"
              "host\n"
              "UNSIGNED-PAYLOAD");
        CHECK(q.substr(q.find("&X-Amz-Signature=") + 17) == "f83ee57b008889e53916db69fe58c1449fd3d6ea6769e9efd4bd356ee567afe3");
    }
}

TEST_CASE("sigv4: small steps", "[sigv4]") {
    CHECK(amz_date(parse_iso("2015-08-30T12:36:00Z")) == "20150830T123600Z");
    CHECK(scope_date(parse_iso("2015-08-30T12:36:00Z")) == "20150830");
    CHECK(uri_encode("aZ09-._~/ +%*!'()ü", false) == "aZ09-._~%2F%20%2B%25%2A%21%27%28%29%C3%BC");
    CHECK(uri_encode("a/b c", true) == "a/b%20c");
    CHECK(sha256_hex("") == kEmptyHash);
    CHECK(to_hex(hmac_sha256("key", "The quick brown fox jumps over the lazy dog")) ==
          "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
    CHECK(canonical_query("") == "");
    CHECK(canonical_query("a=1&&b") == "a=1&b=");  // empty items are ignored
    CHECK(canonical_query("%e1%88%b4=%7e") == "%E1%88%B4=~");  // re-encoded: uppercase hex, unreserved kept
    CHECK(canonical_headers({{"B", " x "}, {"a", "1"}, {"b", "y"}}) == "a:1\nb:x,y\n");
    CHECK(signed_headers({{"B", ""}, {"a", ""}, {"User-Agent", "u"}, {"Authorization", "old"}}) == "a;b");
}

// walship's signer against an independent implementation: 300 generated S3 requests (awkward keys,
// queries with empty values, missing '=' and repeated keys, session tokens, ranges, repeated and
// unsigned headers, UNSIGNED-PAYLOAD) are signed by walship and by botocore's S3SigV4Auth, and
// presigned by both (S3SigV4QueryAuth); canonical requests and signatures must be identical.
// botocore is run through tests/support/botocore_sign.py with the python3 found on PATH.
#include <catch2/catch.hpp>

#include <cctype>
#include <fstream>
#include <random>
#include <set>

#include "support/test_server.h"
#include "walship/s3/sigv4.h"

using namespace walship::s3::sigv4;

namespace {

std::string json(const std::string& s) {
    std::string o = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            o += '\\';
            o += char(c);
        } else if (c < 0x20) {
            char b[8];
            snprintf(b, sizeof b, "\\u%04x", c);
            o += b;
        } else {
            o += char(c);
        }
    }
    return o + "\"";
}

// One string field of a line of botocore_sign.py's output. Its values are ASCII (canonical requests
// are percent-encoded, the generated header values are ASCII), so only ASCII \u escapes occur.
std::string field(const std::string& line, const std::string& name) {
    std::string key = "\"" + name + "\": \"";
    size_t at = line.find(key);
    if (at == std::string::npos) return "<missing " + name + ">";
    std::string out;
    for (size_t i = at + key.size(); i < line.size() && line[i] != '"'; i++) {
        if (line[i] != '\\') {
            out += line[i];
            continue;
        }
        char e = line[++i];
        if (e == 'n') out += '\n';
        else if (e == 't') out += '\t';
        else if (e == 'u') out += char(std::stoul(line.substr(i + 1, 4), nullptr, 16)), i += 4;
        else out += e;
    }
    return out;
}

std::string percent_decode(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); i++) {
        if (s[i] == '%' && i + 2 < s.size()) {
            out += char(std::stoi(s.substr(i + 1, 2), nullptr, 16));
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

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

struct Generated {
    Request req;
    Credentials creds;
    Options opt;
    std::time_t when = 0;
    std::string body;
    int presign_expires = 0;  // 0: not presigned
    // Set for a quarter of the requests: the wire query walship gets is encoded loosely (lowercase
    // hex, "!*'()," left raw, '~' as %7e), and botocore gets the decoded pairs instead, which it
    // encodes itself. This checks walship's decode and re-encode against botocore's encoder.
    bool loose = false;
    std::vector<std::pair<std::string, std::string>> params;
};

// A legal but non-canonical query encoding (S3 decodes and re-encodes each key and value).
std::string loose_encode(const std::string& s) {
    std::string out;
    for (unsigned char c : s) {
        char b[4];
        snprintf(b, sizeof b, "%%%02x", c);
        bool keep = std::isalnum(c) || c == '-' || c == '_' || c == '.' || std::string("!*'(),").find(char(c)) != std::string::npos;
        out += keep && c < 0x80 ? std::string(1, char(c)) : std::string(b);
    }
    return out;
}

// Deterministic pseudo-random S3 requests, as s3_client would put them on the wire: the key is
// URI-encoded once into the path (with '/' kept) and every query key and value is URI-encoded.
Generated generate(std::mt19937& rng, int i) {
    auto pick = [&](const std::vector<std::string>& v) { return v[rng() % v.size()]; };
    const std::vector<std::string> pieces = {"a", "Z9", "with space", "ünïcødé", "plus+sign", "per%cent", "%41", "tilde~",
                                             "eq=ual", "star*", "paren(s)", "bang!", "日本語", "dot.", "..", ".", "",
                                             "semi;colon", "amp&", "q?", "hash#", "emoji😀", "'quote'", "a,b"};
    Generated g;
    std::string key;
    int parts = 1 + int(rng() % 4);
    for (int p = 0; p < parts; p++) key += (p ? "/" : "") + pick(pieces);
    bool path_style = rng() % 2;
    g.loose = rng() % 4 == 0;
    auto encode = [&](const std::string& s) { return g.loose ? loose_encode(s) : uri_encode(s, false); };
    std::string bucket = "bucket-" + std::to_string(i % 7);
    g.req.method = pick({"GET", "PUT", "HEAD", "DELETE", "POST"});
    g.req.path = (path_style ? "/" + bucket + "/" : "/") + uri_encode(key, true);
    bool repeated = false;
    std::set<std::string> keys;
    int np = int(rng() % 5);
    for (int p = 0; p < np; p++) {
        // "x" < "x-y" < "x.y" by key, though "x-y=..." < "x.y=..." < "x=..." as joined text; "X" < "a".
        std::string k = pick({"prefix", "list-type", "continuation-token", "delimiter", "uploadId", "partNumber", "uploads",
                              "x", "x-y", "x.y", "X", "a b", "ü", "k+", "versionId"});
        std::string v = rng() % 4 == 0 ? "" : pick(pieces);
        repeated |= !keys.insert(k).second;
        for (int rep = 0; rep < (rng() % 5 == 0 ? 2 : 1); rep++) {
            if (rep) v = pick(pieces), repeated = true;
            g.req.query += (g.req.query.empty() ? "" : "&") + encode(k);
            if (!v.empty() || rng() % 2) g.req.query += "=" + encode(v);  // "uploads" or "uploads="
            g.params.push_back({k, v});
        }
    }
    g.req.headers = {{"Host", path_style ? "s3.example.com" : bucket + ".s3.example.com"}};
    if (rng() % 3 == 0) g.req.headers.push_back({"Range", "bytes=" + std::to_string(rng() % 100) + "-" + std::to_string(100 + rng() % 1000)});
    if (rng() % 3 == 0) g.req.headers.push_back({"Content-Type", "application/octet-stream"});
    if (rng() % 4 == 0) g.req.headers.push_back({"x-amz-meta-note", "  spaced   value\tand tab  "});
    if (rng() % 4 == 0) g.req.headers.push_back({"If-None-Match", "*"});
    if (rng() % 4 == 0) g.req.headers.push_back({"User-Agent", "walship/1.0 test"});  // never signed
    if (rng() % 5 == 0) {  // a repeated header: values joined with ',' in their order
        g.req.headers.push_back({"X-Amz-Meta-Dup", "second"});
        g.req.headers.push_back({"x-amz-meta-dup", " first "});
    }
    if (rng() % 3 == 0) g.body = "payload " + std::to_string(rng());
    g.req.payload_hash = rng() % 5 == 0 ? "UNSIGNED-PAYLOAD" : sha256_hex(g.body);
    std::string token = rng() % 3 == 0 ? "token/" + std::to_string(rng()) + "+==" : "";
    g.creds = {"AKID" + std::to_string(rng() % 1000), "secret/" + std::to_string(rng()) + "+key", token};
    g.opt.region = pick({"us-east-1", "eu-west-3", "auto", "us-west-2"});
    g.when = std::time_t(1600000000 + rng() % 200000000);
    // botocore's presigner keeps one value per query key (parse_qs into a dict), so requests with a
    // repeated key are only header-signed.
    if (!repeated) g.presign_expires = 1 + int(rng() % 604800);
    return g;
}

std::string input_line(const Generated& g) {
    std::string hex;
    for (unsigned char c : g.body) {
        char b[3];
        snprintf(b, sizeof b, "%02x", c);
        hex += b;
    }
    std::string url = "http://" + g.req.headers[0].value + g.req.path + (g.req.query.empty() || g.loose ? "" : "?" + g.req.query);
    std::string params;
    for (size_t p = 0; g.loose && p < g.params.size(); p++)
        params += (p ? "," : "") + ("[" + json(g.params[p].first) + "," + json(g.params[p].second) + "]");
    std::string headers;
    for (size_t h = 1; h < g.req.headers.size(); h++)
        headers += (h > 1 ? "," : "") + ("[" + json(g.req.headers[h].name) + "," + json(g.req.headers[h].value) + "]");
    return "{\"method\":" + json(g.req.method) + ",\"url\":" + json(url) + ",\"params\":[" + params + "]" + ",\"headers\":[" + headers + "],\"body\":" + json(hex) +
           ",\"unsigned_payload\":" + (g.req.payload_hash == "UNSIGNED-PAYLOAD" ? "true" : "false") +
           ",\"access\":" + json(g.creds.access_key_id) + ",\"secret\":" + json(g.creds.secret_access_key) +
           ",\"token\":" + json(g.creds.session_token) + ",\"region\":" + json(g.opt.region) +
           ",\"timestamp\":" + json(amz_date(g.when)) + ",\"presign_expires\":" + std::to_string(g.presign_expires) + "}\n";
}

}  // namespace

TEST_CASE("sigv4 agrees with botocore's S3 signers on generated requests", "[sigv4][botocore]") {
    INFO("needs python3 with botocore on PATH (the default pyenv python3 has botocore 1.43)");
    REQUIRE(walship::test::sh("python3 -c 'import botocore.auth' >/dev/null 2>&1") == 0);

    std::mt19937 rng(20261125);
    const int n = 300;
    std::vector<Generated> requests;
    std::string dir = walship::test::temp_dir();
    {
        std::ofstream in(dir + "/in.jsonl");
        for (int i = 0; i < n; i++) {
            requests.push_back(generate(rng, i));
            in << input_line(requests.back());
        }
    }
    std::string script = walship::test::source_dir() + "/tests/support/botocore_sign.py";
    REQUIRE(walship::test::sh("python3 " + script + " " + dir + "/in.jsonl " + dir + "/out.jsonl") == 0);

    std::ifstream out(dir + "/out.jsonl");
    std::string line;
    int i = 0, same = 0, presigned = 0, presigned_same = 0;
    while (std::getline(out, line) && i < n) {
        const Generated& g = requests[i];
        Request req = g.req;
        std::string creq = sign(req, g.creds, g.when, g.opt);
        INFO("request " << i << ": " << g.req.method << " " << g.req.path << "?" << g.req.query << "\nwalship canonical request:\n" << creq);
        CHECK(field(line, "creq") == creq);
        CHECK(field(line, "auth") == req.headers.back().value);
        same += field(line, "creq") == creq && field(line, "auth") == req.headers.back().value;
        if (g.presign_expires) {
            Options popt = g.opt;
            popt.add_content_sha256 = false;
            Request preq = g.req;
            preq.payload_hash = "UNSIGNED-PAYLOAD";
            std::string q = presign_query(preq, g.creds, g.when, g.presign_expires, popt);
            preq.query = q.substr(0, q.find("&X-Amz-Signature="));
            std::string pcreq = canonical_request(preq, popt);
            std::string theirs = field(line, "presign_query");
            INFO("presigned: walship query " << q << "\nbotocore query " << theirs);
            CHECK(field(line, "presign_creq") == pcreq);
            CHECK(query_set(theirs) == query_set(q));  // same parameters, including X-Amz-Signature
            presigned++;
            presigned_same += field(line, "presign_creq") == pcreq && query_set(theirs) == query_set(q);
        }
        i++;
    }
    CHECK(i == n);
    CHECK(presigned > 150);
    WARN("botocore cross-check: " << same << " of " << n << " header-signed and " << presigned_same << " of " << presigned
                                  << " presigned requests identical");
}

// walship's signer against an independent implementation: a few hundred generated S3 requests
// (awkward keys, queries with empty values and repeated keys, session tokens, ranges) signed by
// walship and by botocore's S3SigV4Auth must give identical canonical requests and signatures.
#include <catch2/catch.hpp>

#include <fstream>
#include <random>

#include "support/test_server.h"
#include "walship/s3/sigv4.h"

using namespace walship::s3::sigv4;

namespace {

std::string json(const std::string& s) {
    std::string o = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') o += '\\', o += char(c);
        else if (c < 0x20) {
            char b[8];
            snprintf(b, sizeof b, "\\u%04x", c);
            o += b;
        } else o += char(c);
    }
    return o + "\"";
}

// Reads one string field from botocore's JSON output (json.dumps escapes non-ASCII as \uXXXX).
std::string field(const std::string& line, const std::string& name) {
    size_t at = line.find("\"" + name + "\": \"");
    REQUIRE(at != std::string::npos);
    std::string out;
    for (size_t i = at + name.size() + 5; i < line.size() && line[i] != '"'; i++) {
        if (line[i] != '\\') {
            out += line[i];
            continue;
        }
        char e = line[++i];
        if (e == 'n') out += '\n';
        else if (e == 't') out += '\t';
        else if (e == 'u') {
            unsigned cp = unsigned(std::stoul(line.substr(i + 1, 4), nullptr, 16));
            i += 4;
            if (cp >= 0xd800 && cp < 0xdc00) {  // surrogate pair
                unsigned lo = unsigned(std::stoul(line.substr(i + 3, 4), nullptr, 16));
                i += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            if (cp < 0x80) out += char(cp);
            else if (cp < 0x800) out += char(0xc0 | cp >> 6), out += char(0x80 | (cp & 63));
            else if (cp < 0x10000) out += char(0xe0 | cp >> 12), out += char(0x80 | (cp >> 6 & 63)), out += char(0x80 | (cp & 63));
            else out += char(0xf0 | cp >> 18), out += char(0x80 | (cp >> 12 & 63)), out += char(0x80 | (cp >> 6 & 63)), out += char(0x80 | (cp & 63));
        } else out += e;
    }
    return out;
}

}  // namespace

TEST_CASE("sigv4 agrees with botocore's S3 signer on generated requests", "[sigv4][botocore]") {
    std::mt19937 rng(20261125);
    auto pick = [&](const std::vector<std::string>& v) { return v[rng() % v.size()]; };
    const std::vector<std::string> pieces = {"a", "Z9", "with space", "ünïcødé", "plus+sign", "per%cent", "tilde~", "eq=ual",
                                             "slash/inner", "star*", "paren(s)", "bang!", "日本語", "dot.", "..", ".", "semi;colon", "amp&"};
    const std::vector<std::string> methods = {"GET", "PUT", "HEAD", "DELETE", "POST"};
    std::string dir = walship::test::temp_dir();
    std::ofstream in(dir + "/in.jsonl");
    struct Expect {
        std::string creq, auth;
    };
    std::vector<Expect> ours;
    const int n = 300;
    for (int i = 0; i < n; i++) {
        std::string key;
        int parts = 1 + int(rng() % 4);
        for (int p = 0; p < parts; p++) key += (p ? "/" : "") + pick(pieces);
        std::vector<std::pair<std::string, std::string>> params;
        int np = int(rng() % 4);
        for (int p = 0; p < np; p++) {
            std::string k = pick({"prefix", "list-type", "continuation-token", "delimiter", "uploadId", "partNumber", "x", "a b", "ü"});
            std::string v = rng() % 4 == 0 ? "" : pick(pieces);
            params.push_back({k, v});
            if (rng() % 5 == 0) params.push_back({k, pick(pieces)});  // repeated key
        }
        std::string body;
        if (rng() % 3 == 0) body = "payload " + std::to_string(rng());
        std::vector<Header> headers = {{"Host", "bucket-" + std::to_string(i % 7) + ".s3.example.com"}};
        if (rng() % 3 == 0) headers.push_back({"Range", "bytes=" + std::to_string(rng() % 100) + "-" + std::to_string(100 + rng() % 1000)});
        if (rng() % 3 == 0) headers.push_back({"Content-Type", "application/octet-stream"});
        if (rng() % 4 == 0) headers.push_back({"x-amz-meta-note", "  spaced   value\tand tab  "});
        if (rng() % 4 == 0) headers.push_back({"If-None-Match", "*"});
        Credentials creds{"AKID" + std::to_string(rng() % 1000), "secret/" + std::to_string(rng()) + "+key", rng() % 3 == 0 ? "token/" + std::to_string(rng()) + "==" : ""};
        std::string region = pick({"us-east-1", "eu-west-3", "auto", "us-west-2"});
        std::time_t when = std::time_t(1600000000 + rng() % 200000000);

        Request req;
        req.method = pick(methods);
        req.path = "/" + uri_encode(key, true);
        for (auto& [k, v] : params) req.query += (req.query.empty() ? "" : "&") + uri_encode(k, false) + "=" + uri_encode(v, false);
        req.headers = headers;
        req.payload_hash = sha256_hex(body);
        Options opt;
        opt.region = region;
        std::string creq = sign(req, creds, when, opt);
        ours.push_back({creq, req.headers.back().value});

        std::string hex;
        for (unsigned char c : body) {
            char b[3];
            snprintf(b, sizeof b, "%02x", c);
            hex += b;
        }
        in << "{\"method\":" << json(req.method) << ",\"host\":" << json(headers[0].value) << ",\"path\":" << json(req.path)
           << ",\"params\":[";
        for (size_t p = 0; p < params.size(); p++) in << (p ? "," : "") << "[" << json(params[p].first) << "," << json(params[p].second) << "]";
        in << "],\"headers\":[";
        for (size_t h = 1; h < headers.size(); h++) in << (h > 1 ? "," : "") << "[" << json(headers[h].name) << "," << json(headers[h].value) << "]";
        in << "],\"body\":" << json(hex) << ",\"access\":" << json(creds.access_key_id) << ",\"secret\":" << json(creds.secret_access_key)
           << ",\"token\":" << json(creds.session_token) << ",\"region\":" << json(region) << ",\"timestamp\":" << json(amz_date(when)) << "}\n";
    }
    in.close();
    std::string script = walship::test::source_dir() + "/tests/support/botocore_sign.py";
    REQUIRE(walship::test::sh("python3 " + script + " " + dir + "/in.jsonl " + dir + "/out.jsonl") == 0);
    std::ifstream out(dir + "/out.jsonl");
    std::string line;
    int i = 0, same = 0;
    while (std::getline(out, line)) {
        REQUIRE(i < n);
        INFO("request " << i << "\nours:\n" << ours[i].creq);
        CHECK(field(line, "creq") == ours[i].creq);
        CHECK(field(line, "auth") == ours[i].auth);
        same += field(line, "auth") == ours[i].auth;
        i++;
    }
    CHECK(i == n);
    printf("botocore cross-check: %d of %d requests signed identically\n", same, n);
}

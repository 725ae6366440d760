// AWS Signature Version 4 (see sigv4.h): each stage is a small pure function so that tests can
// compare every intermediate result with the AWS test suite and with botocore.
#include "walship/s3/sigv4.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <map>

namespace walship::s3::sigv4 {
namespace {

// ASCII only: the result must not depend on the process locale.
std::string lower(std::string s) {
    for (auto& c : s)
        if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    return s;
}

bool unreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
           c == '~';
}

// Trims and collapses every run of whitespace (including obs-fold line breaks) to one space.
std::string squeeze(const std::string& v) {
    std::string out;
    bool space = false;
    for (char c : v) {
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            space = !out.empty();
            continue;
        }
        if (space) out += ' ';
        space = false;
        out += c;
    }
    return out;
}

int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::string percent_decode(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); i++) {
        if (s[i] == '%' && i + 2 < s.size() && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            out += char(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

// Headers SigV4 clients leave unsigned: the signature itself, and headers that proxies and
// transports may add, drop or change (hop-by-hop headers, User-Agent, tracing). Same list as botocore.
bool unsigned_header(const std::string& lname) {
    static const char* const names[] = {"authorization", "connection", "expect", "keep-alive", "proxy-authenticate",
                                        "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
                                        "user-agent", "x-amzn-trace-id"};
    for (const char* n : names)
        if (lname == n) return true;
    return false;
}

// Removes every header called lname (any case): re-signing a request replaces what signing added.
void drop(std::vector<Header>& headers, const std::string& lname) {
    headers.erase(std::remove_if(headers.begin(), headers.end(), [&](const Header& h) { return lower(h.name) == lname; }),
                  headers.end());
}

// name -> values in original order, names sorted.
std::map<std::string, std::vector<std::string>> header_map(const std::vector<Header>& headers) {
    std::map<std::string, std::vector<std::string>> m;
    for (auto& h : headers) {
        std::string n = lower(h.name);
        if (!unsigned_header(n)) m[n].push_back(squeeze(h.value));
    }
    return m;
}

std::string normalize_path(const std::string& path) {
    std::vector<std::string> parts;
    size_t start = 0;
    while (start <= path.size()) {
        size_t end = path.find('/', start);
        if (end == std::string::npos) end = path.size();
        std::string seg = path.substr(start, end - start);
        if (seg == "..") {
            if (!parts.empty()) parts.pop_back();
        } else if (!seg.empty() && seg != ".") {
            parts.push_back(seg);
        }
        start = end + 1;
    }
    std::string out;
    for (auto& p : parts) out += "/" + p;
    if (out.empty()) return "/";
    bool trailing = path.size() > 1 && path.back() == '/';
    if (trailing) out += "/";
    return out;
}

}  // namespace

std::string to_hex(const std::string& raw) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    out.reserve(raw.size() * 2);
    for (unsigned char c : raw) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

std::string sha256_hex(const void* data, size_t len) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(data, len, md, &n, EVP_sha256(), nullptr);
    return to_hex(std::string(reinterpret_cast<char*>(md), n));
}

std::string sha256_hex(const std::string& data) { return sha256_hex(data.data(), data.size()); }

std::string hmac_sha256(const std::string& key, const std::string& data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    HMAC(EVP_sha256(), key.data(), int(key.size()), reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &n);
    std::string out(reinterpret_cast<char*>(md), n);
    OPENSSL_cleanse(md, sizeof md);
    return out;
}

std::string amz_date(std::time_t t) {
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
    return buf;
}

std::string scope_date(std::time_t t) { return amz_date(t).substr(0, 8); }

std::string uri_encode(const std::string& s, bool keep_slash) {
    static const char* digits = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if (unreserved(c) || (keep_slash && c == '/')) {
            out += char(c);
        } else {
            out += '%';
            out += digits[c >> 4];
            out += digits[c & 15];
        }
    }
    return out;
}

std::string canonical_uri(const std::string& wire_path, const Options& opt) {
    std::string path = wire_path.empty() ? "/" : wire_path;
    if (opt.normalize) path = normalize_path(path);
    if (opt.double_encode) path = uri_encode(path, true);
    return path;
}

std::string canonical_query(const std::string& wire_query) {
    std::vector<std::pair<std::string, std::string>> params;
    size_t start = 0;
    while (start < wire_query.size()) {
        size_t end = wire_query.find('&', start);
        if (end == std::string::npos) end = wire_query.size();
        std::string item = wire_query.substr(start, end - start);
        if (!item.empty()) {
            size_t eq = item.find('=');
            std::string k = eq == std::string::npos ? item : item.substr(0, eq);
            std::string v = eq == std::string::npos ? "" : item.substr(eq + 1);
            params.emplace_back(uri_encode(percent_decode(k), false), uri_encode(percent_decode(v), false));
        }
        start = end + 1;
    }
    std::sort(params.begin(), params.end());
    std::string out;
    for (auto& [k, v] : params) {
        if (!out.empty()) out += '&';
        out += k + "=" + v;
    }
    return out;
}

std::string canonical_headers(const std::vector<Header>& headers) {
    std::string out;
    for (auto& [name, values] : header_map(headers)) {
        out += name + ":";
        for (size_t i = 0; i < values.size(); i++) out += (i ? "," : "") + values[i];
        out += "\n";
    }
    return out;
}

std::string signed_headers(const std::vector<Header>& headers) {
    std::string out;
    for (auto& [name, values] : header_map(headers)) out += (out.empty() ? "" : ";") + name;
    return out;
}

std::string canonical_request(const Request& req, const Options& opt) {
    return req.method + "\n" + canonical_uri(req.path, opt) + "\n" + canonical_query(req.query) + "\n" +
           canonical_headers(req.headers) + "\n" + signed_headers(req.headers) + "\n" + req.payload_hash;
}

std::string credential_scope(std::time_t t, const Options& opt) {
    return scope_date(t) + "/" + opt.region + "/" + opt.service + "/aws4_request";
}

std::string string_to_sign(const std::string& creq, std::time_t t, const Options& opt) {
    return "AWS4-HMAC-SHA256\n" + amz_date(t) + "\n" + credential_scope(t, opt) + "\n" + sha256_hex(creq);
}

std::string signing_key(const std::string& secret, std::time_t t, const Options& opt) {
    std::string k = "AWS4" + secret;
    std::string date = hmac_sha256(k, scope_date(t));
    std::string region = hmac_sha256(date, opt.region);
    std::string service = hmac_sha256(region, opt.service);
    std::string out = hmac_sha256(service, "aws4_request");
    for (std::string* s : {&k, &date, &region, &service}) OPENSSL_cleanse(&(*s)[0], s->size());
    return out;
}

std::string signature(const std::string& key, const std::string& sts) { return to_hex(hmac_sha256(key, sts)); }

// Signing again (a retry, a later clock) first removes what an earlier signing added.
std::string sign(Request& req, const Credentials& creds, std::time_t now, const Options& opt) {
    drop(req.headers, "authorization");
    drop(req.headers, "x-amz-date");
    if (opt.add_content_sha256) drop(req.headers, "x-amz-content-sha256");
    if (!creds.session_token.empty()) drop(req.headers, "x-amz-security-token");
    if (!creds.session_token.empty() && !opt.omit_session_token) req.headers.push_back({"X-Amz-Security-Token", creds.session_token});
    req.headers.push_back({"X-Amz-Date", amz_date(now)});
    if (opt.add_content_sha256) req.headers.push_back({"x-amz-content-sha256", req.payload_hash});
    std::string creq = canonical_request(req, opt);
    std::string key = signing_key(creds.secret_access_key, now, opt);
    std::string sig = signature(key, string_to_sign(creq, now, opt));
    OPENSSL_cleanse(&key[0], key.size());
    req.headers.push_back({"Authorization", "AWS4-HMAC-SHA256 Credential=" + creds.access_key_id + "/" + credential_scope(now, opt) +
                                                ", SignedHeaders=" + signed_headers(req.headers) + ", Signature=" + sig});
    if (!creds.session_token.empty() && opt.omit_session_token) req.headers.push_back({"X-Amz-Security-Token", creds.session_token});
    return creq;
}

std::string presign_query(const Request& req, const Credentials& creds, std::time_t now, int expires_seconds, const Options& opt) {
    std::string extra = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=" + uri_encode(creds.access_key_id + "/" + credential_scope(now, opt), false) +
                        "&X-Amz-Date=" + amz_date(now) + "&X-Amz-SignedHeaders=" + uri_encode(signed_headers(req.headers), false) +
                        "&X-Amz-Expires=" + std::to_string(expires_seconds);
    std::string token = creds.session_token.empty() ? "" : "&X-Amz-Security-Token=" + uri_encode(creds.session_token, false);
    if (!opt.omit_session_token) extra += token;
    Request r = req;
    r.query = req.query.empty() ? extra : req.query + "&" + extra;
    std::string creq = canonical_request(r, opt);
    std::string key = signing_key(creds.secret_access_key, now, opt);
    std::string sig = signature(key, string_to_sign(creq, now, opt));
    OPENSSL_cleanse(&key[0], key.size());
    return r.query + "&X-Amz-Signature=" + sig + (opt.omit_session_token ? token : "");
}

}  // namespace walship::s3::sigv4

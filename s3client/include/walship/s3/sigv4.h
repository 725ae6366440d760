// AWS Signature Version 4, as small pure steps. The clock and the credentials are parameters, so
// every stage can be compared with the AWS test suite (tests/test_sigv4.cpp) and with botocore.
//
//   canonical_request  = method \n canonical_uri \n canonical_query \n canonical_headers \n
//                        signed_headers \n payload_hash
//   string_to_sign     = "AWS4-HMAC-SHA256" \n amz_date \n scope \n hex(sha256(canonical_request))
//   signing_key        = HMAC chain over date, region, service, "aws4_request"
//   signature          = hex(HMAC(signing_key, string_to_sign))
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <vector>

namespace walship::s3::sigv4 {

struct Credentials {
    std::string access_key_id;
    std::string secret_access_key;
    std::string session_token;  // empty: none
};

struct Header {
    std::string name;
    std::string value;
};

// A request as it goes on the wire.
struct Request {
    std::string method;               // "GET"
    std::string path;                 // wire path, already percent-encoded for S3 ("/bucket/a%20b")
    std::string query;                // wire query string without '?', may be empty
    std::vector<Header> headers;      // must include Host; repeated names allowed, order kept
    std::string payload_hash;         // hex sha256 of the body, or "UNSIGNED-PAYLOAD"
};

struct Options {
    std::string region = "us-east-1";
    std::string service = "s3";
    // S3 rules (default): the wire path is used as is (single encoding, no normalization).
    // Other services: the path is URI-encoded again (double encoding) and optionally normalized.
    bool double_encode = false;
    bool normalize = false;
    // S3 requires x-amz-content-sha256 on every request; the generic test vectors omit it.
    bool add_content_sha256 = true;
    // Add X-Amz-Security-Token after signing instead of signing it (only one test vector does this).
    bool omit_session_token = false;
};

// Pure steps.
std::string amz_date(std::time_t t);    // "20150830T123600Z"
std::string scope_date(std::time_t t);  // "20150830"
std::string uri_encode(const std::string& s, bool keep_slash);  // RFC 3986, uppercase hex
std::string canonical_uri(const std::string& wire_path, const Options& opt);
std::string canonical_query(const std::string& wire_query);
std::string canonical_headers(const std::vector<Header>& headers);  // with trailing '\n' per header
std::string signed_headers(const std::vector<Header>& headers);     // "host;x-amz-date"
std::string canonical_request(const Request& req, const Options& opt);
std::string credential_scope(std::time_t t, const Options& opt);
std::string string_to_sign(const std::string& canonical_request, std::time_t t, const Options& opt);
std::string signing_key(const std::string& secret, std::time_t t, const Options& opt);  // raw bytes
std::string signature(const std::string& signing_key, const std::string& string_to_sign);  // hex

std::string sha256_hex(const std::string& data);
std::string sha256_hex(const void* data, size_t len);
std::string hmac_sha256(const std::string& key, const std::string& data);  // raw bytes
std::string to_hex(const std::string& raw);

// Adds X-Amz-Date, x-amz-content-sha256 (when opt.add_content_sha256), X-Amz-Security-Token (when
// the credentials have one) and Authorization to req.headers. Returns the canonical request it
// signed (for tests and debugging; it contains no secret).
std::string sign(Request& req, const Credentials& creds, std::time_t now, const Options& opt);

// Query-string signing (presigned URL): returns the query string to append, including
// X-Amz-Signature. payload_hash is usually "UNSIGNED-PAYLOAD" for S3.
std::string presign_query(const Request& req, const Credentials& creds, std::time_t now,
                          int expires_seconds, const Options& opt);

}  // namespace walship::s3::sigv4

// Replica locations as URLs, and the configuration they take from the environment.
//
//   s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1&force_path_style=true
//   file:///absolute/dir
//
// Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, falling
// back to LITESTREAM_ACCESS_KEY_ID / LITESTREAM_SECRET_ACCESS_KEY. Region from AWS_REGION, then
// AWS_DEFAULT_REGION (default us-east-1). Endpoint from AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL.
// Query values in the URL override the environment.
#pragma once

#include <map>
#include <string>

#include "walship/s3/error.h"

namespace walship::s3 {

// A snapshot of the variables that matter, so parsing is pure and testable.
struct Environment {
    std::map<std::string, std::string> vars;
    std::string get(const std::string& name) const;  // "" when unset
    static Environment from_process();
};

struct Location {
    enum class Scheme { S3, File } scheme = Scheme::S3;

    // file://
    std::string dir;  // absolute directory

    // s3://
    std::string bucket;
    std::string prefix;          // without leading or trailing '/', may be empty
    std::string endpoint;        // "https://s3.us-east-1.amazonaws.com" or a custom one, no trailing '/'
    std::string region = "us-east-1";
    bool force_path_style = false;  // also true automatically for IP-address and localhost endpoints
    std::string access_key_id;
    std::string secret_access_key;  // never printed
    std::string session_token;      // never printed

    // Canonical URL without secrets: identifies the replica ("s3://b/p?endpoint=…" or "file:///d").
    std::string url() const;
};

// Parses a replica URL and fills in configuration from env. Errors (kind Config) name the problem:
// "replica URL 'x': unknown scheme 'ftp' (use s3:// or file://)", "...: missing bucket",
// "...: no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)".
Result<Location> parse_location(const std::string& url, const Environment& env);

}  // namespace walship::s3

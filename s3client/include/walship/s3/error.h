// Errors as values for everything that talks to a replica location.
//
// An Error carries what kind of failure it was (so callers decide whether to retry, give up or
// start over), the HTTP status and S3 error code when a server answered, and a message that starts
// with the operation ("put_object: ..."). Messages never contain credentials.
#pragma once

#include <string>
#include <utility>

namespace walship::s3 {

enum class ErrorKind {
    None,
    NotFound,            // no such key / bucket
    AccessDenied,        // 401/403, bad or missing credentials
    BadRequest,          // 4xx that cannot succeed when repeated
    PreconditionFailed,  // conditional put lost (412), object already exists
    Throttled,           // 429 / 503 SlowDown (retried)
    Server,              // 5xx (retried)
    Network,             // connection refused, reset, DNS, TLS (retried)
    Timeout,             // no progress within the configured time (retried)
    Config,              // malformed URL, missing bucket, missing credentials, unknown scheme
    Io,                  // local file error (file:// store, streaming from/to disk)
    Corrupt,             // object failed a checksum or format check
};

const char* kind_name(ErrorKind k);

struct Error {
    ErrorKind kind = ErrorKind::None;
    int http_status = 0;   // 0 when no HTTP answer
    std::string code;      // S3 error code, e.g. "NoSuchKey", "SlowDown"
    std::string message;   // "operation: what went wrong"

    bool ok() const { return kind == ErrorKind::None; }
    // True for failures that may succeed when tried again (network, timeout, 5xx, throttling).
    bool transient() const;
    // One line for logs and users: "put_object: HTTP 403 AccessDenied: Access Denied".
    std::string str() const;
};

inline Error make_error(ErrorKind kind, std::string message, int status = 0, std::string code = {}) {
    Error e;
    e.kind = kind;
    e.message = std::move(message);
    e.http_status = status;
    e.code = std::move(code);
    return e;
}

using Status = Error;  // an Error with kind None means success

// A value or an error. Small on purpose: check ok(), then use value() or error().
template <class T>
class Result {
public:
    Result(T value) : value_(std::move(value)) {}
    Result(Error error) : error_(std::move(error)) {}
    bool ok() const { return error_.ok(); }
    const Error& error() const { return error_; }
    T& value() { return value_; }
    const T& value() const { return value_; }
    T* operator->() { return &value_; }
    const T* operator->() const { return &value_; }

private:
    T value_{};
    Error error_{};
};

}  // namespace walship::s3

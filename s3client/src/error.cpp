// Names and one-line rendering of storage errors.
#include "walship/s3/error.h"

namespace walship::s3 {

const char* kind_name(ErrorKind k) {
    switch (k) {
        case ErrorKind::None: return "ok";
        case ErrorKind::NotFound: return "not found";
        case ErrorKind::AccessDenied: return "access denied";
        case ErrorKind::BadRequest: return "bad request";
        case ErrorKind::PreconditionFailed: return "precondition failed";
        case ErrorKind::Throttled: return "throttled";
        case ErrorKind::Server: return "server error";
        case ErrorKind::Network: return "network error";
        case ErrorKind::Timeout: return "timeout";
        case ErrorKind::Config: return "configuration error";
        case ErrorKind::Io: return "I/O error";
        case ErrorKind::Corrupt: return "corrupt data";
    }
    return "error";
}

bool Error::transient() const {
    return kind == ErrorKind::Throttled || kind == ErrorKind::Server || kind == ErrorKind::Network ||
           kind == ErrorKind::Timeout;
}

std::string Error::str() const {
    if (ok()) return "ok";
    std::string s = message.empty() ? kind_name(kind) : message;
    if (http_status != 0 && s.find("HTTP ") == std::string::npos) {
        s += " (HTTP " + std::to_string(http_status);
        if (!code.empty()) s += " " + code;
        s += ")";
    }
    return s;
}

}  // namespace walship::s3

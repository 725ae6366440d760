/*
** walship_uri.h (C++): builds the SQLite URI filename that opens a database with a replica,
** "file:<path>?replica=<url>", percent-encoding both parts so that any path or replica URL
** (with its own '?', '&', '#', '%' or spaces) survives SQLite's URI parsing.
*/
#ifndef WALSHIP_URI_H
#define WALSHIP_URI_H

#include <cstdio>
#include <string>

namespace walship {

inline std::string uri_encode(const std::string& s) {
    static const char kKeep[] = "-_.~/:";
    std::string out;
    for (unsigned char c : s) {
        bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        for (const char* k = kKeep; !keep && *k; k++) keep = c == static_cast<unsigned char>(*k);
        if (keep) {
            out += char(c);
        } else {
            char b[4];
            snprintf(b, sizeof b, "%%%02X", c);
            out += b;
        }
    }
    return out;
}

/* "file:<path>?replica=<url>" followed by `extra` (e.g. "&durability=remote"), as is. */
inline std::string replica_uri(const std::string& path, const std::string& url, const std::string& extra = "") {
    return "file:" + uri_encode(path) + "?replica=" + uri_encode(url) + extra;
}

}  // namespace walship

#endif /* WALSHIP_URI_H */

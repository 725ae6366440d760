// Parsing of replica URLs (s3://bucket/prefix?…, file:///dir) into a Location, with credentials,
// region and endpoint filled in from an Environment snapshot. Parsing is pure: every failure is one
// Config error that names the problem and quotes the URL with any "user:password@" part redacted,
// so no secret ever reaches a message. Location::url() renders the canonical, secret-free form
// that identifies a replica (prefix without surrounding slashes, endpoint lower-cased, default
// ports dropped), so the same replica always gives the same string.
#include <cstring>
#include <cctype>
#include <cstdlib>
#include <vector>

#include "walship/s3/location.h"
#include "walship/s3/sigv4.h"

extern char** environ;

namespace walship::s3 {
namespace {

std::string lower(std::string s) {
    for (auto& c : s) c = (char)std::tolower((unsigned char)c);
    return s;
}

// Hides "user:password@" after "scheme://". A secret key may hold '/' (AWS's often do), so the
// user info is taken to run to the last '@' before the query when what precedes it has a ':' or
// no '/' ("s3://bucket/me@example/db" keeps its prefix).
std::string redact_userinfo(const std::string& url) {
    std::string out = url;
    size_t pos = 0;
    while ((pos = out.find("://", pos)) != std::string::npos) {
        size_t start = pos + 3;
        size_t end = out.find_first_of("?#&", start);
        if (end == std::string::npos) end = out.size();
        size_t at = out.rfind('@', end);
        if (at != std::string::npos && at >= start && at < end) {
            std::string info = out.substr(start, at - start);
            if (info.find(':') != std::string::npos || info.find('/') == std::string::npos) out.replace(start, at - start, "***");
        }
        pos = start;
    }
    return out;
}

bool percent_decode(const std::string& in, std::string* out);

// An endpoint or region as a message may show it: only when it holds nothing but the characters
// of a host, port and scheme (anything else may be a secret pasted in by mistake).
std::string shown_value(const std::string& v) {
    std::string r = redact_userinfo(v);
    for (unsigned char c : r)
        if (!std::isalnum(c) && !std::strchr(".:/[]-_*", c)) return "***";
    return r;
}

// A URL fit for a message: no user info, no fragment, endpoint and region values shown only when
// they look like what they should be (percent-encoded or not), and the values of other query
// parameters hidden (someone may have put a secret key there).
std::string redact(const std::string& url) {
    std::string out = redact_userinfo(url);
    if (size_t hash = out.find('#'); hash != std::string::npos) out = out.substr(0, hash) + "#***";
    size_t q = out.find('?');
    if (q == std::string::npos) return out;
    std::string fragment;
    if (size_t hash = out.find('#', q); hash != std::string::npos) fragment = out.substr(hash), out.resize(hash);
    std::string query = out.substr(q + 1), shown;
    out.resize(q + 1);
    size_t start = 0;
    while (start <= query.size()) {
        size_t amp = query.find('&', start);
        if (amp == std::string::npos) amp = query.size();
        std::string pair = query.substr(start, amp - start);
        start = amp + 1;
        size_t eq = pair.find('=');
        std::string key = pair.substr(0, eq), value, decoded;
        if (eq != std::string::npos) value = pair.substr(eq + 1);
        if (key == "endpoint" || key == "region") {
            value = percent_decode(value, &decoded) ? shown_value(decoded) : "***";
            if (value.find('@') != std::string::npos) value = "***";
        } else if (key != "force_path_style" && eq != std::string::npos) {
            value = "***";
        }
        shown += (shown.empty() ? "" : "&") + key + (eq == std::string::npos ? "" : "=" + value);
    }
    return out + shown + fragment;
}

// One line whatever the URL holds: control characters (a newline pasted in) shown as \xNN.
std::string one_line(const std::string& s) {
    std::string out;
    for (unsigned char c : s) {
        if (c >= 0x20 && c != 0x7f) out += char(c);
        else {
            char esc[5];
            std::snprintf(esc, sizeof esc, "\\x%02x", c);
            out += esc;
        }
    }
    return out;
}

Error config_error(const std::string& url, const std::string& what) {
    return make_error(ErrorKind::Config, "replica URL '" + one_line(redact(url)) + "': " + what);
}

bool percent_decode(const std::string& in, std::string* out) {
    out->clear();
    for (size_t i = 0; i < in.size(); i++) {
        if (in[i] != '%') {
            out->push_back(in[i]);
            continue;
        }
        if (i + 2 >= in.size() || !std::isxdigit((unsigned char)in[i + 1]) || !std::isxdigit((unsigned char)in[i + 2]))
            return false;
        out->push_back((char)std::strtol(in.substr(i + 1, 2).c_str(), nullptr, 16));
        i += 2;
    }
    return true;
}

// Splits on '/', drops empty segments, rejoins: "/a//b/" -> "a/b".
std::string clean_path(const std::string& p) {
    std::string out, seg;
    for (size_t i = 0; i <= p.size(); i++) {
        if (i == p.size() || p[i] == '/') {
            if (!seg.empty()) out += (out.empty() ? "" : "/") + seg;
            seg.clear();
        } else {
            seg += p[i];
        }
    }
    return out;
}

// Validates and normalises an endpoint URL: "scheme://host[:port]", lower-case, no default port,
// no path, query or user info. `what` names where it came from (for the message).
Result<std::string> normalise_endpoint(const std::string& raw, const std::string& what) {
    auto bad = [&](const std::string& why) {
        return make_error(ErrorKind::Config, "bad endpoint URL " + what + " '" + shown_value(raw) + "': " + why);
    };
    size_t sep = raw.find("://");
    if (sep == std::string::npos) return bad("expected http://host[:port] or https://host[:port]");
    std::string scheme = lower(raw.substr(0, sep));
    if (scheme != "http" && scheme != "https") return bad("scheme must be http or https");
    std::string rest = raw.substr(sep + 3);
    while (!rest.empty() && rest.back() == '/') rest.pop_back();
    if (rest.find_first_of("/?#") != std::string::npos) return bad("must not have a path, query or fragment");
    if (rest.find('@') != std::string::npos) return bad("must not contain user info");
    std::string host = rest, port;
    if (!rest.empty() && rest[0] == '[') {  // [IPv6]:port
        size_t close = rest.find(']');
        if (close == std::string::npos) return bad("unterminated IPv6 address");
        host = rest.substr(0, close + 1);
        std::string after = rest.substr(close + 1);
        if (!after.empty()) {
            if (after[0] != ':') return bad("bad port");
            port = after.substr(1);
        }
    } else if (size_t colon = rest.find(':'); colon != std::string::npos) {
        host = rest.substr(0, colon);
        port = rest.substr(colon + 1);
    }
    host = lower(host);
    if (host.empty()) return bad("missing host");
    for (char c : host)
        if (!std::isalnum((unsigned char)c) && c != '.' && c != '-' && c != '_' && c != '[' && c != ']' && c != ':')
            return bad("invalid character in host");
    if (rest.find(':') != std::string::npos && host[0] != '[' && port.empty()) return bad("empty port");
    if (!port.empty()) {
        for (char c : port)
            if (!std::isdigit((unsigned char)c)) return bad("port must be a number");
        long n = port.size() > 5 ? 0 : std::strtol(port.c_str(), nullptr, 10);
        if (n < 1 || n > 65535) return bad("port out of range");
        port = std::to_string(n);
        if ((scheme == "http" && n == 80) || (scheme == "https" && n == 443)) port.clear();
    }
    return scheme + "://" + host + (port.empty() ? "" : ":" + port);
}

bool valid_bucket(const std::string& b) {
    if (b.size() < 3 || b.size() > 255) return false;
    for (char c : b)
        if (!std::isalnum((unsigned char)c) && c != '.' && c != '-' && c != '_') return false;
    return true;
}

bool valid_region(const std::string& r) {
    if (r.empty() || r.size() > 64) return false;
    for (char c : r)
        if (!std::isalnum((unsigned char)c) && c != '-' && c != '_') return false;
    return true;
}

Result<Location> parse_file(const std::string& url, const std::string& rest) {
    // rest is what follows "file:"; it must be "//" + optional "localhost" + "/absolute".
    if (rest.rfind("//", 0) != 0)
        return config_error(url, "relative file path (use file:///absolute/dir)");
    std::string after = rest.substr(2);
    if (after.find('?') != std::string::npos) return config_error(url, "file:// URLs take no query parameters");
    if (after.find('#') != std::string::npos) return config_error(url, "unexpected '#' fragment");
    std::string path;
    if (after.rfind("localhost/", 0) == 0) after = after.substr(9);
    if (after.empty() || after[0] != '/')
        return config_error(url, "relative file path or host name in file URL (use file:///absolute/dir)");
    if (!percent_decode(after, &path)) return config_error(url, "malformed percent-encoding in path");
    Location loc;
    loc.scheme = Location::Scheme::File;
    loc.dir = "/" + clean_path(path);
    for (const std::string& seg : {std::string("/./"), std::string("/../")})
        if ((loc.dir + "/").find(seg) != std::string::npos)
            return config_error(url, "path must not contain '.' or '..' segments");
    return loc;
}

}  // namespace

std::string Environment::get(const std::string& name) const {
    auto it = vars.find(name);
    return it == vars.end() ? std::string() : it->second;
}

Environment Environment::from_process() {
    Environment e;
    static const char* names[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                                  "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL",
                                  "LITESTREAM_ACCESS_KEY_ID", "LITESTREAM_SECRET_ACCESS_KEY",
                                  "WALSHIP_S3_TIMEOUT_MS", "WALSHIP_S3_ATTEMPTS"};
    for (const char* n : names)
        if (const char* v = std::getenv(n)) e.vars[n] = v;
    return e;
}

std::string Location::url() const {
    if (scheme == Scheme::File) return "file://" + sigv4::uri_encode(dir, true);
    std::string s = "s3://" + bucket + "/" + sigv4::uri_encode(prefix, true);
    s += "?endpoint=" + endpoint + "&region=" + region;
    if (force_path_style) s += "&force_path_style=true";
    return s;
}

Result<Location> parse_location(const std::string& url, const Environment& env) {
    if (url.empty()) return make_error(ErrorKind::Config, "replica URL is empty (use s3://bucket/prefix or file:///absolute/dir)");
    for (char c : url)
        if ((unsigned char)c < 0x20 || c == 0x7f) return config_error(url, "contains a control character");
    size_t colon = url.find(':');
    std::string scheme = colon == std::string::npos ? "" : lower(url.substr(0, colon));
    bool scheme_ok = !scheme.empty() && std::isalpha((unsigned char)scheme[0]);
    for (char c : scheme)
        if (!std::isalnum((unsigned char)c) && c != '+' && c != '-' && c != '.') scheme_ok = false;
    if (!scheme_ok) return config_error(url, "missing scheme (use s3://bucket/prefix or file:///absolute/dir)");
    if (scheme == "file") return parse_file(url, url.substr(colon + 1));
    if (scheme != "s3") return config_error(url, "unknown scheme '" + scheme + "' (use s3:// or file://)");
    if (url.compare(colon, 3, "://") != 0) return config_error(url, "malformed, expected s3://bucket/prefix");

    std::string rest = url.substr(colon + 3);
    if (rest.find('#') != std::string::npos) return config_error(url, "unexpected '#' fragment");
    std::string query;
    if (size_t q = rest.find('?'); q != std::string::npos) {
        query = rest.substr(q + 1);
        rest = rest.substr(0, q);
    }
    size_t slash = rest.find('/');
    std::string bucket = rest.substr(0, slash);
    std::string raw_prefix = slash == std::string::npos ? "" : rest.substr(slash + 1);
    if (bucket.find('@') != std::string::npos || (bucket.find(':') != std::string::npos && rest.find('@') != std::string::npos))
        return config_error(url, "credentials must not be put in the URL (use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)");
    if (bucket.empty()) return config_error(url, "missing bucket (expected s3://bucket/prefix)");
    if (!valid_bucket(bucket)) return config_error(url, "invalid bucket name '" + bucket + "'");

    Location loc;
    loc.scheme = Location::Scheme::S3;
    loc.bucket = bucket;
    std::string prefix;
    if (!percent_decode(raw_prefix, &prefix)) return config_error(url, "malformed percent-encoding in prefix");
    loc.prefix = clean_path(prefix);

    // Query parameters override the environment.
    std::string q_endpoint, q_region;
    bool have_endpoint = false, have_region = false, have_force = false;
    size_t start = 0;
    while (!query.empty() && start <= query.size()) {
        size_t amp = query.find('&', start);
        if (amp == std::string::npos) amp = query.size();
        std::string pair = query.substr(start, amp - start);
        start = amp + 1;
        if (pair.empty()) continue;
        size_t eq = pair.find('=');
        std::string key = pair.substr(0, eq), value;
        if (eq == std::string::npos || !percent_decode(pair.substr(eq + 1), &value))
            return config_error(url, "malformed query parameter '" + key + "' (expected name=value)");
        if (key == "endpoint") {
            if (have_endpoint) return config_error(url, "query parameter 'endpoint' given twice");
            q_endpoint = value, have_endpoint = true;
        } else if (key == "region") {
            if (have_region) return config_error(url, "query parameter 'region' given twice");
            q_region = value, have_region = true;
        } else if (key == "force_path_style") {
            if (have_force) return config_error(url, "query parameter 'force_path_style' given twice");
            std::string v = lower(value);
            if (v == "true" || v == "1") loc.force_path_style = true;
            else if (v == "false" || v == "0") loc.force_path_style = false;
            else return config_error(url, "force_path_style must be true or false");
            have_force = true;
        } else {
            return config_error(url, "unknown query parameter '" + key + "' (known: endpoint, region, force_path_style)");
        }
    }

    std::string region = have_region ? q_region : env.get("AWS_REGION");
    if (!have_region && region.empty()) region = env.get("AWS_DEFAULT_REGION");
    if (region.empty()) region = have_region ? "" : "us-east-1";
    if (!valid_region(region)) {
        const char* from = have_region ? "" : !env.get("AWS_REGION").empty() ? " (from AWS_REGION)" : " (from AWS_DEFAULT_REGION)";
        return config_error(url, "invalid region '" + shown_value(region) + "'" + from);
    }
    // The client's tuning variables: a value that is not a positive number is refused, not ignored.
    for (const char* name : {"WALSHIP_S3_TIMEOUT_MS", "WALSHIP_S3_ATTEMPTS"}) {
        std::string v = env.get(name);
        if (v.empty()) continue;
        bool digits = v.size() <= 9 && v.find_first_not_of("0123456789") == std::string::npos && std::stol(v) > 0;
        if (!digits) return config_error(url, std::string(name) + " must be a positive whole number, not '" + shown_value(v) + "'");
    }
    loc.region = region;

    std::string endpoint, endpoint_from;
    if (have_endpoint) endpoint = q_endpoint, endpoint_from = "in query";
    else if (!(endpoint = env.get("AWS_ENDPOINT_URL_S3")).empty()) endpoint_from = "from AWS_ENDPOINT_URL_S3";
    else if (!(endpoint = env.get("AWS_ENDPOINT_URL")).empty()) endpoint_from = "from AWS_ENDPOINT_URL";
    if (endpoint.empty() && have_endpoint) return config_error(url, "empty endpoint");
    if (endpoint.empty()) {
        loc.endpoint = "https://s3." + region + ".amazonaws.com";
    } else {
        auto ep = normalise_endpoint(endpoint, endpoint_from);
        if (!ep.ok()) return config_error(url, ep.error().message);
        loc.endpoint = ep.value();
    }

    // Credentials: an AWS pair, else a LITESTREAM pair; a half pair is an error naming the missing half.
    std::string id = env.get("AWS_ACCESS_KEY_ID"), secret = env.get("AWS_SECRET_ACCESS_KEY");
    if (!id.empty() != !secret.empty())
        return config_error(url, id.empty() ? "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not"
                                            : "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
    if (!id.empty()) {
        loc.session_token = env.get("AWS_SESSION_TOKEN");
    } else {
        id = env.get("LITESTREAM_ACCESS_KEY_ID"), secret = env.get("LITESTREAM_SECRET_ACCESS_KEY");
        if (!id.empty() != !secret.empty())
            return config_error(url, id.empty() ? "LITESTREAM_SECRET_ACCESS_KEY is set but LITESTREAM_ACCESS_KEY_ID is not"
                                                : "LITESTREAM_ACCESS_KEY_ID is set but LITESTREAM_SECRET_ACCESS_KEY is not");
    }
    if (id.empty())
        return config_error(url, "no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)");
    // A value read from a file with Windows line endings ends in "\r": it would cut the
    // Authorization header short, or sign with the wrong secret. Named, never shown.
    const bool aws = !env.get("AWS_ACCESS_KEY_ID").empty();
    const std::pair<const char*, const std::string*> creds[] = {{aws ? "AWS_ACCESS_KEY_ID" : "LITESTREAM_ACCESS_KEY_ID", &id},
                                                                {aws ? "AWS_SECRET_ACCESS_KEY" : "LITESTREAM_SECRET_ACCESS_KEY", &secret},
                                                                {"AWS_SESSION_TOKEN", &loc.session_token}};
    for (auto& [name, value] : creds)
        for (unsigned char c : *value)
            if (c <= 0x20 || c == 0x7f)
                return config_error(url, std::string(name) + " contains " + (c == '\r' ? "a carriage return (a file with Windows line endings?)" : c == ' ' ? "a space" : "a control character"));
    loc.access_key_id = id;
    loc.secret_access_key = secret;
    return loc;
}

}  // namespace walship::s3

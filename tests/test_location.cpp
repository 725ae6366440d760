// Replica URL parsing: the accepted forms, environment fallbacks and overrides, the canonical
// url(), and one clear Config error line (without secrets) for each kind of bad input.
#include <catch2/catch.hpp>

#include "walship/s3/location.h"
#include "walship/s3/store.h"

using namespace walship::s3;

namespace {

const char* kSecret = "SECRETwjalrXUtnFEMI-distinctive";
const char* kToken = "TOKEN-distinctive-session-token";

Environment creds() {
    Environment e;
    e.vars["AWS_ACCESS_KEY_ID"] = "AKIDEXAMPLE";
    e.vars["AWS_SECRET_ACCESS_KEY"] = kSecret;
    e.vars["AWS_SESSION_TOKEN"] = kToken;
    return e;
}

Location ok(const std::string& url, const Environment& env = creds()) {
    auto r = parse_location(url, env);
    INFO(url << " -> " << r.error().str());
    REQUIRE(r.ok());
    return r.value();
}

// Parses, expects a Config error containing `needle`, one line, no secrets.
void bad(const std::string& url, const std::string& needle, const Environment& env = creds()) {
    auto r = parse_location(url, env);
    INFO(url);
    REQUIRE_FALSE(r.ok());
    std::string s = r.error().str();
    INFO(s);
    CHECK(r.error().kind == ErrorKind::Config);
    CHECK(s.find(needle) != std::string::npos);
    CHECK(s.find('\n') == std::string::npos);
    CHECK(s.find(kSecret) == std::string::npos);
    CHECK(s.find(kToken) == std::string::npos);
    // open_store gives the same error.
    auto st = open_store(url, env);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().kind == ErrorKind::Config);
    CHECK(st.error().str() == s);
}

}  // namespace

TEST_CASE("s3 URL with prefix and defaults", "[location]") {
    Location l = ok("s3://my-bucket/some/prefix");
    CHECK(l.scheme == Location::Scheme::S3);
    CHECK(l.bucket == "my-bucket");
    CHECK(l.prefix == "some/prefix");
    CHECK(l.region == "us-east-1");
    CHECK(l.endpoint == "https://s3.us-east-1.amazonaws.com");
    CHECK_FALSE(l.force_path_style);
    CHECK(l.access_key_id == "AKIDEXAMPLE");
    CHECK(l.secret_access_key == kSecret);
    CHECK(l.session_token == kToken);
    CHECK(l.url() == "s3://my-bucket/some/prefix?endpoint=https://s3.us-east-1.amazonaws.com&region=us-east-1");
    CHECK(l.url().find(kSecret) == std::string::npos);
}

TEST_CASE("s3 URL without prefix and trailing slashes normalise", "[location]") {
    CHECK(ok("s3://bkt").prefix == "");
    CHECK(ok("s3://bkt/").prefix == "");
    CHECK(ok("s3://bkt/a/b/").prefix == "a/b");
    CHECK(ok("s3://bkt//a//b//").prefix == "a/b");
    CHECK(ok("s3://bkt/a/b/").url() == ok("s3://bkt/a/b").url());
    CHECK(ok("s3://bkt/").url() == ok("s3://bkt").url());
    CHECK(ok("s3://bkt/a%20b").prefix == "a b");
    CHECK(ok("s3://bkt/a%20b").url() == ok("s3://bkt/a b").url());
}

TEST_CASE("query parameters override the environment", "[location]") {
    Environment e = creds();
    e.vars["AWS_REGION"] = "eu-west-1";
    e.vars["AWS_ENDPOINT_URL_S3"] = "http://10.0.0.1:9000";
    Location l = ok("s3://b1b/p", e);
    CHECK(l.region == "eu-west-1");
    CHECK(l.endpoint == "http://10.0.0.1:9000");

    l = ok("s3://b1b/p?endpoint=http%3A%2F%2F127.0.0.1%3A9999&region=us-west-2&force_path_style=true", e);
    CHECK(l.endpoint == "http://127.0.0.1:9999");
    CHECK(l.region == "us-west-2");
    CHECK(l.force_path_style);
    CHECK(l.url() == "s3://b1b/p?endpoint=http://127.0.0.1:9999&region=us-west-2&force_path_style=true");
    // The canonical URL parses back to the same location.
    CHECK(ok(l.url(), e).url() == l.url());
}

TEST_CASE("environment fallbacks for region, endpoint and credentials", "[location]") {
    Environment e;
    e.vars["LITESTREAM_ACCESS_KEY_ID"] = "LSKEY";
    e.vars["LITESTREAM_SECRET_ACCESS_KEY"] = kSecret;
    e.vars["AWS_DEFAULT_REGION"] = "ap-south-1";
    e.vars["AWS_ENDPOINT_URL"] = "HTTPS://Storage.Example.COM:443/";
    Location l = ok("s3://bkt/x", e);
    CHECK(l.access_key_id == "LSKEY");
    CHECK(l.secret_access_key == kSecret);
    CHECK(l.session_token.empty());
    CHECK(l.region == "ap-south-1");
    CHECK(l.endpoint == "https://storage.example.com");  // lower-cased, default port dropped

    e.vars["AWS_REGION"] = "eu-central-1";  // AWS_REGION wins over AWS_DEFAULT_REGION
    e.vars["AWS_ENDPOINT_URL_S3"] = "http://minio:9000";  // _S3 wins over the generic one
    l = ok("s3://bkt/x", e);
    CHECK(l.region == "eu-central-1");
    CHECK(l.endpoint == "http://minio:9000");

    e.vars.erase("AWS_ENDPOINT_URL_S3");
    e.vars.erase("AWS_ENDPOINT_URL");
    CHECK(ok("s3://bkt/x", e).endpoint == "https://s3.eu-central-1.amazonaws.com");

    e.vars["AWS_ACCESS_KEY_ID"] = "AWSKEY";  // an AWS pair wins over LITESTREAM's
    e.vars["AWS_SECRET_ACCESS_KEY"] = "other";
    CHECK(ok("s3://bkt/x", e).access_key_id == "AWSKEY");
}

TEST_CASE("file URLs", "[location]") {
    Location l = ok("file:///var/backups/db/");
    CHECK(l.scheme == Location::Scheme::File);
    CHECK(l.dir == "/var/backups/db");
    CHECK(l.url() == "file:///var/backups/db");
    CHECK(ok("file:///var//backups/db").url() == l.url());
    CHECK(ok("file://localhost/var/backups/db").url() == l.url());
    CHECK(ok("file:///a%20b").dir == "/a b");
    CHECK(ok("file:///").dir == "/");
    // No credentials needed for a directory.
    CHECK(ok("file:///tmp/x", Environment{}).dir == "/tmp/x");
}

TEST_CASE("bad replica URLs give one clear Config error", "[location]") {
    bad("", "empty");
    bad("ftp://host/dir", "unknown scheme 'ftp'");
    bad("/just/a/path", "missing scheme");
    bad("bucket/prefix", "missing scheme");
    bad("s3:/bucket/prefix", "malformed");
    bad("s3:bucket", "malformed");
    bad("s3://", "missing bucket");
    bad("s3:///prefix", "missing bucket");
    bad("s3://?region=us-east-1", "missing bucket");
    bad("s3://b!d/x", "invalid bucket name");
    bad("s3://bkt/x?colour=blue", "unknown query parameter 'colour'");
    bad("s3://bkt/x?region", "malformed query parameter 'region'");
    bad("s3://bkt/x?region=us-east-1&region=eu-west-1", "given twice");
    bad("s3://bkt/x?force_path_style=maybe", "force_path_style must be true or false");
    bad("s3://bkt/x?region=", "invalid region");
    bad("s3://bkt/x?endpoint=", "empty endpoint");
    bad("s3://bkt/x?endpoint=localhost:9000", "bad endpoint URL");
    bad("s3://bkt/x?endpoint=ftp://h", "scheme must be http or https");
    bad("s3://bkt/x?endpoint=http://h:99999", "port out of range");
    bad("s3://bkt/x?endpoint=http://h:abc", "port must be a number");
    bad("s3://bkt/x?endpoint=http://h/path", "must not have a path");
    bad("s3://bkt/x?endpoint=http://", "missing host");
    bad("s3://bkt/x#frag", "fragment");
    bad("s3://bkt/x%zz", "percent-encoding");
    bad("file://relative/dir", "relative file path");
    bad("file:relative", "relative file path");
    bad("file:/abs", "relative file path");
    bad("file:///a/../b", "'..'");
    bad("file:///tmp/x?y=1", "no query");
    bad("s3://bkt/x\ny", "replica URL 's3://bkt/x\\x0ay'");  // a pasted newline: still one line
    bad("s3://bkt/x\r", "\\x0d");
}

TEST_CASE("missing or partial credentials", "[location]") {
    bad("s3://bkt/x", "no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)", Environment{});
    Environment e;
    e.vars["AWS_ACCESS_KEY_ID"] = "AKID";
    bad("s3://bkt/x", "AWS_SECRET_ACCESS_KEY is not", e);
    Environment f;
    f.vars["AWS_SECRET_ACCESS_KEY"] = kSecret;
    bad("s3://bkt/x", "AWS_ACCESS_KEY_ID is not", f);
    Environment g;
    g.vars["LITESTREAM_SECRET_ACCESS_KEY"] = kSecret;
    bad("s3://bkt/x", "LITESTREAM_ACCESS_KEY_ID is not", g);
    // A value from a file with Windows line endings: named, never shown.
    Environment h = creds();
    h.vars["AWS_SECRET_ACCESS_KEY"] = std::string(kSecret) + "\r";
    bad("s3://bkt/x", "AWS_SECRET_ACCESS_KEY contains a carriage return", h);
    Environment i = creds();
    i.vars["AWS_ACCESS_KEY_ID"] = "AKID\r";
    bad("s3://bkt/x", "AWS_ACCESS_KEY_ID contains a carriage return", i);
    Environment j = creds();
    j.vars["AWS_SESSION_TOKEN"] = std::string(kToken) + "\n";
    bad("s3://bkt/x", "AWS_SESSION_TOKEN contains a control character", j);
    Environment k;
    k.vars["LITESTREAM_ACCESS_KEY_ID"] = "AKID";
    k.vars["LITESTREAM_SECRET_ACCESS_KEY"] = std::string(" ") + kSecret;
    bad("s3://bkt/x", "LITESTREAM_SECRET_ACCESS_KEY contains a space", k);
}

TEST_CASE("secrets in URLs or endpoints are never echoed", "[location]") {
    bad(std::string("s3://AKID:") + kSecret + "@bkt/x", "credentials must not be put in the URL");
    // AWS secret keys often hold '/': the user info still runs to the '@', and no piece of the
    // key shows in the message.
    bad(std::string("s3://AKID:wJalr/") + kSecret + "@bkt/x", "credentials must not be put in the URL");
    bad(std::string("s3://AKID:wJalr/") + kSecret + "@bkt/x", "s3://***@bkt/x");
    auto r = parse_location(std::string("s3://AKID:wJalr/") + kSecret + "@bkt/x", creds());
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().str().find("wJalr") == std::string::npos);
    // An '@' inside a prefix is not user info.
    auto ok = parse_location("s3://bkt/team@example/db", creds());
    REQUIRE(ok.ok());
    CHECK(ok->prefix == "team@example/db");
    CHECK(ok->url().find("s3://bkt/team%40example/db") != std::string::npos);
    Environment e = creds();
    e.vars["AWS_ENDPOINT_URL_S3"] = std::string("http://user:") + kSecret + "@host:9000";
    bad("s3://bkt/x", "AWS_ENDPOINT_URL_S3", e);
    bad(std::string("s3://bkt/x?endpoint=http://u:") + kSecret + "@h", "user info");
}

TEST_CASE("open_store dispatches on the scheme", "[location]") {
    auto f = open_store("file:///tmp/walship-location-test", Environment{});
    REQUIRE(f.ok());
    CHECK(f.value()->describe().find("/tmp/walship-location-test") != std::string::npos);
    auto s = open_store("s3://bkt/pre/?endpoint=http://127.0.0.1:1", creds());
    REQUIRE(s.ok());
    CHECK(s.value()->describe() == "s3://bkt/pre?endpoint=http://127.0.0.1:1&region=us-east-1");
}

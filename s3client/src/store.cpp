// open_store: turns a replica URL (or a parsed Location) into the Store that serves it —
// FileStore for file:///dir, S3Store for s3://bucket/prefix. Timeout and retry knobs for S3 come
// from WALSHIP_S3_TIMEOUT_MS / WALSHIP_S3_ATTEMPTS when set (ClientOptions::from_env).
#include "walship/s3/client.h"
#include "walship/s3/store.h"

namespace walship::s3 {

static Result<std::unique_ptr<Store>> open_with(const Location& loc, const ClientOptions& opt) {
    if (loc.scheme == Location::Scheme::File) {
        if (loc.dir.empty() || loc.dir[0] != '/')
            return make_error(ErrorKind::Config, "replica directory '" + loc.dir + "' is not an absolute path");
        return make_file_store(loc.dir);
    }
    if (loc.bucket.empty()) return make_error(ErrorKind::Config, "replica location has no bucket");
    if (loc.access_key_id.empty() || loc.secret_access_key.empty())
        return make_error(ErrorKind::Config, "replica " + loc.url() + ": no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)");
    return make_s3_store(loc, opt);
}

Result<std::unique_ptr<Store>> open_store(const std::string& url, const Environment& env) {
    auto loc = parse_location(url, env);
    if (!loc.ok()) return loc.error();
    return open_with(loc.value(), ClientOptions::from_env(env));
}

Result<std::unique_ptr<Store>> open_store(const Location& loc) {
    return open_with(loc, ClientOptions::from_env(Environment::from_process()));
}

}  // namespace walship::s3

// Test support: the local S3-compatible server of this test run, fresh buckets, temp dirs.
#pragma once

#include <string>

#include "walship/s3/location.h"

namespace walship::test {

// "http://127.0.0.1:PORT" of the server named by WALSHIP_TEST_ENDPOINT_FILE (the moto or s3rver
// ctest fixture; an error when that file is empty or missing), else of the moto fixture, or, when
// a test binary runs on its own, of a moto started here and stopped at exit.
std::string endpoint();
// "s3rver" when WALSHIP_TEST_ENDPOINT_FILE names s3rver's endpoint file (tests/s3rver.cmake),
// else "moto". Tests leave out, with a warning that says why, what s3rver does not support.
std::string server_name();
// Creates a new, empty bucket with a unique name and returns the name.
std::string new_bucket();
// "s3://<new bucket>/<prefix>?endpoint=…&region=us-east-1" on the test server.
std::string new_s3_url(const std::string& prefix = "db");
// Environment with dummy credentials (moto and s3rver do not check signatures; support/s3rver.js
// makes s3rver accept the key id).
s3::Environment env();
// Sets those dummy credentials in the process environment (for code that reads getenv).
void set_process_env();
// A fresh empty directory under /tmp, removed at exit.
std::string temp_dir();
// Runs a shell command, returns its exit status.
int sh(const std::string& cmd);
// Source and build directories (from the ctest environment, or guessed).
std::string source_dir();
std::string binary_dir();

}  // namespace walship::test

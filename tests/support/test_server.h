// Test support: the local S3-compatible server of this test run, fresh buckets, temp dirs.
#pragma once

#include <string>

#include "walship/s3/location.h"

namespace walship::test {

// "http://127.0.0.1:PORT" of the moto server started by the ctest fixture (or, when a test binary
// runs on its own, one started here and stopped at exit).
std::string endpoint();
// Creates a new, empty bucket with a unique name and returns the name.
std::string new_bucket();
// "s3://<new bucket>/<prefix>?endpoint=…&region=us-east-1" on the test server.
std::string new_s3_url(const std::string& prefix = "db");
// Environment with dummy credentials (the test servers do not check signatures).
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

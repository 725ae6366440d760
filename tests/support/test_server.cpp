#include "support/test_server.h"

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <stdexcept>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace walship::test {
namespace {

std::string read_file(const std::string& path) {
    std::ifstream f(path);
    std::string s;
    std::getline(f, s);
    return s;
}

std::string random_hex(int n) {
    static std::mt19937_64 rng(std::random_device{}() ^ (uint64_t)getpid() << 20);
    static const char* hex = "0123456789abcdef";
    std::string s;
    for (int i = 0; i < n; i++) s += hex[rng() % 16];
    return s;
}

std::vector<std::string>& cleanup_dirs() {
    static auto* dirs = new std::vector<std::string>;  // never destroyed: used by Cleanup at exit
    return *dirs;
}

struct OwnServer {
    std::string dir;
    ~OwnServer() {
        if (!dir.empty()) sh(source_dir() + "/tests/support/s3server.sh stop " + dir + " >/dev/null 2>&1");
    }
};

struct Cleanup {
    ~Cleanup() {
        if (getenv("WALSHIP_KEEP_TEMP")) return;
        std::error_code ec;
        for (auto& d : cleanup_dirs()) fs::remove_all(d, ec);
    }
} cleanup;

}  // namespace

int sh(const std::string& cmd) {
    int rc = std::system(cmd.c_str());
    if (rc == -1) return -1;
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

std::string source_dir() {
    if (const char* s = getenv("WALSHIP_SOURCE_DIR")) return s;
#ifdef WALSHIP_DEFAULT_SOURCE_DIR
    return WALSHIP_DEFAULT_SOURCE_DIR;
#else
    return fs::path(__FILE__).parent_path().parent_path().parent_path().string();
#endif
}

std::string binary_dir() {
    if (const char* s = getenv("WALSHIP_BINARY_DIR")) return s;
#ifdef WALSHIP_DEFAULT_BINARY_DIR
    return WALSHIP_DEFAULT_BINARY_DIR;
#else
    return fs::current_path().string();
#endif
}

std::string endpoint() {
    static std::mutex mu;
    static std::string ep;
    static OwnServer own;
    std::lock_guard<std::mutex> lock(mu);
    if (!ep.empty()) return ep;
    if (const char* f = getenv("WALSHIP_TEST_ENDPOINT_FILE")) {
        // Named explicitly (a ctest fixture's server): never fall back to another server.
        ep = read_file(f);
        if (ep.empty()) throw std::runtime_error(std::string("no endpoint in WALSHIP_TEST_ENDPOINT_FILE ") + f);
        return ep;
    }
#ifdef WALSHIP_DEFAULT_ENDPOINT_FILE
    if (ep.empty()) ep = read_file(WALSHIP_DEFAULT_ENDPOINT_FILE);
#endif
    if (ep.empty()) {
        own.dir = "/tmp/walship-test-moto-" + std::to_string(getpid());
        if (sh(source_dir() + "/tests/support/s3server.sh start " + own.dir + " >/dev/null") != 0)
            throw std::runtime_error("could not start the local S3 server (python3 -m moto.server)");
        ep = read_file(own.dir + "/moto.endpoint");
    }
    return ep;
}

std::string server_name() {
    const char* f = getenv("WALSHIP_TEST_ENDPOINT_FILE");
    return f && fs::path(f).filename() == "s3rver.endpoint" ? "s3rver" : "moto";
}

std::string new_bucket() {
    std::string name = "t-" + random_hex(16);
    if (sh("curl -sf -X PUT " + endpoint() + "/" + name + " -o /dev/null") != 0)
        throw std::runtime_error("could not create bucket " + name);
    return name;
}

std::string new_s3_url(const std::string& prefix) {
    return "s3://" + new_bucket() + "/" + prefix + "?endpoint=" + endpoint() + "&region=us-east-1";
}

s3::Environment env() {
    s3::Environment e;
    e.vars["AWS_ACCESS_KEY_ID"] = "AKIDTESTWALSHIP";
    e.vars["AWS_SECRET_ACCESS_KEY"] = "walship-test-secret-key";
    e.vars["AWS_REGION"] = "us-east-1";
    return e;
}

void set_process_env() {
    for (auto& [k, v] : env().vars) setenv(k.c_str(), v.c_str(), 1);
}

std::string temp_dir() {
    std::string d = "/tmp/walship-test-" + random_hex(12);
    fs::create_directories(d);
    cleanup_dirs().push_back(d);
    return d;
}

}  // namespace walship::test

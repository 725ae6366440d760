#include "support/proxy.h"

#include <signal.h>

#include <chrono>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "support/test_server.h"

namespace walship::test {

Proxy& Proxy::get() {
    static Proxy p;
    return p;
}

void Proxy::fault(const std::string& mode, int count) {
    if (sh("curl -sf -o /dev/null -X POST 'http://127.0.0.1:" + port_ + "/__fault?mode=" + mode + "&count=" + std::to_string(count) + "'") != 0)
        throw std::runtime_error("fault proxy: could not queue " + mode);
}

std::string Proxy::new_url() const { return "s3://" + new_bucket() + "/db?endpoint=" + endpoint() + "&region=us-east-1"; }

void Proxy::reset() {
    if (sh("curl -sf -o /dev/null -X POST http://127.0.0.1:" + port_ + "/__reset") != 0) throw std::runtime_error("fault proxy: reset failed");
}

int Proxy::requests(std::vector<std::string>* lines) {
    std::string file = dir_ + "/stats";
    if (sh("curl -sf -o " + file + " http://127.0.0.1:" + port_ + "/__stats") != 0) throw std::runtime_error("fault proxy: no stats");
    std::ifstream f(file);
    std::string word;
    int n = -1;
    f >> word >> n;
    std::string line;
    std::getline(f, line);
    while (lines && std::getline(f, line)) lines->push_back(line);
    return n;
}

Proxy::~Proxy() {
    if (pid_ > 0) kill(pid_, SIGTERM);
}

Proxy::Proxy() {
    dir_ = temp_dir();
    std::string script = source_dir() + "/tests/support/faultproxy.py";
    std::string cmd = "python3 " + script + " --upstream " + walship::test::endpoint() + " --port-file " + dir_ + "/port >" + dir_ + "/log 2>&1 & echo $! >" + dir_ + "/pid";
    if (sh(cmd) != 0) throw std::runtime_error("could not start the fault proxy");
    for (int i = 0; i < 100 && port_.empty(); i++) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        std::ifstream f(dir_ + "/port");
        std::getline(f, port_);
    }
    std::ifstream p(dir_ + "/pid");
    p >> pid_;
    if (port_.empty()) throw std::runtime_error("the fault proxy did not start");
}

}  // namespace walship::test

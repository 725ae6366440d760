// The fault-injection proxy (tests/support/faultproxy.py) in front of the test S3 server, started
// on first use by a test process and stopped at exit.
#pragma once

#include <string>
#include <vector>

#include <sys/types.h>

namespace walship::test {

class Proxy {
public:
    static Proxy& get();
    std::string endpoint() const { return "http://127.0.0.1:" + port_; }
    std::string port() const { return port_; }
    // Queues MODE (500, 503, 403, 404, 400, stall, slow, delay, drop, reset) for the next `count` requests.
    void fault(const std::string& mode, int count);
    void reset();  // clears queued faults and counters
    // Requests forwarded or faulted since the last reset, and their log lines.
    int requests(std::vector<std::string>* lines = nullptr);
    // A replica URL in a new bucket whose requests go through the proxy.
    std::string new_url() const;
    ~Proxy();

private:
    Proxy();
    std::string dir_, port_;
    pid_t pid_ = 0;
};

}  // namespace walship::test

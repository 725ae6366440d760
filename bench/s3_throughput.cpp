// walship-s3bench: PUT and GET throughput of the S3 client for one local file.
//
//   walship-s3bench s3://bucket/prefix?endpoint=… FILE ITERATIONS
//
// Uploads FILE ITERATIONS times with put_file (multipart above 16 MB), then downloads each copy
// with get_stream into a file (as `aws s3 cp` does), and prints one line:
//   put_mbps=… get_mbps=… size=… iterations=… requests=…
// Credentials, region and endpoint come from the URL and the environment (docs/S3CLIENT.md).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "walship/s3/store.h"

using namespace walship::s3;

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s s3://bucket/prefix?endpoint=... FILE ITERATIONS\n", argv[0]);
        return 2;
    }
    auto store = open_store(argv[1]);
    if (!store.ok()) {
        std::fprintf(stderr, "%s\n", store.error().str().c_str());
        return 1;
    }
    std::string file = argv[2];
    int n = std::atoi(argv[3]);
    struct stat sb {};
    if (stat(file.c_str(), &sb) != 0 || n < 1) {
        std::fprintf(stderr, "cannot read %s or bad iteration count\n", file.c_str());
        return 2;
    }
    double mb = (double)sb.st_size / (1 << 20);
    auto& s = *store.value();
    using clock = std::chrono::steady_clock;
    auto secs = [](clock::time_point t0) { return std::chrono::duration<double>(clock::now() - t0).count(); };

    auto t0 = clock::now();
    for (int i = 0; i < n; i++) {
        Status st = s.put_file("bench/" + std::to_string(i), file);
        if (!st.ok()) return std::fprintf(stderr, "%s\n", st.str().c_str()), 1;
    }
    double put_s = secs(t0);

    std::string out = file + ".download";
    t0 = clock::now();
    for (int i = 0; i < n; i++) {
        int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) return std::perror(out.c_str()), 1;
        Status st = s.get_stream("bench/" + std::to_string(i), [&](const char* d, size_t len) {
            return ::write(fd, d, len) == (ssize_t)len;
        });
        ::close(fd);
        if (!st.ok()) return std::fprintf(stderr, "%s\n", st.str().c_str()), 1;
    }
    double get_s = secs(t0);
    ::unlink(out.c_str());

    RequestCounts c = s.counts();
    std::printf("put_mbps=%.1f get_mbps=%.1f size=%lld iterations=%d requests=%llu\n", mb * n / put_s, mb * n / get_s,
                (long long)sb.st_size, n, (unsigned long long)(c.put + c.get));
    return 0;
}

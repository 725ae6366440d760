// The spill file (see spill.h).
#include "spill.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace walship {

namespace {

constexpr char kSpillMagic[8] = {'W', 'S', 'H', 'P', 'S', 'P', 'L', '1'};

void put_be(unsigned char* p, uint32_t v) {
    p[0] = uint8_t(v >> 24), p[1] = uint8_t(v >> 16), p[2] = uint8_t(v >> 8), p[3] = uint8_t(v);
}
uint32_t get_be(const unsigned char* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }

bool pread_full(int fd, void* buf, size_t len, off_t off) {
    char* p = static_cast<char*>(buf);
    while (len > 0) {
        ssize_t n = ::pread(fd, p, len, off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        p += n, len -= size_t(n), off += n;
    }
    return true;
}

bool pwrite_full(int fd, const void* buf, size_t len, off_t off) {
    const char* p = static_cast<const char*>(buf);
    while (len > 0) {
        ssize_t n = ::pwrite(fd, p, len, off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        p += n, len -= size_t(n), off += n;
    }
    return true;
}

// Copies len bytes between files, in the kernel when it can.
bool copy_range(int in, off_t in_off, int out, off_t out_off, uint64_t len) {
    while (len > 0) {
        ssize_t n = ::copy_file_range(in, &in_off, out, &out_off, len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        len -= uint64_t(n);
    }
    if (len == 0) return true;
    std::vector<char> buf(1 << 20);  // copy_file_range is not available here
    while (len > 0) {
        size_t n = size_t(std::min<uint64_t>(len, buf.size()));
        if (!pread_full(in, buf.data(), n, in_off) || !pwrite_full(out, buf.data(), n, out_off)) return false;
        in_off += off_t(n), out_off += off_t(n), len -= n;
    }
    return true;
}

}  // namespace

std::string spill_path(const std::string& db_path) { return db_path + "-walship-spill"; }

bool spill_append(int spill_fd, const std::string& wal_path, SideState* side, uint32_t mx_frame, uint32_t salt1,
                  uint32_t salt2, uint32_t first, uint64_t cap, std::string* error) {
    int wal = ::open(wal_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (wal < 0) {
        *error = "cannot open " + wal_path + ": " + strerror(errno);
        return false;
    }
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{wal};
    unsigned char head[kSpillRecordHeader] = {};
    WalHeader wh;
    if (!pread_full(wal, head + 32, kWalHeaderSize, 0) || !parse_wal_header(head + 32, &wh) || wh.salt1 != salt1 || wh.salt2 != salt2) {
        *error = "the header of " + wal_path + " does not match the wal-index";
        return false;
    }
    const uint64_t fsz = kWalFrameHeaderSize + uint64_t(wh.page_size);
    const uint32_t count = mx_frame - first + 1;
    const uint64_t at = side->spill_len.load(), size = kSpillRecordHeader + count * fsz;
    if (at + size > cap) {
        *error = "the spill would pass max_wal_size (" + std::to_string(at + size) + " bytes)";
        return false;
    }
    // The chain before `first`: the WAL header's checksum, or that of frame first-1.
    unsigned char chain[8];
    if (!pread_full(wal, chain, 8, first == 1 ? 24 : off_t(kWalHeaderSize + (first - 2) * fsz + 16))) {
        *error = "cannot read " + wal_path + ": " + strerror(errno);
        return false;
    }
    memcpy(head, kSpillMagic, 8);
    put_be(head + 8, wh.page_size);
    put_be(head + 12, first);
    put_be(head + 16, count);
    memcpy(head + 20, chain, 8);
    if (!pwrite_full(spill_fd, head, sizeof head, off_t(at)) ||
        !copy_range(wal, off_t(kWalHeaderSize + (first - 1) * fsz), spill_fd, off_t(at + kSpillRecordHeader), count * fsz)) {
        *error = "cannot write the spill file: " + std::string(strerror(errno));
        return false;
    }
    side->spill_len = at + size;
    side->spilled = pack_position(salt2, mx_frame);
    return true;
}

bool read_spill_record(int fd, uint64_t offset, uint64_t end, SpillRecord* r) {
    unsigned char head[kSpillRecordHeader];
    if (offset + sizeof head > end || !pread_full(fd, head, sizeof head, off_t(offset))) return false;
    if (memcmp(head, kSpillMagic, 8) != 0 || !parse_wal_header(head + 32, &r->wal)) return false;
    uint32_t page_size = get_be(head + 8), count = get_be(head + 16);
    r->first = get_be(head + 12);
    if (page_size != r->wal.page_size || r->first == 0 || count == 0 || uint64_t(r->first) + count - 1 > UINT32_MAX) return false;
    r->last = r->first + count - 1;
    r->chain1 = get_be(head + 20);
    r->chain2 = get_be(head + 24);
    memcpy(r->wal_header, head + 32, kWalHeaderSize);
    r->offset = offset;
    r->size = kSpillRecordHeader + uint64_t(count) * (kWalFrameHeaderSize + page_size);
    return offset + r->size <= end;
}

}  // namespace walship

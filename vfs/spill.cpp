// The spill file (see spill.h).
#include "spill.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <vector>

#include "fileio.h"
#include "format.h"

namespace walship {

namespace {

constexpr char kSpillMagic[8] = {'W', 'S', 'H', 'P', 'S', 'P', 'L', '2'};
// wal-index layout (wal.c): a 136-byte header, then the page number of each frame; 4062 in the
// first 32 KiB region, 4096 in each later one (each region ends with its hash table).
constexpr uint32_t kShmHeaderBytes = 136, kFirstRegionFrames = 4096 - kShmHeaderBytes / 4, kRegionFrames = 4096;

void put_be(unsigned char* p, uint32_t v) {
    p[0] = uint8_t(v >> 24), p[1] = uint8_t(v >> 16), p[2] = uint8_t(v >> 8), p[3] = uint8_t(v);
}

// The spill record's body checksum (SQLite's WAL checksum, little-endian, over 8-byte blocks, the
// last one zero-padded; FORMAT.md), fed in pieces of any size.
class BodyChecksum {
public:
    void update(const char* data, size_t n) {
        const unsigned char* p = reinterpret_cast<const unsigned char*>(data);
        if (carry_len_) {
            size_t take = std::min(n, 8 - carry_len_);
            memcpy(carry_ + carry_len_, p, take);
            carry_len_ += take, p += take, n -= take;
            if (carry_len_ < 8) return;
            wal_checksum(false, carry_, 8, &s1_, &s2_);
            carry_len_ = 0;
        }
        size_t whole = n & ~size_t(7);
        wal_checksum(false, p, whole, &s1_, &s2_);
        memcpy(carry_, p + whole, n - whole);
        carry_len_ = n - whole;
    }
    void finish(uint32_t* s1, uint32_t* s2) {
        unsigned char tail[8] = {};
        memcpy(tail, carry_, carry_len_);
        wal_checksum(false, tail, 8, &s1_, &s2_);
        *s1 = s1_, *s2 = s2_;
    }

private:
    uint32_t s1_ = 0, s2_ = 0;
    unsigned char carry_[8];
    size_t carry_len_ = 0;
};

// Page numbers of WAL frames from the wal-index, each 32 KiB region mapped once per use.
class FramePages {
  public:
    explicit FramePages(const ShmRegion& region) : region_(region) {}
    // The page number of WAL frame `frame` (1-based), or 0.
    uint32_t operator()(uint32_t frame) {
        int r = frame <= kFirstRegionFrames ? 0 : int((frame - kFirstRegionFrames - 1) / kRegionFrames) + 1;
        if (size_t(r) >= bases_.size()) bases_.resize(size_t(r) + 1, nullptr);
        if (!bases_[size_t(r)]) bases_[size_t(r)] = region_(r);
        const volatile uint32_t* pgno = static_cast<const volatile uint32_t*>(bases_[size_t(r)]);
        if (!pgno) return 0;
        if (r == 0) return pgno[kShmHeaderBytes / 4 + frame - 1];
        return pgno[frame - kFirstRegionFrames - uint32_t(r - 1) * kRegionFrames - 1];
    }

  private:
    const ShmRegion& region_;
    std::vector<const volatile void*> bases_;
};

}  // namespace

std::string spill_path(const std::string& db_path) { return db_path + "-walship-spill"; }

bool spill_append(int spill_fd, const WalRead& wal, const ShmRegion& region, SideState* side, const ShmHeader& h,
                  uint32_t first, uint64_t cap, std::string* buf, std::string* error) {
    unsigned char wh_bytes[kWalHeaderSize];
    WalHeader wh;
    if (!wal(wh_bytes, sizeof wh_bytes, 0) || !parse_wal_header(wh_bytes, &wh) || wh.salt1 != h.salt1 || wh.salt2 != h.salt2) {
        *error = "the WAL header does not match the wal-index";
        return false;
    }
    if (first == 0 || first > h.mx_frame) {
        *error = "no frames to spill (" + std::to_string(first) + ".." + std::to_string(h.mx_frame) + ")";
        return false;
    }
    const uint64_t fsz = kWalFrameHeaderSize + uint64_t(wh.page_size);
    auto frame_off = [&](uint32_t f) { return kWalHeaderSize + (f - 1) * fsz; };
    // The last frame of each page (an open-addressing table of page << 32 | frame, sorted by page
    // afterwards), then the commit at mx_frame: its size and checksum chain.
    FramePages frame_page(region);
    size_t slots = 16;
    while (slots < 2 * size_t(h.mx_frame - first + 1)) slots *= 2;
    std::vector<uint64_t> latest(slots, 0);
    for (uint32_t f = first; f <= h.mx_frame; f++) {
        uint32_t pg = frame_page(f);
        if (pg == 0) {
            *error = "the wal-index has no page for frame " + std::to_string(f);
            return false;
        }
        size_t i = (pg * 0x9e3779b1u) & (slots - 1);
        while (latest[i] && uint32_t(latest[i] >> 32) != pg) i = (i + 1) & (slots - 1);
        latest[i] = uint64_t(pg) << 32 | f;
    }
    latest.erase(std::remove(latest.begin(), latest.end(), uint64_t(0)), latest.end());
    std::sort(latest.begin(), latest.end());
    unsigned char last_hdr[kWalFrameHeaderSize], chain_in[8];
    if (!wal(last_hdr, sizeof last_hdr, frame_off(h.mx_frame)) || !wal(chain_in, 8, first == 1 ? 24 : frame_off(first - 1) + 16)) {
        *error = "cannot read the WAL";
        return false;
    }
    WalFrameHeader commit = parse_frame_header(last_hdr);
    if (commit.commit_size == 0 || commit.salt1 != h.salt1 || commit.salt2 != h.salt2 || commit.pgno != frame_page(h.mx_frame)) {
        *error = "WAL frame " + std::to_string(h.mx_frame) + " is not the commit the wal-index shows";
        return false;
    }
    const size_t step = 4 + size_t(wh.page_size);
    uint32_t count = 0;  // pages past the commit's database size are cut off (it shrank)
    for (uint64_t e : latest) count += uint32_t(e >> 32) <= commit.commit_size ? 1 : 0;
    const uint64_t at = side->spill_len.load(), len = uint64_t(count) * step, size = kSpillRecordHeader + len;
    if (at + size > cap) {
        *error = "the spill would pass max_wal_size (" + std::to_string(at + size) + " bytes)";
        return false;
    }
    // The body goes to the file in pieces of at most about 1 MiB through the caller's buffer, which
    // keeps its size: no allocation, zero-fill or page faults on the application's write path
    // after the first records, and never memory the size of a large transaction. The buffer grows
    // only as far as a record needs (a tight insert loop spills a handful of pages: zero-filling
    // 1 MiB for them was 1.3% of such a writer's instructions). Its checksum is taken over 8-byte
    // blocks as it goes (BodyChecksum).
    const size_t per = std::min<size_t>(std::max<size_t>(1, (1u << 20) / step), std::max<uint32_t>(count, 1));
    if (buf->size() < per * step) buf->resize(per * step);
    char* body = &(*buf)[0];
    size_t fill = 0;
    uint64_t written = 0;
    BodyChecksum sum;
    auto flush = [&]() -> bool {
        sum.update(body, fill);
        if (!pwrite_all(spill_fd, body, fill, off_t(at + kSpillRecordHeader + written))) {
            *error = "cannot write the spill file: " + std::string(strerror(errno));
            return false;
        }
        written += fill;
        fill = 0;
        return true;
    };
    for (uint64_t e : latest) {
        const uint32_t pg = uint32_t(e >> 32), f = uint32_t(e);
        if (pg > commit.commit_size) continue;
        put_be(reinterpret_cast<unsigned char*>(body + fill), pg);
        if (!wal(body + fill + 4, wh.page_size, frame_off(f) + kWalFrameHeaderSize)) {
            *error = "cannot read the WAL";
            return false;
        }
        fill += step;
        if (fill + step > per * step && !flush()) return false;
    }
    if (fill && !flush()) return false;
    uint32_t s1, s2;
    sum.finish(&s1, &s2);
    unsigned char head[kSpillRecordHeader] = {};
    memcpy(head, kSpillMagic, 8);
    put_be(head + 8, wh.page_size);
    put_be(head + 12, first);
    put_be(head + 16, h.mx_frame);
    memcpy(head + 20, chain_in, 8);
    memcpy(head + 28, last_hdr + 16, 8);
    put_be(head + 36, commit.commit_size);
    put_be(head + 40, count);
    put_be(head + 44, s1);
    put_be(head + 48, s2);
    put_be(head + 52, h.salt1);
    put_be(head + 56, h.salt2);
    put_be(head + 60, wh.big_endian_cksum() ? 1 : 0);
    if (!pwrite_all(spill_fd, head, sizeof head, off_t(at))) {
        *error = "cannot write the spill file: " + std::string(strerror(errno));
        return false;
    }
    side->spill_len = at + size;
    side->spilled = pack_position(h.salt2, h.mx_frame);
    return true;
}

bool read_spill_record(int fd, uint64_t offset, uint64_t end, SpillRecord* r) {
    unsigned char head[kSpillRecordHeader];
    if (offset + sizeof head > end || !pread_all(fd, head, sizeof head, off_t(offset))) return false;
    if (memcmp(head, kSpillMagic, 8) != 0) return false;
    r->page_size = get_u32be(head + 8);
    r->first = get_u32be(head + 12);
    r->last = get_u32be(head + 16);
    r->chain_in1 = get_u32be(head + 20), r->chain_in2 = get_u32be(head + 24);
    r->chain_out1 = get_u32be(head + 28), r->chain_out2 = get_u32be(head + 32);
    r->db_pages = get_u32be(head + 36);
    r->count = get_u32be(head + 40);
    r->sum1 = get_u32be(head + 44), r->sum2 = get_u32be(head + 48);
    r->salt1 = get_u32be(head + 52), r->salt2 = get_u32be(head + 56);
    r->big_endian = (get_u32be(head + 60) & 1) != 0;
    bool ps_ok = r->page_size >= 512 && r->page_size <= 65536 && (r->page_size & (r->page_size - 1)) == 0;
    if (!ps_ok || r->first == 0 || r->last < r->first || r->count == 0 || r->db_pages == 0) return false;
    r->offset = offset;
    r->size = kSpillRecordHeader + uint64_t(r->count) * (4 + r->page_size);
    return offset + r->size <= end;
}

bool for_each_spill_page(int fd, const SpillRecord& r, const std::function<bool(uint32_t pgno, const char* page)>& fn) {
    // In pieces of about 1 MiB: never the whole body in memory.
    const size_t step = 4 + r.page_size;
    const uint64_t len = r.size - kSpillRecordHeader;
    const size_t piece = std::max<size_t>(1, (1u << 20) / step) * step;
    std::string buf;
    BodyChecksum sum;
    uint32_t last = 0;
    for (uint64_t at = 0; at < len;) {
        size_t n = size_t(std::min<uint64_t>(piece, len - at));
        buf.resize(n);
        if (n % step || !pread_all(fd, &buf[0], n, off_t(r.offset + kSpillRecordHeader + at))) return false;
        sum.update(buf.data(), n);
        for (size_t k = 0; k < n; k += step) {
            uint32_t pg = get_u32be(reinterpret_cast<const unsigned char*>(&buf[k]));
            if (pg <= last || pg > r.db_pages) return false;  // spill_append writes each page once, in order
            last = pg;
            if (!fn(pg, &buf[k + 4])) return true;
        }
        at += n;
    }
    uint32_t s1, s2;
    sum.finish(&s1, &s2);
    return s1 == r.sum1 && s2 == r.sum2;
}

bool read_spill_pages(int fd, const SpillRecord& r, std::vector<std::pair<uint32_t, std::string>>* pages) {
    pages->clear();
    return for_each_spill_page(fd, r, [&](uint32_t pg, const char* page) {
        pages->emplace_back(pg, std::string(page, r.page_size));
        return true;
    });
}

}  // namespace walship

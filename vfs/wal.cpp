// WAL and wal-index parsing (see wal.h).
#include "wal.h"

#include <atomic>
#include <cstdio>
#include <cstring>

#include "format.h"

namespace walship {

template <uint32_t (*Get)(const unsigned char*)>
static void checksum_words(const unsigned char* data, size_t len, uint32_t* s1, uint32_t* s2) {
    uint32_t a = *s1, b = *s2;
    for (size_t i = 0; i + 8 <= len; i += 8) {
        a += Get(data + i) + b;
        b += Get(data + i + 4) + a;
    }
    *s1 = a;
    *s2 = b;
}

void wal_checksum(bool big_endian, const unsigned char* data, size_t len, uint32_t* s1, uint32_t* s2) {
    if (big_endian) checksum_words<get_u32be>(data, len, s1, s2);
    else checksum_words<get_u32le>(data, len, s1, s2);
}

bool parse_wal_header(const unsigned char* p, WalHeader* h) {
    h->magic = get_u32be(p);
    h->version = get_u32be(p + 4);
    h->page_size = get_u32be(p + 8);
    h->ckpt_seq = get_u32be(p + 12);
    h->salt1 = get_u32be(p + 16);
    h->salt2 = get_u32be(p + 20);
    h->cksum1 = get_u32be(p + 24);
    h->cksum2 = get_u32be(p + 28);
    if (h->magic != kWalMagicLE && h->magic != kWalMagicBE) return false;
    if (h->version != 3007000) return false;
    if (h->page_size < 512 || h->page_size > 65536 || (h->page_size & (h->page_size - 1))) return false;
    uint32_t s1 = 0, s2 = 0;
    wal_checksum(h->big_endian_cksum(), p, 24, &s1, &s2);
    return s1 == h->cksum1 && s2 == h->cksum2;
}

WalFrameHeader parse_frame_header(const unsigned char* p) {
    WalFrameHeader f;
    f.pgno = get_u32be(p);
    f.commit_size = get_u32be(p + 4);
    f.salt1 = get_u32be(p + 8);
    f.salt2 = get_u32be(p + 12);
    f.cksum1 = get_u32be(p + 16);
    f.cksum2 = get_u32be(p + 20);
    return f;
}

bool read_shm_header(const volatile void* region0, ShmHeader* h) {
    // Two 48-byte copies; SQLite writes copy 2 then copy 1, and readers compare them.
    unsigned char a[48], b[48];
    const volatile unsigned char* p = static_cast<const volatile unsigned char*>(region0);
    for (int i = 0; i < 48; i++) a[i] = p[i];
    std::atomic_thread_fence(std::memory_order_acquire);
    for (int i = 0; i < 48; i++) b[i] = p[48 + i];
    if (memcmp(a, b, 48) != 0) return false;
    uint32_t v;
    memcpy(&v, a, 4); h->version = v;
    memcpy(&v, a + 8, 4); h->change = v;
    h->is_init = a[12] != 0;
    h->big_endian_cksum = a[13] != 0;
    uint16_t sz;
    memcpy(&sz, a + 14, 2);
    h->page_size = sz == 1 ? 65536 : sz;
    memcpy(&v, a + 16, 4); h->mx_frame = v;
    memcpy(&v, a + 20, 4); h->n_page = v;
    h->salt1 = get_u32be(a + 32);
    h->salt2 = get_u32be(a + 36);
    uint32_t nb;
    const volatile unsigned char* ck = p + 96;
    unsigned char c[4] = {ck[0], ck[1], ck[2], ck[3]};
    memcpy(&nb, c, 4);
    h->n_backfill = nb;
    return h->is_init;
}

bool read_shm_position(const volatile void* region0, uint32_t* salt2, uint32_t* mx_frame) {
    const volatile uint32_t* w = static_cast<const volatile uint32_t*>(region0);
    // Words of the two 48-byte copies: isInit (byte 12, in word 3), mxFrame (word 4), aSalt[1] (word 9).
    const uint32_t init1 = w[3], mx1 = w[4], s1 = w[9];
    std::atomic_thread_fence(std::memory_order_acquire);
    const uint32_t init2 = w[12 + 3], mx2 = w[12 + 4], s2 = w[12 + 9];
    unsigned char init[4], salt[4];
    memcpy(init, &init1, 4);
    memcpy(salt, &s1, 4);
    if (init1 != init2 || mx1 != mx2 || s1 != s2 || init[0] == 0) return false;
    *mx_frame = mx1;
    *salt2 = get_u32be(salt);
    return true;
}

std::string hex32(uint32_t v) {
    char buf[9];
    snprintf(buf, sizeof buf, "%08x", v);
    return buf;
}

}  // namespace walship

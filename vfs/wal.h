// Reading SQLite's WAL and wal-index (-shm) formats: the facts the shipper depends on
// (SQLite's walformat.html and src/wal.c). Pure parsing; callers do the I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace walship {

constexpr uint32_t kWalMagicLE = 0x377f0682, kWalMagicBE = 0x377f0683;
constexpr size_t kWalHeaderSize = 32, kWalFrameHeaderSize = 24;

// xShmLock slots (wal.c): 0 write, 1 checkpoint, 2 recover, 3.. readers 0..4.
constexpr int kShmWriteLock = 0, kShmCkptLock = 1, kShmReadLock0 = 3, kShmNumReaders = 5;

struct WalHeader {
    uint32_t magic = 0, version = 0, page_size = 0, ckpt_seq = 0;
    uint32_t salt1 = 0, salt2 = 0, cksum1 = 0, cksum2 = 0;
    bool big_endian_cksum() const { return magic == kWalMagicBE; }
};

// Parses and verifies a 32-byte WAL header; false if it is not a valid header.
bool parse_wal_header(const unsigned char* p, WalHeader* h);

// SQLite's WAL checksum (walChecksumBytes): continues (s1, s2) over len bytes (len % 8 == 0).
void wal_checksum(bool big_endian, const unsigned char* data, size_t len, uint32_t* s1, uint32_t* s2);

struct WalFrameHeader {
    uint32_t pgno = 0, commit_size = 0, salt1 = 0, salt2 = 0, cksum1 = 0, cksum2 = 0;
};
WalFrameHeader parse_frame_header(const unsigned char* p);

// The wal-index header (first copy of two at the start of -shm region 0).
struct ShmHeader {
    uint32_t version = 0, change = 0, mx_frame = 0, n_page = 0, page_size = 0;
    bool is_init = false, big_endian_cksum = false;
    uint32_t salt1 = 0, salt2 = 0;  // as in the WAL header (read big-endian)
    uint32_t n_backfill = 0;
};

// Reads the header the way SQLite does: both copies must match and be initialised. Returns false
// when they differ (a writer is updating it: try again) or it is not initialised.
bool read_shm_header(const volatile void* region0, ShmHeader* h);
// The writer's position only (salt-2 and mxFrame, both copies compared): for the commit path,
// where the caller holds the WAL write lock and so no one else changes the header.
bool read_shm_position(const volatile void* region0, uint32_t* salt2, uint32_t* mx_frame);

std::string hex32(uint32_t v);

}  // namespace walship

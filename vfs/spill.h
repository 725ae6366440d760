// The "<db>-walship-spill" file: frames of a WAL that SQLite wanted to reset before the shipper had
// them in the bucket. The connection that resets the WAL copies the unshipped frames here first
// (it holds the WAL write lock and reader slots 1..4, so the WAL cannot change meanwhile), and the
// reset goes ahead at once; the shipper ships records in order before it reads the live WAL. So the
// WAL restarts as often as with plain SQLite, and the application never waits for the bucket.
//
// A record is a 64-byte header and then frames copied byte for byte from the WAL:
//   0  "WSHPSPL1"          8  page size            12 first frame number (1-based)
//   16 number of frames    20 checksum chain before the first frame (two u32)
//   28 reserved (0)        32 the 32-byte header of the WAL the frames come from
// (integers big-endian, like the WAL). The side file's spill_len says how many bytes are valid.
#pragma once

#include <cstdint>
#include <string>

#include "sidefile.h"
#include "wal.h"

namespace walship {

constexpr size_t kSpillRecordHeader = 64;

struct SpillRecord {
    uint64_t offset = 0, size = 0;  // of the whole record in the spill file
    unsigned char wal_header[kWalHeaderSize] = {};
    WalHeader wal;                  // parsed wal_header
    uint32_t first = 0, last = 0;   // WAL frame numbers, inclusive
    uint32_t chain1 = 0, chain2 = 0;  // the WAL checksum chain just before frame `first`
    uint64_t frames_offset() const { return offset + kSpillRecordHeader; }
};

std::string spill_path(const std::string& db_path);

// Appends frames first..h.mx_frame of the WAL `wal_path` as one record at side->spill_len, unless
// the spill would then exceed `cap` bytes. The caller holds the spill lock and the WAL cannot
// change. False with *error set on failure (nothing counts as spilled then).
bool spill_append(int spill_fd, const std::string& wal_path, SideState* side, uint32_t mx_frame, uint32_t salt1,
                  uint32_t salt2, uint32_t first, uint64_t cap, std::string* error);

// Reads and checks the record header at `offset`; false when no whole valid record ends by `end`.
bool read_spill_record(int fd, uint64_t offset, uint64_t end, SpillRecord* r);

}  // namespace walship

// The "<db>-walship-spill" file: what a WAL held when SQLite reset it before the shipper had it in
// the bucket. The connection resetting the WAL (it holds the WAL write lock and reader slots
// 1..4, so nothing changes meanwhile) appends one record and the reset goes ahead at once; the
// shipper ships records in order before it reads the live WAL again. So the WAL restarts as often
// as with plain SQLite, and the application never waits for the bucket.
//
// A record holds the last version of every page written by frames first..last of one WAL, found
// through the wal-index (no scan of the WAL), so it costs one page per distinct page, not one per
// frame. It ships as one transaction: point-in-time restore can land before or after it, not
// inside. Layout (integers big-endian, like the WAL):
//   0  "WSHPSPL2"            8  page size             12 first frame   16 last frame
//   20 chain before first (two u32: the WAL checksum chain, as in frame first-1's header)
//   28 chain at last (two u32)  36 database size in pages after frame `last` (a commit)
//   40 number of pages n     44 checksum of the pages (two u32, SQLite's WAL checksum, LE)
//   52 salt-1   56 salt-2    60 flags (1: the WAL checksums big-endian)
//   64 n x (page number u32, page)
// The side file's spill_len says how many bytes are valid.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "sidefile.h"
#include "wal.h"

namespace walship {

constexpr size_t kSpillRecordHeader = 64;

struct SpillRecord {
    uint64_t offset = 0, size = 0;  // of the whole record in the spill file
    uint32_t page_size = 0, first = 0, last = 0, db_pages = 0, count = 0;
    uint32_t chain_in1 = 0, chain_in2 = 0, chain_out1 = 0, chain_out2 = 0;
    uint32_t sum1 = 0, sum2 = 0, salt1 = 0, salt2 = 0;
    bool big_endian = false;
};

std::string spill_path(const std::string& db_path);

// The wal-index region `i` (32 KiB each), or null.
using ShmRegion = std::function<const volatile void*(int)>;
// Reads n bytes of the WAL at an offset (through SQLite's own handle of it); false if it cannot.
using WalRead = std::function<bool(void* buf, size_t n, uint64_t off)>;

// Appends a record for frames first..h.mx_frame of the WAL read by `wal` at side->spill_len, unless
// the spill would then exceed `cap` bytes. The caller holds the spill lock and the WAL's write
// lock and reader slots 1..4. `buf` is scratch space the caller keeps between calls. False with
// *error set on failure (nothing counts as spilled then).
bool spill_append(int spill_fd, const WalRead& wal, const ShmRegion& region, SideState* side, const ShmHeader& h,
                  uint32_t first, uint64_t cap, std::string* buf, std::string* error);

// Reads and checks the record header at `offset`; false when no whole valid record ends by `end`.
bool read_spill_record(int fd, uint64_t offset, uint64_t end, SpillRecord* r);
// Hands the record's pages to fn in page order, about 1 MiB read at a time, and verifies their
// checksum at the end. False when the record is damaged (a read fails, a page number is out of
// order or past the database's size, the checksum differs); true, without the checksum, when fn
// answers false to stop early.
bool for_each_spill_page(int fd, const SpillRecord& r, const std::function<bool(uint32_t pgno, const char* page)>& fn);
// Reads the record's pages (each held once) and verifies their checksum.
bool read_spill_pages(int fd, const SpillRecord& r, std::vector<std::pair<uint32_t, std::string>>* pages);

}  // namespace walship

// The replica format: object names and the encoding of snapshots and transaction segments.
// docs/FORMAT.md is the specification; this file implements it. Nothing here does I/O.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace walship {

constexpr char kMagic[8] = {'W', 'A', 'L', 'S', 'H', 'I', 'P', '1'};
// 3: objects end with object_hash (2: with SHA-256, still read; 1: development builds only)
constexpr uint8_t kFormatVersion = 3;
constexpr size_t kHeaderSize = 112;
constexpr size_t kTrailerSize = 40;  // u64 database checksum, then 32 bytes: the object's digest

enum class ObjectKind : uint8_t { Snapshot = 1, Segment = 2 };
enum : uint16_t { kFlagDbChecksum = 1 };

struct ObjectHeader {
    ObjectKind kind = ObjectKind::Segment;
    uint8_t version = kFormatVersion;
    uint16_t flags = 0;
    uint32_t page_size = 0;
    uint64_t generation = 0;
    uint64_t first_txid = 0, last_txid = 0;
    uint64_t first_ts_ms = 0, last_ts_ms = 0;
    uint32_t db_pages = 0;      // database size in pages after last_txid
    uint32_t txn_count = 0;
    uint64_t db_checksum = 0;   // after last_txid (stored in the trailer), valid when flags & kFlagDbChecksum
    uint64_t body_len = 0;      // uncompressed body length
    // Snapshots in parts: this object's pages start at first_page; the snapshot has part_count
    // objects (the last one is the .snap key, the others .part keys). 1 and 1 for a whole one.
    uint32_t first_page = 1, part_count = 1;
    uint32_t wal_salt1 = 0, wal_salt2 = 0, wal_frame = 0, wal_cksum1 = 0, wal_cksum2 = 0;
};

// One committed transaction: the final image of every page it wrote.
struct Txn {
    uint64_t txid = 0;
    uint64_t ts_ms = 0;
    uint32_t db_pages = 0;          // database size after commit
    bool has_checksum = false;
    uint64_t db_checksum = 0;       // database checksum after commit
    std::map<uint32_t, std::string> pages;
};

// Generations are 16 hex digits: milliseconds since the epoch (48 bits) then 16 random bits, so
// names sort by creation time.
std::string generation_name(uint64_t gen);
// A time in ms since the Unix epoch as RFC 3339 UTC with milliseconds ("2026-12-04T23:23:35.123Z");
// a negative one as "<ms> ms".
std::string utc_time(int64_t ms);
// A string's contents for a JSON string literal (quotes, backslashes and control characters escaped).
std::string json_escape(const std::string& s);
std::optional<uint64_t> parse_generation(const std::string& name);
uint64_t new_generation_id();

std::string generation_prefix(uint64_t gen);                 // "generations/<gen>/"
// Names carry the commit time (ms) of the last transaction, so retention and point-in-time
// restore choose objects from a listing alone.
std::string snapshot_key(uint64_t gen, uint64_t txid, uint64_t ts_ms);  // ".../snapshots/<txid>-<ts>.snap"
std::string segment_key(uint64_t gen, uint64_t first, uint64_t last, uint64_t ts_ms);  // ".../segments/<first>-<last>-<ts>.seg"
// Part p (1-based, before the last) of a snapshot in parts: ".../snapshots/<txid>-<ts>-<p>.part".
std::string snapshot_part_key(uint64_t gen, uint64_t txid, uint64_t ts_ms, uint32_t part);

struct ParsedKey {
    uint64_t gen = 0;
    bool snapshot = false;
    uint32_t part = 0;             // a snapshot's part (1..count-1) other than its .snap object
    uint64_t first = 0, last = 0;  // snapshot: both its txid
    uint64_t ts_ms = 0;            // commit time of `last`
};
std::optional<ParsedKey> parse_key(const std::string& relative_key);

// The database checksum: the sum (mod 2^64) over pages 1..N of page_hash(pgno, page).
uint64_t page_hash(uint32_t pgno, const void* data, size_t len);

// Maintains per-page hashes so the database checksum can follow each transaction.
class DbChecksum {
public:
    void reset() { hashes_.clear(); sum_ = 0; }
    void set_page(uint32_t pgno, const void* data, size_t len);
    void set_hash(uint32_t pgno, uint64_t hash);  // hash: page_hash(pgno, page, page size)
    void truncate(uint32_t db_pages);  // drop pages beyond the new size
    void merge(const DbChecksum& o, uint32_t first, uint32_t last);  // take o's hashes of pages first..last
    uint64_t value() const { return sum_; }
    uint32_t pages() const { return uint32_t(hashes_.size()); }

private:
    std::vector<uint64_t> hashes_;  // index pgno-1
    uint64_t sum_ = 0;
};

// FORMAT.md, "Trailer": the 64-bit hash of a version 3 object's bytes, fed in pieces of any size.
class ObjectHash {
public:
    ObjectHash();  // page_hash's starting lanes
    void update(const void* data, size_t len);
    uint64_t value() const;

private:
    uint64_t a_[4];
    unsigned char tail_[32] = {};
    size_t tail_len_ = 0;
    uint64_t total_ = 0;
};

// The digest at the end of an object's trailer, over every byte before it: SHA-256 for version 2
// objects, object_hash (u64, then 24 zero bytes) for version 3. The version is the object's own
// (header byte 9), so the bytes are fed from the object's first one on.
class ObjectDigest {
public:
    ObjectDigest() = default;
    ObjectDigest(const ObjectDigest&) = delete;
    ObjectDigest& operator=(const ObjectDigest&) = delete;
    ~ObjectDigest();
    void update(const void* data, size_t len);
    // The 32 digest bytes for what was fed; "" if the object's version has no digest walship knows.
    std::string value();

private:
    unsigned char start_[10] = {};  // the header up to its version byte
    size_t seen_ = 0;
    void* sha_ = nullptr;  // EVP_MD_CTX for version 2
    ObjectHash hash_;
};

// Appends the trailer (database checksum, then the digest of everything so far) to a whole object.
void append_trailer(std::string& object, uint64_t db_checksum);

void encode_header(const ObjectHeader& h, unsigned char out[kHeaderSize]);
// Fails (returns an error text) on bad magic, version or sizes.
std::string decode_header(const unsigned char* in, size_t len, ObjectHeader* h);

// A segment object is built in two steps: the body (a concatenation of transaction records)
// compressed (one or more zstd frames), then header and trailer around it. The compressed bodies
// of consecutive segments concatenate into that of a larger one (compaction, without
// recompressing).
// The segment body of txns as one zstd frame ("" on error); *body_len: its uncompressed size.
std::string compress_segment_body(std::vector<Txn>& txns, int zstd_level, uint64_t* body_len);  // frees the pages
std::string seal_segment(ObjectHeader h, uint64_t body_len, std::string frames, uint64_t db_checksum);

// Parses a segment body (already decompressed) into transactions; error text on malformed data.
std::string decode_segment_body(const ObjectHeader& h, const std::string& body, std::vector<Txn>* txns);

// Checks the trailer of a whole object held in memory and decompresses its body.
std::string open_object(const std::string& object, ObjectHeader* h, std::string* body);

void put_u32le(std::string& s, uint32_t v);
void put_u64le(std::string& s, uint64_t v);
// Inline: the checksums call them for every word of every page.
inline uint32_t get_u32le(const unsigned char* p) {
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
inline uint64_t get_u64le(const unsigned char* p) { return uint64_t(get_u32le(p)) | uint64_t(get_u32le(p + 4)) << 32; }
inline uint32_t get_u32be(const unsigned char* p) {
    return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

}  // namespace walship

// Encoding and decoding of replica objects (see docs/FORMAT.md). Pure functions, no I/O.
#include "format.h"

#include <openssl/evp.h>
#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <memory>
#include <random>

namespace walship {

void put_u32le(std::string& s, uint32_t v) {
    for (int i = 0; i < 4; i++) s.push_back(char((v >> (8 * i)) & 0xff));
}
void put_u64le(std::string& s, uint64_t v) {
    for (int i = 0; i < 8; i++) s.push_back(char((v >> (8 * i)) & 0xff));
}

static std::string hex16(uint64_t v) {
    char buf[17];
    snprintf(buf, sizeof buf, "%016llx", (unsigned long long)v);
    return buf;
}

static std::optional<uint64_t> parse_hex16(const std::string& s) {
    if (s.size() != 16) return std::nullopt;
    uint64_t v = 0;
    for (char c : s) {
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0) return std::nullopt;
        v = v << 4 | uint64_t(d);
    }
    return v;
}

std::string json_escape(const std::string& s) {
    std::string o;
    for (char c : s) {
        if (c == '"' || c == '\\') o += '\\', o += c;
        else if ((unsigned char)c < 0x20) {
            char b[8];
            snprintf(b, sizeof b, "\\u%04x", c);
            o += b;
        }
        else o += c;
    }
    return o;
}

std::string generation_name(uint64_t gen) { return hex16(gen); }

std::string utc_time(int64_t ms) {
    if (ms < 0) return std::to_string(ms) + " ms";
    time_t t = time_t(ms / 1000);
    struct tm tm {};
    gmtime_r(&t, &tm);
    char buf[40];
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    return std::string(buf) + "." + std::to_string(1000 + ms % 1000).substr(1) + "Z";
}
std::optional<uint64_t> parse_generation(const std::string& name) { return parse_hex16(name); }

uint64_t new_generation_id() {
    static std::mt19937_64 rng(std::random_device{}());
    uint64_t ms = uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch()).count());
    return (ms & 0xffffffffffffULL) << 16 | (rng() & 0xffff);
}

std::string generation_prefix(uint64_t gen) { return "generations/" + hex16(gen) + "/"; }
std::string snapshot_key(uint64_t gen, uint64_t txid, uint64_t ts_ms) {
    return generation_prefix(gen) + "snapshots/" + hex16(txid) + "-" + hex16(ts_ms) + ".snap";
}
std::string snapshot_part_key(uint64_t gen, uint64_t txid, uint64_t ts_ms, uint32_t part) {
    return generation_prefix(gen) + "snapshots/" + hex16(txid) + "-" + hex16(ts_ms) + "-" + hex16(part) + ".part";
}
std::string segment_key(uint64_t gen, uint64_t first, uint64_t last, uint64_t ts_ms) {
    return generation_prefix(gen) + "segments/" + hex16(first) + "-" + hex16(last) + "-" + hex16(ts_ms) + ".seg";
}

// Splits "<16 hex>-<16 hex>[-<16 hex>]" into numbers.
static bool parse_hex_list(const std::string& s, std::vector<uint64_t>* out) {
    size_t pos = 0;
    while (pos <= s.size()) {
        auto v = parse_hex16(s.substr(pos, 16));
        if (!v) return false;
        out->push_back(*v);
        pos += 16;
        if (pos == s.size()) return true;
        if (s[pos] != '-') return false;
        pos++;
    }
    return false;
}

std::optional<ParsedKey> parse_key(const std::string& key) {
    // generations/<G>/snapshots/<T>-<ts>.snap  or  generations/<G>/segments/<A>-<B>-<ts>.seg
    const std::string g = "generations/";
    if (key.compare(0, g.size(), g) != 0 || key.size() < g.size() + 17) return std::nullopt;
    ParsedKey out;
    auto gen = parse_hex16(key.substr(g.size(), 16));
    if (!gen || key[g.size() + 16] != '/') return std::nullopt;
    out.gen = *gen;
    std::string rest = key.substr(g.size() + 17);
    std::vector<uint64_t> v;
    auto ends = [&](const std::string& suffix) {
        return rest.size() > suffix.size() && rest.compare(rest.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (rest.compare(0, 10, "snapshots/") == 0 && ends(".snap")) {
        if (!parse_hex_list(rest.substr(10, rest.size() - 15), &v) || v.size() != 2) return std::nullopt;
        out.snapshot = true;
        out.first = out.last = v[0];
        out.ts_ms = v[1];
        return out;
    }
    if (rest.compare(0, 10, "snapshots/") == 0 && ends(".part")) {
        if (!parse_hex_list(rest.substr(10, rest.size() - 15), &v) || v.size() != 3 || v[2] == 0 || v[2] > UINT32_MAX) return std::nullopt;
        out.snapshot = true;
        out.first = out.last = v[0];
        out.ts_ms = v[1];
        out.part = uint32_t(v[2]);
        return out;
    }
    if (rest.compare(0, 9, "segments/") == 0 && ends(".seg")) {
        if (!parse_hex_list(rest.substr(9, rest.size() - 13), &v) || v.size() != 3 || v[0] > v[1]) return std::nullopt;
        out.first = v[0];
        out.last = v[1];
        out.ts_ms = v[2];
        return out;
    }
    return std::nullopt;
}

namespace {
constexpr uint64_t K1 = 0x9E3779B185EBCA87ull, K2 = 0xC2B2AE3D27D4EB4Full, K3 = 0x165667B19E3779F9ull;
constexpr uint64_t kLanesStart[4] = {K1, K2, K3, K1 ^ K2};
inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

// The four lanes of page_hash and object_hash over n bytes of whole 32-byte blocks.
inline void lane_blocks(uint64_t a[4], const unsigned char* p, size_t n) {
    uint64_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
    for (size_t i = 0; i < n; i += 32) {
        uint64_t v[4];
        memcpy(v, p + i, 32);  // little-endian hosts only (as the rest of walship)
        a0 = rotl(a0 + v[0] * K2, 31) * K1;
        a1 = rotl(a1 + v[1] * K2, 31) * K1;
        a2 = rotl(a2 + v[2] * K2, 31) * K1;
        a3 = rotl(a3 + v[3] * K2, 31) * K1;
    }
    a[0] = a0, a[1] = a1, a[2] = a2, a[3] = a3;
}

// Folds the lanes, mixes in `extra` and avalanches (FORMAT.md, "Database checksum").
inline uint64_t finish_lanes(const uint64_t a[4], uint64_t extra) {
    uint64_t h = rotl(a[0], 1) + rotl(a[1], 7) + rotl(a[2], 12) + rotl(a[3], 18);
    h ^= extra;
    h ^= h >> 33;
    h *= K2;
    h ^= h >> 29;
    h *= K3;
    h ^= h >> 32;
    return h;
}
}  // namespace

uint64_t page_hash(uint32_t pgno, const void* data, size_t len) {
    // Four lanes over the page's 32-byte blocks (a tail is zero-padded; SQLite's page sizes have
    // none), folded, then mixed with the page number and size.
    const unsigned char* p = static_cast<const unsigned char*>(data);
    uint64_t a[4];
    memcpy(a, kLanesStart, sizeof a);
    size_t whole = len & ~size_t(31);
    lane_blocks(a, p, whole);
    if (whole < len) {
        unsigned char tail[32] = {};
        memcpy(tail, p + whole, len - whole);
        lane_blocks(a, tail, 32);
    }
    return finish_lanes(a, uint64_t(pgno) << 32 | uint64_t(uint32_t(len)));
}

ObjectHash::ObjectHash() { memcpy(a_, kLanesStart, sizeof a_); }

void ObjectHash::update(const void* data, size_t len) {
    const unsigned char* p = static_cast<const unsigned char*>(data);
    total_ += len;
    if (tail_len_) {
        size_t take = std::min(len, 32 - tail_len_);
        memcpy(tail_ + tail_len_, p, take);
        tail_len_ += take;
        p += take;
        len -= take;
        if (tail_len_ < 32) return;
        lane_blocks(a_, tail_, 32);
        tail_len_ = 0;
    }
    size_t whole = len & ~size_t(31);
    lane_blocks(a_, p, whole);
    if (len > whole) memcpy(tail_, p + whole, len - whole);
    tail_len_ = len - whole;
}

uint64_t ObjectHash::value() const {
    uint64_t a[4] = {a_[0], a_[1], a_[2], a_[3]};
    if (tail_len_) {
        unsigned char last[32] = {};
        memcpy(last, tail_, tail_len_);
        lane_blocks(a, last, 32);
    }
    return finish_lanes(a, total_);
}

ObjectDigest::~ObjectDigest() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(sha_)); }

void ObjectDigest::update(const void* data, size_t len) {
    const unsigned char* p = static_cast<const unsigned char*>(data);
    if (seen_ < sizeof start_) {  // the version byte decides the digest: hold bytes until it is here
        size_t take = std::min(len, sizeof start_ - seen_);
        memcpy(start_ + seen_, p, take);
        seen_ += take;
        p += take;
        len -= take;
        if (seen_ < sizeof start_) return;
        if (start_[9] == 2) {
            sha_ = EVP_MD_CTX_new();
            if (sha_) EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(sha_), EVP_sha256(), nullptr);
        }
        update(start_, sizeof start_);
    }
    if (start_[9] == 2) {
        if (sha_) EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(sha_), p, len);
    } else {
        hash_.update(p, len);
    }
}

std::string ObjectDigest::value() {
    if (seen_ < sizeof start_) return "";
    if (start_[9] == 3) {
        std::string out;
        put_u64le(out, hash_.value());
        out.resize(32, '\0');
        return out;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (start_[9] != 2 || !sha_ || EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(sha_), md, &len) != 1 || len != 32) return "";
    return std::string(reinterpret_cast<char*>(md), len);
}

void DbChecksum::set_page(uint32_t pgno, const void* data, size_t len) { set_hash(pgno, page_hash(pgno, data, len)); }

void DbChecksum::set_hash(uint32_t pgno, uint64_t hash) {
    if (pgno == 0) return;
    if (hashes_.size() < pgno) hashes_.resize(pgno, 0);
    sum_ -= hashes_[pgno - 1];
    hashes_[pgno - 1] = hash;
    sum_ += hash;
}

void DbChecksum::merge(const DbChecksum& o, uint32_t first, uint32_t last) {
    if (first == 0 || last < first || o.hashes_.size() < last) return;
    if (hashes_.size() < last) hashes_.resize(last, 0);
    for (uint32_t pg = first; pg <= last; pg++) {
        sum_ -= hashes_[pg - 1];
        hashes_[pg - 1] = o.hashes_[pg - 1];
        sum_ += hashes_[pg - 1];
    }
}

void DbChecksum::truncate(uint32_t db_pages) {
    while (hashes_.size() > db_pages) {
        sum_ -= hashes_.back();
        hashes_.pop_back();
    }
}

void encode_header(const ObjectHeader& h, unsigned char out[kHeaderSize]) {
    std::string s(kMagic, 8);
    s.push_back(char(h.kind));
    s.push_back(char(h.version));
    s.push_back(char(h.flags & 0xff));
    s.push_back(char(h.flags >> 8));
    put_u32le(s, h.page_size);
    put_u64le(s, h.generation);
    put_u64le(s, h.first_txid);
    put_u64le(s, h.last_txid);
    put_u64le(s, h.first_ts_ms);
    put_u64le(s, h.last_ts_ms);
    put_u32le(s, h.db_pages);
    put_u32le(s, h.txn_count);
    put_u32le(s, h.first_page);
    put_u32le(s, h.part_count);
    put_u64le(s, h.body_len);
    put_u32le(s, h.wal_salt1);
    put_u32le(s, h.wal_salt2);
    put_u32le(s, h.wal_frame);
    put_u32le(s, h.wal_cksum1);
    put_u32le(s, h.wal_cksum2);
    s.resize(kHeaderSize, '\0');
    memcpy(out, s.data(), kHeaderSize);
}

static bool valid_page_size(uint32_t ps) { return ps >= 512 && ps <= 65536 && (ps & (ps - 1)) == 0; }

std::string decode_header(const unsigned char* in, size_t len, ObjectHeader* h) {
    if (len < kHeaderSize) return "object too short for a walship header";
    if (memcmp(in, kMagic, 8) != 0) return "not a walship object (bad magic)";
    h->kind = ObjectKind(in[8]);
    h->version = in[9];
    if (h->version != 2 && h->version != 3)
        return "unsupported walship object version " + std::to_string(h->version) + " (this build reads versions 2 and 3)";
    if (h->kind != ObjectKind::Snapshot && h->kind != ObjectKind::Segment) return "unknown object kind";
    h->flags = uint16_t(in[10] | in[11] << 8);
    h->page_size = get_u32le(in + 12);
    h->generation = get_u64le(in + 16);
    h->first_txid = get_u64le(in + 24);
    h->last_txid = get_u64le(in + 32);
    h->first_ts_ms = get_u64le(in + 40);
    h->last_ts_ms = get_u64le(in + 48);
    h->db_pages = get_u32le(in + 56);
    h->txn_count = get_u32le(in + 60);
    h->first_page = std::max<uint32_t>(1, get_u32le(in + 64));  // 0 in objects written before parts
    h->part_count = std::max<uint32_t>(1, get_u32le(in + 68));
    h->body_len = get_u64le(in + 72);
    h->wal_salt1 = get_u32le(in + 80);
    h->wal_salt2 = get_u32le(in + 84);
    h->wal_frame = get_u32le(in + 88);
    h->wal_cksum1 = get_u32le(in + 92);
    h->wal_cksum2 = get_u32le(in + 96);
    if (!valid_page_size(h->page_size)) return "bad page size " + std::to_string(h->page_size);
    if (h->first_txid > h->last_txid) return "bad transaction range";
    // A snapshot's object holds whole pages from first_page on, the last one (part_count 1: the
    // only one) through db_pages.
    if (h->kind == ObjectKind::Snapshot &&
        (h->body_len % h->page_size != 0 || h->first_page - 1 + h->body_len / h->page_size > h->db_pages ||
         (h->part_count == 1 && (h->first_page != 1 || h->body_len != uint64_t(h->db_pages) * h->page_size))))
        return "snapshot body length does not match its page count";
    return "";
}

// The segment body (see FORMAT.md: per transaction a 32-byte header, then each page with its
// number) compressed as one zstd frame. It is encoded and compressed 1 MiB at a time, and each
// page is freed once compressed (the transactions are left without pages), so a large
// transaction's pages and its compressed body together take about its size, not twice it. The
// result has room for seal_segment's header and trailer, so sealing does not copy it either.
std::string compress_segment_body(std::vector<Txn>& txns, int zstd_level, uint64_t* body_len) {
    // One context and one pair of buffers per thread, reused: creating a context per call
    // allocates and clears its tables (a few MiB at the default level), and fresh buffers would
    // be mapped and faulted in again for every small segment.
    struct Ctx {
        ZSTD_CCtx* c = ZSTD_createCCtx();
        std::string in;
        std::unique_ptr<char[]> buf{new char[ZSTD_CStreamOutSize()]};
        ~Ctx() { ZSTD_freeCCtx(c); }
    };
    thread_local Ctx ctx;
    ZSTD_CCtx* c = ctx.c;
    std::string& in = ctx.in;
    char* buf = ctx.buf.get();
    uint64_t size = 0;
    for (const Txn& t : txns) {
        size += 32;
        for (auto& page : t.pages) size += 4 + page.second.size();
    }
    *body_len = size;
    if (!c || ZSTD_isError(ZSTD_CCtx_reset(c, ZSTD_reset_session_only)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, zstd_level)) || ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(c, size)))
        return "";
    std::string out;
    // Reserved, not written: only the bytes appended are ever touched.
    out.reserve(kHeaderSize + ZSTD_compressBound(size) + kTrailerSize);
    in.clear();
    auto compress = [&](ZSTD_EndDirective mode) {
        ZSTD_inBuffer src{in.data(), in.size(), 0};
        size_t left;
        do {
            ZSTD_outBuffer dst{buf, ZSTD_CStreamOutSize(), 0};
            left = ZSTD_compressStream2(c, &dst, &src, mode);
            if (ZSTD_isError(left)) return false;
            out.append(buf, dst.pos);
        } while (mode == ZSTD_e_end ? left != 0 : src.pos < src.size);
        in.clear();
        return true;
    };
    uint64_t freed = 0;
    for (Txn& t : txns) {
        put_u64le(in, t.txid);
        put_u64le(in, t.ts_ms);
        put_u32le(in, t.db_pages);
        put_u32le(in, uint32_t(t.pages.size()));
        put_u64le(in, t.has_checksum ? t.db_checksum : 0);
        for (auto it = t.pages.begin(); it != t.pages.end(); it = t.pages.erase(it)) {
            put_u32le(in, it->first);
            in += it->second;
            freed += it->second.size();
            if (in.size() >= (1u << 20) && !compress(ZSTD_e_continue)) return "";
#ifdef __GLIBC__
            // Freed pages stay in the process until malloc gives them back.
            if (freed >= (16u << 20)) malloc_trim(0), freed = 0;
#endif
        }
    }
    if (!compress(ZSTD_e_end)) return "";
    return out;
}

std::string seal_segment(ObjectHeader h, uint64_t body_len, std::string frames, uint64_t db_checksum) {
    h.kind = ObjectKind::Segment;
    h.body_len = body_len;
    unsigned char header[kHeaderSize] = {};
    encode_header(h, header);
    frames.insert(0, reinterpret_cast<const char*>(header), kHeaderSize);
    append_trailer(frames, db_checksum);
    return frames;
}

std::string decode_segment_body(const ObjectHeader& h, const std::string& body, std::vector<Txn>* txns) {
    const auto* p = reinterpret_cast<const unsigned char*>(body.data());
    size_t left = body.size();
    uint64_t expect = h.first_txid;
    for (uint32_t i = 0; i < h.txn_count; i++) {
        if (left < 32) return "segment truncated in a transaction header";
        Txn t;
        t.txid = get_u64le(p);
        t.ts_ms = get_u64le(p + 8);
        t.db_pages = get_u32le(p + 16);
        uint32_t npages = get_u32le(p + 20);
        t.db_checksum = get_u64le(p + 24);
        t.has_checksum = (h.flags & kFlagDbChecksum) != 0;
        p += 32;
        left -= 32;
        if (t.txid != expect) return "segment transaction ids are not contiguous";
        expect++;
        size_t rec = 4 + size_t(h.page_size);
        if (left / rec < npages) return "segment truncated in page data";
        for (uint32_t k = 0; k < npages; k++) {
            uint32_t pgno = get_u32le(p);
            if (pgno == 0) return "segment has page number 0";
            t.pages[pgno].assign(reinterpret_cast<const char*>(p + 4), h.page_size);
            p += rec;
            left -= rec;
        }
        txns->push_back(std::move(t));
    }
    if (left != 0) return "segment has trailing bytes";
    if (expect != h.last_txid + 1) return "segment transaction count does not match its range";
    return "";
}

void append_trailer(std::string& object, uint64_t db_checksum) {
    put_u64le(object, db_checksum);
    ObjectDigest d;
    d.update(object.data(), object.size());
    object += d.value();
}

std::string open_object(const std::string& object, ObjectHeader* h, std::string* body) {
    if (object.size() < kHeaderSize + kTrailerSize) return "object too short";
    size_t n = object.size() - kTrailerSize;
    ObjectDigest d;
    d.update(object.data(), n + 8);
    std::string digest = d.value();
    std::string err = decode_header(reinterpret_cast<const unsigned char*>(object.data()), n, h);
    if (digest.empty() && !err.empty()) return err;  // a version without a known digest, or no walship object
    if (digest != object.substr(n + 8)) return "checksum mismatch (object is corrupted)";
    if (!err.empty()) return err;
    h->db_checksum = get_u64le(reinterpret_cast<const unsigned char*>(object.data()) + n);
    if (h->body_len > (uint64_t(1) << 34)) return "implausible body length";
    body->resize(h->body_len);
    size_t got = ZSTD_decompress(body->empty() ? nullptr : &(*body)[0], body->size(), object.data() + kHeaderSize, n - kHeaderSize);
    if (ZSTD_isError(got) || got != h->body_len) return "body does not decompress to its stated length";
    return "";
}

}  // namespace walship

#!/usr/bin/python3
"""A restorer written from docs/FORMAT.md alone, sharing no code with walship: it checks that the
specification is enough to read a replica that walship wrote, and that walship writes what the
specification says.

    format_reference.py LIBWALSHIP [WORKDIR]     (default: a temporary directory, removed after)

Writes a database through the extension (Debian's /usr/bin/python3 loads it) to a file:// replica:
a first snapshot in parts, then inserts, updates, deletes and a VACUUM that shrinks the file. Then
restores the replica by FORMAT.md's "Restoring" steps (zstd frames through the zstd command) and
compares the result with the source, page by page. Exits non-zero with the reason on any mismatch.
"""
import hashlib
import os
import sqlite3
import subprocess
import sys
import tempfile

M = (1 << 64) - 1
K1, K2, K3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9


def fail(why):
    print("format_reference: " + why, file=sys.stderr)
    sys.exit(1)


def rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & M


def lanes_then_mix(data, extra):
    """FORMAT.md, "Database checksum": four lanes over 32-byte blocks, folded, mixed, avalanched."""
    a = [K1, K2, K3, K1 ^ K2]
    if len(data) % 32:
        data = data + bytes(32 - len(data) % 32)
    words = memoryview(data).cast("Q")  # little-endian hosts, as walship
    for i in range(0, len(words), 4):
        for j in range(4):
            a[j] = (rotl((a[j] + words[i + j] * K2) & M, 31) * K1) & M
    h = (rotl(a[0], 1) + rotl(a[1], 7) + rotl(a[2], 12) + rotl(a[3], 18)) & M
    h ^= extra & M
    h ^= h >> 33
    h = (h * K2) & M
    h ^= h >> 29
    h = (h * K3) & M
    h ^= h >> 32
    return h


def page_hash(n, page):
    return lanes_then_mix(page, n << 32 | len(page))


def u(b, off, size):
    return int.from_bytes(b[off:off + size], "little")


def read_object(path):
    """Header fields, decompressed body and trailer checksum of one object, its digest verified."""
    b = open(path, "rb").read()
    if len(b) < 112 + 40 or b[:8] != b"WALSHIP1":
        fail(f"{path}: not a walship object")
    version = b[9]
    digest = b[-32:]
    if version == 3:  # object_hash: page_hash's steps over every byte, the length mixed in
        ok = digest == lanes_then_mix(b[:-32], len(b) - 32).to_bytes(8, "little") + bytes(24)
    elif version == 2:
        ok = digest == hashlib.sha256(b[:-32]).digest()
    else:
        fail(f"{path}: version {version}")
    if not ok:
        fail(f"{path}: trailer digest does not match (version {version})")
    h = dict(kind=b[8], version=version, flags=u(b, 10, 2), page_size=u(b, 12, 4), generation=u(b, 16, 8),
             first_txid=u(b, 24, 8), last_txid=u(b, 32, 8), db_pages=u(b, 56, 4), txn_count=u(b, 60, 4),
             first_page=max(1, u(b, 64, 4)), part_count=max(1, u(b, 68, 4)), body_len=u(b, 72, 8))
    body = subprocess.run(["zstd", "-dcq"], input=b[112:-40], stdout=subprocess.PIPE, check=True).stdout
    if len(body) != h["body_len"]:
        fail(f"{path}: body is {len(body)} bytes, header says {h['body_len']}")
    return h, body, u(b, len(b) - 40, 8)


def hex16(s):
    return int(s, 16)


def restore(root, out):
    gens = sorted(os.listdir(os.path.join(root, "generations")))
    gen = None
    for g in reversed(gens):  # the newest generation with a snapshot
        if any(n.endswith(".snap") for n in os.listdir(os.path.join(root, "generations", g, "snapshots"))):
            gen = g
            break
    if gen is None:
        fail("no generation with a snapshot")
    gdir = os.path.join(root, "generations", gen)
    snaps = [n for n in os.listdir(os.path.join(gdir, "snapshots")) if n.endswith(".snap")]
    snap = max(snaps, key=lambda n: hex16(n.split("-")[0]))
    t, ts = snap[:-5].split("-")
    parts = sorted((n for n in os.listdir(os.path.join(gdir, "snapshots")) if n.startswith(f"{t}-{ts}-") and n.endswith(".part")),
                   key=lambda n: hex16(n[:-5].split("-")[2]))
    objects = [os.path.join(gdir, "snapshots", n) for n in parts + [snap]]

    db = bytearray()
    hashes = {}
    head = None
    next_page = 1
    for path in objects:
        h, body, trailer = read_object(path)
        ps = h["page_size"]
        if h["kind"] != 1 or h["first_page"] != next_page:
            fail(f"{path}: not the next part of the snapshot")
        at = (h["first_page"] - 1) * ps
        if len(db) < at + len(body):
            db.extend(bytes(at + len(body) - len(db)))
        db[at:at + len(body)] = body
        own = 0
        for i in range(len(body) // ps):
            n = h["first_page"] + i
            hashes[n] = page_hash(n, body[i * ps:(i + 1) * ps])
            own = (own + hashes[n]) & M
        if path != objects[-1] and h["flags"] & 1 and own != trailer:
            fail(f"{path}: part checksum mismatch")
        next_page += len(body) // ps
        head, head_sum = h, trailer
    if len(objects) != head["part_count"] or next_page - 1 != head["db_pages"]:
        fail("snapshot parts do not add up")
    if head["flags"] & 1 and sum(hashes.values()) & M != head_sum:
        fail("database checksum mismatch after the snapshot")
    ps, pages, pos = head["page_size"], head["db_pages"], head["last_txid"]

    segs = {}
    for n in os.listdir(os.path.join(gdir, "segments")):
        a, b, _ = n[:-4].split("-")
        segs.setdefault(hex16(a), []).append((hex16(b), n))
    applied = 0
    while pos + 1 in segs:
        last, name = max(segs[pos + 1])  # the longest segment starting there
        h, body, _ = read_object(os.path.join(gdir, "segments", name))
        off = 0
        for _ in range(h["txn_count"]):
            txid, _, db_pages, n, cksum = u(body, off, 8), u(body, off + 8, 8), u(body, off + 16, 4), u(body, off + 20, 4), u(body, off + 24, 8)
            off += 32
            if txid != pos + 1:
                fail(f"{name}: txid {txid} does not follow {pos}")
            for _ in range(n):
                pg = u(body, off, 4)
                page = body[off + 4:off + 4 + ps]
                off += 4 + ps
                if len(db) < pg * ps:
                    db.extend(bytes(pg * ps - len(db)))
                db[(pg - 1) * ps:pg * ps] = page
                hashes[pg] = page_hash(pg, page)
            del db[db_pages * ps:]
            for pg in [p for p in hashes if p > db_pages]:
                del hashes[pg]
            if h["flags"] & 1 and sum(hashes.values()) & M != cksum:
                fail(f"{name}: database checksum mismatch after txid {txid}")
            pos, pages = txid, db_pages
            applied += 1
        if off != len(body):
            fail(f"{name}: trailing bytes")
    if any(k > pos + 1 for k in segs):
        fail(f"gap after txid {pos}")
    with open(out, "wb") as f:
        f.write(db[:pages * ps])
    return len(objects), applied, pos


def main(lib, work):
    src, root = os.path.join(work, "src.db"), os.path.join(work, "replica")
    plain = sqlite3.connect(src)  # an existing database: its first snapshot comes in parts
    plain.execute("pragma journal_mode=wal")
    plain.execute("create table t(id integer primary key, v blob)")
    plain.execute("insert into t(v) select randomblob(1500) || zeroblob(500) from "
                  "(with recursive s(x) as (select 1 union all select x + 1 from s where x < 600) select x from s)")
    plain.commit()
    plain.close()
    loader = sqlite3.connect(":memory:")
    loader.enable_load_extension(True)
    loader.load_extension(lib)
    db = sqlite3.connect(f"file:{src}?replica=file://{root}&snapshot_part_size=65536", uri=True, isolation_level=None)
    for i in range(200):
        db.execute("insert into t(v) values(randomblob(?))", (100 + i,))
    db.execute("update t set v = randomblob(50) where id % 7 = 0")
    db.execute("delete from t where id % 3 = 0")
    db.execute("vacuum")  # the database shrinks: pages past its size must go
    db.execute("insert into t(v) values(x'00')")
    if db.execute("pragma walship_flush").fetchone()[0] != "ok":
        fail("walship_flush did not answer ok")
    db.close()
    check = sqlite3.connect(src)
    check.execute("pragma wal_checkpoint(TRUNCATE)")
    check.close()

    out = os.path.join(work, "restored.db")
    objects, txns, txid = restore(root, out)
    a, b = open(src, "rb").read(), open(out, "rb").read()
    if a != b:
        ps = 4096
        diff = [i // ps + 1 for i in range(0, max(len(a), len(b)), ps) if a[i:i + ps] != b[i:i + ps]]
        fail(f"restored database differs from the source: sizes {len(a)} / {len(b)}, pages {diff[:10]}")
    print(f"format_reference: {objects} snapshot objects, {txns} transactions to txid {txid}, "
          f"{len(b) // 4096} pages: equal to the source page by page")


if len(sys.argv) > 2:
    main(sys.argv[1], sys.argv[2])
else:
    with tempfile.TemporaryDirectory() as d:
        main(sys.argv[1], d)

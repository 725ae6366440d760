// Running a replica for a long time, with a compressed clock: scheduled snapshots, retention,
// compaction, and point-in-time restore inside (and outside) the retention window.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <set>
#include <thread>

#include "format.h"
#include "restore.h"
#include "retention.h"
#include "support/db.h"
#include "support/test_server.h"
#include "walship.h"

using namespace walship;
using namespace walship::test;

namespace {

struct Registered {
    Registered() { use_walship(); }
} registered;

int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct Point {
    long long txid;
    int64_t time_ms;
    long long rows, sum;
};

// Segment objects (not snapshots) in a replica.
size_t segment_objects(const std::string& url) {
    auto listing = store_for(url)->list("generations/");
    REQUIRE(listing.ok());
    size_t n = 0;
    for (auto& o : listing->objects)
        if (auto k = parse_key(o.key); k && !k->snapshot) n++;
    return n;
}

// Restores the replica as it was at time_ms (a scratch file) and counts the rows of t.
long long rows_as_of(s3::Store& store, int64_t time_ms) {
    RestoreOptions opt;
    opt.output = temp_dir() + "/pit.db";
    opt.timestamp_ms = time_ms;
    auto r = restore(store, opt);
    REQUIRE(r.ok());
    Db db(opt.output, nullptr, SQLITE_OPEN_READONLY);
    return db.integer("select count(*) from t");
}

}  // namespace

TEST_CASE("a point in time is when a transaction committed, not when it was shipped: restore by time gives each commit exactly", "[longrun][integration]") {
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/when.db";
    std::vector<Point> points;  // time_ms: just after COMMIT returned
    {
        // One upload a second: each segment carries ten commits made while it waited.
        Db a(uri(path, url, "sync_interval=1s"));
        a.exec("create table t(id integer primary key, v integer)");
        REQUIRE(a.text("pragma walship_flush") == "ok");  // the replica's first point: its first snapshot
        std::this_thread::sleep_for(std::chrono::milliseconds(60));
        Db b(uri(path, url, "sync_interval=1s"));  // a second connection commits too
        for (int i = 0; i < 25; i++) {
            Db& db = i % 3 == 2 ? b : a;
            db.exec("insert into t(v) values(" + std::to_string(i) + ")");
            points.push_back({0, wall_ms(), db.integer("select count(*) from t"), 0});
            std::this_thread::sleep_for(std::chrono::milliseconds(60));
        }
        REQUIRE(a.text("pragma walship_flush") == "ok");
    }
    auto store = store_for(url);
    for (const Point& p : points) {
        INFO("the commit that left " << p.rows << " rows, restored as of its time");
        CHECK(rows_as_of(*store, p.time_ms) == p.rows);
    }
}

TEST_CASE("hundreds of commits between uploads keep their own commit times: restore by time gives each commit exactly", "[longrun][integration]") {
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/many.db";
    std::vector<Point> points;
    {
        Db db(uri(path, url, "sync_interval=1s"));
        db.exec("create table t(id integer primary key, v integer)");
        REQUIRE(db.text("pragma walship_flush") == "ok");
        // 300 commits 3 ms apart, 300 per second, one upload a second: the shipper copies the
        // side file's commit slots between uploads.
        for (int i = 0; i < 300; i++) {
            db.exec("insert into t(v) values(" + std::to_string(i) + ")");
            points.push_back({0, wall_ms(), i + 1, 0});
            std::this_thread::sleep_for(std::chrono::milliseconds(3));
        }
        REQUIRE(db.text("pragma walship_flush") == "ok");
    }
    auto store = store_for(url);
    int wrong = 0;
    for (size_t i = 0; i < points.size(); i += 10) {
        const Point& p = points[i];
        long long rows = rows_as_of(*store, p.time_ms);
        INFO("the commit that left " << p.rows << " rows, restored as of its time: " << rows);
        wrong += rows != p.rows;
        CHECK(rows == p.rows);
    }
    CHECK(wrong == 0);
}

TEST_CASE("a burst of commits, several a millisecond: restore by time gives each commit its own millisecond", "[longrun][integration]") {
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/burst.db";
    struct Commit {
        int64_t start_ms, end_ms;  // before the statement, after COMMIT returned
        long long rows;
    };
    std::vector<Commit> commits;
    {
        Db db(uri(path, url, "sync_interval=1s"));
        db.exec("pragma wal_autocheckpoint=0");  // one WAL (a reset between uploads ships its commits as one)
        db.exec("create table t(id integer primary key, v integer)");
        REQUIRE(db.text("pragma walship_flush") == "ok");
        db.exec("insert into t(v) values(-1)");  // the first commit after a quiet spell ships at once
        // 3,000 as fast as they go (several a millisecond on this machine, 10-20 a millisecond
        // in a Release build), a few uploads apart (one a second).
        while (commits.size() < 3000) {
            const int64_t start = wall_ms();
            db.exec("insert into t(v) values(" + std::to_string(commits.size()) + ")");
            commits.push_back({start, wall_ms(), static_cast<long long>(commits.size()) + 2});
        }
        REQUIRE(db.text("pragma walship_flush") == "ok");
    }
    INFO(commits.size() << " commits in " << commits.back().end_ms - commits.front().start_ms << " ms");
    auto store = store_for(url);
    int wrong = 0;
    for (size_t i = 0; i < commits.size(); i += commits.size() / 25) {
        const int64_t when = commits[i].end_ms;
        // Every commit that had returned by then is in, none that started after it.
        long long at_least = 0, at_most = 0;
        for (const Commit& c : commits) {
            if (c.end_ms <= when) at_least = std::max(at_least, c.rows);
            if (c.start_ms <= when) at_most = std::max(at_most, c.rows);
        }
        long long rows = rows_as_of(*store, when);
        INFO("as of " << when << ": " << rows << " rows, between " << at_least << " and " << at_most);
        wrong += rows < at_least || rows > at_most;
        CHECK(rows >= at_least);
        CHECK(rows <= at_most);
    }
    CHECK(wrong == 0);
}

TEST_CASE("a snapshot is named for when its last transaction committed: a time between that commit and the snapshot restores from it alone", "[longrun][integration]") {
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/snap-time.db";
    int64_t committed = 0, asked = 0;
    {
        Db db(uri(path, url));
        db.exec("create table t(id integer primary key, v integer); insert into t(v) values(1)");
        REQUIRE(db.text("pragma walship_flush") == "ok");
        db.exec("insert into t(v) values(2)");
        committed = wall_ms();
        REQUIRE(db.text("pragma walship_flush") == "ok");
        std::this_thread::sleep_for(std::chrono::milliseconds(400));
        asked = wall_ms();
        REQUIRE(db.text("pragma walship_snapshot") == "ok");
        REQUIRE(db.text("pragma walship_snapshot") == "ok");  // nothing committed since: the same state again
    }
    auto store = store_for(url);
    auto listing = store->list("generations/");
    REQUIRE(listing.ok());
    std::vector<ParsedKey> snaps;
    std::set<uint64_t> gens;
    for (auto& o : parse_listing(listing->objects)) {
        gens.insert(o.k.gen);
        if (o.k.snapshot && !o.k.part) snaps.push_back(o.k);
    }
    CHECK(gens.size() == 1);  // the second snapshot of the same state did not collide with the first
    REQUIRE(snaps.size() == 3);
    std::sort(snaps.begin(), snaps.end(), [](auto& a, auto& b) { return a.ts_ms < b.ts_ms; });
    // The two requested snapshots hold the state after the second insert: named for its commit
    // (at most a millisecond apart, to keep the names distinct), before they were asked for.
    CHECK(int64_t(snaps[1].ts_ms) <= committed);
    CHECK(int64_t(snaps[1].ts_ms) < asked);
    CHECK(snaps[2].ts_ms == snaps[1].ts_ms + 1);
    CHECK(snaps[1].first == snaps[2].first);
    // With the generation's first snapshot and the segments gone (as retention leaves it), a time
    // after that commit but before the snapshots were taken still restores, from them alone.
    for (auto& o : parse_listing(listing->objects))
        if (!(o.k.snapshot && o.k.first == snaps[1].first)) REQUIRE(store->remove(o.key).ok());
    RestoreOptions opt;
    opt.output = temp_dir() + "/snap-time-pit.db";
    opt.timestamp_ms = committed + (asked - committed) / 2;
    auto r = restore(*store, opt);
    REQUIRE(r.ok());
    CHECK(r->objects == 1);
    Db back(opt.output, nullptr, SQLITE_OPEN_READONLY);
    CHECK(back.integer("select count(*) from t") == 2);
}

TEST_CASE("snapshot and retention cycles, points inside the window restore exactly, points outside are refused", "[longrun][integration]") {
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/long.db";
    const int64_t start = wall_ms();
    std::vector<Point> points;
    std::mt19937 rng(3);
    {
        Db db(uri(path, url, "sync_interval=0&snapshot_interval=400ms&retention=1500ms&retention_check_interval=250ms"));
        db.exec("create table t(id integer primary key, v integer)");
        auto until = std::chrono::steady_clock::now() + std::chrono::seconds(6);
        while (std::chrono::steady_clock::now() < until) {
            db.exec("insert into t(v) values(" + std::to_string(rng() % 1000) + ")");
            if (rng() % 4 == 0) db.exec("update t set v = v + 1 where id % 3 = " + std::to_string(rng() % 3));
            REQUIRE(db.text("pragma walship_flush") == "ok");
            Point p;
            p.txid = status_field(db, "txid");
            p.time_ms = wall_ms();
            p.rows = db.integer("select count(*) from t");
            p.sum = db.integer("select total(v) + count(*) * 0 from t");
            points.push_back(p);
            std::this_thread::sleep_for(std::chrono::milliseconds(15));
        }
        CHECK(status_field(db, "snapshots") >= 5);
    }
    auto store = store_for(url);
    auto listing = store->list("generations/");
    REQUIRE(listing.ok());
    auto objs = parse_listing(listing->objects);
    size_t snapshots = 0;
    for (auto& o : objs) snapshots += o.k.snapshot;
    INFO("objects left: " << objs.size() << ", snapshots: " << snapshots);
    // Retention removed the older snapshots: about (retention + grace) / interval of them remain.
    CHECK(snapshots <= 12);
    CHECK(snapshots >= 2);

    // Points inside the window (the last 1.5 s of writes) restore exactly, by time and by txid.
    const int64_t window_start = points.back().time_ms - 1500;
    std::vector<Point> inside;
    for (auto& p : points)
        if (p.time_ms >= window_start) inside.push_back(p);
    REQUIRE(inside.size() >= 3);  // (a loaded machine commits and flushes fewer times in 1.5 s)
    std::shuffle(inside.begin(), inside.end(), rng);
    for (size_t i = 0; i < std::min<size_t>(8, inside.size()); i++) {
        const Point& p = inside[i];
        for (int by_time = 0; by_time < 2; by_time++) {
            RestoreOptions opt;
            opt.output = temp_dir() + "/pit.db";
            if (by_time) opt.timestamp_ms = p.time_ms;
            else opt.txid = uint64_t(p.txid);
            auto r = restore(*store, opt);
            INFO("point txid " << p.txid << " by " << (by_time ? "time" : "txid"));
            REQUIRE(r.ok());
            CHECK(r->txid == uint64_t(p.txid));
            Db db(opt.output, nullptr, SQLITE_OPEN_READONLY);
            CHECK(db.integer("select count(*) from t") == p.rows);
            CHECK(db.integer("select total(v) + count(*) * 0 from t") == p.sum);
            CHECK(db.text("pragma integrity_check") == "ok");
        }
    }
    // A point before the replica began (outside any window) is refused with a clear error.
    RestoreOptions old;
    old.output = temp_dir() + "/old.db";
    old.timestamp_ms = start - 60000;
    auto r = restore(*store, old);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().str().find("outside the retention window") != std::string::npos);
    CHECK_FALSE(file_exists(old.output));
    // The oldest points, long deleted by retention, are refused too (or, if still restorable, exact).
    RestoreOptions first;
    first.output = temp_dir() + "/first.db";
    first.txid = uint64_t(points.front().txid);
    auto fr = restore(*store, first);
    CHECK_FALSE(fr.ok());
}

TEST_CASE("compaction: after 10,000 small transactions the latest state restores with a bounded number of GETs", "[longrun][compaction]") {
    // Each transaction is flushed on its own, so each is one upload: 10,000 level-0 segments.
    std::string url = "file://" + temp_dir() + "/replica";
    std::string path = temp_dir() + "/compact.db";
    {
        Db db(uri(path, url, "sync_interval=0"));
        db.exec("create table t(id integer primary key, v text)");
        for (int i = 0; i < 10000; i++) {
            db.exec("insert into t(v) values('row " + std::to_string(i) + "')");
            REQUIRE(db.text("pragma walship_flush") == "ok");
        }
        CHECK(status_field(db, "txid") >= 9999);  // the first may already be in the snapshot
    }
    auto store = store_for(url);
    // The merged-away segments are deleted (after their merged object is up, by the time the
    // connection closes): the bucket holds what a restore needs, not 10,000 objects.
    auto listing = store->list("generations/");
    REQUIRE(listing.ok());
    CHECK(listing->objects.size() <= 37);
    RestoreOptions opt;
    opt.output = temp_dir() + "/latest.db";
    auto before = store->counts();
    auto r = restore(*store, opt);
    REQUIRE(r.ok());
    auto after = store->counts();
    uint64_t gets = after.get - before.get, lists = after.list - before.list;
    // Fanout 8: at most 7 segments per level, 5 levels for 10,000 (8^4 < 10,000 < 8^5), plus the
    // snapshot: 36 GETs; and two listings.
    printf("compaction: restoring the latest of %llu transactions took %llu GETs and %llu LISTs\n", (unsigned long long)r->txid,
           (unsigned long long)gets, (unsigned long long)lists);
    CHECK(gets <= 36);
    CHECK(lists <= 2);
    Db db(opt.output, nullptr, SQLITE_OPEN_READONLY);
    CHECK(db.integer("select count(*) from t") == 10000);
}

TEST_CASE("processes that live for one commit each: a snapshot follows once 64 segments pile up, so a restore's GETs stay bounded", "[longrun][compaction]") {
    std::string url = "file://" + temp_dir() + "/replica";
    std::string path = temp_dir() + "/short.db";
    {
        Db db(uri(path, url));
        db.exec("create table t(id integer primary key, v text)");
    }
    for (int i = 0; i < 150; i++) {  // each open is a new shipper: compaction starts over
        Db db(uri(path, url));
        db.exec("insert into t(v) values('run " + std::to_string(i) + "')");
    }
    auto store = store_for(url);
    RestoreOptions opt;
    opt.output = temp_dir() + "/short-latest.db";
    auto before = store->counts();
    auto r = restore(*store, opt);
    REQUIRE(r.ok());
    uint64_t gets = store->counts().get - before.get;
    INFO("restoring the latest of 150 one-commit runs took " << gets << " GETs");
    CHECK(gets <= 66);  // a snapshot, fewer than 64 segments after it, and one more restart's
    Db db(opt.output, nullptr, SQLITE_OPEN_READONLY);
    CHECK(db.integer("select count(*) from t") == 150);
}

TEST_CASE("compaction does not delete in front of remote-durable commits: merged-away segments go once the commits pause", "[longrun][compaction]") {
    std::string url = "file://" + temp_dir() + "/replica";
    std::string path = temp_dir() + "/remote.db";
    auto segments = [&] { return segment_objects(url); };
    {
        // retention=5s: merged-away segments stay for the grace period (the retention, if shorter
        // than 5 minutes), for a restore that planned with them before the merge; retention's own
        // passes (every 2.5 s here) leave them for that long too.
        Db db(uri(path, url, "durability=remote&retention=5s"));
        db.exec("create table t(id integer primary key, v text)");
        for (int i = 0; i < 200; i++) db.exec("insert into t(v) values('row " + std::to_string(i) + "')");
        // Every commit was one upload and compaction merged them (one object per level is at most
        // 8), but while the commits kept coming the absorbed segments were left for later.
        CHECK(status_field(db, "compactions") >= 20);
        CHECK(segments() >= 150);
        // A pause in the commits: they are deleted while the database stays open.
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (segments() > 21 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(100));
        CHECK(segments() <= 21);  // at most 7 per level, 3 levels for 200
    }
    RestoreOptions opt;
    opt.output = temp_dir() + "/latest.db";
    REQUIRE(restore(*store_for(url), opt).ok());
    CHECK(compare_pages(path, opt.output, 4096) == "");
}

TEST_CASE("segments a merge absorbed stay for the grace period, so a restore planned before the merge can still read them", "[longrun][compaction]") {
    std::string url = "file://" + temp_dir() + "/replica";
    std::string path = temp_dir() + "/grace.db";
    auto segments = [&] { return segment_objects(url); };
    Db db(uri(path, url, "durability=remote"));  // default retention: a 5-minute grace
    db.exec("create table t(id integer primary key, v text)");
    for (int i = 0; i < 100; i++) db.exec("insert into t(v) values('row " + std::to_string(i) + "')");
    CHECK(status_field(db, "compactions") >= 10);
    std::this_thread::sleep_for(std::chrono::milliseconds(3500));  // the commits pause (past the 2 s that deletes wait for)
    // Merged, and the absorbed ones still there (a fully compacted replica holds at most 7 per
    // level; under a sanitizer the first snapshot may already hold the first commit or two).
    CHECK(segments() >= 90);
    RestoreOptions opt;
    opt.output = temp_dir() + "/grace-latest.db";
    auto r = restore(*store_for(url), opt);
    REQUIRE(r.ok());
    CHECK(r->txid == uint64_t(status_field(db, "txid")));
}

TEST_CASE("retention deletes segments a merge absorbed only after the grace period, counted from the merged segment", "[longrun]") {
    const uint64_t b = 1700000000000;
    uint64_t gen = (b << 16) | 7;
    std::vector<s3::ObjectInfo> objs;
    for (const std::string& key : {snapshot_key(gen, 0, b), segment_key(gen, 1, 1, b + 10), segment_key(gen, 2, 2, b + 20),
                                   segment_key(gen, 1, 2, b + 20)}) {
        s3::ObjectInfo o;
        o.key = key;
        o.size = 100;
        objs.push_back(o);
    }
    auto listing = parse_listing(objs);
    // The merged segment (1..2) is as recent as the grace: its inputs stay.
    CHECK(plan_retention(listing, int64_t(b) - 1000, gen, int64_t(b + 20)).empty());
    // Past it, they go; so they do when no grace is asked for.
    std::vector<std::string> want = {segment_key(gen, 1, 1, b + 10), segment_key(gen, 2, 2, b + 20)};
    std::sort(want.begin(), want.end());
    CHECK(plan_retention(listing, int64_t(b) - 1000, gen, int64_t(b + 21)) == want);
    CHECK(plan_retention(listing, int64_t(b) - 1000, gen) == want);
}

TEST_CASE("retention keeps a snapshot's parts with it and removes parts whose snapshot never completed", "[longrun]") {
    const uint64_t b = 1700000000000;  // the generation's creation time (ms)
    uint64_t gen = (b << 16) | 7;
    std::vector<s3::ObjectInfo> objs;
    auto add = [&](const std::string& key) {
        s3::ObjectInfo o;
        o.key = key;
        o.size = 100;
        objs.push_back(o);
    };
    add(snapshot_part_key(gen, 0, b + 1000, 1));  // snapshot at txid 0 in three objects
    add(snapshot_part_key(gen, 0, b + 1000, 2));
    add(snapshot_key(gen, 0, b + 1000));
    add(segment_key(gen, 1, 5, b + 2000));
    add(snapshot_part_key(gen, 5, b + 3000, 1));  // an attempt at txid 5 that never completed
    add(segment_key(gen, 6, 9, b + 4000));
    add(snapshot_part_key(gen, 9, b + 5000, 1));  // the snapshot at txid 9, complete
    add(snapshot_key(gen, 9, b + 5000));
    add(snapshot_part_key(gen, 9, b + 6000, 1));  // an attempt in progress: nothing newer exists
    auto listing = parse_listing(objs);
    CHECK(listing.size() == objs.size());
    // Window from before everything: only the superseded unfinished attempt goes.
    auto drop = plan_retention(listing, int64_t(b), gen);
    CHECK(drop == std::vector<std::string>{snapshot_part_key(gen, 5, b + 3000, 1)});
    // Window from after the second snapshot: the first one goes whole, with its parts; the second
    // keeps its part.
    drop = plan_retention(listing, int64_t(b + 5500), gen);
    std::vector<std::string> want = {snapshot_part_key(gen, 0, b + 1000, 1), snapshot_part_key(gen, 0, b + 1000, 2), snapshot_key(gen, 0, b + 1000),
                                     segment_key(gen, 1, 5, b + 2000), snapshot_part_key(gen, 5, b + 3000, 1), segment_key(gen, 6, 9, b + 4000)};
    std::sort(want.begin(), want.end());
    CHECK(drop == want);
}

TEST_CASE("retention keeps a generation while the next one that can be restored is not older than the window (one without a snapshot serves nothing)", "[longrun]") {
    const uint64_t t = 1700000000000;
    uint64_t a = (t << 16) | 1, b = ((t + 10000) << 16) | 2, c = ((t + 20000) << 16) | 3;
    std::vector<s3::ObjectInfo> objs;
    auto add = [&](const std::string& key) {
        s3::ObjectInfo o;
        o.key = key;
        o.size = 100;
        objs.push_back(o);
    };
    add(snapshot_key(a, 0, t + 100));
    add(segment_key(a, 1, 50, t + 9000));
    add(snapshot_part_key(b, 0, t + 10100, 1));  // B's process died during its first snapshot
    add(snapshot_key(c, 0, t + 20100));
    add(segment_key(c, 1, 5, t + 21000));
    auto listing = parse_listing(objs);
    // The window starts after B's creation but before C's: points in it before C came are A's.
    auto drop = plan_retention(listing, int64_t(t + 15000), c);
    CHECK(drop == std::vector<std::string>{snapshot_part_key(b, 0, t + 10100, 1)});
    // Once C is older than the window's start, A serves nothing in it.
    drop = plan_retention(listing, int64_t(t + 20500), c);
    std::vector<std::string> want = {snapshot_key(a, 0, t + 100), segment_key(a, 1, 50, t + 9000), snapshot_part_key(b, 0, t + 10100, 1)};
    std::sort(want.begin(), want.end());
    CHECK(drop == want);
}

TEST_CASE("scheduled snapshots are taken under steady writes (commits closer than sync_interval), and retention then deletes", "[longrun][integration]") {
    std::string url = new_s3_url();
    std::string path = temp_dir() + "/steady.db";
    {
        // A commit every 5 ms and no flush: the shipper never sees a quiet moment.
        Db db(uri(path, url, "sync_interval=200ms&snapshot_interval=500ms&retention=1s&retention_check_interval=250ms"));
        db.exec("create table t(id integer primary key, v blob)");
        auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(4500);
        while (std::chrono::steady_clock::now() < until) {
            db.exec("insert into t(v) values(randomblob(200))");
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        INFO(db.text("pragma walship_status"));
        CHECK(status_field(db, "snapshots") >= 4);  // about one per 500 ms of the 4.5 s
        CHECK(status_field(db, "last_snapshot_txid") > 0);
        REQUIRE(db.text("pragma walship_flush") == "ok");
    }
    auto store = store_for(url);
    auto listing = store->list("generations/");
    REQUIRE(listing.ok());
    auto objs = parse_listing(listing->objects);
    size_t snapshots = 0;
    for (auto& o : objs) snapshots += o.k.snapshot && !o.k.part;
    INFO("objects left: " << objs.size() << ", snapshots: " << snapshots);
    CHECK(snapshots >= 1);
    CHECK(snapshots <= 6);  // retention removed the older ones
    RestoreOptions opt;
    opt.output = temp_dir() + "/steady-restored.db";
    auto r = restore(*store, opt);
    REQUIRE(r.ok());
    CHECK(compare_pages(path, opt.output, 4096) == "");
}

TEST_CASE("one writer's segments nest or follow each other, and a crossing range or a second object with the same range is a second writer", "[longrun]") {
    const uint64_t b = 1700000000000, gen = (b << 16) | 9, other = ((b + 5) << 16) | 1;
    auto listing = [&](std::vector<std::string> keys) {
        std::vector<s3::ObjectInfo> objs;
        for (auto& k : keys) objs.push_back({k, 100});
        return parse_listing(objs);
    };
    // One writer: segments, a merge over some of them (the absorbed ones not yet deleted), a later
    // merge over the first merge and what followed, a snapshot in the middle, another generation.
    auto one = listing({snapshot_key(gen, 0, b), segment_key(gen, 1, 1, b + 1), segment_key(gen, 2, 4, b + 2), segment_key(gen, 1, 6, b + 3),
                        segment_key(gen, 5, 6, b + 3), segment_key(gen, 7, 7, b + 4), segment_key(gen, 1, 9, b + 6), segment_key(gen, 8, 9, b + 6),
                        snapshot_key(gen, 9, b + 7), segment_key(gen, 10, 10, b + 8), segment_key(other, 2, 30, b + 9)});
    CHECK(find_second_writer(one, gen) == "");
    // A second writer continued from txid 6: its segment 7..8 lies inside the merge 1..9 but
    // crosses the segment 8..9.
    auto crossing = one;
    crossing.push_back(listing({segment_key(gen, 7, 8, b + 5)})[0]);
    CHECK(find_second_writer(crossing, gen) != "");
    // Both wrote txid 10 alone, at different times.
    auto same = one;
    same.push_back(listing({segment_key(gen, 10, 10, b + 10)})[0]);
    CHECK(find_second_writer(same, gen) != "");
    CHECK(find_second_writer(same, other) == "");
}

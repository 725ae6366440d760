// Never lose a committed transaction: writers killed with SIGKILL at random moments (mid-upload,
// mid-snapshot), several writer processes with the shipping process killed again and again.
// Each writer prints "C <id>" after every COMMIT returns; those are the transactions it saw
// committed.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <thread>

#include "restore.h"
#include "retention.h"
#include "sidefile.h"
#include "support/db.h"
#include "support/proxy.h"
#include "support/test_server.h"

using namespace walship;
using namespace walship::test;

namespace {

struct Child {
    pid_t pid = -1;
    int out = -1;
};

std::string writer_path() { return binary_dir() + "/tests/walship-test-writer"; }

Child spawn(const std::vector<std::string>& args) {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        execvp(argv[0], argv.data());
        _exit(127);
    }
    close(fds[1]);
    return {pid, fds[0]};
}

// Reads everything the child printed (it has exited or been killed) and collects committed ids.
void collect(Child& c, std::set<long long>* ids) {
    std::string all;
    char buf[65536];
    ssize_t n;
    while ((n = read(c.out, buf, sizeof buf)) > 0) all.append(buf, size_t(n));
    close(c.out);
    c.out = -1;
    size_t pos = 0;
    for (;;) {
        size_t nl = all.find('\n', pos);
        if (nl == std::string::npos) break;  // a line cut by the kill is not a confirmation
        if (all.compare(pos, 2, "C ") == 0) ids->insert(std::stoll(all.substr(pos + 2, nl - pos - 2)));
        pos = nl + 1;
    }
}

int wait_exit(pid_t pid) {
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// Everything a child printed; it must exit with status 0.
std::string output_of(Child& c) {
    std::string all;
    char buf[4096];
    ssize_t n;
    while ((n = read(c.out, buf, sizeof buf)) > 0) all.append(buf, size_t(n));
    close(c.out);
    CHECK(wait_exit(c.pid) == 0);
    return all;
}

// Asks the writer to close its database and exit (SIGTERM); collects what it printed; its exit code.
int term_and_collect(Child& c, std::set<long long>* ids) {
    kill(c.pid, SIGTERM);
    collect(c, ids);
    return wait_exit(c.pid);
}

void kill_and_collect(Child& c, std::set<long long>* ids) {
    kill(c.pid, SIGKILL);
    // Drain while it dies so a full pipe never blocks it.
    collect(c, ids);
    wait_exit(c.pid);
}

// Opens the database in a writer process in "flush" mode (it ships what the WAL holds, then
// flushes) and returns its exit code. It prints no confirmations.
int flush_with_writer(const std::string& db, const std::string& url) {
    Child f = spawn({writer_path(), "flush", db, url});
    std::set<long long> none;
    collect(f, &none);
    return wait_exit(f.pid);
}

// How many of the ids a writer saw committed are not in the (restored) database.
long long missing_ids(Db& r, const std::set<long long>& committed) {
    long long missing = 0;
    for (long long id : committed) missing += r.integer("select count(*) = 0 from log where id = " + std::to_string(id));
    return missing;
}

std::string restore_latest(const std::string& url, const std::string& out) {
    auto store = s3::open_store(url, test::env());
    REQUIRE(store.ok());
    ::unlink(out.c_str());
    RestoreOptions opt;
    opt.output = out;
    auto r = restore(*store.value(), opt);
    return r.ok() ? "" : r.error().str();
}

int cycles() {
    const char* v = getenv("WALSHIP_CRASH_CYCLES");
    return v ? atoi(v) : 50;
}

uint32_t pid_of_shipper(const std::string& db) {
    std::ifstream f(db + "-walship", std::ios::binary);
    char buf[32] = {};
    f.read(buf, sizeof buf);
    uint64_t pid;
    memcpy(&pid, buf + 24, 8);  // SideState::shipper_pid
    return uint32_t(pid);
}

// Whether process `pid` ships the database and has published its position since `since_ms` (wall
// clock): its resume is done.
bool resumed_by(const std::string& db, pid_t pid, int64_t since_ms) {
    std::ifstream f(db + "-walship", std::ios::binary);
    std::vector<char> buf(sizeof(SideState));
    if (!f.read(buf.data(), std::streamsize(buf.size()))) return false;
    uint64_t shipper = 0, ms = 0;
    memcpy(&shipper, buf.data() + offsetof(SideState, shipper_pid), 8);
    memcpy(&ms, buf.data() + offsetof(SideState, last_ship_ms), 8);
    return shipper == uint64_t(pid) && int64_t(ms) >= since_ms;
}

}  // namespace

TEST_CASE("crash: SIGKILL at random points, then catch-up: the replica equals the local database", "[crash][integration]") {
    set_process_env();
    std::string url = new_s3_url();
    std::string dir = temp_dir();
    std::string db = dir + "/crash.db";
    std::mt19937 rng(42);
    std::set<long long> committed;
    int losses = 0, n = cycles();
    for (int cycle = 0; cycle < n; cycle++) {
        Child w = spawn({writer_path(), "run", db, url, "1", "local", cycle % 4 == 3 ? "snapshots" : ""});
        std::this_thread::sleep_for(std::chrono::milliseconds(30 + rng() % 400));
        kill_and_collect(w, &committed);
        // Catch up: a clean open ships what the WAL still holds, and its close checkpoints.
        REQUIRE(flush_with_writer(db, url) == 0);
        std::string out = dir + "/restored.db";
        REQUIRE(restore_latest(url, out) == "");
        std::string diff = compare_pages(db, out, 4096);
        INFO("cycle " << cycle);
        if (!diff.empty()) losses++;
        CHECK(diff == "");
    }
    Db r(dir + "/restored.db", nullptr, SQLITE_OPEN_READONLY);
    long long missing = missing_ids(r, committed);
    printf("crash test (local durability): %d cycles, %zu transactions committed, %lld lost, %d mismatched restores\n",
           n, committed.size(), missing, losses);
    CHECK(missing == 0);
    CHECK(r.text("pragma integrity_check") == "ok");
}

TEST_CASE("crash: with durability=remote every COMMIT that returned is in the bucket, without catch-up", "[crash][integration]") {
    set_process_env();
    std::string url = new_s3_url();
    std::string dir = temp_dir();
    std::string db = dir + "/remote.db";
    std::mt19937 rng(7);
    std::set<long long> committed;
    long long lost = 0;
    int n = cycles();
    for (int cycle = 0; cycle < n; cycle++) {
        Child w = spawn({writer_path(), "run", db, url, "1", "remote", cycle % 5 == 4 ? "snapshots" : ""});
        std::this_thread::sleep_for(std::chrono::milliseconds(50 + rng() % 300));
        kill_and_collect(w, &committed);
        std::string out = dir + "/restored.db";
        std::string err = restore_latest(url, out);
        // Killed before its first snapshot was written: then no COMMIT can have returned either.
        if (!err.empty() && committed.empty() && err.find("no generations") != std::string::npos) continue;
        REQUIRE(err == "");
        Db r(out, nullptr, SQLITE_OPEN_READONLY);
        long long cycle_lost = 0;
        for (long long id : committed) cycle_lost += r.integer("select count(*) = 0 from log where id = " + std::to_string(id));
        INFO("cycle " << cycle);
        CHECK(cycle_lost == 0);
        lost += cycle_lost;
    }
    printf("crash test (remote durability): %d cycles, %zu transactions committed, %lld lost\n", n, committed.size(), lost);
    CHECK(lost == 0);
}

TEST_CASE("crash with the store down: SIGKILL while WAL resets spill, the store back: the generation continues, the replica equals the local database", "[crash][spill][integration]") {
    set_process_env();
    Proxy& proxy = Proxy::get();
    proxy.reset();
    std::string url = proxy.new_url();
    std::string dir = temp_dir();
    std::string db = dir + "/spill.db";
    std::mt19937 rng(11);
    std::set<long long> committed;
    int n = std::max(10, cycles() / 5), mismatched = 0, with_spill = 0;
    {
        // The database and its first generation exist before the store goes down (a missing
        // database with an unreadable replica refuses to open).
        Child w = spawn({writer_path(), "run", db, url, "1"});
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        kill_and_collect(w, &committed);
        REQUIRE(flush_with_writer(db, url) == 0);
    }
    for (int cycle = 0; cycle < n; cycle++) {
        const int64_t spawned = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
        Child w = spawn({writer_path(), "run", db, url, "1"});
        // It continues the generation (until then it keeps the WAL whole, by design: no reset, so
        // no spill, to prove at the next open that the replica continues); a sanitizer build under
        // load took more than the 200 ms this waited once.
        for (int i = 0; i < 200 && !resumed_by(db, w.pid, spawned); i++) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        if (cycle % 2 == 0) proxy.fault("reset", 1000000);  // then the store goes down
        else proxy.fault("stall", 1000000);                 // or answers nothing
        std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % 500));
        // A slow machine (a sanitizer build, other work) may not have reset the WAL yet: the
        // kill comes once the spill file holds frames (or after 10 s), not at a fixed time.
        struct stat st {};
        auto spill_has_frames = [&] { return ::stat((db + "-walship-spill").c_str(), &st) == 0 && st.st_size > 0; };
        for (int i = 0; i < 200 && !spill_has_frames(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        kill_and_collect(w, &committed);
        bool spilled = spill_has_frames();
        with_spill += spilled;
        proxy.reset();
        REQUIRE(flush_with_writer(db, url) == 0);
        std::string out = dir + "/restored.db";
        REQUIRE(restore_latest(url, out) == "");
        INFO("cycle " << cycle << (spilled ? ", the spill file held frames" : ""));
        std::string diff = compare_pages(db, out, 4096);
        if (!diff.empty()) mismatched++;
        CHECK(diff == "");
    }
    Db r(dir + "/restored.db", nullptr, SQLITE_OPEN_READONLY);
    long long missing = missing_ids(r, committed);
    auto store = s3::open_store(url, test::env());
    REQUIRE(store.ok());
    auto gens = list_generations(*store.value());
    REQUIRE(gens.ok());
    printf("crash test (store down, spill): %d cycles (%d killed with frames in the spill file), %zu transactions committed, %lld lost, "
           "%d mismatched restores, %zu generation(s)\n", n, with_spill, committed.size(), missing, mismatched, gens->size());
    CHECK(with_spill >= n / 2);
    CHECK(missing == 0);
    CHECK(gens->size() == 1);  // every restart proved continuity through the spill file
}

TEST_CASE("a new generation started by a clock behind the newest generation's is not hidden behind it: restore takes the new one", "[crash][integration]") {
    // faketime (Debian's package) runs the first writer two hours ahead, as a host whose clock was
    // ahead (or a replacement host whose clock is behind the old one's) would.
    REQUIRE(std::system("command -v faketime >/dev/null") == 0);
    set_process_env();
    std::string url = "s3://" + new_bucket() + "/db?endpoint=" + test::endpoint() + "&region=us-east-1";
    std::string db = temp_dir() + "/clock.db";
    {
        Db plain(db, "unix");
        plain.exec("pragma journal_mode=wal");
        plain.exec("create table before(x)");
        plain.exec("insert into before values('replicated from the clock ahead')");
    }
    {
        ::setenv("FAKETIME_DONT_FAKE_MONOTONIC", "1", 1);  // only the wall clock (waits use the steady one)
        const char* asan = getenv("ASAN_OPTIONS");
        const std::string asan_before = asan ? asan : "";
        // Under AddressSanitizer, libfaketime preloaded comes before its runtime: allowed here.
        ::setenv("ASAN_OPTIONS", (asan_before + (asan_before.empty() ? "" : ":") + "verify_asan_link_order=0").c_str(), 1);
        Child ahead = spawn({"faketime", "-f", "+2h", writer_path(), "flush", db, url});
        ::unsetenv("FAKETIME_DONT_FAKE_MONOTONIC");
        if (asan) ::setenv("ASAN_OPTIONS", asan_before.c_str(), 1);
        else ::unsetenv("ASAN_OPTIONS");
        std::set<long long> none;
        collect(ahead, &none);
        REQUIRE(wait_exit(ahead.pid) == 0);
    }
    {
        // A write without walship: the replica cannot continue, the next open starts a generation.
        Db plain(db, "unix", SQLITE_OPEN_READWRITE);
        plain.exec("create table if not exists after(x)");
        plain.exec("insert into after values('written at the right time')");
    }
    REQUIRE(flush_with_writer(db, url) == 0);
    auto store = s3::open_store(url, test::env());
    REQUIRE(store.ok());
    auto gens = list_generations(*store.value());
    REQUIRE(gens.ok());
    REQUIRE(gens->size() == 2);
    std::string out = temp_dir() + "/clock-restored.db";
    REQUIRE(restore_latest(url, out) == "");
    Db r(out, nullptr, SQLITE_OPEN_READONLY);
    CHECK(r.text("select x from after") == "written at the right time");
}

TEST_CASE("several processes: 4 writers, the shipping process killed repeatedly, everything shipped", "[multiprocess][integration]") {
    set_process_env();
    std::string url = new_s3_url();
    std::string dir = temp_dir();
    std::string db = dir + "/multi.db";
    REQUIRE(flush_with_writer(db, url) == 0);  // the schema first, so the writers do not race to create it
    std::set<long long> committed;
    std::vector<Child> writers;
    for (int i = 0; i < 4; i++) writers.push_back(spawn({writer_path(), "run", db, url, std::to_string(i + 1)}));
    int kills = 0;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(8);
    while (std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(700));
        pid_t shipper = pid_t(pid_of_shipper(db));
        for (size_t i = 0; i < writers.size(); i++) {
            if (writers[i].pid != shipper) continue;
            kill_and_collect(writers[i], &committed);
            writers[i] = spawn({writer_path(), "run", db, url, std::to_string(i + 1)});
            kills++;
        }
    }
    for (auto& w : writers) kill_and_collect(w, &committed);
    REQUIRE(flush_with_writer(db, url) == 0);
    std::string out = dir + "/restored.db";
    REQUIRE(restore_latest(url, out) == "");
    CHECK(compare_pages(db, out, 4096) == "");
    Db r(out, nullptr, SQLITE_OPEN_READONLY);
    CHECK(r.integer("select count(distinct writer) from log") == 4);
    long long missing = missing_ids(r, committed);
    printf("multi-process test: 4 writers, shipper killed %d times, %zu transactions committed, %lld lost\n", kills, committed.size(), missing);
    CHECK(kills >= 3);
    CHECK(missing == 0);
}

TEST_CASE("auto-restore when several processes start at once: one restores, the others wait", "[multiprocess][integration]") {
    set_process_env();
    std::string url = new_s3_url();
    std::string dir = temp_dir();
    std::string db = dir + "/many.db";
    for (int i = 0; i < 3; i++) {
        Child w = spawn({writer_path(), "run", db, url, "1"});
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        std::set<long long> ids;
        kill_and_collect(w, &ids);
    }
    REQUIRE(flush_with_writer(db, url) == 0);
    Db local(db, nullptr, SQLITE_OPEN_READONLY);
    long long rows = local.integer("select count(*) from log");
    REQUIRE(rows > 0);
    for (const char* suffix : {"", "-wal", "-shm"}) ::unlink((db + suffix).c_str());

    std::vector<Child> starters;
    for (int i = 0; i < 4; i++) starters.push_back(spawn({writer_path(), "count", db, url}));
    for (auto& c : starters) CHECK(output_of(c) == "N " + std::to_string(rows) + "\n");
}

namespace {

// Reads a child's output for `ms` milliseconds (or until `enough` confirmations); collects
// committed ids and returns the time of each confirmation (ms from the call).
std::vector<double> confirmations_for(Child& c, int ms, std::set<long long>* ids, std::string* partial, size_t enough = SIZE_MAX) {
    std::vector<double> at;
    auto t0 = std::chrono::steady_clock::now();
    auto since = [&] { return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(); };
    while (since() < ms && at.size() < enough) {
        pollfd p{c.out, POLLIN, 0};
        if (poll(&p, 1, 10) <= 0) continue;
        char buf[4096];
        ssize_t n = read(c.out, buf, sizeof buf);
        if (n <= 0) break;
        partial->append(buf, size_t(n));
        size_t nl;
        while ((nl = partial->find('\n')) != std::string::npos) {
            if (partial->compare(0, 2, "C ") == 0) {
                ids->insert(std::stoll(partial->substr(2, nl - 2)));
                at.push_back(since());
            }
            partial->erase(0, nl + 1);
        }
    }
    return at;
}

// Children still running when a test ends (a failed REQUIRE) are killed, not left writing into a
// deleted directory while ctest waits for their output.
struct Reaper {
    std::vector<Child*> children;
    ~Reaper() {
        for (Child* c : children)
            if (c->out >= 0) {
                kill(c->pid, SIGKILL);
                close(c->out);
                wait_exit(c->pid);
            }
    }
};

pid_t wait_for_shipper(const std::string& db, pid_t want) {
    for (int i = 0; i < 500 && pid_t(pid_of_shipper(db)) != want; i++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return pid_t(pid_of_shipper(db));
}

}  // namespace

TEST_CASE("several processes, durability=remote: when the shipping process closes or dies, another takes over at once, not at its next lock attempt", "[multiprocess][remote][integration]") {
    set_process_env();
    std::string url = new_s3_url();
    std::string dir = temp_dir();
    std::string db = dir + "/handoff.db";
    REQUIRE(flush_with_writer(db, url) == 0);
    std::set<long long> committed;
    std::string pb, pc;
    Child a, b, c;
    Reaper reaper{{&a, &b, &c}};
    a = spawn({writer_path(), "run", db, url, "1", "remote"});
    REQUIRE(wait_for_shipper(db, a.pid) == a.pid);
    b = spawn({writer_path(), "run", db, url, "2", "remote"});
    REQUIRE(confirmations_for(b, 10000, &committed, &pb, 5).size() >= 5);  // b waits on a's uploads

    // a closes the database (a worker recycled): b's commits keep being confirmed.
    kill(a.pid, SIGTERM);
    std::vector<double> at = confirmations_for(b, 1500, &committed, &pb);
    collect(a, &committed);
    CHECK(wait_exit(a.pid) == 0);
    REQUIRE(at.size() > 5);
    double gap = at.front();
    for (size_t i = 1; i < at.size(); i++) gap = std::max(gap, at[i] - at[i - 1]);
    CHECK(wait_for_shipper(db, b.pid) == b.pid);
    printf("handoff after a clean close: longest wait for a confirmation %.0f ms\n", gap);
    CHECK(gap < 500);

    // b freezes, then dies: c, waiting on it, takes over.
    c = spawn({writer_path(), "run", db, url, "3", "remote"});
    REQUIRE(confirmations_for(c, 10000, &committed, &pc, 5).size() >= 5);
    kill(b.pid, SIGSTOP);
    confirmations_for(c, 150, &committed, &pc);  // c's commit now waits for the frozen shipper
    kill(b.pid, SIGKILL);
    at = confirmations_for(c, 1500, &committed, &pc);
    collect(b, &committed);
    wait_exit(b.pid);
    REQUIRE(!at.empty());
    printf("handoff after the shipping process died: first confirmation %.0f ms after the kill\n", at.front());
    CHECK(at.front() < 500);
    CHECK(wait_for_shipper(db, c.pid) == c.pid);

    CHECK(term_and_collect(c, &committed) == 0);
    std::string out = dir + "/restored.db";
    REQUIRE(restore_latest(url, out) == "");
    CHECK(compare_pages(db, out, 4096) == "");
    Db r(out, nullptr, SQLITE_OPEN_READONLY);
    long long missing = missing_ids(r, committed);
    CHECK(missing == 0);
}

// The frames of a strict commit are shipped before it shows in the wal-index. Its process dies
// while the upload is held up; the upload lands anyway. The next commit rewrites the same WAL
// frames: the shipper must see that what it shipped there never committed. The killed writer's
// rows carry `pad` random bytes (0: its usual 100-4,099, by its pid).
static void strict_phantom(const std::string& name, int pad) {
    use_walship();
    Proxy& proxy = Proxy::get();
    proxy.reset();
    std::string dir = temp_dir();
    std::string db = dir + "/" + name + ".db";
    std::string url = proxy.new_url();
    Db s(uri(db, url, "durability=remote-strict&sync_interval=100&flush_timeout=20000"));  // this process ships
    s.exec("pragma synchronous=FULL");
    s.exec("create table if not exists log(id integer primary key, writer int, pad blob)");
    s.exec("insert into log(writer, pad) values(0, randomblob(100))");
    REQUIRE(s.text("pragma walship_flush") == "ok");
    proxy.fault("delay", 1);  // the next request (the writer's segment) is forwarded 3 s late
    if (pad) ::setenv("WALSHIP_TEST_PAD", std::to_string(pad).c_str(), 1);
    Child w = spawn({writer_path(), "run", db, url, "1", "remote-strict"});
    ::unsetenv("WALSHIP_TEST_PAD");
    std::this_thread::sleep_for(std::chrono::milliseconds(1000));
    std::set<long long> confirmed;
    kill_and_collect(w, &confirmed);
    CHECK(confirmed.empty());
    std::this_thread::sleep_for(std::chrono::milliseconds(3000));  // the held upload has landed
    auto t0 = std::chrono::steady_clock::now();
    s.exec("insert into log(writer, pad) values(2, randomblob(100))");
    s.exec("insert into log(writer, pad) values(3, randomblob(100))");
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    CHECK(ms < 10000);  // not a flush_timeout
    CHECK(s.integer("select count(*) from log") == 3);
    CHECK(s.integer("select count(*) from log where writer = 1") == 0);
    CHECK(status_field(s, "errors") == 0);  // a phantom is not an error (nor is what it left behind)
    std::string out = dir + "/" + name + "-restored.db";
    REQUIRE(restore_latest(url, out) == "");
    Db r(out, nullptr, SQLITE_OPEN_READONLY);
    CHECK(r.integer("select count(*) from log where writer = 1") == 0);
    CHECK(r.integer("select count(*) from log") == 3);
    CHECK(s.text("pragma wal_checkpoint(TRUNCATE)") == "0");  // the local file, whole
    CHECK(compare_pages(db, out, 4096) == "");
}

TEST_CASE("remote-strict: a committer killed while its frames upload leaves no phantom in the replica, and the next commit at the same frames waits for its own upload", "[crash][remote][integration]") {
    strict_phantom("strict-phantom", 0);
}

TEST_CASE("remote-strict: a committer killed after writing more frames than the next commit writes: its frames past the next commit are not a broken chain, and that commit confirms at once", "[crash][remote][integration]") {
    // 20,000 bytes: a leaf page and four overflow pages, where the next commit writes one or two
    // frames. Its request for its last frame outlives it; the frames there are its own, left over.
    strict_phantom("strict-phantom-long", 20000);
}

// PRAGMA walship_status of a process that opens the database only for it (it does not ship).
static std::string status_elsewhere(const std::string& db, const std::string& url) {
    Child c = spawn({writer_path(), "status", db, url});
    return output_of(c);
}

TEST_CASE("a process that does not ship shows the shipping process's last error in walship_status, and none once uploads recover", "[multiprocess][integration]") {
    // What a health check answers when it reaches a gunicorn worker that does not ship.
    use_walship();
    Proxy& proxy = Proxy::get();
    proxy.reset();
    std::string dir = temp_dir();
    std::string db = dir + "/shared-error.db";
    std::string url = proxy.new_url();
    Db s(uri(db, url, "sync_interval=0"));  // this process ships
    s.exec("create table log(id integer primary key, writer int, pad blob)");
    REQUIRE(s.text("pragma walship_flush") == "ok");
    std::string other = status_elsewhere(db, url);
    CHECK(other.find("\"shipper\":false") != std::string::npos);
    CHECK(other.find("\"last_error\":\"\"") != std::string::npos);
    proxy.fault("503", 1000000);  // every request fails
    s.exec("insert into log(writer) values(1)");
    std::string own;
    for (int i = 0; i < 300 && own.find("SlowDown") == std::string::npos; i++) {
        own = status_text(s, "last_error");
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    REQUIRE(own.find("SlowDown") != std::string::npos);  // the upload failed after its retries
    other = status_elsewhere(db, url);
    INFO(other);
    CHECK(other.find("\"shipper\":false") != std::string::npos);
    CHECK(other.find("\"errors\":0") != std::string::npos);  // (its own count)
    CHECK(other.find("SlowDown") != std::string::npos);
    proxy.reset();
    REQUIRE(s.text("pragma walship_flush=60000") == "ok");
    other = status_elsewhere(db, url);
    INFO(other);
    CHECK(other.find("\"last_error\":\"\"") != std::string::npos);
    CHECK(other.find("SlowDown") == std::string::npos);
}

TEST_CASE("a process that does not ship reports the shipping process's lag and the requests its store keeps waiting (store_stalled_ms, store_retrying)", "[multiprocess][integration]") {
    // A health check that reaches a worker that does not ship sees the same lag and waits as one
    // that reaches the shipping worker.
    use_walship();
    Proxy& proxy = Proxy::get();
    proxy.reset();
    ::setenv("WALSHIP_S3_TIMEOUT_MS", "3000", 1);  // a hung request ends after 3 s, and is tried again
    std::string dir = temp_dir();
    std::string db = dir + "/shared-wait.db";
    std::string url = proxy.new_url();
    {
        Db s(uri(db, url, "sync_interval=0"));  // this process ships
        s.exec("create table log(id integer primary key, writer int, pad blob)");
        REQUIRE(s.text("pragma walship_flush") == "ok");
        std::string other = status_elsewhere(db, url);
        INFO(other);
        CHECK(other.find("\"shipper\":false") != std::string::npos);
        CHECK(json_number(other, "lag_ms") == 0);
        CHECK(json_number(other, "store_stalled_ms") == 0);
        proxy.fault("stall", 1);  // the upload of the next commit hangs,
        proxy.fault("503", 1);    // its second attempt is answered 503 SlowDown,
        proxy.fault("stall", 1);  // and its third hangs too
        s.exec("insert into log(writer) values(1)");
        std::this_thread::sleep_for(std::chrono::milliseconds(2000));
        other = status_elsewhere(db, url);
        INFO(other);
        CHECK(json_number(other, "pending_txns") == 1);
        CHECK(json_number(other, "lag_ms") >= 1500);  // (read 0 before)
        CHECK(json_number(other, "store_stalled_ms") >= 1500);
        CHECK(json_number(other, "store_stalled_ms") < 3000);
        CHECK(json_text(other, "last_error").empty());
        // Past the stall timeout the attempt ends and is tried again: while the third attempt
        // hangs, the others say after what error, and for how long nothing has moved.
        std::string retrying;
        for (int i = 0; i < 600 && retrying.find("SlowDown") == std::string::npos; i++) {
            retrying = status_text(s, "store_retrying");
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        REQUIRE(retrying.find("SlowDown") != std::string::npos);
        other = status_elsewhere(db, url);
        INFO(other);
        CHECK_THAT(json_text(other, "store_retrying"), Catch::Contains("put_object") && Catch::Contains("SlowDown") && Catch::Contains("of 5)"));
        CHECK(json_number(other, "store_stalled_ms") < 3000);
        CHECK(json_number(other, "lag_ms") >= 3000);
        REQUIRE(s.text("pragma walship_flush=30000") == "ok");
        other = status_elsewhere(db, url);
        INFO(other);
        CHECK(json_number(other, "lag_ms") == 0);
        CHECK(json_number(other, "store_stalled_ms") < 1000);
        CHECK(json_text(other, "store_retrying").empty());
    }
    ::unsetenv("WALSHIP_S3_TIMEOUT_MS");
}

namespace {

// A database left by a process that shipped (with its first snapshot in the bucket, or not: the
// store answered too slowly) and died; plain SQLite connections commit four more rows, each then
// held by a read transaction, so that every reader slot is held at a later mark than the last;
// then a process opens it with durability=remote and commits: the commit must confirm without
// waiting for the readers (they wait for it).
void remote_commit_under_held_slots(bool first_snapshot_shipped) {
    use_walship();
    std::string dir = temp_dir();
    std::string db = dir + "/slots.db";
    std::string url = new_s3_url();
    std::set<long long> committed;
    if (first_snapshot_shipped) {
        Child a = spawn({writer_path(), "run", db, url, "1", "local"});
        Reaper reaper{{&a}};
        std::string pa;
        REQUIRE(confirmations_for(a, 10000, &committed, &pa, 50).size() >= 50);
        auto store = store_for(url);
        for (int i = 0; i < 500 && list_generations(*store)->empty(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        REQUIRE(!list_generations(*store)->empty());
        kill_and_collect(a, &committed);  // the shipping process dies
    } else {  // written by plain SQLite: nothing in the bucket yet
        Db p(db, "unix");
        p.exec("pragma journal_mode=wal");
        p.exec("create table log(id integer primary key, writer int, pad blob)");
        for (int i = 0; i < 50; i++) p.exec("insert into log(writer, pad) values(1, randomblob(100))");
    }
    Db w(db, "unix");
    std::vector<std::unique_ptr<Db>> readers;
    for (int i = 0; i < 4; i++) {  // every reader slot held, each at a later frame than the one before
        w.exec("insert into log(writer, pad) values(9, randomblob(100))");
        readers.push_back(std::make_unique<Db>(db, "unix"));
        readers.back()->exec("begin");
        CHECK(readers.back()->integer("select count(*) from log") > 0);
    }
    auto t0 = std::chrono::steady_clock::now();
    {
        Db s(uri(db, url, "durability=remote&flush_timeout=20000"));
        s.exec("insert into log(writer, pad) values(7, randomblob(100))");
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        printf("remote commit with every reader slot held by others (%s): confirmed after %.0f ms\n",
               first_snapshot_shipped ? "resuming" : "first snapshot", ms);
        CHECK(ms < 5000);
        for (auto& r : readers) r->exec("commit");
        REQUIRE(s.text("pragma walship_flush") == "ok");
        CHECK(s.text("pragma wal_checkpoint(TRUNCATE)") == "0");
    }
    std::string out = dir + "/slots-restored.db";
    REQUIRE(restore_latest(url, out) == "");
    CHECK(compare_pages(db, out, 4096) == "");
    Db r(out, nullptr, SQLITE_OPEN_READONLY);
    CHECK(missing_ids(r, committed) == 0);
}

}  // namespace

TEST_CASE("lag_ms counts from the oldest unshipped transaction's commit, while the shipper waits for its sync_interval too, in every process", "[multiprocess][integration]") {
    use_walship();
    std::string dir = temp_dir();
    std::string db = dir + "/paced-lag.db";
    std::string url = new_s3_url();
    Db s(uri(db, url, "sync_interval=5s"));  // this process ships, at most one upload per 5 s under steady writes
    s.exec("create table t(x)");
    REQUIRE(s.text("pragma walship_flush") == "ok");
    // The first commits after a quiet moment ship at once; then the next waits for the interval
    // (a commit still pending 300 ms later). A loaded machine may reach the interval's upload
    // before the status is read: then try again.
    bool measured = false;
    const auto first = std::chrono::steady_clock::now();  // (an earlier commit may still be the oldest)
    for (int i = 0; i < 20 && !measured; i++) {
        s.exec("insert into t values(" + std::to_string(i) + ")");
        const auto committed = std::chrono::steady_clock::now();
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        if (status_field(s, "pending_txns") == 0) continue;  // shipped at once
        std::this_thread::sleep_for(std::chrono::milliseconds(700));
        std::string own = s.text("pragma walship_status"), other = status_elsewhere(db, url);
        const auto now = std::chrono::steady_clock::now();
        if (json_number(own, "pending_txns") == 0 || json_number(other, "pending_txns") == 0) continue;
        INFO(own << "\n" << other);
        CHECK(std::chrono::duration<double, std::milli>(now - committed).count() >= 950);
        CHECK(json_number(own, "lag_ms") >= 950);  // read 0 before: the paced shipper had not looked
        CHECK(json_number(own, "lag_ms") <= std::chrono::duration<double, std::milli>(now - first).count() + 300);
        CHECK(json_number(other, "lag_ms") >= 950);
        measured = true;
    }
    REQUIRE(measured);
    REQUIRE(s.text("pragma walship_flush") == "ok");
    CHECK(status_field(s, "lag_ms") == 0);
    CHECK(json_number(status_elsewhere(db, url), "lag_ms") == 0);
}

TEST_CASE("a process taking over shipping while other connections hold every reader slot at later frames resumes by the WAL chain, without waiting for them", "[multiprocess][remote][integration]") {
    // Resuming reads the state at the replica's last frame, which needs a reader slot marked
    // there or a free one. Commits waiting for the shipper (durability=remote in several
    // processes) can hold all four at later marks until it ships: resuming must not wait for them.
    remote_commit_under_held_slots(true);
}

TEST_CASE("a first snapshot while other connections hold every reader slot at other marks shares one, as SQLite's readers do, without waiting for them", "[multiprocess][remote][integration]") {
    // A new generation's snapshot reads the state at the WAL's end; with no slot free it shares
    // the one with the highest mark below (a remote commit waited flush_timeout for the readers).
    remote_commit_under_held_slots(false);
}

TEST_CASE("fork after open: the child gets a shipper of its own, and closing the inherited connection neither hangs nor releases the parent's ship lock", "[multiprocess][remote][integration]") {
    // What a pre-forking server does when the application touched the database before forking its
    // workers (gunicorn --preload with a query at import time): each worker inherits a connection,
    // closes it, and opens its own.
    use_walship();
    std::string url = new_s3_url();
    std::string dir = temp_dir();
    std::string db = dir + "/forked.db";
    Db parent(uri(db, url, "durability=remote"));
    parent.exec("create table t(x integer primary key, who text)");
    parent.exec("insert into t(who) values('parent')");
    REQUIRE(pid_t(pid_of_shipper(db)) == getpid());

    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        alarm(30);  // a hang fails the test (SIGALRM) instead of blocking it
        int rc = sqlite3_close(parent.get());
        sqlite3* own = nullptr;
        if (rc == SQLITE_OK) rc = sqlite3_open_v2(uri(db, url, "durability=remote").c_str(), &own, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, "walship");
        for (int i = 0; i < 20 && rc == SQLITE_OK; i++) rc = sqlite3_exec(own, "insert into t(who) values('child')", nullptr, nullptr, nullptr);
        if (rc == SQLITE_OK) rc = sqlite3_close(own);
        _exit(rc == SQLITE_OK ? 0 : 1);
    }
    CHECK(wait_exit(child) == 0);  // 128 + SIGALRM: the child hung

    // The parent still ships: its lock is held, and its own remote-durable commit is confirmed.
    CHECK(pid_t(pid_of_shipper(db)) == getpid());
    int fd = ::open((db + "-walship").c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 1024;  // the ship lock's byte (sidefile.cpp)
    fl.l_len = 1;
    REQUIRE(fcntl(fd, F_OFD_GETLK, &fl) == 0);
    ::close(fd);
    CHECK(fl.l_type != F_UNLCK);
    parent.exec("insert into t(who) values('parent')");
    CHECK(parent.integer("select count(*) from t where who = 'child'") == 20);

    std::string out = dir + "/restored.db";
    REQUIRE(restore_latest(url, out) == "");
    Db r(out, nullptr, SQLITE_OPEN_READONLY);
    CHECK(r.integer("select count(*) from t where who = 'child'") == 20);
    CHECK(r.integer("select count(*) from t where who = 'parent'") == 2);
}

TEST_CASE("fork after open, then the shipping parent exits without closing (a daemon's parent): a child takes over shipping", "[multiprocess][integration]") {
    use_walship();
    std::string url = new_s3_url();
    std::string dir = temp_dir();
    std::string db = dir + "/daemon.db";
    // The grandchild outlives its parent: a subreaper between this test and them collects it.
    pid_t reaper = fork();
    REQUIRE(reaper >= 0);
    if (reaper == 0) {
        alarm(60);
        prctl(PR_SET_CHILD_SUBREAPER, 1);
        pid_t parent = fork();
        if (parent == 0) {
            sqlite3* db_parent = nullptr;
            int rc = sqlite3_open_v2(uri(db, url).c_str(), &db_parent, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, "walship");
            if (rc == SQLITE_OK) rc = sqlite3_exec(db_parent, "create table t(x integer primary key, who text); insert into t(who) values('parent')", nullptr, nullptr, nullptr);
            if (rc == SQLITE_OK) rc = sqlite3_exec(db_parent, "pragma walship_flush", nullptr, nullptr, nullptr);
            if (rc != SQLITE_OK || pid_t(pid_of_shipper(db)) != getpid()) _exit(2);
            pid_t child = fork();
            if (child == 0) {
                while (getppid() == parent || getppid() == 0) usleep(10000);  // until the parent is gone
                sqlite3* own = nullptr;
                rc = sqlite3_open_v2(uri(db, url, "durability=remote&flush_timeout=10000").c_str(), &own, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, "walship");
                for (int i = 0; i < 20 && rc == SQLITE_OK; i++) rc = sqlite3_exec(own, "insert into t(who) values('child')", nullptr, nullptr, nullptr);
                if (rc == SQLITE_OK) rc = sqlite3_close(own);
                _exit(rc == SQLITE_OK ? 0 : 3);
            }
            _exit(child > 0 ? 0 : 4);  // without closing its connection
        }
        int worst = 0;
        for (int n = 0; n < 2;) {
            int status = 0;
            pid_t p = wait(&status);
            if (p < 0) break;
            n++;
            int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            worst = std::max(worst, code);
        }
        _exit(worst);
    }
    CHECK(wait_exit(reaper) == 0);  // 3: the child's remote-durable commits were never confirmed
    std::string out = dir + "/restored.db";
    REQUIRE(restore_latest(url, out) == "");
    Db r(out, nullptr, SQLITE_OPEN_READONLY);
    CHECK(r.integer("select count(*) from t where who = 'child'") == 20);
    CHECK(r.integer("select count(*) from t where who = 'parent'") == 1);
}

TEST_CASE("several processes, durability=local: when the shipping process closes, the next commit of another process has its process take over, and when it dies another takes over within its 200 ms attempt", "[multiprocess][integration]") {
    set_process_env();
    std::string url = new_s3_url();
    std::string dir = temp_dir();
    std::string db = dir + "/handoff-local.db";
    REQUIRE(flush_with_writer(db, url) == 0);
    std::set<long long> committed;
    std::vector<std::string> partial(6);  // each child's unfinished line
    std::vector<Child> w(6);
    Reaper reaper{{&w[0], &w[1], &w[2], &w[3], &w[4], &w[5]}};
    w[0] = spawn({writer_path(), "run", db, url, "1"});
    REQUIRE(wait_for_shipper(db, w[0].pid) == w[0].pid);
    // Writer i starts and commits; writer i - 1 (the shipping one) goes away; the time until
    // writer i ships.
    auto hand_over = [&](int i, bool die) {
        w[i] = spawn({writer_path(), "run", db, url, std::to_string(i + 1)});
        REQUIRE(confirmations_for(w[i], 10000, &committed, &partial[i], 5).size() >= 5);
        if (die) kill_and_collect(w[i - 1], &committed);
        else CHECK(term_and_collect(w[i - 1], &committed) == 0);
        auto t0 = std::chrono::steady_clock::now();
        pid_t now = wait_for_shipper(db, w[i].pid);
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        printf("hand-over %d after %s: the next process ships after %.0f ms\n", i, die ? "SIGKILL" : "a clean close", ms);
        CHECK(now == w[i].pid);
        return ms;
    };
    // Three hand-overs: the old code took them at a once-a-second attempt (each under 300 ms with
    // probability 0.3).
    for (int i = 1; i < 4; i++) CHECK(hand_over(i, false) < 300);
    // Two deaths: the lock goes with the process, the pid stays in the side file. The old code
    // waited for a once-a-second attempt (each under 450 ms with probability 0.45).
    for (int i = 4; i < 6; i++) CHECK(hand_over(i, true) < 450);
    CHECK(term_and_collect(w[5], &committed) == 0);
    std::string out = dir + "/restored.db";
    REQUIRE(restore_latest(url, out) == "");
    CHECK(compare_pages(db, out, 4096) == "");
    Db r(out, nullptr, SQLITE_OPEN_READONLY);
    CHECK(missing_ids(r, committed) == 0);
}

TEST_CASE("walship snapshot --db while another process ships: that process writes the snapshot, and the command waits for it", "[multiprocess][integration]") {
    set_process_env();
    std::string url = new_s3_url();
    std::string dir = temp_dir();
    std::string db = dir + "/snapcmd.db";
    REQUIRE(flush_with_writer(db, url) == 0);
    std::set<long long> committed;
    std::string partial;
    Child w = spawn({writer_path(), "run", db, url, "1"});
    Reaper reaper{{&w}};
    REQUIRE(wait_for_shipper(db, w.pid) == w.pid);
    auto store = store_for(url);
    auto snapshots = [&] {
        auto listing = store->list("generations/");
        REQUIRE(listing.ok());
        std::vector<uint64_t> txids;
        for (auto& o : parse_listing(listing->objects))
            if (o.k.snapshot && !o.k.part) txids.push_back(o.k.first);
        return txids;
    };
    // Commits confirm before the new generation's first snapshot is uploaded: count from there.
    for (int waited = 0; snapshots().empty() && waited < 200; waited++) usleep(50 * 1000);
    REQUIRE(snapshots().size() == 1);
    for (int i = 0; i < 2; i++) {
        REQUIRE(confirmations_for(w, 10000, &committed, &partial, 20).size() >= 20);
        size_t before = snapshots().size();
        const std::set<long long> seen = committed;  // confirmed before the command starts
        Child c = spawn({binary_dir() + "/walship", "snapshot", "--db", db, url});
        std::set<long long> none;
        collect(c, &none);
        CHECK(wait_exit(c.pid) == 0);
        // The snapshot is in the bucket when the command returns, taken after the writer's commits:
        // restored at its txid, it holds every one of them.
        auto after = snapshots();
        CHECK(after.size() == before + 1);
        auto store2 = s3::open_store(url, test::env());
        REQUIRE(store2.ok());
        RestoreOptions opt;
        opt.output = dir + "/at-snapshot-" + std::to_string(i) + ".db";
        opt.txid = *std::max_element(after.begin(), after.end());
        auto r = restore(*store2.value(), opt);
        REQUIRE(r.ok());
        CHECK(r->objects == 1);  // the snapshot alone
        Db at(opt.output, nullptr, SQLITE_OPEN_READONLY);
        CHECK(missing_ids(at, seen) == 0);
    }
    CHECK(term_and_collect(w, &committed) == 0);
    std::string out = dir + "/restored.db";
    REQUIRE(restore_latest(url, out) == "");
    CHECK(compare_pages(db, out, 4096) == "");
    Db r(out, nullptr, SQLITE_OPEN_READONLY);
    CHECK(missing_ids(r, committed) == 0);
}

TEST_CASE("a process naming another replica location than the shipping process's refuses to open the database, and says both", "[multiprocess][integration]") {
    use_walship();
    const std::string x = new_s3_url(), y = new_s3_url();
    std::string dir = temp_dir();
    std::string db = dir + "/two-urls.db";
    REQUIRE(flush_with_writer(db, x) == 0);
    std::set<long long> committed;
    Child w = spawn({writer_path(), "run", db, x, "1"});
    Reaper reaper{{&w}};
    REQUIRE(wait_for_shipper(db, w.pid) == w.pid);
    // It holds the ship lock from its open; its first commit (and its table) may come later.
    std::string partial;
    REQUIRE(!confirmations_for(w, 10000, &committed, &partial, 1).empty());
    // Its commits would go to x: the open fails, naming both locations and the shipping process.
    std::string err;
    CHECK(Db::open_rc(uri(db, y), &err) != SQLITE_OK);
    INFO(err);
    auto bucket = [](const std::string& url) { return url.substr(5, url.find('/', 5) - 5); };
    CHECK(err.find(bucket(x)) != std::string::npos);
    CHECK(err.find(bucket(y)) != std::string::npos);
    CHECK(err.find("process " + std::to_string(w.pid)) != std::string::npos);
    CHECK(err.find("walship-test-secret-key") == std::string::npos);
    // So does the CLI's snapshot, which asks the shipping process (it said ok, and the snapshot went to x).
    Child c = spawn({binary_dir() + "/walship", "snapshot", "--db", db, y});
    std::set<long long> none;
    collect(c, &none);
    CHECK(wait_exit(c.pid) != 0);
    // The same bucket and prefix spelt otherwise is the same replica: another region's name, path
    // style asked for, the endpoint as localhost.
    std::string region = x, path_style = x + "&force_path_style=true", localhost = x;
    region.replace(region.find("region=us-east-1"), 16, "region=eu-west-1");
    localhost.replace(localhost.find("127.0.0.1"), 9, "localhost");
    for (const std::string& same : {region, path_style, localhost}) {
        INFO(same);
        CHECK(Db::open_rc(uri(db, same), &err) == SQLITE_OK);
    }
    // Another prefix in the same bucket is another replica.
    std::string prefix = x;
    prefix.replace(prefix.find("/db?"), 4, "/other?");
    CHECK(Db::open_rc(uri(db, prefix), &err) != SQLITE_OK);
    // Once that process is gone, the other location may take over (its own generation).
    CHECK(term_and_collect(w, &committed) == 0);
    {
        Db other(uri(db, y));
        other.exec("insert into log(id, writer, pad) values(-1, 9, x'00')");
        REQUIRE(other.text("pragma walship_flush") == "ok");
    }
    std::string out = dir + "/restored-y.db";
    REQUIRE(restore_latest(y, out) == "");
    CHECK(compare_pages(db, out, 4096) == "");
}

TEST_CASE("two hosts on one replica location (a copy restored from it keeps writing): the fork is detected, the writers' histories are not mixed", "[multiprocess][integration]") {
    set_process_env();
    setenv("WALSHIP_RETENTION_CHECK_INTERVAL", "300ms", 1);  // the check rides on retention's LIST
    std::string url = new_s3_url();
    std::string dir = temp_dir();
    std::string a_db = dir + "/host-a.db", b_db = dir + "/host-b.db";
    REQUIRE(flush_with_writer(a_db, url) == 0);
    std::set<long long> a_ids, b_ids;
    std::string a_partial, b_partial;
    Child a = spawn({writer_path(), "run", a_db, url, "1"});
    Child b;
    Reaper reaper{{&a, &b}};
    REQUIRE(confirmations_for(a, 10000, &a_ids, &a_partial, 50).size() >= 50);
    // Host B lost nothing but starts with the same replica URL: it restores A's data and writes too.
    // (Another machine: its own temporary directory, where walship's per-machine claims are.)
    const char* tmp = getenv("TMPDIR");
    std::string saved_tmp = tmp ? tmp : "";
    setenv("TMPDIR", temp_dir().c_str(), 1);
    b = spawn({writer_path(), "run", b_db, url, "2"});
    if (tmp) setenv("TMPDIR", saved_tmp.c_str(), 1);
    else unsetenv("TMPDIR");
    auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(4)) {
        confirmations_for(a, 50, &a_ids, &a_partial);
        confirmations_for(b, 50, &b_ids, &b_partial);
    }
    unsetenv("WALSHIP_RETENTION_CHECK_INTERVAL");
    CHECK(term_and_collect(a, &a_ids) == 0);
    CHECK(term_and_collect(b, &b_ids) == 0);
    REQUIRE(b_ids.size() > 0);
    auto store = s3::open_store(url, test::env());
    REQUIRE(store.ok());
    auto gens = list_generations(*store.value());
    REQUIRE(gens.ok());
    INFO(gens->size() << " generations");
    CHECK(gens->size() >= 2);  // the writer that was behind moved to a generation of its own
    // The newest generation is one writer's history alone: it restores to that database exactly.
    std::string out = dir + "/latest.db";
    REQUIRE(restore_latest(url, out) == "");
    bool is_a = compare_pages(a_db, out, 4096) == "", is_b = compare_pages(b_db, out, 4096) == "";
    CHECK((is_a || is_b));
    Db r(out, nullptr, SQLITE_OPEN_READONLY);
    CHECK(r.text("pragma integrity_check") == "ok");
    CHECK(missing_ids(r, is_a ? a_ids : b_ids) == 0);
}

TEST_CASE("a process that does not ship, while another writes steadily: its flush returns at once, and its close does not wait", "[multiprocess][integration]") {
    set_process_env();
    use_walship();  // this test process opens the database too
    std::string url = new_s3_url();
    std::string dir = temp_dir();
    std::string db = dir + "/other.db";
    REQUIRE(flush_with_writer(db, url) == 0);
    std::set<long long> ids;
    std::string partial;
    Child w = spawn({writer_path(), "run", db, url, "1"});
    Reaper reaper{{&w}};
    REQUIRE(wait_for_shipper(db, w.pid) == w.pid);
    REQUIRE(confirmations_for(w, 10000, &ids, &partial, 20).size() >= 20);
    auto t0 = std::chrono::steady_clock::now();
    auto ms = [&] { return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(); };
    {
        Db c(uri(db, url, "flush_timeout=5s&close_timeout=5s"));
        CHECK(c.integer("select count(*) from log") > 0);
        for (int i = 0; i < 3; i++) {
            confirmations_for(w, 100, &ids, &partial);  // the writer keeps committing meanwhile
            const std::set<long long> before = ids;
            t0 = std::chrono::steady_clock::now();
            REQUIRE(c.text("pragma walship_flush") == "ok");  // the old code never caught up with the writer
            double flush_ms = ms();
            printf("flush in a process that does not ship: %.0f ms\n", flush_ms);
            CHECK(flush_ms < 1500);
            CHECK(c.text("pragma walship_status").find("\"shipper\":false") != std::string::npos);
            auto store = s3::open_store(url, test::env());
            REQUIRE(store.ok());
            RestoreOptions opt;
            opt.output = dir + "/flushed-" + std::to_string(i) + ".db";
            REQUIRE(restore(*store.value(), opt).ok());
            Db r(opt.output, nullptr, SQLITE_OPEN_READONLY);
            CHECK(missing_ids(r, before) == 0);  // everything confirmed before the flush is in the bucket
        }
        t0 = std::chrono::steady_clock::now();
    }
    double close_ms = ms();
    printf("close of a process that does not ship: %.0f ms\n", close_ms);
    CHECK(close_ms < 1000);  // the old code waited close_timeout
    CHECK(term_and_collect(w, &ids) == 0);
}

TEST_CASE("crash, then plain SQLite deletes the WAL after the spill: a new generation, nothing skipped", "[crash][spill][integration]") {
    set_process_env();
    use_walship();
    std::string url = new_s3_url();
    std::string dir = temp_dir();
    std::string db = dir + "/spill-then-plain.db";
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        try {
            Db c(uri(db, url, "sync_interval=30s"));  // paced: commits wait for the interval
            c.exec("create table t(id integer primary key, v)");
            for (int i = 0; i < 50; i++) c.exec("insert into t(v) values(randomblob(500))");
            if (c.text("pragma walship_flush") != "ok") _exit(2);
            for (int i = 0; i < 50; i++) c.exec("insert into t(v) values(randomblob(500))");
            c.exec("pragma wal_checkpoint(TRUNCATE)");  // the unshipped frames go to the spill file
            for (int i = 0; i < 30; i++) c.exec("insert into t(v) values('after')");  // the next WAL
            if (write(fds[1], "r", 1) != 1) _exit(3);
            pause();
        } catch (...) {
        }
        _exit(1);
    }
    close(fds[1]);
    char c = 0;
    REQUIRE(read(fds[0], &c, 1) == 1);
    close(fds[0]);
    kill(pid, SIGKILL);
    wait_exit(pid);
    REQUIRE(file_exists(db + "-walship-spill"));
    {
        Db plain(db, nullptr);  // someone looks at the database with plain SQLite before the app restarts
        CHECK(plain.integer("select count(*) from t") == 130);
    }
    CHECK_FALSE(file_exists(db + "-wal"));  // its close checkpointed the WAL into the database and deleted it
    {
        Db w(uri(db, url));
        REQUIRE(w.text("pragma walship_flush") == "ok");
    }
    std::string out = dir + "/restored.db";
    REQUIRE(restore_latest(url, out) == "");
    CHECK(compare_pages(db, out, 4096) == "");
    Db r(out, nullptr, SQLITE_OPEN_READONLY);
    CHECK(r.integer("select count(*) from t where v = 'after'") == 30);
}

TEST_CASE("two databases of two processes on one machine with one replica location: the second open is refused, naming the first", "[multiprocess][integration]") {
    use_walship();
    std::string url = new_s3_url();
    std::string dir = temp_dir();
    Child w = spawn({writer_path(), "run", dir + "/a.db", url, "1", "local", ""});
    char c = 0;
    REQUIRE(read(w.out, &c, 1) == 1);  // its first commit: it has the location
    sqlite3* b = nullptr;
    int rc = sqlite3_open_v2(uri(dir + "/b.db", url).c_str(), &b, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, "walship");
    std::string msg = sqlite3_errmsg(b);
    sqlite3_close(b);
    INFO(msg);
    CHECK(rc != SQLITE_OK);
    CHECK(msg.find("is already used by " + dir + "/a.db (pid ") != std::string::npos);
    CHECK(msg.find("two databases cannot share one replica location") != std::string::npos);
    // The same database in another process is one database: it opens.
    {
        Db same(uri(dir + "/a.db", url));
        CHECK(same.integer("select count(*) > 0 from log") == 1);
    }
    std::set<long long> ids;
    CHECK(term_and_collect(w, &ids) == 0);
    // Once a.db is closed everywhere, the location is free for another database (restore=off: b.db
    // stays empty and starts a generation of its own).
    Db again(uri(dir + "/b.db", url, "restore=off"));
    again.exec("create table t(x)");
    CHECK(again.text("pragma walship_flush") == "ok");
}

#!/usr/bin/env python3
"""walship side by side with plain SQLite and Litestream v0.3.13. One command:

    bash bench/run.sh            (installs what is missing, then runs this file)

Builds walship (Release, build-bench/), installs Litestream from npm into bench/.tools if missing,
starts its own moto server with bench/countproxy.py in front (every replicator talks to the proxy,
which counts requests and bytes per bucket and can take the store down), runs the workloads and
writes bench/results/<UTC time>.md (the tables) and .json (every raw figure), then prints the tables.
Figures only: nothing passes or fails.

Systems: plain (SQLite, WAL, no replication), walship (local durability, sync_interval 1000 ms),
walship-remote (durability=remote), litestream (1 s monitor and sync interval), litestream-fast
(100 ms both). Litestream replicates a database that the same driver writes through the default
"unix" VFS.

Phases:
  writes   ROUNDS rounds; each round runs WRITES single-row transactions, then LONG_WRITES, then
           WRITERS processes sharing WRITES transactions, each workload on every system back to
           back (in an order rotated per round), so every run has plain SQLite's of the same round
           to compare with. walship-remote waits for the store at every commit: it runs
           REMOTE_WRITES transactions instead (and skips the long run). Before each run the page
           cache is written back (sync), and each driver waits 0.5 s after its replica's first
           snapshot, so no run pays for the one before or for its own start-up.
  pairs    the write-throughput target, measured closer: PAIRS pairs of runs (plain SQLite, then
           walship, the order alternating pair by pair) of WRITES transactions, and PAIRS_LONG pairs
           of LONG_WRITES, with the writes phase's conditions. Each pair gives one ratio (walship's
           tx/s over plain's, and the writer's CPU per transaction); the report gives their median
           and a distribution-free confidence interval of that median (order statistics, >= 90%).
  cost     all systems at once, RATE_TPS transactions/s for RATE_SECS: replication CPU, memory,
           requests and bytes; then IDLE_SECS without writes (requests per idle hour).
  lag      walship, litestream, litestream-fast, idle (one mark per LAG_GAP_MS) and busy (marks
           on top of BUSY_TPS background transactions/s), LAG_SAMPLES marks each. A sample ends when
           a restore from the store contains the mark (see walship_bench.cpp); Litestream's, when the
           first upload holding the mark's random bytes ends (the proxy keeps the bodies; one restore
           at the end checks every mark). walship's two runs go together, then Litestream's four.
  restore  RESTORE_MB database, first snapshot upload, RESTORE_TXNS transactions, then RESTORE_ROUNDS
           restores of each system, interleaved (the median is reported).
  outage   walship at OUTAGE_TPS; OUTAGE_SECS reachable, OUTAGE_SECS down (OUTAGE_MODE 503|stall),
           OUTAGE_SECS reachable; then everything must ship and restore to the local content.
  put      one PUT's round trip (4 KB, keep-alive, through the proxy) as the reference for remote
           durability; then 1, 2 and 4 client processes PUTting at once (does the store serve
           PUTs side by side?).

Environment (defaults): ROUNDS (5), WRITES (20000), LONG_WRITES (200000), WRITERS (4),
REMOTE_WRITES (1000), PAIRS (15), PAIRS_LONG (7), RATE_TPS (50), RATE_SECS (60), IDLE_SECS (60), LAG_SAMPLES (100),
LAG_GAP_MS (1100), LAG_MAX_SECS (300), BUSY_TPS (50), RESTORE_MB (1024), RESTORE_TXNS (10000), RESTORE_ROUNDS (5), OUTAGE_TPS (100),
OUTAGE_SECS (10), OUTAGE_MODE (503), PHASES (writes,pairs,cost,lag,restore,outage,put), SYSTEMS (plain,walship,walship-remote,
litestream,litestream-fast: the write and cost phases; plain must stay for the ratios).
"""
import hashlib
import http.client
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build-bench")
TOOLS = os.path.join(ROOT, "bench", ".tools")
DRIVER = os.path.join(BUILD, "bench", "walship-bench")
WALSHIP = os.path.join(BUILD, "walship")
LITESTREAM = os.path.join(TOOLS, "node_modules", "@flydotio", "litestream-linux-x64", "litestream")


def env(k, d):
    return type(d)(os.environ.get(k, d))


ROUNDS, WRITES, LONG_WRITES, WRITERS = env("ROUNDS", 5), env("WRITES", 20000), env("LONG_WRITES", 200000), env("WRITERS", 4)
REMOTE_WRITES = env("REMOTE_WRITES", 1000)
PAIRS, PAIRS_LONG = env("PAIRS", 15), env("PAIRS_LONG", 7)
RATE_TPS, RATE_SECS, IDLE_SECS = env("RATE_TPS", 50), env("RATE_SECS", 60), env("IDLE_SECS", 60)
LAG_SAMPLES, LAG_GAP_MS, BUSY_TPS = env("LAG_SAMPLES", 100), env("LAG_GAP_MS", 1100), env("BUSY_TPS", 50)
RESTORE_ROUNDS = env("RESTORE_ROUNDS", 5)
LAG_MAX_SECS = env("LAG_MAX_SECS", 300)  # a lag run stops taking marks after this long (Litestream restores slow down as segments pile up)
RESTORE_MB, RESTORE_TXNS = env("RESTORE_MB", 1024), env("RESTORE_TXNS", 10000)
OUTAGE_TPS, OUTAGE_SECS, OUTAGE_MODE = env("OUTAGE_TPS", 100), env("OUTAGE_SECS", 10), env("OUTAGE_MODE", "503")
PHASES = env("PHASES", "writes,pairs,cost,lag,restore,outage,put").split(",")
SYSTEMS = env("SYSTEMS", "plain,walship,walship-remote,litestream,litestream-fast").split(",")
os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1", WALSHIP_LOG_LEVEL="error")


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def log(msg):
    print(time.strftime("%H:%M:%S ") + msg, flush=True)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


class Bench:
    def __init__(self):
        log("building walship (Release) into build-bench/")
        sh("cmake", "-S", ROOT, "-B", BUILD, "-DCMAKE_BUILD_TYPE=Release")
        sh("cmake", "--build", BUILD, "-j", str(os.cpu_count()), "--target", "walship_bench", "walship_cli")
        if not os.path.exists(LITESTREAM):
            log("installing Litestream from npm into bench/.tools")
            os.makedirs(TOOLS, exist_ok=True)
            sh("npm", "install", "--silent", "--no-audit", "--no-fund", "@flydotio/litestream-linux-x64", cwd=TOOLS)
        self.ls_version = sh(LITESTREAM, "version").strip()
        self.run = tempfile.mkdtemp(prefix="walship-bench-")
        sh("bash", os.path.join(ROOT, "tests/support/s3server.sh"), "start", self.run)
        self.upstream = open(os.path.join(self.run, "moto.endpoint")).read().strip()
        pf = os.path.join(self.run, "proxy.port")
        self.proxy = subprocess.Popen([sys.executable, os.path.join(ROOT, "bench", "countproxy.py"), "--upstream", self.upstream, "--port-file", pf],
                                      stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.run, "proxy.log"), "w"))
        for _ in range(200):
            if os.path.exists(pf):
                break
            time.sleep(0.05)
        self.port = int(open(pf).read())
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.n = 0
        self.lock = threading.Lock()
        log(f"moto at {self.upstream}, counting proxy at {self.endpoint}, work dir {self.run}")

    def close(self):
        self.proxy.terminate()
        sh("bash", os.path.join(ROOT, "tests/support/s3server.sh"), "stop", self.run)
        shutil.rmtree(self.run, ignore_errors=True)

    def ctl(self, path):
        return urllib.request.urlopen(self.endpoint + path).read().decode()

    def stats(self, bucket, since=0.0, until=1e12):
        return json.loads(self.ctl(f"/__stats?bucket={bucket}&since={since}&until={until}"))

    def records(self, bucket):
        return json.loads(self.ctl(f"/__log?bucket={bucket}"))

    def capture(self, bucket):
        self.ctl(f"/__capture?bucket={bucket}")

    def first_uploads(self, bucket, marks):
        """For each mark [id, commit time, token]: the end of the first upload whose body holds its token, or None."""
        return json.loads(self.ctl(f"/__find?bucket={bucket}&tokens=" + ",".join(f"{tok}@{c:.9f}" for _, c, tok in marks)))

    def fresh(self, tag):
        with self.lock:
            self.n += 1
            n = self.n
        d = os.path.join(self.run, f"{n:03d}-{tag}")
        os.makedirs(d)
        bucket = f"b{n:03d}"
        urllib.request.urlopen(urllib.request.Request(f"{self.upstream}/{bucket}", method="PUT")).read()
        return d, bucket

    def url(self, bucket, direct=False):
        return f"s3://{bucket}/db?endpoint={self.upstream if direct else self.endpoint}&region=us-east-1"

    def ls_config(self, d, bucket, fast, direct=False):
        interval = "100ms" if fast else "1s"
        cfg = os.path.join(d, "litestream-direct.yml" if direct else "litestream.yml")
        with open(cfg, "w") as f:
            f.write(f"""access-key-id: bench
secret-access-key: bench
dbs:
  - path: {d}/db
    monitor-interval: {interval}
    replicas:
      - type: s3
        bucket: {bucket}
        path: db
        endpoint: {self.upstream if direct else self.endpoint}
        region: us-east-1
        force-path-style: true
        sync-interval: {interval}
""")
        return cfg

    def start_litestream(self, d, bucket, fast):
        if not os.path.exists(f"{d}/db"):
            sh(DRIVER, "write", "plain", f"{d}/db", "-", "0")  # Litestream wants the database to exist
        cfg = self.ls_config(d, bucket, fast)
        self.ls_config(d, bucket, fast, direct=True)
        p = subprocess.Popen([LITESTREAM, "replicate", "-config", cfg], stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "litestream.log"), "w"))
        return p

    def wait_first_put(self, bucket, timeout=600):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.stats(bucket)["PUT"] > 0:
                return
            time.sleep(0.05)

    def wait_quiet(self, bucket, quiet_s, timeout=120):
        """Waits until no request to bucket for quiet_s; returns when the last one ended."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            recs = self.records(bucket)
            last = max((r["t1"] for r in recs), default=0)
            if time.monotonic() - last >= quiet_s:
                return last
            time.sleep(0.1)
        return None


def proc_cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_hwm_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def driver_system(s):
    return "external" if s.startswith("litestream") else s


def case(b, system, mode, args, procs=1, tag=None):
    """One run of the driver (procs processes at once) for one system, with its replicator."""
    d, bucket = b.fresh(tag or f"{system}-{mode}")
    db, url = f"{d}/db", b.url(bucket)
    ls = None
    out = {"system": system, "mode": mode, "args": args, "procs": procs, "dir": d, "bucket": bucket}
    if mode == "write":
        os.sync()  # no run pays for the write-back of the one before (Litestream's runs leave ~170 MB dirty)
    if system.startswith("litestream"):
        ls = b.start_litestream(d, bucket, system.endswith("fast"))
        b.wait_first_put(bucket, 30)  # its first snapshot of the empty database
        time.sleep(0.5)
        ls_cpu0 = proc_cpu(ls.pid)
    t_start = time.monotonic()
    if procs == 1:
        out.update(json.loads(sh(DRIVER, mode, driver_system(system), db, url, *map(str, args))), system=system)
    else:
        start_at = time.monotonic() + 2.0
        ps = []
        for i in range(procs):
            lat = f"{d}/lat{i}"
            ps.append((subprocess.Popen([DRIVER, mode, driver_system(system), db, url, *map(str, args), f"{start_at:.6f}"], stdout=subprocess.PIPE,
                                        text=True, env=dict(os.environ, BENCH_LAT_OUT=lat)), lat))
        res = [json.loads(p.communicate()[0]) for p, _ in ps]
        lat = [float(x) for _, f in ps for x in open(f).read().split()]
        out["per_process"] = res
        out.update(txns=len(lat), seconds=max(r["seconds"] for r in res), p50_ms=pct(lat, 0.5), p90_ms=pct(lat, 0.9), p99_ms=pct(lat, 0.99),
                   max_wal_bytes=max(r["max_wal_bytes"] for r in res), cpu_work_s=sum(r["cpu_work_s"] for r in res),
                   cpu_s=sum(r["cpu_s"] for r in res), max_rss_kb=max(r["max_rss_kb"] for r in res), flush_ms=max(r["flush_ms"] for r in res))
        out["tps"] = out["txns"] / out["seconds"]
    out["driver_done"] = time.monotonic()
    if ls:
        # Let it ship the tail: done when the bucket has been quiet for three sync intervals.
        last = b.wait_quiet(bucket, 3.5 if system == "litestream" else 0.6)
        out["ship_tail_s"] = (last - out["driver_done"]) if last else None
        out["replicator_cpu_s"] = proc_cpu(ls.pid) - ls_cpu0
        out["replicator_hwm_kb"] = proc_hwm_kb(ls.pid)
        stop(ls)
    out["requests"] = b.stats(bucket, t_start)
    return out


def in_parallel(fns):
    res = [None] * len(fns)
    errs = []

    def go(i, f):
        try:
            res[i] = f()
        except Exception as e:  # noqa: BLE001 - report and carry on with the other figures
            errs.append(repr(e))
            log(f"error: {e!r}")

    ts = [threading.Thread(target=go, args=(i, f)) for i, f in enumerate(fns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return [r for r in res if r is not None]


def rotate(xs, r):
    return xs[r % len(xs):] + xs[: r % len(xs)]


def phase_writes(b, raw):
    # Within a round, every system runs one workload back to back (in an order rotated per round),
    # so each run is compared with plain SQLite's run of the same round seconds apart.
    for r in range(ROUNDS):
        for key, tag in (("writes", "w1"), ("writes_long", "wlong"), ("writes_multi", "wmulti")):
            for s in rotate(SYSTEMS, r):
                remote = s == "walship-remote"
                if remote and key == "writes_long":
                    continue
                n = REMOTE_WRITES if remote else LONG_WRITES if key == "writes_long" else WRITES
                log(f"writes round {r + 1}/{ROUNDS}: {tag} {s}")
                if key == "writes_multi":
                    out = case(b, s, "write", [n // WRITERS], procs=WRITERS, tag=f"{s}-{tag}")
                else:
                    out = case(b, s, "write", [n], tag=f"{s}-{tag}")
                out["round"] = r
                raw[key].append(out)


def phase_pairs(b, raw):
    # Only the two systems the write-throughput target compares, many times over: a pair's two runs
    # are seconds apart, so each ratio sees the same machine, and the median of many ratios is
    # steadier than the writes phase's five rounds.
    for key, n, count in (("pairs", WRITES, PAIRS), ("pairs_long", LONG_WRITES, PAIRS_LONG)):
        for i in range(count):
            pair = {}
            for s in (("plain", "walship") if i % 2 == 0 else ("walship", "plain")):
                log(f"pairs: {n} transactions, pair {i + 1}/{count}: {s}")
                out = case(b, s, "write", [n], tag=f"{s}-{key}")
                shutil.rmtree(out.pop("dir"), ignore_errors=True)
                pair[s] = out
            raw[key].append(pair)


def median_ci(xs):
    """The median of xs and a distribution-free confidence interval for it: the order statistics
    x(k), x(n+1-k) with the largest k whose coverage 1 - 2 P(Bin(n, 1/2) < k) is still >= 0.90."""
    xs, n = sorted(xs), len(xs)
    if n == 0:
        return None, None, None, None
    def below(k):  # P(Bin(n, 1/2) < k)
        c, total = 1, 0.0
        for j in range(k):
            total += c
            c = c * (n - j) // (j + 1)
        return total / 2 ** n
    k = 0
    while k + 1 <= n // 2 and 1 - 2 * below(k + 1) >= 0.90:
        k += 1
    if k == 0:
        return med(xs), None, None, None
    return med(xs), xs[k - 1], xs[n - k], 1 - 2 * below(k)


def phase_cost(b, raw):
    log(f"cost: every system at once, {RATE_TPS} tx/s for {RATE_SECS} s")
    raw["rate"] = in_parallel([lambda s=s: case(b, s, "rate", [RATE_TPS, RATE_SECS]) for s in SYSTEMS])
    log(f"idle: every replicating system at once, {IDLE_SECS} s without writes")
    settle = 8.0

    def idle(s):
        out = case(b, s, "idle", [IDLE_SECS + settle + 1])
        w0 = out["driver_done"] - IDLE_SECS - 1
        out["idle_window"] = [w0, w0 + IDLE_SECS]
        out["idle_requests"] = b.stats(out["bucket"], w0, w0 + IDLE_SECS)
        return out

    raw["idle"] = in_parallel([lambda s=s: idle(s) for s in SYSTEMS if s != "plain"])


def phase_lag(b, raw):
    log(f"lag: walship, litestream, litestream-fast; idle and busy ({BUSY_TPS} tx/s), {LAG_SAMPLES} marks each; walship's two runs, then Litestream's four")

    def lag(s, busy):
        d, bucket = b.fresh(f"{s}-lag-{'busy' if busy else 'idle'}")
        db = f"{d}/db"
        ls = None
        if s.startswith("litestream"):
            # A Litestream restore takes seconds (more as segments pile up), and at 100 ms intervals
            # several uploads end while one runs: restoring after each upload bounded most samples
            # from above only, and took so long that a run timed 20 marks, not 100. So its marks are
            # timed from the uploads themselves: the first whose body holds the mark's bytes (its
            # shadow WAL takes whole transactions only); one restore at the end checks every mark.
            ls = b.start_litestream(d, bucket, s.endswith("fast"))
            b.wait_first_put(bucket, 30)
            b.capture(bucket)
            cmd = "-"
        else:
            cmd = f"rm -f {{out}}; {WALSHIP} restore -o {{out}} '{b.url(bucket, direct=True)}' >/dev/null 2>&1"
        # Busy: a random pause of 0 to 2,000 ms before each mark. walship's next mark waits for the
        # previous one to be restorable, which is just after an upload: a pause spread evenly over
        # two of its 1 s intervals puts the mark at an even phase of the upload cycle (the 0-1,300
        # ms pause used before made short phases twice as likely, which lengthened its lag by about
        # 80 ms on average); Litestream's marks do not wait, so for them any pause would do.
        gap = LAG_GAP_MS if not busy else -2000
        t_marks = time.monotonic()
        out = json.loads(sh(DRIVER, "lag", driver_system(s), db, b.url(bucket), str(LAG_SAMPLES), str(gap), str(b.port), bucket,
                            str(BUSY_TPS if busy else 0), cmd, str(LAG_MAX_SECS)))
        # The PUT rate while the marks were taken: walship waits for each mark to be restorable
        # before the next, Litestream's runs do not, so PUTs per mark alone compares unlike spacings.
        window = (t_marks, time.monotonic())
        out["puts_per_s"] = b.stats(bucket, *window)["PUT"] / max(1e-9, window[1] - window[0])
        if ls:
            marks = out["marks"]
            t0 = time.monotonic()
            while None in (found := b.first_uploads(bucket, marks)) and time.monotonic() - t0 < 30:
                time.sleep(0.5)
            stop(ls)
            lat = [(t - c) * 1000 for (_, c, _), t in zip(marks, found) if t is not None]
            out["commit"] = {"n": len(lat), **{f"p{k}_ms": pct(lat, k / 100) if lat else 0.0 for k in (50, 90, 99)}, "max_ms": max(lat, default=0.0)}
            out["timeouts"], out["ambiguous"], out["method"] = found.count(None), None, "upload scan"
            r0 = time.monotonic()
            subprocess.run(f"{LITESTREAM} restore -config {d}/litestream-direct.yml -o {d}/check.db {db}", shell=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            out["restore"] = {"p50_ms": (time.monotonic() - r0) * 1000}
            try:
                c = sqlite3.connect(f"file:{d}/check.db?mode=ro", uri=True)
                out["restored_marks"] = c.execute("select count(*) from m").fetchone()[0]
                c.close()
            except sqlite3.Error:
                out["restored_marks"] = 0
        else:
            out["method"], out["restored_marks"] = "restore", None
        out.update(system=s, busy=busy, requests=b.stats(bucket))
        return out

    raw["lag"] = []
    for group in (["walship"], ["litestream", "litestream-fast"]):
        raw["lag"] += in_parallel([lambda s=s, busy=busy: lag(s, busy) for busy in (False, True) for s in group])


def content(path):
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    h = hashlib.sha256()
    for table in ("t", "big"):
        try:
            for row in c.execute(f"select id, {'v' if table == 't' else 'length(b), substr(b, 1, 16)'} from {table} order by id"):
                h.update(repr(row).encode())
        except sqlite3.OperationalError:
            pass
    n = c.execute("select count(*) from t").fetchone()[0]
    c.close()
    return h.hexdigest(), n


def phase_restore(b, raw):
    d0 = os.path.join(b.run, "fill")
    os.makedirs(d0, exist_ok=True)
    log(f"restore: building a {RESTORE_MB} MB database")
    fill = json.loads(sh(DRIVER, "fill", f"{d0}/db", str(RESTORE_MB)))
    raw["restore_fill"] = fill
    runs = []
    for s in ["walship", "litestream"]:
        d, bucket = b.fresh(f"{s}-restore")
        db = f"{d}/db"
        shutil.copyfile(f"{d0}/db", db)
        out = {"system": s, "db_bytes_initial": os.path.getsize(db), "bucket": bucket, "dir": d}
        log(f"restore: {s}: first snapshot of {out['db_bytes_initial'] / 1e6:.0f} MB")
        ls = None
        if s == "walship":
            r = json.loads(sh(DRIVER, "open", "walship", db, b.url(bucket)))
            out["snapshot_s"] = (r["open_ms"] + r["flush_ms"]) / 1000
            out["snapshot_status"] = r["status"]
        else:
            t0 = time.monotonic()
            ls = b.start_litestream(d, bucket, False)
            while time.monotonic() - t0 < 1200:
                recs = b.records(bucket)
                done = [x for x in recs if "snapshots/" in x["k"] and 200 <= x["s"] < 300 and
                        (x["c"] == "POST" and "uploadId" in x.get("q", "") or x["c"] == "PUT" and "partNumber" not in x.get("q", ""))]
                if done:
                    out["snapshot_s"] = done[0]["t1"] - t0
                    break
                time.sleep(0.05)
        out["snapshot_requests"] = b.stats(bucket)
        out["snapshot_mb_s"] = out["db_bytes_initial"] / 1e6 / out["snapshot_s"]
        log(f"restore: {s}: {RESTORE_TXNS} transactions")
        w = json.loads(sh(DRIVER, "write", driver_system(s), db, b.url(bucket), str(RESTORE_TXNS)))
        if ls:
            b.wait_quiet(bucket, 3.5)
            stop(ls)
        out["write"] = {k: w[k] for k in ("tps", "p99_ms", "flush_ms")}
        out["requests"] = b.stats(bucket)
        out["local_content"] = content(db)
        out["restores"] = []
        runs.append(out)
    # The restores themselves, interleaved round by round (the disk and moto drift).
    for r in range(RESTORE_ROUNDS):
        for out in rotate(runs, r):
            s, d = out["system"], out["dir"]
            dest = os.path.join(d, "restored.db")
            for f in (dest, dest + "-wal", dest + "-shm"):
                if os.path.exists(f):
                    os.unlink(f)
            sh("sync")
            log(f"restore: {s}: restoring (round {r + 1}/{RESTORE_ROUNDS})")
            t0 = time.monotonic()
            if s == "walship":
                sh(WALSHIP, "restore", "-o", dest, b.url(out["bucket"], direct=True))
            else:
                sh(LITESTREAM, "restore", "-config", f"{d}/litestream-direct.yml", "-o", dest, f"{d}/db")
            secs = time.monotonic() - t0
            size = os.path.getsize(dest)
            out["restores"].append({"restore_s": secs, "db_bytes": size, "restore_mb_s": size / 1e6 / secs,
                                    "restored_equals_local": content(dest) == out["local_content"]})
    for out in runs:
        rs = out["restores"]
        out["restore_s"] = med([x["restore_s"] for x in rs])
        out["db_bytes"] = rs[0]["db_bytes"]
        out["restore_mb_s"] = out["db_bytes"] / 1e6 / out["restore_s"]
        out["restored_equals_local"] = all(x["restored_equals_local"] for x in rs)
        del out["local_content"]
        shutil.rmtree(out.pop("dir"), ignore_errors=True)
        raw["restore"].append(out)


def phase_outage(b, raw):
    log(f"outage: walship at {OUTAGE_TPS} tx/s, {OUTAGE_SECS} s up, {OUTAGE_SECS} s down ({OUTAGE_MODE}), {OUTAGE_SECS} s up")
    d, bucket = b.fresh("walship-outage")
    db = f"{d}/db"
    out = json.loads(sh(DRIVER, "outage", "walship", db, b.url(bucket), str(OUTAGE_TPS), str(OUTAGE_SECS), str(b.port), bucket, OUTAGE_MODE))
    dest = os.path.join(d, "restored.db")
    sh(WALSHIP, "restore", "-o", dest, b.url(bucket, direct=True))
    local, restored = content(db), content(dest)
    out.update(restored_rows=restored[1], local_rows=local[1], restored_equals_local=local == restored, requests=b.stats(bucket))
    raw["outage"] = out


def phase_put(b, raw):
    d, bucket = b.fresh("put-rtt")
    body = os.urandom(4096)
    res = {}
    for name, port in (("through proxy", b.port), ("direct", int(b.upstream.rsplit(":", 1)[1]))):
        c = http.client.HTTPConnection("127.0.0.1", port)
        xs = []
        for i in range(300):
            t0 = time.perf_counter()
            c.request("PUT", f"/{bucket}/k{name[0]}{i}", body=body)
            c.getresponse().read()
            xs.append((time.perf_counter() - t0) * 1000)
        xs = xs[20:]
        res[name] = {"n": len(xs), "p50_ms": pct(xs, 0.5), "p90_ms": pct(xs, 0.9), "p99_ms": pct(xs, 0.99)}
    raw["put_rtt"] = res
    # Does the store serve PUTs side by side? Processes (not threads: no shared GIL on the client
    # side) each time PUTs over their own connection through the proxy, all at once. If N at once
    # take N times as long each, uploads in flight together (pipelining) cannot shorten a commit's
    # wait here: the store itself takes them one at a time.
    client = ("import http.client, os, sys, time\n"
              "n, tag, at = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])\n"
              f"c = http.client.HTTPConnection('127.0.0.1', {b.port}); body = os.urandom(4096)\n"
              f"c.request('PUT', '/{bucket}/warm' + tag, body=body); c.getresponse().read()\n"
              "time.sleep(max(0, at - time.time()))\n"
              "for i in range(n):\n"
              "    t0 = time.perf_counter()\n"
              f"    c.request('PUT', '/{bucket}/c%s-%d' % (tag, i), body=body); c.getresponse().read()\n"
              "    print((time.perf_counter() - t0) * 1000)\n")
    conc = {}
    for k in (1, 2, 4):
        at = time.time() + 1.0
        ps = [subprocess.Popen([sys.executable, "-c", client, "200", f"{k}-{j}", f"{at:.3f}"], stdout=subprocess.PIPE, text=True)
              for j in range(k)]
        t0 = time.time()
        xs = [float(x) for p in ps for x in p.communicate()[0].split()]
        wall = time.time() - max(t0, at)
        conc[str(k)] = {"n": len(xs), "p50_ms": pct(xs, 0.5), "p99_ms": pct(xs, 0.99), "puts_per_s": len(xs) / wall}
    raw["put_concurrent"] = conc


def machine():
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "unknown CPU")
    mem = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal")) / 1024 / 1024
    return f"{os.cpu_count()} cores (nproc), {model}, {mem:.0f} GB RAM, {os.uname().sysname} {os.uname().release}"


def f(x, fmt="{:.2f}"):
    return "-" if x is None or x != x else fmt.format(x)


def report(b, raw):
    md = [f"# walship benchmarks, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
          f"Machine: {machine()}. Store: moto (in memory) on 127.0.0.1 behind bench/countproxy.py. "
          f"Litestream {b.ls_version}. Wall {raw['wall_s'] / 60:.1f} min.", ""]
    by = lambda key, s: [x for x in raw.get(key, []) if x["system"] == s]  # noqa: E731
    writer_cpu = lambda xs: med([x["writer_cpu_s"] / x["txns"] for x in xs if x.get("writer_cpu_s")])  # noqa: E731  (one-writer runs)
    if raw.get("writes"):
        base = {k: med([x["tps"] for x in by(k, "plain")]) for k in ("writes", "writes_long", "writes_multi")}
        base_wal = {k: med([x["max_wal_bytes"] for x in by(k, "plain")]) for k in ("writes", "writes_long", "writes_multi")}
        base_p = {k: (med([x["p50_ms"] for x in by(k, "plain")]), med([x["p99_ms"] for x in by(k, "plain")])) for k in base}
        md += [f"## Writes (medians of {ROUNDS} interleaved rounds; synchronous=NORMAL)", "",
               f"Short: {WRITES} single-row transactions, one writer. Long: {LONG_WRITES}. {WRITERS} writers: {WRITERS} processes sharing {WRITES} "
               f"transactions. walship-remote runs {REMOTE_WRITES} (it waits for the store each commit) and no long run. "
               "Replication CPU: walship = driver CPU minus plain's for the same work; Litestream = its process.", "",
               "vs plain: ratio of the medians. Per round: the median (and range) of each round's ratio to plain SQLite's run of the same round.", "",
               "Writer CPU: the application thread's own CPU time (getrusage RUSAGE_THREAD) per transaction, median, as a ratio to plain's: "
               "steadier than throughput on a noisy machine (one-writer runs only).", "",
               "| run | system | tx/s | vs plain | per round | writer CPU vs plain | p50 ms | p99 ms | p50/p99 vs plain | max WAL MB | WAL vs plain | repl. CPU s / 1,000 tx | PUT | bytes up MB |",
               "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for key, name in (("writes", "short"), ("writes_long", "long"), ("writes_multi", f"{WRITERS} writers")):
            for s in SYSTEMS:
                xs = by(key, s)
                if not xs:
                    continue
                tps, p50, p99, wal = (med([x[k] for x in xs]) for k in ("tps", "p50_ms", "p99_ms", "max_wal_bytes"))
                if s.startswith("litestream"):
                    cpu = med([x["replicator_cpu_s"] / x["txns"] * 1000 for x in xs])
                elif s == "plain":
                    cpu = None
                else:
                    cpu = med([x["cpu_s"] / x["txns"] * 1000 for x in xs]) - med([x["cpu_s"] / x["txns"] * 1000 for x in by(key, "plain")])
                plain_by_round = {x.get("round"): x["tps"] for x in by(key, "plain")}
                paired = [x["tps"] / plain_by_round[x["round"]] for x in xs if x.get("round") in plain_by_round]
                per_round = f"{med(paired):.3f} ({min(paired):.3f}-{max(paired):.3f})" if paired and s != "plain" else "-"
                writer = f"{writer_cpu(xs) / writer_cpu(by(key, 'plain')):.3f}" if s != "plain" and key != "writes_multi" and by(key, "plain") else "-"
                md.append(f"| {name} | {s} | {tps:,.0f} | {tps / base[key]:.3f} | {per_round} | {writer} | {p50:.3f} | {p99:.3f} | {p50 / base_p[key][0]:.2f} / {p99 / base_p[key][1]:.2f} | "
                          f"{wal / 1e6:.1f} | {wal / max(base_wal[key], 1):.2f} | {f(cpu, '{:.3f}')} | {med([x['requests']['PUT'] for x in xs]):.0f} | "
                          f"{med([x['requests']['bytes_up'] for x in xs]) / 1e6:.1f} |")
        md.append("")
    if raw.get("pairs") or raw.get("pairs_long"):
        md += ["## Write throughput in pairs (plain SQLite and walship only)", "",
               "Each pair: one run of plain SQLite and one of walship (local durability), seconds apart, the order alternating pair by pair, with the "
               "writes phase's conditions (sync before each run, walship's clock starts 0.5 s after its first snapshot). Ratio: walship / plain of the "
               "same pair. CI: a distribution-free confidence interval of the median ratio (order statistics; its coverage in brackets).", "",
               "| workload | pairs | tx/s ratio: median | CI | range | pairs >= 0.97 | writer CPU ratio: median | CI | plain tx/s (median) |",
               "|---|---|---|---|---|---|---|---|---|"]
        for key, n in (("pairs", WRITES), ("pairs_long", LONG_WRITES)):
            ps = raw.get(key, [])
            if not ps:
                continue
            tps = [p["walship"]["tps"] / p["plain"]["tps"] for p in ps]
            cpu = [(p["walship"]["writer_cpu_s"] / p["walship"]["txns"]) / (p["plain"]["writer_cpu_s"] / p["plain"]["txns"]) for p in ps]
            m, lo, hi, cov = median_ci(tps)
            cm, clo, chi, ccov = median_ci(cpu)
            ci = f"{lo:.3f}-{hi:.3f} ({cov:.0%})" if lo is not None else "-"
            cci = f"{clo:.3f}-{chi:.3f} ({ccov:.0%})" if clo is not None else "-"
            md.append(f"| {n:,} transactions | {len(ps)} | {m:.3f} | {ci} | {min(tps):.3f}-{max(tps):.3f} | {sum(t >= 0.97 for t in tps)} | "
                      f"{cm:.3f} | {cci} | {med([p['plain']['tps'] for p in ps]):,.0f} |")
        md.append("")
    if raw.get("rate"):
        plain = next((x for x in raw["rate"] if x["system"] == "plain"), None)
        md += [f"## Cost at {RATE_TPS} tx/s for {RATE_SECS} s (all systems at once), and idle", "",
               "Replication CPU and extra memory: walship = its writer process minus the plain SQLite writer's (CPU from getrusage, memory "
               "from peak RSS); Litestream = its own process (/proc/PID/stat, VmHWM). Requests per hour extrapolate the measured window.", "",
               "| system | tx | repl. CPU s / 1,000 tx | extra peak RSS MB | PUT | GET | LIST | DELETE | POST | HEAD | per 1,000 tx: requests | MB up | requests per hour (steady writes) |",
               "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for x in raw["rate"]:
            if x["system"] == "plain":
                continue
            k = x["txns"] / 1000
            if x["system"].startswith("litestream"):
                cpu, rss = x["replicator_cpu_s"], x["replicator_hwm_kb"] / 1024
            else:
                cpu = x["cpu_s"] - plain["cpu_s"] * x["txns"] / plain["txns"]
                rss = (x["max_rss_kb"] - plain["max_rss_kb"]) / 1024
            q = x["requests"]
            total = sum(q[c] for c in ("PUT", "GET", "LIST", "DELETE", "POST", "HEAD"))
            md.append(f"| {x['system']} | {x['txns']} | {cpu / k:.3f} | {rss:.1f} | {q['PUT']} | {q['GET']} | {q['LIST']} | {q['DELETE']} | {q['POST']} | "
                      f"{q['HEAD']} | {total / k:.1f} | {q['bytes_up'] / 1e6 / k:.2f} | {total * 3600 / RATE_SECS:,.0f} |")
        md += ["", f"Idle: one commit, {8} s to settle, then {IDLE_SECS} s without writes; requests in that window, and per idle hour (x {3600 // IDLE_SECS}):", "",
               "| system | PUT | GET | LIST | DELETE | other | per idle hour |", "|---|---|---|---|---|---|---|"]
        for x in raw.get("idle", []):
            q = x["idle_requests"]
            total = sum(q[c] for c in ("PUT", "GET", "LIST", "DELETE", "POST", "HEAD"))
            md.append(f"| {x['system']} | {q['PUT']} | {q['GET']} | {q['LIST']} | {q['DELETE']} | {q['POST'] + q['HEAD']} | {total * 3600 / IDLE_SECS:.0f} |")
        md.append("")
    if raw.get("lag"):
        md += [f"## Replication lag: COMMIT returning to the mark being restorable from the bucket ({LAG_SAMPLES} marks)", "",
               f"Idle: one mark every {LAG_GAP_MS} ms, nothing else. Busy: each mark after a random pause of 0-2,000 ms (walship: once the previous one is restorable; "
               f"the pause spans two of its 1 s upload intervals, so marks fall at an even phase of the cycle), on top of {BUSY_TPS} tx/s. walship's idle and busy runs at once, then Litestream's four. "
               "walship (measured by restore): a sample ends at the end of the PUT after which a restore (straight from moto) contained the mark; "
               "'ambiguous' samples had another PUT end during that restore and take the later one (upper bound). Litestream (measured by upload scan): "
               "a sample ends at the end of the first upload whose body holds the mark's 16 random bytes (its segments are LZ4 frames, where bytes not "
               "seen before are literal, and its shadow WAL takes whole transactions); one restore at the end must hold every mark "
               "('restored marks'; its time is the 'restore' column).", "",
               "| system | load | measured by | marks | p50 ms | p90 ms | p99 ms | max ms | ambiguous | timeouts | restored marks | restore p50 ms | PUT | PUT per mark | PUT/s while marking |",
               "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for x in sorted(raw["lag"], key=lambda x: (x["busy"], x["system"])):
            c = x["commit"]
            amb = "-" if x.get("ambiguous") is None else x["ambiguous"]
            got = "-" if x.get("restored_marks") is None else x["restored_marks"]
            md.append(f"| {x['system']} | {'busy' if x['busy'] else 'idle'} | {x.get('method', 'restore')} | {c['n']} | {c['p50_ms']:.1f} | {c['p90_ms']:.1f} | {c['p99_ms']:.1f} | "
                      f"{c['max_ms']:.1f} | {amb} | {x['timeouts']} | {got} | {x['restore']['p50_ms']:.0f} | {x['requests']['PUT']} | {x['requests']['PUT'] / max(1, c['n']):.2f} | {x.get('puts_per_s', 0):.2f} |")
        md.append("")
    if raw.get("restore"):
        md += [f"## Restore: {raw['restore_fill']['db_bytes'] / 1e6:.0f} MB database (rows of 2,000 random + 2,000 zero bytes), "
               f"then {RESTORE_TXNS} transactions since the snapshot; restores interleaved, median of the rounds", "",
               "| system | first snapshot s | snapshot MB/s | restore s (median) | restore MB/s | every restore s | restored equals local | PUT | MB up |",
               "|---|---|---|---|---|---|---|---|---|"]
        for x in raw["restore"]:
            every = ", ".join(f"{r['restore_s']:.2f}" for r in x.get("restores", []))
            md.append(f"| {x['system']} | {x['snapshot_s']:.2f} | {x['snapshot_mb_s']:.0f} | {x['restore_s']:.2f} | {x['restore_mb_s']:.0f} | {every} | "
                      f"{x['restored_equals_local']} | {x['requests']['PUT']} | {x['requests']['bytes_up'] / 1e6:.0f} |")
        md.append("")
    if raw.get("outage"):
        o = raw["outage"]
        md += [f"## Outage: walship (local durability) at {OUTAGE_TPS} tx/s; store down ({OUTAGE_MODE}) for {OUTAGE_SECS} s", "",
               "| phase | commits | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|"]
        for p in ("before", "during", "after"):
            md.append(f"| {p} | {o[p]['n']} | {o[p]['p50_ms']:.3f} | {o[p]['p99_ms']:.3f} | {o[p]['max_ms']:.3f} |")
        md += ["", f"After the store came back: walship_flush took {o['flush_ms']:.0f} ms; restored {o['restored_rows']} rows, local {o['local_rows']}; "
               f"restored equals local: {o['restored_equals_local']}. Errors answered during the outage: {o['requests']['errors']}.", ""]
    if raw.get("put_rtt"):
        md += ["## One PUT's round trip (4 KB, keep-alive, 280 PUTs)", "", "| path | p50 ms | p90 ms | p99 ms |", "|---|---|---|---|"]
        for k, v in raw["put_rtt"].items():
            md.append(f"| {k} | {v['p50_ms']:.2f} | {v['p90_ms']:.2f} | {v['p99_ms']:.2f} |")
        md.append("")
    if raw.get("put_concurrent"):
        c = raw["put_concurrent"]
        md += ["PUTs side by side (each client its own process and connection, through the proxy, 200 PUTs each): "
               "when N at once each take about N times as long and the store serves no more PUTs a second, it takes "
               "them one at a time, and uploads in flight together cannot shorten a remote-durable commit's wait here.", "",
               "| clients at once | p50 ms | p99 ms | PUTs/s in all |", "|---|---|---|---|"]
        for k, v in c.items():
            md.append(f"| {k} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} | {v['puts_per_s']:.0f} |")
        md.append("")
    return "\n".join(md) + "\n"


def main():
    t0 = time.time()
    b = Bench()
    raw = {"writes": [], "writes_long": [], "writes_multi": [], "pairs": [], "pairs_long": [], "restore": [], "env": {k: os.environ.get(k) for k in (
        "ROUNDS", "WRITES", "LONG_WRITES", "WRITERS", "REMOTE_WRITES", "PAIRS", "PAIRS_LONG", "RATE_TPS", "RATE_SECS", "IDLE_SECS", "LAG_SAMPLES", "LAG_GAP_MS",
        "BUSY_TPS", "LAG_MAX_SECS", "RESTORE_MB", "RESTORE_TXNS", "OUTAGE_TPS", "OUTAGE_SECS", "OUTAGE_MODE", "PHASES")}}
    try:
        for name, fn in (("writes", phase_writes), ("pairs", phase_pairs), ("cost", phase_cost), ("lag", phase_lag), ("restore", phase_restore),
                         ("outage", phase_outage), ("put", phase_put)):
            if name in PHASES:
                fn(b, raw)
    finally:
        raw["wall_s"] = time.time() - t0
        text = report(b, raw)
        os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        with open(os.path.join(ROOT, "bench", "results", stamp + ".md"), "w") as fh:
            fh.write(text)
        with open(os.path.join(ROOT, "bench", "results", stamp + ".json"), "w") as fh:
            json.dump(raw, fh, indent=1)
        b.close()
        print(text)
        log(f"wrote bench/results/{stamp}.md and .json")


if __name__ == "__main__":
    main()

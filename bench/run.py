#!/usr/bin/env python3
"""walship side by side with plain SQLite and Litestream v0.3.13, one command:

    python3 bench/run.py            (bash bench/run.sh does the same)

Builds walship (Release), installs Litestream from npm if missing, starts a local S3-compatible
server (moto) behind a request-counting proxy, and runs each workload for each system,
interleaving systems round by round so machine drift cancels. Writes bench/results/<time>.md and
.json and prints the table. Figures only: nothing passes or fails.

Environment: ROUNDS (2), WRITES (20000), REMOTE_WRITES (2000), LAG_SAMPLES (100), LAG_GAP_MS (1100),
RATE_TPS (50), RATE_SECS (20), IDLE_SECS (30), RESTORE_MB (200), RESTORE_TXNS (10000).
"""
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build-bench")
TOOLS = os.path.join(ROOT, "bench", ".tools")
ENV = lambda k, d: type(d)(os.environ.get(k, d))
ROUNDS, WRITES, REMOTE_WRITES = ENV("ROUNDS", 2), ENV("WRITES", 20000), ENV("REMOTE_WRITES", 2000)
LAG_SAMPLES, LAG_GAP = ENV("LAG_SAMPLES", 100), ENV("LAG_GAP_MS", 1100)
RATE_TPS, RATE_SECS, IDLE_SECS = ENV("RATE_TPS", 50), ENV("RATE_SECS", 20), ENV("IDLE_SECS", 30)
RESTORE_MB, RESTORE_TXNS = ENV("RESTORE_MB", 200), ENV("RESTORE_TXNS", 10000)
os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1", WALSHIP_LOG_LEVEL="warn")


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def setup():
    sh("cmake", "-S", ROOT, "-B", BUILD, "-DCMAKE_BUILD_TYPE=Release")
    sh("cmake", "--build", BUILD, "-j", str(os.cpu_count()), "--target", "walship_bench", "walship_cli", "walship_module")
    ls = os.path.join(TOOLS, "node_modules", "@flydotio", "litestream-linux-x64", "litestream")
    if not os.path.exists(ls):
        os.makedirs(TOOLS, exist_ok=True)
        sh("npm", "install", "--silent", "--no-audit", "--no-fund", "@flydotio/litestream-linux-x64", cwd=TOOLS)
    run = tempfile.mkdtemp(prefix="walship-bench-")
    sh("bash", os.path.join(ROOT, "tests/support/s3server.sh"), "start", run)
    upstream = open(os.path.join(run, "moto.endpoint")).read().strip()
    proxy = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests/support/faultproxy.py"), "--upstream", upstream,
                              "--port-file", os.path.join(run, "proxy.port")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if os.path.exists(os.path.join(run, "proxy.port")) and open(os.path.join(run, "proxy.port")).read().strip():
            break
        time.sleep(0.05)
    port = int(open(os.path.join(run, "proxy.port")).read().strip())
    return run, upstream, proxy, port, ls


class Bench:
    def __init__(self):
        self.run, self.upstream, self.proxy, self.port, self.litestream = setup()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.n = 0

    def close(self):
        self.proxy.terminate()
        sh("bash", os.path.join(ROOT, "tests/support/s3server.sh"), "stop", self.run)

    def reset_proxy(self):
        urllib.request.urlopen(urllib.request.Request(self.endpoint + "/__reset", method="POST")).read()

    def requests(self):
        lines = urllib.request.urlopen(self.endpoint + "/__stats").read().decode().splitlines()[1:]
        counts = {"PUT": 0, "GET": 0, "LIST": 0, "DELETE": 0, "POST": 0, "HEAD": 0}
        for line in lines:
            method, path = line.split(" ")[0], line.split(" ")[1] if len(line.split(" ")) > 1 else ""
            if method == "GET" and ("list-type" in path or "prefix=" in path):
                method = "LIST"
            counts[method] = counts.get(method, 0) + 1
        return counts

    def fresh(self):
        self.n += 1
        d = tempfile.mkdtemp(prefix="case-", dir=self.run)
        bucket = f"bench-{self.n}-{int(time.time() * 1000) % 100000}"
        urllib.request.urlopen(urllib.request.Request(f"{self.upstream}/{bucket}", method="PUT")).read()
        return d, bucket

    def start_litestream(self, d, bucket, fast):
        interval = "100ms" if fast else "1s"
        cfg = os.path.join(d, "litestream.yml")
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
        endpoint: {self.endpoint}
        region: us-east-1
        force-path-style: true
        sync-interval: {interval}
""")
        # Litestream wants the database to exist.
        sh(os.path.join(BUILD, "bench", "walship-bench"), "write", "plain", f"{d}/db", "-", "1")
        p = subprocess.Popen([self.litestream, "replicate", "-config", cfg], stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "ls.log"), "w"))
        time.sleep(1.5)
        return p, cfg

    @staticmethod
    def proc_cpu(pid):
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def proc_rss_kb(pid):
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    def case(self, system, mode, *args, before_run=None):
        """Runs the driver for one system; returns its JSON plus replicator and request figures."""
        d, bucket = self.fresh()
        url = f"s3://{bucket}/db?endpoint={self.endpoint}"
        ls = None
        if system.startswith("litestream"):
            ls, cfg = self.start_litestream(d, bucket, system.endswith("fast"))
            cpu0 = self.proc_cpu(ls.pid)
        self.reset_proxy()
        driver_system = {"litestream": "external", "litestream-fast": "external"}.get(system, system)
        out = json.loads(sh(os.path.join(BUILD, "bench", "walship-bench"), mode, driver_system, f"{d}/db", url, *map(str, args)))
        if ls:
            time.sleep(2.5 if system == "litestream" else 0.5)  # let it ship the tail
            out["replicator_cpu_s"] = self.proc_cpu(ls.pid) - cpu0
            out["replicator_rss_kb"] = self.proc_rss_kb(ls.pid)
        out["requests"] = self.requests()
        out["dir"], out["url"] = d, url
        if ls:
            out["litestream_config"] = cfg
            ls.send_signal(signal.SIGTERM)
            ls.wait(timeout=30)
        return out


def rotate(systems, r):
    return systems[r % len(systems):] + systems[: r % len(systems)]


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    b = Bench()
    raw = {"writes": [], "remote": [], "lag": [], "rate": [], "idle": [], "restore": []}
    systems = ["plain", "walship", "litestream", "litestream-fast"]
    try:
        for r in range(ROUNDS):
            for s in rotate(systems, r):
                print(f"round {r + 1}: write {WRITES} x {s}", flush=True)
                raw["writes"].append(b.case(s, "write", WRITES))
            print(f"round {r + 1}: write {REMOTE_WRITES} x walship-remote", flush=True)
            raw["remote"].append(b.case("walship-remote", "write", REMOTE_WRITES))
        for s in ["plain", "walship", "litestream", "litestream-fast"]:
            print(f"rate {RATE_TPS} tx/s for {RATE_SECS} s: {s}", flush=True)
            raw["rate"].append(b.case(s, "rate", RATE_TPS, RATE_SECS))
        for s in ["walship", "litestream"]:
            print(f"idle {IDLE_SECS} s: {s}", flush=True)
            raw["idle"].append(b.case(s, "idle", IDLE_SECS))
        for s in ["walship", "litestream", "litestream-fast"]:
            print(f"lag, {LAG_SAMPLES} samples {LAG_GAP} ms apart: {s}", flush=True)
            raw["lag"].append(b.case(s, "lag", LAG_SAMPLES, b.port, LAG_GAP))
        raw["restore"] = restore_bench(b)
    finally:
        b.close()
    report(raw)


def restore_bench(b):
    out = []
    for s in ["walship", "litestream"]:
        print(f"restore: {RESTORE_MB} MB + {RESTORE_TXNS} transactions: {s}", flush=True)
        t0 = time.time()
        r = b.case(s, "fill", RESTORE_MB, RESTORE_TXNS)
        fill_s = time.time() - t0
        dest = os.path.join(r["dir"], "restored.db")
        t0 = time.time()
        if s == "walship":
            sh(os.path.join(BUILD, "walship"), "restore", "-o", dest, r["url"])
        else:
            sh(b.litestream, "restore", "-config", r["litestream_config"], "-o", dest, os.path.join(r["dir"], "db"))
        secs = time.time() - t0
        size = os.path.getsize(dest)
        out.append({"system": s, "db_bytes": size, "restore_s": secs, "restore_mb_s": size / 1e6 / secs, "fill_s": fill_s, "requests": r["requests"]})
    return out


def report(raw):
    plain = [x for x in raw["writes"] if x["system"] == "plain"]
    base_tps = med([x["tps"] for x in plain])
    base_wal = med([x["max_wal_bytes"] for x in plain])
    rows = []
    for s in ["plain", "walship", "litestream", "litestream-fast"]:
        xs = [x for x in raw["writes"] if x["system"] == s]
        tps = med([x["tps"] for x in xs])
        rows.append((s, f"{tps:,.0f}", f"{tps / base_tps:.3f}", f"{med([x['p50_ms'] for x in xs]):.3f}", f"{med([x['p99_ms'] for x in xs]):.3f}",
                     f"{med([x['max_wal_bytes'] for x in xs]) / 1e6:.1f}", f"{med([x['max_wal_bytes'] for x in xs]) / max(base_wal, 1):.2f}"))
    rx = raw["remote"]
    rows.append(("walship remote", f"{med([x['tps'] for x in rx]):,.0f}", f"{med([x['tps'] for x in rx]) / base_tps:.3f}",
                 f"{med([x['p50_ms'] for x in rx]):.3f}", f"{med([x['p99_ms'] for x in rx]):.3f}", f"{med([x['max_wal_bytes'] for x in rx]) / 1e6:.1f}", "-"))
    md = [f"# walship benchmarks, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
          f"Machine: {os.cpu_count()} cores, {cpu_model()}, {mem_gb():.0f} GB RAM. Store: moto on 127.0.0.1 behind a counting proxy. "
          f"Medians of {ROUNDS} interleaved rounds.", "",
          f"## Writes: {WRITES} single-row transactions (remote durability: {REMOTE_WRITES}), synchronous=NORMAL (remote: FULL)", "",
          "| system | tx/s | vs plain | p50 ms | p99 ms | max WAL MB | WAL vs plain |", "|---|---|---|---|---|---|---|"]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md += ["", f"## Cost at {RATE_TPS} tx/s for {RATE_SECS} s, and idle", "",
           "| system | CPU s per 1,000 tx (replication) | peak RSS MB | PUT | GET | LIST | DELETE/POST | requests per 1,000 tx |", "|---|---|---|---|---|---|---|---|"]
    plain_rate = next(x for x in raw["rate"] if x["system"] == "plain")
    for x in raw["rate"]:
        k = x["txns"] / 1000
        cpu = x.get("replicator_cpu_s", x["cpu_s"] - plain_rate["cpu_s"] * x["txns"] / max(plain_rate["txns"], 1))
        rss = x.get("replicator_rss_kb", x["max_rss_kb"]) / 1024
        req = x["requests"]
        total = sum(req.values())
        md.append(f"| {x['system']} | {cpu / k:.3f} | {rss:.0f} | {req['PUT']} | {req['GET']} | {req['LIST']} | {req['DELETE'] + req['POST']} | {total / k:.1f} |")
    for x in raw["idle"]:
        req = x["requests"]
        md.append(f"| {x['system']} idle {IDLE_SECS} s | - | - | {req['PUT']} | {req['GET']} | {req['LIST']} | {req['DELETE'] + req['POST']} | per idle hour: {sum(req.values()) * 3600 / IDLE_SECS:.0f} |")
    md += ["", f"## Lag: commit to the store receiving a PUT, {LAG_SAMPLES} commits {LAG_GAP} ms apart", "", "| system | p50 ms | p90 ms | p99 ms |", "|---|---|---|---|"]
    for x in raw["lag"]:
        md.append(f"| {x['system']} | {x['p50_ms']:.1f} | {x.get('p90_ms', float('nan')):.1f} | {x['p99_ms']:.1f} |")
    md += ["", f"## Restore: about {RESTORE_MB} MB plus {RESTORE_TXNS} transactions since the snapshot", "", "| system | database MB | seconds | MB/s | first upload (fill + ship) s |", "|---|---|---|---|---|"]
    for x in raw["restore"]:
        md.append(f"| {x['system']} | {x['db_bytes'] / 1e6:.0f} | {x['restore_s']:.2f} | {x['restore_mb_s']:.0f} | {x['fill_s']:.1f} |")
    text = "\n".join(md) + "\n"
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    open(os.path.join(ROOT, "bench", "results", stamp + ".md"), "w").write(text)
    json.dump(raw, open(os.path.join(ROOT, "bench", "results", stamp + ".json"), "w"), indent=1)
    print(text)


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def mem_gb():
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal"):
            return int(line.split()[1]) / 1024 / 1024
    return 0


if __name__ == "__main__":
    main()

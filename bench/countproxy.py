#!/usr/bin/env python3
"""Counting HTTP proxy for the benchmarks: sits between the replicators and the local S3 server.

    countproxy.py --upstream http://127.0.0.1:PORT --port-file FILE

Forwards every request unchanged (path-style S3: the first path segment is the bucket) and logs
one record per request: bucket, class (PUT, GET, LIST, HEAD, DELETE, POST), key, bytes sent and
received, status, start and end time on the system monotonic clock (CLOCK_MONOTONIC, the clock of
C++ std::chrono::steady_clock and Python time.monotonic, so the driver can compare). Control
requests (never forwarded, never logged):

    GET  /__stats?bucket=B[&since=T][&until=T]  JSON: counts and bytes by class for B's requests
                                                 started in [since, until)
    GET  /__puts?bucket=B&after=T                "N LAST_END": successful PUT/POST requests to B that
                                                 ended after T, and the newest end time
    GET  /__log?bucket=B                         JSON list of B's records
    POST /__fault?bucket=B&mode=503|stall|off    every request to B answers 503 / is held without an
                                                 answer until the fault is cleared / is forwarded
    GET  /__capture?bucket=B                     from now on keep the body of every successful PUT
                                                 or POST to B (in memory)
    GET  /__find?bucket=B&tokens=HEX@T,...       JSON list: for each token, the end time of the first
                                                 kept body that ended after T and holds the token's
                                                 bytes, or null
"""
import bisect
import argparse
import http.client
import json
import socketserver
import threading
import time
import urllib.parse

lock = threading.Lock()
records = {}  # bucket -> list of dicts
faults = {}  # bucket -> mode
captured = {}  # bucket -> ([end time], [body]) of successful PUT/POST requests, in order of their end
cleared = threading.Condition(lock)


def classify(method, path, query):
    parts = path.lstrip("/").split("/", 1)
    key = parts[1] if len(parts) > 1 else ""
    if method == "GET" and (key == "" or "list-type" in query):
        return "LIST", key
    return method, key


def read_request(rfile):
    line = rfile.readline(65537)
    if not line:
        return None
    method, target, _ = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers = []
    while True:
        h = rfile.readline(65537).decode("latin-1").rstrip("\r\n")
        if not h:
            break
        name, _, value = h.partition(":")
        headers.append((name.strip(), value.strip()))
    hd = {n.lower(): v for n, v in headers}
    if hd.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int(rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            body += rfile.read(size)
            rfile.readline()
        headers = [(n, v) for n, v in headers if n.lower() != "transfer-encoding"] + [("Content-Length", str(len(body)))]
    else:
        length = int(hd.get("content-length", "0") or 0)
        body = rfile.read(length) if length else b""
    return method, target, headers, body


def answer(status, reason, headers, body, method):
    out = "HTTP/1.1 %d %s\r\n" % (status, reason)
    for n, v in headers:
        out += "%s: %s\r\n" % (n, v)
    return out.encode("latin-1") + b"\r\n" + (b"" if method == "HEAD" else body)


def text(body, ctype="text/plain"):
    data = body.encode()
    return answer(200, "OK", [("Content-Type", ctype), ("Content-Length", str(len(data)))], data, "GET")


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        up = self.server.upstream
        conn = None
        while True:
            try:
                req = read_request(self.rfile)
            except (OSError, ValueError):
                return
            if req is None:
                return
            method, target, headers, body = req
            u = urllib.parse.urlsplit(target)
            if u.path.startswith("/__"):
                self.wfile.write(self.control(method, u.path, urllib.parse.parse_qs(u.query)))
                continue
            bucket = u.path.lstrip("/").split("/", 1)[0]
            cls, key = classify(method, u.path, u.query)
            t0 = time.monotonic()
            with lock:
                mode = faults.get(bucket)
                stalled = mode == "stall"
                while mode == "stall":
                    cleared.wait()
                    mode = faults.get(bucket)
            if stalled:  # the store never answered this one; the client has long given up
                with lock:
                    records.setdefault(bucket, []).append({"c": cls, "k": key, "up": len(body), "down": 0, "s": 599, "t0": t0, "t1": time.monotonic()})
                return
            if mode == "503":
                data = b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>'
                out = answer(503, "Slow Down", [("Content-Type", "application/xml"), ("Content-Length", str(len(data)))], data, method)
                status, got = 503, len(data)
            else:
                for attempt in range(2):
                    try:
                        if conn is None:
                            conn = http.client.HTTPConnection(up.hostname, up.port, timeout=300)
                        conn.request(method, target, body=body, headers=dict(headers))
                        r = conn.getresponse()
                        data = r.read()
                        break
                    except (OSError, http.client.HTTPException):
                        conn = None
                        if attempt:
                            return
                hs = [(n, v) for n, v in r.getheaders() if n.lower() not in ("transfer-encoding", "connection", "content-length")]
                hs.append(("Content-Length", (r.getheader("content-length") or "0") if method == "HEAD" else str(len(data))))
                out = answer(r.status, r.reason, hs, data, method)
                status, got = r.status, len(data)
            try:
                self.wfile.write(out)
                self.wfile.flush()
            except OSError:
                return
            rec = {"c": cls, "k": key, "q": u.query, "up": len(body), "down": got, "s": status, "t0": t0, "t1": time.monotonic()}
            with lock:
                records.setdefault(bucket, []).append(rec)
                if bucket in captured and cls in ("PUT", "POST") and 200 <= status < 300 and body:
                    ends, bodies = captured[bucket]
                    at = bisect.bisect(ends, rec["t1"])
                    ends.insert(at, rec["t1"])
                    bodies.insert(at, body)

    def control(self, method, path, q):
        bucket = q.get("bucket", [""])[0]
        if path == "/__fault":
            with lock:
                faults[bucket] = q.get("mode", ["off"])[0]
                cleared.notify_all()
            return text("ok")
        if path == "/__capture":
            with lock:
                captured.setdefault(bucket, ([], []))
            return text("ok")
        if path == "/__find":
            with lock:
                ends, bodies = (list(x) for x in captured.get(bucket, ([], [])))
            found = []
            for item in filter(None, q.get("tokens", [""])[0].split(",")):
                tok, _, after = item.partition("@")
                tok, i = bytes.fromhex(tok), bisect.bisect(ends, float(after or 0))
                while i < len(bodies) and tok not in bodies[i]:
                    i += 1
                found.append(ends[i] if i < len(bodies) else None)
            return text(json.dumps(found), "application/json")
        with lock:
            recs = list(records.get(bucket, []))
        if path == "/__puts":
            after = float(q.get("after", ["0"])[0])
            ends = [r["t1"] for r in recs if r["c"] in ("PUT", "POST") and 200 <= r["s"] < 300 and r["t1"] > after]
            return text("%d %.9f" % (len(ends), max(ends) if ends else 0.0))
        if path == "/__log":
            return text(json.dumps(recs), "application/json")
        since = float(q.get("since", ["0"])[0])
        until = float(q.get("until", ["1e18"])[0])
        out = {"PUT": 0, "GET": 0, "LIST": 0, "HEAD": 0, "DELETE": 0, "POST": 0, "errors": 0, "bytes_up": 0, "bytes_down": 0}
        for r in recs:
            if since <= r["t0"] < until:
                out[r["c"]] = out.get(r["c"], 0) + 1
                out["bytes_up"] += r["up"]
                out["bytes_down"] += r["down"]
                out["errors"] += r["s"] >= 300
        return text(json.dumps(out), "application/json")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port-file", required=True)
    a = ap.parse_args()
    srv = Server(("127.0.0.1", 0), Handler)
    srv.upstream = urllib.parse.urlsplit(a.upstream)
    with open(a.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    import os
    os.rename(a.port_file + ".tmp", a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()

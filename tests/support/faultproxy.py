#!/usr/bin/env python3
"""A loopback HTTP proxy in front of the test S3 server that injects faults on request.

    faultproxy.py --upstream http://127.0.0.1:PORT --port-file FILE

It forwards each request to the upstream server unchanged (keeping the client's Host header) and
relays the answer, unless a fault is queued. Control requests (never forwarded, never counted):

    POST /__fault?mode=MODE&count=N   queue MODE for the next N requests
    POST /__reset                     clear queued faults, counters and the request log
    GET  /__stats                     "requests N\\n" then one "METHOD PATH HOST RANGE" line per request

Modes: 500 (InternalError), 503 (SlowDown), 403 (AccessDenied), 404 (NoSuchKey), 400 (InvalidRequest),
stall (read the request, never answer), slow (answer at ~20 bytes/s), delay (forward the request
3 s late, then answer normally), drop (send half of the answer, then close), reset (close without
answering), norange (forward the request without its Range header, as a server that ignores Range),
html (answer 200 with an HTML page, as a captive portal), cut (forward, then answer 200 with the first
half of the body as a whole answer), sametoken (answer a listing with one key, truncated, whose
continuation token never changes), 501 (NotImplemented).
"""
import argparse
import http.client
import os
import socket
import socketserver
import threading
import time
import urllib.parse

ERRORS = {
    "500": (500, "Internal Server Error", "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
    "403": (403, "Forbidden", "AccessDenied", "Access Denied"),
    "404": (404, "Not Found", "NoSuchKey", "The specified key does not exist."),
    "400": (400, "Bad Request", "InvalidRequest", "Injected bad request."),
    "501": (501, "Not Implemented", "NotImplemented", "A header you provided implies functionality that is not implemented."),
}
SAME_TOKEN_PAGE = (b'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult><Name>b</Name><IsTruncated>true</IsTruncated>'
                   b"<Contents><Key>again</Key><Size>1</Size></Contents><NextContinuationToken>same</NextContinuationToken>"
                   b"</ListBucketResult>")

lock = threading.Lock()
faults = []  # queued modes, one per request
requests = 0
log = []


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
    length = int(next((v for n, v in headers if n.lower() == "content-length"), "0"))
    body = rfile.read(length) if length else b""
    return method, target, headers, body


def header(headers, name):
    return next((v for n, v in headers if n.lower() == name), "")


def respond(status, reason, headers, body, method):
    out = "HTTP/1.1 %d %s\r\n" % (status, reason)
    for n, v in headers:
        out += "%s: %s\r\n" % (n, v)
    data = out.encode("latin-1") + b"\r\n" + (b"" if method == "HEAD" else body)
    return data


def error_answer(mode, method):
    status, reason, code, message = ERRORS[mode]
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
            "<RequestId>injected</RequestId></Error>" % (code, message)).encode()
    return respond(status, reason, [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))], body, method)


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            try:
                req = read_request(self.rfile)
            except (OSError, ValueError):
                return
            if req is None:
                return
            method, target, headers, body = req
            if target.startswith("/__"):
                self.wfile.write(self.control(method, target))
                continue
            global requests
            with lock:
                requests += 1
                log.append("%s %s %s %s" % (method, target, header(headers, "host"), header(headers, "range") or "-"))
                mode = faults.pop(0) if faults else None
            if mode in ERRORS:
                self.wfile.write(error_answer(mode, method))
                continue
            if mode == "reset":
                return
            if mode == "stall":
                self.request.settimeout(120)
                try:
                    while self.request.recv(65536):
                        pass
                except OSError:
                    pass
                return
            if mode in ("html", "sametoken"):
                body = b"<html><body>Please log in to continue</body></html>" if mode == "html" else SAME_TOKEN_PAGE
                self.wfile.write(respond(200, "OK", [("Content-Type", "text/html"), ("Content-Length", str(len(body)))], body, method))
                continue
            if mode == "cut":
                answer = self.forward(method, target, headers, body)
                head, _, data = answer.partition(b"\r\n\r\n")
                data = data[: len(data) // 2]
                lines = [l for l in head.split(b"\r\n") if not l.lower().startswith(b"content-length:")]
                self.wfile.write(b"\r\n".join(lines) + b"\r\nContent-Length: %d\r\n\r\n" % len(data) + data)
                continue
            if mode == "delay":
                time.sleep(3)
            if mode == "norange":
                headers = [(n, v) for n, v in headers if n.lower() != "range"]
            answer = self.forward(method, target, headers, body)
            if mode == "drop":
                self.wfile.write(answer[: max(1, len(answer) // 2)])
                self.wfile.flush()
                return
            if mode == "slow":
                try:
                    for i in range(len(answer)):
                        self.wfile.write(answer[i : i + 1])
                        self.wfile.flush()
                        time.sleep(0.05)
                except OSError:
                    return
                continue
            self.wfile.write(answer)
            if header(headers, "connection").lower() == "close":
                return

    def forward(self, method, target, headers, body):
        up = self.server.upstream
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
        try:
            conn.request(method, target, body=body, headers=dict(headers))
            r = conn.getresponse()
            data = r.read()
            out = [(n, v) for n, v in r.getheaders() if n.lower() not in ("transfer-encoding", "connection", "content-length")]
            length = r.getheader("content-length") if method == "HEAD" else str(len(data))
            out.append(("Content-Length", length or "0"))
            return respond(r.status, r.reason, out, data, method)
        finally:
            conn.close()

    def control(self, method, target):
        global requests
        url = urllib.parse.urlsplit(target)
        q = dict(urllib.parse.parse_qsl(url.query))
        with lock:
            if url.path == "/__fault":
                faults.extend([q["mode"]] * int(q.get("count", "1")))
                text = "ok\n"
            elif url.path == "/__reset":
                faults.clear()
                log.clear()
                requests = 0
                text = "ok\n"
            else:
                text = "requests %d\n" % requests + "".join(l + "\n" for l in log)
        body = text.encode()
        return respond(200, "OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))], body, method)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port-file", required=True)
    args = ap.parse_args()
    srv = Server(("127.0.0.1", 0), Handler)
    srv.upstream = urllib.parse.urlsplit(args.upstream)
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()

"""Signs requests with botocore's S3 SigV4 signers, for tests/test_sigv4_botocore.cpp.

Usage: python3 botocore_sign.py IN OUT. IN has one JSON object per line: method, url (the wire
URL: scheme, host, encoded path, encoded query), params [[key, value], ...] (decoded query pairs,
given instead of a query in the URL when walship got a loosely encoded one), headers [[name, value], ...] (repeats allowed),
body (hex), unsigned_payload (bool), access, secret, token ("" for none), region, timestamp
("YYYYmmddTHHMMSSZ"), presign_expires (0: do not presign). OUT gets one JSON object per line:
creq and auth (header signing with S3SigV4Auth), and when presigned, presign_creq and
presign_query (S3SigV4QueryAuth).

Given a URL and no params, botocore signs the same wire path and query walship signs: S3SigV4Auth
uses the URL path unchanged (no normalization, no second encoding) and takes the URL query pairs
as they are, sorted by key then value. Given params, it encodes each key and value itself
(quote with safe "-_.~") and sorts the encoded pairs.
"""
import datetime
import json
import sys
import types
from urllib.parse import urlsplit

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def make_request(item, with_body):
    request = AWSRequest(method=item["method"], url=item["url"], params=[tuple(p) for p in item["params"]],
                         data=bytes.fromhex(item["body"]) if with_body else b"")
    for name, value in item["headers"]:
        request.headers[name] = value  # appends: repeated names are kept in order
    if item["unsigned_payload"]:
        request.context["client_config"] = types.SimpleNamespace(s3={"payload_signing_enabled": False})
    return request


def capture(signer):
    """Records the canonical request the signer computes."""
    seen = []
    original = signer.canonical_request
    signer.canonical_request = lambda req: seen.append(original(req)) or seen[-1]
    return seen


def sign(item):
    fixed = datetime.datetime.strptime(item["timestamp"], "%Y%m%dT%H%M%SZ")
    botocore.auth.get_current_datetime = lambda *a, **k: fixed  # add_auth reads the clock here
    creds = Credentials(item["access"], item["secret"], item["token"] or None)

    request = make_request(item, True)
    signer = botocore.auth.S3SigV4Auth(creds, "s3", item["region"])
    seen = capture(signer)
    signer.add_auth(request)
    out = {"creq": seen[-1], "auth": request.headers["Authorization"]}

    if item["presign_expires"]:
        # No body: S3SigV4QueryAuth would move a body into the query string.
        request = make_request(item, False)
        signer = botocore.auth.S3SigV4QueryAuth(creds, "s3", item["region"], expires=item["presign_expires"])
        seen = capture(signer)
        signer.add_auth(request)
        out["presign_creq"] = seen[-1]
        out["presign_query"] = urlsplit(request.url).query
    return out


def main():
    with open(sys.argv[1], encoding="utf-8") as src, open(sys.argv[2], "w", encoding="utf-8") as dst:
        for line in src:
            dst.write(json.dumps(sign(json.loads(line))) + "\n")


if __name__ == "__main__":
    main()

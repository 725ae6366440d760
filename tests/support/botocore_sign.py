"""Signs requests with botocore's S3 SigV4 signer, for tests/test_sigv4_botocore.cpp.

Reads JSON lines (method, host, path, params [[k, v]...] raw, headers [[name, value]...], body hex,
access/secret/token, region, timestamp "YYYYmmddTHHMMSSZ") and writes JSON lines with the
canonical request and the Authorization header botocore produced.
"""
import datetime
import json
import sys

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def sign(item):
    fixed = datetime.datetime.strptime(item["timestamp"], "%Y%m%dT%H%M%SZ")
    botocore.auth.get_current_datetime = lambda *a, **k: fixed
    url = "http://" + item["host"] + item["path"]
    request = AWSRequest(method=item["method"], url=url, data=bytes.fromhex(item["body"]),
                         params=[tuple(p) for p in item["params"]])
    for name, value in item["headers"]:
        request.headers[name] = value
    creds = Credentials(item["access"], item["secret"], item["token"] or None)
    signer = botocore.auth.S3SigV4Auth(creds, "s3", item["region"])
    seen = []
    original = signer.canonical_request
    signer.canonical_request = lambda req: seen.append(original(req)) or seen[-1]
    signer.add_auth(request)
    return {"creq": seen[-1], "auth": request.headers["Authorization"]}


def main():
    with open(sys.argv[1], encoding="utf-8") as src, open(sys.argv[2], "w", encoding="utf-8") as out:
        for line in src:
            out.write(json.dumps(sign(json.loads(line))) + "\n")


if __name__ == "__main__":
    main()

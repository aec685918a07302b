"""The cost of one aws-sigv4 signature, in microseconds (not a test; run by hand).

    python bench/sigv4_timeit.py

Times ``AwsSigV4.sign`` (canonical request, string to sign, HMAC with the
cached signing key, headers) for typical requests, best of 5 repeats, and
botocore's ``add_auth`` on the same request for scale when botocore is
installed. The payload hash of a signed body is included (its size is
printed), since that is part of signing it.
"""

from __future__ import annotations

import datetime
import functools
import timeit
from unittest import mock

from multidict import CIMultiDict

from proxy.auth import SchemeContext, UpstreamRequest
from proxy.auth.aws_sigv4 import AwsSigV4, AwsSigV4Options
from proxy.secret import Secret

NOW = 1_700_000_000.0
ORIGIN = "https://my-bucket.s3.eu-west-1.amazonaws.com"


def scheme(service: str, payload: str = "signed", token: str | None = None) -> AwsSigV4:
    options = AwsSigV4Options(
        scheme="aws-sigv4", region="eu-west-1", service=service, access_key_id="AKIAEXAMPLE",
        secret_access_key=Secret("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        session_token=Secret(token) if token else None,
        payload=payload,  # type: ignore[arg-type]
    )
    return AwsSigV4(options, SchemeContext(route="bench"))


CASES = {
    "s3 GET object (no body)": (
        scheme("s3"),
        UpstreamRequest("GET", "/photos/2024/summer%20trip/img_001.jpg", "versionId=3", CIMultiDict(
            [("Accept", "*/*"), ("User-Agent", "legacy-app/1.0")]), b"", ORIGIN),
    ),
    "s3 PUT 1 KiB, session token, x-amz-meta": (
        scheme("s3", token="FwoGZXIvYXdzEXAMPLETOKEN" * 10),
        UpstreamRequest("PUT", "/reports/2024/q1.json", "", CIMultiDict(
            [("Content-Type", "application/json"), ("X-Amz-Meta-Owner", "billing")]), b"x" * 1024, ORIGIN),
    ),
    "execute-api POST 200 B JSON, query": (
        scheme("execute-api"),
        UpstreamRequest("POST", "/prod/orders/a%2Fb", "page=2&size=50&filter=open", CIMultiDict(
            [("Content-Type", "application/json")]), b'{"k": "v"}' * 20,
            "https://abc123.execute-api.eu-west-1.amazonaws.com"),
    ),
    "s3 PUT unsigned payload": (
        scheme("s3", payload="unsigned"),
        UpstreamRequest("PUT", "/big/object.bin", "", CIMultiDict(), None, ORIGIN),
    ),
}


def botocore_us(s: AwsSigV4, req: UpstreamRequest, number: int) -> float | None:
    try:
        from botocore.auth import S3SigV4Auth, SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
    except ImportError:
        return None
    creds = Credentials("AKIAEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    auth = (S3SigV4Auth if s.s3 else SigV4Auth)(creds, s.service, s.region)
    url = (req.scheme_host + req.path_query)
    now = datetime.datetime.fromtimestamp(NOW, datetime.UTC).replace(tzinfo=None)

    def one() -> None:
        r = AWSRequest(method=req.method, url=url, data=req.body or b"", headers=dict(req.headers))
        auth.add_auth(r)

    with mock.patch("botocore.auth.get_current_datetime", return_value=now):
        return min(timeit.repeat(one, number=number, repeat=5)) / number * 1e6


def main() -> None:
    number = 20000
    for name, (s, req) in CASES.items():
        s.sign(req, s.static, NOW)  # type: ignore[arg-type]  # warm the signing-key cache
        one = functools.partial(s.sign, req, s.static, NOW)  # type: ignore[arg-type]
        best = min(timeit.repeat(one, number=number, repeat=5))
        us = best / number * 1e6
        boto = botocore_us(s, req, number // 10)
        extra = f"   (botocore add_auth: {boto:.1f} µs)" if boto is not None else ""
        size = len(req.body) if req.body else 0
        print(f"{name:45s} body {size:5d} B: {us:6.1f} µs per signature{extra}")


if __name__ == "__main__":
    main()

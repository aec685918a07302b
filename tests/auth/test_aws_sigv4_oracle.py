"""botocore is the oracle: Signet's SigV4 headers equal botocore's for the same request and time.

Hypothesis draws a request *by meaning* (decoded path segments with ``/``,
spaces, unicode and reserved characters; query pairs with repeats, empty
values and keys without ``=``; headers with odd spacing; a body) and then one
of the many ways a client may percent-encode it on the wire (lower- or
upper-case hex, reserved characters left raw or encoded). Signet signs the
raw bytes as sent; botocore signs the same meaning the way an AWS SDK sends
it (``percent_encode``d path, ``params``), which is also what the AWS service
computes from the request it receives. The time is frozen on both sides.
A second test gives botocore the SDK-encoded URL itself, raw query included.
"""

from __future__ import annotations

import datetime
import string
from typing import Any
from unittest import mock

import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.utils import percent_encode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from proxy.auth import SchemeContext, UpstreamRequest
from proxy.auth.aws_sigv4 import AwsSigV4, AwsSigV4Options
from proxy.clock import FrozenClock
from proxy.secret import Secret

EXAMPLES = 150
COUNTED: dict[str, int] = {}

AK = "AKIDEXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLE//////////wEaDFAKESESSIONTOKEN+/="
UNRESERVED = string.ascii_letters + string.digits + "-_.~"
PATH_RAW_OK = "!$&'()*+,;=:@"
QUERY_RAW_OK = "!$'()*,;:@/?+"
SIGNED_CLIENT = ("content-type", "content-md5")

ORIGINS = [
    "https://examplebucket.s3.amazonaws.com",
    "https://abc123.execute-api.eu-west-1.amazonaws.com",
    "http://127.0.0.1:8080",
    "https://[::1]:8443",
    "http://localhost",
]

text_chars = st.one_of(
    st.sampled_from(list(UNRESERVED)),
    st.sampled_from(list(" /%+&=?#!$'()*,;:@[]\"<>\\^`{|}")),
    st.characters(min_codepoint=0xA0, max_codepoint=0x2FFF, categories=("L", "M", "N", "P", "S", "Zs")),
    st.sampled_from(["é", "日", "😀"]),
)
segment = st.text(text_chars, max_size=6).filter(lambda s: s not in (".", ".."))
header_value = st.text(
    st.sampled_from(list(string.ascii_letters + string.digits + " \t;=/-_.:,")), max_size=16
)


def hexbyte(b: int, upper: bool) -> str:
    return f"%{b:02X}" if upper else f"%{b:02x}"


@st.composite
def encode_raw(draw: Any, decoded: str, raw_ok: str) -> str:
    """One way a client may percent-encode ``decoded`` (UTF-8)."""
    out = []
    for ch in decoded:
        mode = draw(st.sampled_from(["canonical", "raw", "lower", "upper"]))
        if ch in UNRESERVED:
            keep_raw = mode in ("canonical", "raw")
        elif ch in raw_ok:
            keep_raw = mode == "raw"
        elif ord(ch) > 0x7F:
            keep_raw = mode == "raw"  # raw UTF-8 on the wire
        else:
            keep_raw = False
        if keep_raw:
            out.append(ch)
        else:
            upper = mode != "lower"
            out.append("".join(hexbyte(b, upper) for b in ch.encode("utf-8")))
    return "".join(out)


@st.composite
def requests(draw: Any, canonical_only: bool = False) -> dict[str, Any]:
    segs = draw(st.lists(segment, min_size=1, max_size=5))
    names = draw(st.lists(st.text(text_chars, min_size=1, max_size=5), min_size=1, max_size=3))
    pairs = draw(
        st.lists(
            st.tuples(st.sampled_from(names), st.one_of(st.none(), st.text(text_chars, max_size=6))),
            max_size=6,
        )
    )

    def enc(decoded: str, raw_ok: str) -> str:
        if canonical_only:
            return percent_encode(decoded)
        return draw(encode_raw(decoded, raw_ok))

    raw_path = "/" + "/".join(enc(s, PATH_RAW_OK) for s in segs)
    raw_query = "&".join(
        enc(k, QUERY_RAW_OK) if v is None else f"{enc(k, QUERY_RAW_OK)}={enc(v, QUERY_RAW_OK + '=')}"
        for k, v in pairs
    )
    headers: list[tuple[str, str]] = []
    if draw(st.booleans()):
        headers.append(("Content-Type", draw(header_value)))
    if draw(st.booleans()):
        headers.append(("Content-MD5", draw(header_value)))
    for name in draw(st.lists(st.sampled_from(["X-Amz-Meta-A", "x-amz-meta-b", "X-AMZ-TARGET"]), max_size=4)):
        headers.append((name, draw(header_value)))
    for name in draw(st.lists(st.sampled_from(["User-Agent", "Accept", "X-Custom", "Range"]), max_size=3)):
        headers.append((name, draw(header_value)))  # sent, never signed
    return {
        "method": draw(st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD", "PATCH"])),
        "segments": segs,
        "pairs": pairs,
        "raw_path": raw_path,
        "raw_query": raw_query,
        "headers": headers,
        "body": draw(st.binary(max_size=64)),
        "origin": draw(st.sampled_from(ORIGINS)),
        "time": draw(st.integers(1_300_000_000, 2_000_000_000)),
    }


def signet_headers(req: dict[str, Any], service: str, payload: str, token: bool) -> dict[str, str]:
    opts = AwsSigV4Options(
        scheme="aws-sigv4",
        region="eu-west-1",
        service=service,
        access_key_id=AK,
        secret_access_key=Secret(SK),
        session_token=Secret(TOKEN) if token else None,
        payload=payload,  # type: ignore[arg-type]
    )
    scheme = AwsSigV4(opts, SchemeContext(route="r", clock=FrozenClock(req["time"])))
    request = UpstreamRequest(
        method=req["method"],
        path=req["raw_path"],
        query=req["raw_query"],
        headers=CIMultiDict(req["headers"]),
        body=req["body"] if scheme.needs_body else None,
        scheme_host=req["origin"],
    )
    result = scheme.sign(request, scheme.static, float(req["time"]))  # type: ignore[arg-type]
    assert result.headers.pop("Host")
    return {k.lower(): v for k, v in result.headers.items()}


def botocore_headers(
    req: dict[str, Any], service: str, payload: str, token: bool, *, raw_url: bool = False
) -> dict[str, str]:
    if raw_url:
        url = req["origin"] + req["raw_path"] + ("?" + req["raw_query"] if req["raw_query"] else "")
        params: Any = {}
    else:
        url = req["origin"] + "/" + "/".join(percent_encode(s) for s in req["segments"])
        params = [(k, v or "") for k, v in req["pairs"]]
    signed = [(k, v) for k, v in req["headers"] if k.lower() in SIGNED_CLIENT or k.lower().startswith("x-amz-")]
    request = AWSRequest(method=req["method"], url=url, data=req["body"], params=params)
    for k, v in signed:
        request.headers[k] = v  # HTTPHeaders appends: repeats are kept
    if payload == "unsigned":
        if service == "s3":
            request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
        else:
            request.context["payload_signing_enabled"] = False
    creds = Credentials(AK, SK, TOKEN if token else None)
    auth = (S3SigV4Auth if service == "s3" else SigV4Auth)(creds, service, "eu-west-1")
    now = datetime.datetime.fromtimestamp(req["time"], datetime.UTC).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=now):
        auth.add_auth(request)
    names = {"authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"}
    return {k.lower(): v for k, v in request.headers.items() if k.lower() in names}


CASES = [
    (service, payload, token)
    for service in ("s3", "execute-api")
    for payload in ("signed", "unsigned")
    for token in (False, True)
]


@pytest.mark.parametrize(("service", "payload", "token"), CASES)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(req=requests())
def test_headers_equal_botocore(req: dict[str, Any], service: str, payload: str, token: bool) -> None:
    COUNTED["any-encoding"] = COUNTED.get("any-encoding", 0) + 1
    assert signet_headers(req, service, payload, token) == botocore_headers(req, service, payload, token)


@pytest.mark.parametrize("service", ["s3", "dynamodb"])
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(req=requests(canonical_only=True))
def test_sdk_encoded_url_equals_botocore_on_the_raw_url(req: dict[str, Any], service: str) -> None:
    """Given the URL exactly as Signet forwards it, botocore signs the same."""
    COUNTED["raw-url"] = COUNTED.get("raw-url", 0) + 1
    expected = botocore_headers(req, service, "signed", False, raw_url=True)
    assert signet_headers(req, service, "signed", False) == expected


def test_zz_report_example_count() -> None:
    """Prints how many requests the equivalence run compared (run with -s to see it)."""
    total = sum(COUNTED.values())
    print(f"\nbotocore equivalence: {total} generated requests compared ({COUNTED})")
    if COUNTED:
        assert total >= len(CASES) * 10

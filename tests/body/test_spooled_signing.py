"""Every body-signing scheme and recipe placeholder signs a spooled body as it signs the bytes.

The in-memory path is checked against the vendors' vectors elsewhere
(tests/auth); here each scheme signs the same body once from memory and once
from a spool file (streamed in a worker thread), with a frozen clock and nonce,
and the results must be identical. The sizes straddle the 3-byte base64 groups
and the read-chunk boundary.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path
from typing import Any

import pytest

from proxy.auth import SCHEMES, SchemeContext, UpstreamRequest
from proxy.body import CHUNK, BodySpooler, SignedBody
from proxy.clock import FrozenClock
from proxy.errors import BodyTooLarge
from proxy.secret import Secret

NONCE = "0123456789abcdef0123456789abcdef"
SIZES = [1, 2, 3, CHUNK + 1, 2 * CHUNK + 2]

SCHEME_OPTIONS: list[dict[str, Any]] = [
    {"scheme": "threeclicks-strict", "api_key": "k", "api_secret": Secret("s3cr3t")},
    {"scheme": "threecommas", "api_key": "k", "secret": Secret("s3cr3t")},
    {"scheme": "apliiq", "app_id": "APP-1", "shared_secret": Secret("s3cr3t")},
    {"scheme": "quicklizard", "api_key": "k", "api_secret": Secret("s3cr3t")},
    {
        "scheme": "hmac",
        "vars": {"secret": Secret("s3cr3t")},
        "message": "{method}\n{path_query}\n{body}|{body_or_empty_json}|{body_base64}|"
        "{body_sha256}|{body_md5}|{timestamp}|{nonce}",
        "key": "{secret}",
        "encoding": "base64url",
        "headers": {"X-Sig": "{signature}", "X-Sha": "{body_sha256}", "X-Md5": "{body_md5}"},
        "query": {"ts": "{timestamp_ms}"},
    },
    {  # a per-request key and a plain digest with sha512
        "scheme": "hmac",
        "vars": {"secret": Secret("s3cr3t")},
        "message": "{body_base64}{body}",
        "key": "{secret}{timestamp}",
        "algorithm": "sha512",
        "headers": {"X-Sig": "{signature}"},
    },
    {
        "scheme": "hmac",
        "vars": {"secret": Secret("s3cr3t")},
        "message": "{path}{body}{secret}",
        "algorithm": "md5",
        "encoding": "HEX",
        "headers": {"X-Digest": "{signature}"},
    },
    {  # the signature as a query parameter, added after signing
        "scheme": "hmac",
        "vars": {"secret": Secret("s3cr3t")},
        "message": "{method_lower} {path_query} {body} {body_sha256}",
        "key": "{secret}",
        "query": {"sig": "{signature}"},
    },
]


def build(options: dict[str, Any]) -> Any:
    cls = SCHEMES[options["scheme"]]
    ctx = SchemeContext(route="test", clock=FrozenClock(1_717_128_481.5, nonce=NONCE))
    return cls(cls.Options.model_validate(options), ctx)


async def spooled(data: bytes, tmp: Path, digests: Any = ()) -> SignedBody:
    spooler = BodySpooler(0, str(tmp), digests)
    await spooler.feed(data)
    body = await spooler.finish()
    assert body.spooled
    return body


@pytest.mark.parametrize("options", SCHEME_OPTIONS, ids=lambda o: o["scheme"] + str(len(o)))
@pytest.mark.parametrize("size", SIZES)
async def test_spooled_equals_in_memory(options: dict[str, Any], size: int, tmp_path: Path) -> None:
    scheme = build(options)
    assert scheme.needs_body
    data = os.urandom(size)
    body = await spooled(data, tmp_path, scheme.body_digests)
    try:
        a = await scheme.apply(UpstreamRequest("PUT", "/a%2Fb", "x=1", {}, data))
        b = await scheme.apply(UpstreamRequest("PUT", "/a%2Fb", "x=1", {}, body))
    finally:
        body.close()
    assert a.headers == b.headers and a.query == b.query


async def test_threecommas_spooled_against_hmac(tmp_path: Path) -> None:
    """An independent computation, not only self-consistency."""
    data = os.urandom(3 * CHUNK + 11)
    body = await spooled(data, tmp_path)
    scheme = build(SCHEME_OPTIONS[1])
    result = await scheme.apply(UpstreamRequest("POST", "/v1/x", "q=1", {}, body))
    body.close()
    expected = hmac.new(b"s3cr3t", b"/v1/x?q=1" + data, hashlib.sha256).hexdigest()
    assert result.headers["Signature"] == expected


async def test_apliiq_spooled_against_hmac(tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK + 1)
    body = await spooled(data, tmp_path)
    result = await build(SCHEME_OPTIONS[2]).apply(UpstreamRequest("POST", "/o", "", {}, body))
    body.close()
    message = b"APP-1" + b"1717128481" + NONCE.encode() + base64.b64encode(data)
    sig = base64.b64encode(hmac.new(b"s3cr3t", message, hashlib.sha256).digest()).decode()
    assert result.headers["Authorization"] == f"x-apliiq-auth 1717128481:{sig}:APP-1:{NONCE}"


def test_recipe_declares_the_digests_it_uses() -> None:
    assert build(SCHEME_OPTIONS[4]).body_digests == {"sha256", "md5"}
    assert build(SCHEME_OPTIONS[5]).body_digests == frozenset()
    assert SCHEMES["threecommas"].body_digests == frozenset()


@pytest.mark.parametrize(
    "extra",
    [
        {"headers": {"X-Body": "{body_base64}"}},
        {"key": "{body_base64}"},
        {"query": {"b": "{body_base64}"}},
    ],
)
async def test_recipe_with_the_body_outside_the_message_refuses_a_spooled_body(
    extra: dict[str, Any], tmp_path: Path
) -> None:
    options = {"scheme": "hmac", "message": "{path}", "headers": {"X-S": "{signature}"}, **extra}
    scheme = build(options)
    body = await spooled(b"abcd", tmp_path)
    with pytest.raises(BodyTooLarge) as info:
        await scheme.apply(UpstreamRequest("POST", "/p", "", {}, body))
    body.close()
    assert "{body_base64}" in info.value.message and "spool_bytes" in info.value.message
    # the same recipe still signs a body held in memory
    await scheme.apply(UpstreamRequest("POST", "/p", "", {}, b"abcd"))


PREHASHED = [SCHEME_OPTIONS[0], SCHEME_OPTIONS[1], SCHEME_OPTIONS[6], SCHEME_OPTIONS[7]]


@pytest.mark.parametrize("options", PREHASHED, ids=lambda o: o["scheme"] + str(len(o)))
async def test_prefix_hashed_while_spooling_needs_no_second_pass(
    options: dict[str, Any], tmp_path: Path
) -> None:
    """Messages ``known prefix + body + ...`` hash the body as it arrives: signing works with the file gone."""
    scheme = build(options)
    data = os.urandom(2 * CHUNK + 1)
    head = UpstreamRequest("PUT", "/a%2Fb", "x=1", {})
    spooler = BodySpooler(0, str(tmp_path), scheme.body_digests, scheme.body_prefix(head))
    await spooler.feed(data)
    body = await spooler.finish()
    body.close()  # a second pass would fail now
    a = await scheme.apply(UpstreamRequest("PUT", "/a%2Fb", "x=1", {}, data))
    b = await scheme.apply(UpstreamRequest("PUT", "/a%2Fb", "x=1", {}, body))
    assert a.headers == b.headers and a.query == b.query


async def test_a_prefix_for_another_request_is_not_used(tmp_path: Path) -> None:
    scheme = build(SCHEME_OPTIONS[1])
    data = os.urandom(CHUNK + 1)
    stale = scheme.body_prefix(UpstreamRequest("PUT", "/other", "", {}))
    spooler = BodySpooler(0, str(tmp_path), (), stale)
    await spooler.feed(data)
    body = await spooler.finish()
    result = await scheme.apply(UpstreamRequest("PUT", "/v1/x", "", {}, body))
    body.close()
    assert result.headers["Signature"] == hmac.new(b"s3cr3t", b"/v1/x" + data, hashlib.sha256).hexdigest()


def test_no_prefix_when_time_comes_first_the_key_varies_or_the_body_repeats() -> None:
    head = UpstreamRequest("PUT", "/p", "", {})
    for options in SCHEME_OPTIONS:
        expected = options in PREHASHED
        assert (build(options).body_prefix(head) is not None) == expected, options["scheme"]
    with_time = {"scheme": "hmac", "message": "{path}{timestamp}{body}", "headers": {"S": "{signature}"}}
    assert build(with_time).body_prefix(head) is None
    pre_query = {"scheme": "hmac", "message": "{path_query}{body}", "query": {"a": "1"}}
    assert build(pre_query).body_prefix(head) is None
    late_query = {"scheme": "hmac", "message": "{path_query}{body}", "query": {"s": "{signature}"}}
    assert build(late_query).body_prefix(UpstreamRequest("PUT", "/p", "s=old&b=2", {})).prefix == b"/p?b=2"


@pytest.mark.parametrize("service", ["s3", "execute-api"])
async def test_aws_sigv4_spooled_equals_in_memory_without_reading_the_file(
    service: str, tmp_path: Path
) -> None:
    """The payload hash of a spooled body was computed as it arrived: the file is not read again."""
    options = {
        "scheme": "aws-sigv4",
        "region": "eu-west-1",
        "service": service,
        "access_key_id": "AKIDEXAMPLE",
        "secret_access_key": Secret("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
    }
    scheme = build(options)
    assert scheme.body_digests == {"sha256"}
    data = os.urandom(CHUNK + 1)
    body = await spooled(data, tmp_path, scheme.body_digests)
    body.close()  # a second pass would fail now
    origin = "https://example.amazonaws.com"
    a = await scheme.apply(UpstreamRequest("PUT", "/b/k", "x=1", {}, data, scheme_host=origin))
    b = await scheme.apply(UpstreamRequest("PUT", "/b/k", "x=1", {}, body, scheme_host=origin))
    assert a.headers == b.headers
    if service == "s3":
        assert b.headers["X-Amz-Content-Sha256"] == hashlib.sha256(data).hexdigest()


async def test_a_prefix_from_another_scheme_is_not_used(tmp_path: Path) -> None:
    """Same path, another key (another route, or a client's own credentials): a second pass."""
    mine = build({"scheme": "threecommas", "api_key": "k", "secret": Secret("other-secret")})
    theirs = build(SCHEME_OPTIONS[1])
    data = os.urandom(CHUNK + 1)
    head = UpstreamRequest("PUT", "/v1/x", "", {})
    spooler = BodySpooler(0, str(tmp_path), (), theirs.body_prefix(head))
    await spooler.feed(data)
    body = await spooler.finish()
    result = await mine.apply(UpstreamRequest("PUT", "/v1/x", "", {}, body))
    body.close()
    assert (
        result.headers["Signature"] == hmac.new(b"other-secret", b"/v1/x" + data, hashlib.sha256).hexdigest()
    )

"""Issue 19 ("Trust, round 3"), findings 3, 4 and 10: what a client cannot get past a rule.

A real ``signet serve`` process, raw bytes over a socket, and an upstream that
records the exact bytes it receives (:mod:`tests.trust.rawupstream`): a refused
request must get the contract's status and code and reach nothing; an allowed
one must arrive byte for byte.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import config_text, secret
from tests.trust import RawResponse, raw_exchange
from tests.trust.rawupstream import RawUpstream

RULED = secret("round3-ruled-token-4c1d9e7f2a")
ADMIN = secret("round3-admin-token-8b3e6a0d5f")
ENV = {"RULED": RULED, "ADMIN": ADMIN}


def config(up: RawUpstream) -> str:
    routes = [{"name": "up", "prefix": "/up", "upstream": up.url("/base")}]
    clients = [
        {
            "name": "ruled",
            "token": "${RULED}",
            "allow": [
                {"route": "up", "methods": ["GET", "HEAD"], "paths": ["/pub/*", "/pub/*/show", "/deep/**"]}
            ],
        },
        {"name": "admin", "token": "${ADMIN}"},  # no allow rules: every method and path
    ]
    return config_text(routes, clients=clients)


def request(target: bytes, token: str, *headers: bytes, method: bytes = b"GET") -> bytes:
    lines = [
        method + b" " + target + b" HTTP/1.1",
        b"Host: signet",
        b"Proxy-Authorization: Bearer " + token.encode(),
        *headers,
        b"Connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def send(port: int, data: bytes) -> RawResponse:
    return await raw_exchange(port, data, timeout=10, linger=0.2)


def refused(resp: RawResponse, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, resp.raw[:400]
    assert resp.headers["x-signet-error"] == code
    err = json.loads(resp.body)["error"]
    assert err["code"] == code
    return err  # type: ignore[no-any-return]


@pytest.fixture
def signet_port(signet_process: Any, raw_upstream: RawUpstream) -> int:
    proc = signet_process(config(raw_upstream), env=ENV)
    return int(proc.proxy_url.rsplit(":", 1)[1])


# Finding 3: '*' matched encoded separators. Each of these reads as more than one
# segment to some server behind the vendor (Django/Flask/gunicorn decode %2F once;
# IIS takes '\' and %u; a second proxy decodes twice; NFKC maps full-width forms).
HIDDEN_SEPARATORS = [
    b"x%2Fadmin%2Fdelete-all",
    b"x%2fadmin",
    b"x\\admin",
    b"x%5Cadmin",
    b"x%5cadmin",
    b"x%252Fadmin",
    b"x%25252fadmin",
    b"x%255Cadmin",
    "x\uff0fadmin".encode(),  # full-width solidus, raw UTF-8
    "x\uff3cadmin".encode(),  # full-width reverse solidus, raw UTF-8
    b"x%EF%BC%8Fadmin",
    b"x%ef%bc%8fadmin",
    b"x%EF%BC%BCadmin",
    b"x%25EF%25BC%258Fadmin",
    b"x%u002Fadmin",
    b"x%c0%afadmin",  # overlong UTF-8 '/'
    b"x%%32%46admin",  # the hex digits themselves encoded: %2F after one round
]


async def test_star_never_matches_a_separator_in_any_spelling(
    signet_port: int, raw_upstream: RawUpstream
) -> None:
    for hidden in HIDDEN_SEPARATORS:
        for target in (b"/up/pub/" + hidden, b"/up/pub/" + hidden + b"/show"):
            resp = await send(signet_port, request(target, RULED))
            err = refused(resp, 403, "forbidden")
            assert "allow[0]" in err["message"] and "/pub/*" in err["message"], err
    assert raw_upstream.received == []


async def test_star_still_matches_one_plain_segment_and_double_star_crosses(
    signet_port: int, raw_upstream: RawUpstream
) -> None:
    allowed = [
        b"/up/pub/x",
        b"/up/pub/x%20y",
        b"/up/pub/caf%C3%A9",
        "/up/pub/caf\u00e9".encode(),
        b"/up/pub/a;v=1/show",
        b"/up/pub/x?next=%2Fadmin",  # the query is not part of the match
        b"/up/deep/a%2Fb/c%5Cd",  # '**' crosses segments in any spelling
    ]
    for target in allowed:
        resp = await send(signet_port, request(target, RULED))
        assert resp.status == 200, (target, resp.raw[:300])
    # forwarded byte for byte, prefix replaced
    assert [r.request_line.split(b" ")[1] for r in raw_upstream.received] == [
        b"/base" + t[len(b"/up") :] for t in allowed
    ]
    # a client without rules is not bound by them: the same hidden separator goes through
    resp = await send(signet_port, request(b"/up/pub/x%2Fadmin", ADMIN))
    assert resp.status == 200
    assert raw_upstream.received[-1].request_line == b"GET /base/pub/x%2Fadmin HTTP/1.1"


# Finding 4: method rules ignored method-override headers.
OVERRIDES: list[tuple[bytes, tuple[bytes, ...]]] = [
    (b"/up/pub/x", (b"X-HTTP-Method-Override: DELETE",)),
    (b"/up/pub/x", (b"X-HTTP-Method: DELETE",)),
    (b"/up/pub/x", (b"X-Method-Override: PUT",)),
    (b"/up/pub/x", (b"x-http-method-override: delete",)),
    (b"/up/pub/x", (b"X_HTTP_Method_Override: DELETE",)),
    (b"/up/pub/x", (b"X-Http_Method: PATCH",)),
    (b"/up/pub/x", (b"X-HTTP-Method-Override: GET", b"X-HTTP-Method-Override: DELETE")),  # every occurrence
    (b"/up/pub/x", (b"X-HTTP-Method-Override: GET, DELETE",)),
    (b"/up/pub/x?_method=DELETE", ()),
    (b"/up/pub/x?a=1&_method=delete", ()),
    (b"/up/pub/x?_method=GET&_method=DELETE", ()),  # every occurrence
    (b"/up/pub/x?%5Fmethod=DELETE", ()),
    (b"/up/pub/x?%5fmethod=PUT", ()),
    (b"/up/pub/x?_%6Dethod=PUT", ()),
    (b"/up/pub/x?%255Fmethod=PUT", ()),
    (b"/up/pub/x?_method=%44ELETE", ()),
]


async def test_method_rule_binds_override_headers_and_method_parameter(
    signet_port: int, raw_upstream: RawUpstream
) -> None:
    for target, headers in OVERRIDES:
        resp = await send(signet_port, request(target, RULED, *headers))
        err = refused(resp, 403, "forbidden")
        assert "overridden to" in err["message"] and "allow[0]" in err["message"], (target, headers, err)
    assert raw_upstream.received == []


async def test_allowed_overrides_are_forwarded_as_sent(signet_port: int, raw_upstream: RawUpstream) -> None:
    resp = await send(signet_port, request(b"/up/pub/x", RULED, b"X-HTTP-Method-Override: HEAD"))
    assert resp.status == 200
    resp = await send(signet_port, request(b"/up/pub/x?_method=GET", RULED))
    assert resp.status == 200
    resp = await send(signet_port, request(b"/up/pub/x", ADMIN, b"X-HTTP-Method-Override: DELETE"))
    assert resp.status == 200  # no method rule for this client
    first, second, third = raw_upstream.received
    assert first.header("X-HTTP-Method-Override") == ["HEAD"]
    assert second.request_line == b"GET /base/pub/x?_method=GET HTTP/1.1"
    assert third.header("X-HTTP-Method-Override") == ["DELETE"]


# Finding 10: legacy dot-segment spellings, and NUL after decoding.
LEGACY_DOTS = [
    b"..%00",
    b"..%09",
    b"..%20",
    b"..%0d%0a",
    b"..%2500",
    b"..%00;x=1",
    b"%2e%2e%00",
    b"%c0%ae%c0%ae",  # overlong UTF-8
    b"%C0%AE%C0%AE",
    b"%e0%80%ae%e0%80%ae",
    b"%c0%ae",
    b"%u002e%u002e",
    b"%U002E%u002e",
    b"%25u002e%25u002e",
    "\uff0e\uff0e".encode(),  # full-width dots, raw UTF-8
    "\uff0e".encode(),
    b"%EF%BC%8E%EF%BC%8E",
    b"%ef%bc%8e%ef%bc%8e",
    b"%25EF%25BC%258E%25EF%25BC%258E",
    b"%EF%BC%8E%EF%BC%8E;a",
    b"x%2f%c0%ae%c0%ae%2fy",
    "\u2025".encode(),  # TWO DOT LEADER: NFKC '..'
]


async def test_legacy_dot_segment_spellings_are_refused(signet_port: int, raw_upstream: RawUpstream) -> None:
    for segment in LEGACY_DOTS:
        for target in (b"/up/a/" + segment + b"/b", b"/up/a/" + segment):
            resp = await send(signet_port, request(target, ADMIN))
            err = refused(resp, 400, "bad_request")
            assert "dot-segment" in err["message"], (target, err)
    assert raw_upstream.received == []


async def test_nul_after_decoding_is_refused_in_path_and_query(
    signet_port: int, raw_upstream: RawUpstream
) -> None:
    for target in [
        b"/up/a%00b",
        b"/up/a%2500b",
        b"/up/a%252500b",
        b"/up/a%u0000b",
        b"/up/a%c0%80b",  # Java's modified UTF-8 NUL
        b"/up/a?q=%00",
        b"/up/a?q=x%2500",
        b"/up/a?q=%c0%80",
    ]:
        resp = await send(signet_port, request(target, ADMIN))
        err = refused(resp, 400, "bad_request")
        assert "NUL" in err["message"], (target, err)
    assert raw_upstream.received == []
    # names that merely contain dots, spaces or %-escapes still go through, byte for byte
    fine = [b"/up/a/...", b"/up/a/x..y", b"/up/a/.%20b", b"/up/a/..x", b"/up/a/%2e%2e%2e", b"/up/a?q=%2e%2e"]
    for target in fine:
        resp = await send(signet_port, request(target, ADMIN))
        assert resp.status == 200, (target, resp.raw[:300])
    assert [r.request_line.split(b" ")[1] for r in raw_upstream.received] == [
        b"/base" + t[len(b"/up") :] for t in fine
    ]

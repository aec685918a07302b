"""Issue 15 ("Trust, round 2"): each gap, proved with raw bytes on both sides.

Every test sends raw bytes over a socket, checks what the client got, and
checks the exact bytes the upstream received (a bare asyncio server,
:mod:`tests.trust.rawupstream`), or that it received nothing.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from tests.conftest import config_text, secret
from tests.trust import raw_exchange
from tests.trust.rawupstream import RawUpstream

TOKEN = secret("round2-client-token-5e4d3c2b1a")
STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


def route(up: RawUpstream, **extra: Any) -> dict[str, Any]:
    return {"name": "up", "prefix": "/up", "upstream": up.url("/base"), **extra}


async def start(make_signet: Any, up: RawUpstream, **top: Any) -> int:
    routes = top.pop("routes", None) or [route(up)]
    env = top.pop("env", None)
    app = await make_signet(config_text(routes, **top), env=env)
    return int(app.proxy_address[1])


def get(target: bytes, *headers: bytes, method: bytes = b"GET") -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: signet", *headers, b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def read_until_closed(port: int, chunks: list[bytes], timeout: float = 20.0) -> tuple[bytes, bool, float]:
    """Send each chunk in its own write; read everything until the server closes.

    Returns (bytes read, closed by the server, seconds from the last write to the close).
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.05)
        sent = time.monotonic()
        out = b""
        deadline = sent + timeout
        while time.monotonic() < deadline:
            try:
                part = await asyncio.wait_for(reader.read(65536), deadline - time.monotonic())
            except TimeoutError:
                return out, False, time.monotonic() - sent
            except ConnectionError:
                return out, True, time.monotonic() - sent
            if not part:
                return out, True, time.monotonic() - sent
            out += part
        return out, False, time.monotonic() - sent
    finally:
        writer.close()


def statuses(raw: bytes) -> list[int]:
    return [int(m) for m in STATUS.findall(raw)]


async def assert_400_nothing_sent(port: int, up: RawUpstream, data: bytes) -> None:
    before = len(up.received)
    resp = await raw_exchange(port, data, linger=0.3)
    assert resp.status == 400, (data, resp.raw[:300])
    assert resp.headers["x-signet-error"] == "bad_request"
    assert resp.json()["error"]["code"] == "bad_request"
    assert up.received[before:] == [], data


# --------------------------------------------------------------- gap 1: ..;


async def test_dot_segments_before_params_and_nested_encodings_are_400(
    make_signet: Any, raw_upstream: RawUpstream
) -> None:
    port = await start(make_signet, raw_upstream)
    for target in (
        b"/up/api/ver1/..;/..;/admin/users",
        b"/up/api/..;jsessionid=1/admin",
        b"/up/api/%2e%2e;/admin",
        b"/up/api/%2E%2e;x=1/admin",
        b"/up/api/..%3b/admin",
        b"/up/api/..%3B/admin",
        b"/up/api/.;/admin",
        b"/up/api/%2e%2e%3b/admin",
        b"/up/api/%252e%252e%253b/admin",
        b"/up/api/%2525252e%2525252e/admin",  # four levels deep
        b"/up/api/%25252525252e%25252525252e/admin",
        b"/up/api/%" + b"25" * 12 + b"2e",  # past the decoding bound: refused, not trusted
    ):
        await assert_400_nothing_sent(port, raw_upstream, get(target))
    # control: ;params on ordinary segments pass through byte for byte
    resp = await raw_exchange(port, get(b"/up/a;v=1/b..c;x/%3bd?e=..;"))
    assert resp.status == 200, resp.raw[:300]
    assert raw_upstream.received[-1].request_line == b"GET /base/a;v=1/b..c;x/%3bd?e=..; HTTP/1.1"


# ---------------------------------------------------------------- gap 2: #


async def test_hash_anywhere_in_the_target_is_400(make_signet: Any, raw_upstream: RawUpstream) -> None:
    port = await start(make_signet, raw_upstream)
    for target in (b"/up/echo?a=1#b", b"/up/echo#frag", b"/up/e#/../x", b"/up/echo?#"):
        body = b"{}"
        data = get(target, b"Content-Length: 2", method=b"POST") + body
        await assert_400_nothing_sent(port, raw_upstream, data)
    resp = await raw_exchange(port, get(b"/up/echo?a=1%23b"))
    assert resp.status == 200
    assert raw_upstream.received[-1].request_line == b"GET /base/echo?a=1%23b HTTP/1.1"


# -------------------------------------------------------------- gap 3: UTF-8


async def test_raw_utf8_in_the_target_is_forwarded_byte_for_byte(
    make_signet: Any, raw_upstream: RawUpstream
) -> None:
    port = await start(make_signet, raw_upstream)
    for target in (b"/up/search?q=\xc3\xbc", b"/up/caf\xc3\xa9/x?n=\xe6\x97\xa5&m=\xf0\x9f\x98\x80"):
        resp = await raw_exchange(port, get(target))
        assert resp.status == 200, resp.raw[:300]
        assert raw_upstream.received[-1].request_line == b"GET /base" + target[3:] + b" HTTP/1.1"
    # the request line split across reads, a multi-byte character cut in two
    raw, closed, _ = await read_until_closed(
        port, [b"GET /up/s?q=\xc3", b"\xbc&r=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]
    )
    assert statuses(raw) == [200] and closed
    assert raw_upstream.received[-1].request_line == b"GET /base/s?q=\xc3\xbc&r=1 HTTP/1.1"
    # the blank line ending a first request split across reads, a UTF-8 request right after
    before = len(raw_upstream.received)
    raw, closed, _ = await read_until_closed(
        port,
        [
            b"GET /up/one HTTP/1.1\r\nHost: x\r\n\r",
            b"\nGET /up/two?q=\xc3\xbc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ],
    )
    assert statuses(raw) == [200, 200] and closed, raw[-300:]
    assert [r.request_line for r in raw_upstream.received[before:]] == [
        b"GET /base/one HTTP/1.1",
        b"GET /base/two?q=\xc3\xbc HTTP/1.1",
    ]
    # keep-alive: an ASCII request with a body, then a UTF-8 one, then an ASCII one
    data = (
        b"POST /up/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /up/b?q=\xc3\xbc HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /up/c HTTP/1.1\r\nHost: x\r\nX-V: \xc3\xa9\r\nConnection: close\r\n\r\n"
    )
    before = len(raw_upstream.received)
    raw, closed, _ = await read_until_closed(port, [data])
    assert statuses(raw) == [200, 200, 200] and closed
    got = raw_upstream.received[before:]
    assert [r.request_line for r in got] == [
        b"POST /base/a HTTP/1.1",
        b"GET /base/b?q=\xc3\xbc HTTP/1.1",
        b"GET /base/c HTTP/1.1",
    ]
    assert got[0].body == b"hello"
    assert b"\r\nX-V: \xc3\xa9\r\n" in got[2].head


async def test_header_values_with_high_bytes_are_forwarded_byte_for_byte(
    make_signet: Any, raw_upstream: RawUpstream
) -> None:
    """UTF-8 and bytes that are not UTF-8 in a header value reach the upstream as they were sent."""
    port = await start(make_signet, raw_upstream)
    resp = await raw_exchange(port, get(b"/up/h", b"X-A: \xff\xfeok", b"X-B: caf\xc3\xa9"))
    assert resp.status == 200, resp.raw[:300]
    lines = raw_upstream.received[-1].head.split(b"\r\n")
    assert b"X-A: \xff\xfeok" in lines and b"X-B: caf\xc3\xa9" in lines, lines


async def test_control_bytes_and_invalid_utf8_in_the_target_stay_400(
    make_signet: Any, raw_upstream: RawUpstream
) -> None:
    port = await start(make_signet, raw_upstream)
    for target in (
        b"/up/a?q=\x01",
        b"/up/a?q=\x7f",
        b"/up/\x00",
        b"/up/\xc3\xbc?q=\x1b",
        b"/up/a?q=\xff",
        b"/up/\xc3(",
        b"/up/\xc3\xbc/..",
        b"/up/\xc3\xbc#x",
    ):
        resp = await raw_exchange(port, get(target), linger=0.3)
        assert resp.status == 400, (target, resp.raw[:200])
        assert resp.headers["x-signet-error"] == "bad_request"
        assert b"\\x" not in resp.body and target not in resp.body  # never echoed
    assert raw_upstream.received == []


# ------------------------------------------------------ gap 4: head size cap


async def test_request_head_over_max_head_bytes_is_431_before_it_is_complete(
    make_signet: Any, raw_upstream: RawUpstream
) -> None:
    port = await start(make_signet, raw_upstream, limits={"max_head_bytes": 4096})
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    raw = b""
    sent = 0
    try:
        writer.write(b"GET /up/a HTTP/1.1\r\nHost: x\r\n")
        for i in range(60):  # 1 KB at a time, and the blank line never comes
            writer.write(b"X-Pad-%d: " % i + b"v" * 1000 + b"\r\n")
            await writer.drain()
            sent += 1
            try:  # answered yet? (stop writing then: the server closed its side)
                raw = await asyncio.wait_for(reader.read(65536), 0.3)
                break
            except TimeoutError:
                continue
        raw += await asyncio.wait_for(reader.read(), 15)
    finally:
        writer.close()
    assert sent <= 6, sent  # answered as soon as the head passed 4 KiB, not when complete
    assert statuses(raw) == [431], raw[:300]  # the contract's headers_too_large
    assert b"max_head_bytes" in raw and b"X-Signet-Error: headers_too_large" in raw
    assert raw_upstream.received == []
    # under the cap: forwarded with every header
    pad = b"".join(b"X-Pad-%d: " % i + b"v" * 500 + b"\r\n" for i in range(6))
    resp = await raw_exchange(port, get(b"/up/a", pad.rstrip(b"\r\n")))
    assert resp.status == 200
    assert len(raw_upstream.received[-1].header("X-Pad-5")) == 1


# --------------------------------------------------- gap 5: non-UTF-8 token


async def test_a_non_utf8_client_token_is_403_not_500(make_signet: Any, raw_upstream: RawUpstream) -> None:
    port = await start(
        make_signet, raw_upstream, clients=[{"name": "app", "token": "${T}"}], env={"T": TOKEN}
    )
    for header in (
        b"X-Signet-Token: \xff\xfe" + TOKEN.encode(),
        b"Proxy-Authorization: Bearer \xff" + TOKEN.encode()[1:],
        b"Proxy-Authorization: Bearer \xc3\xbc",
    ):
        resp = await raw_exchange(port, get(b"/up/a", header))
        assert resp.status == 403, resp.raw[:300]
        assert resp.headers["x-signet-error"] == "forbidden"
    assert raw_upstream.received == []
    resp = await raw_exchange(port, get(b"/up/a", b"X-Signet-Token: " + TOKEN.encode()))
    assert resp.status == 200


# ------------------------------------------------ gap 6: header spellings


async def test_underscore_spellings_and_every_connection_header_are_stripped(
    make_signet: Any, raw_upstream: RawUpstream
) -> None:
    routes = [
        route(
            raw_upstream,
            auth={"scheme": "threecommas", "api_key": "${K}", "secret": "${S}"},
            strip_headers=["X-Route-Strip"],
        )
    ]
    port = await start(
        make_signet,
        raw_upstream,
        routes=routes,
        env={"K": secret("round2-apikey-9f8e7d"), "S": secret("round2-secret-6c5b4a")},
    )
    data = get(
        b"/up/a",
        b"X_Api_Key: evil1",
        b"API-DIGEST: evil2",
        b"api_key: evil3",
        b"Api_Key: evil4",
        b"x_signet_token: evil5",
        b"Proxy_Authorization: evil6",
        b"X_ROUTE_STRIP: evil7",
        b"APIKEY: evil8",
        b"Connection: keep-alive",
        b"Connection: X-Hop2",
        b"Connection: X_Hop3",
        b"X-Hop2: evil9",
        b"X-Hop3: evil10",
        b"X-Keep: kept",
    )
    resp = await raw_exchange(port, data)
    assert resp.status == 200, resp.raw[:300]
    got = raw_upstream.received[-1]
    assert not re.search(rb"evil", got.head), got.head
    assert got.header("X-Keep") == ["kept"]
    assert len(got.header("Apikey")) == 1 and len(got.header("Signature")) == 1  # the scheme's own
    assert "connection" not in [n for n in got.names() if got.header(n) == ["X-Hop2"]]


# ----------------------------------------- gap 7: header timer, pipelined


async def test_header_timeout_applies_to_a_head_that_follows_a_pipelined_request(
    make_signet: Any, raw_upstream: RawUpstream
) -> None:
    port = await start(
        make_signet,
        raw_upstream,
        limits={"request_header_timeout": 1, "keepalive_timeout": 60},
    )
    first = b"GET /up/one HTTP/1.1\r\nHost: x\r\n\r\n"
    raw, closed, waited = await read_until_closed(port, [first + b"GET /up/two HTTP/1.1\r\nHo"], timeout=30)
    assert statuses(raw) == [200], raw[:300]
    assert closed and waited < 20, (closed, waited)  # the 1 s header timeout, not the 60 s keep-alive
    assert [r.request_line for r in raw_upstream.received] == [b"GET /base/one HTTP/1.1"]


# ------------------------------------------------------- gap 8: pipelining


async def test_valid_request_with_connection_close_then_garbage_is_answered_first(
    make_signet: Any, raw_upstream: RawUpstream
) -> None:
    port = await start(make_signet, raw_upstream)
    for garbage in (b"GARBAGE\r\n\r\n", b"\x16\x03\x01\x00", b"GET /up/b HTTP/1.1\r\nHost: x\r\n\r\n", b"x"):
        before = len(raw_upstream.received)
        data = b"GET /up/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + garbage
        raw, closed, _ = await read_until_closed(port, [data])
        assert statuses(raw) == [200], (garbage, raw[:300])
        assert closed
        assert [r.request_line for r in raw_upstream.received[before:]] == [b"GET /base/a HTTP/1.1"]
    # keep-alive: the valid request is answered, then the malformed one gets its 400
    before = len(raw_upstream.received)
    data = b"GET /up/a HTTP/1.1\r\nHost: x\r\n\r\nGET /up/\x00 HTTP/1.1\r\nHost: x\r\n\r\n"
    raw, closed, _ = await read_until_closed(port, [data])
    assert statuses(raw) == [200, 400] and closed, raw[:500]
    assert [r.request_line for r in raw_upstream.received[before:]] == [b"GET /base/a HTTP/1.1"]


# ------------------------------------------------- gap 9: protocol manners


async def test_407_names_its_scheme_and_own_answers_carry_no_version(
    make_signet: Any, raw_upstream: RawUpstream
) -> None:
    cfg = config_text([route(raw_upstream)], clients=[{"name": "app", "token": "${T}"}])
    app = await make_signet(cfg, env={"T": TOKEN})
    port = app.proxy_address[1]
    resp = await raw_exchange(port, get(b"/up/a"))
    assert resp.status == 407
    assert resp.headers["proxy-authenticate"] == 'Bearer realm="signet"'
    answers = [
        resp,
        await raw_exchange(port, get(b"/nowhere", b"X-Signet-Token: " + TOKEN.encode())),  # 404
        await raw_exchange(port, get(b"/up/a", b"X-Signet-Token: wrong-token")),  # 403
        await raw_exchange(port, get(b"/up/..", b"X-Signet-Token: " + TOKEN.encode())),  # 400
        await raw_exchange(port, b"GET /up/\x00 HTTP/1.1\r\n\r\n"),  # 400 from the parser
    ]
    admin = app.admin_address[1]
    answers.append(await raw_exchange(admin, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert [a.status for a in answers] == [407, 404, 403, 400, 400, 200]
    for a in answers:
        head = a.raw.split(b"\r\n\r\n", 1)[0].lower()
        assert b"aiohttp" not in head and b"python" not in head, head
    assert raw_upstream.received == []


async def test_forward_client_info_replaces_what_the_client_claimed(
    make_signet: Any, raw_upstream: RawUpstream
) -> None:
    port = await start(make_signet, raw_upstream, routes=[route(raw_upstream, forward_client_info=True)])
    data = get(
        b"/up/a",
        b"X-Forwarded-For: 6.6.6.6",
        b"X-Forwarded-For: 7.7.7.7",
        b"X_Forwarded_For: 8.8.8.8",
        b"X-Forwarded-Proto: https",
        b"X-Forwarded-Host: evil.example",
        b"Forwarded: for=6.6.6.6;host=evil.example",
        b"X-Real-IP: 6.6.6.6",
    )
    resp = await raw_exchange(port, data)
    assert resp.status == 200
    got = raw_upstream.received[-1]
    assert b"6.6.6.6" not in got.head and b"7.7.7.7" not in got.head and b"8.8.8.8" not in got.head
    assert b"evil.example" not in got.head
    assert got.header("X-Forwarded-For") == ["127.0.0.1"]
    assert got.header("X-Forwarded-Proto") == ["http"]
    assert got.header("X-Forwarded-Host") == ["signet"]
    assert got.header("X-Real-IP") == ["127.0.0.1"]
    assert got.header("Forwarded") == ['for="127.0.0.1";proto=http;host="signet"']
    # without forward_client_info the client's own headers pass as they are (nothing added)
    port2 = await start(make_signet, raw_upstream)
    resp = await raw_exchange(port2, get(b"/up/a", b"X-Forwarded-For: 6.6.6.6"))
    assert raw_upstream.received[-1].header("X-Forwarded-For") == ["6.6.6.6"]
    assert raw_upstream.received[-1].header("X-Real-IP") == []


async def test_after_a_raw_utf8_request_the_connection_stays_as_strict(
    make_signet: Any, raw_upstream: RawUpstream
) -> None:
    """The parser that takes raw UTF-8 keeps refusing what llhttp refuses."""
    port = await start(make_signet, raw_upstream)
    first = b"GET /up/\xc3\xbc HTTP/1.1\r\nHost: x\r\n\r\n"
    bad = [
        b"GET /up/a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /up/a\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /up/a HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        b"GET /up/a HTTP/1.1\r\nHost: x\r\nX A: 1\r\n\r\n",
        b"GET /up/a HTTP/1.1\r\nHost: x\r\nX-Inject: a\r\n b\r\n\r\n",
        b"GET /up/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /up/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"GET /up/a\r\n\r\n",
        b"CONNECT /up/\xc3\xbc HTTP/1.1\r\nHost: x\r\n\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"G ET /up/a HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    for data in bad:
        before = len(raw_upstream.received)
        raw, closed, _ = await read_until_closed(port, [first + data], timeout=15)
        assert statuses(raw) == [200, 400], (data, raw[-400:])
        assert closed or b"Connection: close" in raw, data
        assert [r.request_line for r in raw_upstream.received[before:]] == [b"GET /base/\xc3\xbc HTTP/1.1"]

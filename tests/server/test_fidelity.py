"""What passes through unchanged (contract: "fidelity"), checked on both sockets.

Each test speaks raw bytes to an in-process Signet and checks what the client
got and the exact bytes the scripted upstream received (issue 18, items 1-8).
"""

from __future__ import annotations

import asyncio
import gzip
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from proxy.mock.threecommas import signature as threecommas_signature
from tests.conftest import config_text
from tests.server.scripted import ScriptedUpstream

# bytes made by other encoders (node's zlib.brotliCompressSync, the zstd CLI): never decoded here
BROTLI = bytes.fromhex(
    "1b1102f89d09764c6202782ac6f45a444c6e4f97b5cdf5491036ba3e4b637b9392b4426035d052635cfbd652b34f30"
)
ZSTD = bytes.fromhex("28b52ffd0458ad0000707b227a737464223a22616263227d0100102997041c151605")
GZIP = gzip.compress(b'{"a": 1, "pad": "' + b"z" * 3000 + b'"}', mtime=0)
SECRET = "fidelity-3c-secret"


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedUpstream]:
    up = await ScriptedUpstream().start()
    yield up
    await up.close()


async def start(make_signet: Any, up: ScriptedUpstream, **limits: Any) -> int:
    routes = [
        {"name": "plain", "prefix": "/plain", "upstream": up.url()},
        {
            "name": "signed",
            "prefix": "/signed",
            "upstream": up.url(),
            "auth": {"scheme": "threecommas", "api_key": "k", "secret": SECRET},
        },
    ]
    extra = {"limits": limits} if limits else {}
    app = await make_signet(config_text(routes, **extra))
    return int(app.proxy_address[1])


async def talk(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data``; everything the server sends until it closes (or ``timeout``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        out = bytearray()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), left)
            except (TimeoutError, ConnectionError):
                break
            if not chunk:
                break
            out += chunk
        return bytes(out)
    finally:
        writer.close()


def chunked(body: bytes, pieces: int = 3) -> bytes:
    step = max(1, len(body) // pieces)
    parts = [body[i : i + step] for i in range(0, len(body), step)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


# ------------------------------------------------------- 1. encoded bodies


@pytest.mark.parametrize("route", ["plain", "signed"])
@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize(("encoding", "body"), [("gzip", GZIP), ("br", BROTLI), ("zstd", ZSTD)])
async def test_encoded_request_bodies_pass_untouched(
    make_signet: Any, scripted: ScriptedUpstream, route: str, framing: str, encoding: str, body: bytes
) -> None:
    port = await start(make_signet, scripted)
    head = b"POST /%s/echo?x=1 HTTP/1.1\r\nHost: c\r\nContent-Encoding: %s\r\nConnection: close\r\n" % (
        route.encode(),
        encoding.encode(),
    )
    if framing == "length":
        data = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    else:
        data = head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body)
    answer = await talk(port, data)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    [seen] = scripted.received
    assert seen.decoded == body  # never inflated, never re-encoded
    assert seen.header(b"Content-Encoding") == [encoding.encode()]
    if route == "signed":  # the vendor's HMAC over path + query + the bytes sent (3Commas docs)
        expected = threecommas_signature(SECRET, "/base/echo", "x=1", seen.decoded)
        assert seen.header(b"Signature") == [expected.encode()]
        assert seen.header(b"Content-Length") == [str(len(body)).encode()]


# ---------------------------------------------------------------- 2. trailers


async def test_upstream_trailers_stay_trailers(make_signet: Any, scripted: ScriptedUpstream) -> None:
    scripted.answers[b"/t"] = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
        b"5\r\nhello\r\n0\r\nX-Checksum: abc123\r\nX-Other: 1\r\n\r\n"
    )
    port = await start(make_signet, scripted)
    raw = await talk(port, b"GET /plain/t HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"x-checksum" not in head.lower()  # never merged into the header section
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"5\r\nhello\r\n0\r\nX-Checksum: abc123\r\nX-Other: 1\r\n\r\n"
    # an HTTP/1.0 client cannot take trailers: the body alone, ended by the close
    raw10 = await talk(port, b"GET /plain/t HTTP/1.0\r\nHost: c\r\n\r\n")
    head10, _, body10 = raw10.partition(b"\r\n\r\n")
    assert body10 == b"hello" and b"abc123" not in raw10 and b"chunked" not in head10.lower()


# ------------------------------------------------------------ 3. obs-text


async def test_obs_text_passes_byte_for_byte_both_ways(make_signet: Any, scripted: ScriptedUpstream) -> None:
    scripted.answers[b"/o"] = (
        b"HTTP/1.1 200 OK\r\nX-Latin1: caf\xe9\r\n"
        b'Content-Disposition: attachment; filename="r\xe9sum\xe9.pdf"\r\nContent-Length: 2\r\n\r\nok'
    )
    port = await start(make_signet, scripted)
    raw = await talk(port, b"GET /plain/o HTTP/1.1\r\nHost: c\r\nX-Name: Jos\xe9 \xff\x80\r\nConnection: close\r\n\r\n")
    assert b"\r\nX-Latin1: caf\xe9\r\n" in raw
    assert b'filename="r\xe9sum\xe9.pdf"' in raw
    assert b"\r\nX-Name: Jos\xe9 \xff\x80\r\n" in scripted.received[0].head


# ------------------------------------------------------- 4. header spelling

NAMES = [
    b"user-agent", b"ACCEPT", b"Accept-Language", b"accept-ENCODING", b"Cache-control", b"PRAGMA",
    b"If-None-Match", b"if-modified-since", b"Origin", b"referer", b"DNT", b"X-Requested-With",
    b"content-type", b"Accept-Charset", b"FROM", b"Max-Forwards", b"Range", b"If-Range", b"If-Match",
    b"If-Unmodified-Since", b"Sec-Fetch-Mode", b"sec-ch-ua", b"Upgrade-Insecure-Requests", b"X-Forwarded-Port",
    b"x-amzn-trace-id", b"Traceparent", b"TRACESTATE", b"Via", b"Warning", b"Date",
]


async def test_header_names_keep_their_spelling_and_order(make_signet: Any, scripted: ScriptedUpstream) -> None:
    assert len(NAMES) == 30
    answer_headers = b"".join(b"%s: v%d\r\n" % (n, i) for i, n in enumerate(NAMES))
    scripted.answers[b"/h"] = b"HTTP/1.1 200 OK\r\n" + answer_headers + b"content-LENGTH: 2\r\n\r\nok"
    port = await start(make_signet, scripted)
    sent = b"".join(b"%s: c%d\r\n" % (n, i) for i, n in enumerate(NAMES))
    raw = await talk(port, b"GET /plain/h HTTP/1.1\r\nHost: c\r\n" + sent + b"Connection: close\r\n\r\n")
    upstream_names = [line.split(b":")[0] for line in scripted.received[0].header_lines()]
    assert [n for n in upstream_names if n in NAMES] == NAMES  # spelling and order, every one
    client_names = [line.split(b":")[0] for line in raw.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]]
    assert [n for n in client_names if n in NAMES] == NAMES
    assert b"\r\ncontent-LENGTH: 2\r\n" in raw


# ------------------------------------------------------------ 5. 1xx answers


async def test_103_early_hints_relayed_to_http11_clients(make_signet: Any, scripted: ScriptedUpstream) -> None:
    scripted.answers[b"/hints"] = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    port = await start(make_signet, scripted)
    raw = await talk(port, b"GET /plain/hints HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert raw.endswith(b"\r\n\r\nok")
    raw10 = await talk(port, b"GET /plain/hints HTTP/1.0\r\nHost: c\r\n\r\n")
    assert raw10.startswith(b"HTTP/1.0 200 ") and b"103" not in raw10  # not to an HTTP/1.0 client


# ------------------------------------------------------ 6. Expect: 100-continue


async def test_expect_continue_upstream_early_413_reaches_client_before_upload(
    make_signet: Any, scripted: ScriptedUpstream
) -> None:
    scripted.answers[b"/upload"] = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nbig!"
    scripted.early.add(b"/upload")
    port = await start(make_signet, scripted)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"PUT /plain/upload HTTP/1.1\r\nHost: c\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n"
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)  # no body byte sent yet
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 413 "), head
    [seen] = scripted.received
    assert seen.header(b"Expect") == [b"100-continue"]  # the same expectation, upstream
    await _until(lambda: b"/upload" in scripted.late_body)
    assert scripted.late_body[b"/upload"] == 0  # and the upstream got no body byte


async def test_expect_continue_upstream_100_then_body(make_signet: Any, scripted: ScriptedUpstream) -> None:
    scripted.continue_first.add(b"/up")
    port = await start(make_signet, scripted)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST /plain/up HTTP/1.1\r\nHost: c\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200 ")
    finally:
        writer.close()
    assert scripted.received[0].decoded == b"hello"


async def test_expect_continue_not_answered_before_signet_admits(make_signet: Any, scripted: ScriptedUpstream) -> None:
    port = await start(make_signet, scripted)
    raw = await talk(port, b"POST /nowhere HTTP/1.1\r\nHost: c\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", 3)
    assert raw.startswith(b"HTTP/1.1 404 ") and b"100 Continue" not in raw
    assert scripted.received == []


# ------------------------------------------ 7-8. Signet's own answers, framing


async def test_own_answers_are_http11_without_a_version(make_signet: Any, scripted: ScriptedUpstream) -> None:
    port = await start(make_signet, scripted, max_url_length=256, max_headers=10)
    for data, status, code in [
        (b"GET /nowhere HTTP/1.0\r\n\r\n", 404, b"no_route"),
        (b"GET /plain/" + b"a" * 300 + b" HTTP/1.1\r\nHost: c\r\n\r\n", 414, b"uri_too_long"),
        (b"GET /plain/x HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(12)) + b"\r\n", 431,
         b"headers_too_large"),
        (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n", 400, b"bad_request"),
        (b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", 400, b"bad_request"),
        (b"GET /plain/ws HTTP/1.1\r\nHost: c\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 400,
         b"bad_request"),
    ]:
        raw = await talk(port, data, 5)
        assert raw.startswith(b"HTTP/1.1 %d " % status), raw[:100]
        assert b"\r\nX-Signet-Error: " + code + b"\r\n" in raw
        assert b"\r\nServer: Signet\r\n" in raw and re.search(rb"Server: [^\r]*\d", raw) is None
        assert b"\r\nX-Request-Id: " in raw
    upgrade = await talk(port, b"GET /plain/ws HTTP/1.1\r\nHost: c\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 5)
    assert b"websocket: true" in upgrade
    assert scripted.received == []  # none of them was forwarded


async def test_http10_and_bodiless_framing(make_signet: Any, scripted: ScriptedUpstream) -> None:
    scripted.answers[b"/chunky"] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    scripted.answers[b"/head"] = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    scripted.answers[b"/nc"] = b"HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n\r\n"
    port = await start(make_signet, scripted)
    raw = await talk(port, b"GET /plain/chunky HTTP/1.0\r\nHost: c\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 ") and b"Connection: close" in head and body == b"abc"
    # HEAD and 304 carry no body; the connection stays usable for the next request
    raw = await talk(
        port,
        b"HEAD /plain/head HTTP/1.1\r\nHost: c\r\n\r\nGET /plain/nc HTTP/1.1\r\nHost: c\r\n\r\n"
        b"GET /plain/x HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n",
    )
    parts = re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)
    assert parts == [b"200", b"304", b"200"], raw
    assert b"Content-Length: 10\r\n" in raw and raw.endswith(b"\r\n\r\nok")


async def test_pipelined_malformed_follower_after_the_valid_request(
    make_signet: Any, scripted: ScriptedUpstream
) -> None:
    port = await start(make_signet, scripted)
    raw = await talk(
        port,
        b"GET /plain/a HTTP/1.1\r\nHost: c\r\n\r\nGET /plain/q?\xc3\xbc=1 HTTP/1.1\r\nHost: c\r\n\r\n"
        b"GET /pl\x00ain HTTP/1.1\r\nHost: c\r\n\r\n",
    )
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", raw) == [b"200", b"200", b"400"], raw
    assert [s.target for s in scripted.received] == [b"/base/a", b"/base/q?\xc3\xbc=1"]  # raw UTF-8 kept


async def _until(pred: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)

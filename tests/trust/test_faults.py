"""Fault behaviour against real loopback servers, each with a leak check.

Every case asserts: the right status (or a response cut short, never reported
complete), a log line that says what happened, and afterwards no request,
task, socket or response object left behind.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from proxy.upstream import UpstreamResponse
from tests.conftest import config_text
from tests.fakes import STATE, upstream_app
from tests.trust import (
    log_offset,
    num_fds,
    pooled_connections,
    route_state,
    tracked,
    wait_for_event,
    wait_until,
)

# --------------------------------------------------------------- evil upstream

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0) rather than a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _hung_up(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Wait up to `seconds`; True as soon as the peer closes."""
    try:
        return await asyncio.wait_for(reader.read(), seconds) == b""
    except TimeoutError:
        return False


class EvilUpstream:
    """A raw TCP server: reads one request head, then misbehaves by path."""

    def __init__(self) -> None:
        self.behaviours: dict[str, Behaviour] = {}
        self.server: asyncio.Server | None = None
        self.port = 0
        self.handlers: set[asyncio.Task[Any]] = set()
        self.requests: list[bytes] = []

    async def start(self) -> EvilUpstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head)
            path = head.split(b" ", 2)[1].decode().split("?")[0]
            behaviour = self.behaviours[path.rsplit("/", 1)[-1]]
            await behaviour(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            if not writer.transport.is_closing():
                writer.transport.abort()
            self.handlers.discard(task)

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for t in list(self.handlers):
            t.cancel()
        await self.server.wait_closed()


@pytest.fixture
async def evil() -> Any:
    server = await EvilUpstream().start()
    yield server
    await server.close()


# -------------------------------------------------------------- leak checking


class LeakCheck:
    """Snapshot before a case; after it everything must come back down."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.tasks = len(asyncio.all_tasks())
        self.fds = num_fds()
        self.objects = tracked(UpstreamResponse, web.BaseRequest)

    async def verify(self) -> None:
        app = self.app
        server = app.listener
        await wait_until(lambda: route_state(app) == (0, 0), what="no request active")
        await wait_until(lambda: pooled_connections(app)[1] == 0, what="no upstream connection held")
        await wait_until(lambda: not server.connections, what="client connections closed")
        await wait_until(
            # an idle pooled connection to an in-process aiohttp upstream keeps its handler task there
            lambda: len(asyncio.all_tasks()) <= self.tasks + pooled_connections(app)[0],
            what="tasks back to baseline",
        )
        await wait_until(
            # an idle pooled connection to an in-process upstream is two fds here (both ends)
            lambda: num_fds() <= self.fds + 2 * pooled_connections(app)[0],
            what="fds back to baseline",
        )
        await wait_until(
            # (an idle in-process aiohttp upstream keeps its last request in its handler's frame)
            lambda: tracked(UpstreamResponse, web.BaseRequest) <= self.objects + pooled_connections(app)[0],
            what="no response/request objects kept",
        )
        assert not [h for h in server.connections if isinstance(h, RequestHandler)]


def route(url: str, **extra: Any) -> dict[str, Any]:
    return {"name": "up", "prefix": "/up", "upstream": url, **extra}


async def fetch(url: str, method: str = "GET", **kw: Any) -> tuple[int, Any, bytes, str | None]:
    """(status, headers, body read so far, name of the error that cut the body or None)."""
    async with aiohttp.ClientSession() as s, s.request(method, url, **kw) as r:
        body = b""
        try:
            async for chunk in r.content.iter_any():
                body += chunk
        except aiohttp.ClientPayloadError as exc:
            return r.status, r.headers.copy(), body, type(exc).__name__
        return r.status, r.headers.copy(), body, None


async def one_case(
    make_signet: Any,
    routes: list[dict[str, Any]],
    path: str,
    *,
    limits: dict[str, Any] | None = None,
    **kw: Any,
) -> tuple[tuple[int, Any, bytes, str | None], dict[str, Any]]:
    cfg = config_text(routes, **({"limits": limits} if limits else {}))
    app = await make_signet(cfg)
    await fetch(app.proxy_url + "/nope")  # warm-up: lazily created objects exist before the snapshot
    leaks = LeakCheck(app)
    since = log_offset()
    rid = f"fault-{time.monotonic_ns()}"
    result = await fetch(app.proxy_url + path, headers={"X-Request-Id": rid}, **kw)
    event = await wait_for_event(lambda e: e.get("request_id") == rid, since)
    await leaks.verify()
    return result, event


# --------------------------------------------------------------- upstream side


async def test_upstream_refuses(make_signet: Any, unused_tcp_port: int) -> None:
    (status, headers, body, _), event = await one_case(
        make_signet, [route(f"http://127.0.0.1:{unused_tcp_port}")], "/up/x"
    )
    assert status == 502 and headers["X-Signet-Error"] == "upstream_unreachable"
    assert event["error"] == "upstream_unreachable" and "cannot connect" in event["message"]


async def test_upstream_resets_mid_headers(make_signet: Any, evil: EvilUpstream) -> None:
    async def behaviour(reader: Any, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/pl")
        await writer.drain()
        await asyncio.sleep(0.05)
        _rst(writer)

    evil.behaviours["reset-head"] = behaviour
    (status, headers, _, _), event = await one_case(
        make_signet, [route(f"http://127.0.0.1:{evil.port}")], "/up/reset-head"
    )
    assert status == 502 and headers["X-Signet-Error"] == "upstream_unreachable"
    assert event["error"] == "upstream_unreachable" and event["status"] == 502


async def test_upstream_resets_mid_body(make_signet: Any, evil: EvilUpstream) -> None:
    async def behaviour(reader: Any, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"y" * 100_000)
        await writer.drain()
        await asyncio.sleep(0.1)
        _rst(writer)

    evil.behaviours["reset-body"] = behaviour
    (status, _, body, cut), event = await one_case(
        make_signet, [route(f"http://127.0.0.1:{evil.port}")], "/up/reset-body"
    )
    assert status == 200 and cut is not None, "the client must see the body cut short"
    assert len(body) < 1_000_000
    assert event["error"] == "upstream_reset" and "mid-body" in event["message"]


async def test_upstream_sends_fewer_bytes_than_content_length(make_signet: Any, evil: EvilUpstream) -> None:
    async def behaviour(reader: Any, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"z" * 500)
        await writer.drain()
        writer.close()  # a clean FIN, 500 bytes short

    evil.behaviours["short"] = behaviour
    (status, _, body, cut), event = await one_case(
        make_signet, [route(f"http://127.0.0.1:{evil.port}")], "/up/short"
    )
    assert status == 200 and cut is not None and len(body) <= 500
    assert event["error"] == "upstream_reset"


@pytest.mark.parametrize(
    ("tail", "separate"),
    [
        (b"GARBAGE-EXTRA-BYTES", False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nevil!", False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nevil!", True),
    ],
    ids=["garbage", "smuggled-response", "smuggled-later"],
)
async def test_upstream_sends_more_bytes_than_content_length(
    make_signet: Any, evil: EvilUpstream, tail: bytes, separate: bool
) -> None:
    """Bytes past the declared length never reach a client, and the connection is not reused."""
    served = 0

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        served += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789" + (b"" if separate else tail))
        await writer.drain()
        if separate:
            await asyncio.sleep(0.2)
            writer.write(tail)
            await writer.drain()
        try:  # keep the connection open as if keep-alive were fine
            await asyncio.wait_for(reader.read(1), 30)
        except TimeoutError:
            pass

    evil.behaviours["long"] = behaviour
    app = await make_signet([route(f"http://127.0.0.1:{evil.port}")])
    since = log_offset()
    for i in range(3):
        status, headers, body, cut = await fetch(
            app.proxy_url + "/up/long", headers={"X-Request-Id": f"long-{i}"}
        )
        assert b"evil" not in body and b"GARBAGE" not in body
        if status == 200:
            assert body == b"0123456789" and cut is None
        else:  # the response did not parse as a whole: reported, not passed on
            assert status == 502 and headers["X-Signet-Error"] == "upstream_unreachable"
            event = await wait_for_event(lambda e, i=i: e.get("request_id") == f"long-{i}", since)
            assert "malformed" in event["message"]
        if separate:
            await asyncio.sleep(0.4)  # the late bytes arrive while the connection is idle
    assert served == 3, "a connection with leftover bytes must not be reused"


async def test_upstream_slow_byte_by_byte_headers_hit_read_timeout(
    make_signet: Any, evil: EvilUpstream
) -> None:
    async def behaviour(reader: Any, writer: asyncio.StreamWriter) -> None:
        for b in b"HTTP/1.1 200 OK\r\n":
            writer.write(bytes([b]))
            await writer.drain()
            if await _hung_up(reader, 3):
                return

    evil.behaviours["drip-head"] = behaviour
    t0 = time.monotonic()
    (status, headers, _, _), event = await one_case(
        make_signet, [route(f"http://127.0.0.1:{evil.port}", timeout={"read": 1})], "/up/drip-head"
    )
    assert status == 504 and headers["X-Signet-Error"] == "upstream_timeout"
    assert event["error"] == "upstream_timeout" and "1.0s" in event["message"]
    assert time.monotonic() - t0 < 10


async def test_upstream_slow_body_hits_read_timeout_and_cuts_response(
    make_signet: Any, evil: EvilUpstream
) -> None:
    async def behaviour(reader: Any, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):
            writer.write(b".")
            await writer.drain()
            if await _hung_up(reader, 3):
                return

    evil.behaviours["drip-body"] = behaviour
    (status, _, body, cut), event = await one_case(
        make_signet, [route(f"http://127.0.0.1:{evil.port}", timeout={"read": 1})], "/up/drip-body"
    )
    assert status == 200 and cut is not None and len(body) < 100
    assert event["error"] == "upstream_timeout" and "mid-body" in event["message"]


async def test_upstream_slow_but_steady_bytes_are_fine(make_signet: Any, upstream: Any) -> None:
    """read is time without a byte: a byte every 0.2 s with read=1 s completes."""
    (status, _, body, cut), event = await one_case(
        make_signet, [route(str(upstream.make_url("")), timeout={"read": 1})], "/up/drip?every=0.2&count=8"
    )
    assert status == 200 and body == b"." * 8 and cut is None
    assert "error" not in event


async def test_upstream_never_answers(make_signet: Any, evil: EvilUpstream) -> None:
    async def behaviour(reader: asyncio.StreamReader, writer: Any) -> None:
        await reader.read()  # never answers; returns when Signet hangs up

    evil.behaviours["silent"] = behaviour
    t0 = time.monotonic()
    (status, headers, _, _), event = await one_case(
        make_signet, [route(f"http://127.0.0.1:{evil.port}", timeout={"read": 1})], "/up/silent"
    )
    assert status == 504 and headers["X-Signet-Error"] == "upstream_timeout"
    assert event["error"] == "upstream_timeout"
    assert time.monotonic() - t0 < 10


async def test_dns_name_that_does_not_resolve(make_signet: Any) -> None:
    (status, headers, _, _), event = await one_case(
        make_signet, [route("http://no-such-host.signet-test.invalid:8080")], "/up/x"
    )
    assert status == 502 and headers["X-Signet-Error"] == "upstream_unreachable"
    assert "DNS lookup failed" in event["message"] and "signet-test.invalid" in event["message"]


# ------------------------------------------------------------------ TLS upstream


@pytest.fixture
async def tls_upstream(aiohttp_server: Any, tmp_path: Any) -> tuple[Any, str]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    server = await aiohttp_server(upstream_app(), host="127.0.0.1", ssl=context)
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    return server, str(ca_path)


async def test_tls_self_signed_refused_without_ca_file(make_signet: Any, tls_upstream: Any) -> None:
    server, _ = tls_upstream
    (status, headers, _, _), event = await one_case(
        make_signet, [route(f"https://127.0.0.1:{server.port}/base")], "/up/x"
    )
    assert status == 502 and headers["X-Signet-Error"] == "upstream_unreachable"
    assert "TLS" in event["message"] and "ca_file" in event["message"]
    assert server.app[STATE].received == []


async def test_tls_self_signed_accepted_with_ca_file(make_signet: Any, tls_upstream: Any) -> None:
    server, ca_path = tls_upstream
    (status, _, body, cut), event = await one_case(
        make_signet,
        [route(f"https://127.0.0.1:{server.port}/base", tls={"ca_file": ca_path})],
        "/up/x",
    )
    assert status == 200 and cut is None, body
    assert server.app[STATE].received[-1].raw_path == "/base/x"


# ------------------------------------------------------------------ client side


async def raw_client(port: int, head: bytes, body_parts: list[bytes], gap: float, then: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    for part in body_parts:
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(gap)
    if then == "abort":
        _rst(writer)
        return b""
    try:
        return await asyncio.wait_for(reader.read(), 15)
    finally:
        writer.close()


@pytest.mark.parametrize("scheme", ["none", "threecommas"])
async def test_client_slow_body_is_cut_by_body_read_timeout(
    make_signet: Any, upstream: Any, scheme: str
) -> None:
    auth = (
        {"scheme": "none"} if scheme == "none" else {"scheme": "threecommas", "api_key": "k", "secret": "s"}
    )
    cfg = config_text(
        [route(str(upstream.make_url("")), auth=auth)],
        limits={"body_read_timeout": 1, "request_header_timeout": 30},
    )
    app = await make_signet(cfg)
    await fetch(app.proxy_url + "/nope")
    leaks = LeakCheck(app)
    since = log_offset()
    head = (
        b"POST /up/sink HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nX-Request-Id: slowbody-%s\r\n\r\n"
        % scheme.encode()
    )
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", app.proxy_address[1])
    writer.write(head + b"a" * 10)
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"Connection: close" in answer
    assert time.monotonic() - t0 < 8
    writer.close()  # (a client that stays would be dropped after aiohttp's 10 s lingering time)
    event = await wait_for_event(lambda e: e.get("request_id") == f"slowbody-{scheme}", since)
    assert event["status"] == 400 and event["error"] == "bad_request", event
    assert "stalled" in event["message"]
    await leaks.verify()


async def test_client_aborts_mid_upload(make_signet: Any, upstream: Any) -> None:
    app = await make_signet([route(str(upstream.make_url("")))])
    await fetch(app.proxy_url + "/nope")
    leaks = LeakCheck(app)
    since = log_offset()
    head = b"POST /up/sink HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\nX-Request-Id: abort-up\r\n\r\n"
    await raw_client(app.proxy_address[1], head, [b"u" * 65536] * 4, 0.05, "abort")
    event = await wait_for_event(lambda e: e.get("request_id") == "abort-up", since)
    assert event["error"] in ("client_disconnected", "bad_request"), event
    assert event["bytes_in"] < 10_000_000
    await leaks.verify()


async def test_client_aborts_mid_download(make_signet: Any, upstream: Any) -> None:
    app = await make_signet([route(str(upstream.make_url("")))])
    await fetch(app.proxy_url + "/nope")
    leaks = LeakCheck(app)
    since = log_offset()
    reader, writer = await asyncio.open_connection("127.0.0.1", app.proxy_address[1])
    writer.write(b"GET /up/stream/500000000 HTTP/1.1\r\nHost: x\r\nX-Request-Id: abort-down\r\n\r\n")
    got = 0
    while got < 2_000_000:
        got += len(await asyncio.wait_for(reader.read(65536), 10))
    _rst(writer)
    event = await wait_for_event(lambda e: e.get("request_id") == "abort-down", since)
    assert event["error"] == "client_disconnected" and event["status"] == 200
    assert 0 < event["bytes_out"] < 500_000_000
    await leaks.verify()
    assert pooled_connections(app)[0] == 0, "a half-read upstream connection must not be pooled"

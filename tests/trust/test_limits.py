"""Inbound limits: header size and count, URL length, max_in_flight, keep-alive and header timeouts."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from proxy.config import LimitsModel, load_config_text
from tests.conftest import config_text
from tests.fakes import STATE
from tests.trust import in_process_events, log_offset, raw_exchange, route_state, wait_for_event, wait_until


def route(upstream: Any, **extra: Any) -> dict[str, Any]:
    return {"name": "up", "prefix": "/up", "upstream": str(upstream.make_url("/base")), **extra}


def test_safe_defaults() -> None:
    limits = LimitsModel()
    assert limits.max_header_bytes <= 16384 and limits.max_headers <= 128
    assert limits.max_url_length <= 16384
    assert 0 < limits.request_header_timeout <= 60 and 0 < limits.keepalive_timeout <= 120
    assert 0 < limits.body_read_timeout <= 120
    settings = load_config_text(config_text([{"prefix": "/x", "upstream": "http://127.0.0.1:9/"}]), env={})
    assert 1 <= settings.routes[0].max_in_flight <= 4096


def assert_400_closed(resp: Any) -> dict[str, Any]:
    assert resp.status == 400, resp.raw[:300]
    assert resp.headers["x-signet-error"] == "bad_request"
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.closed, "a malformed request must close the connection"
    err = resp.json()["error"]
    assert err["code"] == "bad_request" and err["request_id"] == resp.headers["x-request-id"]
    return err


async def test_url_header_size_and_count_limits_answer_414_431_and_close(make_signet: Any, upstream: Any) -> None:
    cfg = config_text(
        [route(upstream)], limits={"max_url_length": 512, "max_header_bytes": 1024, "max_headers": 20}
    )
    app = await make_signet(cfg)
    port = app.proxy_address[1]
    since = log_offset()
    ok = await raw_exchange(
        port, b"GET /up/" + b"a" * 400 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert ok.status == 200
    cases = {
        "url": b"GET /up/" + b"a" * 600 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        "header": b"GET /up/x HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 1100 + b"\r\n\r\n",
        "count": b"GET /up/x HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-H%d: 1\r\n" % i for i in range(40))
        + b"\r\n",
    }
    expected = {"url": (414, "uri_too_long"), "header": (431, "headers_too_large"), "count": (431, "headers_too_large")}
    for name, data in cases.items():
        resp = await raw_exchange(port, data)
        status, code = expected[name]
        assert resp.status == status and resp.headers["x-signet-error"] == code, (name, resp.raw[:200])
        assert resp.raw.startswith(b"HTTP/1.1 "), name  # Signet's own answers are HTTP/1.1
        assert resp.closed, "an over-limit head must close the connection"
        err = resp.json()["error"]
        assert err["code"] == code and err["request_id"] == resp.headers["x-request-id"]
        assert "v" * 50 not in err["message"] and "a" * 50 not in err["message"], name
    events = [e for e in in_process_events(since) if e.get("status") in (414, 431)]
    assert len(events) >= 3 and {e["error"] for e in events} == {"uri_too_long", "headers_too_large"}
    assert len(upstream.app[STATE].received) == 1  # only the request within limits


async def test_nul_cr_lf_in_request_line_and_headers_are_400_never_forwarded(
    make_signet: Any, upstream: Any
) -> None:
    app = await make_signet([route(upstream)])
    port = app.proxy_address[1]
    bad = [
        b"GET /up/a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /up/a\rb HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /up/a\nb HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /up/a b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"G\x00T /up/a HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /up/a HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        b"GET /up/a HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
        b"GET /up/a HTTP/1.1\r\nHost: x\r\nX A: 1\r\n\r\n",
        b"GET /up/a HTTP/1.1\r\nHost: x\r\nX-Inject: a\r\n b\r\n\r\n",  # obsolete line folding
        b"GET /up/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /up/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"GET /up/\xff HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /up/a\r\n\r\n",  # no version: aiohttp alone would take it as HTTP/0.9 and forward it
        b"GET /up/a\r\nX-Injected: 1 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # a TLS ClientHello
    ]
    for data in bad:
        resp = await raw_exchange(port, data)
        assert_400_closed(resp)
        assert b"\x00" not in resp.body and b"X-A" not in resp.body  # nothing echoed back
    assert upstream.app[STATE].received == []
    # control: well-formed HTTP/1.0 and HTTP/1.1 requests still go through
    for version in (b"1.0", b"1.1"):
        ok = await raw_exchange(
            port, b"GET /up/ok HTTP/" + version + b"\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert ok.status == 200 and ok.raw.startswith(b"HTTP/" + version + b" 200"), ok.raw[:100]


async def test_max_in_flight_excess_is_503_at_once(make_signet: Any, upstream: Any) -> None:
    app = await make_signet(
        [
            {
                **route(upstream),
                "upstream": str(upstream.make_url("")),
                "max_in_flight": 2,
                "timeout": {"read": 60},
            }
        ]
    )
    async with aiohttp.ClientSession() as s:

        async def hold() -> None:
            async with s.get(app.proxy_url + "/up/silent") as r:
                await r.read()

        held = [asyncio.create_task(hold()) for _ in range(2)]
        await wait_until(lambda: route_state(app)[1] == 2, what="2 requests in flight")
        t0 = time.monotonic()
        async with s.get(app.proxy_url + "/up/x") as r:
            body = await r.read()
            assert r.status == 503 and r.headers["X-Signet-Error"] == "overloaded"
            assert json.loads(body)["error"]["route"] == "up"
        assert time.monotonic() - t0 < 2.0, "excess must be refused at once, not queued"
        for t in held:
            t.cancel()
        await asyncio.gather(*held, return_exceptions=True)
        await wait_until(lambda: route_state(app) == (0, 0), what="in-flight back to 0")
        async with s.get(app.proxy_url + "/up/x") as r:
            assert r.status == 200  # the slots were given back


async def test_idle_keepalive_connection_closed_after_keepalive_timeout(
    make_signet: Any, upstream: Any
) -> None:
    app = await make_signet(config_text([route(upstream)], limits={"keepalive_timeout": 1}))
    reader, writer = await asyncio.open_connection("127.0.0.1", app.proxy_address[1])
    writer.write(b"GET /up/ka HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200")
    length = int(
        next(
            line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
    )
    await reader.readexactly(length)
    t0 = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 15) == b""  # server closed the idle connection
    assert 0.5 < time.monotonic() - t0 < 10
    writer.close()


@pytest.mark.parametrize("after_a_request", [False, True], ids=["fresh", "keep-alive"])
async def test_slow_request_headers_are_cut_at_request_header_timeout(
    make_signet: Any, upstream: Any, after_a_request: bool
) -> None:
    """Slowloris on the head: one byte per second; keep-alive is long, the header timeout is 2 s.

    On a keep-alive connection the clock starts at the first byte of the next request.
    """
    cfg = config_text([route(upstream)], limits={"request_header_timeout": 2, "keepalive_timeout": 60})
    app = await make_signet(cfg)
    since = log_offset()
    reader, writer = await asyncio.open_connection("127.0.0.1", app.proxy_address[1])
    if after_a_request:
        writer.write(b"GET /up/first HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200")
        await reader.readexactly(_content_length(head))
        await asyncio.sleep(2.5)  # idle longer than the header timeout: not a slow head
    request = b"GET /up/slow HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"p" * 40 + b"\r\n\r\n"
    t0 = time.monotonic()
    closed_at = None
    for i in range(len(request)):
        try:
            writer.write(request[i : i + 1])
            await writer.drain()
        except ConnectionError:
            closed_at = time.monotonic()
            break
        try:
            data = await asyncio.wait_for(reader.read(100), 1.0)
        except TimeoutError:
            continue
        except ConnectionError:
            data = b""
        assert data == b"", "no response is expected, only a close"
        closed_at = time.monotonic()
        break
    writer.close()
    assert closed_at is not None, "the connection was never closed"
    assert 1.5 < closed_at - t0 < 10
    event = await wait_for_event(lambda e: e.get("event") == "client_timeout", since)
    assert event["error"] == "request_header_timeout" and "request_header_timeout" in event["message"]
    assert [r.raw_path for r in upstream.app[STATE].received] == (["/base/first"] if after_a_request else [])
    server = app.listener
    await wait_until(lambda: not server.connections, what="the connection is gone from the server")


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    raise AssertionError(head)


async def test_silent_new_connection_is_cut_at_request_header_timeout(
    make_signet: Any, upstream: Any
) -> None:
    cfg = config_text([route(upstream)], limits={"request_header_timeout": 1, "keepalive_timeout": 60})
    app = await make_signet(cfg)
    reader, writer = await asyncio.open_connection("127.0.0.1", app.proxy_address[1])
    t0 = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 15) == b""
    assert 0.5 < time.monotonic() - t0 < 10
    writer.close()


async def test_header_timeout_does_not_cut_idle_keepalive_or_slow_body(
    make_signet: Any, upstream: Any
) -> None:
    """Idle between requests is keepalive_timeout's business; body bytes are body_read_timeout's."""
    cfg = config_text(
        [route(upstream)],
        limits={"request_header_timeout": 1, "keepalive_timeout": 60, "body_read_timeout": 30},
    )
    app = await make_signet(cfg)
    reader, writer = await asyncio.open_connection("127.0.0.1", app.proxy_address[1])

    async def read_response() -> bytes:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        await reader.readexactly(length)
        return head

    writer.write(b"GET /up/one HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await read_response()).startswith(b"HTTP/1.1 200")
    await asyncio.sleep(2.0)  # idle longer than the header timeout: still open
    # a body sent slowly (3 s in total) after a complete head
    writer.write(b"POST /up/two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n")
    for b in b"abc":
        await asyncio.sleep(1.0)
        writer.write(bytes([b]))
    head = await read_response()
    assert head.startswith(b"HTTP/1.1 200"), head
    writer.close()
    assert [r.raw_path for r in upstream.app[STATE].received] == ["/base/one", "/base/two"]
    assert upstream.app[STATE].received[1].body == b"abc"

"""What a client sees through Signet when the engine talks to raw upstreams."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psutil
import pytest
import trustme

from tests.conftest import config_text
from tests.trust import log_offset, wait_for_event
from tests.upstream import RawUpstream, answering
from tests.upstream.test_engine import MALFORMED, mtls_server_context, reports_client_cert


def route(port: int, scheme: str = "http", **extra: Any) -> dict[str, Any]:
    return {"name": "up", "prefix": "/up", "upstream": f"{scheme}://127.0.0.1:{port}", **extra}


async def raw_request(port: int, request: bytes, timeout: float = 10.0) -> tuple[bytes, bool]:
    """Send raw bytes; return (everything read until close or a quiet second, closed?)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    data = b""
    closed = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), 1.0)
        except TimeoutError:
            break
        if not chunk:
            closed = True
            break
        data += chunk
        if _complete(data):
            break
    writer.close()
    return data, closed


def _complete(data: bytes) -> bool:
    """A whole response with a Content-Length has arrived (others end by close or quiet)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


@pytest.mark.parametrize("case", [c for c in MALFORMED if c != "bad-chunk"])
async def test_malformed_upstream_answer_is_502(make_signet: Any, case: str) -> None:
    async with RawUpstream(answering(MALFORMED[case])) as up:
        app = await make_signet([route(up.port)])
        since = log_offset()
        data, _ = await raw_request(
            app.proxy_address[1],
            b"GET /up/x HTTP/1.1\r\nHost: s\r\nX-Request-Id: mal-%s\r\n\r\n" % case.encode(),
        )
        assert data.startswith(b"HTTP/1.1 502 "), data[:100]
        assert b"X-Signet-Error: upstream_unreachable" in data
        event = await wait_for_event(lambda e: e.get("request_id") == f"mal-{case}", since)
        assert "malformed" in event["message"]
        assert sum(r.pool.idle_count for r in app.runtime.routes) == 0


async def test_response_hop_by_hop_headers_named_by_every_connection_header(make_signet: Any) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nConnection: X-One\r\nX-One: 1\r\nconnection: keep-alive, x-TWO\r\n"
        b"X-Two: 2\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok"
    )
    async with RawUpstream(answering(answer)) as up:
        app = await make_signet([route(up.port)])
        data, _ = await raw_request(app.proxy_address[1], b"GET /up/x HTTP/1.1\r\nHost: s\r\n\r\n")
        head = data.split(b"\r\n\r\n")[0].lower()
        assert b"x-kept: yes" in head and data.endswith(b"ok")
        for gone in (b"x-one", b"x-two", b"keep-alive:", b"server:", b"content-type:"):
            assert gone not in head, (gone, head)


async def test_header_spelling_kept_both_ways_and_upstream_server_relayed(make_signet: Any) -> None:
    answer = b"HTTP/1.1 200 OK\r\nX-UPPER-lower: v\r\nServer: vendor/1\r\nContent-Length: 2\r\n\r\nok"
    async with RawUpstream(answering(answer)) as up:
        app = await make_signet([route(up.port)])
        data, _ = await raw_request(
            app.proxy_address[1], b"GET /up/x?b=1&a=2 HTTP/1.1\r\nHost: s\r\nx-ClIeNt-SpElLiNg: 1\r\n\r\n"
        )
        assert b"\r\nX-UPPER-lower: v\r\n" in data and b"\r\nServer: vendor/1\r\n" in data
        assert b"aiohttp" not in data
        assert up.heads[0].startswith(b"GET /x?b=1&a=2 HTTP/1.1\r\n")
        assert b"\r\nx-ClIeNt-SpElLiNg: 1\r\n" in up.heads[0]


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\n\r\nclose-delimited body",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n",
    ],
    ids=["close-delimited", "chunked"],
)
async def test_http10_client_gets_close_after_a_lengthless_body(make_signet: Any, answer: bytes) -> None:
    async with RawUpstream(answering(answer, then_wait=False)) as up:
        app = await make_signet([route(up.port)])
        t0 = time.monotonic()
        data, closed = await raw_request(
            app.proxy_address[1], b"GET /up/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        )
        assert data.startswith(b"HTTP/1.0 200 ")
        assert data.endswith(b"body") and b"chunked" not in data.lower()
        assert closed and time.monotonic() - t0 < 5, "the client must see the end by the close"


async def test_http10_client_with_a_length_keeps_alive(make_signet: Any) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    async with RawUpstream(answering(answer, answer)) as up:
        app = await make_signet([route(up.port)])
        reader, writer = await asyncio.open_connection("127.0.0.1", app.proxy_address[1])
        for _ in range(2):  # the second request travels on the same client connection
            writer.write(b"GET /up/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.0 200 ") and b"Content-Length: 2" in head
            assert await asyncio.wait_for(reader.readexactly(2), 10) == b"ok"
        writer.close()


async def test_mtls_route_options(make_signet: Any, tmp_path: Any) -> None:
    ca = trustme.CA()
    client = ca.issue_cert("client@example.test")
    cert, key, ca_file = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    client.cert_chain_pems[0].write_to_path(str(cert))
    client.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    async with RawUpstream(reports_client_cert, ssl=mtls_server_context(ca)) as up:
        tls = {"ca_file": str(ca_file), "cert_file": str(cert), "key_file": str(key)}
        app = await make_signet(
            config_text(
                [
                    route(up.port, "https", tls=tls),
                    {
                        **route(up.port, "https"),
                        "name": "bare",
                        "prefix": "/bare",
                        "tls": {"ca_file": str(ca_file)},
                    },
                ]
            )
        )
        data, _ = await raw_request(app.proxy_address[1], b"GET /up/x HTTP/1.1\r\nHost: s\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"client@example.test")
        data, _ = await raw_request(app.proxy_address[1], b"GET /bare/x HTTP/1.1\r\nHost: s\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 502 "), data[:200]


def test_key_file_without_cert_file_is_a_config_error(tmp_path: Any) -> None:
    from proxy.config import ConfigError, load_config_text

    key = tmp_path / "k.pem"
    key.write_text("x")
    with pytest.raises(ConfigError, match="key_file needs cert_file"):
        load_config_text(config_text([route(1, tls={"key_file": str(key)})]), env={})


# ---------------------------------------------------------------- flow control

GIB = 1024 * 1024 * 1024


async def test_slow_client_reading_1gib_keeps_rss_flat(signet_process: Any, upstream: Any) -> None:
    """A client that reads slower than the upstream sends: Signet's memory stays flat."""
    p = signet_process(config_text([{"name": "up", "prefix": "/up", "upstream": str(upstream.make_url(""))}]))
    proc = psutil.Process(p.proc.pid)
    host, port = p.proxy_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port), limit=1024 * 1024)
    writer.write(b"GET /up/stream/%d HTTP/1.1\r\nHost: s\r\n\r\n" % GIB)
    await reader.readuntil(b"\r\n\r\n")
    base = proc.memory_info().rss
    peak = base
    got = 0
    pauses = 0
    while got < GIB:
        chunk = await asyncio.wait_for(reader.read(1024 * 1024), 30)
        assert chunk, f"stream ended after {got} bytes"
        got += len(chunk)
        if got >= (pauses + 1) * (GIB // 4) and pauses < 3:
            pauses += 1
            await asyncio.sleep(1.0)  # the client stalls: Signet must stop reading the upstream
            peak = max(peak, proc.memory_info().rss)
        elif got % (64 * 1024 * 1024) < len(chunk):
            peak = max(peak, proc.memory_info().rss)
    writer.close()
    growth = (peak - base) / (1024 * 1024)
    print(f"\n1 GiB to a slow client: RSS base {base / 2**20:.1f} MiB, growth {growth:.1f} MiB")
    assert growth < 64, f"RSS grew {growth:.1f} MiB"


async def test_slow_upstream_slows_the_uploading_client(make_signet: Any) -> None:
    """Flow control on uploads: Signet holds at most a few buffers, never the whole body."""
    size = 256 * 1024 * 1024
    received = 0
    reading = asyncio.Event()

    def make(up: RawUpstream) -> Any:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal received
            await up.read_head(reader)
            while received < size:
                if received >= 4 * 1024 * 1024:
                    await reading.wait()  # the vendor stops reading for a while
                chunk = await reader.read(1024 * 1024)
                if not chunk:
                    return
                received += len(chunk)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            await reader.read()

        return handler

    async with RawUpstream(make) as up:
        app = await make_signet([route(up.port)])
        reader, writer = await asyncio.open_connection("127.0.0.1", app.proxy_address[1])
        writer.write(b"PUT /up/u HTTP/1.1\r\nHost: s\r\nContent-Length: %d\r\n\r\n" % size)
        sent = 0
        block = b"u" * (1024 * 1024)

        async def upload() -> None:
            nonlocal sent
            while sent < size:
                writer.write(block)
                await writer.drain()
                sent += len(block)

        task = asyncio.create_task(upload())
        await asyncio.sleep(1.5)  # the upstream has stopped reading at 4 MiB
        held = sent - received
        assert not task.done() and held < 48 * 1024 * 1024, f"{held / 2**20:.0f} MiB accepted and not delivered"
        reading.set()
        await asyncio.wait_for(task, 60)
        answer = await asyncio.wait_for(reader.readuntil(b"ok"), 30)
        assert answer.startswith(b"HTTP/1.1 200 ") and received == size
        writer.close()


async def test_head_and_bodiless_statuses_keep_both_connections_usable(make_signet: Any) -> None:
    answers = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",  # HEAD: a length, no body
        b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone",
    )
    async with RawUpstream(answering(*answers)) as up:
        app = await make_signet([route(up.port)])
        reader, writer = await asyncio.open_connection("127.0.0.1", app.proxy_address[1])
        heads = []
        for method in (b"HEAD", b"GET", b"DELETE", b"GET"):
            writer.write(b"%s /up/x HTTP/1.1\r\nHost: s\r\n\r\n" % method)
            heads.append(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10))
        assert await asyncio.wait_for(reader.readexactly(4), 10) == b"done"
        writer.close()
    assert heads[0].startswith(b"HTTP/1.1 200 ") and b"Content-Length: 1000" in heads[0]
    assert heads[1].startswith(b"HTTP/1.1 304 ") and heads[2].startswith(b"HTTP/1.1 204 ")
    assert up.connections == 1, "bodiless answers leave the upstream connection reusable"


def test_unusable_client_certificate_is_a_config_error(tmp_path: Any) -> None:
    from proxy.config import ConfigError, load_config_text

    ca = trustme.CA()
    cert = ca.issue_cert("client@example.test")
    cert_file, key_file = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    key_file.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    tls = {"cert_file": str(cert_file), "key_file": str(key_file)}
    with pytest.raises(ConfigError, match="cannot load the client certificate"):
        load_config_text(config_text([route(1, "https", tls=tls)]), env={})

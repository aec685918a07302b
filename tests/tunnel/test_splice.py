"""proxy.tunnel.splice over real loopback sockets, on asyncio's loop and on uvloop (conftest).

Each test builds the shape the proxy has: a client connected to a "proxy"
listener, and the proxy connected to an upstream server. splice() takes the
proxy's two transports; the test drives the real client and upstream sockets
and checks what each end received, byte for byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import trustme

from proxy.tunnel import SpliceResult, Tunnels, splice
from tests.fakes import PeakRss

MB = 1024 * 1024


class _Hold(asyncio.Protocol):
    """The proxy's protocol before the splice: holds the transport, reads nothing yet."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.made = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        transport.pause_reading()
        self.transport = transport
        self.made.set_result(transport)


@dataclass
class Rig:
    client_r: asyncio.StreamReader  # the real client's end
    client_w: asyncio.StreamWriter
    up_r: asyncio.StreamReader  # the real upstream server's end of the proxy's connection
    up_w: asyncio.StreamWriter
    proxy_client: asyncio.Transport  # the proxy's two transports, handed to splice()
    proxy_upstream: asyncio.Transport

    def run(self, idle_timeout: float = 10.0, **kw: Any) -> asyncio.Task[SpliceResult]:
        return asyncio.create_task(
            splice(self.proxy_client, self.proxy_upstream, idle_timeout=idle_timeout, **kw)
        )


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    loop = asyncio.get_running_loop()
    hold = _Hold()
    front = await loop.create_server(lambda: hold, "127.0.0.1", 0)
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = loop.create_future()

    async def on_upstream(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.set_result((r, w))

    back = await asyncio.start_server(on_upstream, "127.0.0.1", 0)
    client_r, client_w = await asyncio.open_connection(*front.sockets[0].getsockname()[:2])
    proxy_client = await asyncio.wait_for(hold.made, 5)
    proxy_client.pause_reading()  # again: uvloop starts reading after connection_made
    proxy_upstream, _ = await loop.create_connection(asyncio.Protocol, *back.sockets[0].getsockname()[:2])
    proxy_upstream.pause_reading()  # as the upstream engine does once it has the 101
    up_r, up_w = await asyncio.wait_for(accepted, 5)
    yield Rig(client_r, client_w, up_r, up_w, proxy_client, proxy_upstream)
    for w in (client_w, up_w):
        w.transport.abort()
    for t in (proxy_client, proxy_upstream):
        t.abort()
    front.close()
    back.close()


async def test_bytes_flow_both_ways_unchanged_with_leftovers_first(rig: Rig) -> None:
    task = rig.run(client_leftover=b"early-from-client|", upstream_leftover=b"early-from-upstream|")
    every_byte = bytes(range(256))
    rig.client_w.write(b"hello upstream|" + every_byte)
    rig.up_w.write(b"hello client|" + every_byte[::-1])
    got_up = await asyncio.wait_for(rig.up_r.readexactly(18 + 15 + 256), 5)
    got_client = await asyncio.wait_for(rig.client_r.readexactly(20 + 13 + 256), 5)
    assert got_up == b"early-from-client|hello upstream|" + every_byte
    assert got_client == b"early-from-upstream|hello client|" + every_byte[::-1]
    rig.client_w.close()
    rig.up_w.close()
    result = await asyncio.wait_for(task, 5)
    assert (result.bytes_in, result.bytes_out) == (18 + 15 + 256, 20 + 13 + 256)
    assert result.outcome == "closed"
    assert rig.proxy_client.is_closing() and rig.proxy_upstream.is_closing()


async def test_half_close_keeps_the_other_direction_flowing(rig: Rig) -> None:
    task = rig.run()
    rig.client_w.write(b"last words")
    rig.client_w.write_eof()
    assert await asyncio.wait_for(rig.up_r.read(), 5) == b"last words"  # read() ends at EOF
    assert not task.done()
    # the upstream still answers after the client's EOF
    rig.up_w.write(b"answer after your EOF")
    assert await asyncio.wait_for(rig.client_r.readexactly(21), 5) == b"answer after your EOF"
    rig.up_w.write_eof()
    assert await asyncio.wait_for(rig.client_r.read(), 5) == b""
    result = await asyncio.wait_for(task, 5)
    assert (result.bytes_in, result.bytes_out, result.outcome) == (10, 21, "closed")


async def _send(w: asyncio.StreamWriter, total: int, chunk: bytes) -> str:
    digest = hashlib.sha256()
    sent = 0
    n = 0
    while sent < total:
        piece = chunk[: total - sent]
        piece = struct.pack(">Q", n) + piece[8:]  # every chunk differs: a reorder would show
        n += 1
        digest.update(piece)
        w.write(piece)
        sent += len(piece)
        await w.drain()
    return digest.hexdigest()


async def _receive(r: asyncio.StreamReader, total: int) -> str:
    digest = hashlib.sha256()
    got = 0
    while got < total:
        data = await r.read(256 * 1024)
        assert data, f"EOF after {got} of {total} bytes"
        digest.update(data)
        got += len(data)
    return digest.hexdigest()


async def test_fifty_megabytes_each_way_with_flat_memory(rig: Rig) -> None:
    total = 50 * MB
    chunk = bytes(range(256)) * 256  # 64 KiB
    buffers: list[int] = []

    async def watch() -> None:  # the proxy's write buffers, which flow control bounds
        while True:
            buffers.append(
                max(rig.proxy_upstream.get_write_buffer_size(), rig.proxy_client.get_write_buffer_size())
            )
            await asyncio.sleep(0)

    task = rig.run()
    watcher = asyncio.create_task(watch())
    with PeakRss(os.getpid()) as rss:
        sent_up, got_up, sent_down, got_down = await asyncio.wait_for(
            asyncio.gather(
                _send(rig.client_w, total, chunk),
                _receive(rig.up_r, total),
                _send(rig.up_w, total, chunk),
                _receive(rig.client_r, total),
            ),
            90,
        )
    watcher.cancel()
    assert sent_up == got_up and sent_down == got_down
    high = rig.proxy_upstream.get_write_buffer_limits()[1]
    assert max(buffers) <= high + 512 * 1024, max(buffers)
    assert rss.growth < 32 * MB, rss.growth
    rig.client_w.close()
    rig.up_w.close()
    result = await asyncio.wait_for(task, 5)
    assert (result.bytes_in, result.bytes_out) == (total, total)


async def test_a_stopped_reader_pauses_the_sender_then_everything_arrives(rig: Rig) -> None:
    """The upstream reads nothing: the proxy stops reading the client, its buffer stays bounded."""
    task = rig.run()
    chunk = b"x" * 65536
    total = 16 * MB
    sender = asyncio.create_task(_send(rig.client_w, total, chunk))
    # backpressure reaches the client's socket: the proxy stops reading it
    async with asyncio.timeout(10):
        while isinstance(rig.proxy_client.get_protocol(), _Hold):  # splice() took it over
            await asyncio.sleep(0.01)
        while rig.proxy_client.is_reading():
            await asyncio.sleep(0.01)
    assert not sender.done()  # the client is blocked in drain(), not buffering in the proxy
    high = rig.proxy_upstream.get_write_buffer_limits()[1]
    assert rig.proxy_upstream.get_write_buffer_size() <= high + 512 * 1024
    # the slow reader now reads in small bites and everything arrives intact
    digest = hashlib.sha256()
    got = 0
    while got < total:
        data = await asyncio.wait_for(rig.up_r.read(4096), 10)
        assert data
        digest.update(data)
        got += len(data)
    assert await sender == digest.hexdigest()
    rig.client_w.close()
    rig.up_w.close()
    assert (await asyncio.wait_for(task, 5)).bytes_in == total


async def test_idle_tunnel_is_closed_after_the_idle_timeout(rig: Rig) -> None:
    loop = asyncio.get_running_loop()
    task = rig.run(idle_timeout=0.5)
    # traffic keeps it open: one byte each way every 0.2 s for 1.2 s
    started = loop.time()
    for _ in range(6):
        rig.client_w.write(b"p")
        assert await asyncio.wait_for(rig.up_r.readexactly(1), 5) == b"p"
        rig.up_w.write(b"q")
        assert await asyncio.wait_for(rig.client_r.readexactly(1), 5) == b"q"
        quiet = loop.time()
        await asyncio.sleep(0.2)
    assert not task.done() and loop.time() - started > 1.0
    result = await asyncio.wait_for(task, 5)
    assert result.outcome == "idle_timeout"
    assert 0.45 <= loop.time() - quiet < 2.0
    assert (result.bytes_in, result.bytes_out) == (6, 6)
    # both real ends see the connection go
    for r in (rig.client_r, rig.up_r):
        try:
            assert await asyncio.wait_for(r.read(), 5) == b""
        except ConnectionResetError:
            pass


async def test_upstream_reset_closes_the_client_side(rig: Rig) -> None:
    task = rig.run()
    rig.up_w.write(b"before the reset")
    assert await asyncio.wait_for(rig.client_r.readexactly(16), 5) == b"before the reset"
    sock = rig.up_w.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    rig.up_w.transport.abort()  # linger 0: the kernel sends RST
    result = await asyncio.wait_for(task, 5)
    assert result.outcome == "reset"
    assert await asyncio.wait_for(rig.client_r.read(), 5) == b""
    assert rig.proxy_client.is_closing()


async def test_client_reset_closes_the_upstream_side(rig: Rig) -> None:
    task = rig.run()
    rig.client_w.write(b"ping")
    assert await asyncio.wait_for(rig.up_r.readexactly(4), 5) == b"ping"
    sock = rig.client_w.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    rig.client_w.transport.abort()
    result = await asyncio.wait_for(task, 5)
    assert result.outcome == "reset"
    assert await asyncio.wait_for(rig.up_r.read(), 5) == b""


async def test_cancelling_the_splice_closes_both_sides(rig: Rig) -> None:
    task = rig.run()
    rig.client_w.write(b"a")
    await asyncio.wait_for(rig.up_r.readexactly(1), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for r in (rig.client_r, rig.up_r):
        try:
            assert await asyncio.wait_for(r.read(), 5) == b""
        except ConnectionResetError:
            pass


async def test_a_side_already_closed_ends_at_once(rig: Rig) -> None:
    rig.proxy_upstream.close()
    result = await asyncio.wait_for(rig.run(), 5)
    assert result.outcome == "reset"
    assert await asyncio.wait_for(rig.client_r.read(), 5) == b""


async def test_tls_upstream_carries_bytes_and_an_eof_ends_the_tunnel() -> None:
    """TLS has no half-close: the client's EOF ends the tunnel, each side flushed then closed."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    loop = asyncio.get_running_loop()
    hold = _Hold()
    front = await loop.create_server(lambda: hold, "127.0.0.1", 0)
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = loop.create_future()

    async def on_upstream(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.set_result((r, w))

    back = await asyncio.start_server(on_upstream, "127.0.0.1", 0, ssl=server_ctx)
    client_r, client_w = await asyncio.open_connection(*front.sockets[0].getsockname()[:2])
    proxy_client = await asyncio.wait_for(hold.made, 5)
    proxy_client.pause_reading()
    proxy_upstream, _ = await loop.create_connection(
        asyncio.Protocol, *back.sockets[0].getsockname()[:2], ssl=client_ctx, server_hostname="127.0.0.1"
    )
    up_r, up_w = await asyncio.wait_for(accepted, 5)
    proxy_upstream.pause_reading()  # (uvloop: not before the server saw the handshake end)
    try:
        task = asyncio.create_task(splice(proxy_client, proxy_upstream, idle_timeout=10))
        client_w.write(b"over tls")
        assert await asyncio.wait_for(up_r.readexactly(8), 5) == b"over tls"
        up_w.write(b"back" * 100_000)
        assert await asyncio.wait_for(client_r.readexactly(400_000), 10) == b"back" * 100_000
        client_w.write_eof()
        result = await asyncio.wait_for(task, 5)
        assert (result.bytes_in, result.bytes_out) == (8, 400_000)
        assert await asyncio.wait_for(client_r.read(), 5) == b""
        assert await asyncio.wait_for(up_r.read(), 5) == b""
    finally:
        for t in (client_w.transport, up_w.transport, proxy_client, proxy_upstream):
            t.abort()
        front.close()
        back.close()


async def test_drain_lets_tunnels_end_within_the_grace_then_cuts_the_rest(rig: Rig) -> None:
    tunnels = Tunnels()
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(
        splice(rig.proxy_client, rig.proxy_upstream, idle_timeout=30, tunnels=tunnels)
    )
    rig.client_w.write(b"x")
    assert await asyncio.wait_for(rig.up_r.readexactly(1), 5) == b"x"
    assert len(tunnels) == 1
    started = loop.time()
    assert await asyncio.wait_for(tunnels.drain(0.3), 5) == 1
    assert loop.time() - started >= 0.29
    result = await asyncio.wait_for(task, 5)
    assert result.outcome == "shutdown" and len(tunnels) == 0
    for r in (rig.client_r, rig.up_r):
        try:
            assert await asyncio.wait_for(r.read(), 5) == b""
        except ConnectionResetError:
            pass


async def test_drain_does_not_cut_a_tunnel_that_ends_in_time(rig: Rig) -> None:
    tunnels = Tunnels()
    task = asyncio.create_task(
        splice(rig.proxy_client, rig.proxy_upstream, idle_timeout=30, tunnels=tunnels)
    )
    await asyncio.sleep(0)  # let splice() take both transports over
    drain = asyncio.create_task(tunnels.drain(10))
    rig.client_w.close()  # both ends close on their own during the grace
    rig.up_w.close()
    assert await asyncio.wait_for(drain, 5) == 0
    assert (await task).outcome == "closed"

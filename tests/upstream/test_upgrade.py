"""The upstream engine's upgrade exchange (WebSocket handshakes) against raw-socket upstreams.

A request sent with ``upgrade=True`` may be answered ``101``: the HTTP exchange
ends there, the connection is detached (transport plus the bytes after the
head) and never pooled. Any other answer is a normal one.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proxy.tunnel import splice
from proxy.upstream import Malformed, Origin, Pool
from tests.upstream import Handler, RawUpstream, answering

T = {"connect_timeout": 5.0, "read_timeout": 5.0}
HANDSHAKE = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]
SWITCH = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nconnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
)


def pool_for(up: RawUpstream) -> Pool:
    return Pool(Origin("http", "127.0.0.1", up.port))


def switching(*pieces: bytes, then_echo: bool = True) -> Any:
    """Answer the handshake with ``pieces`` (written one by one), then echo bytes upper-cased."""

    def make(up: RawUpstream) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await up.read_head(reader)
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.01)  # separate segments: the head arrives in parts
            while then_echo and (data := await reader.read(65536)):
                writer.write(data.upper())
                await writer.drain()

        return handler

    return make


class _Collect(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.more = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.more.set()


async def _read_until(proto: _Collect, size: int) -> bytes:
    async with asyncio.timeout(5):
        while len(proto.data) < size:
            proto.more.clear()
            await proto.more.wait()
    return proto.data


@pytest.mark.parametrize(
    "pieces",
    [
        pytest.param((SWITCH + b"\x81\x05hello",), id="head-and-frame-in-one-segment"),
        pytest.param((SWITCH[:30], SWITCH[30:], b"\x81\x05hello"), id="head-in-parts-frame-later"),
    ],
)
async def test_101_ends_the_exchange_and_the_connection_is_detached(pieces: tuple[bytes, ...]) -> None:
    async with RawUpstream(switching(*pieces)) as up:
        pool = pool_for(up)
        r = await pool.request("GET", "/ws", HANDSHAKE, upgrade=True, **T)
        assert (r.status, r.reason) == (101, "Switching Protocols")
        assert r.raw_headers[1] == (b"connection", b"Upgrade")  # the upstream's own spelling
        assert r.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        # the request went with the handshake headers as given
        assert b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" in up.heads[0]
        transport, leftover = r.detach()
        assert pool.active_count == 0 and pool.idle_count == 0
        # the frame bytes that came after the head: in leftover, or still unread on the socket
        collect = _Collect()
        collect.data = leftover
        transport.set_protocol(collect)
        transport.resume_reading()
        assert (await _read_until(collect, 7))[:7] == b"\x81\x05hello"
        transport.write(b"now raw bytes")
        assert (await _read_until(collect, 20))[7:] == b"NOW RAW BYTES"
        await pool.close()
        assert not transport.is_closing(), "the pool no longer owns a detached connection"
        transport.close()


async def test_a_detached_upstream_splices_with_a_client() -> None:
    """The engine's detach() feeds proxy.tunnel.splice: leftover first, then both ways."""
    async with RawUpstream(switching(SWITCH + b"early")) as up:
        loop = asyncio.get_running_loop()
        pool = pool_for(up)
        r = await pool.request("GET", "/ws", HANDSHAKE, upgrade=True, **T)
        made: asyncio.Future[Any] = loop.create_future()

        class Hold(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                made.set_result(transport)

        front = await loop.create_server(Hold, "127.0.0.1", 0)
        client_r, client_w = await asyncio.open_connection("127.0.0.1", front.sockets[0].getsockname()[1])
        client_side = await asyncio.wait_for(made, 5)
        client_side.pause_reading()
        transport, leftover = r.detach()
        task = asyncio.create_task(
            splice(client_side, transport, idle_timeout=5, upstream_leftover=leftover)
        )
        assert await asyncio.wait_for(client_r.readexactly(5), 5) == b"early"
        client_w.write(b"echo me")
        assert await asyncio.wait_for(client_r.readexactly(7), 5) == b"ECHO ME"
        client_w.close()
        result = await asyncio.wait_for(task, 5)
        assert (result.bytes_in, result.bytes_out) == (7, 12)
        front.close()
        await pool.close()


async def test_any_other_answer_to_an_upgrade_is_a_normal_one_and_keeps_the_connection() -> None:
    refused = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 6\r\nWWW-Authenticate: Bearer\r\n\r\nno key"
    async with RawUpstream(answering(refused, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) as up:
        pool = pool_for(up)
        r = await pool.request("GET", "/ws", HANDSHAKE, upgrade=True, **T)
        assert r.status == 401 and await r.read() == b"no key"
        with pytest.raises(RuntimeError):
            r.detach()
        r.release()
        assert pool.idle_count == 1
        r2 = await pool.request("GET", "/x", [], **T)
        assert (r2.status, await r2.read()) == (200, b"ok")
        r2.release()
        assert up.connections == 1
        await pool.close()


async def test_a_101_nobody_asked_for_is_still_malformed() -> None:
    async with RawUpstream(switching(SWITCH, then_echo=False)) as up:
        pool = pool_for(up)
        with pytest.raises(Malformed, match="unsolicited 101"):
            await pool.request("GET", "/ws", HANDSHAKE, **T)
        assert pool.idle_count == 0 and pool.active_count == 0
        await pool.close()


async def test_a_101_not_detached_is_closed_never_pooled() -> None:
    async with RawUpstream(switching(SWITCH)) as up:
        pool = pool_for(up)
        r = await pool.request("GET", "/ws", HANDSHAKE, upgrade=True, **T)
        assert r.status == 101
        r.release()  # e.g. the client left before the splice
        assert pool.idle_count == 0 and pool.active_count == 0
        with pytest.raises(RuntimeError):
            r.detach()
        await pool.close()


async def test_a_reason_phrase_split_across_segments_arrives_whole() -> None:
    """llhttp calls on_status once per segment: the pieces are joined (found with the 101 head)."""
    head = b"HTTP/1.1 200 Perfectly Fine Thanks\r\nContent-Length: 2\r\n\r\nok"
    async with RawUpstream(switching(head[:20], head[20:], then_echo=False)) as up:
        pool = pool_for(up)
        r = await pool.request("GET", "/x", [], **T)
        assert (r.status, r.reason, await r.read()) == (200, "Perfectly Fine Thanks", b"ok")
        r.release()
        await pool.close()

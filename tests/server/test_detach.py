"""ProxyConnection.detach(): after a 101, another protocol takes the client's transport.

The WebSocket tunnel builds on this; here a bare handler answers an upgrade
with 101 and hands the transport to an echo protocol. The bytes the client
sent right behind its head (in the same write) must reach the new protocol.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from proxy.server import Listener, ProxyConnection, Request


class Echo(asyncio.Protocol):
    def __init__(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(b"echo:" + data)


async def test_detach_hands_the_transport_and_leftover_bytes_over() -> None:
    listener: Listener

    async def handler(request: Request) -> None:
        assert request.upgrade
        [conn] = [c for c in listener.connections if isinstance(c, ProxyConnection)]
        transport, leftover = conn.detach()
        transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
        echo = Echo(transport)
        transport.set_protocol(echo)
        transport.resume_reading()
        if leftover:
            echo.data_received(leftover)

    limits = SimpleNamespace(
        max_url_length=8190, max_head_bytes=65536, max_headers=100, max_header_bytes=8190,
        request_header_timeout=5, keepalive_timeout=5,
    )
    listener = Listener(handler, limits)
    await listener.start("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*listener.address)
    try:
        writer.write(b"GET /t HTTP/1.1\r\nHost: c\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\nearly")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101 ")
        assert await asyncio.wait_for(reader.readexactly(10), 5) == b"echo:early"
        writer.write(b"later")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(10), 5) == b"echo:later"
        assert not listener.connections  # detached: no longer the listener's to drain
    finally:
        writer.close()
        await listener.drain(1)

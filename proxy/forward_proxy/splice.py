"""The blind tunnel of ``other_hosts: tunnel``: bytes both ways between two transports.

The smallest splice forward-proxy mode needs (the WebSocket work brings a
fuller one, ``proxy.tunnel``; this one can give way to it once both have
landed). Each side's protocol writes what it receives into the other
transport; a full write buffer pauses reading on the other side (memory per
tunnel stays bounded by the buffer limits); an EOF or a loss on either side
closes both after flushing; ``idle_timeout`` seconds without a byte either
way aborts both. Nothing outlives :func:`splice`.
"""

from __future__ import annotations

import asyncio


class _Side(asyncio.Protocol):
    def __init__(self, tunnel: _Tunnel, transport: asyncio.BaseTransport) -> None:
        self.tunnel = tunnel
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]  # uvloop's too
        self.peer: _Side
        self.received = 0

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.tunnel.active = True
        if not self.peer.transport.is_closing():
            self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self.tunnel.end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.tunnel.end()

    def pause_writing(self) -> None:  # our buffer is full: stop reading what would fill it
        if not self.peer.transport.is_closing():
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        self.tunnel.active = True
        if not self.peer.transport.is_closing():
            self.peer.transport.resume_reading()


class _Tunnel:
    def __init__(self, idle_timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.idle_timeout = idle_timeout
        self.active = False
        self.timed_out = False
        self.sides: tuple[_Side, _Side] | None = None
        self.timer = self.loop.call_later(idle_timeout, self.check_idle)

    def check_idle(self) -> None:
        if self.active:
            self.active = False
            self.timer = self.loop.call_later(self.idle_timeout, self.check_idle)
            return
        self.timed_out = True
        for side in self.sides or ():
            side.transport.abort()
        self.finish()

    def end(self) -> None:
        for side in self.sides or ():
            side.transport.close()  # flushes what it holds first
        self.finish()

    def finish(self) -> None:
        self.timer.cancel()
        if not self.done.done():
            self.done.set_result(None)


async def splice(
    client: asyncio.BaseTransport,
    upstream: asyncio.BaseTransport,
    *,
    idle_timeout: float,
    client_leftover: bytes = b"",
) -> tuple[int, int, bool]:
    """Pump bytes until either side ends: (bytes from the client, bytes to it, idle timed out)."""
    tunnel = _Tunnel(idle_timeout)
    a, b = _Side(tunnel, client), _Side(tunnel, upstream)
    a.peer, b.peer = b, a
    tunnel.sides = (a, b)
    if client.is_closing() or upstream.is_closing():
        client.close()
        upstream.close()
        tunnel.finish()
        return 0, 0, False
    for side in (a, b):
        side.transport.set_protocol(side)
    if client_leftover:
        a.received += len(client_leftover)
        b.transport.write(client_leftover)
    for side in (a, b):
        side.transport.resume_reading()
    try:
        await tunnel.done
    except BaseException:
        for side in (a, b):
            side.transport.abort()
        tunnel.finish()
        raise
    return a.received, b.received, tunnel.timed_out

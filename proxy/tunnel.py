"""Splice two connected transports: bytes both ways, unchanged, until both sides are done.

Used after a WebSocket handshake (client <-> upstream) and for forward-proxy
mode's blind tunnels. The caller hands over two live transports (and any bytes
it already read past an HTTP head on either side); :func:`splice` takes both
over with ``set_protocol`` and returns when both are closed, with byte counts
for the log line. No task runs per tunnel: each side's protocol writes what it
receives straight into the other transport.

- Flow control: when one side's write buffer passes its high-water mark the
  transport calls ``pause_writing`` on our protocol, and we pause reading the
  other side until ``resume_writing``. Memory per tunnel is bounded by the two
  transports' buffer limits, whatever flows through.
- Half-close: EOF from one side becomes ``write_eof`` on the other where the
  transport can (TCP), so the other direction keeps flowing; where it cannot
  (TLS), the tunnel ends as nginx ends one: both sides are closed, each after
  its buffered bytes are flushed.
- A reset or loss on one side closes the other (after flushing what it holds).
- Idle timeout: when no byte moves either way (received, or drained from a
  full write buffer) for ``idle_timeout`` seconds, both sides are aborted. A
  reader too slow to drain anything for that long counts as idle too, so
  nothing waits forever.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["closed", "idle_timeout", "reset", "shutdown"]


@dataclass(slots=True)
class SpliceResult:
    """What went through: ``bytes_in`` client -> upstream, ``bytes_out`` upstream -> client."""

    bytes_in: int
    bytes_out: int
    outcome: Outcome  # "closed": both ended cleanly; "reset": one side failed; "idle_timeout";
    # "shutdown": cut by Tunnels.drain


class _Side(asyncio.Protocol):
    """One end of the tunnel: what it receives is written to its peer's transport."""

    def __init__(self, tunnel: _Tunnel, transport: asyncio.BaseTransport) -> None:
        self.tunnel = tunnel
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]  # uvloop's too
        self.peer: _Side  # set by _Tunnel
        self.received = 0
        self.eof = False  # this side sent EOF
        self.lost = False
        self.write_paused = False  # our transport's buffer is full: the peer's reading is paused
        self.draining_from = 0  # write buffer size when last looked at (progress while paused)

    # the transport calls these once set_protocol made us its protocol

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.tunnel.touch()
        peer = self.peer.transport
        if not self.peer.lost and not peer.is_closing():
            peer.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        self.tunnel.touch()
        peer = self.peer
        if (
            peer.eof
            or peer.lost
            or peer.transport.is_closing()
            or not (self.transport.can_write_eof() and peer.transport.can_write_eof())
        ):
            self.tunnel.close_both()  # both directions over, or no half-close (TLS): end, flushed
            return False
        peer.transport.write_eof()  # the other direction keeps flowing
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if exc is not None:
            self.tunnel.failed = True
        self.tunnel.side_lost(self)

    def pause_writing(self) -> None:
        self.write_paused = True
        self.draining_from = self.transport.get_write_buffer_size()
        if not (self.peer.lost or self.peer.eof):  # reading again after EOF would see it twice
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.tunnel.touch()
        if not (self.peer.lost or self.peer.eof or self.peer.transport.is_closing()):
            self.peer.transport.resume_reading()


class _Tunnel:
    def __init__(self, loop: asyncio.AbstractEventLoop, idle_timeout: float) -> None:
        self.loop = loop
        self.idle_timeout = idle_timeout
        self.last_activity = loop.time()
        self.timer: asyncio.TimerHandle | None = None
        self.done: asyncio.Future[None] = loop.create_future()
        self.failed = False
        self.timed_out = False
        self.cut = False
        self.sides: tuple[_Side, _Side] | None = None

    def touch(self) -> None:
        self.last_activity = self.loop.time()

    def start_timer(self) -> None:
        if self.idle_timeout > 0:
            self.timer = self.loop.call_later(self.idle_timeout, self.check_idle)

    def check_idle(self) -> None:
        self.timer = None
        if self.done.done() or self.sides is None:
            return
        for side in self.sides:  # a full buffer that shrank: the slow reader is still reading
            if side.write_paused and not side.lost:
                size = side.transport.get_write_buffer_size()
                if size != side.draining_from:
                    side.draining_from = size
                    self.touch()
        idle = self.loop.time() - self.last_activity
        if idle >= self.idle_timeout:
            self.timed_out = True
            self.abort_both()
            return
        self.timer = self.loop.call_later(self.idle_timeout - idle, self.check_idle)

    def close_both(self) -> None:
        assert self.sides is not None
        for side in self.sides:
            if not side.lost:
                side.transport.close()  # flushes what is buffered, then connection_lost

    def abort_both(self) -> None:
        assert self.sides is not None
        for side in self.sides:
            if not side.lost:
                side.transport.abort()

    def side_lost(self, side: _Side) -> None:
        if side.peer.lost:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            if not self.done.done():
                self.done.set_result(None)
        elif not side.peer.transport.is_closing():
            side.peer.transport.close()  # nowhere left to send its bytes: flush, then close


class Tunnels:
    """The live tunnels of one process, so a drain can let them end, then cut the rest.

    Detached from their listener, tunnels are not in its drain; ``splice(...,
    tunnels=...)`` registers each one here instead.
    """

    def __init__(self) -> None:
        self._live: set[_Tunnel] = set()

    def __len__(self) -> int:
        return len(self._live)

    async def drain(self, grace: float) -> int:
        """Wait up to ``grace`` seconds for the tunnels to end; abort those left. Returns how many."""
        live = self._live
        if live:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace
            while live and loop.time() < deadline:
                await asyncio.wait([t.done for t in live], timeout=deadline - loop.time())
        left = list(live)
        for tunnel in left:
            tunnel.cut = True
            tunnel.abort_both()
        if left:
            await asyncio.wait([t.done for t in left], timeout=1.0)
        return len(left)


async def splice(
    client: asyncio.BaseTransport,
    upstream: asyncio.BaseTransport,
    *,
    idle_timeout: float,
    client_leftover: bytes = b"",
    upstream_leftover: bytes = b"",
    tunnels: Tunnels | None = None,
) -> SpliceResult:
    """Pump bytes between two transports until both are closed; return what went through.

    ``client_leftover`` was read from the client past its request head and is
    sent upstream first; ``upstream_leftover`` was read from the upstream past
    its answer head and is sent to the client first. Both transports end up
    closed however this returns (cancellation aborts them).
    """
    loop = asyncio.get_running_loop()
    tunnel = _Tunnel(loop, idle_timeout)
    a = _Side(tunnel, client)
    b = _Side(tunnel, upstream)
    a.peer, b.peer = b, a
    tunnel.sides = (a, b)
    for side in (a, b):
        if side.transport.is_closing():  # gone before we took it over: no callback will come
            side.lost = True
    if a.lost or b.lost:
        for side in (a, b):
            if not side.lost:
                side.transport.abort()
        return SpliceResult(0, 0, "reset")
    for side in (a, b):
        side.transport.pause_reading()
        side.transport.set_protocol(side)
        high = side.transport.get_write_buffer_limits()[1]
        if side.transport.get_write_buffer_size() > high:  # already past the mark: no callback
            side.write_paused = True
    a.received = len(client_leftover)
    b.received = len(upstream_leftover)
    if client_leftover:
        b.transport.write(client_leftover)
    if upstream_leftover:
        a.transport.write(upstream_leftover)
    for side in (a, b):
        if not side.peer.write_paused:
            side.transport.resume_reading()
    tunnel.start_timer()
    if tunnels is not None:
        tunnels._live.add(tunnel)
    try:
        await tunnel.done
    except BaseException:  # cancelled: nothing may outlive the call
        tunnel.abort_both()
        if tunnel.timer is not None:
            tunnel.timer.cancel()
        raise
    finally:
        if tunnels is not None:
            tunnels._live.discard(tunnel)
    outcome: Outcome = (
        "shutdown"
        if tunnel.cut
        else "idle_timeout"
        if tunnel.timed_out
        else "reset"
        if tunnel.failed
        else "closed"
    )
    return SpliceResult(a.received, b.received, outcome)

"""Flow control for one client connection, both ways.

Reading: several reasons may want the client's socket paused at once (a
request body queued past its high-water mark while the upstream is slow,
pipelined requests waiting their turn). Reading resumes only when none is
left, so one reason ending never undoes another.

Writing: asyncio calls ``pause_writing`` when the transport's buffer is
full; :meth:`FlowControl.drain` waits for ``resume_writing``. The response
relay awaits it before pulling the next upstream chunk, and the upstream
connection pauses its own socket when its queue fills, so a slow client
slows the upstream instead of filling memory.
"""

from __future__ import annotations

import asyncio


class FlowControl:
    """Read-pause reasons and a write-drain waiter for one transport."""

    __slots__ = ("_drain", "_reasons", "_transport", "closed", "write_paused")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._reasons: set[str] = set()
        self._drain: asyncio.Future[None] | None = None
        self.write_paused = False
        self.closed = False

    # ------------------------------------------------------------ reading

    def pause_reading(self, reason: str) -> None:
        if not self._reasons and not self.closed:
            self._transport.pause_reading()
        self._reasons.add(reason)

    def resume_reading(self, reason: str) -> None:
        reasons = self._reasons
        if reason in reasons:
            reasons.discard(reason)
            if not reasons and not self.closed:
                self._transport.resume_reading()

    # ------------------------------------------------------------ writing

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self._drain
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        """Wait until the client takes more bytes; ConnectionError once it is gone."""
        if self.closed:
            raise ConnectionError("client connection closed")
        if not self.write_paused:
            return
        waiter = self._drain = asyncio.get_running_loop().create_future()
        await waiter

    def lost(self) -> None:
        """The connection is gone: release a writer waiting to drain."""
        self.closed = True
        waiter = self._drain
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError("client connection closed"))

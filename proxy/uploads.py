"""Bounds on request bodies that a scheme must buffer: per client, per second, per process.

A scheme that signs the body (or retries a 401 with it) needs all of it
before the request can leave, so Signet holds the body while the client
sends it. Without bounds, one client could hold every buffering slot of a
route by drip-feeding eight uploads, grow the process by gigabytes with
stalled ones, or fill ``spool_dir`` for everyone. Three limits close that:

- ``limits.client_uploads`` (default 4): bodies one client (its name, or its
  remote address when Signet has no ``clients``) may have in buffering at
  once. A body counts from the moment Signet must wait for the client to
  send more of it (a body already in hand, as small ones arrive with their
  head, never waits and takes no slot; one behind ``Expect: 100-continue``
  counts before the ``100``). One more is refused before Signet waits for
  it: ``429 rate_limited`` with ``Retry-After: 1`` (it is that client's own excess, like its rate
  limit; 503 would tell every client the service is down). With
  ``max_body_bytes`` it bounds what one client can put in ``spool_dir`` at
  once: ``client_uploads x max_body_bytes``.
- ``limits.min_upload_rate`` (default 64 KiB/s, averaged from the start of the
  body once ``limits.min_upload_rate_after`` (default 10 s) has passed):
  slower is ``408 body_timeout``, so a buffered body holds its slot for a
  bounded time; ``limits.body_read_timeout`` (silence) is 408 too.
- ``limits.body_memory`` (default 256 MiB): the bytes of buffered bodies held
  in memory by the whole process. A body that would go past it goes to a
  spool file at once (:class:`MemoryBudget`, used by
  :class:`proxy.body.BodySpooler`).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable

from proxy import malloc
from proxy.errors import BodyTimeout, RateLimited

RETRY_AFTER = "1"


# buffered bodies dropping to nothing after holding this much: give the memory back
TRIM_AFTER = 16 * 1024 * 1024
TRIM_DELAY = 0.5  # seconds after the last body went


class MemoryBudget:
    """Bytes of in-memory buffered bodies, process-wide; nothing awaits, so no lock.

    When the bodies held drop to none after a burst of at least
    :data:`TRIM_AFTER` bytes, the allocator is asked to return free memory
    to the kernel (:func:`proxy.malloc.trim`): one call per burst.
    """

    def __init__(self, limit: int) -> None:
        malloc.tune()
        self.limit = limit
        self.used = 0
        self._high = 0  # the most held since the last trim
        self._trim: asyncio.TimerHandle | None = None

    def take(self, n: int) -> bool:
        """Reserve ``n`` bytes; False (nothing reserved) when that would pass the limit."""
        if self.used + n > self.limit:
            return False
        self.used += n
        if self.used > self._high:
            self._high = self.used
        return True

    def give_back(self, n: int) -> None:
        self.used = max(0, self.used - n)
        if self.used == 0 and self._high >= TRIM_AFTER and self._trim is None:
            # a moment later: the requests that held the bodies are still unwinding now
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._trim = loop.call_later(TRIM_DELAY, self._trim_if_idle)

    def _trim_if_idle(self) -> None:
        self._trim = None
        if self.used == 0:
            self._high = 0
            gc.collect()  # request objects in reference cycles still hold their read buffers
            malloc.trim()


class BodyReader:
    """Reads one buffered body chunk by chunk under the silence and minimum-rate deadlines.

    ``read`` returns the next chunk (``b""`` at the end), e.g. a StreamReader's
    ``readany``. Each read waits at most until the next deadline: the silence
    limit, or the moment the average rate since the first read would drop
    under ``min_rate`` (counted only after ``grace`` seconds). With
    ``read_nowait`` and ``at_eof`` (what already arrived, and whether that is
    all), bytes in hand are taken without waiting, and ``before_wait`` runs
    before the first read that must wait for the client (it takes the
    client's buffering slot, and may refuse).
    """

    def __init__(
        self,
        read: Callable[[], Awaitable[bytes]],
        *,
        silence: float,
        min_rate: float,
        grace: float,
        route: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        read_nowait: Callable[[], bytes] | None = None,
        at_eof: Callable[[], bool] | None = None,
        before_wait: Callable[[], None] | None = None,
    ) -> None:
        self.read = read
        self.read_nowait = read_nowait
        self.at_eof = at_eof
        self.before_wait = before_wait
        self.silence = silence
        self.min_rate = min_rate
        self.grace = grace
        self.route = route
        self.clock = clock
        self.received = 0
        self.started = clock()

    async def __call__(self) -> bytes:
        if self.read_nowait is not None and self.at_eof is not None:
            chunk = self.read_nowait()
            if chunk or self.at_eof():  # in hand: no wait, no slot
                self.received += len(chunk)
                return chunk
        if self.before_wait is not None:
            self.before_wait()
        elapsed = self.clock() - self.started
        rate_left = float("inf")
        if self.min_rate > 0:
            rate_left = max(self.grace, self.received / self.min_rate) - elapsed
            if rate_left <= 0:
                raise self._too_slow(elapsed)
        try:
            chunk = await asyncio.wait_for(self.read(), min(self.silence, rate_left))
        except TimeoutError:
            if rate_left < self.silence:
                raise self._too_slow(self.clock() - self.started) from None
            raise BodyTimeout(
                f"the request body stalled: no byte for {self.silence:g} s "
                "(limits.body_read_timeout)",
                route=self.route,
            ) from None
        self.received += len(chunk)
        return chunk

    def _too_slow(self, elapsed: float) -> BodyTimeout:
        rate = self.received / elapsed if elapsed > 0 else 0.0
        return BodyTimeout(
            f"the request body arrives at {_rate(rate)} on average, under "
            f"limits.min_upload_rate ({_rate(self.min_rate)})",
            route=self.route,
        )


class UploadSlot:
    """One client's body to buffer: :meth:`enter` counts it (or refuses), :meth:`leave` frees it.

    Both are idempotent; ``on_refused`` runs when :meth:`enter` refuses (a metric).
    """

    __slots__ = ("_entered", "_key", "_who", "limits", "memory", "on_refused", "route")

    def __init__(self, limits: UploadLimits, key: str, who: str, route: str) -> None:
        self.limits = limits
        self.memory = limits.memory
        self.route = route
        self.on_refused: Callable[[], None] | None = None
        self._key = key
        self._who = who
        self._entered = False

    def enter(self) -> None:
        if self._entered:
            return
        counts = self.limits.counts
        current = counts.get(self._key, 0)
        if current >= self.limits.client_uploads:
            if self.on_refused is not None:
                self.on_refused()
            raise RateLimited(
                f"{self._who} already has {current} request bodies being uploaded "
                f"(limits.client_uploads); retry when one is done",
                retry_after=RETRY_AFTER,
                route=self.route,
            )
        counts[self._key] = current + 1
        self._entered = True

    def reader(
        self,
        read: Callable[[], Awaitable[bytes]],
        read_nowait: Callable[[], bytes] | None = None,
        at_eof: Callable[[], bool] | None = None,
    ) -> BodyReader:
        """Reads this body under the deadlines; the slot is taken before the first wait."""
        limits = self.limits
        return BodyReader(
            read,
            silence=limits.body_read_timeout,
            min_rate=limits.min_upload_rate,
            grace=limits.min_upload_rate_after,
            route=self.route,
            read_nowait=read_nowait,
            at_eof=at_eof,
            before_wait=self.enter,
        )

    def leave(self) -> None:
        if not self._entered:
            return
        self._entered = False
        counts = self.limits.counts
        left = counts.get(self._key, 0) - 1
        if left > 0:
            counts[self._key] = left
        else:
            counts.pop(self._key, None)


class UploadLimits:
    """The three bounds of one process (its state outlives a reload: :meth:`carry_over`)."""

    def __init__(
        self,
        *,
        client_uploads: int,
        min_upload_rate: float,
        min_upload_rate_after: float,
        body_read_timeout: float,
        body_memory: int,
    ) -> None:
        self.client_uploads = client_uploads
        self.memory = MemoryBudget(body_memory)
        self.counts: dict[str, int] = {}  # client or remote address -> bodies in buffering
        self.body_read_timeout = body_read_timeout
        self.min_upload_rate = min_upload_rate
        self.min_upload_rate_after = min_upload_rate_after

    def carry_over(self, old: UploadLimits) -> None:
        """On reload: the bodies still buffering under the old config count here too."""
        self.counts = old.counts
        old.memory.limit = self.memory.limit  # one budget: the new limit, the bytes in use
        self.memory = old.memory

    def slot(self, client: str | None, remote: str | None, route: str) -> UploadSlot:
        """This client's slot for one body, not yet taken (:meth:`UploadSlot.enter`)."""
        if client is not None:
            return UploadSlot(self, f"client:{client}", f"client {client!r}", route)
        return UploadSlot(self, f"remote:{remote or '-'}", f"address {remote or '-'}", route)

    def in_buffering(self) -> int:
        return sum(self.counts.values())


def _rate(bytes_per_second: float) -> str:
    if bytes_per_second >= 1024 * 1024:
        return f"{bytes_per_second / (1024 * 1024):.1f} MiB/s"
    return f"{bytes_per_second / 1024:.1f} KiB/s"

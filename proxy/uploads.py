"""Bounds on request bodies that a scheme must buffer: per client, per second, per process.

A scheme that signs the body (or retries a 401 with it) needs all of it
before the request can leave, so Signet holds the body while the client
sends it. Without bounds, one client could hold every buffering slot of a
route by drip-feeding eight uploads, grow the process by gigabytes with
stalled ones, or fill ``spool_dir`` for everyone. Three limits close that:

- ``limits.client_uploads`` (default 4): bodies one client (its name, or its
  remote address when Signet has no ``clients``) may have in buffering at
  once. One more is refused before a body byte is read: ``429 rate_limited``
  with ``Retry-After: 1`` (it is that client's own excess, like its rate
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
    under ``min_rate`` (counted only after ``grace`` seconds).
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
    ) -> None:
        self.read = read
        self.silence = silence
        self.min_rate = min_rate
        self.grace = grace
        self.route = route
        self.clock = clock
        self.received = 0
        self.started = clock()

    async def __call__(self) -> bytes:
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
    """One client's body in buffering; :meth:`leave` (idempotent) frees the slot."""

    __slots__ = ("_counts", "_key", "limits", "memory")

    def __init__(self, counts: dict[str, int], key: str, limits: UploadLimits) -> None:
        self._counts: dict[str, int] | None = counts
        self._key = key
        self.limits = limits
        self.memory = limits.memory

    def reader(self, read: Callable[[], Awaitable[bytes]], route: str | None) -> BodyReader:
        """Reads this body under the silence and minimum-rate deadlines."""
        limits = self.limits
        return BodyReader(
            read,
            silence=limits.body_read_timeout,
            min_rate=limits.min_upload_rate,
            grace=limits.min_upload_rate_after,
            route=route,
        )

    def leave(self) -> None:
        counts, self._counts = self._counts, None
        if counts is None:
            return
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
        self._counts: dict[str, int] = {}  # client or remote address -> bodies in buffering
        self.body_read_timeout = body_read_timeout
        self.min_upload_rate = min_upload_rate
        self.min_upload_rate_after = min_upload_rate_after

    def carry_over(self, old: UploadLimits) -> None:
        """On reload: the bodies still buffering under the old config count here too."""
        self._counts = old._counts
        old.memory.limit = self.memory.limit  # one budget: the new limit, the bytes in use
        self.memory = old.memory

    def enter(self, client: str | None, remote: str | None, route: str) -> UploadSlot:
        """Take a buffering slot for this client; 429 when it already has ``client_uploads``."""
        key = f"client:{client}" if client is not None else f"remote:{remote or '-'}"
        current = self._counts.get(key, 0)
        if current >= self.client_uploads:
            who = f"client {client!r}" if client is not None else f"address {remote or '-'}"
            raise RateLimited(
                f"{who} already has {current} request bodies being uploaded "
                f"(limits.client_uploads); retry when one is done",
                retry_after=RETRY_AFTER,
                route=route,
            )
        self._counts[key] = current + 1
        return UploadSlot(self._counts, key, self)

    def in_buffering(self) -> int:
        return sum(self._counts.values())


def _rate(bytes_per_second: float) -> str:
    if bytes_per_second >= 1024 * 1024:
        return f"{bytes_per_second / (1024 * 1024):.1f} MiB/s"
    return f"{bytes_per_second / 1024:.1f} KiB/s"

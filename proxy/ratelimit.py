"""Exact rate limits: GCRA over a :class:`LimitStore`, plus the vendor's own ``Retry-After``.

GCRA (the generic cell rate algorithm) keeps one number per key, the
theoretical arrival time ``tat``. A limit of ``requests`` per ``per`` has the
emission interval ``T = per / requests`` and the tolerance ``tau = T * burst``.
One decision at ``now`` (what every store computes, atomically)::

    tat = max(tat, now)
    if paused_until > now:                    # a vendor pause: nothing before it ends
        tat = max(tat, paused_until + tau)
    wait = tat - tau - now                    # when this request may be sent
    if wait > max_wait + 1e-9: refuse, retry_after = wait (nothing is stored)
    else: store tat + T, admit after sleeping `wait`

So with ``burst: 0`` requests leave no closer than ``T``, with ``burst: N``
N more may leave at once, and after a vendor pause traffic resumes at the
steady rate (no burst), queued requests ``T`` apart.

A request that must wait (up to ``max_wait``) reserves its slot at once, so
waiters are served in arrival order, and a refused request reserves nothing.

The store is the shared part: :class:`LocalLimitStore` keeps ``tat`` in this
process (its clock: ``time.monotonic``); a Redis store implements the same
:class:`LimitStore` protocol with one Lua script per decision (its clock: the
server's ``TIME``). Keys are ``route:<name>`` and ``client:<name>``.

A vendor pause belongs to the credential that received the 429, not to the
route (finding: one client's own ``auth_by_client`` account tripping the
vendor's quota paused everyone). ``take`` names the pause key it honours:
``route:<name>`` for the route's own ``auth``, ``route:<name>#client:<c>``
for one ``auth_by_client`` entry; the GCRA budget stays the route's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Protocol

# A vendor's Retry-After is obeyed up to this long: a buggy or hostile value must
# not take a route down for days. A route's ``max_pause`` (default DEFAULT_MAX_PAUSE)
# caps it further.
MAX_VENDOR_PAUSE = 3600.0
DEFAULT_MAX_PAUSE = 300.0

# Float sums of the interval (tat += T) drift by ulps: a slot due "now" must not be refused for 1e-13 s.
EPSILON = 1e-9


@dataclass(frozen=True)
class Decision:
    """The answer of one :meth:`LimitStore.take`."""

    admitted: bool
    wait: float  # seconds the caller must wait before sending (0 when admitted now); slot already reserved
    retry_after: float  # when refused: seconds until a slot could be had


ADMIT_NOW = Decision(True, 0.0, 0.0)


class LimitStore(Protocol):
    """Where GCRA state lives (this process, or Redis for a fleet)."""

    async def take(
        self, key: str, interval: float, burst: int, max_wait: float, pause_key: str | None = None
    ) -> Decision:
        """Reserve the next slot on ``key`` if it can be had within ``max_wait`` seconds.

        Nothing is admitted while ``pause_key`` (default ``key``) is paused.
        """
        ...

    async def pause(self, key: str, seconds: float) -> None:
        """A vendor 429: admit nothing on ``key`` for ``seconds``."""
        ...

    async def close(self) -> None: ...


@dataclass
class _KeyState:
    tat: float = 0.0  # theoretical arrival time


class LocalLimitStore:
    """GCRA state in this process. Each call is atomic: it never awaits inside."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._keys: dict[str, _KeyState] = {}
        self._paused: dict[str, float] = {}  # pause key -> until (one entry per credential)

    def take_now(
        self, key: str, interval: float, burst: int, max_wait: float, pause_key: str | None = None
    ) -> Decision:
        """The synchronous decision (``take`` without the coroutine)."""
        now = self._clock()
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState(tat=now)
        tolerance = interval * burst
        tat = state.tat if state.tat > now else now
        paused_until = self._paused.get(key if pause_key is None else pause_key, 0.0)
        # a vendor pause still running: nothing before it ends, and what queues
        # behind it leaves T apart; once over, the route's burst is everyone's again
        if paused_until > now and paused_until + tolerance > tat:
            tat = paused_until + tolerance
        wait = tat - tolerance - now
        if wait > max_wait + EPSILON:
            return Decision(False, 0.0, wait)
        state.tat = tat + interval
        return ADMIT_NOW if wait <= EPSILON else Decision(True, wait, 0.0)

    async def take(
        self, key: str, interval: float, burst: int, max_wait: float, pause_key: str | None = None
    ) -> Decision:
        return self.take_now(key, interval, burst, max_wait, pause_key)

    async def pause(self, key: str, seconds: float) -> None:
        now = self._clock()
        until = now + seconds
        if until > self._paused.get(key, 0.0):
            self._paused[key] = until
        for k in [k for k, t in self._paused.items() if t <= now]:  # over: bounded by credentials
            del self._paused[k]

    async def close(self) -> None:
        self._keys.clear()
        self._paused.clear()


def retry_after_header(seconds: float, ceiling: float = MAX_VENDOR_PAUSE) -> str:
    """``Retry-After`` in whole seconds, rounded up (never 0 for a refusal), at most ``ceiling``.

    The ceiling is what the limit itself could ever ask for (see
    :meth:`proxy.admission.Limit.ceiling`): a store that answers more is wrong,
    and the client must not be told to go away for years.
    """
    if math.isnan(seconds):
        seconds = ceiling
    return str(max(1, math.ceil(min(seconds, ceiling) - 1e-9)))


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """A vendor's ``Retry-After`` (delay-seconds or an HTTP date) as seconds from now.

    None when absent or unreadable; capped at :data:`MAX_VENDOR_PAUSE`.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # '-0000': an HTTP date is GMT by definition
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now()
    if seconds <= 0:
        return 0.0
    return min(seconds, MAX_VENDOR_PAUSE)

"""Shared state in Redis (``state.redis``): one client per runtime, its health, ``on_error``.

Rate limits (:mod:`proxy.redislimit`) and OAuth2 token caches
(:mod:`proxy.sharedtokens`) use its client while :attr:`SharedState.up`, and
report every operation that could not use Redis to
:meth:`SharedState.unavailable`. While Redis answers, every Signet process
shares one budget per limit and one token per route. When it does not,
``on_error`` decides: ``allow`` lets the caller answer from per-process
state, ``deny`` raises :class:`~proxy.errors.StateUnavailable` (503
``state_unavailable``).

A failure marks the state *down* at once, so later requests do not each pay a
connect timeout; one background task then probes Redis with ``PING`` under
capped exponential backoff (with jitter) and marks it *up* again when it
answers. Every operation that could not use Redis is counted in
``signet_state_errors_total{op}``; the log gets one ``state_unavailable``
line per :data:`LOG_EVERY` seconds at most (with how many were suppressed)
and one ``state_recovered`` line when Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import TYPE_CHECKING, Any, Literal

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from yarl import URL

from proxy.clock import SYSTEM_CLOCK, Clock
from proxy.errors import StateUnavailable
from proxy.redisurl import describe
from proxy.tokens import sanitize

if TYPE_CHECKING:
    from proxy.config import Settings

log = structlog.get_logger("signet.state")

OnError = Literal["allow", "deny"]

# What "Redis could not answer" looks like through redis-py (OSError/TimeoutError
# cover a socket failing outside redis-py's own wrapping).
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)

LOG_EVERY = 10.0  # seconds between two state_unavailable log lines
CONNECT_TIMEOUT = 1.0
OPERATION_TIMEOUT = 1.0
PROBE_BASE = 0.1
PROBE_CAP = 5.0
KEY_PREFIX = "signet:"

class SharedState:
    """One redis-py asyncio client, whether Redis is up, and what to do when it is not."""

    def __init__(
        self,
        url: str,
        *,
        on_error: OnError = "allow",
        metrics: Any = None,
        clock: Clock = SYSTEM_CLOCK,
        connect_timeout: float = CONNECT_TIMEOUT,
        operation_timeout: float = OPERATION_TIMEOUT,
        probe_base: float = PROBE_BASE,
        probe_cap: float = PROBE_CAP,
    ) -> None:
        self.on_error: OnError = on_error
        self.metrics = metrics
        self.clock = clock
        self.where = describe(url)
        self.probe_base = probe_base
        self.probe_cap = probe_cap
        u = URL(url)
        self._secrets = [s for s in (u.password, u.user) if s]
        # One retry on a fresh connection: after a Redis restart every pooled
        # connection is dead, and the first command on each would fail.
        self.redis: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=connect_timeout,
            socket_timeout=operation_timeout,
            retry=Retry(NoBackoff(), 1),
            client_name="signet",
        )
        self._up = True
        self._probe: asyncio.Task[None] | None = None
        self._closed = False
        self._last_log = -float("inf")
        self._suppressed = 0
        self._set_gauge(1)

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Check Redis once; a Redis that is down at start-up is probed, not fatal."""
        try:
            await self.redis.ping()
        except REDIS_ERRORS as e:
            self._down("connect", e)
            return
        log.info("state_connected", redis=self.where, on_error=self.on_error)

    async def close(self) -> None:
        self._closed = True
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe
        with contextlib.suppress(*REDIS_ERRORS):
            await self.redis.aclose()

    # -- use ---------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self._up

    def key(self, *parts: str) -> str:
        """A Redis key in Signet's namespace."""
        return KEY_PREFIX + ":".join(parts)

    def unavailable(self, op: str, error: BaseException | None, *, deny: bool = True) -> None:
        """Record that ``op`` could not use Redis; raises StateUnavailable under ``deny``.

        ``error`` is the failure that just happened, or None when Redis was
        already known to be down and was not tried. ``deny=False`` for
        operations that must never fail a request (e.g. recording a pause).
        """
        if error is not None and self._up:
            self._down(op, error)
        self._count(op)
        self._log(op, error)
        if deny and self.on_error == "deny":
            raise StateUnavailable(
                "shared state (Redis) is unavailable and state.on_error is deny"
            )

    # -- internals ---------------------------------------------------------------

    def _down(self, op: str, error: BaseException) -> None:
        if self._up:
            self._up = False
            self._set_gauge(0)
            self._last_log = -float("inf")  # the first failure is always logged
        if op == "connect":
            self._count(op)
            self._log(op, error)
        if self._probe is None and not self._closed:
            self._probe = asyncio.get_running_loop().create_task(
                self._reconnect(), name="signet-state-probe"
            )

    async def _reconnect(self) -> None:
        delay = self.probe_base
        try:
            while not self._closed:
                await asyncio.sleep(delay / 2 + random.uniform(0, delay / 2))
                try:
                    await self.redis.ping()
                except REDIS_ERRORS:
                    delay = min(self.probe_cap, delay * 2)
                    continue
                self._up = True
                self._set_gauge(1)
                log.info("state_recovered", redis=self.where, suppressed=self._suppressed)
                self._suppressed = 0
                return
        finally:
            self._probe = None

    def _log(self, op: str, error: BaseException | None) -> None:
        now = self.clock.monotonic()
        if now - self._last_log < LOG_EVERY:
            self._suppressed += 1
            return
        self._last_log = now
        reason = (
            sanitize(f"{type(error).__name__}: {error}", secrets=self._secrets, limit=160)
            if error is not None
            else "down (reconnecting)"
        )
        log.warning(
            "state_unavailable",
            redis=self.where,
            op=op,
            on_error=self.on_error,
            reason=reason,
            suppressed=self._suppressed,
        )
        self._suppressed = 0

    def _count(self, op: str) -> None:
        counter = getattr(self.metrics, "state_errors", None)
        if counter is not None:
            counter.labels(op=op).inc()

    def _set_gauge(self, value: int) -> None:
        gauge = getattr(self.metrics, "state_up", None)
        if gauge is not None:
            gauge.set(value)


def shared_state(settings: Settings, metrics: Any, clock: Clock = SYSTEM_CLOCK) -> SharedState | None:
    """The runtime's shared state when ``state.redis`` is set (connected by ``start``)."""
    if settings.state.redis is None:
        return None
    return SharedState(
        settings.state.redis.reveal(), on_error=settings.state.on_error, metrics=metrics, clock=clock
    )

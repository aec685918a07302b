"""Admission: may this request go upstream now? Policies first, then client and route limits.

One :class:`Admission` per runtime (built from one config load) holds the
compiled allow rules, each route's and client's GCRA limit, and the
:class:`~proxy.ratelimit.LimitStore` that keeps their state. The pipeline
calls :meth:`Admission.admit` once per request, after inbound authentication
and routing and before any body byte is read, and :meth:`Admission.vendor_429`
when an upstream answers 429.

Order, and why: the allow rules cost nothing and use no budget; the client's
own limit (never queues) comes before the route's, so a client refused for
its own excess does not burn a slot of the shared vendor quota.

Without a shared store each process holds ``1/N`` of each limit when
``signet serve --workers N`` runs N of them (:func:`worker_share`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

from proxy.config import RateLimit, Settings
from proxy.errors import Forbidden, RateLimited
from proxy.log import get_logger
from proxy.metrics import Metrics
from proxy.policy import ClientPolicy, compile_policies, method_overrides
from proxy.ratelimit import LimitStore, LocalLimitStore, parse_retry_after, retry_after_header
from proxy.redisurl import describe as describe_redis

log = get_logger("signet.admission")


def worker_share(limit: RateLimit, workers: int) -> tuple[float, int]:
    """(emission interval, burst) for one of ``workers`` processes sharing ``limit`` without Redis.

    Each process gets ``requests / N``: its interval is N times longer. Its
    burst is the largest that keeps the fleet's instant burst (``N * (b + 1)``)
    within the configured ``burst + 1``, and at least 0 (every process must
    admit one request).
    """
    interval = limit.per / limit.requests * workers
    burst = max(0, (limit.burst + 1) // workers - 1) if workers > 1 else limit.burst
    return interval, burst


@dataclass(frozen=True)
class Limit:
    """A limit as the store sees it."""

    key: str  # route:<name> | client:<name>
    interval: float
    burst: int
    max_wait: float
    configured: RateLimit

    @classmethod
    def build(cls, key: str, limit: RateLimit, workers: int, max_wait: float) -> Limit:
        interval, burst = worker_share(limit, workers)
        return cls(key, interval, burst, max_wait, limit)

    def describe(self) -> str:
        return self.configured.describe()


class Admission:
    """Policies and limits of one runtime; see the module docstring."""

    def __init__(
        self, settings: Settings, metrics: Metrics, store: LimitStore | None = None
    ) -> None:
        self.metrics = metrics
        # a shared store holds one budget for the fleet; a local one splits it N ways
        self.workers = settings.workers if store is None else 1
        self.store: LimitStore = store if store is not None else LocalLimitStore()
        self.policies: dict[str, ClientPolicy] = compile_policies(settings.clients)
        self.route_limits = {
            r.name: Limit.build(f"route:{r.name}", r.rate_limit, self.workers, r.rate_limit.max_wait)
            for r in settings.routes
            if r.rate_limit is not None
        }
        self.client_limits = {
            c.name: Limit.build(f"client:{c.name}", c.rate_limit, self.workers, 0.0)
            for c in settings.clients or ()
            if c.rate_limit is not None
        }
        # vendor pauses this process saw (monotonic deadline): enforced on routes
        # without a limit, and names the reason in the metric
        self._paused_until: dict[str, float] = {}
        self._children: dict[tuple[str, ...], Any] = {}
        self._owns_store = True  # False once a reload handed the store to the next runtime

    async def start(self) -> None:
        """Connect what needs connecting (nothing for local state)."""

    def carry_over(self, old: Admission) -> None:
        """On reload: keep the previous runtime's local limit state and vendor pauses.

        Limits are keyed by name, so a renamed route or client starts afresh and
        changed numbers apply to the state as it stands. A shared store keeps its
        state anyway; only a local one is handed over (and not closed with the
        old runtime).
        """
        if isinstance(self.store, LocalLimitStore) and isinstance(old.store, LocalLimitStore):
            self.store = old.store
            old._owns_store = False
        for route, until in old._paused_until.items():
            if until > self._paused_until.get(route, 0.0):
                self._paused_until[route] = until

    async def close(self) -> None:
        if self._owns_store:
            await self.store.close()

    # ------------------------------------------------------------ the hooks

    async def admit(
        self,
        client: str | None,
        route: str,
        method: str,
        path: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        query: str = "",
    ) -> None:
        """Return when the request may go upstream; raise Forbidden or RateLimited otherwise.

        ``path`` is the raw path after the route's prefix, as the client sent it;
        ``headers`` (every occurrence) and the raw ``query`` are read for method
        overrides (:func:`proxy.policy.method_overrides`), which a method rule binds too.
        """
        if client is not None:
            policy = self.policies.get(client)
            if policy is not None:
                overrides = method_overrides(headers, query)
                why = policy.denial(route, method, path or "/", overrides)
                if why is not None:
                    self.denied(route, client)
                    raise Forbidden(why, route=route)
            limit = self.client_limits.get(client)
            if limit is not None:
                decision = await self.store.take(limit.key, limit.interval, limit.burst, 0.0)
                if not decision.admitted:
                    self._refuse(
                        route, client, "client", decision.retry_after,
                        f"client {client!r} is over its rate limit ({limit.describe()})",
                    )
        limit = self.route_limits.get(route)
        if limit is None:
            if self._paused_until:
                self._check_pause(route, client)
            return
        waited = await self._take_route(limit, route, client, limit.max_wait)
        if waited > 0 and self._paused(route):
            # the vendor answered 429 while this request waited for its slot: queue
            # again behind the pause, within what is left of max_wait
            waited += await self._take_route(limit, route, client, limit.max_wait - waited)
        self._histogram(route).observe(waited)

    def denied(self, route: str, client: str) -> None:
        """Count a policy denial: an ``allow`` rule missed, or a route outside the client's list."""
        self._counter("denied", route, client).inc()

    async def vendor_429(self, route: str, retry_after: str | None) -> None:
        """The vendor answered 429: pause the route for its ``Retry-After`` (if it gave one)."""
        seconds = parse_retry_after(retry_after)
        if not seconds:
            return
        until = time.monotonic() + seconds
        if until > self._paused_until.get(route, 0.0):
            self._paused_until[route] = until
        await self.store.pause(f"route:{route}", seconds)
        log.warning("vendor_rate_limited", route=route, pause_s=round(seconds, 3))

    # ------------------------------------------------------------ internals

    async def _take_route(self, limit: Limit, route: str, client: str | None, max_wait: float) -> float:
        """Take a slot on the route's limit and wait for it; the seconds waited."""
        decision = await self.store.take(limit.key, limit.interval, limit.burst, max(0.0, max_wait))
        if not decision.admitted:
            reason = "vendor_429" if self._paused(route) else "route"
            what = (
                "is paused after the vendor answered 429"
                if reason == "vendor_429"
                else f"is over its rate limit ({limit.describe()})"
            )
            self._refuse(route, client, reason, decision.retry_after, f"route {route!r} {what}")
        if decision.wait > 0:
            await asyncio.sleep(decision.wait)  # the slot is ours: at most max_wait
        return decision.wait

    def _paused(self, route: str) -> bool:
        return self._paused_until.get(route, 0.0) > time.monotonic()

    def _check_pause(self, route: str, client: str | None) -> None:
        """A route without a limit still honours a vendor pause (this process's view)."""
        left = self._paused_until.get(route, 0.0) - time.monotonic()
        if left <= 0:
            self._paused_until.pop(route, None)  # over: the common path stays one dict test
        else:
            self._refuse(
                route, client, "vendor_429", left,
                f"route {route!r} is paused after the vendor answered 429",
            )

    def _refuse(
        self, route: str, client: str | None, reason: str, retry_after: float, message: str
    ) -> NoReturn:
        self._counter("limited", route, client or "-", reason).inc()
        header = retry_after_header(retry_after)
        raise RateLimited(f"{message}; retry in {header}s", retry_after=header, route=route)

    def _counter(self, kind: str, *labels: str) -> Any:
        key = (kind, *labels)
        child = self._children.get(key)
        if child is None:
            metric = self.metrics.policy_denied if kind == "denied" else self.metrics.rate_limited
            child = self._children[key] = metric.labels(*labels)
        return child

    def _histogram(self, route: str) -> Any:
        key = ("wait", route)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.metrics.queue_wait.labels(route)
        return child


def check_lines(settings: Settings) -> list[str]:
    """What ``signet check`` prints: each client's effective rules, each limit, the worker split."""
    lines = []
    for r in settings.routes:
        if r.rate_limit is not None:
            lines.append(f"route {r.name}: rate_limit {r.rate_limit.describe()}")
    for c in settings.clients or ():
        if c.allow is not None:
            policy = ClientPolicy(c.name, c.allow)
            rules = "; ".join(rule.describe() for rule in policy.rules)
            lines.append(f"client {c.name}: {rules}")
        elif c.routes is not None:
            lines.append(f"client {c.name}: routes {', '.join(sorted(c.routes))}, any method, any path")
        else:
            lines.append(f"client {c.name}: every route, any method, any path")
        if c.rate_limit is not None:
            lines.append(f"client {c.name}: rate_limit {c.rate_limit.describe()} (never queues)")
    if settings.state.redis is not None:
        lines.append(
            f"shared state: {describe_redis(settings.state.redis.reveal())} "
            f"(on_error: {settings.state.on_error}): every process and replica shares one "
            "budget per limit and one OAuth2 token per route"
        )
    elif any(r.rate_limit for r in settings.routes) or any(c.rate_limit for c in settings.clients or ()):
        lines.append(
            "rate limits are per process: with 'signet serve --workers N' each worker "
            "admits 1/N of each limit (requests/N; burst split so the sum stays within it)"
        )
    return lines


def build_admission(settings: Settings, metrics: Metrics, store: LimitStore | None = None) -> Admission:
    """The factory the runtime calls once per config load."""
    return Admission(settings, metrics, store)

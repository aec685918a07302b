"""Admission: may this request go upstream now? Policies first, then client and route limits.

One :class:`Admission` per runtime (built from one config load) holds the
compiled allow rules, each route's and client's GCRA limit, and the
:class:`~proxy.ratelimit.LimitStore` that keeps their state. The pipeline
calls :meth:`Admission.admit` once per request, after inbound authentication
and routing and before any body byte is read, :meth:`Admission.vendor_429`
when an upstream answers 429, and :meth:`Admission.retry_401` before a second
attempt after a 401 (a retry is one more upstream request: it takes a slot of
the route's limit like any other, or the 401 is relayed).

A vendor 429 pauses the credential that received it, never the whole route:
the route's ``auth`` (shared by every client without its own entry) or one
``auth_by_client`` entry (:meth:`Admission.pause_key`), for at most the
route's ``max_pause``.

Order, and why: the allow rules cost nothing and use no budget; the client's
own limit (never queues) comes before the route's, so a client refused for
its own excess does not burn a slot of the shared vendor quota.

Without a shared store each process holds ``1/N`` of each limit when
``signet serve --workers N`` runs N of them (:func:`worker_share`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

from proxy.config import RateLimit, Settings
from proxy.errors import Forbidden, RateLimited
from proxy.log import get_logger
from proxy.metrics import Metrics
from proxy.policy import ClientPolicy, compile_policies, method_overrides
from proxy.ratelimit import (
    DEFAULT_MAX_PAUSE,
    LimitStore,
    LocalLimitStore,
    parse_retry_after,
    retry_after_header,
)
from proxy.redisurl import describe as describe_redis
from proxy.uploads import UploadLimits, UploadSlot

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

    def ceiling(self, max_pause: float) -> float:
        """The longest this limit can ever ask a client to wait: caps every Retry-After."""
        return max_pause + self.interval * (self.burst + 1) + self.max_wait


class Admission:
    """Policies and limits of one runtime; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        store: LimitStore | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self.monotonic = monotonic  # the runtime's clock: tests move it (proxy.clock)
        # a shared store holds one budget for the fleet; a local one splits it N ways
        self.workers = settings.workers if store is None else 1
        self.store: LimitStore = store if store is not None else LocalLimitStore(monotonic)
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
        self.max_pause = {r.name: r.max_pause for r in settings.routes}
        # clients with their own credentials on a route: their 429s pause only them
        self.own_credentials = {r.name: frozenset(r.auth_by_client) for r in settings.routes}
        # vendor pauses this process saw, by pause key (monotonic deadline): enforced
        # on routes without a limit, and names the reason in the metric
        self._paused_until: dict[str, float] = {}
        limits = settings.limits
        self.uploads = UploadLimits(  # bodies a scheme must buffer: per client, rate, memory
            client_uploads=limits.client_uploads,
            min_upload_rate=limits.min_upload_rate,
            min_upload_rate_after=limits.min_upload_rate_after,
            body_read_timeout=limits.body_read_timeout,
            body_memory=limits.body_memory,
        )
        uploads = self.uploads  # the newest runtime's view (a reload shares the state)
        metrics.uploads_buffering.set_function(uploads.in_buffering)
        metrics.body_memory.set_function(lambda: uploads.memory.used)
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
        self.uploads.carry_over(old.uploads)
        if isinstance(self.store, LocalLimitStore) and isinstance(old.store, LocalLimitStore):
            self.store = old.store
            old._owns_store = False
        for key, until in old._paused_until.items():
            if until > self._paused_until.get(key, 0.0):
                self._paused_until[key] = until

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
                        route, client, "client", min(decision.retry_after, limit.ceiling(0.0)),
                        f"client {client!r} is over its rate limit ({limit.describe()})",
                    )
        limit = self.route_limits.get(route)
        pause = self.pause_key(route, client)
        if limit is None:
            if self._paused_until:
                self._check_pause(route, client, pause)
            return
        waited = await self._take_route(limit, route, client, pause, limit.max_wait)
        if waited > 0 and self._paused(pause):
            # the vendor answered 429 while this request waited for its slot: queue
            # again behind the pause, within what is left of max_wait
            waited += await self._take_route(limit, route, client, pause, limit.max_wait - waited)
        self._histogram(route).observe(waited)

    async def retry_401(self, client: str | None, route: str) -> bool:
        """May a second attempt after a 401 go upstream? It takes a slot of the route's limit.

        The slot may be waited for within ``max_wait``; False (relay the 401)
        when it cannot be had, or when the credential is paused meanwhile.
        """
        pause = self.pause_key(route, client)
        limit = self.route_limits.get(route)
        if limit is None:
            return not self._paused(pause)
        decision = await self.store.take(
            limit.key, limit.interval, limit.burst, limit.max_wait, pause
        )
        if not decision.admitted:
            self._counter("limited", route, client or "-", "retry_401").inc()
            return False
        if decision.wait > 0:
            await asyncio.sleep(decision.wait)  # the slot is ours: at most max_wait
        return True

    def pause_key(self, route: str, client: str | None) -> str:
        """The credential a request on ``route`` uses, as the key its vendor pauses live under."""
        if client is not None and client in self.own_credentials.get(route, ()):
            return f"route:{route}#client:{client}"
        return f"route:{route}"

    def upload_slot(self, client: str | None, remote: str | None, route: str) -> UploadSlot:
        """The client's buffering slot for one body (``limits.client_uploads``), taken on first wait."""
        slot = self.uploads.slot(client, remote, route)
        slot.on_refused = self._counter("limited", route, client or "-", "client_uploads").inc
        return slot

    def denied(self, route: str, client: str) -> None:
        """Count a policy denial: an ``allow`` rule missed, or a route outside the client's list."""
        self._counter("denied", route, client).inc()

    async def vendor_429(self, route: str, client: str | None, retry_after: str | None) -> None:
        """The vendor answered 429: pause the credential used for ``min(Retry-After, max_pause)``."""
        seconds = parse_retry_after(retry_after)
        if not seconds:
            return
        seconds = min(seconds, self.max_pause.get(route, DEFAULT_MAX_PAUSE))
        if seconds <= 0:
            return
        key = self.pause_key(route, client)
        until = self.monotonic() + seconds
        if until > self._paused_until.get(key, 0.0):
            self._paused_until[key] = until
        await self.store.pause(key, seconds)
        credential = "route" if "#" not in key else f"client {client}"
        log.warning(
            "vendor_rate_limited", route=route, credential=credential, pause_s=round(seconds, 3)
        )

    # ------------------------------------------------------------ internals

    async def _take_route(
        self, limit: Limit, route: str, client: str | None, pause: str, max_wait: float
    ) -> float:
        """Take a slot on the route's limit and wait for it; the seconds waited."""
        decision = await self.store.take(
            limit.key, limit.interval, limit.burst, max(0.0, max_wait), pause
        )
        if not decision.admitted:
            # the limit alone never asks more than max_wait + one interval: a longer
            # refusal is a vendor pause, maybe recorded by another process (Redis)
            paused = decision.retry_after > max_wait + limit.interval + 1e-3
            reason = "vendor_429" if paused or self._paused(pause) else "route"
            what = (
                f"is paused for {_credential(pause)} after the vendor answered 429"
                if reason == "vendor_429"
                else f"is over its rate limit ({limit.describe()})"
            )
            ceiling = limit.ceiling(self.max_pause.get(route, DEFAULT_MAX_PAUSE))
            self._refuse(
                route, client, reason, min(decision.retry_after, ceiling), f"route {route!r} {what}"
            )
        if decision.wait > 0:
            await asyncio.sleep(decision.wait)  # the slot is ours: at most max_wait
        return decision.wait

    def _paused(self, pause: str) -> bool:
        return self._paused_until.get(pause, 0.0) > self.monotonic()

    def _check_pause(self, route: str, client: str | None, pause: str) -> None:
        """A route without a limit still honours a vendor pause (this process's view)."""
        left = self._paused_until.get(pause, 0.0) - self.monotonic()
        if left <= 0:
            self._paused_until.pop(pause, None)  # over: the common path stays one dict test
        else:
            self._refuse(
                route, client, "vendor_429", left,
                f"route {route!r} is paused for {_credential(pause)} after the vendor answered 429",
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


def _credential(pause: str) -> str:
    """How a message names a pause key: the route's credentials or one client's own."""
    _, _, own = pause.partition("#client:")
    return f"client {own!r}'s own credentials" if own else "the route's credentials"


def check_lines(settings: Settings) -> list[str]:
    """What ``signet check`` prints: each client's effective rules, each limit, the worker split."""
    lines = []
    for r in settings.routes:
        if r.rate_limit is not None:
            lines.append(f"route {r.name}: rate_limit {r.rate_limit.describe()}")
        if r.auth.scheme == "aws-sigv4":  # the SigV4 firewall (proxy/auth/aws_firewall.py)
            amz = ", ".join(r.client_amz_headers) or "none"
            lines.append(f"route {r.name}: client x-amz-* headers signed only if {amz}")
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


def build_admission(
    settings: Settings,
    metrics: Metrics,
    store: LimitStore | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> Admission:
    """The factory the runtime calls once per config load."""
    return Admission(settings, metrics, store, monotonic)

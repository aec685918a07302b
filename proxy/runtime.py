"""Everything built from one loaded config: schemes, upstream pools, the prefix table.

A :class:`Runtime` is immutable once started. A reload builds a new one and
swaps it in; requests already running keep the runtime they started with,
and the old one is closed when its last request finishes (or after the grace
period), so a reload never cuts a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from multidict import istr

from proxy.admission import build_admission
from proxy.auth import AuthScheme, SchemeContext
from proxy.clock import SYSTEM_CLOCK, Clock
from proxy.config import Client, Route, Settings
from proxy.errors import Forbidden
from proxy.forward_proxy.mode import Binding, ForwardMode
from proxy.headers import stripped_names
from proxy.metrics import Metrics
from proxy.routes import PrefixTable
from proxy.secret import reveal
from proxy.upstream import Origin, Pool, client_context

if TYPE_CHECKING:  # redis is imported only by a config with state.redis (idle RSS)
    from proxy.state import SharedState

MAX_IDLE = 30.0  # seconds an idle upstream keep-alive connection is kept


@dataclass(eq=False)
class RouteRuntime:
    """A route with its live scheme, pool and limits."""

    route: Route
    scheme: AuthScheme
    pool: Pool
    connect_timeout: float
    read_timeout: float
    stripped: frozenset[str]
    set_headers: tuple[tuple[istr, str], ...]
    base_path: str  # upstream base path, no trailing slash ('' for the root)
    origin: str  # scheme://host[:port], computed once (str(URL.origin()) per request showed in profiles)
    needs_body: bool  # any of the route's schemes (its own or a client's) signs the body
    retries_401: bool  # any of them can make a second attempt worthwhile
    in_flight: int = 0
    metric_children: dict[Any, Any] = field(default_factory=dict)
    client_schemes: dict[str, AuthScheme] = field(default_factory=dict)  # auth_by_client

    @property
    def name(self) -> str:
        return self.route.name

    def scheme_for(self, client: str | None) -> AuthScheme:
        """The client's own credentials on this route (auth_by_client), else the route's."""
        if client is None or not self.client_schemes:
            return self.scheme
        return self.client_schemes.get(client, self.scheme)

    def upstream_path(self, rest: str) -> str:
        """The raw path sent upstream: the base path plus what follows the prefix."""
        return (self.base_path + rest) or "/"


def ssl_context_for(route: Route) -> ssl.SSLContext:
    tls = route.tls
    return client_context(tls.verify, tls.ca_file, tls.cert_file, tls.key_file)


def origin_of(route: Route) -> Origin:
    url = route.upstream
    scheme = url.scheme
    port = url.port or (443 if scheme == "https" else 80)
    return Origin(scheme, url.raw_host or "", port)


class Runtime:
    def __init__(
        self, settings: Settings, *, metrics: Metrics, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.active = 0  # requests currently using this runtime
        self._idle = asyncio.Event()
        self._idle.set()
        self._pools: dict[tuple[Any, ...], Pool] = {}
        self.routes: list[RouteRuntime] = []
        self.table: PrefixTable[RouteRuntime] = PrefixTable([])
        self.clients: tuple[Client, ...] | None = settings.clients
        # state.redis: limits and OAuth2 tokens shared by the fleet (connected in start)
        self.state: SharedState | None = None
        store = None
        if settings.state.redis is not None:  # redis and cryptography load only for a fleet
            from proxy.redislimit import shared_limit_store
            from proxy.state import shared_state

            self.state = shared_state(settings, metrics, clock)
            store = shared_limit_store(self.state, settings, clock)
        # allow rules, rate limits
        self.admission = build_admission(settings, metrics, store, clock.monotonic)
        # forward-proxy mode (CONNECT, absolute-form): route hosts and leaf certificates
        self.forward: ForwardMode | None = None
        if settings.forward_proxy is not None:
            self.forward = ForwardMode(settings.forward_proxy, settings.routes)
        self.by_name: dict[str, RouteRuntime] = {}

    def _pool_for(self, route: Route) -> Pool:
        key = (route.origin, route.tls, route.egress)
        pool = self._pools.get(key)
        if pool is None:
            origin = origin_of(route)
            context = ssl_context_for(route) if origin.scheme == "https" else None
            pool = self._pools[key] = Pool(origin, context, max_idle=MAX_IDLE, proxy=route.egress)
        return pool

    async def start(self) -> None:
        built: list[RouteRuntime] = []
        try:
            if self.state is not None:
                await self.state.start()
            await self.admission.start()
            for route in self.settings.routes:
                context = SchemeContext(
                    route=route.name,
                    clock=self.clock,
                    connect_timeout=route.timeout.connect,
                    read_timeout=route.timeout.read,
                    ssl=ssl_context_for(route),
                    metrics=self.metrics,
                    egress=route.egress,
                    state=self.state,
                    # the scheme refuses any other x-amz-* header too (the operator's set_headers pass)
                    client_amz_headers=route.client_amz_headers
                    + tuple(h.lower() for h in route.set_headers if h.lower().startswith("x-amz-")),
                )
                scheme = route.scheme_cls(route.auth, context)
                await scheme.start()
                client_schemes = await _client_schemes(route, context)
                schemes = (scheme, *client_schemes.values())
                base_path = route.upstream.raw_path.rstrip("/")
                built.append(
                    RouteRuntime(
                        route=route,
                        scheme=scheme,
                        pool=self._pool_for(route),
                        connect_timeout=route.timeout.connect,
                        read_timeout=route.timeout.read,
                        # recipes set theirs per instance; a client's own scheme may set others
                        stripped=stripped_names(
                            route.strip_headers, [h for s in schemes for h in s.injected_headers]
                        ),
                        set_headers=tuple(
                            (istr(k), reveal(v)) for k, v in route.set_headers.items()
                        ),
                        base_path=base_path,
                        origin=route.origin,
                        needs_body=any(s.needs_body for s in schemes),
                        retries_401=any(s.retries_on_401 for s in schemes),
                        client_schemes=client_schemes,
                    )
                )
        except BaseException:
            self.routes = built
            await self.close()
            raise
        self.routes = built
        self.table = PrefixTable((r.route.prefix, r) for r in built)
        self.by_name = {r.name: r for r in built}

    def forward_route(self, binding: Binding) -> RouteRuntime:
        """The route a forward-proxy request goes to now; Forbidden when its host has none."""
        if self.forward is None:
            raise Forbidden("forward-proxy mode is off in the current config")
        route = self.by_name.get(self.forward.route_of(binding))
        if route is None:
            raise Forbidden(f"{binding.host} is no longer the host of a route")
        return route

    def secret_values(self) -> set[str]:
        values = set(self.settings.secret_values)
        for r in self.routes:
            for scheme in (r.scheme, *r.client_schemes.values()):
                values.update(v for v in scheme.secret_values() if v)
        return values

    def acquire(self) -> None:
        self.active += 1
        self._idle.clear()

    def release(self) -> None:
        self.active -= 1
        if self.active == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        for r in self.routes:
            for scheme in (r.scheme, *r.client_schemes.values()):
                with contextlib.suppress(Exception):  # closing must go on for the others
                    await scheme.close()
        pools = list(self._pools.values())
        self._pools.clear()
        await asyncio.gather(*(p.close() for p in pools))
        with contextlib.suppress(Exception):
            await self.admission.close()
        if self.state is not None:
            await self.state.close()
        if self.forward is not None:
            self.forward.close()


async def _client_schemes(route: Route, context: SchemeContext) -> dict[str, AuthScheme]:
    """One started scheme per ``auth_by_client`` entry of the route."""
    out: dict[str, AuthScheme] = {}
    for client, (cls, options) in route.auth_by_client.items():
        out[client] = cls(options, context)
        await out[client].start()
    return out

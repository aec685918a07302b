"""Everything built from one loaded config: schemes, HTTP pools, the prefix table.

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
from typing import Any

import aiohttp
from multidict import istr

from proxy.admission import build_admission
from proxy.auth import AuthScheme, SchemeContext
from proxy.clock import SYSTEM_CLOCK, Clock
from proxy.config import Client, Route, Settings
from proxy.headers import stripped_names
from proxy.metrics import Metrics
from proxy.redislimit import shared_limit_store
from proxy.routes import PrefixTable
from proxy.secret import reveal
from proxy.state import SharedState, shared_state

STREAM_BUFSIZE = 256 * 1024


class _StrictConnector(aiohttp.TCPConnector):
    """A pool that never reuses a connection the upstream wrote to while it was idle.

    aiohttp parses bytes that arrive on a pooled keep-alive connection and
    hands them to the next request as its response: an upstream that sends an
    extra response (or garbage) would shift every later answer on that
    connection to the wrong client. Such a connection is closed instead.
    """

    async def _get(self, key: Any, traces: Any) -> Any:
        while True:
            conn = await super()._get(key, traces)
            if conn is None or not conn.protocol.should_close:
                return conn
            conn.close()


@dataclass(eq=False)
class RouteRuntime:
    """A route with its live scheme, pool and limits."""

    route: Route
    scheme: AuthScheme
    session: aiohttp.ClientSession
    timeout: aiohttp.ClientTimeout
    stripped: frozenset[str]
    set_headers: tuple[tuple[istr, str], ...]
    base_path: str  # upstream base path, no trailing slash ('' for the root)
    origin: str  # scheme://host[:port], computed once (str(URL.origin()) per request showed in profiles)
    needs_body: bool
    retries_401: bool
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

    def upstream_url(self, path: str, query: str) -> str:
        """The full raw URL sent upstream (what the pipeline sends and ``sign`` prints)."""
        return self.origin + path + ("?" + query if query else "")


def ssl_context_for(route: Route) -> ssl.SSLContext | bool:
    if not route.tls.verify:
        return False
    if route.tls.ca_file:
        return ssl.create_default_context(cafile=route.tls.ca_file)
    return True


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
        self._sessions: dict[tuple[Any, ...], aiohttp.ClientSession] = {}
        self.routes: list[RouteRuntime] = []
        self.table: PrefixTable[RouteRuntime] = PrefixTable([])
        self.clients: tuple[Client, ...] | None = settings.clients
        # state.redis: limits and OAuth2 tokens shared by the fleet (connected in start)
        self.state: SharedState | None = shared_state(settings, metrics, clock)
        self.admission = build_admission(  # allow rules, rate limits
            settings, metrics, shared_limit_store(self.state, settings)
        )

    def _session_for(self, route: Route) -> aiohttp.ClientSession:
        key = (route.origin, route.tls.verify, route.tls.ca_file)
        session = self._sessions.get(key)
        if session is None:
            connector = _StrictConnector(
                limit=0,  # per-route max_in_flight bounds concurrency instead
                ssl=ssl_context_for(route),
                keepalive_timeout=30,
                ttl_dns_cache=60,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                trust_env=False,
                requote_redirect_url=False,
                read_bufsize=STREAM_BUFSIZE,
            )
            self._sessions[key] = session
        return session

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
                    state=self.state,
                )
                scheme = route.scheme_cls(route.auth, context)
                await scheme.start()
                client_schemes = await _client_schemes(route, context)
                base_path = route.upstream.raw_path.rstrip("/")
                built.append(
                    RouteRuntime(
                        route=route,
                        scheme=scheme,
                        session=self._session_for(route),
                        timeout=aiohttp.ClientTimeout(
                            total=None, connect=route.timeout.connect, sock_read=route.timeout.read
                        ),
                        # recipes set theirs per instance; a client's own scheme may set others
                        stripped=stripped_names(
                            route.strip_headers,
                            [
                                *scheme.injected_headers,
                                *(h for s in client_schemes.values() for h in s.injected_headers),
                            ],
                        ),
                        set_headers=tuple(
                            (istr(k), reveal(v)) for k, v in route.set_headers.items()
                        ),
                        base_path=base_path,
                        origin=route.origin,
                        needs_body=any(
                            getattr(s, "needs_body", False)
                            for s in (scheme, *client_schemes.values())
                        ),
                        retries_401=any(
                            type(s).on_unauthorized is not AuthScheme.on_unauthorized
                            for s in (scheme, *client_schemes.values())
                        ),
                        client_schemes=client_schemes,
                    )
                )
        except BaseException:
            self.routes = built
            await self.close()
            raise
        self.routes = built
        self.table = PrefixTable((r.route.prefix, r) for r in built)

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
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
        with contextlib.suppress(Exception):
            await self.admission.close()
        if self.state is not None:
            await self.state.close()


async def _client_schemes(route: Route, context: SchemeContext) -> dict[str, AuthScheme]:
    """One started scheme per ``auth_by_client`` entry of the route."""
    out: dict[str, AuthScheme] = {}
    for client, (cls, options) in route.auth_by_client.items():
        out[client] = cls(options, context)
        await out[client].start()
    return out

"""Per-origin keep-alive pools and the one call the pipeline makes: :meth:`Pool.request`.

A pool holds idle connections to one origin (scheme, host, port, TLS
settings, egress proxy), newest first; a sweeper closes those idle for
``max_idle`` seconds (checked every ``max_idle``, so at most twice that). A new
connection resolves DNS afresh (``create_connection`` calls getaddrinfo), so
a vendor moving addresses is followed without a cache to expire.

Retry: once, only when a *reused* connection closed before a single answer
byte (the upstream dropped an idle keep-alive connection while the request
was on its way) and only when the request may be repeated (idempotent method,
body held in memory). Everything else surfaces as an
:mod:`~proxy.upstream.errors` exception.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass

from proxy.upstream.connection import Informational, UpstreamConnection
from proxy.upstream.egress import EgressProxy, open_tunnel
from proxy.upstream.errors import ConnectFailed, ConnectTimeout, StaleConnection
from proxy.upstream.head import request_head

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

Body = bytes | AsyncIterable[bytes] | None


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str  # "http" | "https"
    host: str
    port: int

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


Opener = Callable[
    [Origin, "ssl.SSLContext | None", Callable[[], UpstreamConnection]], Awaitable[UpstreamConnection]
]


async def open_direct(
    origin: Origin, context: ssl.SSLContext | None, factory: Callable[[], UpstreamConnection]
) -> UpstreamConnection:
    """TCP (and TLS with SNI) straight to the origin; DNS resolved now."""
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(
        factory,
        origin.host,
        origin.port,
        ssl=context,
        server_hostname=origin.host if context is not None else None,
    )
    return conn


def via_proxy(proxy: EgressProxy) -> Opener:
    """An opener through an egress proxy: CONNECT + TLS for https, plain TCP to it for http."""

    async def open_via(
        origin: Origin, context: ssl.SSLContext | None, factory: Callable[[], UpstreamConnection]
    ) -> UpstreamConnection:
        if context is not None:
            _, tunneled = await open_tunnel(
                proxy, origin.host, origin.port, origin.host_header, context, factory
            )
            assert isinstance(tunneled, UpstreamConnection)
            return tunneled
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(factory, proxy.host, proxy.port)
        except OSError as exc:
            reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else exc.strerror
            raise ConnectFailed(f"egress proxy {proxy.host}:{proxy.port}: {reason}") from None
        return conn

    return open_via


class UpstreamResponse:
    """The answer's head plus a pull-based body; give the connection back with release/close."""

    __slots__ = ("_conn", "_done", "_pool", "raw_headers", "raw_reason", "reason", "status", "version")

    def __init__(self, pool: Pool, conn: UpstreamConnection) -> None:
        self._pool = pool
        self._conn = conn
        self._done = False
        self.status = conn.status
        self.raw_reason = conn.reason
        self.reason = conn.reason.decode("latin-1")
        self.version = conn.version
        self.raw_headers = conn.headers

    @property
    def headers(self) -> list[tuple[str, str]]:
        """Names and values as str; bytes round-trip (UTF-8 with surrogateescape)."""
        return [(n.decode("latin-1"), v.decode("utf-8", "surrogateescape")) for n, v in self.raw_headers]

    def header(self, name: str) -> str | None:
        """The first value of one header (case-insensitive), e.g. ``Retry-After``."""
        wanted = name.lower().encode("latin-1")
        for n, v in self.raw_headers:
            if n.lower() == wanted:
                return v.decode("utf-8", "surrogateescape")
        return None

    @property
    def has_length(self) -> bool:
        """The answer carries a Content-Length (else chunked, close-delimited or bodiless)."""
        return self._conn.has_length

    @property
    def trailers(self) -> list[tuple[bytes, bytes]]:
        """A chunked answer's trailer fields, raw; complete once the body was read to the end."""
        return self._conn.trailers

    @property
    def framed(self) -> bool:
        """False when the body ends only when the upstream closes (no length, not chunked)."""
        return self._conn.framed

    @property
    def at_eof(self) -> bool:
        return self._conn.at_eof

    def read_nowait(self) -> bytes:
        return self._conn.read_nowait()

    async def read(self) -> bytes:
        return await self._conn.read()

    def release(self) -> None:
        """Done with the answer: pooled if it ended cleanly, else closed."""
        if not self._done:
            self._done = True
            self._pool._release(self._conn)

    def close(self) -> None:
        """Abandon the answer: the connection is closed, never pooled."""
        if not self._done:
            self._done = True
            self._conn.close()
            self._pool._release(self._conn)


class Pool:
    """Keep-alive connections to one origin."""

    def __init__(
        self,
        origin: Origin,
        context: ssl.SSLContext | None = None,
        *,
        max_idle: float = 30.0,
        proxy: EgressProxy | None = None,
    ) -> None:
        self.origin = origin
        self.context = context
        self.max_idle = max_idle
        self.proxy = proxy
        self._host = origin.host_header
        self._opener: Opener = open_direct if proxy is None else via_proxy(proxy)
        # http through a proxy: absolute-form targets, the proxy's credential in the head
        self._absolute = proxy is not None and context is None
        self._prefix = f"http://{origin.host_header}" if self._absolute else ""
        self._idle: list[UpstreamConnection] = []
        self._active: set[UpstreamConnection] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def idle_count(self) -> int:
        return sum(1 for c in self._idle if not c.closed)

    @property
    def active_count(self) -> int:
        return len(self._active)

    async def request(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: Body = None,
        *,
        length: int | None = None,
        connect_timeout: float,
        read_timeout: float,
        expect_continue: bool = False,
        on_continue: Callable[[], None] | None = None,
        on_informational: Informational | None = None,
    ) -> UpstreamResponse:
        """Send one request and return its answer's head (the body is read from the response).

        ``body`` is bytes, or an async iterable of chunks whose total is
        ``length`` (Content-Length) or unknown (``None``: chunked).
        ``expect_continue`` (a streamed body only) sends ``Expect: 100-continue``
        and holds the body back until the upstream's 100 (see
        :meth:`UpstreamConnection.send`); ``on_informational`` receives the
        upstream's other 1xx answers (status, reason, raw headers).
        """
        if self._absolute:
            target = self._prefix + target
            assert self.proxy is not None
            if self.proxy.authorization:
                headers = [*headers, ("Proxy-Authorization", self.proxy.authorization)]
        streamed = not (body is None or isinstance(body, bytes))
        expect = expect_continue and streamed
        if expect:
            headers = [*headers, ("Expect", "100-continue")]
        if isinstance(body, bytes):
            length = len(body)
        elif body is None:
            length = 0
        head = request_head(method, target, self._host, headers, length, streamed and length is None)
        repeatable = not streamed and method in IDEMPOTENT
        no_body = method == "HEAD"
        retried = False
        while True:
            # a retry always opens a fresh connection: the other idle ones may be as stale
            conn = (None if retried else self._take_idle()) or await self._connect(connect_timeout)
            self._active.add(conn)
            conn.begin(no_body, read_timeout)
            conn.on_informational = on_informational
            try:
                await conn.send(head, body, length, expect=expect, on_continue=on_continue)
                await conn.head()
            except StaleConnection:
                conn.finish()
                self._active.discard(conn)
                if repeatable and not retried:
                    retried = True
                    continue
                raise
            except BaseException:  # cancelled (client gone) included: never pooled
                conn.close()
                conn.finish()
                self._active.discard(conn)
                raise
            return UpstreamResponse(self, conn)

    # ------------------------------------------------------------ internals

    def _take_idle(self) -> UpstreamConnection | None:
        idle = self._idle
        while idle:  # newest first; the sweeper closes those idle past max_idle
            conn = idle.pop()
            if conn.reusable:
                return conn
            conn.close()
        return None

    async def _connect(self, timeout: float) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                return await self._opener(self.origin, self.context, lambda: UpstreamConnection(loop))
        except TimeoutError:
            raise ConnectTimeout(f"connecting to the upstream took longer than {timeout}s") from None
        except socket.gaierror:
            raise ConnectFailed("DNS lookup failed", dns=True) from None
        except ssl.SSLCertVerificationError:
            raise ConnectFailed("TLS certificate verification failed", tls=True) from None
        except ssl.SSLError:
            raise ConnectFailed("TLS handshake failed", tls=True) from None
        except ConnectionRefusedError:
            raise ConnectFailed("connection refused") from None
        except OSError as exc:
            raise ConnectFailed(exc.strerror or type(exc).__name__) from None

    def _release(self, conn: UpstreamConnection) -> None:
        self._active.discard(conn)
        if conn.finish() and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
            if self._sweeper is None:
                self._sweeper = conn.loop.call_later(self.max_idle, self._sweep)
        else:
            conn.close()

    def _sweep(self) -> None:
        self._sweeper = None
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        keep = []
        for conn in self._idle:
            if conn.reusable and now - conn.idle_since < self.max_idle:
                keep.append(conn)
            else:
                conn.close()
        self._idle = keep
        if keep:
            oldest = min(c.idle_since for c in keep)
            self._sweeper = loop.call_later(max(0.05, oldest + self.max_idle - now), self._sweep)

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        conns = [*self._idle, *self._active]
        self._idle.clear()
        for conn in conns:
            conn.close()
        await asyncio.gather(*(c.wait_closed(2.0) for c in conns))

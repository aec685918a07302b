"""CONNECT and absolute-form requests on the proxy listener.

The listener hands every request that is not origin-form here
(:func:`serve`). Without a ``forward_proxy`` block the answer is
the contract's ``400``. With one:

- **absolute-form** ``GET http://host/x``: admitted (auth, host, port, route
  list), then served by the pipeline as the route's request for ``/x``;
- **CONNECT** ``host:port``: admitted the same way and answered ``200``; the
  connection then leaves the HTTP parser (``detach``). For a route host the
  client's TLS is terminated here (``loop.start_tls``, a leaf for that host,
  TLS 1.2+, ALPN ``http/1.1``, a ClientHello naming another host refused) and
  a new :class:`~proxy.server.protocol.ProxyConnection` serves the requests
  inside, each bound to the CONNECT (route by host, client identity). For a
  host of no route with ``other_hosts: tunnel``, the bytes are spliced to
  ``host:port`` untouched.

Every CONNECT writes one request line (route, client, status) like any other
request; a tunnel that cannot start (a handshake refused, plain HTTP where
TLS was due) logs ``tunnel_failed`` with the reason and closes, never a
traceback.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Protocol, cast

from proxy.errors import BadRequest, Forbidden, RequestError
from proxy.forward_proxy.mode import Binding, may_use, reject_without_forward_proxy
from proxy.forward_proxy.splice import splice
from proxy.log import enabled as log_enabled
from proxy.log import get_logger, request_line
from proxy.server.respond import ErrorAnswer, error_answer

if TYPE_CHECKING:
    from proxy.config import Settings
    from proxy.runtime import Runtime
    from proxy.server.protocol import ProxyConnection
    from proxy.server.request import Request

log = get_logger("signet.forward_proxy")

ESTABLISHED = b"HTTP/1.1 200 Connection Established\r\n\r\n"


async def serve(request: Request, conn: ProxyConnection) -> Any:
    """Serve one CONNECT or absolute-form request that arrived on ``conn``."""
    handler = _pipeline(conn)
    runtime = handler.runtime
    started = time.perf_counter()
    if runtime.forward is None:
        error = reject_without_forward_proxy(request.method)
        return _refuse(handler, request, error, None, None, started)
    if conn.forward is not None:  # inside a tunnel: only origin-form requests for its host
        error = BadRequest("inside a CONNECT tunnel, requests use origin-form targets (/path)")
        return _refuse(handler, request, error, None, conn.forward.client, started)
    if request.method == "CONNECT":
        return await _connect(request, conn, started)
    return await _absolute(request, conn, started)


async def _absolute(request: Request, conn: ProxyConnection, started: float) -> Any:
    handler = _pipeline(conn)
    runtime = handler.runtime
    assert runtime.forward is not None
    try:
        binding, _, path_query = runtime.forward.admit_absolute(
            request.raw_path, request.headers, runtime.clients, request.peer
        )
    except RequestError as exc:
        return _refuse(handler, request, exc, exc.route, None, started)
    request.raw_path = path_query  # the pipeline sees the upstream-relative target
    request.forward = binding  # its route, and the client already authenticated
    return await handler(request)


async def _connect(request: Request, conn: ProxyConnection, started: float) -> Any:
    handler = _pipeline(conn)
    runtime = handler.runtime
    forward = runtime.forward
    assert forward is not None
    try:
        admitted = forward.admit_connect(
            request.raw_path, request.headers, runtime.clients, request.peer
        )
    except RequestError as exc:
        return _refuse(handler, request, exc, exc.route, None, started)
    binding = admitted.binding
    route, client = admitted.route, binding.client
    if route is not None and client is not None and not may_use(runtime.clients, client, route):
        runtime.admission.denied(route, client)  # counted with the other policy refusals
        denied = Forbidden(f"client {client!r} may not use route {route!r}", route=route)
        return _refuse(handler, request, denied, route, client, started)
    if route is not None and conn.transport is not None and conn.transport.get_extra_info("sslcontext"):
        # the event loop cannot layer the client's TLS over this TLS connection (listen_tls)
        refused = BadRequest(
            "forward-proxy interception needs a plain-HTTP listener (CONNECT over listen_tls)",
            route=route,
        )
        return _refuse(handler, request, refused, route, client, started)
    # methods, paths and rate limits are checked per request inside the tunnel
    transport, leftover = conn.detach()
    transport.write(ESTABLISHED)
    handler.count(route or "-", 200, client or "-")
    _request_line(request, route, client, 200, started, _request_id(), None)
    if leftover:
        # the client sent its first TLS bytes before our 200: start_tls cannot take them back
        _failed(binding, route, "the client sent data before the CONNECT was answered")
        transport.close()
        return None
    if route is None:
        await _blind(transport, binding, runtime.settings)
    else:
        await _intercept(transport, binding, route, conn)
    return None


async def _intercept(
    transport: asyncio.Transport, binding: Binding, route: str, conn: ProxyConnection
) -> None:
    from proxy.server.protocol import ProxyConnection  # the listener imports this module

    handler = _pipeline(conn)
    forward = handler.runtime.forward
    assert forward is not None
    try:
        context = forward.leaves.context_for(binding.host)
    except Exception as exc:  # a leaf that cannot be minted must not leave a client hanging
        _failed(binding, route, f"cannot mint a certificate ({type(exc).__name__})")
        transport.abort()
        return
    inner = ProxyConnection(handler, conn.limits, conn.connections, forward=binding)
    try:
        tls = await asyncio.get_running_loop().start_tls(
            transport,
            inner,
            context,
            server_side=True,
            ssl_handshake_timeout=conn.limits.request_header_timeout,
        )
    except TypeError:  # the event loop cannot layer TLS over TLS (a listen_tls connection)
        _failed(binding, route, "intercepting a CONNECT made over listen_tls is not supported")
        transport.abort()
        return
    except (ssl.SSLError, ConnectionError, TimeoutError, OSError) as exc:
        _failed(binding, route, _handshake_reason(exc))
        transport.abort()
        return
    if tls is None:
        _failed(binding, route, "the client closed the tunnel during the TLS handshake")
        return
    inner.connection_made(tls)


async def _blind(transport: asyncio.Transport, binding: Binding, settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    connect = settings.routes[0].timeout.connect if settings.routes else 5.0
    port = binding.port or 443  # a CONNECT always names its port
    try:
        upstream, _ = await asyncio.wait_for(
            loop.create_connection(asyncio.Protocol, binding.host, port), connect
        )
    except (OSError, TimeoutError) as exc:
        _failed(binding, None, f"cannot reach {binding.host}:{binding.port} ({type(exc).__name__})")
        transport.close()
        return
    sent, received, timed_out = await splice(
        transport, upstream, idle_timeout=settings.limits.keepalive_timeout
    )
    log.info(
        "tunnel_closed",
        host=binding.host,
        port=binding.port,
        client=binding.client or "-",
        bytes_in=sent,
        bytes_out=received,
        idle_timeout=timed_out,
    )


class Pipeline(Protocol):
    """What this module needs of the listener's handler (:class:`proxy.forward.ProxyHandler`)."""

    runtime: Runtime

    def count(self, route: str, status: int, client: str) -> None: ...

    def __call__(self, request: Request) -> Awaitable[Any]: ...


def _pipeline(conn: ProxyConnection) -> Pipeline:
    return cast(Pipeline, conn.handler)


def _refuse(
    handler: Pipeline,
    request: Request,
    exc: RequestError,
    route: str | None,
    client: str | None,
    started: float,
) -> ErrorAnswer:
    rid = _request_id()
    handler.count(route or "-", exc.status, client or "-")
    _request_line(request, route, client, exc.status, started, rid, exc)
    return error_answer(exc, rid, close=True)


def _request_line(
    request: Request,
    route: str | None,
    client: str | None,
    status: int,
    started: float,
    rid: str,
    exc: RequestError | None,
) -> None:
    level = logging.INFO
    if not log_enabled(level):
        return
    target = request.raw_path if request.method == "CONNECT" else request.raw_path.partition("?")[0]
    fields: dict[str, Any] = {
        "event": "request",
        "route": route,
        "method": request.method,
        # a target that is not UTF-8 holds lone surrogates: shown escaped, never an encoding error
        "path": target[:512].encode("utf-8", "backslashreplace").decode("utf-8"),
        "status": status,
        "upstream_status": None,
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        "upstream_ms": None,
        "bytes_in": 0,
        "bytes_out": 0,
        "request_id": rid,
        "client": client or "-",
    }
    if exc is not None:
        fields["error"] = exc.code
        fields["message"] = exc.message
    request_line(level, fields)


def _failed(binding: Binding, route: str | None, reason: str) -> None:
    log.info(
        "tunnel_failed",
        route=route,
        host=binding.host,
        port=binding.port,
        client=binding.client or "-",
        message=reason,
    )


def _handshake_reason(exc: BaseException) -> str:
    """Why the client's TLS did not start, in words (never the client's bytes)."""
    if isinstance(exc, TimeoutError):
        return "the client did not complete the TLS handshake in time"
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or "").upper()
        if reason == "HTTP_REQUEST":
            return "the client sent plain HTTP inside the tunnel (it must start TLS after CONNECT)"
        if "SERVERNAME" in reason or "UNRECOGNIZED_NAME" in reason or "CALLBACK" in reason:
            return "the TLS ClientHello names another host than the CONNECT (SNI mismatch)"
        if "VERSION" in reason or "PROTOCOL" in reason:
            return "the client offered no TLS version Signet accepts (TLS 1.2 or newer)"
        return f"TLS handshake failed ({exc.reason or type(exc).__name__})"
    return f"the client left during the TLS handshake ({type(exc).__name__})"


def _request_id() -> str:
    return f"{random.getrandbits(128):032x}"

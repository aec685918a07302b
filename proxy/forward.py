"""The request pipeline: check -> authenticate client -> route -> strip -> sign -> send -> stream.

One :class:`ProxyHandler` serves every proxied request. It reads the current
:class:`~proxy.runtime.Runtime` once per request, so a reload swaps routes
atomically without touching requests already running.

Byte exactness: the path and query are taken from ``request.raw_path`` (the
target exactly as the client sent it) and sent upstream as they are, so
``%2F`` stays ``%2F`` and the query keeps its order; a scheme signs exactly
those strings. Request bodies are never decoded (``Content-Encoding`` is the
client's business): what is signed is what is sent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from multidict import istr

from proxy.auth import AuthScheme, UpstreamRequest, aws_firewall
from proxy.body import BodySpooler, SignedBody
from proxy.errors import (
    BadRequest,
    BodyTimeout,
    BodyTooLarge,
    Forbidden,
    NoRoute,
    Overloaded,
    RequestError,
    SpoolFailed,
)
from proxy.exchange import Exchange, prepare
from proxy.headers import upstream_headers
from proxy.identity import identify
from proxy.log import enabled as log_enabled
from proxy.log import request_line
from proxy.metrics import Metrics, status_class
from proxy.neterrors import mid_body_failure, upstream_failure
from proxy.routes import check_request_target
from proxy.runtime import RouteRuntime, Runtime
from proxy.server.gate import upgrade_refusal
from proxy.server.request import ClientGone, Request
from proxy.server.respond import ErrorAnswer, Responder, error_answer
from proxy.tunnel import Tunnels, splice
from proxy.uploads import BodyReader, UploadSlot
from proxy.upstream import RequestBodyFailed, UpstreamError, UpstreamResponse
from proxy.websocket import handshake_headers, switching_head

X_REQUEST_ID = istr("X-Request-Id")
X_SIGNET_TOKEN = istr("X-Signet-Token")
PROXY_AUTHORIZATION = istr("Proxy-Authorization")


class _BodyStalled(BadRequest):
    """The client stopped sending its body: answered 400 and the connection closed."""


class _ClientBodyError(Exception):
    """Raised into the upstream upload when the client's body stalls."""


class _Aborted(Exception):
    """The response was cut after it started: the client sees a truncated body."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class ProxyHandler:
    """The pipeline the proxy listener (:mod:`proxy.server`) runs for each request."""

    def __init__(self, runtime: Runtime, metrics: Metrics, body_read_timeout: float = 60.0) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.body_read_timeout = body_read_timeout
        self._counters: dict[tuple[str, str, str], Any] = {}
        self.tunnels = Tunnels()  # WebSocket tunnels: drained by Signet.stop, not by the listener

    # ------------------------------------------------------------------ entry

    async def __call__(self, request: Request) -> ErrorAnswer | Responder:
        started = time.perf_counter()
        runtime = self.runtime
        runtime.acquire()
        rid = _request_id(request.headers.get(X_REQUEST_ID))
        info = Exchange()
        route: RouteRuntime | None = None
        status = 500
        try:
            try:
                path, query = check_request_target(request.method, request.raw_path)
                if request.forward is None:
                    client = self._authenticate(runtime, request)
                    info.client = client
                    matched = runtime.table.match(path)
                    if matched is None:
                        raise NoRoute(f"no route matches {_clip(path)}")
                    route, rest = matched
                else:  # forward-proxy mode: the route of the host the client named, the path as it is
                    client = info.client = request.forward.client
                    route, rest = runtime.forward_route(request.forward), path
                info.route = route.name
                refusal = upgrade_refusal(request, route.name, route.route.websocket)
                if refusal is not None:
                    raise refusal
                if client is not None and not self._client_may_use(runtime, client, route.name):
                    runtime.admission.denied(route.name, client)
                    raise Forbidden(
                        f"client {client!r} may not use route {route.name!r}", route=route.name
                    )
                # SigV4 firewall hook: client x-amz-* headers and `operations:` rules (403)
                aws_firewall.check_request(
                    runtime.admission, route, client, request.method, rest, query, request.headers
                )
                # rules: headers and query for method overrides (proxy.policy.method_overrides)
                await runtime.admission.admit(
                    client, route.name, request.method, rest, headers=request.headers.items(), query=query
                )
                if route.in_flight >= route.route.max_in_flight:
                    self.metrics.overloaded.labels(route.name).inc()
                    raise Overloaded(
                        f"route {route.name!r} has {route.route.max_in_flight} requests in flight",
                        route=route.name,
                    )
                route.in_flight += 1
                gauge = self._gauge(route)
                gauge.inc()
                try:
                    response = await self._forward(request, route, rest, query, rid, info)
                finally:
                    route.in_flight -= 1
                    gauge.dec()
                status = response.status
                return response
            except RequestError as exc:
                if exc.route is None and route is not None:
                    exc.route = route.name
                status = exc.status
                info.fail(exc.code, exc.message)
                # the client's body was left half-read: close rather than read it on
                # and after a malformed request (400), nothing more is read from that client
                close = isinstance(exc, BodyTooLarge | BadRequest | SpoolFailed | BodyTimeout)
                close = close or request.upgrade
                close = close or (info.upload is not None and info.body is None)  # limits: half-read
                return error_response(exc, rid, close=close)
            except _Aborted as exc:
                status = info.status_sent or 502
                info.fail(exc.code, exc.reason)
                response = info.response
                assert isinstance(response, Responder)
                return response
        except asyncio.CancelledError:
            info.fail("client_disconnected", "client disconnected before the response was complete")
            status = info.status_sent or 499
            raise
        finally:
            if info.upload is not None:
                info.upload.leave()  # limits: the client's buffering slot, however it ended
            if info.body is not None:
                info.body.close()  # a spooled body's file goes, however the request ended
            runtime.release()
            self._count(info.route or "-", status, info.client or "-")
            level = logging.WARNING if status >= 500 else logging.INFO
            if log_enabled(level):
                self._log(request, info, status, started, rid, level)

    @staticmethod
    def _log(
        request: Request,
        info: Exchange,
        status: int,
        started: float,
        rid: str,
        level: int,
    ) -> None:
        """The request line: one dict in the contract's field order, rendered by log.request_line."""
        fields = {
            "event": "request",
            "route": info.route,
            "method": request.method,
            "path": _clip(request.raw_path.partition("?")[0]),
            "status": status,
            "upstream_status": info.upstream_status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            "upstream_ms": info.upstream_ms,
            "bytes_in": info.bytes_in,
            "bytes_out": info.bytes_out,
            "request_id": rid,
            "client": info.client or "-",  # as the metric label: "-" when there is no client
        }
        if info.error is not None:
            fields["error"] = info.error
            fields["message"] = info.message
        request_line(level, fields)

    # ------------------------------------------------------- inbound clients

    @staticmethod
    def _authenticate(runtime: Runtime, request: Request) -> str | None:
        clients = runtime.clients
        if clients is None:
            return None
        presented = None
        value = request.headers.get(PROXY_AUTHORIZATION)
        if value is not None:
            kind, _, token = value.strip().partition(" ")
            if kind.lower() == "bearer":
                presented = token.strip()
        if presented is None:
            presented = request.headers.get(X_SIGNET_TOKEN)
        # header values are decoded as UTF-8 with surrogateescape: a token with
        # bytes that are not UTF-8 can match no client, so it is an unknown token
        given = presented.encode("utf-8", "surrogateescape") if presented else None
        return identify(clients, given, request.peer)

    @staticmethod
    def _client_may_use(runtime: Runtime, client: str, route: str) -> bool:
        for c in runtime.clients or ():
            if c.name == client:
                return c.routes is None or route in c.routes
        return False

    # ------------------------------------------------------------ forwarding

    async def _forward(
        self,
        request: Request,
        route: RouteRuntime,
        rest: str,
        query: str,
        rid: str,
        info: Exchange,
    ) -> Responder:
        client_info = None
        if route.route.forward_client_info:
            client_info = (request.remote or "", request.scheme)
        headers = upstream_headers(request.headers, route, rid, client_info)
        scheme = route.scheme_for(info.client)

        out = _responder(request)
        upgrade = request.upgrade  # past the gate: a WebSocket handshake on a websocket route
        if upgrade:
            for name, value in handshake_headers(request.raw_headers):
                headers.add(name, value)  # hop-by-hop, so stripped above: signed and sent for this case
            out.close = True  # any answer but a 101 ends the connection (its parser stopped)
        buffered = route.needs_body or route.retries_401
        has_body = request.body_exists
        # Expect: 100-continue, asked now that auth, policy and limits admitted the request:
        # a body read whole (to sign it) is asked for by Signet; a streamed one goes on to the
        # upstream with the same expectation, so its early refusal arrives before the upload
        expect = has_body and request.expect_continue and request.http11
        if buffered:
            _check_declared_length(request, route)  # before 100-continue: refuse unsent bodies
        upload = None
        if buffered and has_body:  # limits: a buffering slot (limits.client_uploads)
            upload = info.upload = self.runtime.admission.upload_slot(
                info.client, request.remote, route.name
            )
        if buffered and expect:
            if upload is not None:
                upload.enter()  # limits: the client waits for our 100: count it (or 429) now
            out.send_continue()
            expect = False

        body: SignedBody | None = None
        stream = None
        if buffered:
            if has_body:
                head = UpstreamRequest(
                    request.method,
                    route.upstream_path(rest),
                    query,
                    headers,
                    scheme_host=route.origin,
                )
                body = await self._read_body(request, route, scheme, head, upload)
            else:
                body = SignedBody.from_bytes(b"")
            info.bytes_in = body.size
            info.body = body  # closed by __call__
        elif has_body:
            stream = _count_body(request, self.body_read_timeout, info)
        # SigV4 firewall hook: a Query API's Action in a form body (None: streamed, unreadable)
        aws_firewall.check_form_body(
            self.runtime.admission, route, info.client, request.method, rest, query, headers, body
        )

        length = request.content_length if stream is not None else None
        if body is not None:
            length = body.size
        raw_path = rest + "?" + query if query else rest
        attempt = 0
        while True:
            attempt += 1
            prepared = await prepare(route, request.method, raw_path, headers, body, scheme=scheme)
            t0 = time.perf_counter()
            try:
                upstream = await route.pool.request(
                    request.method,
                    prepared.target,
                    headers.items(),
                    body.payload() if body is not None else stream,
                    length=length,
                    connect_timeout=route.connect_timeout,
                    read_timeout=route.read_timeout,
                    expect_continue=expect,
                    on_continue=out.send_continue,
                    on_informational=out.informational,
                    upgrade=upgrade,
                )
            except RequestBodyFailed:
                # the client's side failed: its body stalled, or it went away mid-upload
                if info.body_stalled:
                    raise _client_timeout(route) from None
                raise _BodyStalled(
                    "the request body could not be read (client disconnected?)", route=route.name
                ) from None
            except UpstreamError as exc:
                url = route.route.upstream
                raise upstream_failure(
                    exc,
                    route=route.name,
                    host=url.host or "",
                    port=url.port,
                    read_timeout=route.read_timeout,
                ) from None
            upstream_ms = (time.perf_counter() - t0) * 1000
            info.upstream_ms = round(upstream_ms, 3)
            info.upstream_status = upstream.status
            if upstream.status == 429:  # the vendor's quota: pause the route (in the current runtime)
                await self.runtime.admission.vendor_429(  # limits: pauses the credential used
                    route.name, info.client, upstream.header("Retry-After")
                )
            self._latency(route).observe(upstream_ms / 1000)
            if (
                upstream.status == 401
                and attempt == 1
                and route.retries_401
                and body is not None
                and await scheme.on_unauthorized(prepared.result)
                and await self.runtime.admission.retry_401(info.client, route.name)  # limits
            ):
                upstream.close()
                continue
            if upstream.status == 101:
                return await self._tunnel(request, upstream, route, rid, info)
            return await self._stream_back(request, upstream, route, rid, info)

    async def _tunnel(
        self,
        request: Request,
        upstream: UpstreamResponse,
        route: RouteRuntime,
        rid: str,
        info: Exchange,
    ) -> Responder:
        """After the upstream's 101: relay its head, then carry bytes both ways until both close.

        The request's log line is written when the tunnel ends (bytes each way,
        its lifetime as duration); the route's read timeout is its idle timeout.
        """
        out = _responder(request)
        assert request.detach is not None
        head = switching_head(upstream.raw_reason, upstream.raw_headers, rid)
        up_transport, up_leftover = upstream.detach()
        client_transport, client_leftover = request.detach()
        info.status_sent = 101
        info.response = out
        try:
            out.switched(head)
        except ConnectionError:
            up_transport.abort()
            raise _Aborted("client_disconnected", "client disconnected before the 101 was relayed") from None
        result = await splice(
            client_transport,
            up_transport,
            idle_timeout=route.read_timeout,
            client_leftover=client_leftover,
            upstream_leftover=up_leftover,
            tunnels=self.tunnels,
        )
        info.bytes_in, info.bytes_out = result.bytes_in, result.bytes_out
        if result.outcome == "idle_timeout":
            info.fail("idle_timeout", f"no byte either way for {route.read_timeout:g}s: tunnel closed")
        elif result.outcome == "reset":
            info.fail("tunnel_reset", "a side of the tunnel reset its connection")
        elif result.outcome == "shutdown":
            info.fail("shutdown", "Signet stopped: the tunnel was closed after shutdown_grace")
        return out

    async def _read_body(
        self,
        request: Request,
        route: RouteRuntime,
        scheme: AuthScheme,
        head: UpstreamRequest,
        upload: UploadSlot | None = None,
    ) -> SignedBody:
        """Read a body that must be signed whole: memory up to spool_bytes, a private file beyond.

        ``head`` is the upstream request without its body: a scheme whose message
        starts with what it holds hashes the body as it arrives. Refuses at
        ``max_body_bytes`` without reading on; the spool is discarded on every
        way out but success (then ``__call__`` closes the body). ``upload`` (the
        client's buffering slot, proxy.uploads) sets the minimum rate and the
        memory budget, and is left once the body is read.
        """
        limit = route.route.max_body_bytes
        spooler = BodySpooler(
            route.route.spool_bytes,
            route.route.spool_dir,
            scheme.body_digests,
            scheme.body_prefix(head) if scheme.needs_body else None,
            memory=upload.memory if upload is not None else None,  # limits.body_memory
        )
        read = (  # limits: silence and limits.min_upload_rate (408), the slot on first wait (429)
            upload.reader(request.read, request.read_nowait, request.at_eof)
            if upload is not None
            else BodyReader(
                request.read, silence=self.body_read_timeout, min_rate=0, grace=0, route=route.name
            )
        )
        try:
            while True:
                try:
                    chunk = await read()
                except ClientGone:
                    raise _BodyStalled(
                        "the request body could not be read (client disconnected?)", route=route.name
                    ) from None
                if not chunk:
                    break
                if spooler.size + len(chunk) > limit:
                    raise BodyTooLarge(
                        f"request body exceeds max_body_bytes={limit} for this route",
                        route=route.name,
                    )
                await spooler.feed(chunk)
            return await spooler.finish()
        except BaseException:
            spooler.discard()
            raise
        finally:
            if upload is not None:
                upload.leave()  # limits: buffered, the slot is free

    async def _stream_back(
        self,
        request: Request,
        upstream: UpstreamResponse,
        route: RouteRuntime,
        rid: str,
        info: Exchange,
    ) -> Responder:
        try:
            out = _responder(request)
            # the upstream's status line and headers in its own bytes, minus hop-by-hop ones
            out.start(
                upstream.status,
                upstream.raw_reason,
                upstream.raw_headers,
                rid,
                framed_by_length=upstream.has_length,
            )
            info.status_sent = upstream.status
            info.response = out
            written = 0
            try:
                chunk = upstream.read_nowait()  # what arrived with the upstream's head
                if not chunk and not upstream.at_eof:
                    out.flush()  # nothing yet: send the head now, never hold it
                    chunk = await upstream.read()
                while chunk:
                    try:
                        await out.write(chunk)  # waits while the client is slow
                    except ConnectionError:
                        raise _Aborted(
                            "client_disconnected", "client disconnected mid-response"
                        ) from None
                    written += len(chunk)
                    info.bytes_out = written  # kept current: every way out logs it
                    chunk = await upstream.read()
            except UpstreamError as exc:
                out.abort()  # the client must see a truncated response, not a complete one
                raise _Aborted(*mid_body_failure(exc, route.read_timeout)) from None
            try:
                out.finish(upstream.trailers)  # trailers stay trailers (chunked HTTP/1.1 only)
            except ConnectionError:
                raise _Aborted("client_disconnected", "client disconnected mid-response") from None
            return out
        finally:
            if upstream.at_eof:
                upstream.release()  # back to the pool for keep-alive, if it ended cleanly
            else:
                upstream.close()  # half-read: the connection cannot be reused

    # --------------------------------------------------------------- metrics

    def count(self, route: str, status: int, client: str) -> None:
        """One request in ``signet_requests_total`` (also for CONNECTs, answered by the listener)."""
        self._count(route, status, client)

    def _count(self, route: str, status: int, client: str) -> None:
        key = (route, status_class(status), client)
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = self.metrics.requests.labels(*key)
        child.inc()

    def _gauge(self, route: RouteRuntime) -> Any:
        child = route.metric_children.get("gauge")
        if child is None:
            child = route.metric_children["gauge"] = self.metrics.in_flight.labels(route.name)
        return child

    def _latency(self, route: RouteRuntime) -> Any:
        child = route.metric_children.get("latency")
        if child is None:
            child = route.metric_children["latency"] = self.metrics.upstream_latency.labels(
                route.name
            )
        return child


# ------------------------------------------------------------------- helpers


def error_response(exc: RequestError, rid: str, *, close: bool = False) -> ErrorAnswer:
    """The contract's JSON error (written by the listener, HTTP/1.1, ``Server: Signet``)."""
    return error_answer(exc, rid, close=close)


def _responder(request: Request) -> Responder:
    out = request.responder
    assert out is not None, "the listener gives every request its responder"
    return out


def _request_id(given: str | None) -> str:
    """Keep the client's id when it is sane (printable, bounded), else mint one."""
    if given and len(given) <= 200 and given.isascii() and given.isprintable():
        return given
    # 32 hex like uuid4().hex, without a getrandom syscall and a UUID object per request
    # (random reseeds itself in a forked child, so workers never share a sequence)
    return f"{random.getrandbits(128):032x}"


def _clip(text: str, limit: int = 512) -> str:
    if not text.isascii():  # bytes that are not UTF-8 (kept as surrogates) are shown escaped
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text if len(text) <= limit else text[:limit] + "..."


async def _count_body(
    request: Request, read_timeout: float, info: Exchange
) -> AsyncIterator[bytes]:
    """Stream the client's body upstream, counting bytes, with a per-read timeout (slowloris)."""
    total = 0
    while True:
        try:
            chunk = await asyncio.wait_for(request.read(), read_timeout)
        except TimeoutError:
            info.body_stalled = True
            raise _ClientBodyError("client body stalled") from None
        if not chunk:
            break
        total += len(chunk)
        info.bytes_in = total
        yield chunk


def _check_declared_length(request: Request, route: RouteRuntime) -> None:
    limit = route.route.max_body_bytes
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyTooLarge(
            f"request body of {declared} bytes exceeds max_body_bytes={limit} for this route",
            route=route.name,
        )


def _client_timeout(route: RouteRuntime) -> RequestError:
    return BodyTimeout(
        "the request body stalled (no byte within limits.body_read_timeout)", route=route.name
    )

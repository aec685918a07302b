"""The proxy listener's connection protocol: aiohttp's, plus two things it lacks.

1. A request-header timeout (``limits.request_header_timeout``). aiohttp
   bounds an idle keep-alive connection but not a client that trickles its
   request line and headers one byte at a time (slowloris). Each connection
   gets a deadline when it opens and again when the first byte of a later
   request arrives; it is cleared once the parser has a complete request head.
   A connection still without a complete head at the deadline is closed and a
   ``client_timeout`` line is logged. Body bytes never arm it (the body has its
   own ``limits.body_read_timeout``).
2. Malformed requests (bad request line, NUL/CR/LF where they are not allowed,
   a request line or header over the limits, too many headers, a request line
   without a version, which aiohttp would take as HTTP/0.9) are answered
   with the contract's JSON ``400 bad_request`` and the connection is closed.
   aiohttp's own answer is text that echoes the offending bytes back (a header
   value may be a credential); this one names only the kind of problem, and a
   ``request`` log line says what happened.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp import HttpVersion10, http_exceptions, web
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestHandler, _ErrInfo

from proxy.errors import BadRequest, RequestError
from proxy.log import get_logger

log = get_logger("signet.request")


class _Http09(http_exceptions.BadHttpMessage):
    """A request line without a version: aiohttp would take it as HTTP/0.9."""


def _describe(exc: BaseException | None) -> str:
    """What was wrong, in words that never quote the client's bytes."""
    if isinstance(exc, _Http09):
        return "malformed request line: no HTTP version (HTTP/0.9 is not supported)"
    if isinstance(exc, http_exceptions.LineTooLong):
        return "request line or a header is longer than the configured limit"
    if isinstance(exc, http_exceptions.BadHttpMethod):
        return "malformed request: invalid method"
    if isinstance(exc, http_exceptions.InvalidURLError):
        return "malformed request: invalid request target"
    if isinstance(exc, http_exceptions.BadStatusLine):
        return "malformed request line"
    if isinstance(exc, http_exceptions.InvalidHeader):
        return "malformed request header"
    if isinstance(exc, http_exceptions.TransferEncodingError | http_exceptions.ContentLengthError):
        return "malformed request body framing"
    if isinstance(exc, http_exceptions.BadHttpMessage):
        if "many headers" in (exc.message or "").lower():
            return "too many request headers"
        return "malformed request"
    return "malformed request"


class SignetRequestHandler(RequestHandler):
    """One client connection (see the module docstring)."""

    def __init__(self, manager: Any, *, request_header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = request_header_timeout
        self._header_handle: asyncio.TimerHandle | None = None
        self._last_payload: Any = None  # payload of the last request head parsed

    # ----------------------------------------------------------- header timer

    def _arm_header_timer(self) -> None:
        if self._header_handle is None and self._header_timeout > 0:
            self._header_handle = self._loop.call_later(self._header_timeout, self._header_timed_out)

    def _disarm_header_timer(self) -> None:
        if self._header_handle is not None:
            self._header_handle.cancel()
            self._header_handle = None

    def _header_timed_out(self) -> None:
        self._header_handle = None
        if self.transport is None or self._force_close:
            return
        peer = self.transport.get_extra_info("peername")
        log.info(
            "client_timeout",
            error="request_header_timeout",
            message=f"client did not send complete request headers within "
            f"{self._header_timeout:g}s (limits.request_header_timeout); connection closed",
            peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else None,
        )
        self.force_close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_header_timer()
        self._last_payload = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        before = self._request_count
        payload = self._last_payload
        in_body = payload is not None and not payload.is_eof()
        super().data_received(data)
        parsed = self._request_count - before
        if parsed:
            self._disarm_header_timer()
            queue = self._messages
            for i in range(max(0, len(queue) - parsed), len(queue)):
                msg = queue[i][0]
                if isinstance(msg, RawRequestMessage) and msg.version < HttpVersion10:
                    exc = _Http09("HTTP/0.9")
                    queue[i] = (_ErrInfo(status=400, exc=exc, message=exc.message), EMPTY_PAYLOAD)
            self._last_payload = self._messages[-1][1] if self._messages else None
        elif data and not in_body and not self._upgraded and self._payload_parser is None:
            self._arm_header_timer()  # first bytes of a (further) request head

    # --------------------------------------------------------- error answers

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status != 400:
            return super().handle_error(request, status, exc, message)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot answer 400")
        from proxy.forward import error_response  # late: forward imports the runtime

        error: RequestError = BadRequest(_describe(exc))
        rid = uuid.uuid4().hex
        log.info(
            "request",
            route=None,
            method=None,
            path=None,
            status=400,
            upstream_status=None,
            duration_ms=0.0,
            upstream_ms=None,
            bytes_in=0,
            bytes_out=0,
            request_id=rid,
            client=None,
            error=error.code,
            message=error.message,
        )
        return error_response(error, rid, close=True)


class SignetServer(web.Server):
    """``web.Server`` whose connections are :class:`SignetRequestHandler`."""

    def __init__(self, handler: Any, *, request_header_timeout: float, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._request_header_timeout = request_header_timeout

    def __call__(self) -> RequestHandler:
        return SignetRequestHandler(
            self,
            loop=self._loop,
            request_header_timeout=self._request_header_timeout,
            **self._kwargs,
        )

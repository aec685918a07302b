"""Writing answers to the client: relayed responses and Signet's own JSON errors.

A relayed response keeps the upstream's status line reason, header names,
values and order byte for byte, minus hop-by-hop headers
(:func:`proxy.headers.relayed_header_lines`), plus ``X-Request-Id``. Signet
then frames the body for this client itself:

- no body for HEAD, 1xx, 204 and 304 (the upstream's ``Content-Length`` of a
  HEAD or 304 still describes the resource, so it stays);
- the upstream's ``Content-Length`` when it sent one;
- otherwise chunked for HTTP/1.1 (with the upstream's trailers as trailers),
  and for HTTP/1.0 a body that ends when the connection closes.

The head waits to leave in the same write as the first body bytes; the relay
flushes it at once when none are waiting, so a slow body never holds the
status line back. Signet's own answers are HTTP/1.1 with ``Server: Signet``.
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import TYPE_CHECKING

from proxy.headers import SERVER_NAME, relayed_header_lines

if TYPE_CHECKING:
    from proxy.errors import RequestError
    from proxy.server.flow import FlowControl
    from proxy.server.request import Request

_REQUEST_ID_KEY = frozenset({b"x-request-id"})
_NO_BODY_STATUS = frozenset({204, 304})
_LAST_CHUNK = b"0\r\n\r\n"


def reason_phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


class ErrorAnswer:
    """One of Signet's own answers, complete; written by :meth:`Responder.answer`."""

    __slots__ = ("body", "close", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes, close: bool) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.close = close


def error_answer(exc: RequestError, rid: str, *, close: bool = False) -> ErrorAnswer:
    """The contract's JSON error for ``exc`` (no secret: messages are built from names)."""
    body = json.dumps(
        {"error": {"code": exc.code, "message": exc.message, "route": exc.route, "request_id": rid}}
    ).encode()
    headers = [
        ("Content-Type", "application/json; charset=utf-8"),
        ("X-Signet-Error", exc.code),
        ("X-Request-Id", rid),
        ("Server", SERVER_NAME),
        *exc.headers.items(),
    ]
    if exc.status == 407:  # RFC 9110 §11.7.1: a 407 names its scheme
        headers.append(("Proxy-Authenticate", 'Bearer realm="signet"'))
    return ErrorAnswer(exc.status, headers, body, close)


class Responder:
    """The answer to one request, written once, in order, onto the connection."""

    __slots__ = (
        "_chunked",
        "_continued",
        "_flow",
        "_no_body",
        "_pending",
        "_request",
        "_transport",
        "bytes_written",
        "close",
        "started",
        "status",
    )

    def __init__(self, transport: asyncio.Transport, flow: FlowControl, request: Request) -> None:
        self._transport = transport
        self._flow = flow
        self._request = request
        self._pending = b""  # the head, until the first body bytes (or a flush)
        self._chunked = False
        self._no_body = False
        self._continued = False
        self.started = False  # a final head was produced: no other answer is possible
        self.close = not request.keep_alive  # close the connection after this answer
        self.status = 0
        self.bytes_written = 0

    # ------------------------------------------------------ interim answers

    def send_continue(self) -> None:
        """``100 Continue``, once, to an HTTP/1.1 client that asked for it."""
        request = self._request
        if request.expect_continue and request.http11 and not self._continued and not self.started:
            self._continued = True
            self._write(b"HTTP/1.1 100 Continue\r\n\r\n")

    @property
    def continued(self) -> bool:
        return self._continued

    def informational(self, status: int, reason: bytes, raw_headers: list[tuple[bytes, bytes]]) -> None:
        """Relay an upstream 1xx (103 Early Hints...) to an HTTP/1.1 client; 100 and 101 never."""
        if status in (100, 101) or not self._request.http11 or self.started:
            return
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        for name, value in relayed_header_lines(raw_headers):
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        self._write(b"".join(parts))

    # ------------------------------------------------------- relayed answer

    def start(
        self,
        status: int,
        reason: bytes,
        raw_headers: list[tuple[bytes, bytes]],
        rid: str,
        *,
        framed_by_length: bool,
    ) -> None:
        """Prepare the head of a relayed answer (sent with the first body bytes)."""
        request = self._request
        self.started = True
        self.status = status
        self._no_body = request.method == "HEAD" or status in _NO_BODY_STATUS or status < 200
        # a relayed answer speaks the client's version (HTTP/1.0 clients get an HTTP/1.0 line)
        line = b"HTTP/1.1 %d %s\r\n" if request.http11 else b"HTTP/1.0 %d %s\r\n"
        parts = [line % (status, reason)]
        for name, value in relayed_header_lines(raw_headers, _REQUEST_ID_KEY):
            parts += (name, b": ", value, b"\r\n")
        parts += (b"X-Request-Id: ", rid.encode("latin-1"), b"\r\n")
        if not self._no_body and not framed_by_length:
            if request.http11:
                self._chunked = True
                parts.append(b"Transfer-Encoding: chunked\r\n")
            else:
                self.close = True  # HTTP/1.0 sees the end of a length-less body by the close
        parts.append(self._connection_line())
        self._pending = b"".join(parts)

    def flush(self) -> None:
        """Send the head now if it is still held back."""
        if self._pending:
            data, self._pending = self._pending, b""
            self._write(data)

    async def write(self, chunk: bytes) -> None:
        """One body chunk (framed for this client); waits while the client is slow."""
        if self._no_body or not chunk:
            return
        self.bytes_written += len(chunk)
        if self._chunked:
            chunk = b"%x\r\n%b\r\n" % (len(chunk), chunk)
        if self._pending:
            chunk, self._pending = self._pending + chunk, b""
        self._write(chunk)
        if self._flow.write_paused:
            await self._flow.drain()

    def finish(self, trailers: list[tuple[bytes, bytes]] | None = None) -> None:
        """The end of the body: the last chunk (with trailers) for a chunked answer."""
        end = b""
        if self._chunked:
            if trailers:
                parts = [b"0\r\n"]
                for name, value in relayed_header_lines(trailers):
                    parts += (name, b": ", value, b"\r\n")
                parts.append(b"\r\n")
                end = b"".join(parts)
            else:
                end = _LAST_CHUNK
        if self._pending:
            end, self._pending = self._pending + end, b""
        if end:
            self._write(end)

    # ----------------------------------------------------- Signet's answer

    def answer(self, answer: ErrorAnswer) -> None:
        """Write one of Signet's own answers, head and body in one write."""
        self.started = True
        self.status = answer.status
        if answer.close:
            self.close = True
        parts = [b"HTTP/1.1 %d %s\r\n" % (answer.status, reason_phrase(answer.status))]
        for name, value in answer.headers:
            parts += (name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n")
        body = b"" if self._request.method == "HEAD" else answer.body
        parts += (b"Content-Length: %d\r\n" % len(answer.body), self._connection_line(), body)
        self.bytes_written += len(body)
        self._write(b"".join(parts))

    def abort(self) -> None:
        """Cut the connection mid-answer: the client sees a truncated response, never a whole one."""
        self.close = True
        self._transport.abort()

    # ------------------------------------------------------------ internals

    def _connection_line(self) -> bytes:
        if self.close:
            return b"Connection: close\r\n\r\n"
        if not self._request.http11:
            return b"Connection: keep-alive\r\n\r\n"  # HTTP/1.0 keep-alive must be confirmed
        return b"\r\n"

    def _write(self, data: bytes) -> None:
        if self._flow.closed:
            raise ConnectionError("client connection closed")
        self._transport.write(data)

"""The proxy listener's connection protocol: aiohttp's, plus what it lacks.

1. A request-header timeout (``limits.request_header_timeout``). aiohttp
   bounds an idle keep-alive connection but not a client that trickles its
   request line and headers one byte at a time (slowloris). Each connection
   gets a deadline when it opens and again when the first byte of a later
   request arrives, also when that byte comes in the same read as a complete
   earlier request; it is cleared once the parser has a complete request head.
   A connection still without a complete head at the deadline is closed (after
   the answer to a request already being served) and a ``client_timeout`` line
   is logged. Body bytes never arm it (the body has ``limits.body_read_timeout``).
2. A cap on the whole request head (``limits.max_head_bytes``), counted as the
   bytes arrive, so a head of many large headers is answered 400 before it is
   buffered: aiohttp only bounds each line and the number of headers.
3. Pipelined requests are fed to the parser one head at a time (the read is
   split after each blank line), so a valid request followed in the same read
   by a malformed one (or by anything after ``Connection: close``) is answered
   first; the malformed one then gets its 400 or the connection closes.
4. Raw UTF-8 in the request target. aiohttp's C parser (llhttp, strict mode)
   refuses any byte above 0x7F in the target, which curl sends for ``?q=ü``.
   A head whose request line holds such a byte is given to aiohttp's own
   pure-Python parser (``aiohttp.http_parser.HttpRequestParserPy``, the same
   rules, tested by aiohttp against the same suite), which accepts it and
   decodes it as UTF-8 with ``surrogateescape``; the connection keeps that
   parser. Every other head still goes through llhttp, and control bytes stay
   a 400 in both. ``proxy.routes.check_request_target`` then refuses bytes that
   are not valid UTF-8.
5. Malformed requests (bad request line, NUL/CR/LF where they are not allowed,
   a request line or header over the limits, too many headers, a request line
   without a version, which aiohttp would take as HTTP/0.9) are answered
   with the contract's JSON ``400 bad_request`` and the connection is closed.
   aiohttp's own answer is text that echoes the offending bytes back (a header
   value may be a credential); this one names only the kind of problem, and a
   ``request`` log line says what happened.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

from aiohttp import HttpVersion10, http_exceptions, web
from aiohttp.http_parser import HttpRequestParserPy, RawRequestMessage
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestHandler, RequestPayloadError, _ErrInfo

from proxy.errors import BadRequest, RequestError
from proxy.headers import SERVER_NAME
from proxy.log import get_logger

log = get_logger("signet.request")


class _Http09(http_exceptions.BadHttpMessage):
    """A request line without a version: aiohttp would take it as HTTP/0.9."""


def _describe(exc: BaseException | None) -> str:
    """What was wrong, in words that never quote the client's bytes."""
    if isinstance(exc, _HeadTooLarge):
        return exc.message
    if isinstance(exc, _Connect):
        return "CONNECT is not supported: Signet is a reverse proxy"
    if isinstance(exc, _NotUtf8):
        return "malformed request: the request target is not valid UTF-8"
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


class _HeadTooLarge(http_exceptions.BadHttpMessage):
    """The request head grew past ``limits.max_head_bytes``."""


class _Connect(http_exceptions.BadHttpMessage):
    """A CONNECT request: Signet is a reverse proxy, never a tunnel."""


class _NotUtf8(http_exceptions.BadHttpMessage):
    """Bytes above 0x7F in the request line that are not UTF-8."""


_END_OF_HEAD = b"\r\n\r\n"
_METHOD = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _body_length(message: Any) -> int | None:
    """The Content-Length of a request just parsed, when its body is framed by it."""
    if not isinstance(message, RawRequestMessage) or message.chunked:
        return None
    value = message.headers.get("Content-Length")
    return int(value) if value is not None and value.isdigit() else None


class SignetRequestHandler(RequestHandler):
    """One client connection (see the module docstring)."""

    def __init__(
        self,
        manager: Any,
        *,
        request_header_timeout: float,
        max_head_bytes: int = 65536,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = request_header_timeout
        self._header_handle: asyncio.TimerHandle | None = None
        self._last_payload: Any = None  # payload of the last request head parsed
        self._max_head_bytes = max_head_bytes
        self._auto_decompress = bool(kwargs.get("auto_decompress", True))
        self._head = bytearray()  # bytes of the request head being received
        self._head_known = True  # _head holds that head from its first byte
        self._body_left: int | None = None  # body bytes still due, when Content-Length says
        self._python_parser = False
        self._rejected = False

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
        if self._request_in_progress or self._messages:
            self.close()  # finish the answer already owed, then close
        else:
            self.force_close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_header_timer()
        self._last_payload = None
        self._head = bytearray()
        super().connection_lost(exc)

    # ------------------------------------------------------------ head bytes

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
        if not data or self._upgraded or self._payload_parser is not None:
            self._feed(data)
            return
        # One piece per request head (split after each blank line, also one that
        # straddles two reads), so a bad head never takes the good ones before it.
        carry = bytes(self._head[-3:])
        joined = carry + data if carry else data
        pos = len(carry)
        search = 0  # the first blank line may begin in the carried bytes
        while pos < len(joined):
            found = joined.find(_END_OF_HEAD, search)
            end = found + 4 if found >= 0 else len(joined)
            if not self._feed(joined[pos:end]):
                return
            pos = search = end

    def _in_body(self) -> bool:
        payload = self._last_payload
        return payload is not None and not payload.is_eof()

    def _feed(self, piece: bytes) -> bool:
        """Give one piece to aiohttp's parser; False once the connection is answered 400."""
        in_body = self._in_body()
        if in_body and self._body_left is not None and 0 < self._body_left < len(piece):
            cut = self._body_left  # the body ends inside this piece: feed it apart from what follows
            return self._feed(piece[:cut]) and self._feed(piece[cut:])
        in_head = bool(piece) and not in_body and not self._upgraded and self._payload_parser is None
        if in_head:
            if len(self._head) + len(piece) > self._max_head_bytes:
                self._reject(
                    _HeadTooLarge(f"request head exceeds limits.max_head_bytes={self._max_head_bytes}")
                )
                return False
            if not self._head and self._head_known and piece.startswith(b"CONNECT "):
                # refused before parsing: a parser would turn the connection into a tunnel
                self._reject(_Connect("CONNECT"))
                return False
            if (
                not self._python_parser
                and not piece.isascii()
                and len(self._messages) < self._max_msg_queue_size  # llhttp holds nothing back
                and self._raw_utf8_target(piece)
            ):
                line, newline, _ = (bytes(self._head) + piece).partition(b"\n")
                if newline and not _is_utf8(line):
                    self._reject(_NotUtf8("request target is not valid UTF-8"))
                    return False
                self._use_python_parser()
        elif in_body and self._body_left is not None:
            self._body_left -= len(piece)
        before = self._request_count
        super().data_received(piece)
        parsed = self._request_count - before
        if parsed:
            self._disarm_header_timer()
            self._head = bytearray()
            # a head ends where its piece ends, so its body starts with the next piece
            self._head_known = parsed == 1 and bool(piece)
            queue = self._messages
            for i in range(max(0, len(queue) - parsed), len(queue)):
                msg = queue[i][0]
                if isinstance(msg, _ErrInfo):
                    self._rejected = True
                elif isinstance(msg, RawRequestMessage) and msg.version < HttpVersion10:
                    exc = _Http09("HTTP/0.9")
                    queue[i] = (_ErrInfo(status=400, exc=exc, message=exc.message), EMPTY_PAYLOAD)
            last, self._last_payload = queue[-1] if queue else (None, None)
            self._body_left = _body_length(last) if self._head_known else None
            return not self._rejected
        if in_head:
            self._arm_header_timer()  # first bytes of a (further) request head
            self._head += piece
        elif in_body and not self._in_body():  # the body ended within this piece
            extra = -self._body_left if self._body_left is not None else 0
            self._head_known = self._body_left is not None or piece.endswith(_END_OF_HEAD)
            self._body_left = None
            if extra > 0:  # and the next request's head began after it
                self._head = bytearray(piece[-extra:])
                self._arm_header_timer()
        return True

    def _raw_utf8_target(self, piece: bytes) -> bool:
        """Whether this piece starts or continues a request line whose target has a byte > 0x7F.

        Only ``METHOD SP target`` with a valid method other than CONNECT
        qualifies: anything else (a TLS handshake, binary noise) stays with
        llhttp and its prompt 400.
        """
        if not self._head_known or b"\n" in self._head:
            return False  # head start unknown, or the request line was all ASCII
        line = (bytes(self._head) + piece).split(b"\n", 1)[0]
        method, space, rest = line.partition(b" ")
        if not space or method == b"CONNECT" or _METHOD.fullmatch(method) is None:
            return False  # CONNECT is refused anyway; the Python parser would open a tunnel
        return not rest.split(b" ", 1)[0].isascii()

    def _use_python_parser(self) -> None:
        """Swap llhttp for aiohttp's Python parser, replaying the head received so far."""
        self._parser = HttpRequestParserPy(
            self,
            self._loop,
            self._read_bufsize,
            max_line_size=self.max_line_size,
            max_field_size=self.max_field_size,
            max_headers=self.max_headers,
            payload_exception=RequestPayloadError,
            auto_decompress=self._auto_decompress,
            max_msg_queue_size=self._max_msg_queue_size,
        )
        self._python_parser = True
        if self._head:  # kept in _head too: it still counts towards max_head_bytes
            super().data_received(bytes(self._head))  # cannot complete a head: no blank line

    def _reject(self, exc: http_exceptions.HttpProcessingError) -> None:
        """Queue a 400 for ``exc`` the way aiohttp queues a parse error, and stop reading."""
        self._rejected = True
        self._head = bytearray()
        self._disarm_header_timer()
        self._messages.append((_ErrInfo(status=400, exc=exc, message=exc.message), EMPTY_PAYLOAD))
        self._request_count += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --------------------------------------------------------- error answers

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status != 400:
            response = super().handle_error(request, status, exc, message)
            response.headers["Server"] = SERVER_NAME  # no software version, as on every own answer
            return response
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

    def __init__(
        self,
        handler: Any,
        *,
        request_header_timeout: float,
        max_head_bytes: int = 65536,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self._request_header_timeout = request_header_timeout
        self._max_head_bytes = max_head_bytes

    def __call__(self) -> RequestHandler:
        return SignetRequestHandler(
            self,
            loop=self._loop,
            request_header_timeout=self._request_header_timeout,
            max_head_bytes=self._max_head_bytes,
            **self._kwargs,
        )

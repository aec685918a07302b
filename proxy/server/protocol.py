"""One client connection of the proxy listener: an asyncio Protocol around llhttp.

Modelled on uvicorn's ``httptools_impl``: ``httptools.HttpRequestParser``
calls back ``on_message_begin``, ``on_url``, ``on_header``,
``on_headers_complete``, ``on_body`` and ``on_message_complete``; each
complete head becomes a :class:`~proxy.server.request.Request` served by one
task at a time, in order. Requests pipelined behind it wait in a queue
(reading pauses meanwhile), and so does the 400 for a malformed follower, so
the valid request before it is answered first.

The scanner. Every read is cut into pieces before llhttp sees it: the rest
of a request head (up to its blank line), a ``Content-Length`` body, or a
chunked body up to its next blank line. Knowing where a head starts and ends
gives three things llhttp alone does not:

- ``limits.max_head_bytes`` and ``limits.max_url_length`` counted as the
  bytes arrive (431 and 414 before a huge head is buffered);
- the request-header timer for a head that starts behind a complete request
  in the same read (armed by ``on_message_begin``);
- raw UTF-8 request targets. llhttp (strict) refuses any byte above 0x7F in a
  target, which curl sends for ``?q=ü``. The request line is pre-scanned: when
  it holds such bytes, llhttp is given an ASCII stand-in (each byte 0x80-0xFF
  becomes ``x``, so lengths and every other check stay as they are) and the
  target is taken from the raw bytes kept here. Control bytes, spaces and a
  missing version are still llhttp's 400; ``check_request_target`` then
  refuses a target that is not valid UTF-8.

Timers: the request-header timer (``limits.request_header_timeout``) runs
from the first byte of a head (and from the connection's start) until the
head is complete; the keep-alive timer closes a connection idle between
requests. Both close without touching an answer already owed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httptools

from proxy.errors import BadRequest, HeadersTooLarge, RequestError, UriTooLong
from proxy.listen_tls import PeerIdentity, peer_identity
from proxy.log import get_logger
from proxy.server.flow import FlowControl
from proxy.server.gate import is_proxy_form, serve_proxy_form
from proxy.server.request import Request
from proxy.server.respond import ErrorAnswer, Responder, error_answer

if TYPE_CHECKING:
    from proxy.forward_proxy.mode import Binding

log = get_logger("signet.request")

Handler = Callable[[Request], Awaitable[Any]]

# scanner states
_HEAD, _LENGTH, _CHUNKED, _STOP = range(4)
_BLANK = b"\r\n\r\n"
_STAND_IN = bytes(range(128)) + b"x" * 128  # bytes.translate table: 0x80-0xFF -> "x"


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the reason is in ``_error``."""


class ProxyConnection(asyncio.Protocol):
    """One client connection (see the module docstring)."""

    def __init__(
        self,
        handler: Handler,
        limits: Any,
        connections: set[ProxyConnection],
        forward: Binding | None = None,
    ) -> None:
        """``forward``: this connection is the inside of a CONNECT tunnel (forward-proxy mode);
        each of its requests is bound to that CONNECT."""
        self._handler = handler
        self.forward = forward
        self._limits = limits
        self._max_line = limits.max_url_length
        self._max_head = limits.max_head_bytes
        self._max_headers = limits.max_headers
        self._max_field = limits.max_header_bytes
        self._connections = connections
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.flow: FlowControl | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._remote = ""
        self._peer: PeerIdentity | None = None
        self._scheme = "http"
        # scanner
        self._scan = _HEAD
        self._tail = b""  # last bytes of a head or chunked body that may start a blank line
        self._head_len = 0
        self._line_len = 0
        self._line_done = False
        self._line_raw = bytearray()  # the request line so far, when it spans reads
        self._line_8bit = False
        self._raw_target: bytes | None = None
        self._body_left = 0
        self._leftover = b""  # bytes after an upgrade/CONNECT head
        # the message being parsed
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._current: Request | None = None
        self._error: RequestError | None = None
        # serving
        self._queue: deque[Request | RequestError] = deque()
        self._task: asyncio.Task[None] | None = None
        self._active: Request | None = None
        self._closing = False  # answer what is owed, then close
        self._detached = False
        self._upgrading = False
        self._header_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._in_head = False  # a head has begun and is not complete
        self._idle_since = 0.0  # when the last answer ended (0: not idle)

    # ---------------------------------------------------------- transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport
        assert self.transport is not None
        self.flow = FlowControl(self.transport)
        peer = transport.get_extra_info("peername")
        self._remote = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        # listen_tls: the handshake is done by now, its client certificate (if any) verified
        self._peer = peer_identity(transport.get_extra_info("peercert"))
        self._scheme = "https" if transport.get_extra_info("sslcontext") is not None else "http"
        self._connections.add(self)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        if self._detached:
            return
        self._scan = _STOP
        self._cancel_timers()
        if self.flow is not None:
            self.flow.lost()
        for item in (self._active, self._current, *self._queue):
            if isinstance(item, Request):
                item.lost()
        self._queue.clear()
        task = self._task
        if task is not None and not task.done():
            task.cancel()  # the client left: its upstream request is abandoned

    def eof_received(self) -> bool | None:
        """The client closed its side: it is gone (as nginx and aiohttp read it); close too."""
        return None

    def pause_writing(self) -> None:
        assert self.flow is not None
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        assert self.flow is not None
        self.flow.resume_writing()

    # ------------------------------------------------------------ scanner

    def data_received(self, data: bytes) -> None:
        if self._upgrading:  # past an upgrade head: the tunnel's bytes, kept until detach()
            self._leftover += data
            return
        self._idle_since = 0.0
        pos = 0
        n = len(data)
        while pos < n:
            scan = self._scan
            if scan == _LENGTH:
                end = min(n, pos + self._body_left)
                self._body_left -= end - pos
                self._tail = b""
            elif scan == _CHUNKED:
                end = self._blank_end(data, pos)
                self._tail = data[max(pos, n - 3) :] if end == n else b""
            elif scan == _HEAD:
                end = self._blank_end(data, pos)
                self._tail = data[max(pos, n - 3) :] if end == n else b""
                self._head_len += end - pos
                if not self._line_done:
                    nl = data.find(b"\n", pos, end)
                    line_end = end if nl < 0 else nl + 1
                    self._line_len += line_end - pos
                    if self._line_len > self._max_line:
                        self._refuse(
                            UriTooLong(f"request line is longer than limits.max_url_length={self._max_line}")
                        )
                        return
                    piece = data[pos:line_end]
                    eight_bit = not piece.isascii()
                    if eight_bit or nl < 0 or self._line_raw:
                        self._line_8bit |= eight_bit
                        self._line_raw += piece
                    if nl >= 0:
                        self._line_done = True
                        if self._line_8bit:
                            self._raw_target = _target_of(bytes(self._line_raw))
                        self._line_raw = bytearray()
                    if eight_bit:  # llhttp gets the ASCII stand-in of this piece of the line
                        self._head_len -= end - line_end  # counted again with the rest of the head
                        if self._head_len > self._max_head:
                            self._refuse(_head_too_large(self._max_head))
                            return
                        if not self._feed(piece.translate(_STAND_IN), data, line_end):
                            return
                        pos = line_end
                        continue
                if self._head_len > self._max_head:
                    self._refuse(_head_too_large(self._max_head))
                    return
            else:
                return
            if not self._feed(data if pos == 0 and end == n else data[pos:end], data, end):
                return
            pos = end
        if self._in_head and self._header_timer is None:
            self._arm_header_timer()  # a head still incomplete after this read
        if self._queue and self._task is not None and self.flow is not None:
            self.flow.pause_reading("pipeline")

    def _blank_end(self, data: bytes, pos: int) -> int:
        """The index just past the next blank line (CRLF CRLF) from ``pos``, else len(data)."""
        tail = self._tail
        if tail and pos == 0:
            joined = (tail + data[:3]).find(_BLANK)
            if joined >= 0:
                return joined + 4 - len(tail)
        found = data.find(_BLANK, pos)
        return len(data) if found < 0 else found + 4

    def _feed(self, piece: bytes, data: bytes, end: int) -> bool:
        """Give one piece to llhttp; False once parsing stopped (refused, upgrade, error)."""
        try:
            self._parser.feed_data(piece)
        except httptools.HttpParserUpgrade as exc:  # CONNECT or Upgrade: the rest is not HTTP
            self._leftover = piece[int(exc.args[0]) :] + data[end:]
            self._scan = _STOP
            self._upgrading = True  # a read already under way lands in _leftover
            if self.flow is not None:  # later bytes wait in the kernel for detach()'s new protocol
                self.flow.pause_reading("upgrade")
            return False
        except httptools.HttpParserCallbackError:
            self._refuse(self._error or BadRequest("malformed request"))
            return False
        except httptools.HttpParserError as exc:
            self._refuse(self._error or BadRequest(_describe(exc)))
            return False
        return self._scan != _STOP

    # ------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._error = None
        self._in_head = True  # timed from the end of this read if still incomplete (data_received)

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._current is not None:
            return  # a trailer of a chunked request body: not forwarded
        headers = self._headers
        if len(headers) >= self._max_headers:
            self._error = HeadersTooLarge(f"more than limits.max_headers={self._max_headers} request headers")
            raise _Refused
        if len(name) + len(value) + 2 > self._max_field:
            self._error = HeadersTooLarge(
                f"a request header is longer than limits.max_header_bytes={self._max_field}"
            )
            raise _Refused
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm_header_timer()
        parser = self._parser
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            self._error = BadRequest(
                "malformed request line: no HTTP version (HTTP/0.9 is not supported)"
                if version == "0.9"
                else "unsupported HTTP version"
            )
            raise _Refused
        raw_target = self._raw_target if self._raw_target is not None else self._url
        target = (
            raw_target.decode("latin-1")
            if raw_target.isascii()
            else raw_target.decode("utf-8", "surrogateescape")
        )
        assert self.flow is not None and self.transport is not None
        request = Request(
            parser.get_method().decode("ascii"),
            target,
            version,
            self._headers,
            keep_alive=parser.should_keep_alive(),
            remote=self._remote,
            flow=self.flow,
            scheme=self._scheme if self.forward is None else "https",
            forward=self.forward,
            peer=self._peer,
        )
        request.responder = Responder(self.transport, self.flow, request)
        if request.upgrade:
            request.detach = self.detach
        self._current = request
        # the scanner's next piece: the body, or the next head
        self._head_len = self._line_len = 0
        self._line_done = self._line_8bit = False
        self._raw_target = None
        if request.body_expected:
            if request.content_length is None:
                self._scan = _CHUNKED
            else:
                self._scan = _LENGTH
                self._body_left = request.content_length
        self._dispatch(request)

    def on_body(self, body: bytes) -> None:
        if self._current is not None:
            self._current.feed(body)

    def on_message_complete(self) -> None:
        request = self._current
        self._current = None
        if self._scan != _STOP:
            self._scan = _HEAD
        if request is not None:
            request.end()
            if not request.keep_alive:
                self._scan = _STOP  # nothing after "Connection: close" is read

    # ----------------------------------------------------------- serving

    def _dispatch(self, item: Request | RequestError) -> None:
        if self._task is None and not self._queue:
            self._start(item)
        else:
            self._queue.append(item)

    def _start(self, item: Request | RequestError) -> None:
        if isinstance(item, RequestError):
            self._answer_refusal(item)
            return
        self._active = item
        self._task = self._loop.create_task(self._serve(item))

    async def _serve(self, request: Request) -> None:
        responder = request.responder
        assert responder is not None
        try:
            if is_proxy_form(request):  # CONNECT, absolute-form: forward-proxy mode decides
                result: Any = await serve_proxy_form(request, self)
            else:
                result = await self._handler(request)
            if isinstance(result, ErrorAnswer):
                if responder.started:
                    self._abort()
                else:
                    responder.answer(result)
        except asyncio.CancelledError:
            pass  # the client went away; the handler has logged it
        except ConnectionError:
            self._abort()
        except Exception:
            log.exception("request_failed", message="unexpected error while serving a request")
            if responder.started:
                self._abort()
            else:
                rid = _new_id()
                responder.answer(error_answer(RequestError("internal error"), rid, close=True))
        finally:
            self._finished(request)

    def _finished(self, request: Request) -> None:
        self._task = None
        self._active = None
        transport = self.transport
        if transport is None or transport.is_closing() or self._detached:
            return  # gone, or handed to another protocol (detach)
        responder = request.responder
        assert responder is not None and self.flow is not None
        if (
            responder.close
            or self._closing
            or not responder.started
            or not request.body_complete
            or (self._scan == _STOP and not self._queue)
        ):
            transport.close()
            return
        self.flow.resume_reading("body")
        if self._queue:
            self._start(self._queue.popleft())
            if not self._queue:
                self.flow.resume_reading("pipeline")
            return
        self.flow.resume_reading("pipeline")
        if self._current is None and not self._in_head:
            self._idle_since = self._loop.time()
            if self._idle_timer is None:  # one timer per connection, re-armed by itself
                self._idle_timer = self._loop.call_later(self._limits.keepalive_timeout, self._idle_timed_out)

    def _refuse(self, error: RequestError) -> None:
        """Stop parsing; ``error`` is answered (then the connection closes) after what is owed."""
        self._scan = _STOP
        self._disarm_header_timer()
        if self.flow is not None:
            self.flow.pause_reading("refused")
        self._dispatch(error)

    def _answer_refusal(self, error: RequestError) -> None:
        rid = _new_id()
        _log_refusal(error, rid)
        transport = self.transport
        if transport is None or transport.is_closing() or self.flow is None:
            return
        request = Request("GET", "/", "1.1", [], keep_alive=False, remote=self._remote, flow=self.flow)
        responder = Responder(transport, self.flow, request)
        responder.answer(error_answer(error, rid, close=True))
        transport.close()

    def _abort(self) -> None:
        """Cut the connection: the client must see a truncated answer, not a complete one."""
        if self.transport is not None and not self._detached:
            self.transport.abort()

    # ------------------------------------------------------------ timers

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self._loop.call_later(
                self._limits.request_header_timeout, self._header_timed_out
            )

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _cancel_timers(self) -> None:
        self._disarm_header_timer()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        log.info(
            "client_timeout",
            error="request_header_timeout",
            message=f"client did not send complete request headers within "
            f"{self._limits.request_header_timeout:g}s (limits.request_header_timeout); "
            "connection closed",
            peer=self._remote or None,
        )
        self._scan = _STOP
        if self._task is not None or self._queue:
            self._closing = True  # finish the answer already owed, then close
        else:
            transport.close()

    def _idle_timed_out(self) -> None:
        self._idle_timer = None
        since = self._idle_since
        if not since or self._task is not None or self._queue or self.transport is None:
            return  # busy again: _finished arms it anew
        left = since + self._limits.keepalive_timeout - self._loop.time()
        if left > 0:
            self._idle_timer = self._loop.call_later(left, self._idle_timed_out)
        else:
            self.transport.close()

    # ------------------------------------------------------------ control

    def shutdown(self) -> None:
        """Draining: close now when idle, else after the answer in progress."""
        self._closing = True
        self._scan = _STOP
        active = self._active
        if active is not None and active.responder is not None and not active.responder.started:
            active.responder.close = True  # its head says Connection: close
        if self._task is None and self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """The drain's grace is over: cut the connection (its task is cancelled)."""
        if self.transport is not None:
            self.transport.abort()

    @property
    def handler(self) -> Handler:
        return self._handler

    @property
    def limits(self) -> Any:
        return self._limits

    @property
    def connections(self) -> set[ProxyConnection]:
        """The listener's live connections (a tunnel's inner connection joins them)."""
        return self._connections

    def detach(self) -> tuple[asyncio.Transport, bytes]:
        """Give the client's transport to another protocol, e.g. a WebSocket tunnel.

        Call it after writing the upstream's ``101`` head. Returns the transport
        and the bytes the client already sent past its request head; the
        caller then calls ``transport.set_protocol(new)`` and
        ``transport.resume_reading()`` (reading is paused from the end of an
        upgrade head, so nothing is lost in between), and feeds the leftover
        bytes to the new protocol. This connection stops parsing, its timers
        stop, it leaves the listener's drain set, ``connection_lost`` no longer
        touches it, and the end of the handler's task leaves the transport
        alone (see tests/server/test_detach.py).
        """
        assert self.transport is not None
        self._detached = True
        self._scan = _STOP
        self._cancel_timers()
        self._connections.discard(self)
        leftover, self._leftover = self._leftover, b""
        return self.transport, leftover


def _target_of(line: bytes) -> bytes | None:
    """The raw target of a request line (``METHOD SP target SP version``)."""
    parts = line.split(b" ")
    return parts[1] if len(parts) >= 3 else None


def _head_too_large(limit: int) -> RequestError:
    return HeadersTooLarge(f"request head exceeds limits.max_head_bytes={limit}")


def _describe(exc: Exception) -> str:
    """What was wrong, in words that never quote the client's bytes."""
    if isinstance(exc, httptools.HttpParserInvalidMethodError):
        return "malformed request: invalid method"
    if isinstance(exc, httptools.HttpParserInvalidURLError):
        return "malformed request: invalid request target"
    return "malformed request"


def _new_id() -> str:
    return uuid.uuid4().hex


def _log_refusal(error: RequestError, rid: str) -> None:
    log.info(
        "request",
        route=None,
        method=None,
        path=None,
        status=error.status,
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

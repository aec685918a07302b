"""One upstream HTTP/1.1 connection: an asyncio Protocol around llhttp (httptools).

Modelled on uvicorn's ``httptools_impl``: the parser calls back ``on_header``,
``on_headers_complete``, ``on_body``, ``on_message_complete`` and the
connection keeps a small explicit state for the one exchange in flight, with
no task per connection. The caller (:mod:`proxy.upstream.client`) writes a
request with :meth:`send`, awaits :meth:`head`, then pulls body chunks with
:meth:`read`.

Strictness is llhttp's (no lenient flags): a space before a colon, control
bytes in a value, ``Content-Length`` with ``Transfer-Encoding``, two lengths,
bare LF and folded headers all fail the exchange as :class:`Malformed`. A
``101`` is always unsolicited (Signet never asks to upgrade).

Interim answers: a 1xx other than 101 is handed to ``on_informational`` (the
listener relays 103 Early Hints) and skipped; a ``100`` also starts a body
held back for ``Expect: 100-continue`` (:meth:`send` with ``expect=True``
waits for it, for the final answer, or ``EXPECT_TIMEOUT``). Trailers of a
chunked answer are kept apart in ``trailers``, never merged into the head.

Flow control both ways: received body bytes queue here and reading the socket
pauses once more than ``HIGH_WATER`` wait (the consumer awaits the client's
drain before pulling more, so a slow client slows the upstream); request body
chunks wait for ``resume_writing`` when the upstream's socket buffer is full.

Hygiene: a byte arriving while no exchange runs, or after a complete answer,
makes the connection unusable (it is closed); so does an exchange that did
not end cleanly. ``reusable`` is the single answer to "may the pool keep it".
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, Callable

import httptools

from proxy.upstream.errors import (
    Disconnected,
    Malformed,
    ReadTimeout,
    RequestBodyFailed,
    StaleConnection,
    UpstreamError,
)

HIGH_WATER = 256 * 1024  # queued response bytes before the upstream socket is paused
EXPECT_TIMEOUT = 1.0  # seconds to wait for a 100 before sending the body anyway (curl's default)

Informational = Callable[[int, bytes, list[tuple[bytes, bytes]]], None]


class UpstreamConnection(asyncio.Protocol):
    """A keep-alive connection that runs one exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.exchanges = 0  # started on this connection; >1 means it was reused
        self.idle_since = 0.0
        self.closed = False
        self._lost = asyncio.Event()
        # exchange state (reset by _begin)
        self._active = False
        self._parser: httptools.HttpResponseParser | None = None
        self._parsed_to_end = False
        self._no_body = False
        self._got_byte = False
        self._head_done = False
        self._complete = False
        self._reusable = True
        self._error: UpstreamError | None = None
        self._head_waiter: asyncio.Future[None] | None = None
        self._body_waiter: asyncio.Future[None] | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._reading_paused = False
        self._framed = False  # Content-Length or chunked: the answer's end is known
        self.has_length = False  # the answer carries a Content-Length
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.trailers: list[tuple[bytes, bytes]] = []
        self.on_informational: Informational | None = None
        self._continue: asyncio.Future[bool] | None = None  # True: send the body
        self.version = "1.1"
        # read timeout
        self._read_timeout = 0.0
        self._last_byte = 0.0
        self._timer: asyncio.TimerHandle | None = None
        # writing
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._upload: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport

    def data_received(self, data: bytes) -> None:
        if not self._active or self._complete:
            # bytes nobody asked for: never let them become the next client's answer
            self._reusable = False
            self.close()
            return
        if self._error is not None:  # the exchange already failed (a timeout): ignore late bytes
            return
        self._got_byte = True
        self._last_byte = self.loop.time()
        parser = self._parser
        assert parser is not None
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(Malformed("sent a malformed HTTP response (an unsolicited 101 upgrade)"))
        except httptools.HttpParserError as exc:
            if self._complete:  # bytes past a complete answer: keep the answer, drop the connection
                self._reusable = False
                self.close()
            elif self._error is None:
                self._fail(Malformed(f"sent a malformed HTTP response ({_parser_words(exc)})"))

    def eof_received(self) -> bool | None:
        return False  # close our side too; connection_lost finishes the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._reusable = False
        self._lost.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_exception(Disconnected("closed the connection while the request was sent"))
        if not self._active or self._complete or self._error is not None:
            return
        if self._head_done and not self._framed and not self._no_body and exc is None:
            self._complete = True  # a close-delimited body ends at a clean close (not a reset)
            self._wake()
            return
        if not self._got_byte:
            reason = "closed the connection before answering"
            self._fail(StaleConnection(reason) if self.exchanges > 1 else Disconnected(reason))
        elif self._head_done:
            self._fail(Disconnected("upstream connection failed mid-body", mid_body=True))
        else:
            self._fail(Disconnected("closed the connection in the middle of the response head"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -------------------------------------------------------------- parser

    def on_status(self, reason: bytes) -> None:
        if self._complete:  # a second answer in the same bytes: never relayed
            self._reusable = False
            return
        self.reason = reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._complete:
            self._reusable = False
            return
        if self._head_done:  # after the body of a chunked answer: a trailer
            self.trailers.append((name, value))
            return
        self.headers.append((name, value))
        lname = name.lower()
        if lname == b"content-length":
            self._framed = self.has_length = True
        elif lname == b"transfer-encoding" and value.rstrip().lower().endswith(b"chunked"):
            self._framed = True

    def on_headers_complete(self) -> None:
        if self._complete:
            self._reusable = False
            return
        parser = self._parser
        assert parser is not None
        status = parser.get_status_code()
        if 100 <= status < 200:
            if status != 101:  # 1xx: interim, relayed and skipped; 101 raises HttpParserUpgrade
                if status == 100:
                    self._resolve_continue(True)
                elif self.on_informational is not None:
                    self.on_informational(status, self.reason, self.headers)
                self.headers = []
                self._framed = self.has_length = False
            return
        self.status = status
        self.version = parser.get_http_version()
        if not parser.should_keep_alive():
            self._reusable = False
        self._head_done = True
        self._resolve_continue(False)  # a final answer first: the held-back body is never sent
        if self._no_body:  # HEAD: llhttp cannot know; the answer ends with its head
            self._complete = True
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self._complete:  # a body after a HEAD answer: not this protocol
            self._reusable = False
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self._head_done or self._complete:
            return  # the end of a skipped 1xx answer
        self._complete = True  # the read timer stays: it lapses by itself (see _arm_read_timer)
        self._parsed_to_end = True  # llhttp is at a message boundary: its parser can be reused
        self._wake()

    # ------------------------------------------------------------ exchange

    def begin(self, no_body: bool, read_timeout: float) -> None:
        """Start an exchange on this (idle or new) connection."""
        self.exchanges += 1
        self._active = True
        if self._parser is None:  # kept from the last exchange only if llhttp ended it cleanly
            self._parser = httptools.HttpResponseParser(self)
        self._parsed_to_end = False
        self._no_body = no_body
        self._got_byte = self._head_done = self._complete = self._framed = self.has_length = False
        self._error = None
        self._chunks.clear()
        self._buffered = 0
        self.status = 0
        self.headers = []
        self.trailers = []
        self.on_informational = None
        self._continue = None
        self._read_timeout = read_timeout
        self._head_waiter = self.loop.create_future()

    async def send(
        self,
        head: bytes,
        body: bytes | AsyncIterable[bytes] | None,
        length: int | None,
        *,
        expect: bool = False,
        on_continue: Callable[[], None] | None = None,
    ) -> None:
        """Write the request; a streamed body keeps going in a task while the answer is read.

        ``expect``: the head asks ``Expect: 100-continue``; the streamed body
        waits for the upstream's 100 (or EXPECT_TIMEOUT), then ``on_continue``
        runs (the listener asks the client for its body) and the upload starts.
        A final answer first means the body is never sent.
        """
        transport = self.transport
        if transport is None or self.closed:
            raise StaleConnection("closed the connection before answering")
        if body is None or isinstance(body, bytes | bytearray):
            if body and len(body) <= 65536:
                transport.write(head + body)  # one write for the common small request
            else:
                transport.write(head)
                if body:
                    transport.write(body)
            self._arm_read_timer()
            return
        transport.write(head)
        if expect:
            self._continue = self.loop.create_future()
        self._upload = self.loop.create_task(self._stream_body(body, length, on_continue))

    def _resolve_continue(self, go: bool) -> None:
        waiter = self._continue
        if waiter is not None and not waiter.done():
            waiter.set_result(go)

    async def _stream_body(
        self, body: AsyncIterable[bytes], length: int | None, on_continue: Callable[[], None] | None = None
    ) -> None:
        transport = self.transport
        assert transport is not None
        chunked = length is None
        sent = 0
        waiter = self._continue
        if waiter is not None:
            try:
                go = await asyncio.wait_for(asyncio.shield(waiter), EXPECT_TIMEOUT)
            except TimeoutError:
                go = True  # the upstream ignores Expect: send the body anyway (RFC 9110 §10.1.1)
            if not go:
                self._reusable = False  # the declared body was never sent
                return
        if on_continue is not None and not self.closed:
            on_continue()
        try:
            async for chunk in body:
                if not chunk:
                    continue
                sent += len(chunk)
                if length is not None and sent > length:
                    raise ValueError("request body longer than its Content-Length")
                if self.closed or self._error is not None:
                    return
                if chunked:
                    transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                else:
                    transport.write(chunk)
                if self._write_paused:
                    await self._drain()
            if length is not None and sent != length:
                raise ValueError("request body shorter than its Content-Length")
            if chunked and not self.closed:
                transport.write(b"0\r\n\r\n")
        except Disconnected:
            return  # connection_lost reports it on the answer side
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = RequestBodyFailed("the request body could not be read")
            error.__cause__ = exc
            self._fail(error)
            return
        self._arm_read_timer()

    async def _drain(self) -> None:
        waiter = self._drain_waiter = self.loop.create_future()
        if not self._write_paused:
            return
        await waiter

    async def head(self) -> None:
        """Wait for the response head (or the exchange's failure)."""
        waiter = self._head_waiter
        assert waiter is not None
        if not waiter.done():
            await waiter
        if self._error is not None and not self._head_done:
            raise self._error

    @property
    def framed(self) -> bool:
        """The answer carried its own end (a length, chunked, or no body at all)."""
        return self._framed or self._no_body or self.status in (204, 304)

    def read_nowait(self) -> bytes:
        """Body bytes already here (b"" when none yet, or at the end)."""
        chunks = self._chunks
        if not chunks:
            return b""
        if len(chunks) == 1:
            data = chunks.popleft()
        else:
            data = b"".join(chunks)
            chunks.clear()
        self._buffered = 0  # everything queued was taken
        if self._reading_paused:
            self._reading_paused = False
            self._last_byte = self.loop.time()  # time paused for the client does not count
            if self.transport is not None and not self.closed:
                self.transport.resume_reading()
        return data

    @property
    def at_eof(self) -> bool:
        return self._complete and not self._chunks

    async def read(self) -> bytes:
        """The next body chunk; b"" at the end. Raises the exchange's failure."""
        while True:
            if self._chunks:
                return self.read_nowait()
            if self._complete:
                return b""
            if self._error is not None:
                raise self._error
            waiter = self._body_waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                self._body_waiter = None

    def finish(self) -> bool:
        """End the exchange; True when the connection may go back to the pool."""
        self._active = False
        if not self._parsed_to_end or self._no_body:  # HEAD leaves llhttp mid-message
            self._parser = None
        upload = self._upload
        self._upload = None
        clean = self._complete and not self._chunks and self._error is None
        if upload is not None and not upload.done():
            upload.cancel()  # answered before the body was all sent: cannot be reused
            clean = False
        if not (clean and self._reusable and not self.closed):
            self.close()
            return False
        return True

    def close(self) -> None:
        self._reusable = False
        if self.transport is not None and not self.closed:
            self.transport.close()
            self.closed = True
        upload = self._upload
        if upload is not None and not upload.done():
            upload.cancel()

    async def wait_closed(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._lost.wait(), timeout)
        except TimeoutError:
            if self.transport is not None:
                self.transport.abort()

    @property
    def reusable(self) -> bool:
        return self._reusable and not self.closed

    # ------------------------------------------------------------ internals

    def _wake(self) -> None:
        waiter = self._body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        if self._error is None:
            self._error = error
        self._reusable = False
        head = self._head_waiter
        if head is not None and not head.done():
            head.set_result(None)
        self._wake()
        self.close()

    def _arm_read_timer(self) -> None:
        """Start the read clock. One timer serves every exchange of a keep-alive connection:
        a later exchange only moves ``_last_byte`` (no timer handle per request), and
        ``_check_read`` re-arms itself for the time left or lapses when nothing runs."""
        if self._read_timeout <= 0 or self._complete or not self._active:
            return
        now = self._last_byte = self.loop.time()
        timer = self._timer
        if timer is not None and timer.when() <= now + self._read_timeout:
            return
        if timer is not None:
            timer.cancel()  # a shorter timeout than the running timer's
        self._timer = self.loop.call_later(self._read_timeout, self._check_read)

    def _check_read(self) -> None:
        self._timer = None
        if not self._active or self._complete or self._error is not None or self.closed:
            return
        now = self.loop.time()
        if self._reading_paused:  # waiting on the client, not the upstream
            self._timer = self.loop.call_later(self._read_timeout, self._check_read)
            return
        idle = now - self._last_byte
        if idle < self._read_timeout:
            self._timer = self.loop.call_later(self._read_timeout - idle, self._check_read)
            return
        self._fail(
            ReadTimeout(f"the upstream sent nothing for {self._read_timeout}s", mid_body=self._head_done)
        )


def _parser_words(exc: Exception) -> str:
    """llhttp's own description: fixed words, never the offending bytes."""
    text = str(exc).strip()
    return text if text.isascii() and text.isprintable() and len(text) < 100 else "parse error"

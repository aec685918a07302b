"""One parsed client request: its head exactly as received, and its body as a pull stream.

The head keeps the client's own bytes: ``raw_headers`` holds every header in
order with the client's spelling (llhttp hands names and values over
untouched, obs-text included); ``headers`` is the same list as a
case-insensitive multidict of ``str`` (names as Latin-1, values as UTF-8 with
``surrogateescape``, so encoding them back gives the very same bytes).

The body arrives through :meth:`Request.feed` from the connection's parser
and leaves through :meth:`Request.read`. Bytes waiting here count towards
the connection's read pause (see :mod:`proxy.server.flow`), so a slow
upstream slows the client down instead of filling memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from multidict import CIMultiDict

if TYPE_CHECKING:
    from proxy.forward_proxy.mode import Binding
    from proxy.listen_tls import PeerIdentity
    from proxy.server.flow import FlowControl
    from proxy.server.respond import Responder

BODY_HIGH_WATER = 256 * 1024  # body bytes queued before reading the client pauses


class ClientGone(ConnectionError):
    """The client's connection closed while its request body was still being read."""


class Request:
    """A request head plus its body stream; one per request on a connection."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_complete",
        "_flow",
        "_gone",
        "_headers",
        "_waiter",
        "body_expected",
        "body_received",
        "content_length",
        "detach",
        "expect_continue",
        "forward",
        "http11",
        "keep_alive",
        "method",
        "peer",
        "raw_headers",
        "raw_path",
        "remote",
        "responder",
        "scheme",
        "upgrade",
        "version",
    )

    def __init__(
        self,
        method: str,
        raw_path: str,
        version: str,
        raw_headers: list[tuple[bytes, bytes]],
        *,
        keep_alive: bool,
        remote: str,
        flow: FlowControl,
        scheme: str = "http",
        forward: Binding | None = None,
        peer: PeerIdentity | None = None,
    ) -> None:
        self.method = method
        self.raw_path = raw_path  # the target exactly as sent (UTF-8, surrogateescape)
        self.version = version  # "1.1" | "1.0"
        self.http11 = version == "1.1"
        self.raw_headers = raw_headers
        self.keep_alive = keep_alive
        self.remote = remote
        self.scheme = scheme
        # forward-proxy mode: the CONNECT (or absolute-form target) this request was sent for
        self.forward = forward
        self.peer = peer  # the verified client certificate of a listen_tls connection, if any
        self.responder: Responder | None = None  # set by the connection before the pipeline runs
        # an upgrade request: takes the connection's transport over (set by the connection)
        self.detach: Callable[[], tuple[asyncio.Transport, bytes]] | None = None
        self._flow = flow
        self._headers: CIMultiDict[str] | None = None
        self.content_length: int | None = None
        self.body_expected = False  # Content-Length > 0 or chunked
        self.expect_continue = False
        # an upgrade request: an Upgrade header that Connection names (RFC 9110 §7.8); a bare
        # Upgrade header is only a hop-by-hop header, stripped like the others
        self.upgrade = False
        upgrade_header = connection_upgrade = False
        chunked = False
        for name, value in raw_headers:
            lname = name.lower()
            if lname == b"content-length":
                self.content_length = int(value) if value.strip().isdigit() else None
            elif lname == b"transfer-encoding":
                chunked = True
            elif lname == b"expect":
                self.expect_continue = value.strip().lower() == b"100-continue"
            elif lname == b"upgrade":
                upgrade_header = True
            elif lname == b"connection" and b"upgrade" in value.lower():
                connection_upgrade = True
        self.upgrade = upgrade_header and connection_upgrade
        self.body_expected = chunked or bool(self.content_length)
        if chunked:
            self.content_length = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._complete = not self.body_expected
        self._gone = False
        self._waiter: asyncio.Future[None] | None = None
        self.body_received = 0

    # ------------------------------------------------------------- head

    @property
    def headers(self) -> CIMultiDict[str]:
        """The headers as str, in order and spelling (built on first use)."""
        headers = self._headers
        if headers is None:
            headers = self._headers = CIMultiDict(
                (n.decode("latin-1"), v.decode("utf-8", "surrogateescape")) for n, v in self.raw_headers
            )
        return headers

    @property
    def body_exists(self) -> bool:
        return self.body_expected

    # ------------------------------------------------------------- body

    @property
    def body_complete(self) -> bool:
        """The whole body has arrived (it may still wait here to be read)."""
        return self._complete

    def feed(self, data: bytes) -> None:
        """Body bytes from the parser."""
        self._chunks.append(data)
        self._buffered += len(data)
        self.body_received += len(data)
        if self._buffered > BODY_HIGH_WATER:
            self._flow.pause_reading("body")
        self._wake()

    def end(self) -> None:
        """The parser saw the end of the body."""
        self._complete = True
        self._wake()

    def lost(self) -> None:
        """The connection closed: a reader waiting for more bytes gets :class:`ClientGone`."""
        if not self._complete:
            self._gone = True
            self._wake()

    def read_nowait(self) -> bytes:
        """The body bytes already here, without waiting (b"" when none are)."""
        chunks = self._chunks
        if not chunks:
            return b""
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        self._flow.resume_reading("body")
        return data

    def at_eof(self) -> bool:
        """The whole body has arrived and been read."""
        return self._complete and not self._chunks

    async def read(self) -> bytes:
        """The next body bytes; b"" at the end. Raises ClientGone if the client left mid-body."""
        while True:
            if self._chunks:
                return self.read_nowait()
            if self._complete:
                return b""
            if self._gone:
                raise ClientGone("the client closed the connection mid-body")
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

"""The Python floor: a minimal uvloop + httptools pass-through proxy (issue 10).

    python bench/passthrough_raw.py PORT UPSTREAM_ORIGIN    # e.g. 8082 http://127.0.0.1:8000

Both sides are raw asyncio Protocols with llhttp parsers; upstream connections
are pooled (keep-alive); the answer streams back as it arrives, and the
upstream is paused while the client's socket buffer is full. No timeouts, no
limits, no error handling beyond closing: a floor to compare with, not a
product. Request bodies are buffered. Prints READY; exits on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from urllib.parse import urlsplit

import httptools
import uvloop

HOP = frozenset(
    (b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
     b"trailer", b"transfer-encoding", b"upgrade", b"host")
)


class Upstream(asyncio.Protocol):
    def __init__(self, pool: list[Upstream]) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.client: Client | None = None

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        self.transport = transport

    def start(self, client: Client, head: bytes) -> None:
        self.client = client
        self.parser = httptools.HttpResponseParser(self)
        self.reason = b"OK"
        self.headers: list[bytes] = []
        self.chunked = True
        assert self.transport is not None
        self.transport.write(head)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_status(self, reason: bytes) -> None:
        self.reason = reason

    def on_header(self, name: bytes, value: bytes) -> None:
        lname = name.lower()
        if lname == b"content-length":
            self.chunked = False
        if lname not in HOP:
            self.headers.append(b"%s: %s\r\n" % (name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        framing = b"Transfer-Encoding: chunked\r\n" if self.chunked else b""
        assert self.client is not None
        self.client.write(b"HTTP/1.1 %d %s\r\n%s%s\r\n" % (status, self.reason, b"".join(self.headers), framing))

    def on_body(self, body: bytes) -> None:
        assert self.client is not None
        self.client.write(b"%x\r\n%s\r\n" % (len(body), body) if self.chunked else body)

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        assert client is not None
        if self.chunked:
            client.write(b"0\r\n\r\n")
        client.upstream = None
        if self.parser.should_keep_alive():
            self.pool.append(self)
        elif self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.pool:
            self.pool.remove(self)
        if self.client is not None and self.client.transport is not None:
            self.client.transport.close()


class Client(asyncio.Protocol):
    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.upstream: Upstream | None = None
        self.task: asyncio.Future[None] | None = None

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers: list[bytes] = []
        self.body = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in HOP and name.lower() != b"content-length":
            self.headers.append(b"%s: %s\r\n" % (name, value))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        head = b"%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n%s" % (
            method, self.url, self.proxy.host, b"".join(self.headers), len(self.body), self.body
        )
        up = self.proxy.pool.pop() if self.proxy.pool else None
        if up is not None:  # the common case: no task, no await
            self.upstream = up
            up.start(self, head)
        else:
            self.task = asyncio.ensure_future(self.proxy.send(self, head))

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def pause_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()


class Proxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.addr = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.host = parts.netloc.encode()
        self.pool: list[Upstream] = []

    async def send(self, client: Client, head: bytes) -> None:
        loop = asyncio.get_running_loop()
        _, up = await loop.create_connection(lambda: Upstream(self.pool), *self.addr)
        client.upstream = up
        up.start(client, head)


async def main(port: int, upstream: str) -> None:
    proxy = Proxy(upstream)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Client(proxy), "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY", flush=True)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), sys.argv[2]))

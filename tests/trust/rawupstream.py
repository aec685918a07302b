"""An upstream that records the exact bytes of every request it receives.

The fake upstream in ``tests/fakes.py`` is an aiohttp app: it sees what
aiohttp's parser makes of a request (and refuses raw UTF-8 in a target, as
llhttp does). Protocol tests need the bytes themselves, so this one is a bare
asyncio server: it reads a head up to the blank line, a ``Content-Length``
body, keeps both, and answers ``200 ok``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class RawRequest:
    head: bytes  # request line and headers, up to and including the blank line
    body: bytes

    @property
    def request_line(self) -> bytes:
        return self.head.split(b"\r\n", 1)[0]

    @property
    def method(self) -> str:
        return self.request_line.split(b" ", 1)[0].decode("latin-1")

    @property
    def raw_path(self) -> str:
        """The target as aiohttp would give it: UTF-8 with surrogateescape."""
        return self.request_line.split(b" ")[1].decode("utf-8", "surrogateescape")

    @property
    def headers(self) -> list[tuple[str, str]]:
        out = []
        for line in self.head.split(b"\r\n")[1:]:
            if line:
                name, _, value = line.partition(b":")
                out.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        return out

    def names(self) -> list[str]:
        return [k.lower() for k, _ in self.headers]

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


@dataclass
class RawUpstream:
    port: int = 0
    received: list[RawRequest] = field(default_factory=list)
    server: asyncio.Server | None = None

    def url(self, path: str = "/base") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                length = 0
                chunked = False
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                    elif name.strip().lower() == b"transfer-encoding":
                        chunked = b"chunked" in value.lower()
                body = await _chunked(reader) if chunked else await reader.readexactly(length)
                self.received.append(RawRequest(head, body))
                answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Upstream: raw\r\n\r\n"
                writer.write(answer if head.startswith(b"HEAD ") else answer + b"ok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    """A chunked body, decoded (trailers read and dropped)."""
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return body
        body += (await reader.readexactly(size + 2))[:-2]

"""Helpers for the upstream engine tests: a raw-socket upstream that follows a script."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawUpstream:
    """A TCP server on 127.0.0.1:0; every connection runs the handler ``make(self)`` built.

    ``connections`` counts accepted connections (reuse shows as fewer), and
    ``heads`` keeps every request head read through :func:`read_head`.
    """

    def __init__(self, make: Callable[[RawUpstream], Handler], ssl: Any = None) -> None:
        self.handler = make(self)
        self.ssl = ssl
        self.connections = 0
        self.heads: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> RawUpstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.server is not None
        self.server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()
            self._tasks.discard(task)

    async def read_head(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        return head


def answering(*answers: bytes, then_wait: bool = True) -> Callable[[RawUpstream], Handler]:
    """A handler that reads one request head per answer and writes the answer."""

    def make(up: RawUpstream) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for answer in answers:
                head = await up.read_head(reader)
                length = _content_length(head)
                if length:
                    await reader.readexactly(length)
                writer.write(answer)
                await writer.drain()
            if then_wait:
                await reader.read()  # keep the connection until the client closes it

        return handler

    return make


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0

"""A raw upstream with scripted answers that records the exact bytes it receives.

``tests/trust/rawupstream.py`` always answers ``200 ok``; the listener's
fidelity tests need the upstream to send trailers, obs-text, 1xx answers and
early refusals, byte for byte, so each path here maps to the raw bytes of its
answer. A path in ``early`` is answered as soon as its head arrives (the body
is not awaited: an upstream refusing ``Expect: 100-continue``); a path in
``continue_first`` gets ``100 Continue`` before its body is read.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass
class Seen:
    head: bytes
    body: bytes  # the body as framed on the wire (chunked framing included)
    decoded: bytes  # the body without chunked framing

    @property
    def target(self) -> bytes:
        return self.head.split(b"\r\n", 1)[0].split(b" ")[1]

    def header_lines(self) -> list[bytes]:
        return [line for line in self.head.split(b"\r\n")[1:] if line]

    def header(self, name: bytes) -> list[bytes]:
        out = []
        for line in self.header_lines():
            n, _, v = line.partition(b":")
            if n.lower() == name.lower():
                out.append(v.strip())
        return out


@dataclass
class ScriptedUpstream:
    answers: dict[bytes, bytes] = field(default_factory=dict)  # path (after /base) -> raw answer
    early: set[bytes] = field(default_factory=set)
    continue_first: set[bytes] = field(default_factory=set)
    received: list[Seen] = field(default_factory=list)
    late_body: dict[bytes, int] = field(default_factory=dict)  # body bytes after an early answer
    port: int = 0
    server: asyncio.Server | None = None

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/base"

    async def start(self) -> ScriptedUpstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=1 << 20)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                path = head.split(b" ", 2)[1].removeprefix(b"/base")
                answer = self.answers.get(path.split(b"?")[0], OK)
                length, chunked = _framing(head)
                if path in self.early:
                    writer.write(answer)
                    await writer.drain()
                    self.received.append(Seen(head, b"", b""))
                    got = 0
                    with contextlib.suppress(TimeoutError, ConnectionError):
                        while True:  # count what still arrives (nothing, when Expect worked)
                            more = await asyncio.wait_for(reader.read(65536), 1.0)
                            if not more:
                                break
                            got += len(more)
                    self.late_body[path] = got
                    return
                if path in self.continue_first:
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    await writer.drain()
                if chunked:
                    body, decoded = await _read_chunked(reader)
                else:
                    body = decoded = await reader.readexactly(length)
                self.received.append(Seen(head, body, decoded))
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


def _framing(head: bytes) -> tuple[int, bool]:
    length, chunked = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        elif name.strip().lower() == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    return length, chunked


async def _read_chunked(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    raw, decoded = bytearray(), bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        raw += line
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            while True:  # trailers up to the blank line
                trailer = await reader.readuntil(b"\r\n")
                raw += trailer
                if trailer == b"\r\n":
                    return bytes(raw), bytes(decoded)
        data = await reader.readexactly(size + 2)
        raw += data
        decoded += data[:-2]

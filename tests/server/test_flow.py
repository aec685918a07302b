"""Flow control both ways: a slow side slows the other down instead of filling Signet's memory.

Upload: an upstream that stops reading makes the client's writes stall.
Download: a client that stops reading makes the upstream's writes stall.
Both are observed from outside, as the byte count a side could push before
its writes blocked (socket buffers and Signet's high-water marks, a few MiB),
far below the 256 MiB offered.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from tests.conftest import config_text

OFFERED = 256 * 1024 * 1024
PIECE = b"x" * 65536
LIMIT = 48 * 1024 * 1024  # what may be in flight in kernel buffers plus Signet's queues


async def push_until_blocked(writer: asyncio.StreamWriter, stall: float = 1.5) -> int:
    """Write PIECEs until a drain waits longer than ``stall`` seconds; the bytes written."""
    sent = 0
    while sent < OFFERED:
        writer.write(PIECE)
        sent += len(PIECE)
        try:
            await asyncio.wait_for(writer.drain(), stall)
        except TimeoutError:
            return sent
    return sent


async def test_slow_upstream_pauses_the_client_upload(make_signet: Any) -> None:
    seen_head = asyncio.Event()

    async def sleepy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        seen_head.set()
        await asyncio.sleep(30)  # never reads the body
        writer.close()

    server = await asyncio.start_server(sleepy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        app = await make_signet(config_text([{"name": "up", "prefix": "/up", "upstream": f"http://127.0.0.1:{port}"}]))
        reader, writer = await asyncio.open_connection("127.0.0.1", app.proxy_address[1])
        writer.write(b"PUT /up/big HTTP/1.1\r\nHost: c\r\nContent-Length: %d\r\n\r\n" % OFFERED)
        await asyncio.wait_for(seen_head.wait(), 10)
        sent = await push_until_blocked(writer)
        assert sent < LIMIT, f"Signet kept reading the client: {sent} bytes taken"
        writer.close()
    finally:
        server.close()


async def test_slow_client_pauses_the_upstream_download(make_signet: Any) -> None:
    pushed: list[int] = []

    async def firehose(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % OFFERED)
        with contextlib.suppress(ConnectionError):
            pushed.append(await push_until_blocked(writer))
        writer.close()

    server = await asyncio.start_server(firehose, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        app = await make_signet(config_text([{"name": "up", "prefix": "/up", "upstream": f"http://127.0.0.1:{port}"}]))
        reader, writer = await asyncio.open_connection("127.0.0.1", app.proxy_address[1], limit=65536)
        writer.write(b"GET /up/big HTTP/1.1\r\nHost: c\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200 ")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not pushed:  # the client reads nothing more; the upstream must block
            assert loop.time() < deadline, "the upstream never blocked"
            await asyncio.sleep(0.05)
        assert pushed[0] < LIMIT, f"Signet kept reading the upstream: {pushed[0]} bytes taken"
        writer.close()
    finally:
        server.close()

"""The listener's scanner: heads split across reads, raw UTF-8 targets, the header timer."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import config_text
from tests.server.scripted import ScriptedUpstream


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedUpstream]:
    up = await ScriptedUpstream().start()
    yield up
    await up.close()


async def start(make_signet: Any, up: ScriptedUpstream, **limits: Any) -> int:
    extra = {"limits": limits} if limits else {}
    app = await make_signet(config_text([{"name": "plain", "prefix": "/plain", "upstream": up.url()}], **extra))
    return int(app.proxy_address[1])


async def read_all(reader: asyncio.StreamReader, timeout: float) -> bytes:
    out = bytearray()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (left := deadline - loop.time()) > 0:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), left)
        except (TimeoutError, ConnectionError):
            break
        if not chunk:
            break
        out += chunk
    return bytes(out)


async def test_utf8_target_split_inside_a_character_across_reads(make_signet: Any, scripted: ScriptedUpstream) -> None:
    port = await start(make_signet, scripted)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    line = "GET /plain/caf\u00e9?q=\u00fc\u4e2d HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n".encode()
    cut = line.index(b"\xc3") + 1  # in the middle of the two bytes of "é"
    for piece in (line[:cut], line[cut : cut + 5], line[cut + 5 :]):
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0.05)  # separate reads on Signet's side
    raw = await read_all(reader, 10)
    writer.close()
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:200]
    assert scripted.received[0].target == "/base/caf\u00e9?q=\u00fc\u4e2d".encode()


async def test_invalid_utf8_target_is_400(make_signet: Any, scripted: ScriptedUpstream) -> None:
    port = await start(make_signet, scripted)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /plain/\xc3\x28 HTTP/1.1\r\nHost: c\r\n\r\n")
    raw = await read_all(reader, 10)
    writer.close()
    assert raw.startswith(b"HTTP/1.1 400 ") and b"not valid UTF-8" in raw
    assert scripted.received == []


async def test_header_timer_covers_a_partial_head_behind_a_complete_request(
    make_signet: Any, scripted: ScriptedUpstream
) -> None:
    port = await start(make_signet, scripted, request_header_timeout=1, keepalive_timeout=60)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    writer.write(b"GET /plain/a HTTP/1.1\r\nHost: c\r\n\r\nGET /plain/b HT")  # one write
    await writer.drain()
    raw = await read_all(reader, 15)  # until Signet closes
    writer.close()
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", raw) == [b"200"]
    assert loop.time() - t0 < 10  # closed by the 1 s header timer, not the 60 s keep-alive one
    assert [s.target for s in scripted.received] == [b"/base/a"]


async def test_head_split_byte_by_byte_is_served(make_signet: Any, scripted: ScriptedUpstream) -> None:
    port = await start(make_signet, scripted)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = b"POST /plain/x HTTP/1.1\r\nHost: c\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
    for i in range(len(data)):
        writer.write(data[i : i + 1])
        await writer.drain()
    raw = await read_all(reader, 10)
    writer.close()
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:200]
    assert scripted.received[0].decoded == b"abc"

"""A CONNECT client at the byte level, for the cases real clients never produce on purpose."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from typing import Any

TIMEOUT = 15.0


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """A response head: (status, headers lower-cased, the raw head)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers, head


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """A whole response with a Content-Length or chunked body."""
    status, headers, _ = await read_head(reader)
    if "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), TIMEOUT)
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await asyncio.wait_for(reader.readuntil(b"\r\n"), TIMEOUT)).strip(), 16)
            if size == 0:
                await asyncio.wait_for(reader.readuntil(b"\r\n"), TIMEOUT)
                break
            body += await asyncio.wait_for(reader.readexactly(size + 2), TIMEOUT)
            body = body[:-2]
    else:
        body = await asyncio.wait_for(reader.read(), TIMEOUT)
    return status, headers, body


async def connect(
    port: int, target: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    """Send ``CONNECT target``; the answer's head and body (a refusal's JSON), and the streams."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    status, head, _ = await read_head(reader)
    body = b""
    if "content-length" in head:
        body = await asyncio.wait_for(reader.readexactly(int(head["content-length"])), TIMEOUT)
    return status, head, body, reader, writer


def client_context(ca_file: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    context.set_alpn_protocols(["http/1.1"])
    return context


async def tunnel(
    port: int, host: str, ca_file: Path, headers: dict[str, str] | None = None, sni: str | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """CONNECT host:443, then TLS inside it (SNI ``sni`` or the host)."""
    status, _, body, reader, writer = await connect(port, f"{host}:443", headers)
    assert status == 200, (status, body)
    await asyncio.wait_for(
        writer.start_tls(client_context(ca_file), server_hostname=sni or host), TIMEOUT
    )
    return reader, writer


async def get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str, body: bytes = b""
) -> tuple[int, dict[str, str], Any]:
    method = "POST" if body else "GET"
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
        f"Apikey: the-apps-own-key\r\n\r\n".encode() + body
    )
    status, headers, data = await read_response(reader)
    try:
        return status, headers, json.loads(data)
    except ValueError:
        return status, headers, data

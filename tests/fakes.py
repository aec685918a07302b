"""A fake upstream for the proxy's own tests: a real aiohttp app on loopback.

It records what it received (raw path, headers in wire order, body) so tests
assert on what crossed the proxy, and offers misbehaving endpoints (silent,
slow, reset, huge) for the failure paths.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from aiohttp import web


@dataclass
class Received:
    method: str
    raw_path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


@dataclass
class UpstreamState:
    received: list[Received] = field(default_factory=list)
    connections: int = 0


STATE = web.AppKey("state", UpstreamState)
CHUNK = b"x" * 65536


async def _echo(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = await request.read()
    state.received.append(Received(request.method, request.raw_path, _raw_headers(request), body))
    return web.json_response(
        {
            "method": request.method,
            "raw_path": request.raw_path,
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body_len": len(body),
        },
        headers={"X-Upstream": "fake", "Set-Cookie": "a=b"},
    )


async def _sink(request: web.Request) -> web.StreamResponse:
    """Consume a body of any size without keeping it; answer its length and digest."""
    digest = hashlib.sha256()
    n = 0
    async for chunk in request.content.iter_any():
        digest.update(chunk)
        n += len(chunk)
    state = request.app[STATE]
    state.received.append(Received(request.method, request.raw_path, _raw_headers(request), b""))
    return web.json_response({"body_len": n, "body_sha256": digest.hexdigest()})


async def _stream(request: web.Request) -> web.StreamResponse:
    """GET /stream/<bytes>[?chunked=1]: that many bytes, generated on the fly."""
    size = int(request.match_info["size"])
    resp = web.StreamResponse()
    if request.query.get("chunked") != "1":
        resp.content_length = size
    resp.content_type = "application/octet-stream"
    await resp.prepare(request)
    left = size
    try:
        while left > 0:
            piece = CHUNK if left >= len(CHUNK) else CHUNK[:left]
            await resp.write(piece)
            left -= len(piece)
        await resp.write_eof()
    except ConnectionResetError:  # the proxy went away: expected in abort tests
        pass
    return resp


async def _silent(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


async def _drip(request: web.Request) -> web.StreamResponse:
    """Headers at once, then one byte every `every` seconds."""
    every = float(request.query.get("every", "1"))
    count = int(request.query.get("count", "10"))
    resp = web.StreamResponse()
    await resp.prepare(request)
    for _ in range(count):
        await resp.write(b".")
        await asyncio.sleep(every)
    await resp.write_eof()
    return resp


async def _cut(request: web.Request) -> web.StreamResponse:
    """Promise 1 MB, send 100 KB, then drop the connection."""
    resp = web.StreamResponse()
    resp.content_length = 1_000_000
    await resp.prepare(request)
    await resp.write(b"y" * 100_000)
    assert request.transport is not None
    request.transport.abort()
    return resp


def upstream_app() -> web.Application:
    app = web.Application(client_max_size=1024**4)
    app[STATE] = UpstreamState()
    app.router.add_route("*", "/sink{tail:.*}", _sink)
    app.router.add_get("/stream/{size:\\d+}", _stream)
    app.router.add_route("*", "/silent{tail:.*}", _silent)
    app.router.add_get("/drip", _drip)
    app.router.add_get("/cut", _cut)
    app.router.add_route("*", "/{tail:[\\s\\S]*}", _echo)  # any decoded path, CR/LF included
    return app


def dumps(obj: object) -> str:
    return json.dumps(obj)


def _raw_headers(request: web.Request) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]


def free_port() -> int:
    """A port the kernel just handed out, for servers that cannot bind port 0 and report it
    (redis-server, bao, tinyproxy): bound, read, released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PeakRss:
    """A process's peak RSS while the ``with`` block runs: ``growth = peak - base``.

    A thread samples RSS every 20 ms; on exit the kernel's high-water mark
    (``VmHWM``) replaces the sampled peak when it rose during the block, so a
    short spike between samples is not missed.
    """

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.base = self.proc.memory_info().rss
        self.hwm_before = self._hwm()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _hwm(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        hwm = self._hwm()
        if hwm > self.hwm_before:  # the kernel saw a new peak during the block: it is exact
            self.peak = max(self.peak, hwm)

    @property
    def growth(self) -> int:
        return self.peak - self.base

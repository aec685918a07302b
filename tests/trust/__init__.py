"""Trust tests: inbound auth, limits, faults, hostile input, secret hygiene, soak.

Shared helpers: a raw HTTP/1.1 exchange over a socket (for what aiohttp's
client refuses to send), the in-process log reader, and a leak check.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from tests.conftest import LOG_DIR

STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3}) [^\r\n]*\r\n")


@dataclass
class RawResponse:
    status: int | None  # None: the connection closed without a response
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    raw: bytes = b""
    closed: bool = False  # the server closed the connection after the response

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_exchange(
    port: int,
    data: bytes,
    *,
    timeout: float = 10.0,
    linger: float = 2.0,
    host: str = "127.0.0.1",
) -> RawResponse:
    """Send bytes, read until the server closes (or the timeout), parse one response."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        chunks = []
        closed = False
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                chunk = await asyncio.wait_for(reader.read(65536), left)
            except TimeoutError:
                break
            except ConnectionError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            chunks.append(chunk)
            if _complete(b"".join(chunks)):
                # a whole response: see whether the server closes right after it
                try:
                    more = await asyncio.wait_for(reader.read(65536), min(linger, max(left, 0.01)))
                    closed = not more
                    chunks.append(more)
                except TimeoutError:
                    pass
                except ConnectionError:
                    closed = True
                break
        return parse_response(b"".join(chunks), closed)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


def _complete(raw: bytes) -> bool:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
    return bool(m) and len(body) >= int(m.group(1))


def parse_response(raw: bytes, closed: bool) -> RawResponse:
    m = STATUS_LINE.match(raw)
    if not m:
        return RawResponse(None, raw=raw, closed=closed)
    head, _, body = raw.partition(b"\r\n\r\n")
    headers: dict[str, str] = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
    if "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return RawResponse(int(m.group(1)), headers, body, raw, closed)


def in_process_events(since: int = 0) -> list[dict[str, Any]]:
    """JSON log events written by in-process Signets (conftest logs to a file)."""
    out = []
    text = (LOG_DIR / "in-process.log").read_text(errors="replace")
    for line in text[since:].splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def log_offset() -> int:
    return len((LOG_DIR / "in-process.log").read_text(errors="replace"))


async def wait_for_event(pred: Any, since: int = 0, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in in_process_events(since):
            if pred(e):
                return e
        await asyncio.sleep(0.05)
    raise AssertionError(
        "expected log event not found; got:\n"
        + "\n".join(json.dumps(e) for e in in_process_events(since)[-20:])
    )


async def wait_until(pred: Any, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def tracked(*types: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, types))


def num_fds() -> int:
    return psutil.Process(os.getpid()).num_fds()


def pooled_connections(app: Any) -> tuple[int, int]:
    """(idle pooled, acquired) upstream connections over every route's pool."""
    pools = {id(r.pool): r.pool for r in app.runtime.routes}.values()
    return sum(p.idle_count for p in pools), sum(p.active_count for p in pools)


def route_state(app: Any) -> tuple[int, int]:
    """(requests active in the runtime, sum of per-route in-flight counters)."""
    return app.runtime.active, sum(r.in_flight for r in app.runtime.routes)

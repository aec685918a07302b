"""Finding 7 (trust round 3): bodies a scheme must buffer are bounded per client, per second, per process.

Real ``signet serve`` processes, raw sockets that drip-feed or stall their
uploads, a vendor that counts what reaches it:

- ``limits.client_uploads``: a client (or, without ``clients``, a remote
  address) with 4 bodies in buffering gets ``429 rate_limited`` for a fifth
  that Signet would have to wait for (a body already in hand takes no slot;
  one behind ``Expect: 100-continue`` is refused before its ``100``); others
  are not affected;
- ``limits.min_upload_rate``: a drip-fed body is ``408 body_timeout`` once
  ``min_upload_rate_after`` has passed, instead of holding its slot for minutes;
- ``limits.body_memory``: past the process-wide budget a body goes to a spool
  file at once, and memory returns after a burst of stalled uploads (RSS
  before, during and after is printed and bounded).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from aiohttp import web
from yarl import URL

from tests.conftest import config_text, secret

MiB = 1024 * 1024
TEAM = secret("upload-bounds-team-token-6a1f0c")
OTHER = secret("upload-bounds-other-token-2d9e4b")


@pytest.fixture
async def vendor(aiohttp_server: Any) -> Any:
    async def sized(request: web.Request) -> web.Response:
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
        return web.json_response({"size": size})

    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/{tail:.*}", sized)
    return await aiohttp_server(app, host="127.0.0.1")


def config(vendor: Any, *, clients: bool = True, spool: Path | None = None, **limits: Any) -> str:
    route = {
        "name": "tc",
        "prefix": "/tc",
        "upstream": str(vendor.make_url("")).rstrip("/"),
        "auth": {"scheme": "threecommas", "api_key": "k", "secret": "s"},  # signs the body: buffers it
        "max_body_bytes": 64 * MiB,
    }
    top: dict[str, Any] = {"limits": {"request_header_timeout": 30, **limits}}
    if clients:
        top["clients"] = [{"name": "team", "token": "${TEAM}"}, {"name": "other", "token": "${OTHER}"}]
    if spool is not None:
        top["defaults"] = {"spool_dir": str(spool)}
    return config_text([route], **top)


def address(url: str) -> tuple[str, int]:
    u = URL(url)
    assert u.host is not None and u.port is not None
    return u.host, u.port


def upload(
    addr: tuple[str, int], length: int, send: int, token: str | None = None, source: str = "127.0.0.1"
) -> socket.socket:
    """A raw client that declares ``length`` body bytes and sends ``send`` of them at once."""
    sock = socket.create_connection(addr, timeout=30, source_address=(source, 0))
    auth = f"Proxy-Authorization: Bearer {token}\r\n" if token else ""
    head = f"POST /tc/x HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {length}\r\n\r\n".encode()
    sock.sendall(head + b"\0" * send)
    return sock


def answer(sock: socket.socket, timeout: float = 15.0) -> tuple[int, bytes]:
    """The status and the whole head+body received until the connection closes or the body ends."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            break
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"content-length: *(\d+)", head, re.I)
    while m and len(body) < int(m.group(1)):
        more = sock.recv(65536)
        if not more:
            break
        body += more
    return int(data.split(b" ", 2)[1]), head + b"\r\n\r\n" + body


def first_answer(socks: list[socket.socket], timeout: float = 15.0) -> int:
    """Index of the first socket with something to read."""
    import select

    readable, _, _ = select.select(socks, [], [], timeout)
    assert readable, "no socket got an answer"
    return socks.index(readable[0])


async def gauge(admin_url: str, name: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(admin_url + "/metrics") as r:
        text = await r.text()
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    assert m, name
    return float(m.group(1))


async def wait_gauge(admin_url: str, name: str, ok: Callable[[float], bool], timeout: float = 20.0) -> float:
    deadline = time.monotonic() + timeout
    while True:
        value = await gauge(admin_url, name)
        if ok(value):
            return value
        assert time.monotonic() < deadline, f"{name} stayed at {value}"
        await asyncio.sleep(0.05)


def spool_fds(pid: int) -> int:
    count = 0
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if "signet-body-" in os.readlink(entry):
                count += 1
        except OSError:
            continue
    return count


def test_the_contract_defaults() -> None:
    from proxy.config import LimitsModel

    limits = LimitsModel()
    assert limits.client_uploads == 4
    assert limits.min_upload_rate == 64 * 1024 and limits.min_upload_rate_after == 10.0
    assert limits.body_memory == 256 * MiB
    spelled = LimitsModel.model_validate(
        {"min_upload_rate": "1MiB/s", "body_memory": "1GiB", "min_upload_rate_after": "500ms"}
    )
    assert (spelled.min_upload_rate, spelled.body_memory) == (MiB, 1024 * MiB)
    assert spelled.min_upload_rate_after == 0.5


# ------------------------------------------------------------ client_uploads


@pytest.mark.parametrize("keyed_by", ["client", "address"])
async def test_a_client_holds_at_most_client_uploads_bodies(
    vendor: Any, signet_process: Any, keyed_by: str
) -> None:
    with_clients = keyed_by == "client"
    p = signet_process(config(vendor, clients=with_clients), env={"TEAM": TEAM, "OTHER": OTHER})
    addr = address(p.proxy_url)
    token = TEAM if with_clients else None
    held = [await asyncio.to_thread(upload, addr, MiB, 10, token) for _ in range(4)]
    await wait_gauge(p.admin_url, "signet_uploads_buffering", lambda v: v == 4)
    fifth = await asyncio.to_thread(upload, addr, MiB, 10, token)
    status, raw = await asyncio.to_thread(answer, fifth)
    fifth.close()
    assert status == 429, raw
    assert b"X-Signet-Error: rate_limited" in raw and b"Retry-After: 1\r\n" in raw
    assert b"limits.client_uploads" in raw

    # a body already in hand (a small one, in the same write as its head) never waits: no slot
    small = await asyncio.to_thread(upload, addr, 1500, 1500, token)
    status, raw = await asyncio.to_thread(answer, small)
    small.close()
    assert status == 200 and raw.endswith(b'{"size": 1500}'), raw
    # a client waiting for our 100 is counted before it is told to send: refused at once
    sock = socket.create_connection(addr, timeout=30)
    auth = f"Proxy-Authorization: Bearer {token}\r\n" if token else ""
    sock.sendall(
        f"POST /tc/x HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 5000\r\n"
        "Expect: 100-continue\r\n\r\n".encode()
    )
    status, raw = await asyncio.to_thread(answer, sock)
    sock.close()
    assert status == 429 and b"limits.client_uploads" in raw, raw

    # someone else is not affected: another client, or another address
    other = (
        await asyncio.to_thread(upload, addr, 2000, 2000, OTHER)
        if with_clients
        else await asyncio.to_thread(upload, addr, 2000, 2000, None, "127.0.0.2")
    )
    status, raw = await asyncio.to_thread(answer, other)
    other.close()
    assert status == 200 and raw.endswith(b'{"size": 2000}'), raw

    # one held upload completes: its slot is free again
    held[0].sendall(b"\0" * (MiB - 10))
    status, raw = await asyncio.to_thread(answer, held[0])
    assert status == 200 and raw.endswith(b'{"size": %d}' % MiB), raw
    again = await asyncio.to_thread(upload, addr, 3000, 3000, token)
    status, raw = await asyncio.to_thread(answer, again)
    assert status == 200, raw
    for sock in (*held, again):
        sock.close()
    await wait_gauge(p.admin_url, "signet_uploads_buffering", lambda v: v == 0)
    await wait_gauge(p.admin_url, "signet_body_memory_bytes", lambda v: v == 0)


# ------------------------------------------------------------ min_upload_rate


async def test_a_drip_fed_body_is_cut_by_min_upload_rate(vendor: Any, signet_process: Any) -> None:
    """Eight drip-fed uploads held a route's slots for 40 s; now each is 408 once the grace is over."""
    p = signet_process(
        config(vendor, clients=False, client_uploads=8, min_upload_rate="64KiB/s",
               min_upload_rate_after="1s", body_read_timeout=60),
    )
    addr = address(p.proxy_url)
    socks = [await asyncio.to_thread(upload, addr, MiB, 100) for _ in range(8)]
    t0 = time.monotonic()

    async def drip(sock: socket.socket) -> tuple[int, bytes]:
        """One byte every 100 ms (10 B/s) until Signet answers."""
        for _ in range(300):
            ready = await asyncio.to_thread(first_answer_or_none, sock, 0.1)
            if ready:
                return await asyncio.to_thread(answer, sock)
            try:
                sock.sendall(b"\0")
            except OSError:
                return await asyncio.to_thread(answer, sock)
        raise AssertionError("no answer to a drip-fed upload within 30 s")

    results = await asyncio.gather(*(drip(s) for s in socks))
    took = time.monotonic() - t0
    for sock in socks:
        sock.close()
    for status, raw in results:
        assert status == 408, raw
        assert b"X-Signet-Error: body_timeout" in raw and b"limits.min_upload_rate" in raw
    assert took < 15, took  # not the 60 s body_read_timeout, let alone forever

    # an upload at a normal rate still goes through
    fast = await asyncio.to_thread(upload, addr, 4 * MiB, 4 * MiB)
    status, raw = await asyncio.to_thread(answer, fast)
    fast.close()
    assert status == 200 and raw.endswith(b'{"size": %d}' % (4 * MiB)), raw


def first_answer_or_none(sock: socket.socket, timeout: float) -> bool:
    import select

    readable, _, _ = select.select([sock], [], [], timeout)
    return bool(readable)


# ------------------------------------------------------------ body_memory


async def test_past_body_memory_bodies_spool_at_once(
    vendor: Any, signet_process: Any, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    p = signet_process(config(vendor, clients=False, spool=spool, body_memory="2MiB"))
    pid = p.proc.pid
    addr = address(p.proxy_url)
    size, first = 1000 * 1000, 900 * 1000  # each under spool_bytes (1 MiB): in memory if it may
    a = await asyncio.to_thread(upload, addr, size, first)
    b = await asyncio.to_thread(upload, addr, size, first)
    await wait_gauge(p.admin_url, "signet_body_memory_bytes", lambda v: v == 2 * first)
    assert spool_fds(pid) == 0
    c = await asyncio.to_thread(upload, addr, size, first)  # the budget is spent: to a file
    deadline = time.monotonic() + 20
    while spool_fds(pid) != 1:
        assert time.monotonic() < deadline, "the third body was not spooled"
        await asyncio.sleep(0.02)
    assert await gauge(p.admin_url, "signet_body_memory_bytes") == 2 * first
    for sock in (a, b, c):
        sock.sendall(b"\0" * (size - first))
    for sock in (a, b, c):
        status, raw = await asyncio.to_thread(answer, sock)
        sock.close()
        assert status == 200 and raw.endswith(b'{"size": %d}' % size), raw
    await wait_gauge(p.admin_url, "signet_body_memory_bytes", lambda v: v == 0)


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


async def test_memory_returns_after_a_burst_of_stalled_uploads(
    vendor: Any, signet_process: Any
) -> None:
    """150 stalled 1 MB uploads (the red team saw 75 -> 313 MiB, and 305 MiB after they closed)."""
    n, size, sent = 150, 2 * 1000 * 1000, 1000 * 1000
    p = signet_process(config(vendor, clients=False, client_uploads=n))
    pid = p.proc.pid
    addr = address(p.proxy_url)
    warm = await asyncio.to_thread(upload, addr, 4096, 4096)
    assert (await asyncio.to_thread(answer, warm))[0] == 200
    warm.close()
    before = rss(pid)
    socks = [await asyncio.to_thread(upload, addr, size, sent) for _ in range(n)]
    # every body is buffered (in memory up to spool_bytes, the rest nothing: they stall)
    await wait_gauge(p.admin_url, "signet_body_memory_bytes", lambda v: v == n * sent, timeout=60)
    during = rss(pid)
    for sock in socks:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # RST
        sock.close()
    await wait_gauge(p.admin_url, "signet_uploads_buffering", lambda v: v == 0)
    await wait_gauge(p.admin_url, "signet_body_memory_bytes", lambda v: v == 0)
    deadline = time.monotonic() + 20
    while (after := rss(pid)) - before > 32 * MiB and time.monotonic() < deadline:
        await asyncio.sleep(0.1)  # freed memory goes back to the kernel within moments
    print(
        f"\nRSS with {n} stalled uploads of {sent} bytes: before {before / MiB:.0f} MiB, "
        f"during {during / MiB:.0f} MiB, after close {after / MiB:.0f} MiB"
    )
    assert during - before >= n * sent * 0.8  # the bodies were really held
    assert after - before <= 32 * MiB, (before, during, after)

"""200 tunnels at once, each with a signed request, then all closed: nothing is left behind.

Signet runs in this process (so its tasks and sockets can be counted); the
vendor is the loopback HTTPS mock, the clients raw CONNECT + TLS streams.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psutil
import trustme

from tests.forward import rawclient
from tests.forward.conftest import SECRETS_ENV, Vendor, forward_config, threecommas_route

HOST = "api.vendor.example"
TUNNELS = 200


def _sockets_on(port: int) -> int:
    """Accepted client sockets on Signet's proxy port still open in this process."""
    return sum(
        1
        for c in psutil.Process().net_connections(kind="tcp")
        if c.laddr and c.laddr.port == port and c.raddr
    )


def _signet_tasks() -> list[asyncio.Task[Any]]:
    """The tasks of this process but the vendor's (aiohttp's server keeps one per keep-alive
    connection, and Signet's upstream pool keeps its connections to the vendor open)."""
    return [t for t in asyncio.all_tasks() if "aiohttp" not in _file_of(t)]


def _file_of(task: asyncio.Task[Any]) -> str:
    code = getattr(task.get_coro(), "cr_code", None)
    return code.co_filename if code is not None else ""


async def _until(condition: Any, timeout: float = 20.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_200_concurrent_tunnels_then_closed_leave_no_task_or_socket(
    make_signet: Any, vendor: Vendor, signet_ca: Path, vendor_tls: tuple[trustme.CA, Path]
) -> None:
    text = forward_config(signet_ca, vendor_tls[1], [threecommas_route(vendor)])
    app = await make_signet(text, env=SECRETS_ENV)
    port = app.proxy_address[1]
    ca_file = signet_ca / "ca.pem"

    # warm up: the leaf is minted and the upstream pool has a connection
    reader, writer = await rawclient.tunnel(port, HOST, ca_file)
    assert (await rawclient.get(reader, writer, HOST, "/warm"))[0] == 200
    writer.close()
    assert await _until(lambda: _sockets_on(port) == 0)
    baseline_tasks = len(_signet_tasks())

    async def one(i: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int, Any]:
        reader, writer = await rawclient.tunnel(port, HOST, ca_file)
        status, _, answer = await rawclient.get(reader, writer, HOST, f"/t/{i}?n={i}", body=b"x" * i)
        return reader, writer, status, answer

    opened = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(TUNNELS))), 120)
    assert [s for _, _, s, _ in opened] == [200] * TUNNELS
    assert all(a["signed"] and a["raw_path"] == f"/t/{i}?n={i}" for i, (_, _, _, a) in enumerate(opened))
    assert _sockets_on(port) == TUNNELS  # every tunnel still open, kept alive

    for _, writer, _, _ in opened:
        writer.close()
    assert await _until(lambda: _sockets_on(port) == 0), f"{_sockets_on(port)} tunnels left open"
    assert await _until(lambda: len(_signet_tasks()) <= baseline_tasks), (
        f"{len(_signet_tasks()) - baseline_tasks} tasks left: {_signet_tasks()}"
    )
    listener = app.listener
    assert listener is not None and await _until(lambda: not listener.connections)

"""`signet serve --workers 2`: one port, two processes, signals fanned out, merged metrics."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import aiohttp

from tests.conftest import config_text


def _routes(upstream: Any) -> list[dict[str, Any]]:
    return [
        {"name": "up", "prefix": "/up", "upstream": str(upstream.make_url("")), "auth": {"scheme": "none"}}
    ]


async def _request_on_new_connection(url: str) -> int:
    connector = aiohttp.TCPConnector(force_close=True)  # a new connection: SO_REUSEPORT picks a worker
    async with aiohttp.ClientSession(connector=connector) as s, s.get(url) as r:
        await r.read()
        return r.status


async def test_two_workers_share_one_port_reload_and_exit_0(signet_process: Any, upstream: Any) -> None:
    p = signet_process(config_text(_routes(upstream), shutdown_grace=3), args=["--workers", "2"])
    events = p.events()
    workers = [e for e in events if e.get("event") == "worker_listening"]
    assert len(workers) == 2, events
    pids = {e["pid"] for e in workers}
    assert len(pids) == 2 and p.proc.pid not in pids
    assert {e["proxy"] for e in workers} == {p.proxy_url.removeprefix("http://")}
    listening = next(e for e in events if e.get("event") == "listening")
    assert sorted(listening["worker_pids"]) == sorted(pids)

    # both workers answer on the one port (bounded: the kernel hashes connections at random)
    seen: set[int] = set()
    for _ in range(40):
        statuses = await asyncio.gather(
            *(_request_on_new_connection(p.proxy_url + "/up/x") for _ in range(10))
        )
        assert set(statuses) == {200}
        await asyncio.sleep(0.05)  # a request line is written just after its response
        seen = {e["pid"] for e in p.events() if e.get("event") == "request"}
        if seen == pids:
            break
    assert seen == pids, f"requests reached only {seen} of {pids}"

    async with aiohttp.ClientSession() as s:
        async with s.get(p.admin_url + "/healthz") as r:
            assert r.status == 200
        async with s.get(p.admin_url + "/readyz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ready"
        async with s.get(p.admin_url + "/metrics") as r:
            text = await r.text()
    assert r.status == 200
    assert 'worker="0"' in text and 'worker="1"' in text, text
    assert "signet_requests_total{" in text

    # SIGHUP reaches both workers
    p.signal(signal.SIGHUP)
    for _ in range(300):  # bounded: 15 s, generous for a loaded CI machine
        reloaded = {e.get("pid") for e in p.events() if e.get("event") == "reloaded"}
        if reloaded == pids:
            break
        await asyncio.sleep(0.05)
    assert reloaded == pids, p.text()

    # SIGTERM: all drain and the supervisor exits 0; no worker left behind
    assert p.stop() == 0, p.text()
    stopped = {e.get("pid") for e in p.events() if e.get("event") == "stopped" and "pid" in e}
    assert stopped == pids
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"worker {pid} still running")

"""`signet serve --workers 2` without shared state: each worker holds half of each limit."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import aiohttp

from tests.conftest import config_text
from tests.fakes import STATE


async def test_each_worker_admits_its_share(signet_process: Any, upstream: Any) -> None:
    route = {
        "name": "q",
        "prefix": "/q",
        "upstream": str(upstream.make_url("/base")),
        # per worker: 1 per 0.2 s, burst 1 (2 workers x (1 + 1) = the configured burst 3, + 1)
        "rate_limit": {"requests": 10, "per": "1s", "burst": 3},
    }
    p = signet_process(config_text([route]), args=["--workers", "2", "--log-level", "info"])
    window = 2.0
    deadline = time.monotonic() + window
    first = last = 0.0

    async def worker() -> None:
        nonlocal first, last
        connector = aiohttp.TCPConnector(force_close=True)  # new connections: both workers get some
        async with aiohttp.ClientSession(connector=connector) as s:
            while (now := time.monotonic()) < deadline:
                first = first or now
                last = now
                async with s.get(p.proxy_url + "/q/x") as r:
                    await r.read()
                    assert r.status in (200, 429)
                await asyncio.sleep(0.005)

    await asyncio.gather(*(worker() for _ in range(4)))
    await asyncio.sleep(0.3)  # request lines are written just after the responses
    admitted: dict[int, int] = {}
    for e in p.events():
        if e.get("event") == "request" and e.get("status") == 200:
            admitted[e["pid"]] = admitted.get(e["pid"], 0) + 1
    total = len(upstream.app[STATE].received)
    assert sum(admitted.values()) == total
    per_worker = 2 + math.floor((last - first) / 0.2)  # requests/N: one per 0.2 s, 2 at once
    print(f"workers admitted {admitted} (each may {per_worker}); total {total}, configured {4 + 10 * window:g}")
    assert len(admitted) == 2, admitted  # both workers saw traffic
    for n in admitted.values():
        assert abs(n - per_worker) <= 1, (admitted, per_worker)
    assert total <= 10 * window + 4 + 1  # the fleet stays within the configured rate and burst

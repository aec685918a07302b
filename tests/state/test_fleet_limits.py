"""Two real `signet serve` processes sharing one real Redis: one budget per limit.

Admissions are counted at the fake vendor. Redis is stopped mid-run and
restarted: ``on_error: allow`` falls back to per-process budgets (the fleet
then admits more), ``deny`` answers 503 ``state_unavailable``; once Redis is
back the fleet shares one budget again.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import config_text, secret
from tests.redisserver import RedisServer

TEAM = secret("team-token-fleet-limits-3e8a1c5b")
ENV = {"TEAM": TEAM}


@dataclass
class Vendor:
    seen: list[float] = field(default_factory=list)  # monotonic arrival times


VENDOR = web.AppKey("vendor", Vendor)


@pytest.fixture
async def vendor(aiohttp_server: Any) -> Any:
    app = web.Application()
    app[VENDOR] = Vendor()

    async def handle(request: web.Request) -> web.Response:
        request.app[VENDOR].seen.append(time.monotonic())
        return web.json_response({"ok": True})

    app.router.add_route("*", "/{tail:.*}", handle)
    return await aiohttp_server(app, host="127.0.0.1")


def config(
    vendor: Any, redis_url: str, on_error: str = "allow", *,
    route_limit: dict[str, Any] | None = None, client_limit: dict[str, Any] | None = None,
) -> str:
    route: dict[str, Any] = {"name": "v", "prefix": "/v", "upstream": str(vendor.make_url("/api"))}
    team: dict[str, Any] = {"name": "team", "token": "${TEAM}"}
    if route_limit:
        route["rate_limit"] = route_limit
    if client_limit:
        team["rate_limit"] = client_limit
    return config_text(
        [route], clients=[team], state={"redis": redis_url, "on_error": on_error}
    )


async def hammer(urls: list[str], seconds: float, per_url: int = 3) -> tuple[dict[int, int], float]:
    """Requests on ``per_url`` connections to each URL for ``seconds``: statuses, last send time."""
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds
    last_sent = 0.0

    async def worker(s: aiohttp.ClientSession, url: str) -> None:
        nonlocal last_sent
        while (now := time.monotonic()) < deadline:
            last_sent = max(last_sent, now)
            async with s.get(url, headers={"Proxy-Authorization": f"Bearer {TEAM}"}) as r:
                await r.read()
                statuses[r.status] = statuses.get(r.status, 0) + 1
            await asyncio.sleep(0.005)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        await asyncio.gather(*(worker(s, u) for u in urls for _ in range(per_url)))
    return statuses, last_sent


def expected(seen: list[float], last_sent: float, rate: float, burst: int) -> int:
    """What one exact budget admits from the first admission to the last attempt."""
    return burst + 1 + math.floor((last_sent - seen[0]) * rate)


async def window(vendor: Any, urls: list[str], seconds: float) -> tuple[int, dict[int, int], list[float], float]:
    seen = vendor.app[VENDOR].seen
    seen.clear()
    statuses, last_sent = await hammer(urls, seconds)
    return len(seen), statuses, list(seen), last_sent


@pytest.mark.parametrize(
    ("kind", "requests", "per", "burst"), [("route", 10, 1.0, 3), ("client", 12, 2.0, 2)]
)
async def test_two_processes_share_one_budget(
    signet_process: Any, vendor: Any, redis_server: RedisServer,
    kind: str, requests: int, per: float, burst: int,
) -> None:
    limit = {"requests": requests, "per": f"{per:g}s", "burst": burst}
    text = (
        config(vendor, redis_server.url, route_limit=limit)
        if kind == "route"
        else config(vendor, redis_server.url, client_limit=limit)
    )
    fleet = [signet_process(text, env=ENV) for _ in range(2)]
    admitted, statuses, seen, last_sent = await window(vendor, [p.proxy_url + "/v/x" for p in fleet], 2.5)
    want = expected(seen, last_sent, requests / per, burst)
    print(f"\nfleet of 2, {kind} limit {requests}/{per:g}s burst {burst}: admitted {admitted}, "
          f"exact budget {want}; {statuses}")
    assert statuses.get(200, 0) == admitted
    assert abs(admitted - want) <= 1, (admitted, want, statuses)
    assert statuses.get(429, 0) > admitted  # both processes were really pressing


async def test_outage_allow_falls_back_per_process_and_resumes(
    signet_process: Any, vendor: Any, redis_server: RedisServer
) -> None:
    rate, burst = 5.0, 0
    text = config(vendor, redis_server.url, "allow", route_limit={"requests": 5, "per": "1s"})
    fleet = [signet_process(text, env=ENV) for _ in range(2)]
    urls = [p.proxy_url + "/v/x" for p in fleet]

    admitted, statuses, seen, last = await window(vendor, urls, 1.6)
    shared = expected(seen, last, rate, burst)
    assert abs(admitted - shared) <= 1, ("shared", admitted, shared, statuses)

    redis_server.stop()
    admitted, statuses, seen, last = await window(vendor, urls, 1.6)
    one = expected(seen, last, rate, burst)
    assert set(statuses) <= {200, 429}, statuses  # allow: never a 503
    # each process now holds the whole budget for itself: about twice the shared rate
    assert 2 * one - 3 <= admitted <= 2 * one + 1, ("fallback", admitted, one, statuses)
    for p in fleet:
        down = [e for e in p.events() if e.get("event") == "state_unavailable"]
        assert 1 <= len(down) <= 2, down  # logged once (per LOG_EVERY), not per request
        assert down[0]["op"] == "limit" and down[0]["on_error"] == "allow"
        async with aiohttp.ClientSession() as s, s.get(p.admin_url + "/metrics") as r:
            text_m = await r.text()
        counted = [ln for ln in text_m.splitlines() if ln.startswith('signet_state_errors_total{op="limit"}')]
        assert counted and float(counted[0].rsplit(" ", 1)[1]) >= 10  # every fallback is counted

    redis_server.start()
    for p in fleet:
        p.wait_event("state_recovered", timeout=20)
    admitted, statuses, seen, last = await window(vendor, urls, 1.6)
    shared = expected(seen, last, rate, burst)
    assert abs(admitted - shared) <= 1, ("resumed", admitted, shared, statuses)


async def test_outage_deny_answers_503_and_resumes(
    signet_process: Any, vendor: Any, redis_server: RedisServer
) -> None:
    text = config(vendor, redis_server.url, "deny", route_limit={"requests": 50, "per": "1s", "burst": 10})
    p = signet_process(text, env=ENV)
    headers = {"Proxy-Authorization": f"Bearer {TEAM}"}
    async with aiohttp.ClientSession() as s:
        async with s.get(p.proxy_url + "/v/x", headers=headers) as r:
            assert r.status == 200
        redis_server.stop()
        before = len(vendor.app[VENDOR].seen)
        for _ in range(3):
            async with s.get(p.proxy_url + "/v/x", headers=headers) as r:
                body = await r.json()
                assert r.status == 503, body
                assert r.headers["X-Signet-Error"] == "state_unavailable"
                assert body["error"]["code"] == "state_unavailable"
        assert len(vendor.app[VENDOR].seen) == before  # nothing reached the vendor
        redis_server.start()
        p.wait_event("state_recovered", timeout=20)
        async with s.get(p.proxy_url + "/v/x", headers=headers) as r:
            assert r.status == 200


async def test_workers_share_the_whole_budget_through_redis(
    signet_process: Any, vendor: Any, redis_server: RedisServer
) -> None:
    # without Redis each of 2 workers would hold 1/2 of the limit; with it they share all of it
    text = config(vendor, redis_server.url, route_limit={"requests": 10, "per": "1s", "burst": 3})
    p = signet_process(text, env=ENV, args=["--workers", "2", "--log-level", "info"])
    seen = vendor.app[VENDOR].seen
    deadline = time.monotonic() + 2.0
    last = 0.0
    statuses: dict[int, int] = {}

    async def worker() -> None:
        nonlocal last
        connector = aiohttp.TCPConnector(force_close=True)  # new connections: both workers get some
        async with aiohttp.ClientSession(connector=connector) as s:
            while (now := time.monotonic()) < deadline:
                last = max(last, now)
                async with s.get(p.proxy_url + "/v/x", headers={"Proxy-Authorization": f"Bearer {TEAM}"}) as r:
                    await r.read()
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                await asyncio.sleep(0.005)

    await asyncio.gather(*(worker() for _ in range(4)))
    want = expected(seen, last, 10.0, 3)
    assert abs(len(seen) - want) <= 1, (len(seen), want, statuses)
    await asyncio.sleep(0.3)  # request lines are written just after the responses
    pids = {e["pid"] for e in p.events() if e.get("event") == "request" and e.get("status") == 200}
    assert len(pids) == 2, pids  # both workers admitted some
    # ... from the one budget in Redis (not two halves held by the workers)
    with redis_server.client() as r:
        assert r.exists("signet:rl:{route:v}:tat")
    assert not [e for e in p.events() if e.get("event") == "state_unavailable"]

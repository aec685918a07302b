"""Rate limits through a real Signet, counted at the fake vendor.

Windows are short (2-3 s) and rates moderate, with a small burst where the
count must be exact: a loaded 2-core machine can stall the loop for a
moment, and a burst absorbs that without changing what the limit admits.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import config_text, secret

TEAM = secret("team-token-ratelimit-5d1e9f3a7c")
OTHER = secret("other-token-ratelimit-8b2c6a0e4d")
ENV = {"TEAM": TEAM, "OTHER": OTHER}


@dataclass
class Vendor:
    seen: list[tuple[str, float]] = field(default_factory=list)  # (raw path, monotonic time)


VENDOR = web.AppKey("vendor", Vendor)


async def _handle(request: web.Request) -> web.Response:
    request.app[VENDOR].seen.append((request.raw_path, time.monotonic()))
    if "delay" in request.query:
        await asyncio.sleep(float(request.query["delay"]))
    if request.path.endswith("/throttle"):
        return web.json_response(
            {"vendor": "slow down"}, status=429, headers={"Retry-After": request.query["ra"]}
        )
    return web.json_response({"ok": True})


@pytest.fixture
async def vendor(aiohttp_server: Any) -> Any:
    app = web.Application()
    app[VENDOR] = Vendor()
    app.router.add_route("*", "/{tail:.*}", _handle)
    return await aiohttp_server(app, host="127.0.0.1")


def config(vendor: Any, route_limit: Any = None, client_limit: Any = None) -> str:
    route: dict[str, Any] = {"name": "v", "prefix": "/v", "upstream": str(vendor.make_url("/api"))}
    if route_limit:
        route["rate_limit"] = route_limit
    team: dict[str, Any] = {"name": "team", "token": "${TEAM}"}
    if client_limit:
        team["rate_limit"] = client_limit
    clients = [team, {"name": "other", "token": "${OTHER}"}]
    return config_text([route], clients=clients)


def auth(token: str) -> dict[str, str]:
    return {"Proxy-Authorization": f"Bearer {token}"}


async def hammer(url: str, token: str, seconds: float, concurrency: int = 4) -> tuple[dict[int, int], float]:
    """Send requests on `concurrency` connections for `seconds`; count statuses.

    Also returns when the last request was sent (monotonic).
    """
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds
    last_sent = 0.0

    async def worker(s: aiohttp.ClientSession) -> None:
        nonlocal last_sent
        while (now := time.monotonic()) < deadline:
            last_sent = max(last_sent, now)
            async with s.get(url, headers=auth(token)) as r:
                await r.read()
                statuses[r.status] = statuses.get(r.status, 0) + 1
            await asyncio.sleep(0.004)  # ~1000 attempts/s in all: pressure without burning the CPU

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as s:
        await asyncio.gather(*(worker(s) for _ in range(concurrency)))
    return statuses, last_sent


async def metrics_text(app: Any) -> str:
    async with aiohttp.ClientSession() as s, s.get(app.admin_url + "/metrics") as r:
        return await r.text()


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of every series of ``name`` carrying these labels."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items())
    )


@pytest.mark.parametrize(
    ("kind", "requests", "per", "burst", "window"),
    [("route", 10, "1s", 3, 2.5), ("client", 20, "2s", 2, 2.0)],
)
async def test_admitted_count_within_one_of_the_configured_rate(
    make_signet: Any, vendor: Any, kind: str, requests: int, per: str, burst: int, window: float
) -> None:
    limit = {"requests": requests, "per": per, "burst": burst}
    text = config(vendor, **{f"{kind}_limit": limit})
    app = await make_signet(text, env=ENV)
    statuses, last_sent = await hammer(app.proxy_url + "/v/x", TEAM, window)
    seen = vendor.app[VENDOR].seen
    admitted = len(seen)
    rate = requests / float(per.rstrip("s"))
    # burst + 1 at once, then one per interval, from the first admission to the last attempt
    span = last_sent - seen[0][1]
    expected = burst + 1 + math.floor(span * rate)
    nominal = burst + 1 + rate * window
    print(
        f"{kind}: admitted {admitted} over {span:.3f}s; configured allows {expected} "
        f"(nominal {nominal:g} in {window}s); {statuses}"
    )
    assert statuses.get(200, 0) == admitted
    assert abs(admitted - expected) <= 1, (admitted, expected, statuses)
    assert abs(admitted - nominal) <= 2, (admitted, nominal)
    assert statuses.get(429, 0) > admitted  # the limit was really under pressure
    m = await metrics_text(app)
    assert metric(m, "signet_rate_limited_total", route="v", client="team", reason=kind) == statuses[429]
    if kind == "client":  # client limits are per client: another one still gets through
        async with aiohttp.ClientSession() as s, s.get(app.proxy_url + "/v/x", headers=auth(OTHER)) as r:
            assert r.status == 200


async def test_route_queue_within_max_wait_in_arrival_order(make_signet: Any, vendor: Any) -> None:
    interval, max_wait = 0.1, 0.5
    app = await make_signet(
        config(vendor, route_limit={"requests": 10, "per": "1s", "max_wait": "500ms"}), env=ENV
    )
    port = app.proxy_address[1]
    n = 10
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(n)]
    sent: list[float] = []
    for i, (_, writer) in enumerate(conns):  # one after another, 10 ms apart: a known arrival order
        writer.write(
            f"GET /v/seq/{i} HTTP/1.1\r\nHost: s\r\nProxy-Authorization: Bearer {TEAM}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        sent.append(time.monotonic())
        await asyncio.sleep(0.01)

    async def answer(i: int) -> tuple[int, float, bytes]:
        reader, writer = conns[i]
        raw = await asyncio.wait_for(reader.read(), 10)
        took = time.monotonic() - sent[i]
        writer.close()
        return int(raw.split(b" ", 2)[1]), took, raw

    answers = await asyncio.gather(*(answer(i) for i in range(n)))
    seen = vendor.app[VENDOR].seen
    order = [int(p.rsplit("/", 1)[1]) for p, _ in seen]
    admitted = [i for i, (status, _, _) in enumerate(answers) if status == 200]
    assert order == admitted == sorted(admitted)  # served in arrival order
    assert len(admitted) >= 5  # arrivals 10 ms apart: slots 0..4 are within 0.5 s for sure
    assert len(admitted) < n  # and some were past max_wait
    # the i-th admitted request left no earlier than i intervals after the first arrived
    # (a lower bound only: a loaded machine may run a timer late, never early)
    for i, (_, at) in enumerate(seen):
        assert at - sent[0] >= i * interval - 0.002, (i, at - sent[0])
    for status, took, raw in answers:
        if status == 200:
            assert took <= max_wait + 1.0, took  # queued at most max_wait (plus a loaded machine)
        else:
            assert status == 429 and b"X-Signet-Error: rate_limited" in raw
            assert re.search(rb"\r\nRetry-After: 1\r\n", raw), raw
    m = await metrics_text(app)
    assert metric(m, "signet_queue_wait_seconds_count", route="v") == len(admitted)
    assert metric(m, "signet_queue_wait_seconds_bucket", route="v", le="0.0") == 1  # only the first
    # every admitted request waited at most max_wait (Signet's own measure of it)
    assert metric(m, "signet_queue_wait_seconds_bucket", route="v", le=str(max_wait)) == len(admitted)
    assert metric(m, "signet_rate_limited_total", route="v", reason="route") == n - len(admitted)


async def test_retry_after_is_whole_seconds_rounded_up(make_signet: Any, vendor: Any) -> None:
    app = await make_signet(
        config(
            vendor,
            route_limit={"requests": 1, "per": "10s"},
            client_limit={"requests": 1, "per": "2500ms"},
        ),
        env=ENV,
    )
    url = app.proxy_url + "/v/x"
    async with aiohttp.ClientSession() as s:
        async with s.get(url, headers=auth(TEAM)) as r:
            assert r.status == 200
        async with s.get(url, headers=auth(TEAM)) as r:  # the client's own limit first: 2.5 s
            assert r.status == 429 and r.headers["X-Signet-Error"] == "rate_limited"
            assert r.headers["Retry-After"] == "3"
            err = (await r.json())["error"]
            assert err["code"] == "rate_limited" and err["route"] == "v"
            assert "client 'team'" in err["message"] and "1 per 2.5s" in err["message"]
        async with s.get(url, headers=auth(OTHER)) as r:  # the route's: 10 s minus a moment
            assert r.status == 429 and r.headers["Retry-After"] == "10"
            assert "route 'v'" in (await r.json())["error"]["message"]
    assert len(vendor.app[VENDOR].seen) == 1


async def wait_until_admitted(url: str, token: str, timeout: float = 10.0) -> float:
    """Poll until a request gets through; the time it did."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            async with s.get(url, headers=auth(token)) as r:
                await r.read()
                if r.status == 200:
                    return time.monotonic()
                assert r.status == 429 and r.headers["X-Signet-Error"] == "rate_limited"
                assert 1 <= int(r.headers["Retry-After"]) <= 4
            await asyncio.sleep(0.05)
    raise AssertionError("the route never resumed")


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_vendor_429_pauses_the_route(make_signet: Any, vendor: Any, form: str) -> None:
    app = await make_signet(config(vendor), env=ENV)  # no rate_limit: the pause applies anyway
    if form == "seconds":
        ra, at_least = "2", 2.0
    else:
        whole = math.floor(time.time()) + 3
        ra, at_least = formatdate(whole, usegmt=True), whole - time.time()
    async with aiohttp.ClientSession() as s:
        async with s.get(app.proxy_url + "/v/throttle", params={"ra": ra}, headers=auth(TEAM)) as r:
            t429 = time.monotonic()
            assert r.status == 429 and "X-Signet-Error" not in r.headers  # the vendor's, relayed
            assert await r.json() == {"vendor": "slow down"}
        async with s.get(app.proxy_url + "/v/x", headers=auth(OTHER)) as r:
            assert r.status == 429 and r.headers["X-Signet-Error"] == "rate_limited"
            assert "vendor answered 429" in (await r.json())["error"]["message"]
    resumed = await wait_until_admitted(app.proxy_url + "/v/x", TEAM)
    assert resumed - t429 >= at_least - 0.1, (resumed - t429, at_least)
    assert resumed - t429 <= at_least + 2.0
    assert len(vendor.app[VENDOR].seen) == 2  # the 429 and the one that got through
    m = await metrics_text(app)
    assert metric(m, "signet_rate_limited_total", route="v", reason="vendor_429") >= 2


async def test_vendor_pause_queues_within_max_wait(make_signet: Any, vendor: Any) -> None:
    app = await make_signet(
        config(vendor, route_limit={"requests": 50, "per": "1s", "burst": 5, "max_wait": "3s"}),
        env=ENV,
    )
    async with aiohttp.ClientSession() as s:
        async with s.get(app.proxy_url + "/v/throttle", params={"ra": "1"}, headers=auth(TEAM)) as r:
            t429 = time.monotonic()
            assert r.status == 429
        async with s.get(app.proxy_url + "/v/x", headers=auth(TEAM)) as r:  # waits out the pause
            assert r.status == 200
            waited = time.monotonic() - t429
    assert 0.9 <= waited <= 3.0, waited
    body = json.dumps(vendor.app[VENDOR].seen[-1][0])
    assert "/api/x" in body


async def test_reload_keeps_limit_state_and_pauses(make_signet: Any, vendor: Any) -> None:
    from proxy.config import load_config_text

    text = config(vendor, route_limit={"requests": 1, "per": "30s"})
    app = await make_signet(text, env=ENV)
    url = app.proxy_url + "/v/x"
    async with aiohttp.ClientSession() as s:
        async with s.get(url, headers=auth(TEAM)) as r:
            assert r.status == 200
        changed = text.replace("per: 30s", "per: 20s")
        assert await app.reload(lambda: load_config_text(changed, env=ENV))
        async with s.get(url, headers=auth(TEAM)) as r:  # the slot taken before the reload stands
            assert r.status == 429 and r.headers["Retry-After"] == "30"
        assert await app.reload(lambda: load_config_text(config(vendor), env=ENV))
        async with s.get(url, headers=auth(TEAM)) as r:  # the limit is gone with the config
            assert r.status == 200
        async with s.get(app.proxy_url + "/v/throttle", params={"ra": "30"}, headers=auth(TEAM)) as r:
            assert r.status == 429
        assert await app.reload(lambda: load_config_text(config(vendor), env=ENV))
        async with s.get(url, headers=auth(TEAM)) as r:  # the vendor's pause survives a reload
            assert r.status == 429 and r.headers["X-Signet-Error"] == "rate_limited"
    assert len(vendor.app[VENDOR].seen) == 3


async def test_requests_queued_before_a_vendor_429_wait_for_the_pause(
    make_signet: Any, vendor: Any
) -> None:
    app = await make_signet(
        config(vendor, route_limit={"requests": 2, "per": "1s", "max_wait": "4s"}), env=ENV
    )
    async with aiohttp.ClientSession() as s:

        async def throttled() -> float:
            params = {"ra": "2", "delay": "0.3"}  # the vendor takes 0.3 s to say 429
            async with s.get(app.proxy_url + "/v/throttle", params=params, headers=auth(TEAM)) as r:
                assert r.status == 429
                return time.monotonic()

        async def queued() -> int:
            await asyncio.sleep(0.1)  # arrives second: its slot is 0.5 s after the first
            async with s.get(app.proxy_url + "/v/x", headers=auth(TEAM)) as r:
                return r.status

        t429, status = await asyncio.gather(throttled(), queued())
    assert status == 200
    (_, sent_at) = vendor.app[VENDOR].seen[-1]
    assert sent_at - t429 >= 1.9, sent_at - t429  # not at its old slot: after the vendor's pause

"""Finding 8 (trust round 3): a reply Redis should never give is a Redis error, not a 500.

A real ``signet serve`` talks to (a) a fault-injecting stand-in speaking RESP
(:mod:`tests.respstub`) that answers the GCRA script with the wrong type, an
out-of-range integer or garbage, and (b) a real Redis whose pause key was
overwritten with a time years away. Each time ``state.on_error`` must decide
(``allow``: per-process limits, 200; ``deny``: 503 ``state_unavailable``),
the failure is logged and counted, and no ``Retry-After`` is ever larger than
what the route's limit can ask for.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest
import redis

from tests.conftest import config_text
from tests.redisserver import RedisServer
from tests.respstub import REPLIES, RespStub


def config(upstream: Any, redis_url: str, on_error: str) -> str:
    route = {
        "name": "v",
        "prefix": "/v",
        "upstream": str(upstream.make_url("/")),
        "rate_limit": {"requests": 100, "per": "1s", "burst": 10},
        "max_pause": "2m",
    }
    return config_text([route], state={"redis": redis_url, "on_error": on_error})


async def metric(s: aiohttp.ClientSession, admin_url: str, series: str) -> float:
    async with s.get(admin_url + "/metrics") as r:
        text = await r.text()
    found = re.findall(rf"^{re.escape(series)} ([0-9.e+]+)$", text, re.M)
    return sum(float(v) for v in found)


async def get(s: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, str], str]:
    async with s.get(url) as r:
        return r.status, dict(r.headers), await r.text()


@pytest.mark.parametrize("mode", sorted(REPLIES))
@pytest.mark.parametrize("on_error", ["allow", "deny"])
async def test_a_reply_of_the_wrong_kind_is_a_redis_error(
    upstream: Any, signet_process: Any, mode: str, on_error: str
) -> None:
    stub = RespStub(mode).start()
    try:
        p = signet_process(config(upstream, stub.url, on_error))
        async with aiohttp.ClientSession() as s:
            answers = [await get(s, p.proxy_url + f"/v/x{i}") for i in range(3)]
            errors = await metric(s, p.admin_url, 'signet_state_errors_total{op="limit"}')
        assert stub.script_calls >= 1  # Signet did ask the stand-in
        for status, headers, body in answers:
            assert status != 500, body
            if on_error == "allow":
                assert status == 200, body  # per-process limit: 100/s admits three
            else:
                assert status == 503 and headers["X-Signet-Error"] == "state_unavailable", body
            assert "Retry-After" not in headers
        assert errors >= 1
        logged = [e for e in p.events() if e.get("event") == "state_unavailable"]
        assert logged and logged[0]["op"] in ("limit", "connect")
        assert "Traceback" not in p.text()
    finally:
        stub.stop()


async def test_real_redis_with_a_pause_years_away_is_not_a_retry_after_of_years(
    upstream: Any, signet_process: Any
) -> None:
    server = RedisServer().start()
    try:
        p = signet_process(config(upstream, server.url, "allow"))
        async with aiohttp.ClientSession() as s:
            status, _, _ = await get(s, p.proxy_url + "/v/warm")
            assert status == 200
            r = redis.Redis(port=server.port)
            keys = [k for k in r.keys("signet:rl:*") if k.endswith(b":tat")]
            assert keys, r.keys("*")
            # what a bad actor or a bug could leave: a pause ~3 years past Redis's clock
            pause_key = keys[0][: -len(b"tat")] + b"pause"
            r.set(pause_key, str(10**17))
            r.close()
            status, headers, body = await get(s, p.proxy_url + "/v/x")
            errors = await metric(s, p.admin_url, 'signet_state_errors_total{op="limit"}')
        # before the fix: 429 with Retry-After: 100000000000
        assert status == 200, (status, headers.get("Retry-After"), body)
        assert errors >= 1
    finally:
        server.stop()

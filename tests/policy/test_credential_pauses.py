"""Findings 5 and 6 (trust round 3): a vendor 429 pauses one credential; a 401 retry is not free.

5. team-b, on its own ``auth_by_client`` account, trips the vendor's 429 with
   ``Retry-After: 3600``. Only team-b's account is paused (in this process and,
   with ``state.redis``, in every process), for ``max_pause`` at most; team-a
   and team-c (who share the route's ``auth``) still reach the vendor. A 429
   on the route's own account pauses team-a and team-c, not team-b.
6. A retry after a 401 takes a slot of the route's limit, and a token younger
   than 30 s is not refetched: the 401 is relayed.

Everything runs through real ``signet serve`` processes and a counting vendor,
except the 401-retry-against-the-limit case, which needs a token 30 s old:
there Signet runs in process with a clock the test moves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy.clock import FrozenClock
from proxy.mock.oauth import OAUTH_STATE, create_app
from tests.conftest import SUITE_SECRETS, config_text, secret
from tests.redisserver import RedisServer

A_KEY = secret("vendor-key-route-account-4f1a9c")
B_KEY = secret("vendor-key-team-b-account-8d2e7b")
TEAMS = {name: secret(f"client-token-{name}-3e8a1f6c2b") for name in ("team-a", "team-b", "team-c")}
ENV = {"A_KEY": A_KEY, "B_KEY": B_KEY, **{n.replace("-", "_").upper(): t for n, t in TEAMS.items()}}
OAUTH_SECRET = secret("round3-oauth-client-secret-Qx7")


@dataclass
class Vendor:
    seen: list[tuple[str, str]] = field(default_factory=list)  # (account, raw path)


VENDOR = web.AppKey("vendor", Vendor)
ACCOUNTS = {f"Bearer {A_KEY}": "route", f"Bearer {B_KEY}": "team-b"}


async def _handle(request: web.Request) -> web.Response:
    account = ACCOUNTS.get(request.headers.get("Authorization", ""), "?")
    request.app[VENDOR].seen.append((account, request.raw_path))
    if request.path.endswith("/throttle"):
        return web.json_response({"vendor": "slow down"}, status=429, headers={"Retry-After": "3600"})
    return web.json_response({"account": account})


@pytest.fixture
async def vendor(aiohttp_server: Any) -> Any:
    app = web.Application()
    app[VENDOR] = Vendor()
    app.router.add_route("*", "/{tail:.*}", _handle)
    return await aiohttp_server(app, host="127.0.0.1")


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


def config(vendor: Any, limited: bool, redis_url: str | None) -> str:
    route: dict[str, Any] = {
        "name": "v",
        "prefix": "/v",
        "upstream": str(vendor.make_url("/api")),
        "auth": {"scheme": "bearer", "token": "${A_KEY}"},
        "auth_by_client": {"team-b": {"scheme": "bearer", "token": "${B_KEY}"}},
        "max_pause": "2s",
    }
    if limited:
        route["rate_limit"] = {"requests": 100, "per": "1s", "burst": 10}
    clients = [{"name": n, "token": "${" + n.replace("-", "_").upper() + "}"} for n in TEAMS]
    top: dict[str, Any] = {"clients": clients}
    if redis_url:
        top["state"] = {"redis": redis_url, "on_error": "deny"}  # deny: Redis must really answer
    return config_text([route], **top)


async def call(s: aiohttp.ClientSession, base: str, team: str, path: str) -> tuple[int, dict[str, str], Any]:
    headers = {"Proxy-Authorization": f"Bearer {TEAMS[team]}"}
    async with s.get(base + "/v/" + path, headers=headers) as r:
        return r.status, dict(r.headers), await r.json()


async def resumes(s: aiohttp.ClientSession, base: str, team: str, timeout: float = 10.0) -> float:
    """Seconds until ``team`` is admitted again (polled every 50 ms)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        status, headers, _ = await call(s, base, team, "poll")
        if status == 200:
            return time.monotonic() - t0
        assert status == 429 and headers["X-Signet-Error"] == "rate_limited"
        assert 1 <= int(headers["Retry-After"]) <= 2  # max_pause, never the vendor's hour
        await asyncio.sleep(0.05)
    raise AssertionError(f"{team} was never admitted again")


@pytest.mark.parametrize(
    ("store", "limited"), [("redis", True), ("local", True), ("local", False)]
)
async def test_a_vendor_429_pauses_only_the_credential_that_got_it(
    vendor: Any, signet_process: Any, redis_server: RedisServer, store: str, limited: bool
) -> None:
    text = config(vendor, limited, redis_server.url if store == "redis" else None)
    first = signet_process(text, env=ENV)
    # with Redis, a second process must honour the pause its peer recorded
    second = signet_process(text, env=ENV) if store == "redis" else first
    p1, p2 = first.proxy_url, second.proxy_url
    seen = vendor.app[VENDOR].seen
    async with aiohttp.ClientSession() as s:
        status, headers, body = await call(s, p1, "team-b", "throttle")
        assert status == 429 and "X-Signet-Error" not in headers and body == {"vendor": "slow down"}
        t429 = time.monotonic()

        # team-a and team-c use the route's account: not paused, on either process
        for base, team in ((p1, "team-a"), (p2, "team-a"), (p2, "team-c")):
            status, _, body = await call(s, base, team, "x")
            assert (status, body) == (200, {"account": "route"}), (team, status, body)

        # team-b's own account is paused, for max_pause (2 s), not the vendor's hour
        status, headers, body = await call(s, p2, "team-b", "x")
        assert status == 429 and headers["X-Signet-Error"] == "rate_limited"
        assert headers["Retry-After"] in ("1", "2")
        assert "team-b" in body["error"]["message"]
        waited = await resumes(s, p2, "team-b")
        assert time.monotonic() - t429 >= 1.5
        assert waited <= 4.0
        assert seen[-1] == ("team-b", "/api/poll")

        # and the other way round: the route's account paused, team-b's not
        status, _, _ = await call(s, p1, "team-c", "throttle")
        assert status == 429
        status, headers, _ = await call(s, p2, "team-a", "x")
        assert status == 429 and headers["X-Signet-Error"] == "rate_limited"
        status, _, body = await call(s, p2, "team-b", "x")
        assert (status, body) == (200, {"account": "team-b"}), body
    paused_out = [p for a, p in seen if p == "/api/x" and a == "route"]
    assert len(paused_out) == 3  # the refused requests never reached the vendor


# ------------------------------------------------------------------ finding 6


def oauth_route(server: Any, rate_limit: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "o",
        "prefix": "/o",
        "upstream": str(server.make_url("/api")),
        "timeout": {"connect": 2, "read": 5},
        "rate_limit": rate_limit,
        "auth": {
            "scheme": "oauth2-client-credentials",
            "token_url": str(server.make_url("/oauth/token")),
            "client_id": "cid",
            "client_secret": "${CS}",
        },
    }


async def oauth_server(aiohttp_server: Any) -> tuple[Any, Any]:
    server = await aiohttp_server(
        create_app(client_id="cid", client_secret=OAUTH_SECRET), host="127.0.0.1"
    )
    return server, server.app[OAUTH_STATE]


async def test_a_vendor_refusing_every_token_costs_one_upstream_request_each(
    aiohttp_server: Any, signet_process: Any
) -> None:
    """The red team's case: limit 2/s, every call 401. Before: 6 requests -> 12 upstream, 7 tokens."""
    server, state = await oauth_server(aiohttp_server)
    limit = {"requests": 2, "per": "1s", "max_wait": "5s"}
    p = signet_process(config_text([oauth_route(server, limit)]), env={"CS": OAUTH_SECRET})
    state.reject_next_api = 1000
    async with aiohttp.ClientSession() as s:

        async def one(i: int) -> int:
            async with s.get(p.proxy_url + f"/o/items/{i}") as r:
                await r.read()
                assert "X-Signet-Error" not in r.headers  # the vendor's own 401, relayed
                return r.status

        statuses = await asyncio.gather(*(one(i) for i in range(6)))
    SUITE_SECRETS.update(state.issued)
    assert statuses == [401] * 6
    assert len(state.api_calls) == 6
    assert state.token_requests == 1


@pytest.mark.parametrize(("max_wait", "expect"), [(0, 401), (2, 200)])
async def test_a_401_retry_takes_a_slot_of_the_route_limit(
    aiohttp_server: Any, make_signet: Any, max_wait: float, expect: int
) -> None:
    """A token 30 s old may be refetched, but the retry is one more request on the route's limit.

    Limit 4/s with no burst, on the same clock: the first attempt takes the slot; the
    retry's slot is 250 ms later. With ``max_wait: 0`` the retry cannot go: the 401 is relayed, and the token the
    vendor refused was dropped all the same. With ``max_wait: 2s`` it waits and succeeds.
    """
    server, state = await oauth_server(aiohttp_server)
    clock = FrozenClock()
    limit = {"requests": 4, "per": "1s", "max_wait": max_wait}
    text = config_text([oauth_route(server, limit)])
    app = await make_signet(text, env={"CS": OAUTH_SECRET}, clock=clock)
    async with aiohttp.ClientSession() as s:
        async with s.get(app.proxy_url + "/o/warm") as r:
            assert r.status == 200
        clock.advance(30)  # the token is 30 s old (a fresh one may help); the limit is free again
        calls = len(state.api_calls)
        state.reject_next_api = 1
        async with s.get(app.proxy_url + "/o/retry") as r:
            assert r.status == expect
            assert "X-Signet-Error" not in r.headers
        async with s.get(app.admin_url + "/metrics") as r:
            metrics = await r.text()
    SUITE_SECRETS.update(state.issued)
    assert len(state.api_calls) - calls == (1 if expect == 401 else 2)
    refused = 'signet_rate_limited_total{client="-",reason="retry_401",route="o"}'
    assert (refused in metrics) == (expect == 401), metrics

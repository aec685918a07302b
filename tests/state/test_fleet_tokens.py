"""Two real `signet serve` processes sharing one real Redis: one OAuth2 token for the fleet.

The mock OAuth2 server counts token requests; Redis is scanned key by key and
value by value to show it never holds a token (or the client secret) in clear;
Redis is stopped and restarted mid-run to show ``on_error`` both ways.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from proxy.mock.oauth import OAUTH_STATE, create_app
from tests.conftest import SUITE_SECRETS, config_text, secret
from tests.redisserver import RedisServer

CLIENT_SECRET = secret("fleet-oauth-client-secret-Zk4p")


def fleet_config(server: Any, redis_url: str, on_error: str = "allow") -> str:
    route = {
        "name": "o",
        "prefix": "/o",
        "upstream": str(server.make_url("/api")),
        "timeout": {"connect": 2, "read": 5},
        "auth": {
            "scheme": "oauth2-client-credentials",
            "token_url": str(server.make_url("/oauth/token")),
            "client_id": "fleet",
            "client_secret": "${CS}",
        },
    }
    return config_text([route], state={"redis": redis_url, "on_error": on_error})


async def oauth_server(aiohttp_server: Any) -> tuple[Any, Any]:
    server = await aiohttp_server(
        create_app(client_id="fleet", client_secret=CLIENT_SECRET), host="127.0.0.1"
    )
    return server, server.app[OAUTH_STATE]


def start_fleet(signet_process: Any, config: str, n: int = 2) -> list[Any]:
    return [signet_process(config, env={"CS": CLIENT_SECRET}) for _ in range(n)]


async def get_all(session: aiohttp.ClientSession, urls: list[str]) -> list[tuple[int, str]]:
    async def one(url: str) -> tuple[int, str]:
        async with session.get(url) as r:
            await r.read()
            return r.status, r.headers.get("X-Signet-Error", "")

    return await asyncio.gather(*(one(u) for u in urls))


async def all_issued_expired(state: Any, timeout: float = 20.0) -> None:
    """Wait until every token the mock issued has expired (Signet then must fetch again).

    Revoking instead would not do: a token younger than 30 s is not refetched
    after a 401 (the 401 is relayed), and these tokens are seconds old.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < max(state.tokens.values(), default=0.0):
        assert time.monotonic() < deadline, "issued tokens did not expire"
        await asyncio.sleep(0.05)


def redis_dump(redis_server: RedisServer) -> list[tuple[bytes, bytes]]:
    """Every key and its value (string values; other types as their TYPE)."""
    out = []
    with redis_server.client() as r:
        for key in r.scan_iter(count=1000):
            kind = r.type(key)
            value = r.get(key) if kind == b"string" else kind
            out.append((key, value or b""))
    return out


async def metric(session: aiohttp.ClientSession, proc: Any, name: str) -> float:
    async with session.get(proc.admin_url + "/metrics") as r:
        text = await r.text()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name)
    )


async def wait_until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_fleet_cold_burst_makes_one_token_request_and_redis_holds_no_token(
    aiohttp_server: Any, signet_process: Any, redis_server: RedisServer
) -> None:
    server, state = await oauth_server(aiohttp_server)
    fleet = start_fleet(signet_process, fleet_config(server, redis_server.url))
    state.gate = asyncio.Event()  # hold the token answer: every request on both is cold meanwhile
    async with aiohttp.ClientSession() as s:
        burst = asyncio.ensure_future(
            get_all(s, [p.proxy_url + f"/o/items/{i}" for p in fleet for i in range(100)])
        )
        await wait_until(lambda: state.token_requests >= 1, "the first token request")
        await asyncio.sleep(0.3)  # give the other process time to race for the lock (it must lose)
        state.gate.set()
        statuses = await asyncio.wait_for(burst, 60)
    SUITE_SECRETS.update(state.issued)
    assert statuses == [(200, "")] * 200
    assert state.token_requests == 1, state.token_requests
    assert len({dict(c.headers)["Authorization"] for c in state.api_calls}) == 1
    # each process logs a token_fetch only if it sent the request itself
    fetches = [e for p in fleet for e in p.events() if e.get("event") == "token_fetch"]
    assert len(fetches) == 1

    dump = redis_dump(redis_server)
    assert any(b":token:o:" in k for k, _ in dump), dump  # the shared entry is there
    (token,) = state.issued
    for key, value in dump:
        for clear in (token, CLIENT_SECRET):
            assert clear.encode() not in key and clear.encode() not in value
    # nor base64/hex forms of the token
    for form in (base64.b64encode(token.encode()), token.encode().hex().encode()):
        assert all(form not in v for _, v in dump)


async def test_outage_allow_falls_back_per_process_then_fleet_resumes(
    aiohttp_server: Any, signet_process: Any, redis_server: RedisServer
) -> None:
    server, state = await oauth_server(aiohttp_server)
    state.lifetime = 6.0  # short-lived tokens: each phase below starts once they expired
    fleet = start_fleet(signet_process, fleet_config(server, redis_server.url, "allow"))
    async with aiohttp.ClientSession() as s:
        assert await get_all(s, [p.proxy_url + "/o/warm" for p in fleet]) == [(200, "")] * 2
        assert state.token_requests == 1

        redis_server.stop()
        await all_issued_expired(state)  # both must get a new token, with Redis down
        statuses = await get_all(s, [p.proxy_url + f"/o/down/{i}" for p in fleet for i in range(20)])
        assert statuses == [(200, "")] * 40
        assert state.token_requests == 3  # one per process: per-process caches
        for p in fleet:
            assert await metric(s, p, 'signet_state_errors_total{op="token"}') >= 1
            down = [e for e in p.events() if e.get("event") == "state_unavailable"]
            assert 1 <= len(down) <= 2  # logged, not once per request
            assert down[0]["on_error"] == "allow"

        redis_server.start()
        for p in fleet:
            p.wait_event("state_recovered", timeout=20)
        await all_issued_expired(state)
        statuses = await get_all(s, [p.proxy_url + f"/o/up/{i}" for p in fleet for i in range(20)])
        assert statuses == [(200, "")] * 40
        assert state.token_requests == 4  # shared again: one request for the fleet
    SUITE_SECRETS.update(state.issued)
    for _, value in redis_dump(redis_server):
        assert all(t.encode() not in value for t in state.issued)


async def test_outage_deny_answers_503_state_unavailable(
    aiohttp_server: Any, signet_process: Any, redis_server: RedisServer
) -> None:
    server, state = await oauth_server(aiohttp_server)
    redis_server.stop()  # down from the start: Signet still starts, and probes
    (p,) = start_fleet(signet_process, fleet_config(server, redis_server.url, "deny"), n=1)
    async with aiohttp.ClientSession() as s:
        async with s.get(p.proxy_url + "/o/x") as r:
            body = await r.json()
            assert r.status == 503
            assert r.headers["X-Signet-Error"] == "state_unavailable"
            assert body["error"]["code"] == "state_unavailable"
        assert state.token_requests == 0
        assert await metric(s, p, "signet_state_errors_total") >= 1
        assert await metric(s, p, "signet_state_up") == 0

        redis_server.start()
        p.wait_event("state_recovered", timeout=20)
        assert await get_all(s, [p.proxy_url + "/o/x"]) == [(200, "")]
        assert state.token_requests == 1
        assert await metric(s, p, "signet_state_up") == 1
    SUITE_SECRETS.update(state.issued)

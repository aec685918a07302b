"""OAuth2 through a real `signet serve` against the mock token server and API."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from proxy.clock import FrozenClock
from proxy.mock.oauth import OAUTH_STATE, create_app, threeplcentral_app
from tests.conftest import SUITE_SECRETS, config_text, no_secret_in, secret

CLIENT_SECRET = secret("e2e-oauth-client-secret-7Hq")


def oauth_route(server: Any, **auth: Any) -> dict[str, Any]:
    return {
        "name": "o",
        "prefix": "/o",
        "upstream": str(server.make_url("/api")),
        "timeout": {"connect": 2, "read": 3},
        "auth": {
            "scheme": "oauth2-client-credentials",
            "token_url": str(server.make_url("/oauth/token")),
            "client_id": "cid",
            "client_secret": "${CS}",
            **auth,
        },
    }


async def start(aiohttp_server: Any, signet_process: Any, lifetime: float = 3600, **auth: Any) -> tuple[Any, Any, Any]:
    server = await aiohttp_server(
        create_app(client_id="cid", client_secret=CLIENT_SECRET, lifetime=lifetime), host="127.0.0.1"
    )
    proc = signet_process(config_text([oauth_route(server, **auth)]), env={"CS": CLIENT_SECRET})
    return server, server.app[OAUTH_STATE], proc


def register_issued(state: Any) -> None:
    for token in state.issued:
        SUITE_SECRETS.add(token)


async def test_cold_burst_makes_one_token_request(aiohttp_server: Any, signet_process: Any) -> None:
    _, state, p = await start(aiohttp_server, signet_process)
    async with aiohttp.ClientSession() as s:
        async def one(i: int) -> int:
            async with s.get(p.proxy_url + f"/o/items/{i}") as r:
                await r.read()
                return r.status

        t0 = time.monotonic()
        statuses = await asyncio.gather(*(one(i) for i in range(100)))
        cold_ms = (time.monotonic() - t0) * 1000
    register_issued(state)
    assert statuses == [200] * 100
    assert state.token_requests == 1
    print(f"\n100 concurrent requests on a cold cache: {cold_ms:.0f} ms total, 1 token request")


async def test_burst_across_expiry_refreshes_once_without_waiting(aiohttp_server: Any, signet_process: Any) -> None:
    # lifetime 8 s, refresh 5 s before: one refresh point 3 s after the first fetch, the next at 6 s.
    # The burst runs by the clock (until 4.5 s), so a loaded machine sends fewer requests but
    # still crosses exactly one refresh point.
    _, state, p = await start(aiohttp_server, signet_process, lifetime=8, refresh_before=5)
    latencies: list[float] = []
    statuses: list[int] = []
    async with aiohttp.ClientSession() as s:
        async with s.get(p.proxy_url + "/o/warm") as r:
            assert r.status == 200
        deadline = time.monotonic() + 4.5

        async def worker(w: int) -> None:
            i = 0
            while time.monotonic() < deadline:
                t0 = time.monotonic()
                async with s.get(p.proxy_url + f"/o/x/{w}/{i}") as r:
                    await r.read()
                    statuses.append(r.status)
                latencies.append(time.monotonic() - t0)
                i += 1
                await asyncio.sleep(0.02)

        await asyncio.gather(*(worker(w) for w in range(10)))
    register_issued(state)
    assert len(statuses) >= 100 and statuses.count(200) == len(statuses)
    assert state.token_requests == 2, state.token_requests  # the first fetch and one refresh
    refreshes = [e for e in p.events() if e.get("event") == "token_fetch" and e.get("background")]
    assert len(refreshes) == 1
    latencies.sort()
    n = len(latencies)
    print(f"\n{n} requests across a refresh: token requests {state.token_requests}, "
          f"p50 {latencies[n // 2] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")


async def test_upstream_401_refetches_and_retries_with_same_body(aiohttp_server: Any, make_signet: Any) -> None:
    """In process, with a clock the test moves: only a token 30 s old or more is refetched after a 401."""
    server = await aiohttp_server(
        create_app(client_id="cid", client_secret=CLIENT_SECRET, lifetime=3600), host="127.0.0.1"
    )
    state = server.app[OAUTH_STATE]
    clock = FrozenClock()
    app = await make_signet(config_text([oauth_route(server)]), env={"CS": CLIENT_SECRET}, clock=clock)
    body = json.dumps({"order": 1, "note": "é"}).encode()
    async with aiohttp.ClientSession() as s:
        async with s.get(app.proxy_url + "/o/warm") as r:
            assert r.status == 200
        # a token younger than 30 s is not refetched: the 401 is relayed, nothing retried
        state.reject_next_api = 1
        calls = len(state.api_calls)
        async with s.post(app.proxy_url + "/o/orders", data=body) as r:
            assert r.status == 401
        assert state.token_requests == 1 and len(state.api_calls) == calls + 1
        clock.advance(30)
        state.reject_next_api = 1
        async with s.post(app.proxy_url + "/o/orders", data=body, headers={"Content-Type": "application/json"}) as r:
            assert r.status == 200
        assert state.token_requests == 2
        first, second = state.api_calls[-2], state.api_calls[-1]
        assert first.body == second.body == body
        assert dict(first.headers)["Authorization"] != dict(second.headers)["Authorization"]
        # a second 401 is passed through unchanged
        clock.advance(30)
        state.reject_next_api = 2
        async with s.post(app.proxy_url + "/o/orders", data=body) as r:
            assert r.status == 401
            assert "X-Signet-Error" not in r.headers
    register_issued(state)


async def test_token_endpoint_failures_are_502_with_reason_and_backoff(aiohttp_server: Any, signet_process: Any) -> None:
    _, state, p = await start(aiohttp_server, signet_process)
    async with aiohttp.ClientSession() as s:

        async def one() -> tuple[int, dict[str, Any]]:
            async with s.get(p.proxy_url + "/o/x") as r:
                body = await r.json()
                if r.status != 200:
                    assert r.status == 502 and r.headers["X-Signet-Error"] == "token_error"
                return r.status, body

        for mode, expect in (("invalid_client", "invalid_client"), ("down", "500"), ("non_json", "non-JSON")):
            state.fail_mode = mode
            # the previous mode's backoff may still be running: wait for a failure in this mode
            deadline = time.monotonic() + 20
            while True:
                status, body = await one()
                if status == 502 and expect in body["error"]["message"]:
                    break
                assert time.monotonic() < deadline, body
                await asyncio.sleep(0.1)
            before = state.token_requests
            # a burst right after a failure: backoff (>= 0.25 s) keeps the endpoint from being hammered
            answers = await asyncio.gather(*(one() for _ in range(30)))
            assert state.token_requests - before <= 1, (mode, state.token_requests - before)
            assert all(st == 502 and expect in b["error"]["message"] for st, b in answers), answers[0]
            no_secret_in(json.dumps(answers), {CLIENT_SECRET})
        state.fail_mode = None
        deadline = time.monotonic() + 20
        while (await one())[0] != 200:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
    register_issued(state)


async def test_token_endpoint_unreachable(signet_process: Any, aiohttp_server: Any, unused_tcp_port: int) -> None:
    server = await aiohttp_server(create_app(client_id="cid", client_secret=CLIENT_SECRET), host="127.0.0.1")
    route = oauth_route(server)
    route["auth"]["token_url"] = f"http://127.0.0.1:{unused_tcp_port}/oauth/token"
    p = signet_process(config_text([route]), env={"CS": CLIENT_SECRET})
    async with aiohttp.ClientSession() as s, s.get(p.proxy_url + "/o/x") as r:
        assert r.status == 502 and (await r.json())["error"]["code"] == "token_error"


async def test_threeplcentral_end_to_end(aiohttp_server: Any, signet_process: Any) -> None:
    server = await aiohttp_server(
        threeplcentral_app(client_id="fr4zzl3d-g0rp-ni11-b0rk-cr4ck3rj4ck5", client_secret="rump3lstiltskin",
                           user_login="guysmiley", tpl="{tpl-guid}"),
        host="127.0.0.1",
    )
    route = {
        "name": "tpl", "prefix": "/3pl", "upstream": str(server.make_url("")),
        "auth": {"scheme": "threeplcentral", "client_id": "fr4zzl3d-g0rp-ni11-b0rk-cr4ck3rj4ck5",
                 "client_secret": "rump3lstiltskin", "user_login": "guysmiley", "tpl": "{tpl-guid}",
                 "token_url": str(server.make_url("/AuthServer/api/Token"))},
    }
    p = signet_process(config_text([route]))
    async with aiohttp.ClientSession() as s, s.get(p.proxy_url + "/3pl/customers/17",
                                                  headers={"Authorization": "Bearer client"}) as r:
        assert r.status == 200, await r.text()
    state = server.app[OAUTH_STATE]
    call = state.token_calls[0]
    headers = dict(call.headers)
    assert headers["Authorization"] == ("Basic ZnI0enpsM2QtZzBycC1uaTExLWIwcmstY3I0Y2szcmo0Y2s1"
                                        "OnJ1bXAzbHN0aWx0c2tpbg==")
    assert json.loads(call.body) == {"grant_type": "client_credentials", "user_login": "guysmiley",
                                     "tpl": "{tpl-guid}"}
    register_issued(state)


async def test_sign_fetch_token_hides_token_unless_show_secrets(aiohttp_server: Any, tmp_path: Any) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    server = await aiohttp_server(create_app(client_id="cid", client_secret=CLIENT_SECRET), host="127.0.0.1")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config_text([oauth_route(server)]))

    def sign(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "proxy", "sign", "--config", str(cfg), "GET", "/o/items?x=1", *extra],
            capture_output=True, text=True, env={"CS": CLIENT_SECRET, "PATH": "/usr/bin:/bin"}, cwd=ROOT,
        )

    state = server.app[OAUTH_STATE]
    dry = await asyncio.to_thread(sign)
    assert "Authorization: Bearer <token>" in dry.stdout and state.token_requests == 0
    hidden = await asyncio.to_thread(sign, "--fetch-token")
    assert hidden.returncode == 0, hidden.stderr
    assert "Authorization: Bearer ***" in hidden.stdout and state.token_requests == 1
    shown = await asyncio.to_thread(sign, "--fetch-token", "--show-secrets")
    register_issued(state)
    assert f"Authorization: Bearer {state.issued[-1]}" in shown.stdout
    assert state.issued[0] not in hidden.stdout + hidden.stderr

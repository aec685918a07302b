"""Inbound authentication (contract: "Inbound authentication (clients)")."""

from __future__ import annotations

import hmac
import json
import subprocess
import sys
from typing import Any

import aiohttp
import pytest

from proxy.config import load_config_text
from proxy.errors import ConfigError
from tests.conftest import ROOT, config_text, secret
from tests.fakes import STATE
from tests.trust import log_offset, wait_for_event

BILLING = secret("billing-app-token-5b0c1f7e2a")
REPORTS = secret("reports-app-token-9d8e7f6a5b")


def config(upstream: Any, **top: Any) -> str:
    routes = [
        {"name": "a", "prefix": "/a", "upstream": str(upstream.make_url("/base-a"))},
        {"name": "b", "prefix": "/b", "upstream": str(upstream.make_url("/base-b"))},
    ]
    clients = [
        {"name": "billing-app", "token": "${BILLING}", "routes": ["a"]},
        {"name": "reports-app", "token": "${REPORTS}"},
    ]
    return config_text(routes, clients=clients, **top)


ENV = {"BILLING": BILLING, "REPORTS": REPORTS}


async def call(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers or {}) as r:
        return r.status, r.headers.copy(), await r.read()


def assert_error(status: int, headers: Any, body: bytes, want_status: int, code: str) -> dict[str, Any]:
    assert status == want_status, body
    assert headers["X-Signet-Error"] == code
    assert headers["Content-Type"].startswith("application/json")
    doc = json.loads(body)
    assert set(doc) == {"error"}
    err = doc["error"]
    assert set(err) == {"code", "message", "route", "request_id"}
    assert err["code"] == code and err["request_id"] == headers["X-Request-Id"]
    return err


async def test_missing_token_is_407_even_for_unknown_path(make_signet: Any, upstream: Any) -> None:
    app = await make_signet(config(upstream), env=ENV)
    for path in ("/a/x", "/nowhere", "/"):
        status, headers, body = await call(app.proxy_url + path)
        err = assert_error(status, headers, body, 407, "proxy_auth_required")
        assert "Proxy-Authorization" in err["message"] and "X-Signet-Token" in err["message"]
    # an empty or non-Bearer Proxy-Authorization is "missing" too
    for value in ("Bearer ", "Basic " + BILLING, BILLING):
        status, headers, body = await call(app.proxy_url + "/a/x", {"Proxy-Authorization": value})
        assert_error(status, headers, body, 407, "proxy_auth_required")
    assert upstream.app[STATE].received == []


async def test_unknown_token_and_route_not_allowed_are_403(make_signet: Any, upstream: Any) -> None:
    app = await make_signet(config(upstream), env=ENV)
    for headers in (
        {"Proxy-Authorization": "Bearer not-a-known-token-123456"},
        {"X-Signet-Token": BILLING[:-1]},
        {"X-Signet-Token": BILLING + "x"},
    ):
        status, h, body = await call(app.proxy_url + "/a/x", headers)
        assert_error(status, h, body, 403, "forbidden")
        assert BILLING not in body.decode()
    status, h, body = await call(app.proxy_url + "/b/x", {"Proxy-Authorization": f"Bearer {BILLING}"})
    err = assert_error(status, h, body, 403, "forbidden")
    assert err["route"] == "b" and "billing-app" in err["message"]
    assert upstream.app[STATE].received == []


async def test_valid_tokens_forwarded_without_the_token(make_signet: Any, upstream: Any) -> None:
    app = await make_signet(config(upstream), env=ENV)
    cases = [
        ("/a/1", {"Proxy-Authorization": f"Bearer {BILLING}"}),
        ("/a/2", {"Proxy-Authorization": f"bearer   {BILLING}  "}),
        ("/a/3", {"X-Signet-Token": BILLING}),
        ("/b/4", {"X-Signet-Token": REPORTS}),
        ("/a/5", {"Proxy-Authorization": f"Bearer {REPORTS}"}),
    ]
    for path, headers in cases:
        status, _, body = await call(app.proxy_url + path, headers)
        assert status == 200, body
    received = upstream.app[STATE].received
    assert [r.raw_path for r in received] == ["/base-a/1", "/base-a/2", "/base-a/3", "/base-b/4", "/base-a/5"]
    for r in received:
        names = {k.lower() for k, _ in r.headers}
        assert "proxy-authorization" not in names and "x-signet-token" not in names
        for _, v in r.headers:
            assert BILLING not in v and REPORTS not in v


async def test_client_name_in_log_line_and_metric_label(make_signet: Any, upstream: Any) -> None:
    app = await make_signet(config(upstream), env=ENV)
    since = log_offset()
    _, headers, _ = await call(
        app.proxy_url + "/a/logged", {"X-Signet-Token": BILLING, "X-Request-Id": "trust-auth-log-1"}
    )
    await call(app.proxy_url + "/b/x", {"X-Signet-Token": BILLING, "X-Request-Id": "trust-auth-log-2"})
    ok = await wait_for_event(lambda e: e.get("request_id") == "trust-auth-log-1", since)
    assert ok["event"] == "request" and ok["client"] == "billing-app" and ok["route"] == "a"
    assert ok["status"] == 200
    denied = await wait_for_event(lambda e: e.get("request_id") == "trust-auth-log-2", since)
    assert denied["client"] == "billing-app" and denied["status"] == 403
    async with aiohttp.ClientSession() as s, s.get(app.admin_url + "/metrics") as r:
        metrics = await r.text()
    assert 'client="billing-app"' in metrics and 'route="a"' in metrics
    assert BILLING not in metrics and REPORTS not in metrics


async def test_every_client_compared_in_constant_time(
    make_signet: Any, upstream: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each request compares against every client with hmac.compare_digest (no early exit)."""
    app = await make_signet(config(upstream), env=ENV)
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    for token in (BILLING, REPORTS, "wrong-token-0000000000"):
        calls.clear()
        await call(app.proxy_url + "/a/x", {"X-Signet-Token": token})
        assert len(calls) == 2, "one compare_digest per configured client, whatever matched"


def test_non_loopback_without_clients_is_refused_with_reason() -> None:
    routes = [{"name": "a", "prefix": "/a", "upstream": "http://127.0.0.1:9/"}]
    for listen in ("0.0.0.0:8080", "[::]:8080", "10.1.2.3:8080"):
        with pytest.raises(ConfigError) as info:
            load_config_text(config_text(routes, listen=listen), env={})
        text = str(info.value)
        assert "listen" in text and "not loopback" in text
        assert "clients" in text and "allow_unauthenticated: true" in text
    # the two ways out
    load_config_text(config_text(routes, listen="0.0.0.0:8080", allow_unauthenticated=True), env={})
    load_config_text(  # tokens in plain HTTP on a network: only when it is said to be trusted
        config_text(
            routes, listen="0.0.0.0:8080", clients=[{"name": "c", "token": "${T}"}], allow_plaintext_tokens=True
        ),
        env={"T": "a-long-enough-client-token"},
    )
    # loopback needs neither
    for listen in ("127.0.0.1:8080", "localhost:8080", "[::1]:8080", "127.0.0.2:8080"):
        load_config_text(config_text(routes, listen=listen), env={})


def test_serve_refuses_non_loopback_listen_and_says_why(tmp_path: Any) -> None:
    path = tmp_path / "open.yaml"
    path.write_text(
        config_text([{"name": "a", "prefix": "/a", "upstream": "http://127.0.0.1:9/"}], listen="0.0.0.0:0")
    )
    proc = subprocess.run(
        [sys.executable, "-m", "proxy", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert proc.returncode == 1, proc.stderr
    assert "not loopback" in proc.stderr and "allow_unauthenticated" in proc.stderr
    assert "clients" in proc.stderr and "listen" in proc.stderr

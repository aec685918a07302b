"""The operator kit in deploy/observability/: Prometheus rules pass promtool
(check and unit tests), and every metric the dashboard and the rules use exists
on a running Signet with every feature switched on (clients and policies, rate
limits, vendor 429 pauses, OAuth2 tokens that work and fail, file secrets,
Redis shared state)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from tests.conftest import config_text, secret
from tests.docs.pages import ROOT
from tests.redisserver import RedisServer

KIT = ROOT / "deploy" / "observability"
RULES = KIT / "signet-alerts.yml"
RULE_TESTS = KIT / "signet-alerts.test.yml"
DASHBOARD = KIT / "signet-dashboard.json"
PROMTOOL = shutil.which("promtool")  # Debian package `prometheus`, installed by .ci/run
CLIENT_TOKEN = secret("obs-client-token-7Qm2x9")
FILE_SECRET = secret("obs-file-bearer-Zr81k")
OAUTH_SECRET = secret("obs-oauth-client-secret-Pn4")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL, "promtool missing: apt-get install prometheus (as .ci/run does)"
    return subprocess.run([PROMTOOL, *args], cwd=KIT, capture_output=True, text=True, timeout=120)


def test_promtool_checks_the_rules() -> None:
    result = _promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


def test_promtool_unit_tests_pass_for_at_least_three_alerts() -> None:
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert len(tested) >= 3, tested
    result = _promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_scrape_config_in_the_docs_passes_promtool(tmp_path: Path) -> None:
    """docs/operations.md's prometheus.yml, next to the rules file, as an operator would use them."""
    [block] = re.findall(r'```yaml title="prometheus.yml"\n(.*?)```', (ROOT / "docs" / "operations.md").read_text(), re.S)
    (tmp_path / "prometheus.yml").write_text(block)
    shutil.copy(RULES, tmp_path / RULES.name)
    result = _promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_is_a_grafana_dashboard_with_the_panels_asked_for() -> None:
    dash = json.loads(DASHBOARD.read_text())
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    for p in panels:
        assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), p["title"]
        assert {"h", "w", "x", "y"} <= set(p["gridPos"])
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for metric in ("signet_requests_total", "signet_upstream_latency_seconds_bucket", "signet_rate_limited_total",
                   "signet_policy_denied_total", "signet_token_fetches_total", "signet_token_failures_total",
                   "signet_secret_age_seconds", "signet_state_up", "signet_in_flight_requests",
                   "signet_overloaded_total"):
        assert metric in exprs, metric


def _used_metrics() -> set[str]:
    text = DASHBOARD.read_text() + "\n".join(
        rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    )
    return set(re.findall(r"\bsignet_[a-z_]+\b", text))


def _exposed(text: str) -> set[str]:
    """Names a query can use: each family's samples (histogram _bucket/_sum/_count, counter _total)."""
    names = set(re.findall(r"^([a-z_:]+)(?:\{| )", text, re.M))
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)", text, re.M):
        names.add(family)
        if kind == "histogram":
            names |= {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
        if kind == "counter":
            names.add(f"{family}_total")
    return names


async def _vendor(aiohttp_server: Any) -> Any:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def busy(request: web.Request) -> web.Response:
        return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": "30"})

    async def token(request: web.Request) -> web.Response:
        return web.json_response({"access_token": secret("obs-access-token-Lq0"), "expires_in": 3600})

    async def token_fail(request: web.Request) -> web.Response:
        return web.json_response({"error": "invalid_client"}, status=401)

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/busy", busy)
    app.router.add_post("/token", token)
    app.router.add_post("/token-fail", token_fail)
    return await aiohttp_server(app, host="127.0.0.1")


async def test_every_metric_the_kit_uses_exists_on_a_running_signet(
    signet_process: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    vendor = await _vendor(aiohttp_server)
    base = str(vendor.make_url("")).rstrip("/")
    secret_file = tmp_path / "bearer"
    secret_file.write_text(FILE_SECRET + "\n")
    oauth = {"client_id": "obs", "client_secret": "${OAUTH_SECRET}"}
    routes = [
        {"name": "open", "prefix": "/open", "upstream": base, "auth": {"scheme": "bearer", "token": f"${{file:{secret_file}}}"}},
        {"name": "limited", "prefix": "/limited", "upstream": base, "rate_limit": {"requests": 1, "per": "60s"}},
        {"name": "vendor", "prefix": "/vendor", "upstream": base},
        {"name": "oauth", "prefix": "/oauth", "upstream": base,
         "auth": {"scheme": "oauth2-client-credentials", "token_url": f"{base}/token", **oauth}},
        {"name": "oauth-broken", "prefix": "/broken", "upstream": base,
         "auth": {"scheme": "oauth2-client-credentials", "token_url": f"{base}/token-fail", **oauth}},
    ]
    redis = RedisServer().start()
    try:
        config = config_text(
            routes,
            secret_refresh=60,
            state={"redis": redis.url},
            clients=[
                {"name": "app", "token": "${CLIENT_TOKEN}"},
                {"name": "reader", "token": "${READER_TOKEN}", "allow": [{"route": "open", "methods": ["GET"]}]},
            ],
        )
        reader_token = secret("obs-reader-token-Hh38x")
        proc = signet_process(config, env={"CLIENT_TOKEN": CLIENT_TOKEN, "READER_TOKEN": reader_token,
                                           "OAUTH_SECRET": OAUTH_SECRET})
        app, reader = {"X-Signet-Token": CLIENT_TOKEN}, {"X-Signet-Token": reader_token}
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as s:
            async def status(method: str, path: str, headers: dict[str, str]) -> int:
                async with s.request(method, proc.proxy_url + path, headers=headers) as r:
                    await r.read()
                    return r.status

            assert await status("GET", "/open/ok", app) == 200
            assert await status("POST", "/open/ok", reader) == 403          # policy: reader may only GET
            assert [await status("GET", "/limited/ok", app) for _ in range(2)] == [200, 429]
            assert [await status("GET", "/vendor/busy", app) for _ in range(2)] == [429, 429]  # vendor, then pause
            assert await status("GET", "/oauth/ok", app) == 200
            assert await status("GET", "/broken/ok", app) == 502            # token_error
            async with s.get(proc.admin_url + "/metrics") as r:
                assert r.status == 200
                text = await r.text()
        missing = sorted(_used_metrics() - _exposed(text))
        assert missing == [], f"the dashboard or rules use metrics Signet does not export: {missing}"
        samples = {
            'signet_requests_total{client="app",route="open",status_class="2xx"}',
            'signet_policy_denied_total{client="reader",route="open"}',
            'signet_rate_limited_total{client="app",reason="route",route="limited"}',
            'signet_rate_limited_total{client="app",reason="vendor_429",route="vendor"}',
            'signet_token_fetches_total{outcome="ok",route="oauth"}',
            'signet_token_failures_total{route="oauth-broken"}',
            'signet_secret_age_seconds{route="open"}',
            "signet_secret_last_refresh_timestamp_seconds",
            "signet_secret_refresh_interval_seconds 60.0",
            "signet_state_up 1.0",
            "signet_ready 1.0",
            'signet_upstream_latency_seconds_bucket{le="+Inf",route="open"}',
        }
        absent = [s for s in samples if s not in text]
        assert absent == [], absent
    finally:
        redis.stop()

"""The request line, rendered outside structlog: same fields, '-' for no client, 5xx at warning, redacted."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.conftest import config_text, secret
from tests.trust import log_offset, wait_for_event

ROUTE_SECRET = secret("request-line-secret-path-segment-93b1")


async def test_request_lines(make_signet: Any, upstream: Any, unused_tcp_port: int) -> None:
    routes = [
        {"name": "ok", "prefix": "/ok", "upstream": str(upstream.make_url("")),
         "set_headers": {"X-Key": "${RL}"}},
        {"name": "dead", "prefix": "/dead", "upstream": f"http://127.0.0.1:{unused_tcp_port}"},
    ]
    app = await make_signet(config_text(routes), env={"RL": ROUTE_SECRET})
    since = log_offset()
    async with aiohttp.ClientSession() as s:
        for path, rid in ((f"/ok/{ROUTE_SECRET}/x?q=1", "rl-ok"), ("/dead/x", "rl-dead")):
            async with s.get(app.proxy_url + path, headers={"X-Request-Id": rid}) as r:
                await r.read()
    ok = await wait_for_event(lambda e: e.get("request_id") == "rl-ok", since)
    dead = await wait_for_event(lambda e: e.get("request_id") == "rl-dead", since)
    assert list(ok)[:12] == [
        "event", "route", "method", "path", "status", "upstream_status", "duration_ms",
        "upstream_ms", "bytes_in", "bytes_out", "request_id", "client",
    ]
    assert ok["event"] == "request" and ok["level"] == "info" and ok["timestamp"].endswith("Z")
    assert ok["client"] == "-" and ok["status"] == 200 and "error" not in ok
    assert ok["path"] == "/ok/***/x", "secrets are masked and the query is never logged"
    assert dead["status"] == 502 and dead["level"] == "warning" and dead["error"] == "upstream_unreachable"

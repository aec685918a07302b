"""`signet serve` as a real process: streaming memory, aborts, signals, logs."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import time
from typing import Any

import aiohttp
import psutil
import pytest

from tests.conftest import config_text, no_secret_in, secret
from tests.fakes import PeakRss

TOKEN = secret("proc-bearer-token-Hx72Pq")
NEW_TOKEN = secret("proc-bearer-token-after-reload-Yw3")
MB = 1024 * 1024


def routes(upstream: Any, token_ref: str = "${TOK}", **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": "up",
            "prefix": "/up",
            "upstream": str(upstream.make_url("")),
            "auth": {"scheme": "bearer", "token": token_ref},
            **extra,
        }
    ]



async def test_200mb_response_streams_with_flat_memory(signet_process: Any, upstream: Any) -> None:
    p = signet_process(config_text(routes(upstream)), env={"TOK": TOKEN})
    size = 200 * MB
    async with aiohttp.ClientSession() as s:
        async with s.get(p.proxy_url + "/up/stream/1000") as r:  # warm the pools
            await r.read()
        with PeakRss(p.proc.pid) as rss:
            got = 0
            first_byte_at = None
            t0 = time.monotonic()
            async with s.get(p.proxy_url + f"/up/stream/{size}") as r:
                assert r.status == 200 and r.headers["Content-Length"] == str(size)
                async for chunk in r.content.iter_chunked(MB):
                    if first_byte_at is None:
                        first_byte_at = time.monotonic() - t0
                    got += len(chunk)
            elapsed = time.monotonic() - t0
    growth = (rss.peak - rss.base) / MB
    print(
        f"\n200 MB through signet: {size / MB / elapsed:.0f} MB/s, RSS base {rss.base / MB:.1f} MB, "
        f"peak {rss.peak / MB:.1f} MB, growth {growth:.1f} MB"
    )
    assert got == size
    assert growth < 64, f"RSS grew {growth:.1f} MB while streaming"
    assert first_byte_at is not None and first_byte_at < 1.0  # streamed, not buffered


async def test_chunked_response_stays_chunked(signet_process: Any, upstream: Any) -> None:
    p = signet_process(config_text(routes(upstream)), env={"TOK": TOKEN})
    async with (
        aiohttp.ClientSession() as s,
        s.get(p.proxy_url + "/up/stream/300000?chunked=1") as r,
    ):
        assert r.headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in r.headers
        assert len(await r.read()) == 300000


async def test_64mb_upload_is_streamed(signet_process: Any, upstream: Any) -> None:
    p = signet_process(config_text(routes(upstream)), env={"TOK": TOKEN})
    size = 64 * MB
    block = bytes(range(256)) * 4096  # 1 MiB
    digest = hashlib.sha256()
    for _ in range(size // len(block)):
        digest.update(block)

    async def body():  # type: ignore[no-untyped-def]
        for _ in range(size // len(block)):
            yield block

    with PeakRss(p.proc.pid) as rss:
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                p.proxy_url + "/up/sink", data=body(), headers={"Content-Length": str(size)}
            ) as r,
        ):
            answer = await r.json()
    assert answer == {"body_len": size, "body_sha256": digest.hexdigest()}
    assert (rss.peak - rss.base) / MB < 48


def _open_inet_sockets(pid: int) -> int:
    return len(
        [
            c
            for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status != psutil.CONN_LISTEN
        ]
    )


async def test_1000_client_aborts_release_upstream_connections(
    signet_process: Any, upstream: Any
) -> None:
    p = signet_process(config_text(routes(upstream)), env={"TOK": TOKEN})
    host, port = p.proxy_url.removeprefix("http://").split(":")

    async def abort_one() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /up/stream/50000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await reader.readexactly(20000)  # headers plus some body: the stream is running
        writer.transport.abort()

    await abort_one()
    await asyncio.sleep(0.3)
    baseline = _open_inet_sockets(p.proc.pid)
    for _ in range(50):
        await asyncio.gather(*(abort_one() for _ in range(20)))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = _open_inet_sockets(p.proc.pid)
        if now <= baseline + 2:
            break
        await asyncio.sleep(0.2)
    assert now <= baseline + 2, f"sockets: {baseline} before, {now} after 1000 aborted downloads"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        logged = [e for e in p.events() if e.get("event") == "request"]
        if len(logged) >= 1001:
            break
        await asyncio.sleep(0.2)
    assert len(logged) == 1001
    errors = [e.get("error") for e in logged]
    assert errors.count("client_disconnected") >= 1000, {e: errors.count(e) for e in set(errors)}
    async with aiohttp.ClientSession() as s, s.get(p.admin_url + "/metrics") as r:
        assert 'signet_in_flight_requests{route="up"} 0.0' in await r.text()


async def test_sighup_good_then_bad_config(
    signet_process: Any, upstream: Any, tmp_path: Any
) -> None:
    p = signet_process(config_text(routes(upstream)), env={"TOK": TOKEN, "TOK2": NEW_TOKEN})
    config_file = p.proc.args[p.proc.args.index("--config") + 1]
    async with aiohttp.ClientSession() as s:
        async with s.get(p.proxy_url + "/up/x") as r:
            assert r.status == 200
        # good: a new route and a new token
        new = routes(upstream, token_ref="${TOK2}") + [
            {"name": "more", "prefix": "/more", "upstream": str(upstream.make_url(""))}
        ]
        with open(config_file, "w") as fh:
            fh.write(config_text(new))
        p.signal(signal.SIGHUP)
        p.wait_event("reloaded")
        async with s.get(p.proxy_url + "/more/y") as r:
            assert r.status == 200
        from tests.fakes import STATE

        async with s.get(p.proxy_url + "/up/z") as r:
            assert r.status == 200
        assert upstream.app[STATE].received[-1].header("Authorization") == f"Bearer {NEW_TOKEN}"
        # bad: the old config stays
        with open(config_file, "w") as fh:
            fh.write(
                "routes: [{prefix: /x, upstream: 'http://h', auth: {scheme: bearer, token: ${NOPE}}}]\n"
            )
        p.signal(signal.SIGHUP)
        failed = p.wait_event("reload_failed")
        assert any("NOPE" in problem for problem in failed["problems"])
        async with s.get(p.proxy_url + "/more/y") as r:
            assert r.status == 200
        async with s.get(p.admin_url + "/readyz") as r:
            assert r.status == 200
    assert p.proc.poll() is None


async def test_sigterm_drains_in_flight_then_exits_0(signet_process: Any, upstream: Any) -> None:
    p = signet_process(config_text(routes(upstream), shutdown_grace=10), env={"TOK": TOKEN})
    async with aiohttp.ClientSession() as s:
        # a slow response (1 byte per 0.2 s, 10 bytes) in flight when SIGTERM arrives
        task = asyncio.create_task(_fetch(s, p.proxy_url + "/up/drip?every=0.2&count=10"))
        await asyncio.sleep(0.5)
        p.signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
        async with s.get(p.admin_url + "/readyz") as r:
            assert r.status == 503
        with pytest.raises(aiohttp.ClientConnectionError):  # no longer accepting
            async with s.get(p.proxy_url + "/up/x") as r:
                await r.read()
        status, body = await task
    assert status == 200 and body == b"." * 10
    assert await asyncio.to_thread(p.proc.wait, 10) == 0


async def test_sigterm_grace_bounds_a_stuck_request(signet_process: Any, upstream: Any) -> None:
    p = signet_process(config_text(routes(upstream), shutdown_grace=1), env={"TOK": TOKEN})
    async with aiohttp.ClientSession() as s:
        task = asyncio.create_task(_fetch(s, p.proxy_url + "/up/silent"))
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        p.signal(signal.SIGTERM)
        code = await asyncio.to_thread(p.proc.wait, 10)
        assert code == 0 and time.monotonic() - t0 < 4
        with pytest.raises(aiohttp.ClientError):
            await task


async def _fetch(s: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with s.get(url) as r:
        return r.status, await r.read()


async def test_log_lines_are_json_with_contract_fields_and_no_secret(
    signet_process: Any, upstream: Any
) -> None:
    p = signet_process(config_text(routes(upstream)), env={"TOK": TOKEN})
    async with aiohttp.ClientSession() as s:
        async with s.get(
            p.proxy_url + "/up/a/b?secret_param=" + TOKEN,
            headers={"Authorization": "Bearer " + TOKEN},
        ) as r:
            assert r.status == 200
        async with s.get(p.proxy_url + "/nope") as r:
            assert r.status == 404
    p.stop()
    lines = [line for line in p.text().splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]  # every line is JSON
    request = [e for e in events if e["event"] == "request"]
    assert len(request) == 2
    fields = {
        "route",
        "method",
        "path",
        "status",
        "upstream_status",
        "duration_ms",
        "upstream_ms",
        "bytes_in",
        "bytes_out",
        "request_id",
        "client",
    }
    assert fields <= set(request[0])
    assert request[0]["path"] == "/up/a/b" and request[0]["status"] == 200
    no_secret_in(p.text(), {TOKEN})
    assert "secret_param" not in p.text()


def test_check_command(tmp_path: Any) -> None:
    import subprocess
    import sys

    good = tmp_path / "good.yaml"
    good.write_text(
        config_text(
            [
                {
                    "name": "a",
                    "prefix": "/a",
                    "upstream": "http://h",
                    "auth": {"scheme": "bearer", "token": "${TOK}"},
                }
            ]
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "check", "--config", str(good)],
        capture_output=True,
        text=True,
        env={"TOK": TOKEN, "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0 and TOKEN not in out.stdout + out.stderr
    route_lines = [line.split() for line in out.stdout.splitlines() if "auth=" in line]
    assert route_lines == [["a", "/a", "->", "http://h", "auth=bearer", "body=streamed"]], out.stdout
    assert "auth.token <- ${TOK}" in out.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "routes:\n  - prefix: /a\n    upstream: http://h\n    auth: {scheme: bearer, token: ${TOKX}}\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "check", "--config", str(bad)],
        capture_output=True,
        text=True,
    )
    assert (
        out.returncode == 1
        and "routes[0].auth.token (line 4)" in out.stderr
        and "TOKX" in out.stderr
    )
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "check", "--bogus"], capture_output=True, text=True
    )
    assert out.returncode == 2


def test_listen_override_cannot_bypass_the_loopback_rule(tmp_path: Any) -> None:
    import subprocess
    import sys

    cfg = tmp_path / "c.yaml"
    cfg.write_text(config_text([{"name": "a", "prefix": "/a", "upstream": "http://h"}]))
    out = subprocess.run([sys.executable, "-m", "proxy", "serve", "--config", str(cfg), "--listen", "0.0.0.0:0"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "--listen" in out.stderr and "clients" in out.stderr

"""`signet serve --workers 2`: one socket, two processes, signals fanned out, one admin socket."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import stat
from typing import Any

import aiohttp
import psutil

from tests.conftest import config_text


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


async def _requests_total(session: aiohttp.ClientSession, admin_url: str, expected: float) -> float:
    """signet_requests_total{route="up"} from the admin socket, once it reaches ``expected``
    (a request is counted just after its response is sent), or the last value after 10 s."""
    value = -1.0
    for _ in range(200):
        async with session.get(admin_url + "/metrics") as r:
            assert r.status == 200
            value = _sample(await r.text(), "signet_requests_total", route="up")
        if value == expected:
            break
        await asyncio.sleep(0.05)
    return value


def _routes(upstream: Any) -> list[dict[str, Any]]:
    return [
        {"name": "up", "prefix": "/up", "upstream": str(upstream.make_url("")), "auth": {"scheme": "none"}}
    ]


async def _request_on_new_connection(url: str) -> int:
    connector = aiohttp.TCPConnector(force_close=True)  # a new connection: any worker may accept it
    async with aiohttp.ClientSession(connector=connector) as s, s.get(url) as r:
        await r.read()
        return r.status


async def test_two_workers_share_one_port_reload_and_exit_0(signet_process: Any, upstream: Any) -> None:
    p = signet_process(config_text(_routes(upstream), shutdown_grace=3), args=["--workers", "2"])
    events = p.events()
    workers = [e for e in events if e.get("event") == "worker_listening"]
    assert len(workers) == 2, events
    pids = {e["pid"] for e in workers}
    assert len(pids) == 2 and p.proc.pid not in pids
    assert {e["proxy"] for e in workers} == {p.proxy_url.removeprefix("http://")}
    listening = next(e for e in events if e.get("event") == "listening")
    assert sorted(listening["worker_pids"]) == sorted(pids)

    # both workers answer on the one port (bounded: the kernel hashes connections at random)
    seen: set[int] = set()
    made = 0
    for _ in range(40):
        statuses = await asyncio.gather(
            *(_request_on_new_connection(p.proxy_url + "/up/x") for _ in range(10))
        )
        assert set(statuses) == {200}
        made += len(statuses)
        await asyncio.sleep(0.05)  # a request line is written just after its response
        seen = {e["pid"] for e in p.events() if e.get("event") == "request"}
        if seen == pids:
            break
    assert seen == pids, f"requests reached only {seen} of {pids}"

    async with aiohttp.ClientSession() as s:
        async with s.get(p.admin_url + "/healthz") as r:
            assert r.status == 200
        async with s.get(p.admin_url + "/readyz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ready"
        # one exposition for the fleet: every request answered by either worker counted once
        assert await _requests_total(s, p.admin_url, made) == made
        async with s.get(p.admin_url + "/metrics") as r:
            text = await r.text()
    assert r.status == 200
    assert "Server" not in r.headers or "/" not in r.headers["Server"]  # no software version
    assert 'worker="' not in text

    # SIGHUP reaches both workers
    p.signal(signal.SIGHUP)
    for _ in range(300):  # bounded: 15 s, generous for a loaded CI machine
        reloaded = {e.get("pid") for e in p.events() if e.get("event") == "reloaded"}
        if reloaded == pids:
            break
        await asyncio.sleep(0.05)
    assert reloaded == pids, p.text()

    # SIGTERM: all drain and the supervisor exits 0; no worker left behind
    assert p.stop() == 0, p.text()
    stopped = {e.get("pid") for e in p.events() if e.get("event") == "stopped" and "pid" in e}
    assert stopped == pids
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"worker {pid} still running")


def _bind_attempt(host: str, port: int, *, reuse_addr: bool, reuse_port: bool) -> OSError | None:
    """Bind host:port as an intruder of the same user would; the OSError, or None if it worked."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if reuse_addr:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(16)
    except OSError as exc:
        return exc
    finally:
        sock.close()
    return None


async def test_no_other_process_can_join_the_proxy_port(signet_process: Any, upstream: Any) -> None:
    """The supervisor binds the port once, without SO_REUSEPORT: an intruder's bind is refused."""
    p = signet_process(config_text(_routes(upstream), shutdown_grace=3), args=["--workers", "2"])
    host, port = p.proxy_url.removeprefix("http://").rsplit(":", 1)
    for bind_host in (host, "0.0.0.0"):
        for reuse_addr, reuse_port in ((False, False), (True, False), (False, True), (True, True)):
            exc = _bind_attempt(bind_host, int(port), reuse_addr=reuse_addr, reuse_port=reuse_port)
            assert isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE, (
                bind_host, reuse_addr, reuse_port, exc,
            )
    # and the workers, all of them, serve requests on it
    pids = {e["pid"] for e in p.events() if e.get("event") == "worker_listening"}
    seen: set[int] = set()
    for _ in range(40):
        statuses = await asyncio.gather(
            *(_request_on_new_connection(p.proxy_url + "/up/x") for _ in range(10))
        )
        assert set(statuses) == {200}
        await asyncio.sleep(0.05)
        seen = {e["pid"] for e in p.events() if e.get("event") == "request"}
        if seen == pids:
            break
    assert len(pids) == 2 and seen == pids, f"requests reached only {seen} of {pids}"
    assert p.stop() == 0, p.text()


def _listening(pid: int) -> set[tuple[str, int]]:
    return {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }


async def test_one_admin_socket_for_the_fleet(signet_process: Any, upstream: Any) -> None:
    """Workers open no listening socket of their own; the supervisor's admin covers them all."""
    p = signet_process(config_text(_routes(upstream), shutdown_grace=3), args=["--workers", "2"])
    proxy = p.proxy_url.removeprefix("http://").rsplit(":", 1)
    admin = p.admin_url.removeprefix("http://").rsplit(":", 1)
    proxy_addr, admin_addr = (proxy[0], int(proxy[1])), (admin[0], int(admin[1]))
    worker_pids = [e["pid"] for e in p.events() if e.get("event") == "worker_listening"]
    assert len(worker_pids) == 2
    assert {c.pid for c in psutil.Process(p.proc.pid).children()} == set(worker_pids)
    assert _listening(p.proc.pid) == {proxy_addr, admin_addr}
    for pid in worker_pids:
        assert _listening(pid) == {proxy_addr}, pid  # the inherited proxy socket, nothing else

    # the workers' metrics directory is private to this user, and gone once Signet stops
    metrics_dir = psutil.Process(worker_pids[0]).environ()["PROMETHEUS_MULTIPROC_DIR"]
    assert stat.S_IMODE(os.stat(metrics_dir).st_mode) == 0o700

    async with aiohttp.ClientSession() as s:
        for _ in range(6):
            async with s.get(p.proxy_url + "/up/x") as r:
                assert r.status == 200
        for path in ("/healthz", "/readyz", "/metrics"):
            async with s.get(p.admin_url + path) as r:
                assert r.status == 200, path
                assert "Server" not in r.headers or "/" not in r.headers["Server"], r.headers
                await r.read()
        assert await _requests_total(s, p.admin_url, 6) == 6
        async with s.get(p.admin_url + "/metrics") as r:
            assert _sample(await r.text(), "signet_in_flight_requests", route="up") == 0
    assert p.stop() == 0, p.text()
    assert not os.path.exists(metrics_dir)


async def test_a_killed_worker_is_replaced_on_the_same_socket(signet_process: Any, upstream: Any) -> None:
    """A worker killed outright: /readyz 503 until its successor reports ready on the same
    socket; the fleet's counters keep the dead worker's requests (totals never go back)."""
    p = signet_process(config_text(_routes(upstream), shutdown_grace=3), args=["--workers", "2"])
    proxy = p.proxy_url.removeprefix("http://").rsplit(":", 1)
    proxy_addr = (proxy[0], int(proxy[1]))
    old = [e["pid"] for e in p.events() if e.get("event") == "worker_listening"]
    async with aiohttp.ClientSession() as s:
        for _ in range(20):
            statuses = await asyncio.gather(
                *(_request_on_new_connection(p.proxy_url + "/up/x") for _ in range(5))
            )
            assert set(statuses) == {200}
        assert await _requests_total(s, p.admin_url, 100) == 100

        victim = old[0]
        os.kill(victim, signal.SIGKILL)
        saw_not_ready = False
        new: list[int] = []
        for _ in range(300):  # bounded: 15 s
            async with s.get(p.admin_url + "/readyz") as r:
                saw_not_ready |= r.status == 503
                ready = r.status == 200
            new = [
                e["pid"] for e in p.events()
                if e.get("event") == "worker_listening" and e["pid"] not in old
            ]
            if ready and new:
                break
            await asyncio.sleep(0.05)
        assert saw_not_ready and len(new) == 1, p.text()
        restarted = next(e for e in p.events() if e.get("event") == "worker_restarted")
        assert restarted["pid"] == new[0]
        assert _listening(new[0]) == {proxy_addr}  # the supervisor's socket, inherited again

        statuses = await asyncio.gather(
            *(_request_on_new_connection(p.proxy_url + "/up/x") for _ in range(10))
        )
        assert set(statuses) == {200}
        # the killed worker's requests still count
        assert await _requests_total(s, p.admin_url, 110) == 110
    assert p.stop() == 0, p.text()

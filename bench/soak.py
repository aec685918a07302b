"""Bounded soak test: many requests through a real `signet serve`, with a reload and an upstream restart.

    python bench/soak.py            # 20,000 requests at concurrency 100
    python bench/soak.py --quick    # 2,000 requests (CI; tests/trust/test_soak_smoke.py)

Starts, all on 127.0.0.1: a JSON echo upstream and the mock OAuth2 server
(``bench/soak_upstream.py``, one process each), and ``python -m proxy serve``
with three routes: ``none`` (nothing added), ``signed`` (3Commas HMAC over a
buffered POST body) and ``oauth`` (client credentials against the mock).

Warm-up (10 % of the requests), then the run. A third of the way through the
config is rewritten and Signet gets SIGHUP; half-way through the echo
upstream is stopped and started again on the same port.

Pass criteria (exit 0), else exit 1 with the reason:
- no error except those the upstream restart must cause (502
  upstream_unreachable or a cut connection for requests to that upstream
  that overlapped its downtime);
- the reload happened (a ``reloaded`` log event);
- Signet's RSS after the run within 10 % of its RSS after warm-up;
- Signet's open file descriptors back to the baseline taken before warm-up
  (the upstreams close idle keep-alive connections after 2 s, so Signet's
  pools drain once the load stops).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

HERE_DIR = str(Path(__file__).resolve().parent)
if HERE_DIR not in sys.path:
    sys.path.insert(0, HERE_DIR)
from run import free_port  # noqa: E402  (bench/run.py's helpers)

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
ROUTES = ("none", "signed", "oauth")




class Child:
    """A subprocess with its stderr in a file; `ready_line` on stdout (or a log event) means up."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.args, self.log_path, self.env = args, log, env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready: str, timeout: float = 20.0) -> Child:
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=self._log, env=self.env, cwd=ROOT
        )
        deadline = time.monotonic() + timeout
        if ready == "READY":
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline().decode()
            if not line.startswith("READY"):
                raise SystemExit(f"{self.args[2:4]} did not start:\n{self.log_path.read_text()}")
            return self
        while time.monotonic() < deadline:
            if self.event(ready):
                return self
            if self.proc.poll() is not None:
                raise SystemExit(f"signet exited early:\n{self.log_path.read_text()}")
            time.sleep(0.05)
        raise SystemExit(f"no {ready!r} event:\n{self.log_path.read_text()}")

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
        return out

    def event(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.events() if e.get("event") == name), None)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def signet_config(ports: dict[str, int], marker: str) -> str:
    echo = f"http://127.0.0.1:{ports['echo']}"
    oauth = f"http://127.0.0.1:{ports['oauth']}"
    return f"""\
listen: 127.0.0.1:{ports["signet"]}
admin_listen: 127.0.0.1:{ports["admin"]}
shutdown_grace: 5
routes:
  - name: none
    prefix: /none
    upstream: {echo}/plain
    set_headers: {{X-Soak-Config: {marker}}}
  - name: signed
    prefix: /signed
    upstream: {echo}/public/api
    auth: {{scheme: threecommas, api_key: ${{SOAK_3C_KEY}}, secret: ${{SOAK_3C_SECRET}}}}
  - name: oauth
    prefix: /oauth
    upstream: {oauth}/api
    auth:
      scheme: oauth2-client-credentials
      token_url: {oauth}/oauth/token
      client_id: soak-client
      client_secret: ${{SOAK_OAUTH_SECRET}}
"""


@dataclass
class Tally:
    ok: int = 0
    by_route: Counter[str] = field(default_factory=Counter)
    errors: list[tuple[str, str, float, float]] = field(default_factory=list)  # route, kind, t0, t1


async def one(s: aiohttp.ClientSession, base: str, i: int, tally: Tally) -> None:
    route = ROUTES[i % 3]
    t0 = time.monotonic()
    kind = None
    try:
        if route == "signed":
            req = s.post(f"{base}/signed/ver1/orders?n={i}", data=json.dumps({"n": i, "pad": "x" * 200}))
        else:
            req = s.get(f"{base}/{route}/items/{i}?q=1")
        async with req as r:
            body = await r.read()
            if r.status != 200:
                kind = f"{r.status} {r.headers.get('X-Signet-Error', '')}".strip()
            elif not body.startswith(b"{"):
                kind = "bad body"
    except (aiohttp.ClientError, TimeoutError) as exc:
        kind = type(exc).__name__
    tally.by_route[route] += 1
    if kind is None:
        tally.ok += 1
    else:
        tally.errors.append((route, kind, t0, time.monotonic()))


async def run_load(
    base: str,
    start: int,
    count: int,
    concurrency: int,
    tally: Tally,
    events: dict[int, Any] | None = None,
) -> None:
    """`count` requests from `concurrency` workers; `events[k]` runs (in a thread) at request k."""
    events = dict(events or {})
    next_i = start
    end = start + count
    pending: list[asyncio.Task[Any]] = []
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as s:

        async def worker() -> None:
            nonlocal next_i
            while next_i < end:
                i = next_i
                next_i += 1
                action = events.pop(i - start, None)
                if action is not None:
                    pending.append(asyncio.create_task(asyncio.to_thread(action)))
                await one(s, base, i, tally)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        await asyncio.gather(*pending)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,000 requests (CI)")
    ap.add_argument("--requests", type=int, help="total requests (default 20000, quick 2000)")
    ap.add_argument("--concurrency", type=int, default=100)
    args = ap.parse_args()
    total = args.requests or (2000 if args.quick else 20000)
    warm = max(total // 10, 3 * args.concurrency)
    work = Path(tempfile.mkdtemp(prefix="signet-soak-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
    env.update(
        SOAK_3C_KEY="soak-key-" + secrets.token_hex(8),
        SOAK_3C_SECRET="soak-secret-" + secrets.token_hex(16),
        SOAK_OAUTH_SECRET="soak-oauth-" + secrets.token_hex(16),
        PYTHONUNBUFFERED="1",
    )
    ports = {k: free_port() for k in ("echo", "oauth", "signet", "admin")}
    py = sys.executable
    echo = Child([py, str(HERE / "soak_upstream.py"), "echo", str(ports["echo"])], work / "echo.log", env)
    oauth = Child([py, str(HERE / "soak_upstream.py"), "oauth", str(ports["oauth"])], work / "oauth.log", env)
    cfg = work / "signet.yaml"
    cfg.write_text(signet_config(ports, "first"))
    signet = Child([py, "-m", "proxy", "serve", "--config", str(cfg)], work / "signet.log", env)
    children = [echo, oauth]
    problems: list[str] = []
    restart: dict[str, float] = {}
    try:
        echo.start("READY")
        oauth.start("READY")
        signet.start("listening")
        children.append(signet)
        proc = psutil.Process(signet.proc.pid)  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{ports['signet']}"
        fds_before = proc.num_fds()

        warm_tally = Tally()
        asyncio.run(run_load(base, 0, warm, args.concurrency, warm_tally))
        time.sleep(0.5)
        rss_warm = proc.memory_info().rss
        fds_warm = proc.num_fds()

        def reload() -> None:
            cfg.write_text(signet_config(ports, "reloaded"))
            signet.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]

        def restart_upstream() -> None:
            restart["down"] = time.monotonic()
            echo.stop()
            echo.start("READY")
            restart["up"] = time.monotonic()

        tally = Tally()
        t0 = time.monotonic()
        asyncio.run(
            run_load(
                base, warm, total, args.concurrency, tally, {total // 3: reload, total // 2: restart_upstream}
            )
        )
        elapsed = time.monotonic() - t0
        rss_after = proc.memory_info().rss
        deadline = time.monotonic() + 20
        while True:  # pools drain: the upstreams close idle connections after 2 s
            fds_after = proc.num_fds()
            if fds_after <= fds_before or time.monotonic() > deadline:
                break
            time.sleep(0.25)

        expected: Counter[str] = Counter()
        unexpected: Counter[str] = Counter()
        window = (restart.get("down", 0) - 0.1, restart.get("up", 0) + 1.0)
        for route, kind, s0, s1 in tally.errors + warm_tally.errors:
            caused = (
                route in ("none", "signed")
                and s1 >= window[0]
                and s0 <= window[1]
                and (kind == "502 upstream_unreachable" or "Payload" in kind or "Disconnected" in kind)
            )
            (expected if caused else unexpected)[f"{route}: {kind}"] += 1

        reloaded = signet.event("reloaded") is not None
        print(
            f"requests:        {total} at concurrency {args.concurrency} (+{warm} warm-up), {elapsed:.1f} s, {total / elapsed:.0f} req/s"
        )
        print(f"ok:              {tally.ok}  by route: {dict(tally.by_route)}")
        print(
            f"errors expected (upstream restart, down {restart.get('up', 0) - restart.get('down', 0):.2f} s): {dict(expected) or 0}"
        )
        print(f"errors other:    {dict(unexpected) or 0}")
        print(f"reload (SIGHUP): {'ok' if reloaded else 'NOT SEEN'}")
        print(
            f"RSS:             after warm-up {rss_warm / 2**20:.1f} MiB, after run {rss_after / 2**20:.1f} MiB ({(rss_after / rss_warm - 1) * 100:+.1f} %)"
        )
        print(f"fds:             before {fds_before}, after warm-up {fds_warm}, after run {fds_after}")
        if unexpected:
            problems.append(f"unexpected errors: {dict(unexpected)}")
        if not reloaded:
            problems.append("no 'reloaded' event after SIGHUP")
        if "up" not in restart:
            problems.append("the upstream was not restarted")
        if rss_after > rss_warm * 1.10:
            problems.append(f"RSS grew {(rss_after / rss_warm - 1) * 100:.1f} % (> 10 %)")
        if fds_after > fds_before:
            problems.append(f"fds not back to baseline ({fds_after} > {fds_before})")
        bad_log = [e for e in signet.events() if e.get("level") in ("error", "critical")]
        if bad_log:
            problems.append(f"{len(bad_log)} error-level log lines, first: {bad_log[0]}")
        if signet.stop() != 0:
            problems.append("signet did not exit 0 on SIGTERM")
    finally:
        for c in reversed(children):
            c.stop()
    if problems:
        print("FAIL: " + "; ".join(problems))
        print(f"logs in {work}")
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""WebSocket through Signet against the same echo server reached directly.

    .venv/bin/python bench/websocket.py                 # 256 MiB bulk, 2000 round trips, 2 rounds
    .venv/bin/python bench/websocket.py --mib 64 --rounds 1

Runs on 127.0.0.1: an echo server (this script with ``--echo``, the
``websockets`` library, a separate process) and ``signet serve`` with one
``websocket: true`` route to it (scheme ``static``, so the handshake carries an
injected header the echo server checks). The client (``websockets``, this
process) measures, direct and through Signet:

- bulk: ``--mib`` MiB sent as 1 MiB binary messages while the echoes are read
  back (MiB/s each way, best round), with Signet's RSS growth over its idle
  baseline (bench/run.py's PeakRSS);
- round trips: ``--trips`` sequential 100-byte messages (median and p99 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE_DIR = str(Path(__file__).resolve().parent)
if HERE_DIR not in sys.path:
    sys.path.insert(0, HERE_DIR)
from run import PeakRSS, free_port, wait_port  # noqa: E402  (bench/run.py's helpers)

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
KEY = "bench-websocket-key"


async def echo_server(port: int) -> None:
    from websockets.asyncio.server import serve

    def check(connection: Any, request: Any) -> Any:
        if request.headers.get("X-Api-Key") != KEY:
            return connection.respond(401, "no key\n")
        return None

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(
        echo, "127.0.0.1", port, process_request=check, max_size=None, ping_interval=None, compression=None
    ) as server:
        await server.serve_forever()


def connect(url: str, **kw: Any) -> Any:
    from websockets.asyncio.client import connect as ws_connect

    return ws_connect(url, max_size=None, ping_interval=None, compression=None, **kw)


async def bulk(url: str, mib: int, headers: dict[str, str]) -> float:
    payload = os.urandom(MiB)
    async with connect(url, additional_headers=headers) as ws:

        async def send() -> None:
            for _ in range(mib):
                await ws.send(payload)

        async def receive() -> None:
            for _ in range(mib):
                assert len(await ws.recv()) == MiB

        started = time.perf_counter()
        await asyncio.gather(send(), receive())
        return mib / (time.perf_counter() - started)


async def trips(url: str, count: int, headers: dict[str, str]) -> list[float]:
    message = b"x" * 100
    out = []
    async with connect(url, additional_headers=headers) as ws:
        for _ in range(count):
            t0 = time.perf_counter()
            await ws.send(message)
            await ws.recv()
            out.append((time.perf_counter() - t0) * 1000)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--trips", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--echo", type=int, help=argparse.SUPPRESS)  # run the echo server on this port
    args = parser.parse_args(argv)
    if args.echo:
        asyncio.run(echo_server(args.echo))
        return 0
    work = Path(tempfile.mkdtemp(prefix="signet-bench-ws-"))
    echo_port, proxy_port, admin_port = free_port(), free_port(), free_port()
    config = work / "signet.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{proxy_port}\nadmin_listen: 127.0.0.1:{admin_port}\n"
        "routes:\n"
        f"  - {{name: ws, prefix: /ws, upstream: 'http://127.0.0.1:{echo_port}', websocket: true,\n"
        f"     auth: {{scheme: static, headers: {{X-Api-Key: {KEY}}}}}}}\n"
    )
    procs = []
    try:
        echo = subprocess.Popen([sys.executable, __file__, "--echo", str(echo_port)], cwd=ROOT)
        procs.append(echo)
        wait_port(echo_port, echo)
        signet = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--config", str(config), "--log-level", "warning"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=open(work / "signet.log", "wb"),  # noqa: SIM115
        )
        procs.append(signet)
        wait_port(proxy_port, signet)
        targets = {
            "direct": (f"ws://127.0.0.1:{echo_port}/x", {"X-Api-Key": KEY}),
            "signet": (f"ws://127.0.0.1:{proxy_port}/ws/x", {}),
        }
        best: dict[str, float] = {}
        latencies: dict[str, list[float]] = {}
        growth = 0
        for _ in range(args.rounds):
            for name, (url, headers) in targets.items():  # interleaved rounds
                if name == "signet":
                    with PeakRSS(signet.pid) as rss:
                        rate = asyncio.run(bulk(url, args.mib, headers))
                    growth = max(growth, rss.peak - rss.base)
                else:
                    rate = asyncio.run(bulk(url, args.mib, headers))
                best[name] = max(best.get(name, 0.0), rate)
                latencies.setdefault(name, []).extend(asyncio.run(trips(url, args.trips, headers)))
        print(f"| target | bulk MiB/s each way ({args.mib} MiB) | round trip p50 ms | p99 ms |")
        print("|---|---:|---:|---:|")
        for name in targets:
            lat = sorted(latencies[name])
            p99 = lat[int(len(lat) * 0.99) - 1]
            print(f"| {name} | {best[name]:.0f} | {statistics.median(lat):.3f} | {p99:.3f} |")
        print(
            f"\nsignet / direct bulk: {best['signet'] / best['direct']:.2f}x; "
            f"Signet RSS growth during bulk: {growth / MiB:.1f} MiB"
        )
        return 0
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


if __name__ == "__main__":
    sys.exit(main())

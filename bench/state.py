"""What a rate-limited route costs, with per-process state and with Redis (issue 13).

    python bench/state.py              # 3 interleaved rounds of 4 s per target (~2 min)
    python bench/state.py --quick      # 1 round of 1 s
    python bench/state.py --json out.json

Two ``signet serve`` processes (``--log-level warning``) in front of one
nginx upstream (the helpers of bench/run.py, not modified): one with local
state, one with ``state.redis`` pointing at a ``redis-server`` started here
(``--save '' --appendonly no``). Each has the route ``/plain`` (no limit) and
``/limited`` (a ``rate_limit`` high enough never to refuse, so what is
measured is the cost of the decision, not refusals). wrk ``-t1`` runs the
four targets in interleaved rounds at c50 and c10.

Redis work per request is counted on the server around each Redis-limited
run: ``INFO commandstats`` (reset first) gives the commands clients sent
(``EVALSHA``, one per decision; the script's own TIME/GET/SET are listed
separately by Redis and are not round trips), and ``INFO stats``
``total_reads_processed`` the read events on client sockets, i.e. round
trips (concurrent decisions share one pipelined round trip). Both are
divided by the requests wrk completed. So is the CPU time (user + system) each Signet
process and redis-server used during the run: on a shared machine the
throughput swings with other load, the CPU cost per request much less.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import redis  # noqa: E402
from run import (  # noqa: E402  (bench/run.py's helpers, unchanged)
    ROOT,
    Procs,
    find_tool,
    free_port,
    nginx_upstream_conf,
    run_wrk,
    start_nginx,
    wait_port,
)

LIMIT = "{requests: 1000000, per: 1s, burst: 100000}"
SCRIPT_INTERNAL = {"cmdstat_time", "cmdstat_get", "cmdstat_set"}  # run inside EVALSHA


def signet_config(port: int, admin: int, upstream: int, redis_url: str | None) -> str:
    up = f"http://127.0.0.1:{upstream}"
    state = f"state: {{redis: '{redis_url}', on_error: allow}}\n" if redis_url else ""
    return f"""listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{admin}
shutdown_grace: 2
{state}routes:
  - name: plain
    prefix: /plain
    upstream: {up}
  - name: limited
    prefix: /limited
    upstream: {up}
    rate_limit: {LIMIT}
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_signet(procs: Procs, work: Path, name: str, upstream: int, redis_url: str | None) -> tuple[int, int]:
    port, admin = free_port(), free_port()
    cfg = work / f"{name}.yaml"
    cfg.write_text(signet_config(port, admin, upstream, redis_url))
    args = [sys.executable, "-m", "proxy", "serve", "--config", str(cfg), "--log-level", "warning"]
    proc = procs.start(name, args, dict(os.environ, PYTHONPATH=str(ROOT)))
    wait_port(port, proc)
    wait_port(admin, proc)
    return port, proc.pid


def start_redis(procs: Procs, work: Path) -> tuple[str, redis.Redis, int]:
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    proc = procs.start(
        "redis",
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(work)],
    )
    wait_port(port, proc)
    return f"redis://127.0.0.1:{port}/0", redis.Redis(port=port), proc.pid


def round_trips(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {k: int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config|resetstat")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--duration", type=int)
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    duration = args.duration or (1 if args.quick else 4)
    nginx, wrk = find_tool("nginx"), find_tool("wrk")
    if not nginx or not wrk:
        print("bench/state.py: nginx and wrk are required", file=sys.stderr)
        return 1

    work = Path(tempfile.mkdtemp(prefix="signet-state-bench-"))
    procs = Procs(work)
    samples: dict[str, dict[int, list[dict[str, Any]]]] = {}
    trips: list[dict[str, Any]] = []
    try:
        upstream = free_port()
        start_nginx(procs, nginx, work, "upstream", nginx_upstream_conf(work, upstream), upstream)
        redis_url, client, redis_pid = start_redis(procs, work)
        local, local_pid = start_signet(procs, work, "signet-local", upstream, None)
        shared, shared_pid = start_signet(procs, work, "signet-redis", upstream, redis_url)
        pids = {"local": local_pid, "redis": shared_pid}
        targets = {
            "local-plain": f"http://127.0.0.1:{local}/plain/v1/items",
            "local-limited": f"http://127.0.0.1:{local}/limited/v1/items",
            "redis-plain": f"http://127.0.0.1:{shared}/plain/v1/items",
            "redis-limited": f"http://127.0.0.1:{shared}/limited/v1/items",
        }
        for url in targets.values():  # warm pools, load the Lua script
            run_wrk(wrk, url, 4, 1)
        for r in range(rounds):
            for conns in (50, 10):
                for name, url in targets.items():
                    if name == "redis-limited":
                        client.config_resetstat()
                        reads0 = int(client.info("stats")["total_reads_processed"])
                    pid = pids[name.split("-")[0]]
                    cpu0, rcpu0 = cpu_seconds(pid), cpu_seconds(redis_pid)
                    res = run_wrk(wrk, url, conns, duration)
                    # CPU per request: robust to the other load on a shared machine
                    res["signet_cpu_us"] = (cpu_seconds(pid) - cpu0) / max(1, res["requests"]) * 1e6
                    res["redis_cpu_us"] = (cpu_seconds(redis_pid) - rcpu0) / max(1, res["requests"]) * 1e6
                    samples.setdefault(name, {}).setdefault(conns, []).append(res)
                    if name == "redis-limited":
                        reads = int(client.info("stats")["total_reads_processed"]) - reads0 - 1
                        calls = round_trips(client)
                        trips.append({"conns": conns, "requests": res["requests"], "calls": calls, "reads": reads})
                    print(f"round {r + 1} c{conns} {name:<14} {res['rps']:8.0f} req/s "
                          f"p50 {res['p50_ms']:.2f} ms p99 {res['p99_ms']:.2f} ms "
                          f"cpu {res['signet_cpu_us']:.0f}+{res['redis_cpu_us']:.0f} us/req errors {res['errors']}",
                          file=sys.stderr)
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)

    summary: dict[str, Any] = {}
    for name, by_conn in samples.items():
        for conns, runs in by_conn.items():
            summary[f"{name}@c{conns}"] = {
                "rps": statistics.median(x["rps"] for x in runs),
                "p50_ms": statistics.median(x["p50_ms"] for x in runs),
                "p99_ms": statistics.median(x["p99_ms"] for x in runs),
                "signet_cpu_us": statistics.median(x["signet_cpu_us"] for x in runs),
                "redis_cpu_us": statistics.median(x["redis_cpu_us"] for x in runs),
                "errors": sum(x["errors"] for x in runs),
            }
    evalsha = sum(t["calls"].get("cmdstat_evalsha", 0) for t in trips)
    others = sum(v for t in trips for k, v in t["calls"].items() if k not in SCRIPT_INTERNAL | {"cmdstat_evalsha"})
    requests = sum(t["requests"] for t in trips)
    per_conc = {
        f"c{c}": sum(t["reads"] for t in trips if t["conns"] == c)
        / max(1, sum(t["requests"] for t in trips if t["conns"] == c))
        for c in (50, 10)
    }
    results = {
        "params": {"rounds": rounds, "duration_s": duration, "limit": LIMIT, "cpus": os.cpu_count()},
        "targets": summary,
        "redis": {
            "requests": requests,
            "evalsha": evalsha,
            "other_client_commands": others,
            "commands_per_request": (evalsha + others) / requests if requests else None,
            "round_trips_per_request": per_conc,
        },
    }
    print(render(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def render(results: dict[str, Any]) -> str:
    t = results["targets"]
    lines = [
        "| target | c | req/s | p50 ms | p99 ms | req/s vs plain | Signet CPU µs/req | redis-server CPU µs/req |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for conns in (50, 10):
        for name in ("local-plain", "local-limited", "redis-plain", "redis-limited"):
            row = t.get(f"{name}@c{conns}")
            if not row:
                continue
            plain = t[f"{name.split('-')[0]}-plain@c{conns}"]["rps"]
            ratio = f"{row['rps'] / plain - 1:+.1%}" if not name.endswith("plain") else ""
            lines.append(
                f"| {name} | {conns} | {row['rps']:.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {ratio} "
                f"| {row['signet_cpu_us']:.0f} | {row['redis_cpu_us']:.1f} |"
            )
    r = results["redis"]
    lines.append(
        f"\nRedis: {r['requests']} rate-limited requests, {r['evalsha']} EVALSHA, "
        f"{r['other_client_commands']} other client commands (connection set-up): "
        f"{r['commands_per_request']:.3f} commands per request; round trips per request "
        + ", ".join(f"{c} {v:.3f}" for c, v in r["round_trips_per_request"].items())
    )
    return "\n".join(lines)


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
    sys.exit(code)

"""What a rate-limited route costs against a plain one, with local state (issue 13).

    python bench/ratelimit.py                 # 3 interleaved rounds of 5 s per row (~1 min)
    python bench/ratelimit.py --quick         # 1 round of 2 s
    python bench/ratelimit.py --json out.json

One ``signet serve`` (``--log-level warning``) in front of an nginx upstream
answering 200 bytes, with inbound clients so every row pays the same
authentication:

- ``plain``: client ``bench-plain`` -> route ``/plain`` (no limit, no allow rules);
- ``route-limit``: client ``bench-plain`` -> route ``/limited``, whose
  ``rate_limit`` is far above what wrk can send (every request takes a GCRA
  decision and is admitted);
- ``client+route+allow``: client ``bench-governed`` (allow rules with a path
  glob, its own ``rate_limit``) -> ``/limited``: the allow check and two
  GCRA decisions per request.

wrk (``-t1 -c50``) runs the rows in interleaved rounds; reported: median
req/s, p50/p99, and the overhead against ``plain``. A second, in-process part
times ``Admission.admit`` itself (no network), which on a shared machine is
the steadier figure. Target (issue 13): at most 5 % with local state.

Needs nginx and wrk (Debian ``nginx wrk``). Every process started is killed by
process group on exit; everything lives in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
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
from run import free_port, wait_port  # noqa: E402  (bench/run.py's helpers)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SEARCH_PATH = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin:/usr/local/sbin"
PLAIN_TOKEN = "bench-plain-token-" + "p" * 16
GOVERNED_TOKEN = "bench-governed-token-" + "g" * 16
BODY = '{"status":"ok","pad":"' + "x" * 176 + '"}'

ROWS = {
    "plain": ("/plain/api/items/1", PLAIN_TOKEN),
    "route-limit": ("/limited/api/items/1", PLAIN_TOKEN),
    "client+route+allow": ("/limited/api/items/1", GOVERNED_TOKEN),
}






def start(work: Path, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[Any]:
    with open(work / f"{name}.log", "wb") as log:
        return subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=str(ROOT), start_new_session=True,
        )


def stop(proc: subprocess.Popen[Any]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)


def nginx_conf(work: Path, port: int) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""
    tmp = work / "nginx-tmp"
    tmp.mkdir(exist_ok=True)
    temps = "".join(f"  {k}_temp_path {tmp}/{k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""{user}worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
{temps}  keepalive_requests 10000000;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{ default_type application/json; return 200 '{BODY}'; }}
  }}
}}
"""


def signet_config(port: int, admin: int, upstream: int) -> str:
    return f"""listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{admin}
shutdown_grace: 2
clients:
  - name: bench-plain
    token: {PLAIN_TOKEN}
  - name: bench-governed
    token: {GOVERNED_TOKEN}
    allow:
      - route: plain
        methods: [GET]
      - route: limited
        methods: [GET, HEAD]
        paths: ["/api/users/*", "/api/items/*", "/api/deals/**"]
    rate_limit: {{requests: 1000000000, per: 1s, burst: 1000}}
routes:
  - name: plain
    prefix: /plain
    upstream: http://127.0.0.1:{upstream}
  - name: limited
    prefix: /limited
    upstream: http://127.0.0.1:{upstream}
    rate_limit: {{requests: 1000000000, per: 1s, burst: 1000, max_wait: 1s}}
"""


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not m:
        raise ValueError(f"cannot parse wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(wrk: str, url: str, token: str, conns: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        [wrk, "-t1", f"-c{conns}", f"-d{seconds}s", "--latency",
         "-H", f"Proxy-Authorization: Bearer {token}", url],
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if not (rps and p50 and p99):
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    if "Non-2xx" in out:
        raise RuntimeError(f"non-2xx answers (a limit refused?):\n{out}")
    return {"rps": float(rps.group(1)), "p50_ms": _ms(p50.group(1)), "p99_ms": _ms(p99.group(1))}


def http_rows(rounds: int, seconds: int, conns: int) -> dict[str, dict[str, float]]:
    nginx = shutil.which("nginx", path=SEARCH_PATH)
    wrk = shutil.which("wrk", path=SEARCH_PATH)
    if not (nginx and wrk):
        raise SystemExit("needs nginx and wrk on PATH (Debian: apt-get install nginx wrk)")
    samples: dict[str, list[dict[str, float]]] = {row: [] for row in ROWS}
    with tempfile.TemporaryDirectory(prefix="signet-ratelimit-") as tmp:
        work = Path(tmp)
        procs = []
        try:
            up = free_port()
            (work / "nginx.conf").write_text(nginx_conf(work, up))
            procs.append(start(work, "nginx", [nginx, "-p", str(work), "-c", str(work / "nginx.conf")]))
            wait_port(up, procs[-1])
            port, admin = free_port(), free_port()
            (work / "signet.yaml").write_text(signet_config(port, admin, up))
            env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
            procs.append(start(work, "signet", [sys.executable, "-m", "proxy", "serve", "--config",
                                                str(work / "signet.yaml"), "--log-level", "warning"], env))
            wait_port(port, procs[-1])
            base = f"http://127.0.0.1:{port}"
            for path, token in ROWS.values():  # warm pools and caches
                run_wrk(wrk, base + path, token, conns, 1)
            for r in range(rounds):
                for row, (path, token) in ROWS.items():
                    samples[row].append(run_wrk(wrk, base + path, token, conns, seconds))
                    print(f"  round {r + 1} {row:<20} {samples[row][-1]['rps']:>9.0f} req/s", flush=True)
        finally:
            for p in reversed(procs):
                stop(p)
    return {
        row: {k: statistics.median(s[k] for s in runs) for k in ("rps", "p50_ms", "p99_ms")}
        for row, runs in samples.items()
    }


def admit_microbench(iterations: int) -> dict[str, float]:
    """Microseconds per Admission.admit call (in process, no network)."""
    from proxy.admission import build_admission
    from proxy.config import load_config_text
    from proxy.metrics import Metrics

    settings = load_config_text(signet_config(1, 2, 3))
    admission = build_admission(settings, Metrics())
    cases = {
        "plain": ("bench-plain", "plain"),
        "route-limit": ("bench-plain", "limited"),
        "client+route+allow": ("bench-governed", "limited"),
    }

    async def run() -> dict[str, float]:
        out = {}
        for name, (client, route) in cases.items():
            best = float("inf")
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(iterations):
                    await admission.admit(client, route, "GET", "/api/items/1")
                best = min(best, (time.perf_counter() - t0) / iterations * 1e6)
            out[name] = best
        return out

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="1 round of 2 s")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    rounds, seconds = (1, 2) if args.quick else (args.rounds, args.seconds)

    micro = admit_microbench(20_000 if args.quick else 100_000)
    print("Admission.admit, in process (best of 5):")
    for name, us in micro.items():
        print(f"  {name:<20} {us:6.2f} us/request")
    print(f"wrk -t1 -c{args.conns}, {rounds} interleaved round(s) of {seconds}s:")
    http = http_rows(rounds, seconds, args.conns)
    plain = http["plain"]["rps"]
    print(f"\n{'row':<20} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'overhead':>9} {'admit share':>12}")
    for row, r in http.items():
        overhead = 1 - r["rps"] / plain
        share = (micro[row] - micro["plain"]) * r["rps"] / 1e6  # CPU fraction the admission adds
        r["overhead"] = overhead
        r["admit_share"] = share
        print(f"{row:<20} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
              f"{overhead:>+8.1%} {share:>11.2%}")
    print("\noverhead = 1 - req/s / plain req/s (noisy on a shared machine); admit share = the extra "
          "time Admission.admit takes per request x req/s (the steadier estimate). Target: <= 5 %.")
    if args.json:
        Path(args.json).write_text(json.dumps({"micro_us": micro, "http": http}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

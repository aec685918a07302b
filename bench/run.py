"""Signet throughput, latency, streaming and signing-cost benchmark (issue 7).

    python bench/run.py                   # full run: 3 interleaved rounds of 5 s per target (~5 min)
    python bench/run.py --quick           # 1 round of 1 s, 64 MiB stream (~30 s)
    python bench/run.py --smoke           # CI form: every row once, concurrently (~10 s; no timing)
    python bench/run.py --json out.json   # also write the results as JSON

Needs nginx and wrk (Debian packages ``nginx wrk``; curl for the streaming
run). They are looked up on PATH and in /usr/sbin; when missing and apt-get
is usable (root, or passwordless sudo) they are installed, unless
``--no-install``.

Everything runs on 127.0.0.1, in a temporary directory that is removed
afterwards; every process started is killed (by process group) on exit:

- an nginx **upstream** (1 worker, keep-alive) answering every path with a
  200-byte JSON body, and ``/files/big.bin`` (a sparse file) for streaming;
- an nginx **proxy_pass peer** (1 worker, ``keepalive 64`` to the upstream);
- the mock OAuth2 token server (``proxy.mock.oauth``);
- ``signet serve`` with three routes: ``/none`` (scheme none), ``/sign``
  (threecommas HMAC), ``/oauth`` (oauth2-client-credentials against the mock),
  at its default log level ``info`` (one request line per request, to a
  file): the headline rows; a second Signet at ``--log-level warning`` (no
  request lines) gives the ``signet-none-nolog`` row, so the ratio shows what
  the request line costs;
- ``bench/passthrough50.py``, the 50-line aiohttp pass-through reference, and
  ``bench/passthrough_raw.py``, a minimal uvloop + httptools pass-through:
  the Python floor;
- two more peers from Debian packages, each injecting a static header as a
  credential proxy does: **caddy** (``reverse_proxy`` with ``header_up``, one
  core: ``GOMAXPROCS=1``; Go's ``net/http`` proxy, the engine of the Go
  credential proxies) and **haproxy** (``nbthread 1``, ``http-request
  set-header``); Signet's ``/static`` route (scheme ``static``) is the
  matching ``signet-static`` row;
- for the scaling section, Signet ``--workers 2`` and an nginx peer with
  ``worker_processes 2``.

wrk (``-t1``) runs against each target in interleaved rounds (direct,
nginx, haproxy, caddy, signet-none, signet-static, signet-sign,
signet-oauth, passthrough50, passthrough-raw, signet-none-nolog, then
again), at c50 (throughput) and c10 (latency). Reported per target: median
req/s, p50 and p99 over the rounds, plus the ratios. Only ratios from one
run mean anything: absolute figures drift with the machine.

Then, each alone on the machine:

- **syscalls per proxied request** (``strace -c -f`` attached to Signet, at
  its default log level, and to the nginx peer, over 4,000 keep-alive
  requests over 10 connections; the calls are counted in the proxy's processes
  only, the upstream's are not);
- **idle RSS** of a fresh ``signet serve`` with the bench config, 1 s after
  it is ready, and its **start to ready** time (process start until
  ``/readyz`` answers 200), median of 3 starts.

``targets`` lists issue 18's goals, each as MET, not met or n/a (a goal
that does not apply to this run, e.g. a ratio to nginx when nginx is slow).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

JSON_BODY = '{"status":"ok","service":"bench-upstream","items":[' + ",".join(
    f'{{"id":{i},"v":"abc"}}' for i in range(5)
) + '],"pad":"'
JSON_BODY = JSON_BODY + "x" * (200 - len(JSON_BODY) - 2) + '"}'
assert len(JSON_BODY) == 200

MiB = 1024 * 1024
SEARCH_PATH = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin:/usr/local/sbin"


# ----------------------------------------------------------------- tools


def find_tool(name: str) -> str | None:
    return shutil.which(name, path=SEARCH_PATH)


OPTIONAL_TOOLS = ("caddy", "haproxy", "strace")  # their rows are skipped when missing


def ensure_tools(install: bool) -> dict[str, str | None]:
    names = ("nginx", "wrk", "curl", *OPTIONAL_TOOLS)
    tools = {n: find_tool(n) for n in names}
    missing = [n for n, p in tools.items() if p is None]
    if missing and install and shutil.which("apt-get"):
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        if sudo and not shutil.which("sudo"):
            return tools
        print(f"installing {' '.join(missing)} with apt-get ...", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run([*sudo, "apt-get", "update", "-qq"], env=env, check=False)
        subprocess.run(
            [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            env=env,
            check=False,
        )
        tools = {n: find_tool(n) for n in names}
    return tools


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} not listening after {timeout}s ({proc.args!r})")


class Procs:
    """Every child in its own process group; all killed on exit."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.children: list[subprocess.Popen[Any]] = []

    def start(
        self, name: str, args: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT
    ) -> subprocess.Popen[Any]:
        log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(cwd),
            start_new_session=True,
        )
        log.close()
        self.children.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        with contextlib.suppress(ProcessLookupError):  # stragglers of the group (nginx workers)
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)

    def stop_all(self) -> None:
        for proc in reversed(self.children):
            self.stop(proc)


# ----------------------------------------------------------------- nginx


def _nginx_common(work: Path, name: str, workers: int) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers read files in our 0700 temp dir
    tmp = work / f"{name}-tmp"
    tmp.mkdir(exist_ok=True)
    return f"""{user}worker_processes {workers};
daemon off;
pid {work}/{name}.pid;
error_log {work}/{name}-error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 75s;
"""


def nginx_upstream_conf(work: Path, port: int) -> str:
    return _nginx_common(work, "upstream", 1) + f"""  sendfile on;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location /files/ {{ root {work}; default_type application/octet-stream; }}
    location / {{ default_type application/json; return 200 '{JSON_BODY}'; }}
  }}
}}
"""


def nginx_proxy_conf(work: Path, name: str, port: int, upstream_port: int, workers: int) -> str:
    return _nginx_common(work, name, workers) + f"""  upstream up {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""


def start_nginx(procs: Procs, nginx: str, work: Path, name: str, conf: str, port: int) -> subprocess.Popen[Any]:
    path = work / f"{name}.conf"
    path.write_text(conf)
    proc = procs.start(name, [nginx, "-p", str(work), "-c", str(path)])
    wait_port(port, proc)
    return proc


# ----------------------------------------------------------------- caddy, haproxy

# what every peer injects (as Signet's /static route does): a credential proxy's least work
STATIC_HEADER = ("X-Api-Key", "bench-static-key")


def caddy_conf(port: int, upstream_port: int) -> str:
    name, value = STATIC_HEADER
    return f"""{{
  admin off
  auto_https off
}}
http://127.0.0.1:{port} {{
  reverse_proxy 127.0.0.1:{upstream_port} {{
    header_up {name} {value}
    transport http {{
      keepalive 75s
      keepalive_idle_conns_per_host 64
    }}
  }}
}}
"""


def start_caddy(procs: Procs, caddy: str, work: Path, port: int, upstream_port: int) -> subprocess.Popen[Any]:
    path = work / "Caddyfile"
    path.write_text(caddy_conf(port, upstream_port))
    home = work / "caddy-home"
    home.mkdir(exist_ok=True)
    env = dict(
        os.environ, GOMAXPROCS="1", HOME=str(home),
        XDG_DATA_HOME=str(home / "data"), XDG_CONFIG_HOME=str(home / "config"),
    )
    proc = procs.start("caddy", [caddy, "run", "--config", str(path), "--adapter", "caddyfile"], env, cwd=work)
    wait_port(port, proc)
    return proc


def haproxy_conf(port: int, upstream_port: int) -> str:
    name, value = STATIC_HEADER
    return f"""global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 75s
  timeout server 75s
  timeout http-keep-alive 75s
frontend fe
  bind 127.0.0.1:{port}
  http-request set-header {name} {value}
  default_backend be
backend be
  http-reuse always
  server up 127.0.0.1:{upstream_port}
"""


def start_haproxy(procs: Procs, haproxy: str, work: Path, port: int, upstream_port: int) -> subprocess.Popen[Any]:
    path = work / "haproxy.cfg"
    path.write_text(haproxy_conf(port, upstream_port))
    proc = procs.start("haproxy", [haproxy, "-db", "-f", str(path)], cwd=work)
    wait_port(port, proc)
    return proc


# ----------------------------------------------------------------- signet


def signet_config(port: int, admin: int, upstream: int, token_port: int) -> str:
    up = f"http://127.0.0.1:{upstream}"
    return f"""listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{admin}
shutdown_grace: 2
routes:
  - name: none
    prefix: /none
    upstream: {up}
    auth: {{scheme: none}}
  - name: static
    prefix: /static
    upstream: {up}
    auth: {{scheme: static, headers: {{X-Api-Key: "${{BENCH_STATIC_KEY}}"}}}}
  - name: sign
    prefix: /sign
    upstream: {up}
    auth: {{scheme: threecommas, api_key: bench-api-key, secret: "${{BENCH_3C_SECRET}}"}}
  - name: oauth
    prefix: /oauth
    upstream: {up}
    auth:
      scheme: oauth2-client-credentials
      token_url: http://127.0.0.1:{token_port}/oauth/token
      client_id: bench-client
      client_secret: "${{BENCH_OAUTH_SECRET}}"
"""


TOKEN_SERVER = """
import asyncio, os, signal, sys
from aiohttp import web
from proxy.mock.oauth import create_app
async def main():
    app = create_app(client_id="bench-client", client_secret=os.environ["BENCH_OAUTH_SECRET"])
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[1])).start()
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(s, stop.set)
    print("READY", flush=True)
    await stop.wait()
    await runner.cleanup()
asyncio.run(main())
"""


def start_signet(
    procs: Procs, work: Path, name: str, env: dict[str, str], ports: dict[str, int],
    *, level: str = "warning", workers: int = 1,
) -> tuple[subprocess.Popen[Any], int]:
    port, admin = free_port(), free_port()
    cfg = work / f"{name}.yaml"
    cfg.write_text(signet_config(port, admin, ports["upstream"], ports["token"]))
    args = [sys.executable, "-m", "proxy", "serve", "--config", str(cfg), "--log-level", level]
    if workers != 1:
        args += ["--workers", str(workers)]
    # BENCH_SIGNET_ROOT: run another checkout's Signet (before/after comparisons)
    root = Path(os.environ.get("BENCH_SIGNET_ROOT", ROOT))
    proc = procs.start(name, args, dict(env, PYTHONPATH=str(root)), cwd=root)
    wait_port(port, proc)
    deadline = time.monotonic() + 30
    while _get_status(admin, "/readyz") != 200:  # with --workers: every worker has reported ready
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not become ready ({proc.returncode})")
        time.sleep(0.02)
    return proc, port


# ----------------------------------------------------------------- wrk

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"cannot parse wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    total = re.search(r"(\d+) requests in", out)
    if not (rps and p50 and p99 and total):
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    non2xx = int(m.group(1)) if m else 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    connect, read, write, timeouts = (int(x) for x in sock.groups()) if sock else (0, 0, 0, 0)
    errors = non2xx + connect + read + write + timeouts
    return {
        "rps": float(rps.group(1)),
        "p50_ms": _ms(p50.group(1)),
        "p99_ms": _ms(p99.group(1)),
        "requests": int(total.group(1)),
        "errors": errors,
        # the parts of `errors`, so a smoke run can tell a wrong answer from a slow machine
        "non2xx": non2xx,
        "socket_errors": connect + read + write,
        "timeouts": timeouts,
    }


def run_wrk(wrk: str, url: str, conns: int, seconds: int, threads: int = 1) -> dict[str, Any]:
    out = subprocess.run(
        [wrk, f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip()}")
    return parse_wrk(out.stdout)


# ----------------------------------------------------------------- streaming


def check_answers(urls: dict[str, str]) -> dict[str, int]:
    """One real request per target, its body compared with the upstream's: what a smoke run asserts on.

    A rate proves nothing on a loaded machine (one wrk second may complete no request at all);
    the right bytes coming back through every target does.
    """
    import urllib.request

    checked: dict[str, int] = {}
    for name, url in urls.items():
        with urllib.request.urlopen(url, timeout=30) as r:
            got = r.read().decode()
            status = r.status
        if got != JSON_BODY:
            raise RuntimeError(f"{name}: unexpected body {got[:80]!r}")
        checked[name] = status
    return checked


def run_wrk_all(wrk: str, urls: dict[str, str], conns: int, seconds: int) -> dict[str, dict[str, Any]]:
    """Every target at once (``--smoke``): a check that each answers, not a measurement."""
    out: dict[str, dict[str, Any]] = {}

    def one(name: str, url: str) -> None:
        out[name] = run_wrk(wrk, url, conns, seconds)

    threads = [threading.Thread(target=one, args=item) for item in urls.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {name: out[name] for name in urls}


def rss_of_tree(pid: int) -> int:
    """RSS in bytes of pid and its children (Linux /proc)."""
    total = 0
    pids = [pid]
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    for p in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return total


class PeakRSS:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.base = rss_of_tree(pid)
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_of_tree(self.pid))
            time.sleep(0.02)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


# ----------------------------------------------------------------- syscalls, idle RSS, start


def _tree(pid: int) -> list[int]:
    """pid and its children (an nginx master and its workers)."""
    with contextlib.suppress(OSError):
        return [pid, *(int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    return [pid]


def keepalive_requests(url: str, requests: int, conns: int) -> tuple[int, int]:
    """``requests`` GETs over ``conns`` keep-alive HTTP/1.1 connections: (done, non-2xx).

    A fixed count (wrk runs for a duration, whatever its script says); the client's own
    speed does not matter here, only what the proxy does per request.
    """
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    counts = [(0, 0)] * conns

    def one(i: int, n: int) -> None:
        conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=30)
        done = bad = 0
        try:
            for _ in range(n):
                conn.request("GET", u.path)
                r = conn.getresponse()
                r.read()
                done += 1
                bad += not 200 <= r.status < 300
                if r.will_close:
                    raise RuntimeError(f"{url}: the proxy closed a keep-alive connection")
        finally:
            conn.close()
            counts[i] = (done, bad)

    share = [requests // conns + (i < requests % conns) for i in range(conns)]
    threads = [threading.Thread(target=one, args=(i, n)) for i, n in enumerate(share)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(d for d, _ in counts), sum(b for _, b in counts)


def parse_strace_counts(text: str) -> dict[str, int]:
    """``strace -c`` summary -> calls per syscall (the ``total`` row left out)."""
    calls: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?([a-z_0-9]+)\s*$", line)
        if m and m.group(2) != "total":
            calls[m.group(2)] = calls.get(m.group(2), 0) + int(m.group(1))
    return calls


def syscalls_per_request(
    strace: str, work: Path, name: str, pid: int, url: str, requests: int, conns: int = 10
) -> dict[str, Any]:
    """System calls the proxy's processes make per proxied request (``strace -c -f``).

    strace is attached to every process of the target (all threads, ``-f``), then
    ``requests`` keep-alive requests go over ``conns`` connections; the denominator is the
    count completed.
    """
    out = work / f"strace-{name}.txt"
    pids = _tree(pid)
    args = [strace, "-c", "-f", "-o", str(out)]
    for p in pids:
        args += ["-p", str(p)]
    tracer = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert tracer.stderr is not None
        attached = 0
        deadline = time.monotonic() + 20
        while attached < len(pids):  # strace says "Process N attached" for each
            line = tracer.stderr.readline()
            if not line or time.monotonic() > deadline:
                raise RuntimeError(f"strace could not attach to {name} ({pids}): {line.strip()}")
            attached += "attached" in line
        done, non2xx = keepalive_requests(url, requests, conns)
    finally:
        tracer.send_signal(signal.SIGINT)
        try:
            tracer.wait(30)
        except subprocess.TimeoutExpired:
            tracer.kill()
            tracer.wait()
    calls = parse_strace_counts(out.read_text() if out.exists() else "")
    if not done or not calls:
        raise RuntimeError(f"syscall count for {name} failed: {done} requests, strace counted {calls}")
    top = sorted(calls.items(), key=lambda kv: -kv[1])[:6]
    return {
        "requests": done,
        "non2xx": non2xx,
        "processes": len(pids),
        "calls": sum(calls.values()),
        "per_request": round(sum(calls.values()) / done, 2),
        "top": {k: round(v / done, 2) for k, v in top},
    }


def _get_status(port: int, path: str) -> int | None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def start_and_idle(
    procs: Procs, work: Path, env: dict[str, str], ports: dict[str, int], runs: int, idle_s: float = 1.0
) -> dict[str, Any]:
    """Start a fresh ``signet serve`` (bench config, default log level) ``runs`` times.

    Start to ready: from just before the process is created until ``/readyz`` answers 200
    (polled every 2 ms). Idle RSS: the process's VmRSS ``idle_s`` after it is ready.
    """
    ready_s: list[float] = []
    rss_mib: list[float] = []
    for i in range(runs):
        port, admin = free_port(), free_port()
        cfg = work / f"signet-start-{i}.yaml"
        cfg.write_text(signet_config(port, admin, ports["upstream"], ports["token"]))
        args = [sys.executable, "-m", "proxy", "serve", "--config", str(cfg)]
        root = Path(os.environ.get("BENCH_SIGNET_ROOT", ROOT))
        t0 = time.perf_counter()
        proc = procs.start(f"signet-start-{i}", args, dict(env, PYTHONPATH=str(root)), cwd=root)
        deadline = t0 + 60
        while _get_status(admin, "/readyz") != 200:
            if proc.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"signet did not become ready ({proc.returncode})")
            time.sleep(0.002)
        ready_s.append(time.perf_counter() - t0)
        time.sleep(idle_s)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        rss_mib.append(int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024)  # type: ignore[union-attr]
        procs.stop(proc)
    return {
        "runs": runs,
        "start_to_ready_s": round(_median(ready_s), 3),
        "start_to_ready_all_s": [round(x, 3) for x in ready_s],
        "idle_rss_mib": round(_median(rss_mib), 1),
        "idle_rss_all_mib": [round(x, 1) for x in rss_mib],
    }


def stream_once(curl: str | None, url: str, size: int) -> float:
    """Download url, return MB/s (MiB per second); checks the byte count."""
    t0 = time.perf_counter()
    if curl:
        out = subprocess.run(
            [curl, "-sS", "-o", "/dev/null", "-w", "%{size_download} %{http_code}", url],
            capture_output=True, text=True, timeout=600, check=False,
        )
        got, code = out.stdout.split() if out.stdout else ("0", "000")
        if code != "200" or int(got) != size:
            raise RuntimeError(f"stream {url}: status {code}, {got} of {size} bytes: {out.stderr}")
    else:  # pragma: no cover - curl is installed alongside nginx/wrk
        import urllib.request

        got = 0
        with urllib.request.urlopen(url, timeout=60) as r:
            while block := r.read(MiB):
                got += len(block)
        if got != size:
            raise RuntimeError(f"stream {url}: {got} of {size} bytes")
    return size / MiB / (time.perf_counter() - t0)


# ----------------------------------------------------------------- signing


def sign_microbench(token_port: int, iterations: int) -> list[dict[str, Any]]:
    """µs per ``scheme.apply`` for every built-in scheme, in this process."""
    from proxy.auth import SchemeContext, UpstreamRequest
    from proxy.config import load_config_text
    from proxy.log import configure_logging

    configure_logging("json", "error")  # no token_fetch lines in the report
    env = {"S": "bench-secret-" + "k" * 40, "OAUTH": os.environ["BENCH_OAUTH_SECRET"]}
    tok = f"http://127.0.0.1:{token_port}/oauth/token"
    schemes = {
        "none": "{scheme: none}",
        "static": "{scheme: static, headers: {X-Key: '${S}'}}",
        "basic": "{scheme: basic, username: user, password: '${S}'}",
        "bearer": "{scheme: bearer, token: '${S}'}",
        "threeclicks-simple": "{scheme: threeclicks-simple, api_key: key, api_secret: '${S}'}",
        "threeclicks-strict": "{scheme: threeclicks-strict, api_key: key, api_secret: '${S}'}",
        "threecommas": "{scheme: threecommas, api_key: key, secret: '${S}'}",
        "apliiq": "{scheme: apliiq, app_id: app, shared_secret: '${S}'}",
        "quicklizard": "{scheme: quicklizard, api_key: key, api_secret: '${S}'}",
        "hmac (recipe)": (
            "{scheme: hmac, vars: {secret: '${S}'}, message: \"{method}\\n{path_query}\\n{body_sha256}\\n{timestamp}\","
            " key: '{secret}', headers: {X-Sig: '{signature}', X-Ts: '{timestamp}'}}"
        ),
        "oauth2 (cached token)": (
            f"{{scheme: oauth2-client-credentials, token_url: '{tok}', client_id: bench-client,"
            " client_secret: '${OAUTH}'}"
        ),
    }
    lines = ["routes:"]
    for i, auth in enumerate(schemes.values()):
        lines.append(f"  - {{name: r{i}, prefix: /r{i}, upstream: 'http://127.0.0.1:9', auth: {auth}}}")
    settings = load_config_text("\n".join(lines) + "\n", env=env)
    body = b'{"mode":"paper","account_id":12345678,"note":"' + b"x" * 160 + b'"}'

    async def measure() -> list[dict[str, Any]]:
        rows = []
        for name, route in zip(schemes, settings.routes, strict=True):
            scheme = route.scheme_cls(route.auth, SchemeContext(route=route.name))
            await scheme.start()
            try:
                needs = bool(getattr(scheme, "needs_body", False))
                req = UpstreamRequest(
                    method="POST",
                    path="/public/api/ver1/users/change_mode",
                    query="mode=paper&x=1",
                    headers={"Content-Type": "application/json"},
                    body=body if needs else None,
                )
                await scheme.apply(req)  # warm (fetches the OAuth2 token once)
                best = float("inf")
                for _ in range(5):
                    t0 = time.perf_counter()
                    for _ in range(iterations):
                        await scheme.apply(req)
                    best = min(best, (time.perf_counter() - t0) / iterations)
                rows.append({"scheme": name, "us_per_signature": round(best * 1e6, 2), "buffers_body": needs})
            finally:
                await scheme.close()
        return rows

    return asyncio.run(measure())


# ----------------------------------------------------------------- report


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarise(samples: dict[str, dict[int, list[dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for target, by_c in samples.items():
        row: dict[str, Any] = {}
        for c, runs in by_c.items():
            row[f"c{c}"] = {
                "rps": round(_median([r["rps"] for r in runs]), 1),
                "p50_ms": round(_median([r["p50_ms"] for r in runs]), 3),
                "p99_ms": round(_median([r["p99_ms"] for r in runs]), 3),
                "errors": sum(r["errors"] for r in runs),
                "requests": sum(r["requests"] for r in runs),
                "non2xx": sum(r["non2xx"] for r in runs),
                "socket_errors": sum(r["socket_errors"] for r in runs),
                "timeouts": sum(r["timeouts"] for r in runs),
                "rounds": len(runs),
            }
        out[target] = row
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    if not a or not b:
        return None
    return round(a / b, 3)


def render(results: dict[str, Any]) -> str:
    lines = []
    conc = results["params"]["concurrency"]
    head = f"{'target':<18}" + "".join(
        f"{'c' + str(c) + ' req/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'err':>5}" for c in conc
    )
    lines.append(head)
    lines.append("-" * len(head))
    for target, row in results["http"].items():
        cells = f"{target:<18}"
        for c in conc:
            r = row.get(f"c{c}")
            cells += (
                f"{r['rps']:>12.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['errors']:>5}"
                if r else f"{'-':>12}{'-':>9}{'-':>9}{'-':>5}"
            )
        lines.append(cells)
    lines.append("")
    lines.append("ratios (req/s at c50; p99 difference at c10):")
    for k, v in results["ratios"].items():
        lines.append(f"  {k:<34} {v if v is not None else '-'}")
    if results.get("scaling"):
        lines.append("")
        lines.append("scaling (2 workers each, c50):")
        for k, v in results["scaling"].items():
            if isinstance(v, dict):
                lines.append(f"  {k:<18} {v['rps']:>10.0f} req/s  p50 {v['p50_ms']:.2f} ms  p99 {v['p99_ms']:.2f} ms  err {v['errors']}")
            else:
                lines.append(f"  {k:<34} {v}")
    if results.get("syscalls"):
        lines.append("")
        lines.append("syscalls per proxied request (strace -c -f, 10 keep-alive connections):")
        for k, v in results["syscalls"].items():
            top = ", ".join(f"{n} {c}" for n, c in v["top"].items())
            lines.append(f"  {k:<18} {v['per_request']:>6.2f}  over {v['requests']} requests  ({top})")
    if results.get("process"):
        pr = results["process"]
        lines.append("")
        lines.append(f"signet process (fresh start, bench config, median of {pr['runs']}):")
        lines.append(f"  start to ready     {pr['start_to_ready_s']:.3f} s  {pr['start_to_ready_all_s']}")
        lines.append(f"  idle RSS           {pr['idle_rss_mib']:.1f} MiB  {pr['idle_rss_all_mib']}")
    if results.get("streaming"):
        s = results["streaming"]
        lines.append("")
        lines.append(f"streaming ({s['size_mib']} MiB):")
        for k in ("direct", "nginx", "signet", "passthrough50", "passthrough-raw"):
            if k in s["mb_per_s"]:
                lines.append(f"  {k:<18} {s['mb_per_s'][k]:>8.0f} MiB/s")
        lines.append(f"  signet/direct      {s['ratio_signet_direct']}")
        lines.append(f"  signet RSS         base {s['signet_rss_base_mib']} MiB, peak {s['signet_rss_peak_mib']} MiB, growth {s['signet_rss_growth_mib']} MiB")
    if results.get("signing"):
        lines.append("")
        lines.append("signing cost (scheme.apply, in process):")
        for r in results["signing"]:
            lines.append(f"  {r['scheme']:<24} {r['us_per_signature']:>8.2f} us{'  (buffers body)' if r['buffers_body'] else ''}")
    if results.get("targets"):
        lines.append("")
        lines.append("targets:")
        for k, v in results["targets"].items():
            verdict = "n/a" if v["met"] is None else "MET" if v["met"] else "not met"
            note = f"; {v['note']}" if v.get("note") else ""
            lines.append(f"  {k:<48} {verdict:<8} ({v['value']}{note})")
    return "\n".join(lines)


def compute_ratios(http: dict[str, Any], conc: list[int]) -> dict[str, Any]:
    hi, lo = max(conc), min(conc)

    def rps(t: str) -> float | None:
        return http.get(t, {}).get(f"c{hi}", {}).get("rps")

    def p99(t: str, c: int) -> float | None:
        return http.get(t, {}).get(f"c{c}", {}).get("p99_ms")

    r: dict[str, Any] = {
        "signet-none/nginx": _ratio(rps("signet-none"), rps("nginx")),
        "signet-none/passthrough-raw": _ratio(rps("signet-none"), rps("passthrough-raw")),
        "signet-none/caddy": _ratio(rps("signet-none"), rps("caddy")),
        "signet-none/haproxy": _ratio(rps("signet-none"), rps("haproxy")),
        "caddy/nginx": _ratio(rps("caddy"), rps("nginx")),
        "haproxy/nginx": _ratio(rps("haproxy"), rps("nginx")),
        "signet-static/signet-none": _ratio(rps("signet-static"), rps("signet-none")),
        "signet-sign/nginx": _ratio(rps("signet-sign"), rps("nginx")),
        "signet-oauth/nginx": _ratio(rps("signet-oauth"), rps("nginx")),
        "passthrough50/nginx": _ratio(rps("passthrough50"), rps("nginx")),
        "passthrough-raw/nginx": _ratio(rps("passthrough-raw"), rps("nginx")),
        "signet-none/passthrough50": _ratio(rps("signet-none"), rps("passthrough50")),
        "signet-sign/signet-none": _ratio(rps("signet-sign"), rps("signet-none")),
        "signet-oauth/signet-none": _ratio(rps("signet-oauth"), rps("signet-none")),
        "signet-none/signet-none-nolog": _ratio(rps("signet-none"), rps("signet-none-nolog")),
        "nginx/direct": _ratio(rps("nginx"), rps("direct")),
    }
    a, b = p99("signet-none", lo), p99("passthrough50", lo)
    r[f"p99 c{lo} signet-none - passthrough50 (ms)"] = round(a - b, 3) if a is not None and b is not None else None
    r[f"p99 c{hi} signet-none (ms)"] = p99("signet-none", hi)
    r[f"p99 c{hi} signet-none/nginx"] = _ratio(p99("signet-none", hi), p99("nginx", hi))
    return r


def compute_targets(results: dict[str, Any]) -> dict[str, Any]:
    r = results["ratios"]
    t: dict[str, Any] = {}

    def add(name: str, value: float | None, ok: bool) -> None:
        t[name] = {"value": value, "met": bool(ok)}

    def at_least(name: str, value: float | None, floor: float, note: str = "") -> None:
        t[name] = {"value": value, "met": None if value is None else value >= floor, "note": note}

    def at_most(name: str, value: float | None, ceiling: float, note: str = "") -> None:
        t[name] = {"value": value, "met": None if value is None else value <= ceiling, "note": note}

    # issue 18's targets (c50, default log level); a target whose inputs are missing is n/a
    at_least("signet-none >= 0.60x raw floor", r.get("signet-none/passthrough-raw"), 0.60)
    at_least("signet-none >= 1.5x caddy", r.get("signet-none/caddy"), 1.5)
    nginx_rps = results.get("http", {}).get("nginx", {}).get("c50", {}).get("rps")
    v = r.get("signet-none/nginx")
    if nginx_rps is not None and nginx_rps < 60000:
        t["signet-none >= 0.40x nginx (nginx >= 60k req/s)"] = {
            "value": v, "met": None, "note": f"nginx at {nginx_rps:.0f} req/s: does not apply",
        }
    else:
        at_least("signet-none >= 0.40x nginx (nginx >= 60k req/s)", v, 0.40)
    at_least("signet-static >= 0.95x signet-none", r.get("signet-static/signet-none"), 0.95)
    key = next((k for k in r if k.startswith("p99 c50 signet-none/nginx")), None)
    at_most("p99 at c50 <= 3x nginx's", r.get(key) if key else None, 3.0)
    sc = results.get("scaling") or {}
    at_least("--workers 2 >= 0.40x nginx-2w", sc.get("signet-none-2w/nginx-2w"), 0.40)
    sy = results.get("syscalls") or {}
    if "signet" in sy and "nginx" in sy:
        diff = round(sy["signet"]["per_request"] - sy["nginx"]["per_request"], 2)
        at_most("syscalls/request <= nginx's + 1", diff, 1.0,
                f"signet {sy['signet']['per_request']}, nginx {sy['nginx']['per_request']}")
    else:
        at_most("syscalls/request <= nginx's + 1", None, 1.0, "strace not run")
    pr = results.get("process") or {}
    at_most("idle RSS <= 48 MiB", pr.get("idle_rss_mib"), 48.0)
    at_most("start to ready <= 0.5 s", pr.get("start_to_ready_s"), 0.5)

    # issue 10's targets; the headline rows run at the default log level
    v = r.get("signet-sign/signet-none")
    add("signet-sign >= 0.97x signet-none", v, v is not None and v >= 0.97)
    v = r.get("signet-oauth/signet-none")
    add("signet-oauth >= 0.97x signet-none", v, v is not None and v >= 0.97)
    v = r.get("signet-none/signet-none-nolog")
    add("request line costs <= 5% (none vs nolog)", v, v is not None and v >= 0.95)
    key = next((k for k in r if k.startswith("p99 c50 signet-none")), None)
    v = r.get(key) if key else None
    add("p99 at c50 <= 5 ms", v, v is not None and v <= 5.0)
    s = results.get("streaming")
    if s:
        add("streaming >= 0.6x direct", s["ratio_signet_direct"], s["ratio_signet_direct"] >= 0.6)
        add("RSS growth < 64 MiB while streaming", s["signet_rss_growth_mib"], s["signet_rss_growth_mib"] < 64)
    return t


# ----------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 round of 1 s, 64 MiB stream")
    ap.add_argument(
        "--smoke", action="store_true",
        help="CI form: every row once and concurrently, 16 MiB stream (proves the bench runs; no timing)",
    )
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick 1)")
    ap.add_argument("--duration", type=int, help="seconds per wrk run (default 5; quick 1)")
    ap.add_argument("--stream-mib", type=int, help="streaming size in MiB (default 1024; quick 64)")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    ap.add_argument("--plot", metavar="PATH", help="draw the results to PATH (.svg/.png; bench/plot.py)")
    ap.add_argument("--no-install", action="store_true", help="never apt-get install nginx/wrk")
    ap.add_argument("--no-scaling", action="store_true", help="skip the 2-worker comparison")
    args = ap.parse_args(argv)
    quick = args.quick or args.smoke
    rounds = args.rounds or (1 if quick else 3)
    duration = args.duration or (1 if quick else 5)
    stream_mib = args.stream_mib or (16 if args.smoke else 64 if quick else 1024)
    conc = [50, 10]

    tools = ensure_tools(not args.no_install)
    if not tools["nginx"] or not tools["wrk"]:
        print("bench: nginx and wrk are required (Debian: apt-get install nginx wrk curl)", file=sys.stderr)
        return 1
    nginx, wrk, curl = tools["nginx"], tools["wrk"], tools["curl"]
    assert nginx and wrk
    for name in OPTIONAL_TOOLS:
        if not tools[name]:
            print(f"bench: {name} not found: its rows are skipped (Debian: apt-get install {name})", file=sys.stderr)

    work = Path(tempfile.mkdtemp(prefix="signet-bench-"))
    procs = Procs(work)
    env = dict(
        os.environ,
        BENCH_3C_SECRET="bench-3c-" + secrets.token_hex(16),
        BENCH_OAUTH_SECRET="bench-oauth-" + secrets.token_hex(16),
        BENCH_STATIC_KEY=STATIC_HEADER[1],
        PYTHONPATH=str(ROOT),
    )
    os.environ["BENCH_OAUTH_SECRET"] = env["BENCH_OAUTH_SECRET"]
    results: dict[str, Any] = {
        "params": {
            "quick": quick, "smoke": args.smoke, "rounds": rounds, "duration_s": duration, "concurrency": conc,
            "wrk_threads": 1, "body_bytes": len(JSON_BODY), "cpus": os.cpu_count(),
            "python": sys.version.split()[0], "workdir": str(work),
        }
    }
    started = time.monotonic()

    def phase(name: str) -> None:  # where a slow (smoke) run spent its time
        nonlocal started
        now = time.monotonic()
        print(f"bench: {name} took {now - started:.1f} s", file=sys.stderr)
        started = now

    try:
        (work / "files").mkdir()
        with open(work / "files" / "big.bin", "wb") as fh:
            fh.truncate(stream_mib * MiB)  # sparse: costs no disk
        ports = {
            "upstream": free_port(), "nginx": free_port(), "token": free_port(), "p50": free_port(),
            "raw": free_port(), "caddy": free_port(), "haproxy": free_port(),
        }
        start_nginx(procs, nginx, work, "upstream", nginx_upstream_conf(work, ports["upstream"]), ports["upstream"])
        nginx_peer = start_nginx(
            procs, nginx, work, "nginx",
            nginx_proxy_conf(work, "nginx", ports["nginx"], ports["upstream"], 1), ports["nginx"],
        )
        peers: dict[str, str] = {}  # name -> URL of the extra peers that are installed
        if tools["haproxy"]:
            start_haproxy(procs, tools["haproxy"], work, ports["haproxy"], ports["upstream"])
            peers["haproxy"] = f"http://127.0.0.1:{ports['haproxy']}/v1/items"
        if tools["caddy"]:
            start_caddy(procs, tools["caddy"], work, ports["caddy"], ports["upstream"])
            peers["caddy"] = f"http://127.0.0.1:{ports['caddy']}/v1/items"
        tok = procs.start("token", [sys.executable, "-c", TOKEN_SERVER, str(ports["token"])], env)
        wait_port(ports["token"], tok)
        p50 = procs.start("passthrough50", [sys.executable, str(HERE / "passthrough50.py"), str(ports["p50"]), f"http://127.0.0.1:{ports['upstream']}"], env)
        raw = procs.start("passthrough-raw", [sys.executable, str(HERE / "passthrough_raw.py"), str(ports["raw"]), f"http://127.0.0.1:{ports['upstream']}"], env)
        wait_port(ports["p50"], p50)
        wait_port(ports["raw"], raw)
        signet, sport = start_signet(procs, work, "signet", env, ports, level="info")
        _, lport = start_signet(procs, work, "signet-nolog", env, ports, level="warning")

        up = ports["upstream"]
        urls = {
            "direct": f"http://127.0.0.1:{up}/v1/items",
            "nginx": f"http://127.0.0.1:{ports['nginx']}/v1/items",
            **peers,
            "signet-none": f"http://127.0.0.1:{sport}/none/v1/items",
            "signet-static": f"http://127.0.0.1:{sport}/static/v1/items",
            "signet-sign": f"http://127.0.0.1:{sport}/sign/v1/items",
            "signet-oauth": f"http://127.0.0.1:{sport}/oauth/v1/items",
            "passthrough50": f"http://127.0.0.1:{ports['p50']}/v1/items",
            "passthrough-raw": f"http://127.0.0.1:{ports['raw']}/v1/items",
            "signet-none-nolog": f"http://127.0.0.1:{lport}/none/v1/items",
        }
        # correctness first: every target answers the upstream's body
        phase("setup")
        results["checked"] = check_answers(urls)
        if not args.smoke:
            for url in urls.values():  # warm pools, token cache, caches
                run_wrk(wrk, url, 50, 1)

        samples: dict[str, dict[int, list[dict[str, Any]]]] = {t: {c: [] for c in conc} for t in urls}
        for rnd in range(rounds):
            for c in conc:
                if args.smoke:  # every row at once: proves each works, measures nothing
                    for name, res in run_wrk_all(wrk, urls, c, duration).items():
                        samples[name][c].append(res)
                    continue
                for name, url in urls.items():
                    res = run_wrk(wrk, url, c, duration)
                    samples[name][c].append(res)
                    print(f"round {rnd + 1}/{rounds} c{c:<3} {name:<16} {res['rps']:>9.0f} req/s  p99 {res['p99_ms']:.2f} ms", file=sys.stderr)
        phase("http rows")
        results["http"] = summarise(samples)
        results["ratios"] = compute_ratios(results["http"], conc)

        # streaming: direct, nginx, signet, passthrough50; Signet's RSS sampled
        size = stream_mib * MiB
        path = "/files/big.bin"
        smb: dict[str, float] = {}
        stream_once(curl, f"http://127.0.0.1:{up}{path}", size)  # warm-up: the first read of the file is slow
        surls = {
            "direct": f"http://127.0.0.1:{up}{path}",
            "nginx": f"http://127.0.0.1:{ports['nginx']}{path}",
            "signet": f"http://127.0.0.1:{sport}/none{path}",
            "passthrough50": f"http://127.0.0.1:{ports['p50']}{path}",
            "passthrough-raw": f"http://127.0.0.1:{ports['raw']}{path}",
        }
        with PeakRSS(signet.pid) as rss:  # Signet idles while the others run: its peak is its own
            for _ in range(1 if args.smoke else 2):  # interleaved, best of two
                for name, url in surls.items():
                    smb[name] = max(smb.get(name, 0.0), stream_once(curl, url, size))
        results["streaming"] = {
            "size_mib": stream_mib,
            "mb_per_s": {k: round(v, 1) for k, v in smb.items()},
            "ratio_signet_direct": round(smb["signet"] / smb["direct"], 3),
            "ratio_passthrough50_direct": round(smb["passthrough50"] / smb["direct"], 3),
            "signet_rss_base_mib": round(rss.base / MiB, 1),
            "signet_rss_peak_mib": round(rss.peak / MiB, 1),
            "signet_rss_growth_mib": round((rss.peak - rss.base) / MiB, 1),
        }

        phase("streaming")
        # syscalls per proxied request: Signet (default log level) and the nginx peer, each alone
        if tools["strace"]:
            n_sys = 400 if args.smoke else 4000
            results["syscalls"] = {
                "signet": syscalls_per_request(
                    tools["strace"], work, "signet", signet.pid, urls["signet-none"], n_sys
                ),
                "nginx": syscalls_per_request(
                    tools["strace"], work, "nginx", nginx_peer.pid, urls["nginx"], n_sys
                ),
            }

        phase("syscalls")
        # a fresh Signet: start to ready, idle RSS
        results["process"] = start_and_idle(procs, work, env, ports, 1 if args.smoke else 3)

        phase("start and idle")
        # signing cost per scheme
        results["signing"] = sign_microbench(
            ports["token"], 200 if args.smoke else 2000 if args.quick else 20000
        )

        phase("signing")
        # scaling: 2 Signet workers vs nginx with 2 workers (same upstream)
        if not args.no_scaling:
            procs.stop(signet)
            n2port = free_port()
            n2 = start_nginx(
                procs, nginx, work, "nginx2",
                nginx_proxy_conf(work, "nginx2", n2port, up, 2), n2port,
            )
            s2, s2port = start_signet(procs, work, "signet2", env, ports, workers=2)
            u2 = {
                "nginx-2w": f"http://127.0.0.1:{n2port}/v1/items",
                "signet-none-2w": f"http://127.0.0.1:{s2port}/none/v1/items",
                "signet-sign-2w": f"http://127.0.0.1:{s2port}/sign/v1/items",
            }
            results["checked"].update(check_answers(u2))
            if not args.smoke:
                for url in u2.values():
                    run_wrk(wrk, url, 50, 1)
            s2samples: dict[str, dict[int, list[dict[str, Any]]]] = {t: {50: []} for t in u2}
            for _ in range(rounds):
                if args.smoke:
                    for name, res in run_wrk_all(wrk, u2, 50, duration).items():
                        s2samples[name][50].append(res)
                    continue
                for name, url in u2.items():
                    s2samples[name][50].append(run_wrk(wrk, url, 50, duration))
            summ = summarise(s2samples)
            scaling: dict[str, Any] = {k: v["c50"] for k, v in summ.items()}
            scaling["signet-none-2w/nginx-2w"] = _ratio(scaling["signet-none-2w"]["rps"], scaling["nginx-2w"]["rps"])
            scaling["signet-none-2w/signet-none-1w"] = _ratio(
                scaling["signet-none-2w"]["rps"], results["http"]["signet-none"]["c50"]["rps"]
            )
            results["scaling"] = scaling
            procs.stop(s2)
            procs.stop(n2)

        phase("scaling")
        results["targets"] = compute_targets(results)
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)

    print(render(results))
    text = json.dumps(results, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    else:
        print("\nJSON:")
        print(text)
    if args.plot:  # matplotlib: the `bench` extra
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from plot import plot

        print(f"figure: {plot(results, args.plot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

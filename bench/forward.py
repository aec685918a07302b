"""Forward-proxy mode: what interception costs (issue 20).

    python bench/forward.py            # ~1 min: minting, first request to a new host, keep-alive rows
    python bench/forward.py --quick    # a few seconds per row
    python bench/forward.py --json out.json

Three measurements, everything on 127.0.0.1:

1. **Leaf minting**, in process: µs to mint one leaf (ECDSA P-256 key and a
   certificate signed by the CA), and to build the server context around it
   (what the first CONNECT to a host waits for), median and p90.
2. **First request to a new host** through ``signet serve``: CONNECT, TLS
   handshake and one GET on a host Signet has not seen (a leaf is minted),
   against the same on a host it has (cached leaf); the difference is what a
   new host costs a client.
3. **Keep-alive rows**: one client (Python, uvloop) with C connections, each
   sending GETs back to back for the duration. ``signet-forward``: each
   connection is one CONNECT tunnel (TLS to Signet, then keep-alive requests
   inside it); ``signet-prefix``: the same requests in the prefix form over
   plain HTTP. Both go to one nginx HTTPS upstream (trustme certificate), via
   a route with scheme ``none``. The ratio is the cost of terminating the
   client's TLS; the absolute figures include the Python client's own cost
   and drift with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from run import JSON_BODY, Procs, _nginx_common, ensure_tools, free_port, wait_port  # noqa: E402

from proxy.forward_proxy.ca import load_ca, write_ca  # noqa: E402
from proxy.forward_proxy.leaf import LeafCertificates, mint_leaf  # noqa: E402

NEW_HOSTS = 40


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ------------------------------------------------------------------ minting


def minting(ca_dir: Path, n: int) -> dict[str, Any]:
    ca = load_ca((ca_dir / "ca.pem").read_bytes(), (ca_dir / "ca-key.pem").read_bytes())
    now = dt.datetime.now(dt.UTC)
    mint: list[float] = []
    for i in range(n):
        t = time.perf_counter()
        mint_leaf(ca, f"m{i}.bench.example", now)
        mint.append((time.perf_counter() - t) * 1e6)
    leaves = LeafCertificates(ca, maxsize=n + 1)
    context: list[float] = []
    for i in range(n):
        t = time.perf_counter()
        leaves.context_for(f"c{i}.bench.example")
        context.append((time.perf_counter() - t) * 1e6)
    leaves.close()
    return {
        "leaves": n,
        "mint_us_median": round(statistics.median(mint)),
        "mint_us_p90": round(percentile(mint, 0.9)),
        "context_us_median": round(statistics.median(context)),
        "context_us_p90": round(percentile(context, 0.9)),
    }


# ------------------------------------------------------------------ clients


async def _head(reader: asyncio.StreamReader) -> tuple[int, int]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, length


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    status, length = await _head(reader)
    if length:
        await reader.readexactly(length)
    return status


async def open_tunnel(
    port: int, host: str, context: ssl.SSLContext
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
    status, _ = await _head(reader)
    if status != 200:
        raise RuntimeError(f"CONNECT {host}: {status}")
    await writer.start_tls(context, server_hostname=host)
    return reader, writer


async def first_requests(port: int, context: ssl.SSLContext, hosts: list[str], warm: str) -> dict[str, Any]:
    """CONNECT + TLS + first GET: on hosts never seen, then on a host already minted."""

    async def once(host: str) -> float:
        t = time.perf_counter()
        reader, writer = await open_tunnel(port, host, context)
        status = await _get(reader, writer, f"GET /first HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        elapsed = (time.perf_counter() - t) * 1000
        writer.close()
        if status != 200:
            raise RuntimeError(f"GET through {host}: {status}")
        return elapsed

    await once(warm)  # mint it, warm the upstream pool
    new = [await once(h) for h in hosts]
    cached = [await once(warm) for _ in hosts]
    return {
        "hosts": len(hosts),
        "new_host_ms_median": round(statistics.median(new), 2),
        "cached_host_ms_median": round(statistics.median(cached), 2),
        "new_host_extra_ms": round(statistics.median(new) - statistics.median(cached), 2),
    }


async def keep_alive_row(
    port: int, conns: int, seconds: float, context: ssl.SSLContext | None, host: str, path: str
) -> dict[str, Any]:
    """``conns`` connections sending GETs back to back; tunnelled when ``context`` is given."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    latencies: list[float] = []
    errors = 0
    deadline = 0.0

    async def worker() -> None:
        nonlocal errors
        if context is not None:
            reader, writer = await open_tunnel(port, host, context)
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                if await _get(reader, writer, request) != 200:
                    errors += 1
                latencies.append(time.perf_counter() - t)
        finally:
            writer.close()

    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conns)))
    took = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": round(len(latencies) / took),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
    }


# -------------------------------------------------------------------- setup


def nginx_https_conf(work: Path, port: int, cert: Path, key: Path) -> str:
    return _nginx_common(work, "upstream", 1) + f"""  server {{
    listen 127.0.0.1:{port} ssl backlog=4096;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{ default_type application/json; return 200 '{JSON_BODY}'; }}
  }}
}}
"""


def signet_config(port: int, admin: int, upstream: int, ca_dir: Path, vendor_ca: Path) -> str:
    hosts = ", ".join(f"{h}:443" for h in ["bench.example", *(f"new{i}.bench.example" for i in range(NEW_HOSTS))])
    return f"""listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{admin}
forward_proxy:
  ca: {{cert_file: {ca_dir / 'ca.pem'}, key_file: {ca_dir / 'ca-key.pem'}}}
routes:
  - name: none
    prefix: /none
    upstream: https://127.0.0.1:{upstream}
    hosts: [{hosts}]
    tls: {{ca_file: {vendor_ca}}}
    auth: {{scheme: none}}
"""


async def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import trustme

    tools = ensure_tools(not args.no_install)
    nginx = tools.get("nginx")
    if not nginx:
        raise SystemExit("nginx is needed (Debian package nginx)")
    ca_dir = work / "signet-ca"
    write_ca(ca_dir)
    results: dict[str, Any] = {"minting": minting(ca_dir, 50 if args.quick else 300)}

    vendor = trustme.CA()
    vendor_ca = work / "vendor-ca.pem"
    vendor.cert_pem.write_to_path(str(vendor_ca))
    leaf = vendor.issue_cert("127.0.0.1")
    cert, key = work / "up.pem", work / "up-key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))

    procs = Procs(work)
    try:
        up_port = free_port()
        path = work / "upstream.conf"
        path.write_text(nginx_https_conf(work, up_port, cert, key))
        wait_port(up_port, procs.start("upstream", [nginx, "-p", str(work), "-c", str(path)]))
        port, admin = free_port(), free_port()
        config = work / "signet.yaml"
        config.write_text(signet_config(port, admin, up_port, ca_dir, vendor_ca))
        signet = procs.start(
            "signet",
            [sys.executable, "-m", "proxy", "serve", "--config", str(config), "--log-level", "warning"],
            env={**os.environ, "PYTHONPATH": str(HERE.parent)},
        )
        wait_port(port, signet)
        context = ssl.create_default_context(cafile=str(ca_dir / "ca.pem"))
        context.set_alpn_protocols(["http/1.1"])
        hosts = [f"new{i}.bench.example" for i in range(10 if args.quick else NEW_HOSTS)]
        results["first_request"] = await first_requests(port, context, hosts, "bench.example")
        seconds = 2.0 if args.quick else args.seconds
        rows: dict[str, Any] = {}
        for _ in range(1 if args.quick else 3):  # interleaved rounds
            for name, ctx, host, target in (
                ("signet-forward", context, "bench.example", "/items"),
                ("signet-prefix", None, f"127.0.0.1:{port}", "/none/items"),
            ):
                row = await keep_alive_row(port, args.conns, seconds, ctx, host, target)
                rows.setdefault(name, []).append(row)
        summary = {}
        for name, runs in rows.items():
            summary[name] = {
                "rps": round(statistics.median(r["rps"] for r in runs)),
                "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 2),
                "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 2),
                "errors": sum(r["errors"] for r in runs),
            }
        summary["forward_vs_prefix_rps"] = round(
            summary["signet-forward"]["rps"] / max(1, summary["signet-prefix"]["rps"]), 3
        )
        results["keep_alive"] = {"conns": args.conns, "seconds": seconds, **summary}
    finally:
        procs.stop_all()
    return results


def render(results: dict[str, Any]) -> str:
    m, f, k = results["minting"], results["first_request"], results["keep_alive"]
    lines = [
        f"leaf minting ({m['leaves']} leaves): mint {m['mint_us_median']} us (p90 {m['mint_us_p90']}), "
        f"mint + server context {m['context_us_median']} us (p90 {m['context_us_p90']})",
        f"first request to a new host ({f['hosts']} hosts, CONNECT + TLS + GET): "
        f"{f['new_host_ms_median']} ms vs {f['cached_host_ms_median']} ms on a cached host "
        f"(+{f['new_host_extra_ms']} ms)",
        f"keep-alive, {k['conns']} connections, {k['seconds']:g} s per round:",
    ]
    for name in ("signet-forward", "signet-prefix"):
        r = k[name]
        lines.append(
            f"  {name:<15} {r['rps']:>7} req/s  p50 {r['p50_ms']:>6} ms  p99 {r['p99_ms']:>6} ms  "
            f"errors {r['errors']}"
        )
    lines.append(f"  forward / prefix: {k['forward_vs_prefix_rps']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--conns", type=int, default=10)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--no-install", action="store_true")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with tempfile.TemporaryDirectory(prefix="signet-bench-forward-") as tmp:
        results = asyncio.run(measure(args, Path(tmp)))
    print(render(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The proxy listener over TLS: Signet beside nginx, both terminating TLS in front of one upstream.

    python bench/tls.py            # 3 interleaved rounds of 5 s (about 1 min)
    python bench/tls.py --quick    # 1 round of 2 s

Rows, every one at c50 on one core each (nginx worker_processes 1):

- ``nginx-tls`` / ``signet-none-tls``: keep-alive requests over TLS (nginx with
  ``ssl_session_cache`` on), i.e. the cost of TLS records on the hot path;
- ``nginx-plain`` / ``signet-none``: the same without TLS, for the TLS tax;
- ``*-handshake``: a new connection and a full handshake for every request
  (``Connection: close``), i.e. new connections per second.

Ratios are taken within one run only; absolute numbers differ a lot between
machines. The certificate is ECDSA P-256 from trustme for both servers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # bench/run.py: processes, nginx, wrk


def nginx_tls_conf(work: Path, name: str, port: int, tls_port: int, upstream_port: int, cert: Path, key: Path) -> str:
    return bench._nginx_common(work, name, 1) + f"""  upstream up {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
  ssl_session_cache shared:SSL:10m;
  ssl_protocols TLSv1.2 TLSv1.3;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    listen 127.0.0.1:{tls_port} ssl backlog=4096;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Api-Key bench-static-key;
    }}
  }}
}}
"""


def signet_tls_config(port: int, admin: int, upstream: int, cert: Path | None, key: Path | None) -> str:
    tls = f"listen_tls: {{cert_file: {cert}, key_file: {key}}}\n" if cert else ""
    return f"""listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{admin}
shutdown_grace: 2
{tls}routes:
  - name: none
    prefix: /none
    upstream: http://127.0.0.1:{upstream}
    auth: {{scheme: none}}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args(argv)
    import trustme

    tools = bench.ensure_tools(install=False)
    nginx, wrk = tools["nginx"], tools["wrk"]
    if not (nginx and wrk):
        print("nginx and wrk are needed (Debian: apt-get install nginx wrk)", file=sys.stderr)
        return 1
    rounds, seconds = (1, 2) if args.quick else (3, 5)
    with tempfile.TemporaryDirectory(prefix="signet-bench-tls-") as tmp:
        work = Path(tmp)
        procs = bench.Procs(work)
        try:
            ca = trustme.CA()
            leaf = ca.issue_cert("127.0.0.1")
            cert, key = work / "tls.crt", work / "tls.key"
            leaf.cert_chain_pems[0].write_to_path(str(cert))
            leaf.private_key_pem.write_to_path(str(key))
            up = bench.free_port()
            bench.start_nginx(procs, nginx, work, "upstream", bench.nginx_upstream_conf(work, up), up)
            nplain, ntls = bench.free_port(), bench.free_port()
            bench.start_nginx(
                procs, nginx, work, "nginx", nginx_tls_conf(work, "nginx", nplain, ntls, up, cert, key), ntls
            )
            sig: dict[str, int] = {}
            for name, use_tls in (("signet-tls", True), ("signet", False)):
                port, admin = bench.free_port(), bench.free_port()
                cfg = work / f"{name}.yaml"
                cfg.write_text(signet_tls_config(port, admin, up, cert if use_tls else None, key if use_tls else None))
                proc = procs.start(
                    name,
                    [sys.executable, "-m", "proxy", "serve", "--config", str(cfg), "--log-level", "warning"],
                    cwd=bench.ROOT,
                )
                bench.wait_port(port, proc)
                bench.wait_port(admin, proc)
                sig[name] = port
            urls = {
                "nginx-plain": f"http://127.0.0.1:{nplain}/v1/items",
                "signet-none": f"http://127.0.0.1:{sig['signet']}/none/v1/items",
                "nginx-tls": f"https://127.0.0.1:{ntls}/v1/items",
                "signet-none-tls": f"https://127.0.0.1:{sig['signet-tls']}/none/v1/items",
            }
            bench.check_answers({k: v for k, v in urls.items() if k.endswith("plain") or k == "signet-none"})
            samples: dict[str, list[dict[str, Any]]] = {}
            for _ in range(rounds):
                for name, url in urls.items():
                    samples.setdefault(name, []).append(bench.run_wrk(wrk, url, 50, seconds))
                for name in ("nginx-tls", "signet-none-tls"):
                    res = _run_close(wrk, urls[name], seconds)
                    samples.setdefault(f"{name}-handshake", []).append(res)
            table = {name: _median_row(runs) for name, runs in samples.items()}
        finally:
            procs.stop_all()
    ratio = _ratios(table)
    _print(table, ratio)
    if args.json:
        args.json.write_text(json.dumps({"rows": table, "ratios": ratio}, indent=2))
    return 0


def _run_close(wrk: str, url: str, seconds: int) -> dict[str, Any]:
    """A new connection (and handshake) per request: wrk with Connection: close."""
    import subprocess

    out = subprocess.run(
        [wrk, "-t1", "-c16", f"-d{seconds}s", "--latency", "-H", "Connection: close", url],
        capture_output=True, text=True, timeout=seconds + 30, check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr.strip()}")
    return bench.parse_wrk(out.stdout)


def _median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rps": round(bench._median([r["rps"] for r in runs]), 1),
        "p99_ms": round(bench._median([r["p99_ms"] for r in runs]), 3),
        "errors": sum(r["errors"] for r in runs),
    }


def _ratios(t: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    def r(a: str, b: str) -> float | None:
        return bench._ratio(t[a]["rps"], t[b]["rps"])

    return {
        "signet-none-tls/nginx-tls": r("signet-none-tls", "nginx-tls"),
        "signet-none/nginx-plain": r("signet-none", "nginx-plain"),
        "signet-none-tls/signet-none": r("signet-none-tls", "signet-none"),
        "nginx-tls/nginx-plain": r("nginx-tls", "nginx-plain"),
        "signet handshakes/nginx handshakes": r("signet-none-tls-handshake", "nginx-tls-handshake"),
    }


def _print(table: dict[str, dict[str, Any]], ratio: dict[str, float | None]) -> None:
    print(f"{'target':<28}{'req/s':>10}{'p99 ms':>9}{'err':>5}")
    for name, row in table.items():
        print(f"{name:<28}{row['rps']:>10.0f}{row['p99_ms']:>9.2f}{row['errors']:>5}")
    print("ratios:")
    for name, value in ratio.items():
        print(f"  {name:<36} {value}")


if __name__ == "__main__":
    raise SystemExit(main())

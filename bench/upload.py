"""Signed-upload throughput: a large body signed by Signet against the same body streamed unsigned.

    .venv/bin/python bench/upload.py              # 1 GiB, best of 2 interleaved rounds
    .venv/bin/python bench/upload.py --mib 256 --rounds 1

Runs on 127.0.0.1 in a temporary directory: a sink upstream (this script with
``--sink``, a separate process) that reads every body and, when a 3Commas
``Signature`` or a Quicklizard ``API_DIGEST`` is present, recomputes it from
the vendor's formula and answers 401 on a mismatch; and ``signet serve`` with
three routes to it: ``/none`` (scheme ``none``: the body is streamed),
``/sign`` (scheme ``threecommas``: the body is spooled to disk while its HMAC
is computed, then sent from the file) and ``/sign2`` (scheme ``quicklizard``:
the timestamp comes before the body in the message, so the digest is a second
pass over the spool file). curl uploads the same file (``-T``, with its
Content-Length) to each.
Reported per route: MB/s (MiB per second, best round) and Signet's RSS growth
over its idle baseline (peak sampled every 20 ms, bench/run.py's PeakRSS).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE_DIR = str(Path(__file__).resolve().parent)
if HERE_DIR not in sys.path:
    sys.path.insert(0, HERE_DIR)
from run import PeakRSS, free_port, wait_port  # noqa: E402  (bench/run.py's helpers)

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
API_KEY = "bench-upload-key"
SECRET = "bench-upload-secret-0001"
ROUTES = ("none", "sign", "sign2")


# ------------------------------------------------------------------- the sink


def run_sink(port: int, secret: str) -> None:
    """An upstream that drains bodies and verifies a 3Commas signature when one is sent."""
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        path, _, query = request.raw_path.partition("?")
        sig = request.headers.get("Signature")  # 3Commas: HMAC(path?query + body)
        digest = request.headers.get("API_DIGEST")  # Quicklizard: SHA-256(path query body secret)
        h: Any
        if digest is not None:
            h = hashlib.sha256((path + query).encode())
        else:
            h = hmac.new(secret.encode(), (path + ("?" + query if query else "")).encode(), hashlib.sha256)
        got = sig if sig is not None else digest
        size = 0
        async for chunk in request.content.iter_chunked(MiB):
            size += len(chunk)
            if got is not None:
                h.update(chunk)
        if digest is not None:
            h.update(secret.encode())
        if got is not None and not hmac.compare_digest(got, h.hexdigest()):
            return web.json_response({"ok": False, "size": size}, status=401)
        return web.json_response({"ok": True, "size": size, "signed": got is not None})

    app = web.Application(client_max_size=1 << 42)
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# --------------------------------------------------------------------- helpers







def upload(url: str, path: Path, size: int) -> float:
    """POST the file with curl, return MiB/s; the sink must accept every byte."""
    out = subprocess.run(
        ["curl", "-sS", "-X", "POST", "-T", str(path), "-w", "\n%{http_code} %{time_total}", url],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    body, _, tail = out.stdout.rpartition("\n")
    code, seconds = tail.split() if tail else ("000", "0")
    if code != "200":
        raise RuntimeError(f"{url}: status {code}: {body[:300]} {out.stderr.strip()}")
    answer = json.loads(body)
    if answer.get("size") != size:
        raise RuntimeError(f"{url}: the sink received {answer.get('size')} of {size} bytes")
    return size / MiB / float(seconds)


def signet_config(port: int, admin: int, sink: int, spool: Path, max_body: int) -> str:
    upstream = f"http://127.0.0.1:{sink}/v1"
    return json.dumps(  # JSON is YAML
        {
            "listen": f"127.0.0.1:{port}",
            "admin_listen": f"127.0.0.1:{admin}",
            "defaults": {"max_body_bytes": max_body, "spool_dir": str(spool)},
            "routes": [
                {"name": "none", "prefix": "/none", "upstream": upstream},
                {
                    "name": "sign",
                    "prefix": "/sign",
                    "upstream": upstream,
                    "auth": {"scheme": "threecommas", "api_key": API_KEY, "secret": SECRET},
                },
                {
                    "name": "sign2",
                    "prefix": "/sign2",
                    "upstream": upstream,
                    "auth": {"scheme": "quicklizard", "api_key": API_KEY, "api_secret": SECRET},
                },
            ],
        }
    )


# ------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=1024, help="body size in MiB (default 1024)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best is reported")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.sink:
        run_sink(args.port, SECRET)
        return 0

    size = args.mib * MiB
    procs: list[subprocess.Popen[Any]] = []
    with tempfile.TemporaryDirectory(prefix="signet-upload-") as tmp:
        work = Path(tmp)
        spool = work / "spool"
        spool.mkdir()
        body = work / "body.bin"
        block = os.urandom(4 * MiB)
        with body.open("wb") as fh:
            for start in range(0, size, len(block)):
                fh.write(block[: size - start])
        try:
            sink_port = free_port()
            sink = subprocess.Popen([sys.executable, __file__, "--sink", "--port", str(sink_port)])
            procs.append(sink)
            wait_port(sink_port, sink)
            port, admin = free_port(), free_port()
            cfg = work / "signet.yaml"
            cfg.write_text(signet_config(port, admin, sink_port, spool, 2 * size + MiB))
            signet = subprocess.Popen(
                [sys.executable, "-m", "proxy", "serve", "--config", str(cfg), "--log-level", "warning"],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
            )
            procs.append(signet)
            wait_port(port, signet)
            small = work / "small.bin"
            small.write_bytes(b"warm-up")
            for route in ROUTES:
                upload(f"http://127.0.0.1:{port}/{route}/upload", small, 7)

            best: dict[str, float] = {}
            growth: dict[str, float] = {}
            for rnd in range(args.rounds):
                for route in ROUTES:
                    with PeakRSS(signet.pid) as rss:
                        mbs = upload(f"http://127.0.0.1:{port}/{route}/upload?round={rnd}", body, size)
                    best[route] = max(best.get(route, 0.0), mbs)
                    growth[route] = max(growth.get(route, 0.0), (rss.peak - rss.base) / MiB)
                    print(
                        f"round {rnd + 1}/{args.rounds} {route:<5} {mbs:7.1f} MiB/s  "
                        f"RSS growth {(rss.peak - rss.base) / MiB:5.1f} MiB",
                        file=sys.stderr,
                    )
            left = list(spool.iterdir())
        finally:
            for p in reversed(procs):
                p.terminate()
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
    names = {"none": "unsigned", "sign": "signed", "sign2": "signed_second_pass"}
    results = {
        "size_mib": args.mib,
        "mb_per_s": {names[r]: round(best[r], 1) for r in ROUTES},
        "ratio_signed_unsigned": round(best["sign"] / best["none"], 3),
        "ratio_signed_second_pass_unsigned": round(best["sign2"] / best["none"], 3),
        "rss_growth_mib": {names[r]: round(growth[r], 1) for r in ROUTES},
        "spool_files_left": len(left),
    }
    labels = {
        "none": "unsigned (none)",
        "sign": "signed (threecommas)",
        "sign2": "signed (quicklizard, 2nd pass)",
    }
    print(f"upload of {args.mib} MiB through Signet (best of {args.rounds}):")
    for r in ROUTES:
        print(f"  {labels[r]:<32} {best[r]:8.1f} MiB/s  RSS growth {growth[r]:.1f} MiB")
    print(f"  signed / unsigned                {results['ratio_signed_unsigned']:8.3f}")
    print(json.dumps(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python bench/run.py --smoke` works end to end (CI proves the benchmark runs; no timing or rate asserted).

``--smoke`` runs every row (c50 and c10, scaling) once with all targets at
once, a 16 MiB stream and a short signing loop: every row, section and JSON
field is produced as in a full run, in about 10 s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEARCH = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin:/usr/local/sbin"

pytestmark = pytest.mark.skipif(
    not (shutil.which("nginx", path=SEARCH) and shutil.which("wrk", path=SEARCH)),
    reason="nginx and wrk are not installed (Debian: apt-get install nginx wrk curl); "
    "the benchmark smoke test needs both",
)

HTTP_ROWS = (
    "direct",
    "nginx",
    "signet-none",
    "signet-sign",
    "signet-oauth",
    "passthrough50",
    "passthrough-raw",
    "signet-none-nolog",
)

SCALING_ROWS = ("nginx-2w", "signet-none-2w", "signet-sign-2w")


@pytest.mark.timeout(300)
def test_quick_benchmark_prints_table_and_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--no-install", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = proc.stdout
    for row in HTTP_ROWS:
        assert f"\n{row} " in table, table
    for section in ("ratios", "streaming", "signing cost", "scaling", "targets:"):
        assert section in table, table

    data = json.loads(out.read_text())
    assert set(data["http"]) == set(HTTP_ROWS)
    # What the run did, not how fast (a loaded 2-core machine may finish no request in a smoke second):
    # every target, the 2-worker ones included, gave the upstream's exact body to a real request ...
    assert data["checked"] == dict.fromkeys((*HTTP_ROWS, *SCALING_ROWS), 200), data["checked"]
    # ... and wrk ran against each, with every answer it did get a 2xx and no connection broken.
    for row in HTTP_ROWS:
        for c in ("c50", "c10"):
            cell = data["http"][row][c]
            assert cell["requests"] >= 0 and cell["non2xx"] == 0 and cell["socket_errors"] == 0, (row, c, cell)
    assert {"signet-none/nginx", "signet-sign/signet-none"} <= set(data["ratios"])  # None when a rate was 0
    s = data["streaming"]
    assert set(s["mb_per_s"]) >= {"direct", "signet", "passthrough-raw"} and s["ratio_signet_direct"] > 0
    assert s["signet_rss_peak_mib"] >= s["signet_rss_base_mib"] > 0
    schemes = {r["scheme"] for r in data["signing"]}
    assert {"none", "threecommas", "oauth2 (cached token)", "hmac (recipe)"} <= schemes
    assert all(r["us_per_signature"] > 0 for r in data["signing"])
    for row in SCALING_ROWS:
        cell = data["scaling"][row]
        assert cell["non2xx"] == 0 and cell["socket_errors"] == 0, (row, cell)
    assert data["targets"]
    # nothing left running from this run (other checkouts may be benchmarking on this machine)
    leftovers = subprocess.run(
        ["pgrep", "-f", data["params"]["workdir"]], capture_output=True, text=True, check=False
    )
    assert not leftovers.stdout.strip(), leftovers.stdout

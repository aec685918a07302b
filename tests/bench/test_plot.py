"""bench/plot.py draws run.py's results (the Benchmarks page shows the figure)."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.conftest import ROOT

ROW = {"rps": 1000.0, "p50_ms": 1.0, "p99_ms": 4.5, "errors": 0}


def _results() -> dict:
    http = {t: {"c50": {**ROW, "rps": rps}, "c10": {**ROW, "rps": rps * 0.9}}
            for t, rps in (("nginx", 20000.0), ("signet-none", 8000.0), ("passthrough-raw", 12000.0))}
    return {"params": {"concurrency": [50, 10], "quick": True, "rounds": 1, "duration_s": 1},
            "http": http, "ratios": {"signet-none/nginx": 0.4, "passthrough-raw/nginx": 0.6, "missing": None}}


def test_plot_draws_every_target_and_ratio(tmp_path: Path) -> None:
    saved = tmp_path / "results.json"
    saved.write_text(json.dumps(_results()))
    out = tmp_path / "bench.svg"
    r = subprocess.run([sys.executable, "bench/plot.py", str(saved), str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    svg = out.read_text()
    ET.fromstring(svg)  # well-formed
    for text in ("nginx", "signet-none", "passthrough-raw", "signet-none/nginx", "0.40", "8000", "quick run"):
        assert text in svg, text
    assert "missing" not in svg  # a ratio the run could not compute is left out


def test_the_benchmarks_page_shows_the_latest_figure() -> None:
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    assert "![" in page and "bench/latest.svg" in page
    ET.fromstring((ROOT / "docs" / "bench" / "latest.svg").read_text())
    latest = json.loads((ROOT / "docs" / "bench" / "latest.json").read_text())
    assert "signet-none" in latest["http"] and "signet-none" in (ROOT / "docs" / "bench" / "latest.svg").read_text()

"""CI form of the soak: `bench/soak.py --quick` (2,000 requests, reload, upstream restart)."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.conftest import ROOT


def test_soak_quick_passes_within_a_minute() -> None:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    elapsed = time.monotonic() - t0
    print("\n" + proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS" in proc.stdout and "errors other:    0" in proc.stdout
    assert "reload (SIGHUP): ok" in proc.stdout
    assert elapsed < 60, f"soak --quick took {elapsed:.0f} s"

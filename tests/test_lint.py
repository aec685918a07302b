"""CI runs the linters through the suite: ruff on all code, mypy on proxy/ (pyproject's [tool.mypy])."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_ruff_is_clean() -> None:
    out = _run("ruff", "check", "proxy", "tests", "bench")
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_is_clean() -> None:
    out = _run("mypy")  # files, plugins and strictness come from pyproject.toml
    assert out.returncode == 0, out.stdout + out.stderr

"""docs/reference.md is generated from the config models and must not go stale;
every option carries a description (that is what the page is made of)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from proxy.docgen import REFERENCE, options, render, undocumented
from tests.docs.pages import ROOT


def test_every_option_has_a_description() -> None:
    assert undocumented() == []


def test_reference_page_is_current() -> None:
    assert REFERENCE.read_text() == render(), "docs/reference.md is stale: run python -m proxy.docgen"


def test_reference_names_every_option_and_scheme() -> None:
    text = REFERENCE.read_text()
    for opt in options():
        assert f"| `{opt.name}` |" in text, opt.path
    for scheme in ("aws-sigv4", "hmac", "threecommas", "oauth2-client-credentials"):
        assert f"### `scheme: {scheme}`" in text


def test_docgen_check_flags_a_stale_page(tmp_path: Path) -> None:
    stale = tmp_path / "reference.md"
    stale.write_text(render().replace("| `listen` |", "| `listen_old` |"))
    cmd = [sys.executable, "-m", "proxy.docgen", "--check", "--out", str(stale)]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "stale" in result.stderr
    subprocess.run([sys.executable, "-m", "proxy.docgen", "--out", str(stale)], cwd=ROOT, check=True, timeout=60)
    assert subprocess.run([*cmd], cwd=ROOT, timeout=60).returncode == 0

"""A taken address is one line naming it and the setting to change, exit 1: proxy or admin, 1 or N workers."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port held by a plain listening socket (no SO_REUSEPORT, as another program would)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(("flag", "setting"), [("--listen", "listen"), ("--admin-listen", "admin_listen")])
def test_address_in_use_is_one_line(
    tmp_path: Path, taken: int, flag: str, setting: str, workers: str
) -> None:
    config = tmp_path / "signet.yaml"
    config.write_text(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n"
        "routes: [{prefix: /a, upstream: 'http://127.0.0.1:9'}]\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "serve", "--config", str(config),
         flag, f"127.0.0.1:{taken}", "--workers", workers],
        capture_output=True, text=True, timeout=90, cwd=ROOT,
    )
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    line = lines[0]
    assert f"127.0.0.1:{taken}" in line and "address already in use" in line
    assert f"'{setting}'" in line and f"{flag} HOST:PORT" in line
    assert "Traceback" not in out.stderr and "Unclosed" not in out.stderr


@pytest.mark.parametrize("flag", ["--listen", "--admin-listen"])
def test_demo_address_in_use_is_one_line(taken: int, flag: str) -> None:
    other = "--admin-listen" if flag == "--listen" else "--listen"
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "demo", flag, f"127.0.0.1:{taken}", other, "127.0.0.1:0"],
        capture_output=True, text=True, timeout=90, cwd=ROOT,
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        f"signet demo: cannot listen on 127.0.0.1:{taken} (address already in use); "
        f"pass another address, e.g. {flag} 127.0.0.1:{'18080' if flag == '--listen' else '19191'}"
    ]

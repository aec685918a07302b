"""The README's demo curl lines, run with real curl against a real ``signet demo`` process."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from proxy.demo import curl_lines, demo_routes
from tests.conftest import ROOT

README = ROOT / "README.md"
DEMO_BASE = "http://127.0.0.1:8080"


def readme_demo_curls() -> list[str]:
    """Every curl line in the demo step (from "Try the demo" to the next step) of the README's
    tour and of docs/getting-started.md."""
    found: list[str] = []
    for path in (README, ROOT / "docs" / "getting-started.md"):
        text = path.read_text()
        start = text.index("1. Try the demo")
        end = text.index("\n2. ", start)
        found += [line.strip() for line in text[start:end].splitlines() if line.strip().startswith("curl ")]
    return list(dict.fromkeys(found))


def test_readme_demo_examples_come_from_the_demo_route_table() -> None:
    shown = readme_demo_curls()
    assert len(shown) >= 2
    assert set(shown) <= set(curl_lines(demo_routes(), DEMO_BASE))


class Lines:
    """Collects a pipe's lines in a thread; wait() for one that matches, with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        regex = re.compile(pattern)
        with self._cond:
            found: list[re.Match[str]] = []

            def match() -> bool:
                found.extend(m for m in map(regex.search, self.lines) if m)
                return bool(found)

            assert self._cond.wait_for(match, timeout), f"no {pattern!r} in {self.lines}"
            return found[0]


def test_readme_demo_curls_succeed_against_a_running_demo(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        out, err = Lines(proc.stdout), Lines(proc.stderr)
        base = out.wait(r"proxy on (http://127\.0\.0\.1:\d+),").group(1)
        banner = out.wait(r"--log-level").string
        assert "one line per request" in banner
        out.wait("Press Ctrl-C to stop")
        for line in readme_demo_curls():
            # the banner shows the same line, on the demo's real port
            assert "  " + line.replace(DEMO_BASE, base) in out.lines
            argv = shlex.split(line.replace(DEMO_BASE, base))
            result = subprocess.run([*argv, "--max-time", "20"], capture_output=True, text=True, timeout=30)
            assert result.returncode == 0, result.stderr
            answer = json.loads(result.stdout)
            assert answer["ok"] is True, answer
            route = argv[-1 if "-X" not in argv else argv.index("-X") + 2].split("/")[3]
            assert answer["vendor"] == route  # every mock names its vendor (3PL Central too)
            # ...and the demo logs one console line for it (default level info)
            err.wait(rf"\[info\s*\] request .*route={re.escape(route)} .*status=200")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        out.wait("Signet demo stopped")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

"""Every shell example in the README and the docs is checked, and the fleet
example is run as written.

Checked: each block is valid bash (``bash -n``), every ``signet`` command in it
parses with Signet's own argument parser, every program it names is one a user
has (or installs as the page says), and scripts it names exist. Run: blocks
marked ``<!-- docs-test: run ... -->`` are executed with bash, with only the
ports (and the vendor's host, which tests must not reach) replaced.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from proxy.cli import build_parser
from tests.docs.pages import ROOT, pages
from tests.fakes import free_port

VENV_BIN = Path(sys.executable).parent
# programs a page may tell a user to run (installed as the page says)
PROGRAMS = {
    "python3", "signet", "curl", "export", "cat", "source", "redis-server", "docker", "podman",
    "buildah", "kubectl", "kind", "minikube", "bao", "vault", "openssl", "promtool", "mkdocs",
    "echo", "mkdir", "cd", "kustomize", "ls", "pip", "git", "chmod", "printf", "grep", "ruff", "mypy", "cp", "$EDITOR",
}


def _blocks() -> list[tuple[str, str, bool]]:
    found = []
    for path in [*pages(), ROOT / "deploy" / "README.md"]:
        text = path.read_text()
        for i, m in enumerate(re.finditer(r"(<!-- docs-test: run[^>]*-->\n)?```(?:sh|bash)\n(.*?)```", text, re.S)):
            found.append((f"{path.relative_to(ROOT)} sh block {i}", m.group(2), m.group(1) is not None))
    return found


BLOCKS = _blocks()
IDS = [where for where, _, _ in BLOCKS]


def commands(block: str) -> list[list[str]]:
    """The block's commands as argv lists: continuations joined, heredoc bodies and comments skipped."""
    out: list[list[str]] = []
    lines = iter(block.splitlines())
    pending = ""
    for line in lines:
        line = pending + line
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        heredoc = re.search(r"<<-?'?(\w+)'?", line)
        if heredoc:
            for body in lines:
                if body.strip() == heredoc.group(1):
                    break
            line = line[: heredoc.start()]
        for part in re.split(r"\s(?:&&|\|\||;|\|)\s", line):
            argv = shlex.split(part, comments=True)
            while argv and argv[-1] == "&":
                argv.pop()
            if argv and argv[-1].endswith("&"):
                argv[-1] = argv[-1][:-1]
            while argv and argv[0] in ("do", "then", "else"):
                argv.pop(0)
            if argv and argv[0] not in ("for", "done", "fi", "if", "while"):
                out.append(argv)
    return out


def _program(argv: list[str]) -> str:
    words = [w for w in argv if not re.match(r"[A-Za-z_][A-Za-z0-9_]*=", w)]  # VAR=value prefixes
    return words[0] if words else "export"


def test_there_are_shell_examples_and_one_runs() -> None:
    assert len(BLOCKS) >= 15
    assert any(run for _, _, run in BLOCKS)


@pytest.mark.parametrize(("where", "block", "run"), BLOCKS, ids=IDS)
def test_shell_example_is_valid_and_names_real_things(where: str, block: str, run: bool) -> None:
    syntax = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True, timeout=30)
    assert syntax.returncode == 0, syntax.stderr
    for argv in commands(block):
        program = _program(argv)
        name = program.rsplit("/", 1)[-1]
        assert name in PROGRAMS or name.startswith("python"), f"{where}: unknown program {program!r}"
        if name == "signet":
            words = argv[argv.index(program) + 1 :]
            try:
                build_parser().parse_args(words)
            except SystemExit as exc:
                if exc.code != 0:  # --help / --version exit 0
                    pytest.fail(f"{where}: signet rejects {shlex.join(words)}")
        if name.startswith("python"):
            scripts = [w for w in argv[1:] if w.endswith(".py") and not w.startswith("-")]
            for script in scripts:
                assert (ROOT / script).is_file(), f"{where}: no {script}"


class _Vendor(BaseHTTPRequestHandler):
    """Stands in for api.3commas.io (tests reach only loopback): answers 200 and counts."""

    hits = 0
    lock = threading.Lock()

    def do_GET(self) -> None:
        with _Vendor.lock:
            _Vendor.hits += 1
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_the_fleet_example_runs_as_written(tmp_path: Path) -> None:
    """Two `signet serve` sharing one redis-server, exactly as docs/shared-service.md shows.

    The block's own checks are its curl lines to both /readyz; then one budget is
    shared: 20 concurrent requests spread over both processes get at most the
    11 + 3 the limit allows within max_wait (without Redis each process would admit 10 of its 10).
    """
    [(where, block, _)] = [b for b in BLOCKS if b[2] and "shared-service" in b[0]]
    vendor = ThreadingHTTPServer(("127.0.0.1", 0), _Vendor)
    threading.Thread(target=vendor.serve_forever, daemon=True).start()
    ports = {p: free_port() for p in (6379, 8080, 8081, 9191, 9192)}
    script = block.replace("https://api.3commas.io", f"http://127.0.0.1:{vendor.server_address[1]}")
    for old, new in ports.items():
        script = script.replace(f":{old}", f":{new}").replace(f"--port {old}", f"--port {new}")
    script = re.sub(r"^signet ", f"{VENV_BIN}/signet ", script, flags=re.M)
    env = {"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin", "TC_KEY": "tc-key-example", "TC_SECRET": "tc-secret-example"}
    # files, not pipes: the background processes keep their stdout open after bash exits
    with open(tmp_path / "out", "w") as stdout, open(tmp_path / "err", "w") as stderr:
        proc = subprocess.Popen(
            ["bash", "-e", "-c", script], cwd=tmp_path, env=env, start_new_session=True,
            stdout=stdout, stderr=stderr, text=True,
        )
    try:
        proc.wait(timeout=90)
        out, err = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
        assert proc.returncode == 0, f"{where} failed:\n{out}\n{err[-3000:]}"
        assert "team.yaml: ok, 1 route" in out
        assert out.count('"status": "ready"') == 2, out
        urls = [f"http://127.0.0.1:{ports[p]}/3commas/public/api/ver1/accounts" for p in (8080, 8081)] * 10

        def get(url: str) -> int:
            return requests.get(url, timeout=30).status_code

        with ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(get, urls))
        admitted = statuses.count(200)
        assert set(statuses) <= {200, 429}, statuses
        assert 11 <= admitted <= 15, statuses  # one shared budget: burst 10 + 1, then one per 0.6 s for 2 s
        assert _Vendor.hits == admitted
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the two signet serve and the redis-server it started
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        vendor.shutdown()

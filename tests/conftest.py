"""Shared fixtures: a fake upstream, Signet in-process, Signet as a real process.

Every log line of the run (in-process and every `signet serve` child) is kept
under one directory; at the end of the session it is grepped for every secret
a test registered with :func:`secret`, and the run fails if one is found.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.app import Signet
from proxy.config import load_config_text
from proxy.log import configure_logging
from tests.fakes import upstream_app

LOG_DIR = Path(tempfile.mkdtemp(prefix="signet-test-logs-"))
_IN_PROCESS_LOG = open(LOG_DIR / "in-process.log", "a", buffering=1)  # noqa: SIM115
SUITE_SECRETS: set[str] = set()
ROOT = Path(__file__).resolve().parent.parent


def secret(value: str) -> str:
    """Register a value that must never appear in any log of this run."""
    SUITE_SECRETS.add(value)
    return value


def pytest_configure(config: pytest.Config) -> None:
    configure_logging("json", "debug", stream=_IN_PROCESS_LOG)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _IN_PROCESS_LOG.flush()
    leaks = []
    for path in LOG_DIR.glob("*.log"):
        text = path.read_text(errors="replace")
        for s in SUITE_SECRETS:
            if s in text:
                leaks.append(f"{path.name}: contains a registered secret ({len(s)} chars)")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if leaks:
        if reporter:
            reporter.write_line("SECRET LEAK in logs:\n  " + "\n  ".join(leaks), red=True)
        session.exitstatus = 1
    elif reporter:
        reporter.write_line(
            f"log audit: {len(SUITE_SECRETS)} secrets, none found in {len(list(LOG_DIR.glob('*.log')))} log files"
        )


# ----------------------------------------------------------------- upstream


@pytest.fixture
async def upstream(aiohttp_server: Any) -> Any:
    """The fake upstream on 127.0.0.1:<random>."""
    return await aiohttp_server(upstream_app(), host="127.0.0.1")


def config_text(routes: list[dict[str, Any]], **top: Any) -> str:
    data: dict[str, Any] = {"listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0", **top}
    data["routes"] = routes
    return yaml.safe_dump(data, sort_keys=False)


# ------------------------------------------------------------ in-process


@pytest.fixture
async def make_signet() -> AsyncIterator[Callable[..., Any]]:
    """Start Signet in this process from a config (text or route list)."""
    started: list[Signet] = []

    async def start(
        config: str | list[dict[str, Any]], env: dict[str, str] | None = None, **kw: Any
    ) -> Signet:
        text = config if isinstance(config, str) else config_text(config)
        settings = load_config_text(text, env=env or {})
        app = Signet(settings, **kw)
        await app.start()
        started.append(app)
        return app

    yield start
    for app in started:
        await app.stop()


# --------------------------------------------------------------- processes


class SignetProcess:
    """`python -m proxy serve` as a child process, logs in LOG_DIR."""

    def __init__(
        self, config_path: Path, env: dict[str, str] | None = None, args: list[str] | None = None
    ):
        self.log_path = LOG_DIR / f"serve-{os.getpid()}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--config", str(config_path), *(args or [])],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=full_env,
            cwd=ROOT,
        )
        self.proxy_url = ""
        self.admin_url = ""

    def wait_listening(self, timeout: float = 15.0) -> SignetProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if event.get("event") == "listening":
                    self.proxy_url = ("https://" if event.get("tls") else "http://") + event["proxy"]
                    self.admin_url = "http://" + event["admin"]
                    return self
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"signet exited early ({self.proc.returncode}):\n{self.text()}"
                )
            time.sleep(0.05)
        raise AssertionError(f"signet did not start:\n{self.text()}")

    def text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return out

    def wait_event(self, name: str, timeout: float = 10.0, after: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            matches = [e for e in self.events() if e.get("event") == name]
            if len(matches) > after:
                return matches[after]
            time.sleep(0.05)
        raise AssertionError(f"no {name!r} event in:\n{self.text()}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def signet_process(tmp_path: Path) -> Iterator[Callable[..., SignetProcess]]:
    procs: list[SignetProcess] = []

    def start(
        config: str,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        wait: bool = True,
    ) -> SignetProcess:
        path = tmp_path / f"signet-{len(procs)}.yaml"
        path.write_text(config)
        p = SignetProcess(path, env, args)
        procs.append(p)
        return p.wait_listening() if wait else p

    yield start
    for p in procs:
        p.stop()


def no_secret_in(text: str, secrets: set[str] | None = None) -> None:
    for s in secrets if secrets is not None else SUITE_SECRETS:
        assert s not in text, "a secret value leaked"


JSON_LINE = re.compile(r"^\{.*\}$")

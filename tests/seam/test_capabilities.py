"""Schemes declare needs_body / retries_on_401 on the instance; check and the pipeline read that."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from proxy.cli import cmd_check
from proxy.config import load_config_text
from proxy.metrics import Metrics
from proxy.runtime import Runtime
from tests.conftest import config_text, secret

KEY = secret("capability-recipe-key-0123456789")


def recipe(message: str) -> dict[str, Any]:
    return {
        "scheme": "hmac",
        "key": "${RKEY}",
        "message": message,
        "headers": {"X-Sig": "{signature}"},
    }


ROUTES = [
    {"name": "body", "prefix": "/b", "upstream": "http://h", "auth": recipe("{method}\n{body}")},
    {"name": "path", "prefix": "/p", "upstream": "http://h", "auth": recipe("{method}\n{path}")},
    {"name": "oauth", "prefix": "/o", "upstream": "http://h", "auth": {
        "scheme": "oauth2-client-credentials", "token_url": "http://t/token",
        "client_id": "c", "client_secret": "${RKEY}"}},
]


def test_check_reports_what_the_instance_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(config_text(ROUTES))
    monkeypatch.setenv("RKEY", KEY)
    # cmd_check, not main(): main configures logging onto capsys's stream, closed after the test
    assert cmd_check(argparse.Namespace(config=str(path))) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:] if line.strip()}
    assert "body=buffered" in lines["body"], lines
    assert "body=streamed" in lines["path"], lines
    assert "body=buffered" in lines["oauth"], lines


async def test_runtime_takes_capabilities_from_the_instance() -> None:
    settings = load_config_text(config_text(ROUTES), env={"RKEY": KEY})
    runtime = Runtime(settings, metrics=Metrics())
    await runtime.start()
    try:
        got = {r.name: (r.needs_body, r.retries_401) for r in runtime.routes}
    finally:
        await runtime.close()
    assert got == {"body": (True, False), "path": (False, False), "oauth": (True, True)}

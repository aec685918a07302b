"""The route option `websocket`: off by default, a boolean, shown by `signet check`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.cli import main
from proxy.config import load_config_text
from proxy.errors import ConfigError
from proxy.log import configure_logging
from tests.conftest import _IN_PROCESS_LOG as SUITE_LOG


def test_websocket_is_off_unless_a_route_asks() -> None:
    settings = load_config_text(
        "routes:\n"
        "  - {name: plain, prefix: /a, upstream: 'http://127.0.0.1:9'}\n"
        "  - {name: ws, prefix: /b, upstream: 'http://127.0.0.1:9', websocket: true}\n"
    )
    assert [(r.name, r.websocket) for r in settings.routes] == [("plain", False), ("ws", True)]


def test_websocket_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text("routes: [{prefix: /a, upstream: 'http://127.0.0.1:9', websocket: sometimes}]")
    assert "websocket" in str(caught.value)


@pytest.fixture
def suite_logging() -> Iterator[None]:
    """main() configures logging onto the captured stderr: give the suite its log back after."""
    yield
    configure_logging("json", "debug", stream=SUITE_LOG)


def test_check_lists_the_websocket_routes(tmp_path: Path, capsys: Any, suite_logging: None) -> None:
    path = tmp_path / "signet.yaml"
    path.write_text(
        "routes:\n"
        "  - {name: plain, prefix: /a, upstream: 'http://127.0.0.1:9'}\n"
        "  - {name: ws, prefix: /b, upstream: 'http://127.0.0.1:9', websocket: true}\n"
    )
    assert main(["check", "--config", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    (plain,) = [line for line in lines if line.strip().startswith("plain ")]
    (ws,) = [line for line in lines if line.strip().startswith("ws ")]
    assert ws.endswith("  websocket") and not plain.endswith("websocket")

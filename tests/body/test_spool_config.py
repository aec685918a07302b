"""spool_bytes / spool_dir in the config: defaults, per-route override, a checked directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.config import load_config_text
from proxy.errors import ConfigError
from tests.conftest import config_text

ROUTES: list[dict[str, Any]] = [
    {"name": "a", "prefix": "/a", "upstream": "http://127.0.0.1:9"},
    {"name": "b", "prefix": "/b", "upstream": "http://127.0.0.1:9", "spool_bytes": 0},
]


def test_defaults() -> None:
    settings = load_config_text(config_text(ROUTES[:1]), env={})
    route = settings.routes[0]
    assert route.spool_bytes == 1024 * 1024 and route.spool_dir is None


def test_spool_dir_and_per_route_spool_bytes(tmp_path: Path) -> None:
    text = config_text(
        ROUTES,
        defaults={"spool_bytes": 4096, "spool_dir": str(tmp_path), "max_body_bytes": 1 << 40},
    )
    a, b = load_config_text(text, env={}).routes
    assert (a.spool_bytes, b.spool_bytes) == (4096, 0)
    assert a.spool_dir == b.spool_dir == str(tmp_path)
    assert a.max_body_bytes == 1 << 40  # many GiB are fine


@pytest.mark.parametrize("bad", ["missing", "file"])
def test_spool_dir_must_be_a_writable_directory(tmp_path: Path, bad: str) -> None:
    path = tmp_path / bad
    if bad == "file":
        path.write_text("x")
    with pytest.raises(ConfigError) as info:
        load_config_text(config_text(ROUTES[:1], defaults={"spool_dir": str(path)}), env={})
    assert "defaults.spool_dir" in str(info.value) and "not a writable directory" in str(info.value)


def test_negative_spool_bytes_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(config_text(ROUTES[:1], defaults={"spool_bytes": -1}), env={})
    assert "defaults.spool_bytes" in str(info.value)

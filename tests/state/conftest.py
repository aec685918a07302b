"""Fixtures: a real Redis per test (restartable for outage tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redisserver import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()

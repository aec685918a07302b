"""Fixtures for the secrets tests: one OpenBao dev server for the module, real and on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.secrets.bao import Bao


@pytest.fixture(scope="session")
def bao() -> Iterator[Bao]:
    server = Bao().start()
    server.enable_kv1()
    yield server
    server.stop()

"""Fixtures for the trust tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.trust.rawupstream import RawUpstream


@pytest.fixture
async def raw_upstream() -> AsyncIterator[RawUpstream]:
    up = RawUpstream()
    up.server = await asyncio.start_server(up._serve, "127.0.0.1", 0, limit=1 << 20)
    up.port = up.server.sockets[0].getsockname()[1]
    yield up
    up.server.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(up.server.wait_closed(), 5)

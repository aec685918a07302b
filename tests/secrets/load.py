"""A steady stream of requests through Signet, counting every answer that is not 200."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field

import aiohttp


@dataclass
class Load:
    url: str
    concurrency: int = 4
    headers: dict[str, str] = field(default_factory=dict)
    ok: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> Load:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._tasks = [asyncio.create_task(self._worker(i)) for i in range(self.concurrency)]
        return self

    async def _worker(self, n: int) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            try:
                async with self._session.post(
                    f"{self.url}?w={n}&i={i}", data=b'{"n":%d}' % i, headers=self.headers
                ) as r:
                    await r.read()
                    if r.status == 200:
                        self.ok += 1
                    else:
                        self.failed[f"{r.status} {r.headers.get('X-Signet-Error', '')}"] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.failed[type(exc).__name__] += 1

    async def wait_ok(self, more: int, timeout: float = 20.0) -> None:
        """Until ``more`` further requests have succeeded."""
        target = self.ok + more
        async with asyncio.timeout(timeout):
            while self.ok < target:
                await asyncio.sleep(0.02)

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(t, 15)
        await self._session.close()

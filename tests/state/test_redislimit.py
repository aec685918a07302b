"""RedisLimitStore against a real redis-server: exact GCRA, burst, wait, pause, Redis's clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from proxy.config import load_config_text
from proxy.errors import StateUnavailable
from proxy.metrics import Metrics
from proxy.ratelimit import Decision
from proxy.redislimit import RedisLimitStore
from proxy.state import SharedState
from tests.conftest import config_text
from tests.redisserver import RedisServer


class RecordingStore:
    """The per-process fallback: admits everything and records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def take(
        self, key: str, interval: float, burst: int, max_wait: float, pause_key: str | None = None
    ) -> Decision:
        self.calls.append(("take", key))
        return Decision(True, 0.0, 0.0)

    async def pause(self, key: str, seconds: float) -> None:
        self.calls.append(("pause", key))

    async def close(self) -> None:
        self.calls.append(("close", ""))


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisLimitStore]:
    state = SharedState(redis_server.url, metrics=Metrics())
    await state.start()
    s = RedisLimitStore(state, RecordingStore())
    yield s
    await s.close()
    await state.close()


async def test_burst_then_exact_spacing(store: RedisLimitStore) -> None:
    # 10 per second, burst 3: four at once, the fifth waits one interval
    got = [await store.take("route:a", 0.1, 3, 0.0) for _ in range(5)]
    assert [d.admitted for d in got] == [True, True, True, True, False]
    assert all(d.wait == 0 for d in got[:4])
    # the refusal says when a slot comes: within one interval (less the time spent)
    assert 0 < got[4].retry_after <= 0.1


async def test_burst_zero_admits_one_per_interval(store: RedisLimitStore) -> None:
    first = await store.take("k", 60.0, 0, 0.0)
    second = await store.take("k", 60.0, 0, 0.0)
    assert first.admitted and not second.admitted
    assert 59.0 < second.retry_after <= 60.0


async def test_waiters_reserve_slots_in_arrival_order(store: RedisLimitStore) -> None:
    # 1 per 0.5 s, no burst, may wait up to 1.2 s: 1st now, 2nd ~0.5, 3rd ~1.0, 4th refused
    got = [await store.take("q", 0.5, 0, 1.2) for _ in range(4)]
    assert [d.admitted for d in got] == [True, True, True, False]
    waits = [d.wait for d in got[:3]]
    assert waits[0] == 0
    assert waits == sorted(waits)
    assert 0.4 < waits[1] <= 0.5 and 0.9 < waits[2] <= 1.0
    assert 1.2 < got[3].retry_after <= 1.5


async def test_refusal_does_not_consume(store: RedisLimitStore) -> None:
    assert (await store.take("r", 0.3, 0, 0.0)).admitted
    for _ in range(5):
        assert not (await store.take("r", 0.3, 0, 0.0)).admitted
    deadline = time.monotonic() + 5
    while not (await store.take("r", 0.3, 0, 0.0)).admitted:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    # admitted about one interval after the first: refusals pushed nothing back


async def test_keys_are_independent(store: RedisLimitStore) -> None:
    assert (await store.take("a", 10.0, 0, 0.0)).admitted
    assert (await store.take("b", 10.0, 0, 0.0)).admitted
    assert not (await store.take("a", 10.0, 0, 0.0)).admitted


async def test_pause_blocks_until_over(store: RedisLimitStore) -> None:
    await store.pause("p", 0.6)
    d = await store.take("p", 0.01, 5, 0.0)
    assert not d.admitted and 0.3 < d.retry_after <= 0.6
    queued = await store.take("p", 0.01, 5, 1.0)  # may wait: goes when the pause ends
    assert queued.admitted and 0.3 < queued.wait <= 0.6
    # a shorter pause never shortens a longer one
    await store.pause("p", 0.05)
    assert not (await store.take("p", 0.01, 5, 0.0)).admitted
    assert ("pause", "p") in store.fallback.calls  # type: ignore[attr-defined]


async def test_one_round_trip_per_decision(store: RedisLimitStore, redis_server: RedisServer) -> None:
    await store.take("warm", 0.001, 100, 0.0)  # loads the script
    with redis_server.client() as r:
        r.config_resetstat()
        for _ in range(50):
            await store.take("warm", 0.001, 100, 0.0)
        stats = r.info("commandstats")
    calls = {k: v["calls"] for k, v in stats.items()}
    # commandstats also counts what the script runs inside Redis (TIME, GET x2, SET):
    # from the client, 50 decisions were 50 EVALSHA and nothing else
    calls.pop("cmdstat_config|resetstat", None)
    calls.pop("cmdstat_info", None)
    assert calls == {"cmdstat_evalsha": 50, "cmdstat_time": 50, "cmdstat_get": 100, "cmdstat_set": 50}


async def test_script_reloaded_after_redis_forgets_it(store: RedisLimitStore, redis_server: RedisServer) -> None:
    assert (await store.take("f", 0.001, 0, 0.0)).admitted
    with redis_server.client() as r:
        r.script_flush()
    await asyncio.sleep(0.01)
    assert (await store.take("f", 10, 0, 0.0)).admitted


async def test_clock_is_redis_time(store: RedisLimitStore, redis_server: RedisServer) -> None:
    await store.take("c", 30.0, 0, 0.0)
    with redis_server.client() as r:
        tat_us = int(r.get("signet:rl:{c}:tat") or 0)
        sec, usec = r.time()
    server_now_us = sec * 1_000_000 + usec
    # the stored theoretical arrival time is Redis's now + one interval
    assert 29.0e6 < tat_us - server_now_us <= 30.0e6


async def test_two_stores_share_one_budget(redis_server: RedisServer) -> None:
    states = [SharedState(redis_server.url) for _ in range(2)]
    stores = [RedisLimitStore(s, RecordingStore()) for s in states]
    try:
        results = await asyncio.gather(*(stores[i % 2].take("shared", 60.0, 4, 0.0) for i in range(20)))
        assert sum(d.admitted for d in results) == 5
    finally:
        for s in states:
            await s.close()


async def test_redis_down_allow_uses_fallback_then_recovers(redis_server: RedisServer) -> None:
    metrics = Metrics()
    state = SharedState(redis_server.url, metrics=metrics, probe_base=0.05, probe_cap=0.2)
    fallback = RecordingStore()
    store = RedisLimitStore(state, fallback)
    try:
        assert (await store.take("d", 60.0, 0, 0.0)).admitted
        assert not (await store.take("d", 60.0, 0, 0.0)).admitted
        redis_server.stop()
        assert (await store.take("d", 60.0, 0, 0.0)).admitted  # fallback admits
        assert fallback.calls == [("take", "d")]
        assert not state.up
        assert (await store.take("d", 60.0, 0, 0.0)).admitted  # not tried again: down
        assert metrics.state_errors.labels(op="limit")._value.get() == 2
        redis_server.start()
        deadline = time.monotonic() + 10
        while not state.up:
            assert time.monotonic() < deadline, "state did not recover"
            await asyncio.sleep(0.05)
        # an empty Redis after the restart: one admit, then the limit again
        assert (await store.take("d", 60.0, 0, 0.0)).admitted
        assert not (await store.take("d", 60.0, 0, 0.0)).admitted
        assert len(fallback.calls) == 2
    finally:
        await state.close()


async def test_redis_down_deny_raises_state_unavailable(redis_server: RedisServer) -> None:
    state = SharedState(redis_server.url, on_error="deny", probe_base=0.05, probe_cap=0.2)
    fallback = RecordingStore()
    store = RedisLimitStore(state, fallback)
    try:
        assert (await store.take("x", 1.0, 0, 0.0)).admitted
        redis_server.stop()
        for _ in range(2):
            with pytest.raises(StateUnavailable) as e:
                await store.take("x", 1.0, 0, 0.0)
            assert e.value.status == 503 and e.value.code == "state_unavailable"
        await store.pause("x", 1.0)  # a pause never fails a request
        assert ("take", "x") not in fallback.calls
    finally:
        await state.close()


async def test_concurrent_decisions_share_round_trips_and_stay_exact(
    store: RedisLimitStore, redis_server: RedisServer
) -> None:
    await store.take("warm", 0.001, 100, 0.0)
    with redis_server.client() as r:
        r.config_resetstat()
        before = r.info("stats")["total_reads_processed"]
        got = await asyncio.gather(*(store.take("c50", 60.0, 9, 0.0) for _ in range(50)))
        reads = r.info("stats")["total_reads_processed"] - before - 1  # less the INFO itself
        evalsha = r.info("commandstats")["cmdstat_evalsha"]["calls"]
    assert sum(d.admitted for d in got) == 10  # burst 9: ten at once, exactly
    assert [d.admitted for d in got] == [True] * 10 + [False] * 40  # in arrival order
    assert evalsha == 50  # one script run per decision
    assert 1 <= reads <= 5, reads  # but pipelined: a few round trips for fifty decisions


async def test_script_reloaded_inside_a_pipeline(store: RedisLimitStore, redis_server: RedisServer) -> None:
    await store.take("g", 0.001, 0, 0.0)
    with redis_server.client() as r:
        r.script_flush()
    got = await asyncio.gather(*(store.take(f"g{i}", 10, 0, 0.0) for i in range(5)))
    assert all(d.admitted for d in got)


async def test_signet_reload_keeps_the_shared_budget(make_signet: Any, upstream: Any, redis_server: RedisServer) -> None:
    """In-process Signet: the runtime wires Redis in, and a reload (new runtime, new client) keeps the budget."""
    route = {"name": "r", "prefix": "/r", "upstream": str(upstream.make_url("/")),
             "rate_limit": {"requests": 1, "per": "60s"}}
    text = config_text([route], state={"redis": redis_server.url})
    app = await make_signet(text)
    async with aiohttp.ClientSession() as s:
        async def status() -> int:
            async with s.get(app.proxy_url + "/r/x") as r:
                await r.read()
                return r.status

        assert [await status(), await status()] == [200, 429]
        assert await app.reload(lambda: load_config_text(text, env={}))
        assert await status() == 429  # the budget lives in Redis, not in the old runtime
    with redis_server.client() as r:
        assert r.exists("signet:rl:{route:r}:tat")


async def test_fallback_gives_each_worker_its_share(redis_server: RedisServer) -> None:
    from proxy.ratelimit import LocalLimitStore

    state = SharedState(redis_server.url, probe_base=0.05, probe_cap=0.2)
    store = RedisLimitStore(state, LocalLimitStore(), workers=2)
    try:
        redis_server.stop()
        # 1 per second, burst 3: the fleet may send 4 at once; each of 2 workers 2 (then 1 per 2 s)
        got = [await store.take("w", 1.0, 3, 0.0) for _ in range(4)]
        assert [d.admitted for d in got] == [True, True, False, False]
        assert 1.0 < got[2].retry_after <= 2.0
    finally:
        await state.close()

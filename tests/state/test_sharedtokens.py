"""SharedTokenCache against a real redis-server: lock with fencing, encryption, refresh, 401."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

from proxy.errors import TokenError
from proxy.sharedtokens import SharedTokenCache, derive_keys
from proxy.state import SharedState
from proxy.tokens import Token, TokenFetchError, TokenManager, TokenRequestSpec
from tests.conftest import secret
from tests.redisserver import RedisServer

SECRET = secret("shared-cache-client-secret-9Jd")
SPEC = TokenRequestSpec(token_url="https://idp.example/token", client_id="cid", client_secret=SECRET)


class Endpoint:
    """Stands in for the token endpoint: counts requests, issues numbered tokens."""

    def __init__(self, lifetime: float = 3600.0, delay: float = 0.05) -> None:
        self.lifetime = lifetime
        self.delay = delay
        self.requests = 0
        self._n = itertools.count(1)

    async def fetch(self) -> Token:
        self.requests += 1
        await asyncio.sleep(self.delay)
        value = secret(f"tok-{next(self._n)}-Xr8wq2")
        now = asyncio.get_running_loop().time()
        return Token(value, self.lifetime, now, now + self.lifetime - 60, now + self.lifetime)


@pytest.fixture
async def state(redis_server: RedisServer) -> AsyncIterator[SharedState]:
    s = SharedState(redis_server.url)
    yield s
    await s.close()


def cache(state: SharedState, spec: TokenRequestSpec = SPEC, route: str = "o", **kw: float) -> SharedTokenCache:
    return SharedTokenCache(state, route=route, spec=spec, **kw)


async def test_many_caches_one_fetch_and_encrypted_entry(state: SharedState, redis_server: RedisServer) -> None:
    ep = Endpoint(delay=0.2)
    caches = [cache(state) for _ in range(5)]  # five "processes"
    tokens = await asyncio.gather(*(c.obtain(ep.fetch) for c in caches))
    assert ep.requests == 1
    assert len({t.access_token for t in tokens}) == 1
    assert sum(not t.shared for t in tokens) == 1  # one fetched it, four read it
    with redis_server.client() as r:
        keys = list(r.scan_iter())
        (entry,) = [k for k in keys if not k.endswith(b":lock")]
        assert not any(k.endswith(b":lock") for k in keys)  # released
        value = r.get(entry)
        ttl = r.pttl(entry)
    assert value is not None and tokens[0].access_token.encode() not in value
    assert 3590_000 < ttl <= 3600_000  # TTL = token lifetime


async def test_other_secret_or_scope_never_shares(state: SharedState) -> None:
    ep = Endpoint()
    await cache(state).obtain(ep.fetch)
    other_secret = TokenRequestSpec(token_url=SPEC.token_url, client_id="cid", client_secret=secret("another-secret-77Lk"))
    other_scope = TokenRequestSpec(token_url=SPEC.token_url, client_id="cid", client_secret=SECRET, fields={"scope": "x"})
    assert not (await cache(state, other_secret).obtain(ep.fetch)).shared
    assert not (await cache(state, other_scope).obtain(ep.fetch)).shared
    assert ep.requests == 3


async def test_tampered_or_foreign_entry_is_refetched(state: SharedState, redis_server: RedisServer) -> None:
    ep = Endpoint()
    c = cache(state)
    first = await c.obtain(ep.fetch)
    with redis_server.client() as r:
        raw = bytearray(r.get(c.entry_key) or b"")
        raw[-1] ^= 1
        r.set(c.entry_key, bytes(raw), px=60_000)
    second = await c.obtain(ep.fetch)
    assert ep.requests == 2 and second.access_token != first.access_token


async def test_key_derivation_depends_on_secret_and_route() -> None:
    a = derive_keys(SECRET, "o")
    assert a == derive_keys(SECRET, "o")
    assert a[0] != derive_keys(SECRET, "p")[0]
    assert a[0] != derive_keys(SECRET + "x", "o")[0]
    assert len(a[0]) == 32 and a[0] != a[1]


async def test_fence_protects_a_lock_taken_by_another(state: SharedState, redis_server: RedisServer) -> None:
    c = cache(state)
    with redis_server.client() as r:
        r.set(c.lock_key, "someone-else", px=60_000)
    # our release and store must not touch another holder's lock
    assert await c._release(keys=[c.lock_key], args=["mine"]) == 0
    assert await c._store(keys=[c.entry_key, c.lock_key], args=["mine", b"x", 1000]) == 0
    with redis_server.client() as r:
        assert r.get(c.lock_key) == b"someone-else"
        assert r.get(c.entry_key) is None


async def test_waiter_times_out_when_the_holder_never_stores(state: SharedState, redis_server: RedisServer) -> None:
    c = cache(state, wait_timeout=0.4)
    with redis_server.client() as r:
        r.set(c.lock_key, "stuck", px=60_000)
    ep = Endpoint()
    with pytest.raises(TokenFetchError, match="waiting"):
        await c.obtain(ep.fetch)
    assert ep.requests == 0


async def test_waiter_takes_over_when_the_lock_expires(state: SharedState, redis_server: RedisServer) -> None:
    c = cache(state, wait_timeout=5)
    with redis_server.client() as r:
        r.set(c.lock_key, "crashed", px=300)  # a holder that died
    ep = Endpoint()
    tok = await c.obtain(ep.fetch)
    assert ep.requests == 1 and not tok.shared


async def test_due_for_refresh_one_renews_others_keep_the_valid_token(state: SharedState) -> None:
    ep = Endpoint(lifetime=3.0, delay=0.3)  # refresh_before 60 > lifetime: renewed at half life
    first = await cache(state).obtain(ep.fetch)
    await asyncio.sleep(1.6)  # past half life: due
    results = await asyncio.gather(*(cache(state).obtain(ep.fetch) for _ in range(4)))
    assert ep.requests == 2
    renewed = [t for t in results if t.access_token != first.access_token]
    kept = [t for t in results if t.access_token == first.access_token]
    assert len(renewed) >= 1 and len(renewed) + len(kept) == 4
    now = state.clock.monotonic()
    assert all(t.refresh_at - now <= 1.0 for t in kept)  # they look again soon
    # a token read from Redis carries its real age (a 401 refetches only one 30 s old)
    assert all(now - t.obtained_at >= 1.5 for t in kept)


async def test_manager_with_shared_cache_forgets_a_rejected_token(state: SharedState) -> None:
    ep = Endpoint()
    managers = [
        TokenManager(route="o", key="k", fetch=ep.fetch, shared=cache(state)) for _ in range(2)
    ]
    a, b = await asyncio.gather(*(m.get() for m in managers))
    assert a.access_token == b.access_token and ep.requests == 1
    # the upstream refused it (401): the manager drops it and the fleet cache must not serve it back
    assert managers[0].invalidate(a)
    fresh = await managers[0].get()
    assert fresh.access_token != a.access_token and ep.requests == 2
    # the other process, on its own 401, reads the new token: no third request
    managers[1].invalidate(b)
    assert (await managers[1].get()).access_token == fresh.access_token
    assert ep.requests == 2
    for m in managers:
        await m.close()


async def test_manager_counts_only_real_fetches(state: SharedState) -> None:
    from proxy.metrics import Metrics

    metrics = Metrics()
    ep = Endpoint()
    ms = [TokenManager(route="o", key="k", fetch=ep.fetch, shared=cache(state), metrics=metrics) for _ in range(3)]
    for m in ms:
        await m.get()
    assert metrics.token_fetches.labels(route="o", outcome="ok")._value.get() == 1
    for m in ms:
        await m.close()


async def test_redis_down_allow_fetches_locally(redis_server: RedisServer) -> None:
    state = SharedState(redis_server.url, probe_base=0.05, probe_cap=0.2)
    try:
        redis_server.stop()
        ep = Endpoint()
        tok = await cache(state).obtain(ep.fetch)
        assert ep.requests == 1 and not tok.shared
    finally:
        await state.close()


async def test_fetch_failure_releases_the_lock(state: SharedState, redis_server: RedisServer) -> None:
    async def failing() -> Token:
        raise TokenFetchError("token endpoint answered HTTP 500")

    c = cache(state)
    with pytest.raises(TokenError):
        await c.obtain(failing)
    with redis_server.client() as r:
        assert r.get(c.lock_key) is None

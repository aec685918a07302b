"""One OAuth2 token per route for the whole fleet, kept in Redis, encrypted.

:class:`~proxy.tokens.TokenManager` still does the per-process work (cache,
single flight inside the process, refresh ahead, backoff). When it needs a
token it asks :meth:`SharedTokenCache.obtain`, which:

1. reads the route's entry (value and remaining TTL in one ``MULTI``): a
   token that is not yet due for refresh is used as is, no token request;
2. otherwise takes the fleet-wide lock, ``SET lock <fence> NX PX <ttl>``,
   with a random fencing value; the winner checks the entry again, fetches,
   and stores the token and releases the lock in one Lua script that acts
   only while the lock still holds *its* fence (or has expired unclaimed);
3. a process that loses the race uses the current token if it is still
   valid (a refresh in progress elsewhere), else polls the entry with capped
   backoff until the winner stores it, the lock expires (then it competes
   again), or ``wait_timeout`` passes (a ``token_error``).

Entries are AES-256-GCM encrypted with a key derived by HKDF-SHA256 from the
route's client secret (``info`` = the route name), with the Redis key as
associated data: whoever reads Redis without the client secret gets no
bearer token. Their Redis key names the route and an HMAC of the token
request's identity (endpoint, client id, fields), so two configs asking for
different scopes never share a token, and no hash of a secret is exposed.
The entry's TTL is the token's lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from proxy.state import REDIS_ERRORS, SharedState
from proxy.tokens import Token, TokenFetchError, TokenRequestSpec

SALT = b"signet shared token cache v1"
VERSION = b"\x01"
NONCE_BYTES = 12
LOCK_TTL_CAP = 30.0  # seconds: the lock is short; a longer fetch lets another try
POLL_FIRST = 0.01
POLL_CAP = 0.25
MIN_LEAD_MARGIN = 0.5  # an entry this close to its refresh point counts as due

# KEYS[1] entry, KEYS[2] lock; ARGV[1] fence, ARGV[2] sealed token, ARGV[3] ttl ms
# Stores only while the lock holds our fence or nobody's; releases only our fence.
STORE_AND_RELEASE = """
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if holder then redis.call('DEL', KEYS[2]) end
return 1
"""

# KEYS[1] lock; ARGV[1] fence: delete only our own lock
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def derive_keys(client_secret: str, route: str) -> tuple[bytes, bytes]:
    """(AES-256-GCM key, HMAC key for naming entries), both from the client secret."""
    okm = HKDF(
        algorithm=hashes.SHA256(), length=64, salt=SALT, info=route.encode("utf-8")
    ).derive(client_secret.encode("utf-8"))
    return okm[:32], okm[32:]


def _lead(expires_in: float, refresh_before: float) -> float:
    """How long before expiry a token is renewed (same rule as proxy.tokens.schedule)."""
    return refresh_before if expires_in > refresh_before else expires_in / 2


class SharedTokenCache:
    """Fleet-wide single flight and cache for one route's token source."""

    def __init__(
        self,
        state: SharedState,
        *,
        route: str,
        spec: TokenRequestSpec,
        fetch_timeout: float = 65.0,
        wait_timeout: float | None = None,
    ) -> None:
        self.state = state
        self.route = route
        self.refresh_before = spec.refresh_before
        self._aead_key, name_key = derive_keys(spec.client_secret, route)
        identity = json.dumps(
            [spec.token_url, spec.client_id, dict(spec.fields), spec.client_auth, spec.request_format],
            sort_keys=True,
        ).encode("utf-8")
        tag = hmac.new(name_key, identity, hashlib.sha256).hexdigest()[:32]
        self.entry_key = state.key("token", route, tag)
        self.lock_key = self.entry_key + ":lock"
        self.lock_ttl = min(LOCK_TTL_CAP, fetch_timeout)
        self.wait_timeout = wait_timeout if wait_timeout is not None else self.lock_ttl + 5.0
        self._store = state.redis.register_script(STORE_AND_RELEASE)
        self._release = state.redis.register_script(RELEASE)
        self._rejected: deque[bytes] = deque(maxlen=4)  # digests of tokens an upstream refused

    # -- the seam proxy.tokens.TokenManager uses ----------------------------------

    async def obtain(self, fetch: Callable[[], Awaitable[Token]]) -> Token:
        """A token from the fleet cache, or fetched by whichever process wins the lock.

        ``Token.shared`` is True when no token request was sent by this call.
        Redis failures follow ``state.on_error`` (raises StateUnavailable under
        ``deny``; under ``allow`` this process fetches for itself).
        """
        if not self.state.up:
            self.state.unavailable("token", None)
            return await fetch()
        try:
            return await self._obtain(fetch)
        except _Fetched as done:  # fetched, but Redis failed while storing it
            self.state.unavailable("token", done.error)
            return done.token
        except REDIS_ERRORS as e:
            self.state.unavailable("token", e)
            return await fetch()

    def forget(self, token: Token) -> None:
        """An upstream refused ``token``: never serve it from the fleet cache again."""
        self._rejected.append(_digest(token.access_token))

    # -- internals ------------------------------------------------------------------

    async def _obtain(self, fetch: Callable[[], Awaitable[Token]]) -> Token:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_timeout
        delay = POLL_FIRST
        while True:
            current, due = await self._read()
            if current is not None and not due:
                return current
            fence = secrets.token_hex(16)
            if await self.state.redis.set(self.lock_key, fence, nx=True, px=int(self.lock_ttl * 1000)):
                return await self._fetch_and_store(fetch, fence)
            if current is not None:
                return current  # still valid; another process is renewing it
            if loop.time() >= deadline:
                raise TokenFetchError(
                    f"no token after waiting {self.wait_timeout:g} s for another Signet's "
                    "token request (shared state)",
                    route=self.route,
                )
            await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
            delay = min(POLL_CAP, delay * 2)

    async def _fetch_and_store(self, fetch: Callable[[], Awaitable[Token]], fence: str) -> Token:
        stored = False
        try:
            current, due = await self._read()  # stored while we raced for the lock?
            if current is not None and not due:
                return current
            token = await fetch()
            ttl_ms = int(token.expires_in * 1000)
            try:
                if ttl_ms > 0:
                    stored = bool(
                        await self._store(
                            keys=[self.entry_key, self.lock_key],
                            args=[fence, self._seal(token), ttl_ms],
                        )
                    )
            except REDIS_ERRORS as e:
                raise _Fetched(token, e) from None
            return token
        finally:
            if not stored:
                with contextlib.suppress(*REDIS_ERRORS):  # else it expires within lock_ttl
                    await self._release(keys=[self.lock_key], args=[fence])

    async def _read(self) -> tuple[Token | None, bool]:
        """(token or None, whether it is due for refresh)."""
        pipe = self.state.redis.pipeline(transaction=True)
        pipe.get(self.entry_key)
        pipe.pttl(self.entry_key)
        sealed, pttl = await pipe.execute()
        if sealed is None or pttl is None or pttl <= 0:
            return None, True
        payload = self._open(sealed)
        if payload is None:
            return None, True
        access_token, expires_in, status = payload
        if _digest(access_token) in self._rejected:
            return None, True
        remaining = pttl / 1000
        lead = _lead(expires_in, self.refresh_before)
        now = self.state.clock.monotonic()
        due = remaining <= lead + min(MIN_LEAD_MARGIN, lead / 2)
        expires_at = now + remaining
        # a token due for refresh elsewhere is re-checked soon, not at its old schedule
        refresh_at = now + min(remaining / 2, 1.0) if due else expires_at - lead
        token = Token(
            access_token=access_token,
            expires_in=remaining,
            obtained_at=now - max(0.0, expires_in - remaining),  # its age counts (401 retries)
            refresh_at=refresh_at,
            expires_at=expires_at,
            status=status,
            shared=True,
        )
        return token, due

    def _seal(self, token: Token) -> bytes:
        plain = json.dumps(
            {"t": token.access_token, "e": token.expires_in, "s": token.status},
            separators=(",", ":"),
        ).encode("utf-8")
        nonce = os.urandom(NONCE_BYTES)
        return VERSION + nonce + AESGCM(self._aead_key).encrypt(
            nonce, plain, self.entry_key.encode("utf-8")
        )

    def _open(self, sealed: Any) -> tuple[str, float, int] | None:
        """The token inside an entry, or None when it is not ours (other secret, tampered)."""
        if not isinstance(sealed, bytes) or not sealed.startswith(VERSION):
            return None
        nonce, box = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
        try:
            plain = AESGCM(self._aead_key).decrypt(nonce, box, self.entry_key.encode("utf-8"))
            data = json.loads(plain)
            return str(data["t"]), float(data["e"]), int(data["s"])
        except (InvalidTag, ValueError, KeyError, TypeError):
            return None


class _Fetched(Exception):
    """A token was fetched but Redis failed while storing it: use it anyway."""

    def __init__(self, token: Token, error: BaseException) -> None:
        super().__init__("token fetched; storing it in Redis failed")
        self.token = token
        self.error = error


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()

"""OAuth2 client-credentials tokens: fetch (RFC 6749 §4.4), cache, single flight, backoff.

Two pieces, kept apart so each can be tested alone:

- :class:`ClientCredentialsFetcher` sends one token request and turns the
  answer into a :class:`Token` or a :class:`TokenFetchError` whose message
  carries the HTTP status and the OAuth2 ``error`` fields, sanitised, never a
  secret or a token. It owns one ``aiohttp.ClientSession`` (``start``/``close``).
- :class:`TokenManager` decides *when* to fetch. Tokens live in a cachetools
  ``TLRUCache`` (per-item expiry at the token's real expiry, timer =
  ``clock.monotonic``). A token is served until its refresh point; between the
  refresh point and real expiry it is still served while ONE background task
  renews it; when there is no valid token, callers await the single in-flight
  fetch. After a failure the manager backs off (exponential, equal jitter) and
  answers fail-fast errors instead of hammering the endpoint.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import random
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus, urlencode

import aiohttp
import structlog
from cachetools import TLRUCache
from yarl import URL

from proxy.clock import SYSTEM_CLOCK, Clock
from proxy.errors import StateUnavailable, TokenError
from proxy.log import REDACTOR
from proxy.neterrors import client_error_reason
from proxy.upstream.egress import aiohttp_proxy

log = structlog.get_logger("signet.tokens")

MAX_TOKEN_RESPONSE_BYTES = 1 << 20
MAX_REASON_CHARS = 200
USER_AGENT = "signet-proxy"


# A token this young is not refetched after a 401 (see TokenManager.refetch_worthwhile).
MIN_AGE_FOR_REFETCH = 30.0

# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True, eq=False)
class Token:
    """One access token and its schedule (monotonic seconds). Never shows the token."""

    access_token: str = field(repr=False)
    expires_in: float
    obtained_at: float
    refresh_at: float
    expires_at: float
    token_type: str = "Bearer"
    status: int = 200
    payload: Any = field(default=None, repr=False)  # what another fetcher issues with it (AWS keys)
    shared: bool = False  # read from the fleet-wide cache (proxy.sharedtokens), not fetched here

    @property
    def authorization(self) -> str:
        return f"Bearer {self.access_token}"

    def __repr__(self) -> str:
        return (
            f"<Token expires_in={self.expires_in:g} refresh_at={self.refresh_at:g} "
            f"expires_at={self.expires_at:g}>"
        )


class TokenFetchError(TokenError):
    """A token request failed.

    ``reason`` is safe to log; ``endpoint_status`` is the token endpoint's HTTP
    status, or None when there was no answer. (``status`` stays 502: it is the
    status Signet answers with.)
    """

    def __init__(self, reason: str, *, route: str | None = None, status: int | None = None) -> None:
        super().__init__(reason, route=route)
        self.reason = reason
        self.endpoint_status = status


def schedule(
    expires_in: float, *, obtained_at: float, refresh_before: float
) -> tuple[float, float]:
    """(refresh_at, expires_at): refresh ``refresh_before`` early, or at half life when shorter."""
    lead = refresh_before if expires_in > refresh_before else expires_in / 2
    return obtained_at + expires_in - lead, obtained_at + expires_in


# --------------------------------------------------------------------------- helpers


def form_urlencode(value: str) -> str:
    """application/x-www-form-urlencoded encoding of one value (RFC 6749 Appendix B)."""
    return quote_plus(value, safe="*")


def client_basic_authorization(client_id: str, client_secret: str) -> str:
    """``Basic`` header for client authentication, RFC 6749 §2.3.1.

    Id and secret are form-urlencoded first, then joined with ``:`` and
    base64-encoded (UTF-8). For the usual ``[A-Za-z0-9-._]`` credentials this
    equals plain RFC 7617 Basic.
    """
    raw = f"{form_urlencode(client_id)}:{form_urlencode(client_secret)}"
    return "Basic " + base64.b64encode(raw.encode("utf-8")).decode("ascii")


def secrets_fingerprint(*parts: Any) -> str:
    """A stable hash of secret material for cache keys (the key never holds the secret)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def sanitize(text: Any, *, secrets: Iterable[str] = (), limit: int = MAX_REASON_CHARS) -> str:
    """Printable, single-line, secret-free, truncated text from an untrusted answer."""

    def one_line(value: str) -> str:
        value = "".join(ch if ch.isprintable() else " " for ch in value)
        return " ".join(value.split())

    s = one_line(str(text))
    for secret in secrets:
        for form in {secret, one_line(secret)}:
            if len(form) >= 3 and "*" not in form:
                while form in s:
                    s = s.replace(form, "***")
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s


def endpoint_name(url: str) -> str:
    """``host:port`` of a URL, for messages (no path, query or userinfo)."""
    try:
        u = URL(url)
        host = u.host or "?"
        return f"{host}:{u.port}" if u.port else host
    except (ValueError, TypeError):
        return "?"


def _valid_header_token(value: str) -> bool:
    return bool(value) and all("\x21" <= ch <= "\x7e" for ch in value)


def _parse_expires_in(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        v = float(value)
    elif isinstance(value, str):
        try:
            v = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    if not math.isfinite(v) or v <= 0:
        return None
    return v


def parse_token_response(
    status: int,
    content_type: str,
    body: bytes,
    *,
    obtained_at: float,
    refresh_before: float,
    default_expires_in: float,
    secrets: Iterable[str] = (),
) -> Token:
    """Turn a token endpoint's answer into a :class:`Token` or raise :class:`TokenFetchError`."""
    secrets = [s for s in secrets if s]
    ctype = sanitize(content_type or "none", limit=60)
    try:
        data = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError):
        data = None
    if not isinstance(data, dict):
        what = "an empty body" if not body else "a non-JSON body"
        raise TokenFetchError(
            f"token endpoint answered HTTP {status} with {what} (content type {ctype})",
            status=status,
        )

    def oauth_error() -> str:
        err = data.get("error")
        desc = data.get("error_description")
        text = ""
        if err is not None:
            text = sanitize(err, secrets=secrets, limit=60)
        if desc is not None:
            d = sanitize(desc, secrets=secrets)
            text = f"{text} ({d})" if text else d
        return text

    token = data.get("access_token")
    if not (200 <= status < 300) or not isinstance(token, str) or not token:
        detail = oauth_error()
        if 200 <= status < 300:
            msg = f"token endpoint answered HTTP {status} without an access_token"
        else:
            msg = f"token endpoint answered HTTP {status}"
        raise TokenFetchError(f"{msg}: {detail}" if detail else msg, status=status)

    token_type = data.get("token_type")
    if token_type is not None and (
        not isinstance(token_type, str) or token_type.lower() != "bearer"
    ):
        shown = sanitize(token_type, secrets=[*secrets, token], limit=30)
        raise TokenFetchError(
            f"token endpoint issued token_type {shown!r}; only bearer tokens are supported",
            status=status,
        )
    if not _valid_header_token(token):
        raise TokenFetchError(
            "token endpoint issued an access_token that is not a valid header value",
            status=status,
        )
    expires_in = _parse_expires_in(data.get("expires_in"))
    if expires_in is None:
        expires_in = float(default_expires_in)
    refresh_at, expires_at = schedule(
        expires_in, obtained_at=obtained_at, refresh_before=refresh_before
    )
    return Token(
        access_token=token,
        expires_in=expires_in,
        obtained_at=obtained_at,
        refresh_at=refresh_at,
        expires_at=expires_at,
        token_type="Bearer",
        status=status,
    )


# --------------------------------------------------------------------------- fetcher


@dataclass(frozen=True)
class TokenRequestSpec:
    """Everything one token request needs; built by the scheme from its options."""

    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    client_auth: str = "basic"  # basic | body
    request_format: str = "form"  # form | json
    fields: Mapping[str, str] = field(default_factory=dict, repr=False)  # after grant_type
    refresh_before: float = 60.0
    default_expires_in: float = 300.0
    secret_values: tuple[str, ...] = field(default=(), repr=False)  # scrubbed from messages

    def body_fields(self) -> dict[str, str]:
        out = {"grant_type": "client_credentials", **self.fields}
        if self.client_auth == "body":
            out["client_id"] = self.client_id
            out["client_secret"] = self.client_secret
        return out

    def build(self) -> tuple[dict[str, str], bytes]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self.client_auth == "basic":
            headers["Authorization"] = client_basic_authorization(
                self.client_id, self.client_secret
            )
        fields_ = self.body_fields()
        if self.request_format == "json":
            headers["Content-Type"] = "application/json; charset=utf-8"
            body = json.dumps(fields_, separators=(",", ":")).encode("utf-8")
        else:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            body = urlencode(fields_).encode("ascii")
        return headers, body

    def cache_key(self, route: str) -> Hashable:
        return (
            route,
            self.token_url,
            self.client_id,
            secrets_fingerprint(
                self.client_secret, dict(self.fields), self.client_auth, self.request_format
            ),
        )


class ClientCredentialsFetcher:
    """Sends token requests with one ``aiohttp.ClientSession``."""

    def __init__(
        self,
        spec: TokenRequestSpec,
        *,
        clock: Clock = SYSTEM_CLOCK,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        ssl: Any = None,
        proxy: Any = None,  # proxy.upstream.egress.EgressProxy | None: the route's egress proxy
    ) -> None:
        self.spec = spec
        self.clock = clock
        self.proxy = proxy
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.ssl = True if ssl is None else ssl
        self.endpoint = endpoint_name(spec.token_url)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    async def start(self) -> None:
        if self._session is None or self._session.closed:
            self._closed = False
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=self.connect_timeout + self.read_timeout,
                    sock_connect=self.connect_timeout,
                    sock_read=self.read_timeout,
                ),
                trust_env=False,
            )

    async def close(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    def _secrets(self) -> list[str]:
        return [self.spec.client_secret, *self.spec.secret_values]

    async def fetch(self) -> Token:
        if self._closed:
            raise TokenFetchError("token client is closed (the config was replaced)")
        if self._session is None:
            await self.start()
        assert self._session is not None
        headers, body = self.spec.build()
        obtained_at = self.clock.monotonic()
        try:
            async with self._session.post(
                self.spec.token_url,
                data=body,
                headers=headers,
                allow_redirects=False,
                ssl=self.ssl,
                proxy=aiohttp_proxy(self.proxy),
            ) as resp:
                status = resp.status
                content_type = resp.headers.get("Content-Type", "")
                raw = bytearray()
                async for chunk in resp.content.iter_chunked(65536):
                    raw += chunk
                    if len(raw) > MAX_TOKEN_RESPONSE_BYTES:
                        raise TokenFetchError(
                            f"token endpoint answered HTTP {status} with more than "
                            f"{MAX_TOKEN_RESPONSE_BYTES} bytes",
                            status=status,
                        )
        except TokenFetchError:
            raise
        except aiohttp.ConnectionTimeoutError:
            raise TokenFetchError(
                f"cannot connect to token endpoint {self.endpoint}: "
                f"connect timeout after {self.connect_timeout:g} s"
            ) from None
        except (aiohttp.SocketTimeoutError, TimeoutError):
            raise TokenFetchError(
                f"token endpoint {self.endpoint} timed out: no answer within "
                f"{self.read_timeout:g} s"
            ) from None
        except aiohttp.ClientError as e:
            reason = sanitize(client_error_reason(e), limit=80)
            if isinstance(e, aiohttp.ClientConnectorError):
                raise TokenFetchError(f"cannot connect to token endpoint {self.endpoint}: {reason}") from None
            raise TokenFetchError(f"token request to {self.endpoint} failed: {reason}") from None
        except RuntimeError as e:  # session closed underneath us
            if self._closed:
                raise TokenFetchError("token client is closed (the config was replaced)") from None
            raise TokenFetchError(
                f"token request to {self.endpoint} failed: {type(e).__name__}"
            ) from None
        return parse_token_response(
            status,
            content_type,
            bytes(raw),
            obtained_at=obtained_at,
            refresh_before=self.spec.refresh_before,
            default_expires_in=self.spec.default_expires_in,
            secrets=self._secrets(),
        )


# --------------------------------------------------------------------------- manager


class _Timer:
    """Adapts a Clock to cachetools' ``timer`` argument."""

    __slots__ = ("clock",)

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def __call__(self) -> float:
        return self.clock.monotonic()


class TokenManager:
    """Cache + single flight + refresh-ahead + backoff for one token source.

    ``fetch`` is the coroutine function that performs one token request and
    raises :class:`TokenError` on failure. All state lives on the event loop
    thread; no locks are needed because decisions happen without awaiting.
    """

    def __init__(
        self,
        *,
        route: str,
        key: Hashable,
        fetch: Callable[[], Awaitable[Token]],
        clock: Clock = SYSTEM_CLOCK,
        metrics: Any = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        backoff_floor: float = 0.05,
        rng: random.Random | None = None,
        maxsize: int = 16,
        remember: int = 4,
        shared: Any = None,
    ) -> None:
        # shared: a fleet-wide cache (proxy.sharedtokens.SharedTokenCache) asked
        # instead of fetching directly; it fetches with `fetch` when it must
        self.route = route
        self.key = key
        self._fetch = fetch
        self.clock = clock
        self.metrics = metrics
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.backoff_floor = backoff_floor
        self.rng = rng or random.Random()
        self.cache: TLRUCache = TLRUCache(
            maxsize=maxsize, ttu=lambda _k, tok, _now: tok.expires_at, timer=_Timer(clock)
        )
        self._inflight: dict[Hashable, asyncio.Task[Token]] = {}
        self._failures = 0
        self._retry_at = -math.inf
        self._last_reason = ""
        self._recent: deque[str] = deque(maxlen=remember)
        self._closed = False
        self._counter_children: dict[tuple[Any, ...], Any] = {}
        self.shared = shared
        self._take_over_token()

    def _take_over_token(self) -> None:
        """Start with the token of the manager this one replaces (a reload or secret refresh).

        Only within one proxy (same metrics and clock) and only under the same
        ``key``, which fingerprints the client secret: a token obtained with a
        secret that has since changed is never carried over.
        """
        peer = _LIVE_MANAGERS.get(self.key)
        if (
            peer is not None
            and not peer._closed
            and self.metrics is not None
            and peer.metrics is self.metrics
            and peer.clock is self.clock
            and (tok := peer.peek()) is not None
        ):
            self.cache[self.key] = tok
            self._recent.append(tok.access_token)
            REDACTOR.set_dynamic(self, self._recent)
        _LIVE_MANAGERS[self.key] = self

    # -- public ---------------------------------------------------------------

    async def get(self) -> Token:
        """A valid token: cached, or from the one in-flight fetch."""
        if self._closed:
            raise TokenError("token manager is closed (the config was replaced)", route=self.route)
        now = self.clock.monotonic()
        tok = self.cache.get(self.key)
        if tok is not None:
            if now >= tok.refresh_at and self.key not in self._inflight and now >= self._retry_at:
                self._start_fetch(background=True)
            self._count("token_cache_hits")
            return tok
        task = self._inflight.get(self.key)
        if task is None:
            if now < self._retry_at:
                wait = self._retry_at - now
                raise TokenError(
                    f"token endpoint failing, retrying in {_fmt_seconds(wait)} s: "
                    f"{self._last_reason}",
                    route=self.route,
                )
            task = self._start_fetch(background=False)
        # shield: a waiter that is cancelled (client went away) must not cancel
        # the fetch the other waiters share.
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if task.cancelled() and not (me is not None and me.cancelling()):
                # the fetch was cancelled by close(), not this request
                raise TokenError(
                    "token manager is closed (the config was replaced)", route=self.route
                ) from None
            raise

    def peek(self) -> Token | None:
        """The cached, unexpired token, without fetching or refreshing (a successor takes it over)."""
        return self.cache.get(self.key)

    def refetch_worthwhile(self, token: Any) -> bool:
        """After a 401: is ``token`` old enough that a fresh one might be accepted?

        A token younger than :data:`MIN_AGE_FOR_REFETCH` was just issued: the
        vendor refusing it says the credentials or the request are wrong, not
        that the token went stale, so fetching again would only spend the token
        endpoint's quota (and, with a retry, the vendor's). The 401 is relayed.
        """
        obtained = getattr(token, "obtained_at", None)
        if obtained is None:
            return False
        return self.clock.monotonic() - obtained >= MIN_AGE_FOR_REFETCH

    def invalidate(self, token: Any) -> bool:
        """Drop ``token`` if it is still the cached one; True when it was dropped."""
        if token is None:
            return False
        if self.shared is not None:
            self.shared.forget(token)
        current = self.cache.get(self.key)
        if current is token:
            self.cache.pop(self.key, None)
            return True
        return False

    def recent_tokens(self) -> list[str]:
        return list(self._recent)

    @property
    def in_backoff(self) -> bool:
        return self.clock.monotonic() < self._retry_at

    @property
    def retry_at(self) -> float:
        return self._retry_at

    @property
    def failures(self) -> int:
        return self._failures

    async def wait_idle(self) -> None:
        """Wait for the in-flight fetch, if any (tests; errors swallowed)."""
        task = self._inflight.get(self.key)
        if task is not None:
            await asyncio.wait({task})

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._inflight.values())
        self._inflight.clear()
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self.cache.clear()
        REDACTOR.set_dynamic(self, ())

    # -- internals ------------------------------------------------------------

    def _start_fetch(self, *, background: bool) -> asyncio.Task[Token]:
        if background:
            self._count("token_refreshes")
        task = asyncio.get_running_loop().create_task(
            self._run(background), name=f"signet-token-fetch[{self.route}]"
        )
        self._inflight[self.key] = task
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Token]) -> None:
        if self._inflight.get(self.key) is task:
            del self._inflight[self.key]
        if not task.cancelled():
            task.exception()  # retrieved: a failed background refresh is not "never retrieved"

    async def _run(self, background: bool) -> Token:
        started = time.perf_counter()
        try:
            token = await (self._fetch() if self.shared is None else self.shared.obtain(self._fetch))
        except (asyncio.CancelledError, StateUnavailable):
            raise
        except TokenError as e:
            self._fail(e, started, background)
            if e.route is None:
                e.route = self.route
            raise
        except Exception as e:  # a bug or an unexpected library error: still a token error
            err = TokenFetchError(f"token request failed: {type(e).__name__}", route=self.route)
            self._fail(err, started, background)
            raise err from None
        if self._closed:
            return token
        self._failures = 0
        self._retry_at = -math.inf
        self._last_reason = ""
        self.cache[self.key] = token
        if token.access_token not in self._recent:
            self._recent.append(token.access_token)
            REDACTOR.set_dynamic(self, self._recent)  # a token is a secret in every log line
        if token.shared:
            log.debug("token_shared", route=self.route, expires_in=round(token.expires_in, 1))
            return token
        self._count("token_fetches", outcome="ok")
        log.info(
            "token_fetch",
            route=self.route,
            outcome="ok",
            background=background,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
            status=token.status,
            expires_in=token.expires_in,
        )
        return token

    def _fail(self, e: TokenError, started: float, background: bool) -> None:
        self._failures += 1
        ceiling = min(self.backoff_cap, self.backoff_base * (2 ** (self._failures - 1)))
        # "equal jitter": at least half the step, so a burst right after a failure
        # never reaches the endpoint, yet many Signets do not retry in lockstep
        delay = max(self.backoff_floor, ceiling / 2 + self.rng.uniform(0.0, ceiling / 2))
        self._retry_at = self.clock.monotonic() + delay
        self._last_reason = e.message
        self._count("token_fetches", outcome="error")
        self._count("token_failures")
        log.warning(
            "token_fetch",
            route=self.route,
            outcome="error",
            background=background,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
            status=getattr(e, "endpoint_status", None),
            expires_in=None,
            reason=e.message,
            failures=self._failures,
            retry_in_s=round(delay, 3),
        )

    def _count(self, name: str, **labels: str) -> None:
        if self.metrics is None:
            return
        # prometheus' labels() costs microseconds; a cache hit counts on every proxied request
        key = (name, *labels.items())
        child = self._counter_children.get(key)
        if child is None:
            counter = getattr(self.metrics, name, None)
            if counter is None:
                return
            child = self._counter_children[key] = counter.labels(route=self.route, **labels)
        child.inc()


def _fmt_seconds(s: float) -> str:
    return f"{s:.1f}" if s < 10 else f"{s:.0f}"


# the newest manager per cache key, for _take_over_token (weak: closed runtimes go away)
_LIVE_MANAGERS: weakref.WeakValueDictionary[Hashable, TokenManager] = (
    weakref.WeakValueDictionary()
)

"""The OAuth2 schemes against the mock token server on loopback.

Time is a FrozenClock shared by the scheme and the mock: expiry, refresh
points and backoff move only with ``clock.advance``; nothing sleeps for them.
"""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp
import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from proxy.auth.base import AuthResult, SchemeContext, UpstreamRequest
from proxy.auth.oauth2 import OAuth2ClientCredentials, ThreePLCentral
from proxy.auth.registry import SCHEMES
from proxy.clock import FrozenClock
from proxy.errors import TokenError
from proxy.metrics import Metrics
from proxy.mock.oauth import OAUTH_STATE, create_app, threeplcentral_app
from proxy.secret import Secret
from proxy.tokens import client_basic_authorization

CLIENT_ID = "signet-client"
# ':' '+' ' ' '/' and a non-ASCII letter exercise RFC 6749 §2.3.1 form-urlencoding
CLIENT_SECRET = "s3cr3t:Value+with spaces/é"
TPL_ID = "fr4zzl3d-g0rp-ni11-b0rk-cr4ck3rj4ck5"
TPL_SECRET = "rump3lstiltskin"
TPL_BASIC = "Basic ZnI0enpsM2QtZzBycC1uaTExLWIwcmstY3I0Y2szcmo0Y2s1OnJ1bXAzbHN0aWx0c2tpbg=="
REQ = UpstreamRequest(method="GET", path="/v1/things", query="", headers={})


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def oauth_server(aiohttp_server, clock):
    async def make(**kw):
        kw.setdefault("client_id", CLIENT_ID)
        kw.setdefault("client_secret", CLIENT_SECRET)
        app = create_app(clock=clock, **kw)
        server = await aiohttp_server(app)
        return server, app[OAUTH_STATE]

    return make


@pytest.fixture
async def make_scheme(clock, metrics):
    made = []

    async def make(options: dict, *, connect_timeout=2.0, read_timeout=2.0, route="r1"):
        cls = SCHEMES[options["scheme"]]
        opts = cls.Options.model_validate(options)
        ctx = SchemeContext(
            route=route,
            clock=clock,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            metrics=metrics,
        )
        scheme = cls(opts, ctx)
        await scheme.start()
        made.append(scheme)
        return scheme

    yield make
    for scheme in made:
        await scheme.close()


@pytest.fixture
async def oauth(oauth_server, make_scheme):
    """A default form/basic server and a scheme pointed at it."""

    async def make(server_kw=None, **scheme_kw):
        server, state = await oauth_server(**(server_kw or {}))
        opts = {
            "scheme": "oauth2-client-credentials",
            "token_url": str(server.make_url("/oauth/token")),
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        }
        timeouts = {
            k: scheme_kw.pop(k) for k in ("connect_timeout", "read_timeout") if k in scheme_kw
        }
        opts.update(scheme_kw)
        scheme = await make_scheme(opts, **timeouts)
        return server, state, scheme

    return make


def bearer(result: AuthResult) -> str:
    value = result.headers["Authorization"]
    assert value.startswith("Bearer ")
    return value[len("Bearer ") :]


def sample(metrics: Metrics, name: str, **labels) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def until(predicate, timeout=2.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def header(call, name):
    values = [v for k, v in call.headers if k.lower() == name.lower()]
    assert len(values) <= 1
    return values[0] if values else None


# --------------------------------------------------------------------------- 3PL Central


def test_threepl_known_answer_basic_header():
    assert client_basic_authorization(TPL_ID, TPL_SECRET) == TPL_BASIC


def test_basic_header_form_urlencodes_first():
    # RFC 6749 §2.3.1: id and secret are form-urlencoded, then Basic-encoded
    import base64

    raw = base64.b64decode(client_basic_authorization("a b", "x:y+z/é")[6:]).decode()
    assert raw == "a+b:x%3Ay%2Bz%2F%C3%A9"


@pytest.mark.parametrize("tpl", [None, "{7bd7ba4c-4f8b-4a03-8fd1-4e3d1e1c3a52}"])
async def test_threepl_token_request_exactly_as_documented(aiohttp_server, clock, make_scheme, tpl):
    app = threeplcentral_app(
        client_id=TPL_ID, client_secret=TPL_SECRET, user_login="guysmiley", tpl=tpl, clock=clock
    )
    server = await aiohttp_server(app)
    state = app[OAUTH_STATE]
    opts = {
        "scheme": "threeplcentral",
        "token_url": str(server.make_url("/AuthServer/api/Token")),
        "client_id": TPL_ID,
        "client_secret": Secret(TPL_SECRET),
        "user_login": "guysmiley",
    }
    if tpl:
        opts["tpl"] = tpl
    scheme = await make_scheme(opts)
    assert isinstance(scheme, ThreePLCentral)
    result = await scheme.apply(REQ)
    assert bearer(result) == state.issued[-1]
    assert result.secret_headers == frozenset({"Authorization"})

    (call,) = state.token_calls
    assert call.method == "POST"
    assert call.raw_path == "/AuthServer/api/Token"
    assert header(call, "Authorization") == TPL_BASIC
    assert header(call, "Content-Type") == "application/json; charset=utf-8"
    assert header(call, "Accept") == "application/json"
    expected = {"grant_type": "client_credentials", "user_login": "guysmiley"}
    if tpl:
        expected["tpl"] = tpl
    assert json.loads(call.body) == expected
    assert list(json.loads(call.body)) == list(expected)  # grant_type first


def test_threepl_default_token_url():
    opts = ThreePLCentral.Options.model_validate(
        {"scheme": "threeplcentral", "client_id": "i", "client_secret": "s", "user_login": "u"}
    )
    scheme = ThreePLCentral(opts, SchemeContext(route="wms"))
    assert scheme.spec.token_url == "https://secure-wms.com/AuthServer/api/Token"
    headers, body = scheme.spec.build()
    assert headers["Authorization"] == client_basic_authorization("i", "s")
    assert json.loads(body) == {"grant_type": "client_credentials", "user_login": "u"}


async def test_threepl_wrong_user_login_is_rejected(aiohttp_server, clock, make_scheme):
    app = threeplcentral_app(
        client_id=TPL_ID, client_secret=TPL_SECRET, user_login="guysmiley", clock=clock
    )
    server = await aiohttp_server(app)
    scheme = await make_scheme(
        {
            "scheme": "threeplcentral",
            "token_url": str(server.make_url("/AuthServer/api/Token")),
            "client_id": TPL_ID,
            "client_secret": TPL_SECRET,
            "user_login": "someoneelse",
        }
    )
    with pytest.raises(TokenError) as ei:
        await scheme.apply(REQ)
    assert "HTTP 400" in ei.value.message and "invalid_grant" in ei.value.message


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("client_auth", ["basic", "body"])
@pytest.mark.parametrize("request_format", ["form", "json"])
async def test_formats_accepted(oauth, client_auth, request_format):
    _server, state, scheme = await oauth(
        {"client_auth": client_auth, "request_format": request_format},
        client_auth=client_auth,
        request_format=request_format,
        scope="read write",
        extra={"audience": "https://api.example", "resource": Secret("r-1")},
    )
    result = await scheme.apply(REQ)
    assert bearer(result) == state.issued[-1]
    (call,) = state.token_calls
    if request_format == "json":
        assert header(call, "Content-Type") == "application/json; charset=utf-8"
        fields = json.loads(call.body)
    else:
        assert header(call, "Content-Type") == "application/x-www-form-urlencoded"
        from urllib.parse import parse_qsl

        fields = dict(parse_qsl(call.body.decode("ascii"), strict_parsing=True))
    assert fields["grant_type"] == "client_credentials"
    assert fields["scope"] == "read write"
    assert fields["audience"] == "https://api.example"
    assert fields["resource"] == "r-1"
    assert header(call, "Accept") == "application/json"
    if client_auth == "basic":
        assert header(call, "Authorization") == client_basic_authorization(CLIENT_ID, CLIENT_SECRET)
        assert "client_secret" not in fields
    else:
        assert header(call, "Authorization") is None
        assert fields["client_id"] == CLIENT_ID and fields["client_secret"] == CLIENT_SECRET


@pytest.mark.parametrize(
    ("server_kw", "scheme_kw", "expect"),
    [
        ({"request_format": "json"}, {"request_format": "form"}, ("HTTP 400", "invalid_request")),
        ({"request_format": "form"}, {"request_format": "json"}, ("HTTP 400", "invalid_request")),
        ({"client_auth": "basic"}, {"client_auth": "body"}, ("HTTP 400", "invalid_request")),
        ({"client_auth": "body"}, {"client_auth": "basic"}, ("HTTP 400", "invalid_request")),
        ({"client_secret": "other"}, {}, ("HTTP 401", "invalid_client")),
        ({"required_fields": {"audience": "x"}}, {}, ("HTTP 400", "audience is missing")),
    ],
)
async def test_mismatched_requests_rejected(oauth, server_kw, scheme_kw, expect):
    _server, state, scheme = await oauth(server_kw, **scheme_kw)
    with pytest.raises(TokenError) as ei:
        await scheme.apply(REQ)
    for part in expect:
        assert part in ei.value.message
    assert ei.value.status == 502 and ei.value.code == "token_error"
    assert ei.value.route == "r1"
    assert CLIENT_SECRET not in ei.value.message
    assert state.issued == []


# --------------------------------------------------------------------------- single flight


async def test_cold_cache_100_concurrent_make_one_token_request(oauth, metrics):
    _server, state, scheme = await oauth()
    state.gate = asyncio.Event()
    tasks = [asyncio.create_task(scheme.apply(REQ)) for _ in range(100)]
    await until(lambda: state.token_requests == 1)
    await asyncio.sleep(0.02)
    assert not any(t.done() for t in tasks)  # all waiting on the one fetch
    state.gate.set()
    results = await asyncio.gather(*tasks)
    assert {bearer(r) for r in results} == {state.issued[0]}
    assert state.token_requests == 1
    assert len({id(r.state) for r in results}) == 1
    assert sample(metrics, "signet_token_fetches_total", route="r1", outcome="ok") == 1
    # then served from the cache
    for _ in range(5):
        await scheme.apply(REQ)
    assert state.token_requests == 1
    assert sample(metrics, "signet_token_cache_hits_total", route="r1") == 5


async def test_waiter_cancellation_does_not_cancel_the_shared_fetch(oauth):
    _server, state, scheme = await oauth()
    state.gate = asyncio.Event()
    first = asyncio.create_task(scheme.apply(REQ))
    second = asyncio.create_task(scheme.apply(REQ))
    await until(lambda: state.token_requests == 1)
    first.cancel()
    state.gate.set()
    assert bearer(await second) == state.issued[0]
    assert state.token_requests == 1


# --------------------------------------------------------------------------- refresh and expiry


async def test_refresh_ahead_serves_old_token_without_waiting(oauth, clock, metrics):
    _server, state, scheme = await oauth({"lifetime": 120}, refresh_before=60)
    t1 = bearer(await scheme.apply(REQ))
    clock.advance(59)
    assert bearer(await scheme.apply(REQ)) == t1
    await scheme.tokens.wait_idle()
    assert state.token_requests == 1  # not yet at the refresh point

    clock.advance(2)  # past expires_in - refresh_before, before expiry
    state.gate = asyncio.Event()  # the refresh will hang until released
    result = await asyncio.wait_for(scheme.apply(REQ), 0.5)  # no waiting
    assert bearer(result) == t1
    await until(lambda: state.token_requests == 2)
    for _ in range(20):  # still the old token, still ONE refresh in flight
        assert bearer(await asyncio.wait_for(scheme.apply(REQ), 0.5)) == t1
    assert state.token_requests == 2
    assert sample(metrics, "signet_token_refreshes_total", route="r1") == 1

    state.gate.set()
    await scheme.tokens.wait_idle()
    t2 = bearer(await scheme.apply(REQ))
    assert t2 != t1 and t2 == state.issued[-1]
    assert state.token_requests == 2


async def test_short_lifetime_refreshes_at_half_life(oauth, clock):
    _server, state, scheme = await oauth({"lifetime": 40}, refresh_before=60)
    t1 = bearer(await scheme.apply(REQ))
    clock.advance(19)
    assert bearer(await scheme.apply(REQ)) == t1
    await scheme.tokens.wait_idle()
    assert state.token_requests == 1
    clock.advance(2)
    assert bearer(await scheme.apply(REQ)) == t1
    await scheme.tokens.wait_idle()
    assert state.token_requests == 2
    assert bearer(await scheme.apply(REQ)) == state.issued[-1] != t1


async def test_expired_token_single_refetch(oauth, clock):
    _server, state, scheme = await oauth({"lifetime": 120})
    t1 = bearer(await scheme.apply(REQ))
    clock.advance(121)  # past real expiry: nobody may use t1
    results = await asyncio.gather(*(scheme.apply(REQ) for _ in range(30)))
    assert {bearer(r) for r in results} == {state.issued[-1]}
    assert state.issued[-1] != t1
    assert state.token_requests == 2


# --------------------------------------------------------------------------- 401 handling


async def test_on_unauthorized_keeps_a_token_younger_than_30s(oauth, clock):
    """Finding 6 (round 3): a token just issued is not refetched after a 401; the 401 is relayed."""
    _server, state, scheme = await oauth()
    r1 = await scheme.apply(REQ)
    clock.advance(29.9)
    assert await scheme.on_unauthorized(r1) is False
    assert bearer(await scheme.apply(REQ)) == bearer(r1)
    assert state.token_requests == 1
    clock.advance(0.1)  # 30 s old: a fresh token may help
    assert await scheme.on_unauthorized(r1) is True
    assert bearer(await scheme.apply(REQ)) != bearer(r1)
    assert state.token_requests == 2


async def test_on_unauthorized_drops_token_and_next_apply_fetches(oauth, clock):
    _server, state, scheme = await oauth()
    r1 = await scheme.apply(REQ)
    clock.advance(30)
    assert await scheme.on_unauthorized(r1) is True
    r2 = await scheme.apply(REQ)
    assert bearer(r2) != bearer(r1)
    assert state.token_requests == 2
    # a late 401 for the old token must not drop the new one
    clock.advance(30)
    assert await scheme.on_unauthorized(r1) is True
    assert bearer(await scheme.apply(REQ)) == bearer(r2)
    assert state.token_requests == 2
    assert await scheme.on_unauthorized(AuthResult()) is False


async def test_revoked_token_retry_against_protected_api(oauth, clock):
    server, state, scheme = await oauth()
    async with aiohttp.ClientSession() as http:

        async def call(result):
            async with http.get(server.make_url("/v1/things"), headers=result.headers) as resp:
                return resp.status, await resp.json()

        r1 = await scheme.apply(REQ)
        assert (await call(r1))[0] == 200
        state.revoke_all()
        status, body = await call(r1)
        assert status == 401 and body["error"] == "revoked token"
        clock.advance(30)  # a younger token would be kept and the 401 relayed
        assert await scheme.on_unauthorized(r1)
        r2 = await scheme.apply(REQ)
        status, body = await call(r2)
        assert status == 200 and body["ok"] is True
        assert state.token_requests == 2


# --------------------------------------------------------------------------- failures


def refused_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/oauth/token?tenant=abc"


@pytest.mark.parametrize(
    ("mode", "expect"),
    [
        ("down", ("HTTP 500", "non-JSON", "text/plain")),
        ("invalid_client", ("HTTP 401", "invalid_client", "Client authentication failed")),
        ("non_json", ("HTTP 200", "non-JSON", "text/html")),
        ("no_token", ("HTTP 200", "without an access_token")),
        ("slow", ("timed out", "127.0.0.1:")),
        ("refused", ("cannot connect", "connection refused", "127.0.0.1:")),
    ],
)
async def test_token_endpoint_failures(oauth, make_scheme, metrics, mode, expect):
    _server, state, scheme = await oauth(read_timeout=0.3)
    if mode == "refused":
        url = refused_url()
        scheme = await make_scheme(
            {
                "scheme": "oauth2-client-credentials",
                "token_url": url,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            },
            route="r1",
        )
    else:
        state.fail_mode = mode
    with capture_logs() as logs, pytest.raises(TokenError) as ei:
        await scheme.apply(REQ)
    msg = ei.value.message
    for part in expect:
        assert part in msg, msg
    assert "tenant" not in msg  # no query string
    assert CLIENT_SECRET not in msg
    assert sample(metrics, "signet_token_fetches_total", route="r1", outcome="error") == 1
    assert sample(metrics, "signet_token_failures_total", route="r1") == 1
    (line,) = [e for e in logs if e["event"] == "token_fetch"]
    assert line["outcome"] == "error" and line["route"] == "r1" and line["reason"] == msg
    assert "duration_ms" in line and "status" in line


async def test_backoff_fails_fast_then_recovers(oauth, clock):
    _server, state, scheme = await oauth()
    state.fail_mode = "invalid_client"
    with pytest.raises(TokenError):
        await scheme.apply(REQ)
    assert state.token_requests == 1

    errors = []
    for _ in range(50):
        with pytest.raises(TokenError) as ei:
            await scheme.apply(REQ)
        errors.append(ei.value.message)
    assert state.token_requests == 1  # no hammering
    assert all(m.startswith("token endpoint failing, retrying in ") for m in errors)
    assert all("HTTP 401" in m and "invalid_client" in m for m in errors)

    state.fail_mode = None
    clock.advance(0.51)  # first backoff is at most base = 0.5 s
    results = await asyncio.gather(*(scheme.apply(REQ) for _ in range(10)))
    assert state.token_requests == 2
    assert {bearer(r) for r in results} == {state.issued[-1]}
    assert scheme.tokens.failures == 0


class MaxJitter:
    def uniform(self, a, b):
        return b


async def test_backoff_is_exponential_capped_and_reset(oauth, clock):
    _server, state, scheme = await oauth()
    scheme.tokens.rng = MaxJitter()
    state.fail_mode = "down"
    delays = []
    for _ in range(9):
        with pytest.raises(TokenError):
            await scheme.apply(REQ)
        delay = scheme.tokens.retry_at - clock.monotonic()
        delays.append(delay)
        clock.advance(delay)
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert state.token_requests == 9
    state.fail_mode = None
    await scheme.apply(REQ)
    assert scheme.tokens.failures == 0 and not scheme.tokens.in_backoff
    # the next failure starts from the base again
    token = await scheme.apply(REQ)
    clock.advance(30)
    assert await scheme.on_unauthorized(token)
    state.fail_mode = "down"
    with pytest.raises(TokenError):
        await scheme.apply(REQ)
    assert scheme.tokens.retry_at - clock.monotonic() == 0.5


async def test_failed_refresh_keeps_serving_valid_token(oauth, clock, metrics):
    _server, state, scheme = await oauth({"lifetime": 300}, refresh_before=60)
    scheme.tokens.rng = MaxJitter()
    t1 = bearer(await scheme.apply(REQ))
    clock.advance(250)
    state.fail_mode = "down"
    assert bearer(await scheme.apply(REQ)) == t1  # starts a refresh that fails
    await scheme.tokens.wait_idle()
    assert state.token_requests == 2
    for _ in range(20):  # in backoff: old token, no new request
        assert bearer(await scheme.apply(REQ)) == t1
    assert state.token_requests == 2
    clock.advance(0.5)  # backoff over, token still valid
    state.fail_mode = None
    assert bearer(await scheme.apply(REQ)) == t1
    await scheme.tokens.wait_idle()
    assert state.token_requests == 3
    assert bearer(await scheme.apply(REQ)) == state.issued[-1] != t1
    assert sample(metrics, "signet_token_refreshes_total", route="r1") == 2


async def test_refresh_failing_until_expiry_then_fails_fast(oauth, clock):
    _server, state, scheme = await oauth({"lifetime": 100}, refresh_before=10)
    scheme.tokens.rng = MaxJitter()
    await scheme.apply(REQ)
    clock.advance(95)
    state.fail_mode = "down"
    await scheme.apply(REQ)
    await scheme.tokens.wait_idle()
    clock.advance(5.1)  # past expiry and past the 0.5 s backoff: one foreground fetch
    with pytest.raises(TokenError) as ei:
        await scheme.apply(REQ)
    assert "HTTP 500" in ei.value.message
    assert state.token_requests == 3
    with pytest.raises(TokenError) as ei:
        await scheme.apply(REQ)
    assert "retrying in" in ei.value.message
    assert state.token_requests == 3


async def test_no_secret_or_token_in_errors_or_logs(oauth, clock):
    _server, state, scheme = await oauth({"lifetime": 100}, read_timeout=0.2)
    messages = []
    with capture_logs() as logs:
        r1 = await scheme.apply(REQ)
        clock.advance(30)
        await scheme.on_unauthorized(r1)
        r2 = await scheme.apply(REQ)
        clock.advance(30)
        await scheme.on_unauthorized(r2)
        for mode in ("down", "invalid_client", "non_json", "no_token", "slow"):
            state.fail_mode = mode
            clock.advance(31)
            with pytest.raises(TokenError) as ei:
                await scheme.apply(REQ)
            messages.append(ei.value.message)
            with pytest.raises(TokenError) as ei:
                await scheme.apply(REQ)
            messages.append(ei.value.message)
    fetch_lines = [e for e in logs if e["event"] == "token_fetch"]
    assert [e["outcome"] for e in fetch_lines].count("ok") == 2
    assert all("duration_ms" in e and "expires_in" in e for e in fetch_lines)
    dumped = repr(logs) + repr(messages) + repr(r1.state)  # (AuthResult repr shows headers)
    forbidden = [
        CLIENT_SECRET,
        client_basic_authorization(CLIENT_ID, CLIENT_SECRET)[6:],
        *state.issued,
    ]
    for value in forbidden:
        assert value not in dumped


# --------------------------------------------------------------------------- misc interface


async def test_secret_values_and_placeholder(oauth):
    _server, state, scheme = await oauth(extra={"audience": Secret("aud-secret")})
    assert scheme.needs_body is True
    placeholder = scheme.placeholder_result()
    assert placeholder.headers == {"Authorization": "Bearer <token>"}
    assert state.token_requests == 0
    values = set(scheme.secret_values())
    assert {CLIENT_SECRET, "aud-secret"} <= values
    result = await scheme.apply(REQ)
    assert bearer(result) in set(scheme.secret_values())
    assert isinstance(scheme, OAuth2ClientCredentials)


async def test_close_cancels_refresh_and_later_apply_fails_cleanly(oauth, clock):
    _server, state, scheme = await oauth({"lifetime": 100}, refresh_before=10)
    await scheme.apply(REQ)
    clock.advance(95)
    state.gate = asyncio.Event()
    await scheme.apply(REQ)
    await until(lambda: state.token_requests == 2)
    await scheme.close()
    with pytest.raises(TokenError):
        await scheme.apply(REQ)
    state.gate.set()


async def test_close_while_waiting_gives_token_error(oauth):
    _server, state, scheme = await oauth()
    state.gate = asyncio.Event()
    waiter = asyncio.create_task(scheme.apply(REQ))
    await until(lambda: state.token_requests == 1)
    await scheme.close()
    with pytest.raises(TokenError, match="closed"):
        await waiter
    state.gate.set()


def test_options_validation():
    cls = SCHEMES["oauth2-client-credentials"]
    base = {
        "scheme": "oauth2-client-credentials",
        "token_url": "https://a.example/t",
        "client_id": "i",
        "client_secret": "s",
    }
    opts = cls.Options.model_validate(base)
    assert (
        opts.client_auth,
        opts.request_format,
        opts.refresh_before,
        opts.default_expires_in,
    ) == ("basic", "form", 60, 300)
    assert isinstance(opts.client_secret, Secret)
    for bad in (
        {"token_url": "ftp://a.example/t"},
        {"token_url": "/relative"},
        {"client_auth": "digest"},
        {"request_format": "xml"},
        {"extra": {"grant_type": "password"}},
        {"refresh_before": -1},
        {"default_expires_in": 0},
        {"client_secret": ""},
        {"unknown": 1},
    ):
        with pytest.raises(ValidationError):
            cls.Options.model_validate({**base, **bad})
    # secret references arrive as Secret objects in any string field
    opts = cls.Options.model_validate(
        {**base, "token_url": Secret("https://b.example/t"), "client_id": Secret("cid")}
    )
    scheme = cls(opts, SchemeContext(route="x"))
    assert scheme.spec.token_url == "https://b.example/t"
    assert "cid" in set(scheme.secret_values())
    with pytest.raises(ValidationError):
        SCHEMES["threeplcentral"].Options.model_validate(
            {"scheme": "threeplcentral", "client_id": "i", "client_secret": "s"}
        )

"""Apliiq mock: hand-signed requests pass, mistakes and replays fail (vendor-docs/apliiq-authentication.txt)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from typing import Any

from proxy.mock import apliiq
from proxy.mock.apliiq import NONCES, NonceStore
from proxy.mock.common import RECORDED
from tests.conftest import secret

T = 1_717_128_481
APP_ID = "app-0001"
SECRET = secret("apliiq-mock-secret-Vv81")
BODY = b'{"number": 1001, "items": [{"sku": "A1", "qty": 2}]}'


def nonce() -> str:
    return uuid.uuid4().hex  # the doc's C#: Guid lowercased, dashes removed


def sig(rts: int, state: str, body: bytes, app_id: str = APP_ID, secret_: str = SECRET) -> str:
    """base64(HMACSHA256([APPId][RTS][STATE][Base64_ReqContentIFanyOREmptyString], Shared_SECRET))."""
    content = base64.b64encode(body).decode() if body else ""
    message = f"{app_id}{rts}{state}{content}".encode()
    return base64.b64encode(hmac.new(secret_.encode(), message, hashlib.sha256).digest()).decode()


def auth(state: str, body: bytes = BODY, rts: int = T, signature: str | None = None) -> dict[str, str]:
    s = signature if signature is not None else sig(rts, state, body)
    return {"Authorization": f"x-apliiq-auth {rts}:{s}:{APP_ID}:{state}", "Accept": "application/json"}


async def call(client: Any, method: str, path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
    async with client.request(method, path, **kw) as r:
        text = await r.text()
        assert SECRET not in text
        return r.status, await r.json()


async def app(aiohttp_client: Any, now: float = T) -> Any:
    return await aiohttp_client(apliiq.create_app(app_id=APP_ID, shared_secret=SECRET, clock=lambda: now))


async def test_accepts_hand_signed_requests_once(aiohttp_client: Any) -> None:
    client = await app(aiohttp_client)
    state = nonce()
    status, answer = await call(client, "POST", "/api/Order", data=BODY, headers=auth(state))
    assert status == 200 and answer["vendor"] == "apliiq" and answer["body_bytes"] == len(BODY), answer
    status, answer = await call(client, "GET", "/api/Order?status=open", headers=auth(nonce(), b""))
    assert status == 200, answer
    # the same STATE again, even re-signed with another RTS, is a replay
    for rts in (T, T + 1):
        status, answer = await call(client, "POST", "/api/Order", data=BODY, headers=auth(state, rts=rts))
        assert status == 401 and answer["error"] == f"STATE '{state}' was already used: replayed request"
    assert [r.accepted for r in client.app[RECORDED]] == [True, True, False, False]


async def test_a_rejected_request_does_not_burn_its_nonce(aiohttp_client: Any) -> None:
    client = await app(aiohttp_client)
    state = nonce()
    assert (await call(client, "POST", "/api/Order", data=BODY + b" ", headers=auth(state)))[0] == 401
    assert (await call(client, "POST", "/api/Order", data=BODY, headers=auth(state)))[0] == 200


async def test_each_mistake_is_rejected_naming_the_field(aiohttp_client: Any) -> None:
    client = await app(aiohttp_client)
    s = nonce()
    raw_body_sig = base64.b64encode(hmac.new(SECRET.encode(), f"{APP_ID}{T}{s}".encode() + BODY, hashlib.sha256).digest()).decode()
    hex_sig = hmac.new(SECRET.encode(), f"{APP_ID}{T}{s}".encode() + base64.b64encode(BODY), hashlib.sha256).hexdigest()
    good_sig = sig(T, s, BODY)
    cases: list[tuple[dict[str, str], bytes, str]] = [
        (auth(s, signature=sig(T, s, BODY, secret_="other")), BODY, "SIG mismatch"),
        (auth(s), BODY + b"\n", "SIG mismatch"),  # body altered after signing
        (auth(s, signature=raw_body_sig), BODY, "hint: the received value is what you get over the raw body instead of base64(body)"),
        (auth(s, signature=hex_sig), BODY, "as a hex digest instead of base64"),
        ({}, BODY, "missing header Authorization"),
        ({"Authorization": f"X-Apliiq-Auth {T}:{good_sig}:{APP_ID}:{s}"}, BODY, "Authorization must start with 'x-apliiq-auth '"),
        ({"Authorization": f"Bearer {good_sig}"}, BODY, "received scheme 'Bearer'"),
        ({"Authorization": f"x-apliiq-auth {T}:{good_sig}:{APP_ID}"}, BODY, "(4 fields separated by ':'), received 3 fields"),
        ({"Authorization": f"x-apliiq-auth {T}:{good_sig}:other-app:{s}"}, BODY, "APPID 'other-app' in Authorization is not the configured app id"),
        (auth(s, rts=T - 301), BODY, f"RTS '{T - 301}' is 301 s behind the server clock; the window is ±300 s"),
        (auth(s, rts=T + 301), BODY, "301 s ahead of the server clock"),
        (auth(s, rts=T * 1000), BODY, "looks like milliseconds"),
        (auth(s.upper()), BODY, "STATE"),
        (auth("abc123"), BODY, "must be a 32-character lowercase hex nonce"),
    ]
    for headers, body, reason in cases:
        status, answer = await call(client, "POST", "/api/Order", data=body, headers=headers)
        assert status == 401 and reason in answer["error"], (reason, answer)
    status, answer = await call(client, "POST", "/api/Order", data=b"{}", headers=auth(s, signature="bad"))
    assert answer["error"] == (
        "SIG mismatch: expected base64(HMAC-SHA256) keyed with the shared secret over APPID + RTS + STATE + "
        f"base64(body) (empty for an empty body) with APPID='{APP_ID}', RTS='{T}', STATE='{s}', body=<2 bytes>; "
        f"expected {sig(T, s, b'{}')}, received 'bad'")
    # none of these consumed the nonce
    assert (await call(client, "POST", "/api/Order", data=BODY, headers=auth(s)))[0] == 200


async def test_nonces_expire_with_the_window(aiohttp_client: Any) -> None:
    now = [float(T)]
    client = await aiohttp_client(apliiq.create_app(app_id=APP_ID, shared_secret=SECRET, clock=lambda: now[0]))
    state = nonce()
    assert (await call(client, "GET", "/x", headers=auth(state, b"")))[0] == 200
    assert len(client.app[NONCES]) == 1
    now[0] = T + 200  # still inside: a replay
    assert (await call(client, "GET", "/x", headers=auth(state, b"", rts=T + 200)))[0] == 401
    now[0] = T + 301  # the old RTS is out of the window, so the entry can go
    assert (await call(client, "GET", "/x", headers=auth(nonce(), b"", rts=T + 301)))[0] == 200
    assert state not in client.app[NONCES]


def test_nonce_store_is_bounded() -> None:
    store = NonceStore(window=300, limit=3)
    for i in range(5):
        store.add(f"{i:032x}", T, T)
    assert len(store) == 3 and f"{0:032x}" not in store and f"{4:032x}" in store
    store.prune(T + 301)
    assert len(store) == 0

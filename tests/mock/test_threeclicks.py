"""3 Clicks mock: hand-signed requests (vendor-docs/3clicks-authentication.txt) pass, each mistake fails."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from multidict import CIMultiDict

from proxy.mock import threeclicks
from proxy.mock.common import RECORDED
from tests.conftest import secret

T = 1_717_128_481  # the doc's example timestamp
KEY = "tc-key-0001"
SECRET = secret("tc-mock-secret-Lq02")
BODY = b'{\n"style_number": "A00416",\n"name": "Activewear"\n}'


def sign(method: str, body: bytes, ts: str, key: str = KEY, secret_: str = SECRET) -> str:
    """[api_key][api_secret][method][data][timestamp], no separators; data '{}' when empty."""
    message = key.encode() + secret_.encode() + method.encode() + (body or b"{}") + ts.encode()
    return hmac.new(secret_.encode(), message, hashlib.sha256).hexdigest()


def good(method: str = "put", body: bytes = BODY, ts: int = T) -> dict[str, str]:
    return {"X-Api-Key": KEY, "X-Api-Timestamp": str(ts), "X-Api-Signature": sign(method, body, str(ts))}


async def call(client: Any, method: str, path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
    async with client.request(method, path, **kw) as r:
        text = await r.text()
        assert SECRET not in text
        return r.status, await r.json()


async def strict(aiohttp_client: Any, now: float = T + 5) -> Any:
    return await aiohttp_client(threeclicks.create_app(api_key=KEY, api_secret=SECRET, clock=lambda: now))


async def test_strict_accepts_hand_signed_requests(aiohttp_client: Any) -> None:
    client = await strict(aiohttp_client)
    status, answer = await call(client, "PUT", "/api-user/v1/style/ecommerce/tags-create", data=BODY, headers=good())
    assert status == 200, answer
    assert answer == {"ok": True, "vendor": "threeclicks-strict", "method": "PUT",
                      "path": "/api-user/v1/style/ecommerce/tags-create", "query": "", "body_bytes": len(BODY)}
    # empty body: data is '{}'; the encoded path reaches the mock as sent
    status, answer = await call(client, "GET", "/api-user/v1/style/ABC%2F123?style_number=SO00123",
                                headers=good("get", b""))
    assert status == 200, answer
    assert answer["path"] == "/api-user/v1/style/ABC%2F123" and answer["query"] == "style_number=SO00123"
    rec = client.app[RECORDED]
    assert [r.accepted for r in rec] == [True, True]
    assert rec[1].raw_path == "/api-user/v1/style/ABC%2F123?style_number=SO00123"
    assert ("X-Api-Key", KEY) in rec[0].headers and rec[0].body == BODY


async def test_strict_window_edges(aiohttp_client: Any) -> None:
    client = await strict(aiohttp_client, now=T)
    for ts in (T - 600, T + 600):
        assert (await call(client, "POST", "/x", data=BODY, headers=good("post", ts=ts)))[0] == 200
    for ts, side in ((T - 601, "behind"), (T + 601, "ahead of")):
        status, answer = await call(client, "POST", "/x", data=BODY, headers=good("post", ts=ts))
        assert status == 401
        assert answer["error"] == (f"X-Api-Timestamp '{ts}' is 601 s {side} the server clock; "
                                   "the window is ±600 s (stale, future or wrong unit)")


async def test_strict_rejects_each_mistake_naming_the_field(aiohttp_client: Any) -> None:
    client = await strict(aiohttp_client)
    h = good()
    drop = lambda name: {k: v for k, v in h.items() if k != name}  # noqa: E731
    cases: list[tuple[str, dict[str, str], bytes, str]] = [
        ("wrong secret", {**h, "X-Api-Signature": sign("put", BODY, str(T), secret_="other")}, BODY,
         "X-Api-Signature mismatch"),
        ("method case", {**h, "X-Api-Signature": sign("PUT", BODY, str(T))}, BODY,
         "hint: the received value is what you get with the method not lowercased"),
        ("uppercase hex", {**h, "X-Api-Signature": h["X-Api-Signature"].upper()}, BODY,
         "X-Api-Signature is uppercase hex"),
        ("no key", drop("X-Api-Key"), BODY, "missing header X-Api-Key"),
        ("no timestamp", drop("X-Api-Timestamp"), BODY, "missing header X-Api-Timestamp"),
        ("no signature", drop("X-Api-Signature"), BODY, "missing header X-Api-Signature"),
        ("wrong key", {**h, "X-Api-Key": "other-key"}, BODY, "X-Api-Key 'other-key' is not the configured API key"),
        ("milliseconds", {**h, "X-Api-Timestamp": str(T * 1000)}, BODY,
         f"X-Api-Timestamp '{T * 1000}' looks like milliseconds (13 digits)"),
        ("not digits", {**h, "X-Api-Timestamp": "1717128481.5"}, BODY, "X-Api-Timestamp must be Unix seconds"),
        ("stale", {**h, "X-Api-Timestamp": str(T - 700)}, BODY, "705 s behind the server clock; the window is ±600 s"),
        ("body altered", h, BODY + b" ", "X-Api-Signature mismatch"),
        ("secret also sent", {**h, "X-Api-Secret": SECRET}, BODY, "X-Api-Secret must not be sent"),
    ]
    for label, headers, body, reason in cases:
        status, answer = await call(client, "PUT", "/api-user/v1/x", data=body, headers=headers)
        assert status == 401 and reason in answer["error"], (label, answer)
        assert answer["ok"] is False and answer["vendor"] == "threeclicks-strict"
    rec = client.app[RECORDED]
    assert len(rec) == len(cases) and not any(r.accepted for r in rec)
    assert all(r.reason and SECRET not in r.reason for r in rec)


async def test_mismatch_shows_the_layout_and_expected_value(aiohttp_client: Any) -> None:
    client = await strict(aiohttp_client)
    status, answer = await call(client, "POST", "/x", data=b'{"a":1}', headers={**good("post", b'{"a":2}')})
    expected = sign("post", b'{"a":1}', str(T))
    assert status == 401
    assert answer["error"].startswith(
        "X-Api-Signature mismatch: expected lowercase hex HMAC-SHA256 keyed with api_secret over "
        "api_key + api_secret + method(lower) + data + timestamp with "
        f"method='post', data=<7 bytes>, timestamp='{T}'; expected {expected}, received '")
    # empty body signed over '' instead of '{}'
    empty_wrong = hmac.new(SECRET.encode(), (KEY + SECRET + "delete" + str(T)).encode(), hashlib.sha256).hexdigest()
    headers = {**good("delete", b""), "X-Api-Signature": empty_wrong}
    status, answer = await call(client, "DELETE", "/x", headers=headers)
    assert status == 401 and "data='{}' (empty body)" in answer["error"]
    assert "with data = '' instead of '{}' for the empty body" in answer["error"]


async def test_repeated_header_is_rejected(aiohttp_client: Any) -> None:
    client = await strict(aiohttp_client)
    headers = CIMultiDict(good())
    headers.add("X-Api-Key", "client-key")
    status, answer = await call(client, "PUT", "/x", data=BODY, headers=headers)
    assert status == 401 and answer["error"] == "header X-Api-Key sent 2 times; send it once"


async def test_simple_mode(aiohttp_client: Any) -> None:
    client = await aiohttp_client(threeclicks.create_app(api_key=KEY, api_secret=SECRET, mode="simple"))
    ok = {"X-Api-Key": KEY, "X-Api-Secret": SECRET}
    status, answer = await call(client, "GET", "/api-user/v1/style/basic/detail?style_number=SO00123", headers=ok)
    assert status == 200 and answer["vendor"] == "threeclicks-simple"
    for headers, reason in (
        ({**ok, "X-Api-Secret": "wrong"}, "X-Api-Secret does not match the configured API secret (received 5 chars)"),
        ({"X-Api-Key": KEY}, "missing header X-Api-Secret"),
        ({"X-Api-Secret": SECRET}, "missing header X-Api-Key"),
    ):
        status, answer = await call(client, "GET", "/x", headers=headers)
        assert status == 401 and answer["error"] == reason
    async with client.get("/__mock/requests") as r:
        text = await r.text()
    assert SECRET not in text and '"***"' in text


def test_unknown_mode_is_refused() -> None:
    try:
        threeclicks.create_app(api_key=KEY, api_secret=SECRET, mode="lenient")
    except ValueError as exc:
        assert "lenient" in str(exc)
    else:
        raise AssertionError("mode accepted")

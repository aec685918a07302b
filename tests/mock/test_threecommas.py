"""3Commas mock: the doc's published vector passes, each mistake fails (vendor-docs/3commas-signing.txt)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from yarl import URL

from proxy.mock import threecommas
from proxy.mock.common import RECORDED

# the doc's example credentials and vector
KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
VECTOR = "bca8d8c10acfbe8e76c5335d3efbe0a550487170a8bb7aaea0a13efabab55316"
CHANGE_MODE = "/public/api/ver1/users/change_mode?mode=paper"


def sign(message: bytes, secret_: str = SECRET) -> str:
    return hmac.new(secret_.encode(), message, hashlib.sha256).hexdigest()


async def call(client: Any, method: str, path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
    async with client.request(method, URL(path, encoded=True), **kw) as r:
        text = await r.text()
        assert SECRET not in text
        return r.status, await r.json()


async def app(aiohttp_client: Any) -> Any:
    return await aiohttp_client(threecommas.create_app(api_key=KEY, secret=SECRET))


def test_published_vector_by_hand() -> None:
    assert sign(CHANGE_MODE.encode()) == VECTOR


async def test_published_request_is_accepted(aiohttp_client: Any) -> None:
    client = await app(aiohttp_client)
    status, answer = await call(client, "POST", CHANGE_MODE, headers={"Apikey": KEY, "Signature": VECTOR})
    assert status == 200, answer
    assert answer == {"ok": True, "vendor": "threecommas", "method": "POST",
                      "path": "/public/api/ver1/users/change_mode", "query": "mode=paper", "body_bytes": 0}
    # "the signature is not case sensitive"
    status, _ = await call(client, "POST", CHANGE_MODE, headers={"Apikey": KEY, "Signature": VECTOR.upper()})
    assert status == 200
    assert [r.accepted for r in client.app[RECORDED]] == [True, True]


async def test_body_path_without_query_and_encoded_path(aiohttp_client: Any) -> None:
    client = await app(aiohttp_client)
    body = b'{"pair":"USDT_BTC"}'
    cases = [
        ("POST", "/public/api/ver1/bots/create_bot", body, b"/public/api/ver1/bots/create_bot" + body),
        ("GET", "/public/api/ver1/bots/84512/show?include_events=true", b"",
         b"/public/api/ver1/bots/84512/show?include_events=true"),
        ("GET", "/public/api/ver1/x/ABC%2F123?q=a%2Fb", b"", b"/public/api/ver1/x/ABC%2F123?q=a%2Fb"),
        ("GET", "/public/api/ver1/accounts?", b"", b"/public/api/ver1/accounts"),  # empty query: no '?'
    ]
    for method, path, data, message in cases:
        status, answer = await call(client, method, path, data=data, headers={"Apikey": KEY, "Signature": sign(message)})
        assert status == 200, (path, answer)


async def test_each_mistake_is_rejected_naming_the_field(aiohttp_client: Any) -> None:
    client = await app(aiohttp_client)
    body = b'{"mode":"paper"}'
    path = "/public/api/ver1/x/ABC%2F123?mode=paper"
    right = sign(path.encode() + body)
    cases = [
        ({"Apikey": KEY, "Signature": sign(path.encode() + body, "other-secret")}, body, "Signature mismatch"),
        ({"Apikey": KEY, "Signature": right}, body + b"!", "body=<17 bytes>"),
        ({"Apikey": KEY, "Signature": sign(b"/public/api/ver1/x/ABC%2F123" + body)}, body,
         "hint: the received value is what you get without the query"),
        ({"Apikey": KEY, "Signature": sign(b"/public/api/ver1/x/ABC/123?mode=paper" + body)}, body,
         "hint: the received value is what you get over the percent-decoded path"),
        ({"Apikey": KEY, "Signature": sign(path.encode())}, body, "without the body"),
        ({"Signature": right}, body, "missing header Apikey"),
        ({"Apikey": KEY}, body, "missing header Signature"),
        ({"Apikey": "someone-else", "Signature": right}, body, "Apikey 'someone-else' is not the configured API key"),
    ]
    for headers, data, reason in cases:
        status, answer = await call(client, "POST", path, data=data, headers=headers)
        assert status == 401 and reason in answer["error"], (reason, answer)
    status, answer = await call(client, "POST", path, data=body, headers={"Apikey": KEY, "Signature": "abc"})
    assert answer["error"] == (
        "Signature mismatch: expected hex HMAC-SHA256 keyed with the secret over path + ('?' + query if query) + body, "
        f"the path and query as received, with path+query='{path}', body=<16 bytes>; expected {right}, received 'abc'")

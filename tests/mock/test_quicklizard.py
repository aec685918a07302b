"""Quicklizard mock: the doc's vectors pass, each mistake fails (vendor-docs/quicklizard-authentication.txt)."""

from __future__ import annotations

import hashlib
from typing import Any

from yarl import URL

from proxy.mock import quicklizard
from proxy.mock.common import RECORDED

# the doc's example key pair, timestamp and vector
KEY = "ccae6d912a41bfefd569a77b5cd86603cde92e53cdd45813cba9e5bf080b3734"
SECRET = "0d66f4f97239b4530a5ab226eede766657933948c4fdd1ea22e14773c8342ee5"
QTS = "1414562585331"
VECTOR = "9f910f3354fd28e4d9b54d902ed881c8e5a912337bce02d51d5f24a1755b552d"
NOW = 1414562585.331


def digest(path: str, query: str, body: bytes = b"", secret_: str = SECRET) -> str:
    """SHA256.hexdigest(request-path + query-string + request-body + API_SECRET)."""
    return hashlib.sha256(path.encode() + query.encode() + body + secret_.encode()).hexdigest()


def headers(value: str) -> dict[str, str]:
    return {"API_KEY": KEY, "API_DIGEST": value}


async def call(client: Any, method: str, path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
    async with client.request(method, URL(path, encoded=True), **kw) as r:
        text = await r.text()
        assert SECRET not in text
        return r.status, await r.json()


async def app(aiohttp_client: Any, now: float = NOW) -> Any:
    return await aiohttp_client(quicklizard.create_app(api_key=KEY, api_secret=SECRET, clock=lambda: now))


def test_published_vector_by_hand() -> None:
    assert digest("/api/v1/dummy", f"paramA=1&paramB=2&qts={QTS}") == VECTOR


async def test_published_request_is_accepted(aiohttp_client: Any) -> None:
    client = await app(aiohttp_client)
    status, answer = await call(client, "GET", f"/api/v1/dummy?paramA=1&paramB=2&qts={QTS}", headers=headers(VECTOR))
    assert status == 200, answer
    assert answer == {"ok": True, "vendor": "quicklizard", "method": "GET", "path": "/api/v1/dummy",
                      "query": f"paramA=1&paramB=2&qts={QTS}", "body_bytes": 0}
    rec = client.app[RECORDED][0]
    assert rec.accepted and ("API_KEY", KEY) in rec.headers and ("API_DIGEST", VECTOR) in rec.headers


async def test_json_payload_and_encoded_path(aiohttp_client: Any) -> None:
    client = await app(aiohttp_client)
    body = b'{"field":"value"}'  # the doc's JSON example: query holds only qts
    status, answer = await call(client, "POST", f"/api/v1/dummy?qts={QTS}", data=body,
                                headers=headers(digest("/api/v1/dummy", f"qts={QTS}", body)))
    assert status == 200, answer
    path, query = "/api/v1/style/ABC%2F123", f"a=%2F&qts={QTS}"
    status, answer = await call(client, "GET", f"{path}?{query}", headers=headers(digest(path, query)))
    assert status == 200, answer
    status, answer = await call(client, "GET", f"{path}?{query}", headers=headers(digest("/api/v1/style/ABC/123", query)))
    assert status == 401 and "over the percent-decoded path" in answer["error"]


async def test_window_edges(aiohttp_client: Any) -> None:
    client = await app(aiohttp_client, now=1_414_562_585.0)
    for ms, ok in ((1_414_562_405_000, True), (1_414_562_765_000, True), (1_414_562_404_000, False),
                   (1_414_562_766_000, False)):
        query = f"qts={ms}"
        status, answer = await call(client, "GET", f"/p?{query}", headers=headers(digest("/p", query)))
        assert (status == 200) is ok, (ms, answer)
        if not ok:
            assert "181 s" in answer["error"] and "the window is ±180 s" in answer["error"]


async def test_each_mistake_is_rejected_naming_the_field(aiohttp_client: Any) -> None:
    client = await app(aiohttp_client)
    p, q = "/api/v1/dummy", f"paramA=1&paramB=2&qts={QTS}"
    cases: list[tuple[str, dict[str, str], bytes, str]] = [
        (f"{p}?{q}", headers(digest(p, q, secret_="other")), b"", "API_DIGEST mismatch"),
        (f"{p}?{q}", headers(digest(p + "?", q)), b"",
         "hint: the received value is what you get with '?' between path and query"),
        (f"{p}?{q}", headers(digest(p, "paramA=1&paramB=2")), b"", "without qts in the query"),
        (f"{p}?{q}", headers(VECTOR.upper()), b"", "API_DIGEST is uppercase hex"),
        (f"{p}?{q}", headers(VECTOR), b'{"x":1}', "API_DIGEST mismatch"),  # body added after signing
        (f"{p}?paramA=1&paramB=2", headers(VECTOR), b"", "missing query parameter qts (Unix milliseconds)"),
        (f"{p}?paramA=1", headers(VECTOR), b'{"qts": 1414562585331}', "found in the body: it must be in the query"),
        (f"{p}?qts=1&{q}", headers(VECTOR), b"", "query parameter qts appears 2 times; send it exactly once"),
        (f"{p}?paramA=1&qts=1414562585", headers(VECTOR), b"", "qts '1414562585' looks like seconds (10 digits)"),
        (f"{p}?qts=1414562000000", headers(VECTOR), b"", "qts '1414562000000' is 585.331 s behind the server clock"),
        (f"{p}?qts=14145625853x1", headers(VECTOR), b"", "qts must be Unix milliseconds as ASCII digits"),
        (f"{p}?{q}", {"API_DIGEST": VECTOR}, b"", "missing header API_KEY"),
        (f"{p}?{q}", {"API-KEY": KEY, "API_DIGEST": VECTOR}, b"", "received 'API-KEY': the name must be exactly 'API_KEY'"),
        (f"{p}?{q}", {"API_KEY": KEY}, b"", "missing header API_DIGEST"),
        (f"{p}?{q}", {"API_KEY": "nope", "API_DIGEST": VECTOR}, b"", "API_KEY 'nope' is not the configured API key"),
    ]
    for target, h, body, reason in cases:
        status, answer = await call(client, "POST", target, headers=h, data=body)
        assert status == 401 and reason in answer["error"], (reason, answer)
    status, answer = await call(client, "GET", f"{p}?{q}", headers=headers("0" * 64))
    assert answer["error"] == (
        "API_DIGEST mismatch: expected hex SHA-256 of path + query + body + API_SECRET (no '?' between path and "
        f"query, query including qts) with path='{p}', query='{q}', body=<0 bytes>; expected {VECTOR}, "
        "received '0000000000000000000000000000000000000000000000000000000000000000'")

"""The generic upstream for none/static/basic/bearer, and what every mock app shares."""

from __future__ import annotations

import asyncio
from typing import Any

from multidict import CIMultiDict
from yarl import URL

from proxy.mock import simple
from proxy.mock.common import RECORDED
from tests.conftest import secret

TOKEN = secret("simple-mock-token-Zq71")
BEARER = f"Bearer {TOKEN}"


async def app(aiohttp_client: Any) -> Any:
    return await aiohttp_client(simple.create_app(expect_headers={"Authorization": BEARER, "X-Tenant": "t1"},
                                                  forbid_headers=["Cookie", "Proxy-Authorization"], vendor="bearer"))


async def call(client: Any, method: str, path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
    async with client.request(method, URL(path, encoded=True), **kw) as r:
        text = await r.text()
        assert TOKEN not in text
        return r.status, await r.json()


async def test_expected_and_forbidden_headers(aiohttp_client: Any) -> None:
    client = await app(aiohttp_client)
    ok = {"Authorization": BEARER, "X-Tenant": "t1"}
    status, answer = await call(client, "PATCH", "/items/ABC%2F1?x=1", headers=ok, data=b"abc")
    assert status == 200
    assert answer == {"ok": True, "vendor": "bearer", "method": "PATCH", "path": "/items/ABC%2F1", "query": "x=1",
                      "body_bytes": 3}
    dup = CIMultiDict(ok)
    dup.add("Authorization", "Bearer client-token")
    cases: list[tuple[Any, str]] = [
        ({"X-Tenant": "t1"}, "missing header Authorization"),
        ({**ok, "Authorization": "Basic dXNlcjpwYXNz"}, "header Authorization does not have the configured value "
                                                        "(received scheme 'Basic', expected 'Bearer')"),
        ({**ok, "Authorization": "Bearer nope"}, "(received 11 chars, expected 29)"),
        ({**ok, "X-Tenant": "t2"}, "header X-Tenant does not have the configured value"),
        ({**ok, "Cookie": "session=1"}, "header Cookie must not reach the upstream"),
        ({**ok, "Proxy-Authorization": "Bearer p"}, "header Proxy-Authorization must not reach the upstream"),
        (dup, "header Authorization sent 2 times; send it once"),
    ]
    for headers, reason in cases:
        status, answer = await call(client, "GET", "/items", headers=headers)
        assert status == 401 and reason in answer["error"] and answer["vendor"] == "bearer", (reason, answer)


async def test_recorded_requests_and_masked_listing(aiohttp_client: Any) -> None:
    client = await app(aiohttp_client)
    await call(client, "POST", "/a//b?x=%2F&y", headers={"Authorization": BEARER, "X-Tenant": "t1", "x-lower": "v"},
               data=b'{"k": 1}')
    await call(client, "GET", "/nope", headers={"Authorization": BEARER})
    rec = client.app[RECORDED]
    assert rec[0].method == "POST" and rec[0].raw_path == "/a//b?x=%2F&y" and rec[0].body == b'{"k": 1}'
    assert rec[0].path == "/a//b" and rec[0].query == "x=%2F&y"
    assert ("x-lower", "v") in rec[0].headers  # case as sent
    assert rec[0].header_values("authorization") == [BEARER]
    assert rec[0].accepted and rec[0].reason is None
    assert not rec[1].accepted and rec[1].reason == "missing header X-Tenant"
    async with client.get("/__mock/requests") as r:
        assert r.status == 200
        text = await r.text()
        listing = await r.json()
    assert TOKEN not in text
    assert len(listing) == 2  # the listing itself is not recorded
    assert ["Authorization", "***"] in listing[0]["headers"]
    assert listing[0]["body"] == '{"k": 1}' and listing[0]["body_bytes"] == 8
    assert listing[1]["reason"] == "missing header X-Tenant"
    async with client.delete("/__mock/requests") as r:
        assert r.status == 200
    assert client.app[RECORDED] == []


async def test_any_method_and_any_raw_path(aiohttp_client: Any) -> None:
    client = await aiohttp_client(simple.create_app())
    host, port = client.server.host, client.server.port
    for target in ("/", "//double//slash?q", "/a%0Ab?x=1", "/%zz", "/x?", "/__mock/other"):
        for method in ("GET", "OPTIONS", "PURGE"):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            head = (await reader.read()).split(b"\r\n", 1)[0]
            writer.close()
            assert head == b"HTTP/1.1 200 OK", (method, target, head)
    assert [r.raw_path for r in client.app[RECORDED]][::3] == ["/", "//double//slash?q", "/a%0Ab?x=1", "/%zz", "/x?",
                                                              "/__mock/other"]


async def test_recording_is_bounded(aiohttp_client: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr("proxy.mock.common.MAX_RECORDED", 3)
    client = await aiohttp_client(simple.create_app())
    for i in range(5):
        await call(client, "GET", f"/r{i}")
    assert [r.raw_path for r in client.app[RECORDED]] == ["/r2", "/r3", "/r4"]

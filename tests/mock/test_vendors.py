"""start_mock_vendors: every mock on its own loopback port, DEMO_CREDENTIALS accepted, everything closed."""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from proxy.mock.common import RECORDED
from proxy.mock.vendors import DEMO_CREDENTIALS, VENDOR_NAMES, start_mock_vendors

C = DEMO_CREDENTIALS
BODY = b'{"field":"value"}'


def signed(name: str, path: str, query: str) -> tuple[str, dict[str, str]]:
    """(path?query, headers) for a POST of BODY, signed by hand from each vendor's doc."""
    ts = str(int(time.time()))
    if name == "threeclicks-strict":
        k, s = C["threeclicks"]["api_key"], C["threeclicks"]["api_secret"]
        sig = hmac.new(s.encode(), (k + s + "post").encode() + BODY + ts.encode(), hashlib.sha256).hexdigest()
        return f"{path}?{query}", {"X-Api-Key": k, "X-Api-Timestamp": ts, "X-Api-Signature": sig}
    if name == "threeclicks-simple":
        return f"{path}?{query}", {"X-Api-Key": C["threeclicks"]["api_key"], "X-Api-Secret": C["threeclicks"]["api_secret"]}
    if name == "threecommas":
        sig = hmac.new(C["threecommas"]["secret"].encode(), f"{path}?{query}".encode() + BODY, hashlib.sha256).hexdigest()
        return f"{path}?{query}", {"Apikey": C["threecommas"]["api_key"], "Signature": sig}
    if name == "apliiq":
        app_id, state = C["apliiq"]["app_id"], uuid.uuid4().hex
        mac = hmac.new(C["apliiq"]["shared_secret"].encode(), f"{app_id}{ts}{state}".encode() + base64.b64encode(BODY),
                       hashlib.sha256)
        sig = base64.b64encode(mac.digest()).decode()
        return f"{path}?{query}", {"Authorization": f"x-apliiq-auth {ts}:{sig}:{app_id}:{state}"}
    if name == "quicklizard":
        q = f"{query}&qts={int(time.time() * 1000)}"
        digest = hashlib.sha256((path + q).encode() + BODY + C["quicklizard"]["api_secret"].encode()).hexdigest()
        return f"{path}?{q}", {"API_KEY": C["quicklizard"]["api_key"], "API_DIGEST": digest}
    if name == "static":
        return f"{path}?{query}", dict(C["static"]["headers"])
    if name == "basic":
        user_pass = f"{C['basic']['username']}:{C['basic']['password']}".encode()
        return f"{path}?{query}", {"Authorization": "Basic " + base64.b64encode(user_pass).decode()}
    if name == "bearer":
        return f"{path}?{query}", {"Authorization": f"Bearer {C['bearer']['token']}"}
    assert name == "none"
    return f"{path}?{query}", {}


async def test_start_sign_and_close() -> None:
    async def extra(request: web.Request) -> web.Response:
        return web.Response(text="extra")

    extra_app = web.Application()
    extra_app.router.add_get("/", extra)
    vendors = await start_mock_vendors(extra_apps={"oauth2": extra_app})
    try:
        assert set(vendors.urls) == {*VENDOR_NAMES, "oauth2"} and set(vendors.apps) == set(vendors.urls)
        assert len({URL(u).port for u in vendors.urls.values()}) == len(vendors.urls)
        assert all(URL(u).host == "127.0.0.1" for u in vendors.urls.values())
        async with aiohttp.ClientSession() as session:
            for name in VENDOR_NAMES:
                target, headers = signed(name, "/api/v1/style/ABC%2F123", "b=2&a=%2F")
                url = URL(vendors.urls[name] + target, encoded=True)
                async with session.post(url, data=BODY, headers=headers) as r:
                    answer = await r.json()
                    assert r.status == 200, (name, answer)
                    assert answer["path"] == "/api/v1/style/ABC%2F123"
                async with session.post(URL(vendors.urls[name] + "/x"), data=BODY,
                                        headers={"Authorization": "Bearer wrong", "Cookie": "c=1"}) as r:
                    assert r.status == 401, name  # even "none" refuses a forwarded Authorization/Cookie
                assert [rec.accepted for rec in vendors.apps[name][RECORDED]] == [True, False]
            async with session.get(vendors.urls["oauth2"]) as r:
                assert await r.text() == "extra"
    finally:
        await vendors.close()
    await vendors.close()  # idempotent
    async with aiohttp.ClientSession() as session:
        for url in vendors.urls.values():
            with pytest.raises(aiohttp.ClientConnectionError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)):
                    pass


async def test_extra_app_may_not_replace_a_vendor() -> None:
    with pytest.raises(ValueError, match="quicklizard"):
        await start_mock_vendors(extra_apps={"quicklizard": web.Application()})


async def test_context_manager() -> None:
    async with await start_mock_vendors() as vendors, aiohttp.ClientSession() as session:
        async with session.get(vendors.urls["none"] + "/__mock/requests") as r:
            assert r.status == 200 and await r.json() == []
    assert vendors.runners == {}


def test_demo_credentials_are_obviously_fake_or_published() -> None:
    assert C["threecommas"]["secret"].startswith("NhqPtmdSJY")  # 3Commas doc example
    assert C["quicklizard"]["api_secret"].startswith("0d66f4f9")  # Quicklizard doc example
    for entry in ("threeclicks", "apliiq", "basic", "bearer"):
        assert any("demo" in str(v) for v in C[entry].values()), entry


def test_mocks_do_not_use_signets_signers() -> None:
    """The mocks recompute every value from the vendor docs; importing proxy.auth would make them agree blindly."""
    for name in ("common", "threeclicks", "threecommas", "apliiq", "quicklizard", "simple", "vendors"):
        source = (Path(__file__).parents[2] / "proxy" / "mock" / f"{name}.py").read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            else:
                continue
            assert not any(m == "proxy.auth" or m.startswith("proxy.auth.") for m in modules), (name, modules)
            assert all(m.startswith("proxy.mock") or not m.startswith("proxy") for m in modules), (name, modules)

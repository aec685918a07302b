"""Every scheme end to end: a real `signet serve` in front of the mock vendors.

The mocks verify as the vendors document, independently of Signet's signers.
Clients send hostile credentials; none may reach a vendor.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from proxy.demo import TOKEN_CREDS, demo_routes
from proxy.mock.common import RECORDED
from proxy.mock.oauth import OAUTH_STATE
from proxy.mock.vendors import DEMO_CREDENTIALS
from tests.conftest import ROOT, SUITE_SECRETS, config_text

for _vendor in [*DEMO_CREDENTIALS.values(), *TOKEN_CREDS.values()]:
    for _name, _value in _vendor.items():
        if "secret" in _name or _name in ("password", "token"):
            SUITE_SECRETS.add(_value)

HOSTILE = {
    "Authorization": "Bearer client-supplied-credential",
    "Cookie": "session=client",
    "Proxy-Authorization": "Basic Y2xpZW50",
    "X-Api-Key": "client-key",
    "X-Api-Secret": "client-secret",
    "X-Api-Signature": "client-signature",
    "X-Api-Timestamp": "1",
    "Apikey": "client-key",
    "Signature": "client-signature",
    "API_KEY": "client-key",
    "API_DIGEST": "client-digest",
}
CLIENT_VALUES = set(HOSTILE.values())


@pytest.fixture
async def vendors(aiohttp_server: Any, signet_process: Any) -> tuple[Any, dict[str, Any]]:
    """All demo mock vendors on loopback, and a Signet process routing to each."""
    servers = {}
    routes = []
    for r in demo_routes():
        server = await aiohttp_server(r.make_app(), host="127.0.0.1")
        servers[r.name] = server
        url = str(server.make_url("")).rstrip("/")
        auth = {k: (v.format(url=url) if k == "token_url" else v) for k, v in r.auth.items()}
        routes.append({"name": r.name, "prefix": f"/{r.name}", "upstream": url + r.base_path, "auth": auth})
    text = config_text(routes).replace("${", "$${")
    return signet_process(text), servers


def received(server: Any) -> list[tuple[str, list[tuple[str, str]], bytes]]:
    if OAUTH_STATE in server.app:
        return [(c.raw_path, c.headers, c.body) for c in server.app[OAUTH_STATE].api_calls]
    return [(c.raw_path, c.headers, c.body) for c in server.app[RECORDED]]


ROUTES = [r.name for r in demo_routes()]


@pytest.mark.parametrize("name", ROUTES)
async def test_scheme_end_to_end_with_hostile_headers(vendors: Any, name: str) -> None:
    proc, servers = vendors
    route = next(r for r in demo_routes() if r.name == name)
    async with aiohttp.ClientSession() as s:
        for method, body in (("GET", None), ("POST", b'{"field":"value","emoji":"\xf0\x9f\x98\x80"}'),
                             ("PUT", b""), ("DELETE", None)):
            url = URL(proc.proxy_url + f"/{name}{route.example}", encoded=True)
            async with s.request(method, url, data=body, headers=HOSTILE) as r:
                text = await r.text()
                assert r.status == 200, f"{name} {method}: {r.status} {text}"
                assert json.loads(text)["ok"] is True
    calls = received(servers[name])
    assert len(calls) >= 4
    for raw_path, headers, _ in calls:
        assert raw_path.startswith(route.base_path + route.example.split("?")[0]) or name == "quicklizard"
        for header, value in headers:
            assert value not in CLIENT_VALUES, f"{name}: client's {header} reached the vendor"
            assert header.lower() not in ("cookie", "proxy-authorization")


async def test_encoded_path_and_replaced_qts(vendors: Any) -> None:
    proc, servers = vendors
    async with aiohttp.ClientSession() as s:
        url = URL(proc.proxy_url + "/quicklizard/style/ABC%2F123?b=2&qts=1&a=1", encoded=True)
        async with s.get(url) as r:
            assert r.status == 200, await r.text()
    raw_path = received(servers["quicklizard"])[-1][0]
    path, _, query = raw_path.partition("?")
    assert path == "/api/v1/style/ABC%2F123"
    assert query.startswith("b=2&a=1&qts=") and query.count("qts=") == 1


_segment = st.text(alphabet="abcXYZ019-_~.%2F", min_size=1, max_size=8).filter(
    lambda s: s not in (".", "..") and "%" not in s.replace("%2F", "")
)
_query = st.lists(st.tuples(st.sampled_from(["a", "b", "qts", "x%20y", "z"]),
                            st.text(alphabet="0123456789abc%2F", max_size=6).filter(lambda v: "%" not in v.replace("%2F", ""))),
                  max_size=4).map(lambda kv: "&".join(f"{k}={v}" for k, v in kv))
_body = st.one_of(st.just(b""), st.binary(max_size=200), st.text(max_size=50).map(str.encode))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["threeclicks-strict", "threecommas", "apliiq", "quicklizard"]),
       segments=st.lists(_segment, min_size=1, max_size=3), query=_query, body=_body)
async def test_mock_vendor_accepts_whatever_signet_sends(vendors: Any, name: str, segments: list[str],
                                                         query: str, body: bytes) -> None:
    proc, _ = vendors
    target = f"/{name}/" + "/".join(segments) + (f"?{query}" if query else "")
    async with aiohttp.ClientSession() as s, s.post(URL(proc.proxy_url + target, encoded=True), data=body) as r:
        assert r.status == 200, f"{target!r} {body!r}: {await r.text()}"


def test_demo_selftest_passes() -> None:
    out = subprocess.run([sys.executable, "-m", "proxy", "demo", "--selftest"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert len(lines) == len(ROUTES) and all(line.startswith("PASS") for line in lines), out.stdout

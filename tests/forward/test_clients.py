"""Real clients keep their vendor URLs: HTTPS_PROXY plus Signet's CA, nothing else changed.

Each client runs as its own process, configured only by the environment an
app would get (HTTPS_PROXY with the token as the proxy password, the CA
variable its documentation names), and calls ``https://api.vendor.example``.
The vendor (an HTTPS mock on loopback, tests/forward/vendor.py) checks the
3Commas signature Signet computed and reports the exact bytes it received.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.forward.conftest import TOKEN_A, Vendor, client_env, log_lines, python, run, threecommas_route

HOST = "api.vendor.example"
URL = f"https://{HOST}/public/api/ver1/bots/7/update?name=a%2Fb&x=1"
BODY = b'{"pairs":["USDT_BTC"],"note":"\xc3\xbc \\u00fc"}'
CLIENTS = [{"name": "app-a", "token": "${TOKEN_A}"}]


def _routes(vendor: Vendor) -> list[dict[str, Any]]:
    return [threecommas_route(vendor, max_body_bytes=64 * 1024 * 1024)]


def _check(vendor: Vendor, answer: dict[str, Any], body: bytes = BODY, raw_path: str | None = None) -> None:
    """What the vendor saw: the exact target and body, a valid signature, none of the app's credentials."""
    assert answer["signed"] is True, answer
    assert answer["raw_path"] == (raw_path or URL.split(HOST, 1)[1])
    assert answer["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert answer["body_len"] == len(body)
    seen = vendor.state.seen[-1]
    names = [k.lower() for k, _ in seen["headers"]]
    assert names.count("apikey") == 1 and names.count("signature") == 1
    assert all(v != "the-apps-own-key" for _, v in seen["headers"])
    assert "proxy-authorization" not in names
    assert seen["host"] == f"127.0.0.1:{vendor.port}"  # Signet speaks to the upstream it was given


async def _route_lines(p: Any, count: int = 1) -> list[dict[str, Any]]:
    return await log_lines(p, lambda e: e.get("method") != "CONNECT", count)


CODE = {
    "requests": """
import requests, sys
r = requests.post(sys.argv[1], data=sys.stdin.buffer.read(), headers={"Apikey": "the-apps-own-key"})
print(r.text)
""",
    "httpx": """
import httpx, sys
with httpx.Client() as c:
    r = c.post(sys.argv[1], content=sys.stdin.buffer.read(), headers={"Apikey": "the-apps-own-key"})
print(r.text)
""",
    "httpx-async": """
import asyncio, httpx, sys
async def main():
    async with httpx.AsyncClient() as c:
        r = await c.post(sys.argv[1], content=sys.stdin.buffer.read(), headers={"Apikey": "the-apps-own-key"})
        print(r.text)
asyncio.run(main())
""",
    "aiohttp": """
import asyncio, aiohttp, sys
from yarl import URL
async def main():
    async with aiohttp.ClientSession(trust_env=True) as s:
        async with s.post(URL(sys.argv[1], encoded=True), data=sys.stdin.buffer.read(),
                          headers={"Apikey": "the-apps-own-key"}) as r:
            print(await r.text())
asyncio.run(main())
""",
    "urllib": """
import sys, urllib.request
req = urllib.request.Request(sys.argv[1], data=sys.stdin.buffer.read(), method="POST",
                             headers={"Apikey": "the-apps-own-key"})
print(urllib.request.urlopen(req, timeout=30).read().decode())
""",
}


@pytest.mark.parametrize("client", sorted(CODE))
async def test_python_clients(client: str, forward_signet: Any, vendor: Vendor, signet_ca: Path) -> None:
    p = forward_signet(_routes(vendor), clients=CLIENTS)
    env = client_env(p.proxy_url, signet_ca / "ca.pem", token=TOKEN_A)
    code, out, err = await run(python(CODE[client]) + [URL], env, stdin=BODY)
    assert code == 0, err
    _check(vendor, json.loads(out))
    lines = await _route_lines(p)
    assert lines[-1]["route"] == "vendor" and lines[-1]["client"] == "app-a" and lines[-1]["status"] == 200


CURL = shutil.which("curl")


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
async def test_curl_with_x_and_cacert(forward_signet: Any, vendor: Vendor, signet_ca: Path) -> None:
    p = forward_signet(_routes(vendor), clients=CLIENTS)
    env = client_env("", signet_ca / "ca.pem")
    for key in ("HTTPS_PROXY", "https_proxy", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        env.pop(key, None)
    proxy = p.proxy_url.replace("http://", f"http://app:{TOKEN_A}@")
    code, out, err = await run(
        [str(CURL), "-sS", "--http1.1", "-x", proxy, "--cacert", str(signet_ca / "ca.pem"),
         "-H", "Apikey: the-apps-own-key", "--data-binary", BODY.decode(), URL],
        env,
    )
    assert code == 0, err
    _check(vendor, json.loads(out))


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
async def test_curl_uploads_50_mib_through_the_tunnel(
    forward_signet: Any, vendor: Vendor, signet_ca: Path, tmp_path: Path
) -> None:
    p = forward_signet(_routes(vendor), clients=CLIENTS)
    big = tmp_path / "big.bin"
    block = hashlib.sha256(b"signet").digest() * 32768  # 1 MiB, not all one byte
    with big.open("wb") as fh:
        for i in range(50):
            fh.write(bytes([i]) + block[1:])
    env = client_env(p.proxy_url, signet_ca / "ca.pem", token=TOKEN_A)
    code, out, err = await run(
        [str(CURL), "-sS", "--http1.1", "-x", env["HTTPS_PROXY"], "--cacert", str(signet_ca / "ca.pem"),
         "-H", "Apikey: the-apps-own-key", "--data-binary", f"@{big}", f"https://{HOST}/upload"],
        env,
        timeout=300,
    )
    assert code == 0, err
    _check(vendor, json.loads(out), body=big.read_bytes(), raw_path="/upload")


async def test_keep_alive_inside_one_tunnel(forward_signet: Any, vendor: Vendor, signet_ca: Path) -> None:
    """Many requests, one CONNECT: the tunnel is a keep-alive connection like any other."""
    p = forward_signet(_routes(vendor), clients=CLIENTS)
    code = """
import httpx, sys
with httpx.Client() as c:
    for i in range(20):
        r = c.get(sys.argv[1] + f"?i={i}", headers={"Apikey": "the-apps-own-key"})
        assert r.status_code == 200 and r.json()["signed"], r.text
print("ok")
"""
    env = client_env(p.proxy_url, signet_ca / "ca.pem", token=TOKEN_A)
    rc, out, err = await run(python(code) + [f"https://{HOST}/public/api/ver1/deals"], env)
    assert rc == 0 and out.strip() == "ok", err
    connects = await log_lines(p, lambda e: e.get("method") == "CONNECT")
    assert len(connects) == 1 and connects[0]["status"] == 200 and connects[0]["route"] == "vendor"
    assert len([e for e in await _route_lines(p, 20) if e["path"] == "/public/api/ver1/deals"]) == 20


async def test_py3cw_unchanged_against_the_3commas_mock(
    aiohttp_server: Any, vendor_tls: Any, forward_signet: Any, signet_ca: Path
) -> None:
    from proxy.mock.common import RECORDED
    from proxy.mock.threecommas import create_app
    from tests.forward.conftest import VENDOR_KEY, VENDOR_SECRET
    from tests.forward.vendor import server_context

    app = create_app(api_key=VENDOR_KEY, secret=VENDOR_SECRET)
    server = await aiohttp_server(app, host="127.0.0.1", ssl=server_context(vendor_tls[0]))
    route = {
        "name": "threecommas",
        "prefix": "/3commas",
        "upstream": f"https://127.0.0.1:{server.port}",
        "hosts": ["api.3commas.io:443"],
        "auth": {"scheme": "threecommas", "api_key": "${VENDOR_KEY}", "secret": "${VENDOR_SECRET}"},
    }
    p = forward_signet([route], clients=CLIENTS)
    code = """
from py3cw.request import Py3CW
import json
p3cw = Py3CW(key="apps-own-3commas-key", secret="apps-own-3commas-secret",
             request_options={"nr_of_retries": 0})
error, data = p3cw.request(entity="bots", action="", payload={"limit": 5, "scope": "enabled"})
print(json.dumps({"error": error, "data": data}))
error, data = p3cw.request(entity="bots", action="update", action_id="42", payload={"name": "grid ü"})
print(json.dumps({"error": error, "data": data}))
"""
    env = client_env(p.proxy_url, signet_ca / "ca.pem", token=TOKEN_A)
    rc, out, err = await run(python(code), env)
    assert rc == 0, err
    first, second = (json.loads(line) for line in out.strip().splitlines())
    assert first["error"] == {} and first["data"]["ok"] is True, first
    assert first["data"]["path"] == "/public/api/ver1/bots" and first["data"]["query"] == "limit=5&scope=enabled"
    assert second["error"] == {} and second["data"]["path"] == "/public/api/ver1/bots/42/update", second
    recorded = app[RECORDED]
    assert [r.accepted for r in recorded] == [True, True]
    for r in recorded:
        assert all(v != "apps-own-3commas-key" for _, v in r.headers)
    assert json.loads(recorded[1].body) == {"name": "grid ü"}


def _node_fetch_uses_proxy(node: str) -> str | None:
    """None when this node's fetch honours HTTPS_PROXY (NODE_USE_ENV_PROXY, Node 22.21+/24+), else why not."""
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    m = re.match(r"v(\d+)\.(\d+)", out)
    if not m:
        return f"cannot read node's version ({out!r})"
    major, minor = int(m.group(1)), int(m.group(2))
    if major >= 24 or (major == 22 and minor >= 21):
        return None
    return f"node {out}: fetch ignores HTTPS_PROXY before Node 22.21/24 (NODE_USE_ENV_PROXY)"


NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="node is not installed")
async def test_node_fetch(forward_signet: Any, vendor: Vendor, signet_ca: Path) -> None:
    assert NODE is not None
    why = _node_fetch_uses_proxy(NODE)
    if why:
        pytest.skip(why)
    p = forward_signet(_routes(vendor), clients=CLIENTS)
    code = """
const r = await fetch(process.argv[1], {method: "POST", body: process.argv[2], headers: {Apikey: "the-apps-own-key"}});
console.log(await r.text());
"""
    env = client_env(p.proxy_url, signet_ca / "ca.pem", token=TOKEN_A, NODE_USE_ENV_PROXY="1")
    rc, out, err = await run([NODE, "--input-type=module", "-e", code, URL, BODY.decode()], env)
    assert rc == 0, err
    _check(vendor, json.loads(out))

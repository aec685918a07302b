"""The egress proxy: a real tinyproxy (absolute form, CONNECT) and a loopback CONNECT server for failures."""

from __future__ import annotations

import asyncio
import base64
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme

from proxy.config import ConfigError, load_config_text
from proxy.mock.oauth import OAUTH_STATE, create_app
from proxy.upstream.egress import no_proxy_matches, parse_proxy_url, proxy_from_env
from tests.aws_fakes import AwsState, StsState, aws_service_app, sts_app
from tests.conftest import SUITE_SECRETS, config_text, secret
from tests.fakes import STATE, free_port, upstream_app
from tests.upstream import RawUpstream

TINYPROXY = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
PROXY_PASS = secret("egress-proxy-pass-7f3a9c")
OAUTH_SECRET = secret("egress-oauth-client-secret-5c1e")




class Tinyproxy:
    def __init__(self, workdir: Path, auth: bool) -> None:
        self.port = free_port()
        self.log = workdir / "tinyproxy.log"
        conf = workdir / "tinyproxy.conf"
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Timeout 30",
            "MaxClients 50",
            "Allow 127.0.0.1",
            "LogLevel Connect",
            f'LogFile "{self.log}"',
            "DisableViaHeader Yes",
        ]
        if auth:
            lines.append(f"BasicAuth alice {PROXY_PASS}")
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(
            [TINYPROXY, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                assert self.proc.poll() is None, "tinyproxy exited"
                time.sleep(0.05)
        raise AssertionError("tinyproxy did not start")

    def url(self, creds: bool = True) -> str:
        return f"http://alice:{PROXY_PASS}@127.0.0.1:{self.port}" if creds else f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[Tinyproxy]:
    if not Path(TINYPROXY).exists():
        pytest.skip("tinyproxy is not installed (Debian: apt-get install tinyproxy)")
    tp = Tinyproxy(tmp_path, auth=True)
    yield tp
    tp.stop()


@pytest.fixture
async def tls_upstream(aiohttp_server: Any, tmp_path: Path) -> Any:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    server = await aiohttp_server(upstream_app(), host="127.0.0.1", ssl=context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server.ca_file = str(ca_file)
    return server


async def get(url: str, **kw: Any) -> tuple[int, Any, bytes]:
    async with aiohttp.ClientSession() as s, s.get(url, **kw) as r:
        return r.status, r.headers.copy(), await r.read()


async def test_http_upstream_through_tinyproxy_in_absolute_form(
    make_signet: Any, upstream: Any, tmp_path: Path
) -> None:
    """A proxy without credentials: absolute form (nothing secret in the head)."""
    tp = Tinyproxy(tmp_path, auth=False)
    try:
        app = await make_signet(
            config_text(
                [{"name": "up", "prefix": "/up", "upstream": str(upstream.make_url("/base")),
                  "egress_proxy": tp.url(creds=False)}]
            )
        )
        for _ in range(2):
            status, _, _ = await get(app.proxy_url + "/up/a%2Fb?x=1&y=2")
            assert status == 200
        seen = upstream.app[STATE].received
        assert [r.raw_path for r in seen] == ["/base/a%2Fb?x=1&y=2"] * 2
        assert "GET http://127.0.0.1" in tp.log.read_text()
    finally:
        tp.stop()


@pytest.mark.parametrize("checks_auth", [True, False])
async def test_http_upstream_with_proxy_credentials_goes_through_connect(
    make_signet: Any, upstream: Any, tmp_path: Path, checks_auth: bool
) -> None:
    """Finding 11 (trust round 3): the proxy credential never reaches an http:// vendor.

    In absolute form, tinyproxy without ``BasicAuth`` forwarded ``Proxy-Authorization``
    to the vendor. Through a CONNECT tunnel it sits in the CONNECT head alone.
    """
    tp = Tinyproxy(tmp_path, auth=checks_auth)
    try:
        app = await make_signet(
            config_text(
                [{"name": "up", "prefix": "/up", "upstream": str(upstream.make_url("/base")),
                  "egress_proxy": tp.url()}]
            )
        )
        for _ in range(2):
            status, _, _ = await get(app.proxy_url + "/up/a%2Fb?x=1&y=2")
            assert status == 200
        seen = upstream.app[STATE].received
        assert [r.raw_path for r in seen] == ["/base/a%2Fb?x=1&y=2"] * 2
        for r in seen:  # the credential went to the proxy only
            assert r.header("Proxy-Authorization") is None
        log = tp.log.read_text()
        assert f"CONNECT 127.0.0.1:{upstream.port}" in log
        assert log.count("CONNECT 127.0.0.1") == 1, "the tunnel is a pooled keep-alive connection"
    finally:
        tp.stop()


async def test_wrong_proxy_credentials_are_502_for_http(
    make_signet: Any, upstream: Any, tinyproxy: Tinyproxy
) -> None:
    app = await make_signet(
        [{"name": "up", "prefix": "/up", "upstream": str(upstream.make_url("")),
          "egress_proxy": f"http://alice:wrong@127.0.0.1:{tinyproxy.port}"}]
    )
    status, headers, body = await get(app.proxy_url + "/up/x")
    # the CONNECT is refused (tinyproxy says 401): Signet's 502 naming the proxy's answer
    assert status == 502 and headers["X-Signet-Error"] == "upstream_unreachable"
    assert b"to CONNECT" in body and not upstream.app[STATE].received


async def test_https_upstream_through_tinyproxy_connect_tunnel(
    make_signet: Any, tls_upstream: Any, tinyproxy: Tinyproxy
) -> None:
    app = await make_signet(
        config_text(
            [{"name": "up", "prefix": "/up", "upstream": f"https://localhost:{tls_upstream.port}/v1",
              "tls": {"ca_file": tls_upstream.ca_file}, "egress_proxy": tinyproxy.url()}]
        )
    )
    for _ in range(2):
        status, _, _ = await get(app.proxy_url + "/up/items?q=1")
        assert status == 200
    seen = tls_upstream.app[STATE].received
    assert [r.raw_path for r in seen] == ["/v1/items?q=1"] * 2
    assert all(r.header("Proxy-Authorization") is None for r in seen)
    log = tinyproxy.log.read_text()
    assert f"CONNECT localhost:{tls_upstream.port}" in log
    assert log.count("CONNECT localhost") == 1, "the tunnel is a pooled keep-alive connection"


async def test_sts_calls_for_web_identity_use_the_routes_egress_proxy(
    make_signet: Any, aiohttp_server: Any, tinyproxy: Tinyproxy, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aws-sigv4 with web identity: STS is reached through the egress proxy, like OAuth2 token endpoints."""
    role = "arn:aws:iam::123456789012:role/signet-egress"
    token_file = tmp_path / "token"
    token_file.write_text(secret("web-identity-jwt-egress.ffff"))
    monkeypatch.setenv("AWS_ROLE_ARN", role)
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
    aws = AwsState("eu-west-1", "s3")
    sts = StsState(aws, role, expected_token=lambda: token_file.read_text())
    aws_server = await aiohttp_server(aws_service_app(aws), host="127.0.0.1")
    sts_server = await aiohttp_server(sts_app(sts), host="127.0.0.1")
    route = {
        "name": "s3", "prefix": "/s3", "upstream": str(aws_server.make_url("")).rstrip("/"),
        "egress_proxy": tinyproxy.url(),
        "auth": {"scheme": "aws-sigv4", "region": "eu-west-1", "service": "s3",
                 "credentials": "web-identity", "sts_endpoint": str(sts_server.make_url("/"))},
    }
    app = await make_signet(config_text([route]))
    status, _, body = await get(app.proxy_url + "/s3/bucket/key")
    SUITE_SECRETS.update(sts.issued)
    assert status == 200, body
    assert sts.calls == 1 and len(aws.accepted) == 1
    log = tinyproxy.log.read_text()
    assert f"POST http://127.0.0.1:{sts_server.port}/" in log, log[-2000:]
    assert f"CONNECT 127.0.0.1:{aws_server.port}" in log  # the route's own request: a tunnel


async def test_oauth2_token_requests_use_the_routes_egress_proxy(
    make_signet: Any, aiohttp_server: Any, tinyproxy: Tinyproxy
) -> None:
    server = await aiohttp_server(
        create_app(client_id="cid", client_secret=OAUTH_SECRET), host="127.0.0.1"
    )
    route = {
        "name": "o", "prefix": "/o", "upstream": str(server.make_url("/api")),
        "egress_proxy": tinyproxy.url(),
        "auth": {"scheme": "oauth2-client-credentials", "token_url": str(server.make_url("/oauth/token")),
                 "client_id": "cid", "client_secret": "${CS}"},
    }
    app = await make_signet(config_text([route]), env={"CS": OAUTH_SECRET})
    status, _, _ = await get(app.proxy_url + "/o/items")
    state = server.app[OAUTH_STATE]
    for token in state.issued:
        SUITE_SECRETS.add(token)
    assert status == 200 and state.token_requests == 1
    log = tinyproxy.log.read_text()
    assert "POST http://127.0.0.1" in log and "/oauth/token" in log, log[-2000:]
    assert f"CONNECT 127.0.0.1:{server.port}" in log  # the route's own request: a tunnel


# --------------------------------------------------------- failure cases


class ConnectServer:
    """A loopback proxy that answers CONNECT with a fixed status and records what it got."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.heads: list[bytes] = []

    def __call__(self, up: RawUpstream) -> Any:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.heads.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(b"HTTP/1.1 %d No\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % self.status)
            await writer.drain()

        return handler


@pytest.mark.parametrize(("status", "words"), [(403, "403 to CONNECT"), (407, "407 to CONNECT")])
async def test_proxy_refusing_connect_is_502(make_signet: Any, status: int, words: str) -> None:
    refuser = ConnectServer(status)
    async with RawUpstream(refuser) as proxy:
        app = await make_signet(
            [{"name": "up", "prefix": "/up", "upstream": "https://vendor.example:8443",
              "egress_proxy": f"http://bob:{PROXY_PASS}@127.0.0.1:{proxy.port}"}]
        )
        got, headers, body = await get(app.proxy_url + "/up/x")
    assert got == 502 and headers["X-Signet-Error"] == "upstream_unreachable"
    assert words.encode() in body and PROXY_PASS.encode() not in body
    head = refuser.heads[0]
    assert head.startswith(b"CONNECT vendor.example:8443 HTTP/1.1\r\n")
    token = base64.b64encode(f"bob:{PROXY_PASS}".encode())
    assert b"Proxy-Authorization: Basic " + token in head


async def test_connect_carries_the_default_port(make_signet: Any) -> None:
    """Finding 11: ``CONNECT vendor.example:443``, never a bare host (RFC 9110 §9.3.6)."""
    refuser = ConnectServer(403)
    async with RawUpstream(refuser) as proxy:
        app = await make_signet(
            [{"name": "up", "prefix": "/up", "upstream": "https://vendor.example/v1",
              "egress_proxy": f"http://127.0.0.1:{proxy.port}"},
             {"name": "plain", "prefix": "/plain", "upstream": "http://vendor.example/v1",
              "egress_proxy": f"http://bob:{PROXY_PASS}@127.0.0.1:{proxy.port}"}]
        )
        assert (await get(app.proxy_url + "/up/x"))[0] == 502
        assert (await get(app.proxy_url + "/plain/x"))[0] == 502
    assert refuser.heads[0].startswith(
        b"CONNECT vendor.example:443 HTTP/1.1\r\nHost: vendor.example:443\r\n"
    )
    assert refuser.heads[1].startswith(
        b"CONNECT vendor.example:80 HTTP/1.1\r\nHost: vendor.example:80\r\n"
    )


async def test_proxy_down_is_502(make_signet: Any) -> None:
    port = free_port()
    app = await make_signet(
        [{"name": "up", "prefix": "/up", "upstream": "https://vendor.example",
          "egress_proxy": f"http://127.0.0.1:{port}"}]
    )
    status, headers, body = await get(app.proxy_url + "/up/x")
    assert status == 502 and headers["X-Signet-Error"] == "upstream_unreachable"
    assert b"egress proxy" in body and b"connection refused" in body


# ------------------------------------------------------------- env mode


def test_env_mode_follows_curl() -> None:
    env = {
        "https_proxy": "http://s:3128",
        "HTTP_PROXY": "http://p:8080",
        "NO_PROXY": "internal.example, .corp, 10.0.0.0/8, ::1",
    }
    assert proxy_from_env(env, "https", "api.vendor.example") == parse_proxy_url("http://s:3128")
    assert proxy_from_env(env, "http", "api.vendor.example") == parse_proxy_url("http://p:8080")
    for host in ("internal.example", "a.internal.example", "x.corp", "10.1.2.3", "[::1]"):
        assert proxy_from_env(env, "https", host) is None, host
    assert proxy_from_env(env, "https", "notinternal.example") is not None
    assert proxy_from_env({"ALL_PROXY": "p:1"}, "https", "v") == parse_proxy_url("http://p:1")
    assert proxy_from_env({}, "https", "v") is None
    assert no_proxy_matches("*", "anything")


def test_config_env_mode_and_errors() -> None:
    routes = [
        {"name": "a", "prefix": "/a", "upstream": "https://api.vendor.example"},
        {"name": "b", "prefix": "/b", "upstream": "https://no.corp", "egress_proxy": "env"},
        {"name": "c", "prefix": "/c", "upstream": "https://x.example", "egress_proxy": "none"},
    ]
    text = config_text(routes, defaults={"egress_proxy": "env"})
    s = load_config_text(text, env={"HTTPS_PROXY": f"http://u:{PROXY_PASS}@gw:3128", "NO_PROXY": "corp"})
    a, b, c = s.routes
    assert a.egress is not None and (a.egress.host, a.egress.port) == ("gw", 3128)
    assert b.egress is None and c.egress is None
    assert PROXY_PASS not in repr(a.egress)
    assert base64.b64encode(f"u:{PROXY_PASS}".encode()).decode() in s.secret_values
    bad = config_text([{**routes[0], "egress_proxy": f"https://u:{PROXY_PASS}@gw:3128"}])
    with pytest.raises(ConfigError) as info:
        load_config_text(bad, env={})
    assert "egress_proxy" in str(info.value) and PROXY_PASS not in str(info.value)

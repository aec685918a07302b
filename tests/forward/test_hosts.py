"""Which route a CONNECT or absolute-form target names, and who may ask (pure functions)."""

from __future__ import annotations

import base64

import pytest

from proxy.config import Client
from proxy.errors import BadRequest, Forbidden, ProxyAuthRequired
from proxy.forward_proxy.hosts import HostTable, parse_absolute, parse_authority
from proxy.forward_proxy.mode import may_use, proxy_client
from proxy.secret import Secret


def test_connect_targets() -> None:
    assert parse_authority("API.Vendor.example:443") == ("api.vendor.example", 443)
    assert parse_authority("[::1]:8443") == ("::1", 8443)
    assert parse_authority("127.0.0.1:80") == ("127.0.0.1", 80)
    for bad in ("api.vendor.example", "api.vendor.example:", ":443", "a b:443", "x:99999", "x:0",
                "http://x:443", "[::zz]:443", "user@x:443", "x/y:443"):
        with pytest.raises(BadRequest):
            parse_authority(bad)


def test_absolute_targets_keep_the_path_and_query_byte_for_byte() -> None:
    t = parse_absolute("http://API.vendor.example/a%2Fb/../c?x=1&y=%20#")
    assert (t.scheme, t.host, t.port, t.path_query) == ("http", "api.vendor.example", None, "/a%2Fb/../c?x=1&y=%20#")
    assert parse_absolute("http://v.example:8080").path_query == "/"
    assert parse_absolute("http://v.example?q=1").path_query == "/?q=1"
    assert parse_absolute("http://[::1]:81/x").host == "::1"
    for bad in ("ftp://v.example/", "http://user:pw@v.example/", "http://:80/", "http://v.example:http/",
                "/relative", "v.example/x"):
        with pytest.raises(BadRequest):
            parse_absolute(bad)


def test_host_table_matches_host_and_port() -> None:
    table = HostTable([("vendor", "api.vendor.example", 443), ("legacy", "Legacy.example.", 8443)])
    assert table.route_for("API.VENDOR.EXAMPLE.", 443) == "vendor"
    assert table.route_for("legacy.example", 8443) == "legacy"
    assert table.route_for("legacy.example", None) == "legacy"  # absolute-form without a port
    assert table.route_for("other.example", 443) is None
    with pytest.raises(Forbidden) as caught:
        table.route_for("api.vendor.example", 8443)
    assert caught.value.route == "vendor" and "port 443 only" in caught.value.message


CLIENTS = (
    Client("app-a", Secret("token-a-0123456789"), None),
    Client("app-b", Secret("token-b-0123456789"), frozenset({"other"})),
)


def test_proxy_authorization_bearer_basic_or_x_signet_token() -> None:
    basic = base64.b64encode(b"anyone:token-a-0123456789").decode()
    assert proxy_client(CLIENTS, {"Proxy-Authorization": "Bearer token-a-0123456789"}) == "app-a"
    assert proxy_client(CLIENTS, {"Proxy-Authorization": f"Basic {basic}"}) == "app-a"
    assert proxy_client(CLIENTS, {"X-Signet-Token": "token-b-0123456789"}) == "app-b"
    assert proxy_client(None, {}) is None
    with pytest.raises(ProxyAuthRequired):
        proxy_client(CLIENTS, {})
    with pytest.raises(ProxyAuthRequired):
        proxy_client(CLIENTS, {"Proxy-Authorization": "Basic !!!"})
    with pytest.raises(Forbidden) as caught:
        proxy_client(CLIENTS, {"Proxy-Authorization": "Bearer token-c-0123456789"})
    assert "token-c" not in caught.value.message


def test_route_lists() -> None:
    assert may_use(CLIENTS, "app-a", "vendor")
    assert not may_use(CLIENTS, "app-b", "vendor")
    assert may_use(CLIENTS, "app-b", "other")
    assert may_use(None, None, "vendor")
    assert not may_use(CLIENTS, "nobody", "vendor")

"""What forward-proxy mode refuses, and how: status, code, a clean close, a log line, no traceback.

Signet runs as a real process (`signet serve`) in front of an HTTPS vendor on
loopback; the clients here are byte-level (tests/forward/rawclient.py).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from typing import Any

import pytest

from tests.forward import rawclient
from tests.forward.conftest import TOKEN_A, TOKEN_B, Vendor, log_lines, threecommas_route

HOST = "api.vendor.example"


def _port(p: Any) -> int:
    return int(p.proxy_url.rpartition(":")[2])


CLIENTS = [
    {"name": "app-a", "token": "${TOKEN_A}"},
    {"name": "app-b", "token": "${TOKEN_B}", "routes": ["other"]},
]


def _routes(vendor: Vendor) -> list[dict[str, Any]]:
    return [
        threecommas_route(vendor),
        {"name": "other", "prefix": "/other", "upstream": vendor.upstream, "hosts": ["other.vendor.example:443"]},
    ]


async def test_connect_needs_a_token_when_clients_are_set(forward_signet: Any, vendor: Vendor) -> None:
    p = forward_signet(_routes(vendor), clients=CLIENTS)
    status, headers, body, _, writer = await rawclient.connect(_port(p), f"{HOST}:443")
    writer.close()
    assert status == 407
    assert headers["proxy-authenticate"] == 'Bearer realm="signet"'
    assert json.loads(body)["error"]["code"] == "proxy_auth_required"
    assert headers["x-signet-error"] == "proxy_auth_required"


async def test_connect_with_a_token_whose_routes_exclude_the_host(forward_signet: Any, vendor: Vendor) -> None:
    p = forward_signet(_routes(vendor), clients=CLIENTS)
    status, _, body, _, writer = await rawclient.connect(
        _port(p), f"{HOST}:443", {"Proxy-Authorization": f"Bearer {TOKEN_B}"}
    )
    writer.close()
    assert status == 403
    error = json.loads(body)["error"]
    assert error["code"] == "forbidden" and error["route"] == "vendor"
    assert "app-b" in error["message"]
    line = (await log_lines(p, lambda e: e.get("method") == "CONNECT"))[0]
    assert line["route"] == "vendor" and line["status"] == 403


async def test_unknown_token_is_403(forward_signet: Any, vendor: Vendor) -> None:
    p = forward_signet(_routes(vendor), clients=CLIENTS)
    status, _, body, _, writer = await rawclient.connect(
        _port(p), f"{HOST}:443", {"Proxy-Authorization": "Bearer not-a-known-token-000000"}
    )
    writer.close()
    assert status == 403 and "not-a-known-token" not in body.decode()


async def test_a_host_of_no_route_is_403(forward_signet: Any, vendor: Vendor) -> None:
    p = forward_signet(_routes(vendor))
    status, _, body, _, writer = await rawclient.connect(_port(p), "elsewhere.example:443")
    writer.close()
    assert status == 403
    error = json.loads(body)["error"]
    assert error["code"] == "forbidden" and "elsewhere.example" in error["message"]
    assert error["route"] is None


async def test_another_port_of_a_route_host_is_403(forward_signet: Any, vendor: Vendor) -> None:
    p = forward_signet(_routes(vendor), other_hosts="tunnel")  # even with tunnels for other hosts
    status, _, body, _, writer = await rawclient.connect(_port(p), f"{HOST}:8443")
    writer.close()
    assert status == 403
    error = json.loads(body)["error"]
    assert error["route"] == "vendor" and "port 443 only" in error["message"]


async def test_a_malformed_connect_target_is_400(forward_signet: Any, vendor: Vendor) -> None:
    p = forward_signet(_routes(vendor))
    status, _, body, _, writer = await rawclient.connect(_port(p), HOST)
    writer.close()
    assert status == 400 and json.loads(body)["error"]["code"] == "bad_request"


async def test_sni_naming_another_host_ends_the_tunnel(
    forward_signet: Any, vendor: Vendor, signet_ca: Path
) -> None:
    p = forward_signet(_routes(vendor))
    status, _, _, reader, writer = await rawclient.connect(_port(p), f"{HOST}:443")
    assert status == 200
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await asyncio.wait_for(
            writer.start_tls(rawclient.client_context(signet_ca / "ca.pem"), server_hostname="other.vendor.example"),
            15,
        )
    writer.close()
    failed = p.wait_event("tunnel_failed")
    assert "SNI" in failed["message"] and failed["route"] == "vendor"
    assert "Traceback" not in p.text()
    # Signet goes on serving
    reader, writer = await rawclient.tunnel(_port(p), HOST, signet_ca / "ca.pem")
    status, _, answer = await rawclient.get(reader, writer, HOST, "/ok")
    writer.close()
    assert status == 200 and answer["signed"]


async def test_plain_http_inside_the_tunnel_is_closed_cleanly(
    forward_signet: Any, vendor: Vendor
) -> None:
    p = forward_signet(_routes(vendor))
    status, _, _, reader, writer = await rawclient.connect(_port(p), f"{HOST}:443")
    assert status == 200
    writer.write(f"GET /x HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    rest = await asyncio.wait_for(reader.read(), 15)  # closed: no answer in clear text
    writer.close()
    assert b"HTTP/1.1 200" not in rest
    failed = p.wait_event("tunnel_failed")
    assert "plain HTTP" in failed["message"]
    assert "Traceback" not in p.text()
    assert vendor.state.seen == []


async def test_without_forward_proxy_connect_and_absolute_form_stay_400(
    signet_process: Any, vendor: Vendor
) -> None:
    from tests.conftest import config_text

    p = signet_process(config_text([{"name": "plain", "prefix": "/plain", "upstream": vendor.upstream}]))
    status, _, body, _, writer = await rawclient.connect(_port(p), f"{HOST}:443")
    writer.close()
    assert status == 400 and json.loads(body)["error"]["code"] == "bad_request"
    assert "forward_proxy" in json.loads(body)["error"]["message"]
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(p))
    writer.write(f"GET http://{HOST}/x HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    status, _, data = await rawclient.read_response(reader)
    writer.close()
    assert status == 400 and json.loads(data)["error"]["code"] == "bad_request"


async def test_absolute_form_for_a_route_host_is_served_and_signed(
    forward_signet: Any, vendor: Vendor
) -> None:
    p = forward_signet(_routes(vendor), clients=CLIENTS)
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(p))
    writer.write(
        f"GET http://{HOST}/public/api/ver1/bots?limit=5&b=%2F HTTP/1.1\r\nHost: {HOST}\r\n"
        f"Proxy-Authorization: Bearer {TOKEN_A}\r\nApikey: the-apps-own\r\n\r\n".encode()
    )
    status, _, data = await rawclient.read_response(reader)
    # a host of no route in absolute-form: 403 on the same connection? no: refusals close it
    writer.close()
    assert status == 200, data
    seen = json.loads(data)
    assert seen["signed"] and seen["raw_path"] == "/public/api/ver1/bots?limit=5&b=%2F"
    assert ("Apikey", "the-apps-own") not in [tuple(h) for h in seen["headers"]]
    line = (await log_lines(p, lambda e: e.get("route") == "vendor"))[0]
    assert line["client"] == "app-a" and line["status"] == 200 and line["path"] == "/public/api/ver1/bots"
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(p))
    writer.write(
        f"GET http://nowhere.example/x HTTP/1.1\r\nHost: nowhere.example\r\n"
        f"Proxy-Authorization: Bearer {TOKEN_A}\r\n\r\n".encode()
    )
    status, _, data = await rawclient.read_response(reader)
    writer.close()
    assert status == 403 and json.loads(data)["error"]["code"] == "forbidden"


async def test_other_hosts_tunnel_splices_bytes_untouched(forward_signet: Any, vendor: Vendor) -> None:
    received: list[bytes] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readexactly(11)
        received.append(data)
        writer.write(data[::-1])
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        p = forward_signet(_routes(vendor), other_hosts="tunnel")
        status, _, _, reader, writer = await rawclient.connect(_port(p), f"127.0.0.1:{port}")
        assert status == 200
        writer.write(b"hello\x00\xffworld"[:11])
        back = await asyncio.wait_for(reader.read(), 15)
        writer.close()
        assert received == [b"hello\x00\xffworld"[:11]]
        assert back == b"hello\x00\xffworld"[:11][::-1]
        closed = p.wait_event("tunnel_closed")
        assert closed["bytes_in"] == 11 and closed["bytes_out"] == 11
    finally:
        server.close()
        await server.wait_closed()


async def test_targets_that_are_not_utf8_get_400_and_a_log_line(
    forward_signet: Any, signet_process: Any, vendor: Vendor
) -> None:
    """A lone byte 0xC3 in a CONNECT or absolute-form target: 400 (it was a 500, the log line
    could not be encoded), with or without forward-proxy mode."""
    from tests.conftest import config_text

    plain = signet_process(config_text([{"name": "plain", "prefix": "/plain", "upstream": vendor.upstream}]))
    for p in (forward_signet(_routes(vendor)), plain):
        for head in (b"CONNECT /up/\xc3 HTTP/1.1\r\nHost: x\r\n\r\n",
                     b"CONNECT api.vendor\xc3.example:443 HTTP/1.1\r\nHost: x\r\n\r\n",
                     b"GET http://api.vendor.example/\xc3 HTTP/1.1\r\nHost: x\r\n\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", _port(p))
            writer.write(head)
            status, _, data = await rawclient.read_response(reader)
            writer.close()
            assert status in (400, 403), (head, data)
            assert json.loads(data)["error"]["code"] in ("bad_request", "forbidden")
        assert "Traceback" not in p.text() and "request_failed" not in p.text()


async def test_connect_over_listen_tls_is_refused_before_any_tunnel(
    forward_signet: Any, vendor: Vendor, vendor_tls: tuple[Any, Path], tmp_path: Path
) -> None:
    """TLS cannot be layered over Signet's own TLS connection: 400 naming why, no 200 first."""
    ca, ca_file = vendor_tls
    leaf = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    p = forward_signet(_routes(vendor), listen_tls={"cert_file": str(cert), "key_file": str(key)})
    context = ssl.create_default_context(cafile=str(ca_file))
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(p), ssl=context)
    writer.write(f"CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n".encode())
    status, _, data = await rawclient.read_response(reader)
    writer.close()
    assert status == 400
    error = json.loads(data)["error"]
    assert error["route"] == "vendor" and "listen_tls" in error["message"]

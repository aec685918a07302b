"""WebSocket through Signet, end to end, with the `websockets` library on both sides.

The upstream is a real WebSocket echo server on loopback whose handshake
requires the credential the route injects (`Authorization: Bearer <token>`):
without it the handshake is refused with 401, so a tunnel that works proves
the handshake was signed. The client is `websockets`' own client, through a
real `signet serve` process (and in-process for the leak count).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import trustme
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Request, Response, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import SignetProcess, config_text, secret
from tests.tls.certs import server_pair

VENDOR_TOKEN = secret("ws-vendor-token-Zq81x")
CLIENT_TOKEN = secret("ws-client-token-0123456789abcdef")
OTHER_TOKEN = secret("ws-other-token-0123456789abcdef")
MB = 1024 * 1024


class EchoUpstream:
    """A WebSocket echo server that refuses (401) a handshake without the vendor credential."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.handshakes: list[Headers] = []  # every HTTP request that reached it
        self.paths: list[str] = []
        self.closes: list[tuple[int | None, str | None]] = []  # close code/reason each connection got
        self.port = 0
        self._server: Any = None

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes.append(request.headers)
        self.paths.append(request.path)
        if request.headers.get("Authorization") != f"Bearer {VENDOR_TOKEN}":
            return connection.respond(401, "no credential\n")
        return None

    async def _echo(self, ws: ServerConnection) -> None:
        try:
            async for message in ws:
                if message == "close-me":
                    await ws.close(4001, "server says bye")
                    break
                await ws.send(message)
        except ConnectionClosed:
            pass
        finally:
            self.closes.append((ws.close_code, ws.close_reason))

    async def __aenter__(self) -> EchoUpstream:
        self._server = await serve(
            self._echo,
            "127.0.0.1",
            0,
            process_request=self._check,
            max_size=None,
            ping_interval=None,
            compression=None,
            ssl=self.ssl_context,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture(autouse=True)
def quiet_websockets_library() -> Iterator[None]:
    """The websockets library logs every handshake header at DEBUG (the suite logs at DEBUG):
    its client's tokens would land in the test log, which the secret audit rightly refuses."""
    logger = logging.getLogger("websockets")
    level = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(level)


@pytest.fixture
async def echo() -> AsyncIterator[EchoUpstream]:
    async with EchoUpstream() as up:
        yield up


def ws_route(up: EchoUpstream, **extra: Any) -> dict[str, Any]:
    return {
        "name": "stream",
        "prefix": "/stream",
        "upstream": f"http://127.0.0.1:{up.port}/v1",
        "auth": {"scheme": "bearer", "token": "${WS_VENDOR_TOKEN}"},
        "websocket": True,
        **extra,
    }


ENV = {"WS_VENDOR_TOKEN": VENDOR_TOKEN}


def ws_url(signet: Any, path: str = "/stream/echo") -> str:
    return signet.proxy_url.replace("http://", "ws://") + path


def client(url: str, **kw: Any) -> Any:
    return connect(url, max_size=None, ping_interval=None, compression=None, open_timeout=10, **kw)


def requests_logged(proc: SignetProcess) -> list[dict[str, Any]]:
    return [e for e in proc.events() if e.get("event") == "request"]


async def wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    async with asyncio.timeout(timeout):
        while not (result := condition()):
            await asyncio.sleep(0.02)
    return result


# ------------------------------------------------------------------- tunnel


async def test_messages_pings_and_close_codes_pass_through_a_signed_handshake(
    echo: EchoUpstream, signet_process: Callable[..., SignetProcess]
) -> None:
    proc = signet_process(config_text([ws_route(echo)]), env=ENV)
    async with client(ws_url(proc, "/stream/echo?room=1&x=%2F")) as ws:
        await ws.send("héllo ✓")
        assert await asyncio.wait_for(ws.recv(), 10) == "héllo ✓"
        every_byte = bytes(range(256)) * 4
        await ws.send(every_byte)
        assert await asyncio.wait_for(ws.recv(), 10) == every_byte
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 10)
        big = os.urandom(10 * MB)
        await ws.send(big)
        assert await asyncio.wait_for(ws.recv(), 30) == big
        await ws.close(4000, "client says bye")
    # the upstream saw the handshake with the injected credential, path and query byte for byte
    (headers,) = echo.handshakes
    assert headers["Authorization"] == f"Bearer {VENDOR_TOKEN}"
    assert echo.paths == ["/v1/echo?room=1&x=%2F"]
    assert headers["Upgrade"].lower() == "websocket" and "upgrade" in headers["Connection"].lower()
    assert headers["Sec-WebSocket-Version"] == "13" and headers["Sec-WebSocket-Key"]
    await wait_for(lambda: echo.closes)
    assert echo.closes == [(4000, "client says bye")]  # the client's close frame, relayed
    line = (await wait_for(lambda: requests_logged(proc)))[0]
    assert (line["status"], line["upstream_status"], line["route"]) == (101, 101, "stream")
    assert line["bytes_in"] > 10 * MB and line["bytes_out"] > 10 * MB
    assert VENDOR_TOKEN not in proc.text()


async def test_the_upstreams_close_code_reaches_the_client(
    echo: EchoUpstream, signet_process: Callable[..., SignetProcess]
) -> None:
    proc = signet_process(config_text([ws_route(echo)]), env=ENV)
    async with client(ws_url(proc)) as ws:
        await ws.send("close-me")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert (ws.close_code, ws.close_reason) == (4001, "server says bye")


async def test_the_101_head_is_relayed_as_the_upstream_sent_it(
    echo: EchoUpstream, signet_process: Callable[..., SignetProcess]
) -> None:
    proc = signet_process(config_text([ws_route(echo)]), env=ENV)
    async with client(ws_url(proc)) as ws:
        response = ws.response
        assert response is not None and response.status_code == 101
        # websockets' own server header and accept key: the upstream's answer, not one Signet wrote
        assert response.headers["Server"].startswith("Python/") and "websockets" in response.headers["Server"]
        assert response.headers["Sec-WebSocket-Accept"]
        assert response.headers["Upgrade"].lower() == "websocket"
        await ws.send("ok")
        assert await ws.recv() == "ok"


# ------------------------------------------------------------- inbound auth


async def test_clients_tokens_guard_the_handshake_and_never_reach_the_upstream(
    echo: EchoUpstream, signet_process: Callable[..., SignetProcess]
) -> None:
    clients = [
        {"name": "app", "token": "${WS_CLIENT_TOKEN}"},
        {"name": "other", "token": "${WS_OTHER_TOKEN}", "routes": ["elsewhere"]},
    ]
    routes = [ws_route(echo), {"name": "elsewhere", "prefix": "/else", "upstream": "http://127.0.0.1:9"}]
    env = {**ENV, "WS_CLIENT_TOKEN": CLIENT_TOKEN, "WS_OTHER_TOKEN": OTHER_TOKEN}
    proc = signet_process(config_text(routes, clients=clients), env=env)
    url = ws_url(proc)
    with pytest.raises(InvalidStatus) as none:
        async with client(url):
            pass
    assert none.value.response.status_code == 407
    assert none.value.response.headers["X-Signet-Error"] == "proxy_auth_required"
    with pytest.raises(InvalidStatus) as wrong:
        async with client(url, additional_headers={"Proxy-Authorization": "Bearer not-a-known-token-00000"}):
            pass
    assert wrong.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as not_yours:
        async with client(url, additional_headers={"Proxy-Authorization": f"Bearer {OTHER_TOKEN}"}):
            pass
    assert not_yours.value.response.status_code == 403
    assert echo.handshakes == [], "a refused handshake must not reach the upstream"
    for header in ({"Proxy-Authorization": f"Bearer {CLIENT_TOKEN}"}, {"X-Signet-Token": CLIENT_TOKEN}):
        async with client(url, additional_headers=header) as ws:
            await ws.send("authorised")
            assert await ws.recv() == "authorised"
    assert len(echo.handshakes) == 2
    for headers in echo.handshakes:
        assert "Proxy-Authorization" not in headers and "X-Signet-Token" not in headers
        assert headers["Authorization"] == f"Bearer {VENDOR_TOKEN}"
    lines = await wait_for(lambda: len(requests_logged(proc)) >= 5 and requests_logged(proc))
    assert [line["client"] for line in lines if line["status"] == 101] == ["app", "app"]


async def test_a_refused_handshake_is_relayed_as_a_normal_answer(
    echo: EchoUpstream, signet_process: Callable[..., SignetProcess]
) -> None:
    """A route whose credential the upstream refuses: the client gets the upstream's 401."""
    route = ws_route(echo, auth={"scheme": "none"})
    proc = signet_process(config_text([route]), env=ENV)
    with pytest.raises(InvalidStatus) as refused:
        async with client(ws_url(proc)):
            pass
    assert refused.value.response.status_code == 401
    assert refused.value.response.body == b"no credential\n"
    assert "X-Signet-Error" not in refused.value.response.headers
    assert len(echo.handshakes) == 1


# ------------------------------------------------------------ the refusals


def raw_exchange(address: str, head: bytes) -> bytes:
    """Send ``head`` on a fresh socket and read until the server closes (or 10 s)."""
    host, _, port = address.removeprefix("http://").rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


HANDSHAKE = (
    "GET /stream/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: {upgrade}\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


async def test_a_route_without_the_option_refuses_the_upgrade_naming_it(
    echo: EchoUpstream, signet_process: Callable[..., SignetProcess]
) -> None:
    proc = signet_process(config_text([ws_route(echo, websocket=False)]), env=ENV)
    with pytest.raises(InvalidStatus) as refused:
        async with client(ws_url(proc)):
            pass
    response = refused.value.response
    assert response.status_code == 400
    assert response.headers["X-Signet-Error"] == "bad_request"
    error = json.loads(response.body)["error"]
    assert error["code"] == "bad_request" and "websocket: true" in error["message"]
    assert error["route"] == "stream"
    assert echo.handshakes == [], "nothing may be forwarded"


@pytest.mark.parametrize("upgrade", ["h2c", "TLS/1.2", "websocket, h2c"])
async def test_an_upgrade_other_than_websocket_is_refused_even_on_a_websocket_route(
    echo: EchoUpstream, signet_process: Callable[..., SignetProcess], upgrade: str
) -> None:
    proc = signet_process(config_text([ws_route(echo)]), env=ENV)
    answer = await asyncio.to_thread(
        raw_exchange, proc.proxy_url, HANDSHAKE.format(upgrade=upgrade).encode()
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"X-Signet-Error: bad_request" in head
    assert "websocket" in json.loads(body)["error"]["message"]
    assert echo.handshakes == []


# ----------------------------------------------------------- idle and leaks


async def test_an_idle_tunnel_is_closed_after_the_routes_read_timeout(
    echo: EchoUpstream, signet_process: Callable[..., SignetProcess]
) -> None:
    proc = signet_process(config_text([ws_route(echo, timeout={"read": 1.0})]), env=ENV)
    loop = asyncio.get_running_loop()
    async with client(ws_url(proc)) as ws:
        # traffic within the timeout keeps it open (gaps well under it, even on a loaded machine)
        started = loop.time()
        for i in range(4):
            if i:
                await asyncio.sleep(0.3)
            await ws.send("still here")
            assert await ws.recv() == "still here"
        last_byte = loop.time()
        assert last_byte - started > 0.9  # about the timeout in all, yet the tunnel stayed
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        waited = loop.time() - last_byte
    assert 0.9 <= waited < 6, waited
    line = (await wait_for(lambda: requests_logged(proc)))[0]
    assert line["status"] == 101


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_fifty_tunnels_leave_no_task_or_fd_behind(echo: EchoUpstream, make_signet: Any) -> None:
    app = await make_signet(config_text([ws_route(echo)]), env=ENV)
    url = ws_url(app)

    async def one(i: int) -> None:
        ws: ClientConnection
        async with client(url) as ws:
            await ws.send(f"n{i}")
            assert await ws.recv() == f"n{i}"

    await one(-1)  # warm up: pools, loggers, lazy imports
    await wait_for(lambda: len(echo.closes) == 1)
    gc.collect()
    tasks_before = len(asyncio.all_tasks())
    fds_before = open_fds()
    for batch in range(5):
        await asyncio.gather(*(one(batch * 10 + i) for i in range(10)))
    # the upstream's half of every tunnel closed (the close handshake went through Signet)
    await wait_for(lambda: len(echo.closes) == 51)
    # and Signet let go of both sockets of each tunnel, and of the tasks that served them
    await wait_for(lambda: len(asyncio.all_tasks()) <= tasks_before and open_fds() <= fds_before)


async def test_a_frame_sent_right_behind_the_handshake_is_not_lost(
    echo: EchoUpstream, signet_process: Callable[..., SignetProcess]
) -> None:
    """Bytes in the same segment as the handshake (read past the head) open the tunnel."""
    proc = signet_process(config_text([ws_route(echo)]), env=ENV)
    mask = b"\x01\x02\x03\x04"
    frame = b"\x81\x82" + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(b"hi"))  # masked "hi"
    host, _, port = proc.proxy_url.removeprefix("http://").rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(HANDSHAKE.format(upgrade="websocket").encode() + frame)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101 ")
        assert await asyncio.wait_for(reader.readexactly(4), 10) == b"\x81\x02hi"  # the echo
    finally:
        writer.close()


@pytest.mark.parametrize(
    "request_line",
    ["POST /stream/echo HTTP/1.1", "GET /stream/echo HTTP/1.0"],
    ids=["post", "http-1.0"],
)
async def test_a_handshake_that_is_not_a_websocket_get_is_refused(
    echo: EchoUpstream, signet_process: Callable[..., SignetProcess], request_line: str
) -> None:
    proc = signet_process(config_text([ws_route(echo)]), env=ENV)
    head = HANDSHAKE.format(upgrade="websocket").replace("GET /stream/echo HTTP/1.1", request_line)
    answer = await asyncio.to_thread(raw_exchange, proc.proxy_url, head.encode())
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"websocket: true" in answer
    assert echo.handshakes == []


async def test_sigterm_gives_open_tunnels_the_grace_then_closes_them(
    echo: EchoUpstream, signet_process: Callable[..., SignetProcess]
) -> None:
    proc = signet_process(config_text([ws_route(echo)], shutdown_grace=0.5), env=ENV)
    loop = asyncio.get_running_loop()
    async with client(ws_url(proc)) as ws:
        await ws.send("before")
        assert await ws.recv() == "before"
        proc.signal(signal.SIGTERM)
        started = loop.time()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert 0.3 <= loop.time() - started < 5
    assert await asyncio.to_thread(proc.proc.wait, 10) == 0
    line = requests_logged(proc)[0]
    assert (line["status"], line["error"]) == (101, "shutdown")


async def test_a_tls_upstream_carries_the_tunnel(
    tmp_path: Any, signet_process: Callable[..., SignetProcess]
) -> None:
    """wss to the vendor: TLS from Signet to the upstream, whose transport the tunnel splices."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with EchoUpstream(server_ctx) as up:
        route = ws_route(up, upstream=f"https://127.0.0.1:{up.port}/v1", tls={"ca_file": str(ca_file)})
        proc = signet_process(config_text([route]), env=ENV)
        async with client(ws_url(proc)) as ws:
            big = os.urandom(3 * MB)
            await ws.send(big)
            assert await asyncio.wait_for(ws.recv(), 30) == big
            await ws.close(4002, "tls bye")
        await wait_for(lambda: up.closes)
        assert up.closes == [(4002, "tls bye")]
        assert up.handshakes[0]["Authorization"] == f"Bearer {VENDOR_TOKEN}"


async def test_wss_through_signets_tls_listener(
    echo: EchoUpstream, tmp_path: Any, signet_process: Callable[..., SignetProcess]
) -> None:
    """listen_tls: the client's side of the tunnel is TLS too (no half-close on either side)."""
    ca = trustme.CA()
    pair = server_pair(ca, tmp_path)
    config = config_text(
        [ws_route(echo)], listen_tls={"cert_file": str(pair.cert), "key_file": str(pair.key)}
    )
    proc = signet_process(config, env=ENV)
    assert proc.proxy_url.startswith("https://")
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    url = proc.proxy_url.replace("https://", "wss://") + "/stream/echo"
    async with client(url, ssl=client_ctx) as ws:
        big = os.urandom(2 * MB)
        await ws.send(big)
        assert await asyncio.wait_for(ws.recv(), 30) == big
        await ws.close(4003, "tls client bye")
    await wait_for(lambda: echo.closes)
    assert echo.closes == [(4003, "tls client bye")]
    line = (await wait_for(lambda: requests_logged(proc)))[0]
    assert line["status"] == 101 and line["bytes_in"] > 2 * MB

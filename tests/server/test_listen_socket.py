"""Signet(listen_sock=..., serve_admin=False): a worker serves its supervisor's socket, no admin."""

from __future__ import annotations

import socket
from typing import Any

import aiohttp

from tests.conftest import config_text


async def test_serves_a_given_socket_without_an_admin_listener(make_signet: Any, upstream: Any) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    cfg = config_text([{"name": "up", "prefix": "/up", "upstream": str(upstream.make_url("/b"))}])
    app = await make_signet(cfg, listen_sock=sock, serve_admin=False)
    assert app.proxy_address[1] == port  # the given socket, not a new bind of listen: 127.0.0.1:0
    assert app.admin_address == ("", 0) and app.listener is not None
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/up/x") as r:
        assert r.status == 200 and r.headers["X-Upstream"] == "fake"

"""A secret refresh keeps an OAuth2 token whose client secret did not change, and drops one whose did."""

from __future__ import annotations

import asyncio
import secrets as pysecrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from proxy.mock.oauth import OAUTH_STATE, create_app
from tests.conftest import secret


def fresh() -> str:
    return secret("oa-" + pysecrets.token_hex(16))


async def test_refresh_drops_only_tokens_of_changed_client_secrets(
    tmp_path: Path, aiohttp_server: Any, upstream: Any, make_signet: Callable[..., Any]
) -> None:
    client_secret, new_client_secret = fresh(), fresh()
    vendor = create_app(client_id="signet-client", client_secret=client_secret)
    server = await aiohttp_server(vendor, host="127.0.0.1")
    state = vendor[OAUTH_STATE]
    cs_file, other_file = tmp_path / "client-secret", tmp_path / "other"
    cs_file.write_text(client_secret)
    other_file.write_text(fresh())
    base = str(server.make_url("")).rstrip("/")
    text = f"""
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
secret_refresh: 0.2
routes:
  - name: oauth
    prefix: /o
    upstream: {base}/api
    auth:
      scheme: oauth2-client-credentials
      token_url: {base}/oauth/token
      client_id: signet-client
      client_secret: "${{file:{cs_file}}}"
  - name: other
    prefix: /b
    upstream: {str(upstream.make_url("")).rstrip("/")}
    auth: {{scheme: bearer, token: "${{file:{other_file}}}"}}
"""
    app = await make_signet(text)

    async def call() -> int:
        async with aiohttp.ClientSession() as s, s.get(app.proxy_url + "/o/things") as r:
            await r.read()
            return r.status

    async def swapped(runtime: Any) -> None:
        async with asyncio.timeout(10):
            while app.runtime is runtime:
                await asyncio.sleep(0.05)

    assert await call() == 200
    assert state.token_requests == 1

    # another route's secret changed: a new runtime, but the OAuth2 token is kept
    runtime = app.runtime
    other_file.write_text(fresh())
    await swapped(runtime)
    assert await call() == 200
    assert state.token_requests == 1

    # the client secret changed (at the vendor too): the old token is not used again
    runtime = app.runtime
    state.client_secret = new_client_secret
    cs_file.write_text(new_client_secret)
    await swapped(runtime)
    assert await call() == 200
    assert state.token_requests == 2
    assert len(state.issued) == 2

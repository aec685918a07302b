"""The pipeline against a real fake upstream, Signet in-process on loopback."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import unquote_to_bytes

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from proxy.headers import ALWAYS_STRIPPED
from tests.conftest import secret
from tests.fakes import STATE

TOKEN = secret("fwd-bearer-token-9QmZ")


def route(upstream: Any, **extra: Any) -> dict[str, Any]:
    return {"name": "up", "prefix": "/up", "upstream": str(upstream.make_url("/base")), **extra}


async def get(url: str, **kw: Any) -> tuple[int, Any, bytes]:
    async with (
        aiohttp.ClientSession() as s,
        s.request(kw.pop("method", "GET"), URL(url, encoded=True), **kw) as r,
    ):
        return r.status, r.headers.copy(), await r.read()


# ------------------------------------------------------------- byte exactness


_PCHARS = "abcXYZ019-._~!$&'()*+,;=:@%2F%2f%20%41%zz"
segment = st.lists(
    st.sampled_from(
        list("abcXYZ09-_~!$&'()*+,;=:@") + ["%2F", "%2f", "%20", "%41", "%25", "%7E", "%00"]
    ),
    max_size=8,
).map("".join)
query_part = st.lists(
    st.sampled_from(
        list("abz09-_.~!$'()*+,;:@/?") + ["=", "&", "%26", "%3D", "%2F", "%zz", "+", "%20"]
    ),
    max_size=16,
).map("".join)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(segments=st.lists(segment, max_size=4), query=query_part)
async def test_path_and_query_forwarded_byte_for_byte(
    make_signet: Any, upstream: Any, segments: list[str], query: str
) -> None:
    app = getattr(test_path_and_query_forwarded_byte_for_byte, "_app", None)
    if app is None or app.draining:
        app = await make_signet([route(upstream)])
        test_path_and_query_forwarded_byte_for_byte._app = app  # type: ignore[attr-defined]
    rest = "".join("/" + s for s in segments)
    if any(s in (".", "..") for s in segments):
        return
    target = "/up" + rest + ("?" + query if query else "")
    status, headers, body = await get(app.proxy_url + target)
    if _decodes_to_nul(rest):  # a NUL byte once decoded, at any depth, is refused (contract: 400)
        assert status == 400 and headers["X-Signet-Error"] == "bad_request", body
        return
    assert status == 200, body
    assert json.loads(body)["raw_path"] == "/base" + rest + ("?" + query if query else "")


def _decodes_to_nul(text: str) -> bool:
    data = text.encode()
    for _ in range(10):
        if b"\x00" in data:
            return True
        data = unquote_to_bytes(data)
    return False


async def test_encoded_slash_and_query_order_kept(make_signet: Any, upstream: Any) -> None:
    app = await make_signet([route(upstream)])
    status, _, body = await get(app.proxy_url + "/up/style/ABC%2F123?z=1&a=2&z=0&e=%e2%82%ac&flag")
    assert status == 200
    assert json.loads(body)["raw_path"] == "/base/style/ABC%2F123?z=1&a=2&z=0&e=%e2%82%ac&flag"


async def test_prefix_alone_maps_to_upstream_base(make_signet: Any, upstream: Any) -> None:
    app = await make_signet(
        [route(upstream), {"name": "root", "prefix": "/r", "upstream": str(upstream.make_url(""))}]
    )
    assert json.loads((await get(app.proxy_url + "/up"))[2])["raw_path"] == "/base"
    assert json.loads((await get(app.proxy_url + "/up/"))[2])["raw_path"] == "/base/"
    assert json.loads((await get(app.proxy_url + "/r"))[2])["raw_path"] == "/"
    assert json.loads((await get(app.proxy_url + "/r?q=1"))[2])["raw_path"] == "/?q=1"
    status, headers, body = await get(app.proxy_url + "/upx")
    assert status == 404 and headers["X-Signet-Error"] == "no_route"


# ------------------------------------------------------------- header hygiene


async def test_every_credential_and_hop_by_hop_header_stripped(
    make_signet: Any, upstream: Any
) -> None:
    app = await make_signet(
        [route(upstream, strip_headers=["X-Route-Strip"], set_headers={"X-Set": "v"})]
    )
    hostile = {
        "Authorization": "Bearer client-token",
        "Cookie": "session=1",
        "Proxy-Authorization": "Basic abc",
        "X-Api-Key": "k",
        "X-Api-Secret": "s",
        "X-Api-Signature": "sig",
        "X-Api-Timestamp": "1",
        "Apikey": "k",
        "Signature": "sig",
        "API_KEY": "k",
        "API_DIGEST": "d",
        "X-Signet-Token": "t",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Trailer": "X",
        "Upgrade": "websocket",
        "Connection": "keep-alive, X-Named-By-Connection",
        "X-Named-By-Connection": "gone",
        "X-Route-Strip": "gone",
        "X-Set": "client-value",
        "X-Keep": "kept",
        "Proxy-Authenticate": "x",
    }
    status, resp_headers, _ = await get(app.proxy_url + "/up/h", headers=hostile)
    assert status == 200
    received = upstream.app[STATE].received[-1]
    names = {k.lower() for k, _ in received.headers}
    for gone in ALWAYS_STRIPPED - {"host"}:
        assert gone not in names, gone
    assert "x-named-by-connection" not in names and "x-route-strip" not in names
    assert received.header("X-Keep") == "kept"
    assert received.header("X-Set") == "v"
    assert received.header("Host") == f"127.0.0.1:{upstream.port}"
    assert "x-forwarded-for" not in names
    rid = received.header("X-Request-Id")
    assert rid and resp_headers.get("X-Request-Id") == rid, resp_headers


async def test_request_id_kept_and_forward_client_info(make_signet: Any, upstream: Any) -> None:
    app = await make_signet([route(upstream, forward_client_info=True)])
    _, headers, _ = await get(app.proxy_url + "/up/x", headers={"X-Request-Id": "my-id-1"})
    received = upstream.app[STATE].received[-1]
    assert headers["X-Request-Id"] == "my-id-1" and received.header("X-Request-Id") == "my-id-1"
    assert received.header("X-Forwarded-For") == "127.0.0.1"
    assert received.header("X-Forwarded-Proto") == "http"
    assert received.header(
        "X-Forwarded-Host",
    ) == app.proxy_url.removeprefix("http://")


async def test_bearer_added_and_response_passed_through(make_signet: Any, upstream: Any) -> None:
    app = await make_signet(
        [route(upstream, auth={"scheme": "bearer", "token": "${T}"})], env={"T": TOKEN}
    )
    status, headers, body = await get(
        app.proxy_url + "/up/x", headers={"Authorization": "Bearer mine"}
    )
    assert status == 200
    assert upstream.app[STATE].received[-1].header("Authorization") == f"Bearer {TOKEN}"
    assert headers["X-Upstream"] == "fake" and headers["Set-Cookie"] == "a=b"


async def test_upstream_error_status_passed_unchanged(
    make_signet: Any, aiohttp_server: Any
) -> None:
    from aiohttp import web

    async def deny(request: web.Request) -> web.Response:
        return web.Response(status=401, text="nope", headers={"WWW-Authenticate": "Bearer"})

    app_ = web.Application()
    app_.router.add_route("*", "/{t:.*}", deny)
    server = await aiohttp_server(app_, host="127.0.0.1")
    app = await make_signet([route(server)])
    status, headers, body = await get(app.proxy_url + "/up/x")
    assert (status, body, headers["WWW-Authenticate"]) == (401, b"nope", "Bearer")
    assert "X-Signet-Error" not in headers


# ------------------------------------------------------------------ bodies


async def test_body_streamed_unchanged(make_signet: Any, upstream: Any) -> None:
    app = await make_signet([route(upstream)])
    data = bytes(range(256)) * 1000
    status, _, body = await get(app.proxy_url + "/up/sink", method="POST", data=data)
    assert status == 200
    import hashlib

    answer = json.loads(body)
    assert (answer["body_len"], answer["body_sha256"]) == (
        len(data),
        hashlib.sha256(data).hexdigest(),
    )


async def test_chunked_upload_streamed(make_signet: Any, upstream: Any) -> None:
    app = await make_signet([route(upstream)])

    async def gen():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b"z" * 1000

    status, _, body = await get(app.proxy_url + "/up/sink", method="PUT", data=gen())
    assert status == 200 and json.loads(body)["body_len"] == 10000


async def test_buffered_body_over_limit_is_413(make_signet: Any, upstream: Any) -> None:
    app = await make_signet(
        [
            route(
                upstream,
                max_body_bytes=1000,
                auth={"scheme": "threecommas", "api_key": "k", "secret": "s"},
            )
        ]
    )
    status, headers, body = await get(app.proxy_url + "/up/x", method="POST", data=b"a" * 1001)
    assert status == 413 and headers["X-Signet-Error"] == "body_too_large"
    assert json.loads(body)["error"]["route"] == "up"

    async def gen():  # type: ignore[no-untyped-def]  # no Content-Length: found while reading
        for _ in range(20):
            yield b"b" * 100

    status, headers, _ = await get(app.proxy_url + "/up/x", method="POST", data=gen())
    assert status == 413
    status, _, _ = await get(app.proxy_url + "/up/x", method="POST", data=b"a" * 1000)
    assert status == 200
    assert upstream.app[STATE].received[-1].body == b"a" * 1000


# ------------------------------------------------------------------ failures


async def test_refused_connection_is_502(make_signet: Any, unused_tcp_port: int) -> None:
    app = await make_signet(
        [{"name": "dead", "prefix": "/d", "upstream": f"http://127.0.0.1:{unused_tcp_port}"}]
    )
    status, headers, body = await get(app.proxy_url + "/d/x")
    error = json.loads(body)["error"]
    assert status == 502 and headers["X-Signet-Error"] == "upstream_unreachable"
    assert error["code"] == "upstream_unreachable" and error["route"] == "dead"
    assert error["request_id"] == headers["X-Request-Id"]
    assert str(unused_tcp_port) in error["message"]


async def test_silent_upstream_is_504_within_bound(make_signet: Any, upstream: Any) -> None:
    app = await make_signet(
        [
            {
                "name": "s",
                "prefix": "/s",
                "upstream": str(upstream.make_url("")),
                "timeout": {"read": 0.5},
            }
        ]
    )
    t0 = time.monotonic()
    status, headers, body = await get(app.proxy_url + "/s/silent")
    elapsed = time.monotonic() - t0
    assert status == 504 and headers["X-Signet-Error"] == "upstream_timeout"
    assert "0.5s" in json.loads(body)["error"]["message"]
    assert 0.4 < elapsed < 2.0


async def test_dot_segments_and_absolute_form_are_400(make_signet: Any, upstream: Any) -> None:
    app = await make_signet([route(upstream)])
    for target in ("/up/a/../b", "/up/%2e%2E/x", "/up/a%2f..%2fb"):
        status, headers, _ = await get(app.proxy_url + target)
        assert status == 400 and headers["X-Signet-Error"] == "bad_request", target
    host, port = app.proxy_address
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET http://127.0.0.1:{upstream.port}/base HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    line = await asyncio.wait_for(reader.readline(), 5)
    assert line.startswith(b"HTTP/1.1 400"), line
    writer.close()
    assert upstream.app[STATE].received == []

"""The upstream engine against raw-socket upstreams: framing, hygiene, retry, timeouts, TLS."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trustme

from proxy.upstream import (
    ConnectFailed,
    ConnectTimeout,
    Disconnected,
    Malformed,
    Origin,
    Pool,
    ReadTimeout,
    StaleConnection,
    UpstreamResponse,
    client_context,
)
from tests.upstream import RawUpstream, answering

T = {"connect_timeout": 5.0, "read_timeout": 5.0}


def pool_for(up: RawUpstream, context: ssl.SSLContext | None = None) -> Pool:
    return Pool(Origin("https" if context else "http", "127.0.0.1", up.port), context)


async def body_of(r: UpstreamResponse) -> bytes:
    out = b""
    while chunk := await r.read():
        out += chunk
    return out


async def exchange(pool: Pool, method: str = "GET", **kw: Any) -> tuple[UpstreamResponse, bytes]:
    r = await pool.request(method, "/x", [("Accept", "*/*")], **{**T, **kw})
    body = await body_of(r)
    r.release()
    return r, body


# ------------------------------------------------------------------ framing

FRAMING = {
    "content-length": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello", True),
    "empty-length": (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", b"", True),
    "chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;ext=1\r\nlo\r\n0\r\nX-T: 1\r\n\r\n",
        b"hello",
        True,
    ),
    "no-content": (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", b"", True),
    "not-modified": (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", b"", True),
    "interim-skipped": (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"ok",
        True,
    ),
}


@pytest.mark.parametrize("case", list(FRAMING))
async def test_framing_and_keep_alive(case: str) -> None:
    answer, expected, _ = FRAMING[case]
    async with RawUpstream(answering(answer, answer)) as up:
        pool = pool_for(up)
        for _ in range(2):
            r, body = await exchange(pool)
            assert body == expected and r.status in (200, 204, 304)
        assert up.connections == 1, "a cleanly framed answer leaves the connection reusable"
        assert all(h for h, _ in r.headers) and not any(h.lower() == "link" for h, _ in r.headers)
        assert r.header("link") is None
        await pool.close()


async def test_head_answer_has_no_body_even_with_a_length() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    async with RawUpstream(answering(answer, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) as up:
        pool = pool_for(up)
        r, body = await exchange(pool, "HEAD")
        assert (r.status, body, r.framed) == (200, b"", True)
        r, body = await exchange(pool)
        assert body == b"ok" and up.connections == 1
        await pool.close()


async def test_close_delimited_body_ends_at_close_and_is_not_reused() -> None:
    def make(up: RawUpstream) -> Any:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await up.read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\n\r\n" + b"a" * 100_000)
            await writer.drain()
            writer.close()

        return handler

    async with RawUpstream(make) as up:
        pool = pool_for(up)
        r, body = await exchange(pool)
        assert body == b"a" * 100_000 and not r.framed
        await exchange(pool)
        assert up.connections == 2 and pool.idle_count == 0
        await pool.close()


async def test_http10_upstream_is_not_reused() -> None:
    answer = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
    async with RawUpstream(answering(answer)) as up:
        pool = pool_for(up)
        r, body = await exchange(pool)
        assert body == b"ok" and r.version == "1.0" and pool.idle_count == 0
        await pool.close()


# ---------------------------------------------------------------- malformed

MALFORMED = {
    "space-before-colon": b"HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 0\r\n\r\n",
    "ctl-in-value": b"HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 0\r\n\r\n",
    "nul-in-value": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
    "cl-and-te": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "two-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "unsolicited-101": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    "bare-lf": b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
    "folded": b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n",
    "bad-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_malformed_answers_fail_and_close(case: str) -> None:
    async with RawUpstream(answering(MALFORMED[case])) as up:
        pool = pool_for(up)
        r = None
        with pytest.raises((Malformed, Disconnected)) as info:
            r = await pool.request("GET", "/x", [], **T)
            await body_of(r)  # a broken chunk shows mid-body
        if r is not None:
            assert case == "bad-chunk"
            r.close()
        assert "malformed" in info.value.reason or info.value.reason.startswith("upstream connection")
        assert pool.idle_count == 0 and pool.active_count == 0
        await pool.close()


async def test_stray_bytes_while_idle_close_the_connection() -> None:
    def make(up: RawUpstream) -> Any:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await up.read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
            await writer.drain()
            head = await up.read_head(reader)  # must never come: the connection is dropped
            writer.write(b"HTTP/1.1 500 Reused\r\nContent-Length: 0\r\n\r\n" + head[:0])

        return handler

    async with RawUpstream(make) as up:
        pool = pool_for(up)
        await exchange(pool)
        assert pool.idle_count == 1
        for _ in range(100):
            if pool.idle_count == 0:
                break
            await asyncio.sleep(0.05)
        assert pool.idle_count == 0, "an idle connection that received bytes is closed at once"
        r, body = await exchange(pool)
        assert r.status == 200 and body == b"ok" and up.connections == 2
        await pool.close()


async def test_short_body_fails_mid_body() -> None:
    def make(up: RawUpstream) -> Any:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await up.read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            await writer.drain()
            writer.close()

        return handler

    async with RawUpstream(make) as up:
        pool = pool_for(up)
        r = await pool.request("GET", "/x", [], **T)
        with pytest.raises(Disconnected) as info:
            await body_of(r)
        assert info.value.mid_body
        r.close()
        assert pool.idle_count == 0
        await pool.close()


async def test_extra_body_bytes_never_reach_the_next_answer() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"
    async with RawUpstream(answering(answer, answer)) as up:
        pool = pool_for(up)
        for _ in range(2):
            r, body = await exchange(pool)
            assert body == b"ok" and dict(r.headers) == {"Content-Length": "2"}
            assert r.header("content-length") == "2"
        assert up.connections == 2 and pool.idle_count == 0
        await pool.close()


# -------------------------------------------------------------------- retry


def closes_after_each_answer(up: RawUpstream) -> Any:
    """Answers one request per connection, keep-alive claimed, then closes after a beat."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await up.read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read(1)  # the next request's first byte, then hang up unanswered

    return handler


async def test_reused_connection_dying_before_a_byte_is_retried_once_for_get() -> None:
    async with RawUpstream(closes_after_each_answer) as up:
        pool = pool_for(up)
        await exchange(pool)
        r, body = await exchange(pool)
        assert body == b"ok" and up.connections == 2
        await pool.close()


async def test_streamed_post_is_not_retried() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"abc"

    async with RawUpstream(closes_after_each_answer) as up:
        pool = pool_for(up)
        await exchange(pool)
        with pytest.raises(StaleConnection):
            await pool.request("POST", "/x", [], chunks(), length=3, **T)
        assert up.connections == 1
        await pool.close()


async def test_fresh_connection_dying_is_not_retried() -> None:
    def make(up: RawUpstream) -> Any:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await up.read_head(reader)

        return handler

    async with RawUpstream(make) as up:
        pool = pool_for(up)
        with pytest.raises(Disconnected) as info:
            await pool.request("GET", "/x", [], **T)
        assert not isinstance(info.value, StaleConnection) and up.connections == 1
        await pool.close()


# ----------------------------------------------------------- request writing


async def test_head_keeps_spelling_and_bodies_are_framed() -> None:
    async def unknown_length() -> AsyncIterator[bytes]:
        yield b"ab"
        yield b"cde"

    def make(up: RawUpstream) -> Any:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                head = await up.read_head(reader)
                if b"chunked" in head:
                    up.heads.append(await reader.readuntil(b"0\r\n\r\n"))
                elif b"content-LENGTH: 3" in head:
                    up.heads.append(await reader.readexactly(3))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()

        return handler

    async with RawUpstream(make) as up:
        pool = pool_for(up)
        headers = [("x-MiXeD-CaSe", "v1"), ("X-Multi", "a"), ("x-multi", "b"), ("content-LENGTH", "3")]
        r = await pool.request("PUT", "/p%2Fq?b=2&a=1", headers, b"xyz", **T)
        r.release()
        r = await pool.request("POST", "/c", [], unknown_length(), length=None, **T)
        r.release()
        r = await pool.request("POST", "/e", [], None, **T)
        r.release()
        first, body, chunked, trailer, empty = up.heads
        assert first == (
            b"PUT /p%%2Fq?b=2&a=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nx-MiXeD-CaSe: v1\r\n"
            b"X-Multi: a\r\nx-multi: b\r\ncontent-LENGTH: 3\r\n\r\n" % up.port
        )
        assert body == b"xyz"
        assert b"Transfer-Encoding: chunked\r\n" in chunked and b"Content-Length" not in chunked
        assert trailer == b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"
        assert b"Content-Length: 0\r\n" in empty
        assert up.connections == 1
        await pool.close()


async def test_streamed_body_with_a_known_length_uses_content_length() -> None:
    received: list[bytes] = []

    def make(up: RawUpstream) -> Any:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await up.read_head(reader)
            received.append(head)
            received.append(await reader.readexactly(1_000_000))
            writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()

        return handler

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"z" * 100_000

    async with RawUpstream(make) as up:
        pool = pool_for(up)
        r = await pool.request("POST", "/u", [], chunks(), length=1_000_000, **T)
        assert r.status == 201
        r.release()
        assert b"Content-Length: 1000000\r\n" in received[0] and received[1] == b"z" * 1_000_000
        await pool.close()


# ----------------------------------------------------------------- timeouts


async def test_read_timeout_before_and_during_the_body() -> None:
    def make(up: RawUpstream) -> Any:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await up.read_head(reader)
            if b"/body" in head:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
                await writer.drain()
            await reader.read()

        return handler

    async with RawUpstream(make) as up:
        pool = pool_for(up)
        with pytest.raises(ReadTimeout) as info:
            await pool.request("GET", "/silent", [], connect_timeout=5, read_timeout=0.3)
        assert not info.value.mid_body
        r = await pool.request("GET", "/body", [], connect_timeout=5, read_timeout=0.3)
        with pytest.raises(ReadTimeout) as info:
            await body_of(r)
        assert info.value.mid_body
        r.close()
        await pool.close()


async def test_refused_connection() -> None:
    async with RawUpstream(answering()) as up:
        port = up.port
    pool = Pool(Origin("http", "127.0.0.1", port))
    with pytest.raises(ConnectFailed, match="connection refused"):
        await pool.request("GET", "/", [], **T)
    await pool.close()


# ---------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def mtls_server_context(ca: trustme.CA) -> ssl.SSLContext:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    ca.configure_trust(server)
    server.verify_mode = ssl.CERT_REQUIRED  # the vendor wants a client certificate
    return server


def reports_client_cert(up: RawUpstream) -> Any:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await up.read_head(reader)
        peer = writer.get_extra_info("peercert") or {}
        sans = [v for _, v in peer.get("subjectAltName", ())]
        name = sans[0].encode() if sans else b"none"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(name), name))
        await writer.drain()
        await reader.read()

    return handler


async def test_mtls_client_certificate(ca: trustme.CA, tmp_path: Any) -> None:
    client_cert = ca.issue_cert("client@example.test")
    cert_file, key_file, ca_file = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    client_cert.cert_chain_pems[0].write_to_path(str(cert_file))
    client_cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    async with RawUpstream(reports_client_cert, ssl=mtls_server_context(ca)) as up:
        ctx = client_context(True, str(ca_file), str(cert_file), str(key_file))
        pool = pool_for(up, ctx)
        r, body = await exchange(pool)
        assert r.status == 200 and body == b"client@example.test"
        await pool.close()
        # without the client certificate the vendor refuses the handshake
        bare = pool_for(up, client_context(True, str(ca_file)))
        with pytest.raises((ConnectFailed, Disconnected)):
            await exchange(bare)
        await bare.close()
        # without the CA the vendor's certificate is refused
        untrusted = pool_for(up, client_context(True, None, str(cert_file), str(key_file)))
        with pytest.raises(ConnectFailed) as info:
            await exchange(untrusted)
        assert info.value.tls and "certificate" in info.value.reason
        await untrusted.close()


async def test_idle_connections_are_closed_after_max_idle() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    async with RawUpstream(answering(answer, answer)) as up:
        pool = Pool(Origin("http", "127.0.0.1", up.port), max_idle=0.2)
        await exchange(pool)
        assert pool.idle_count == 1
        for _ in range(100):
            if pool.idle_count == 0:
                break
            await asyncio.sleep(0.05)
        assert pool.idle_count == 0
        await exchange(pool)
        assert up.connections == 2
        await pool.close()


async def test_connect_timeout_covers_the_tls_handshake() -> None:
    def make(up: RawUpstream) -> Any:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # accepts TCP, never answers the ClientHello

        return handler

    async with RawUpstream(make) as up:
        pool = pool_for(up, client_context())
        t0 = asyncio.get_running_loop().time()
        with pytest.raises(ConnectTimeout, match=r"0\.3s"):
            await pool.request("GET", "/", [], connect_timeout=0.3, read_timeout=30)
        assert asyncio.get_running_loop().time() - t0 < 5
        await pool.close()


async def test_close_delimited_body_cut_by_a_reset_is_not_complete() -> None:
    import socket
    import struct

    def make(up: RawUpstream) -> Any:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await up.read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\n\r\n" + b"a" * 1000)
            await writer.drain()
            await asyncio.sleep(0.1)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # RST, not FIN

        return handler

    async with RawUpstream(make) as up:
        pool = pool_for(up)
        r = await pool.request("GET", "/x", [], **T)
        with pytest.raises(Disconnected) as info:
            await body_of(r)
        assert info.value.mid_body
        r.close()
        await pool.close()

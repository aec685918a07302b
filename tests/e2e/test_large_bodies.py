"""Signed bodies past spool_bytes through a real `signet serve`, accepted by vendors that verify.

- every body-signing scheme and an ``hmac`` recipe with a 12 MiB body, each
  against its mock vendor (proxy.mock.*, independent verifiers), and
  aws-sigv4 (S3 and API Gateway) against the AWS stand-in that verifies
  with botocore;
- one 1 GiB 3Commas upload against a streaming 3Commas stand-in (HMAC
  recomputed here from the vendor's formula), with the proxy's RSS growth
  measured by psutil on the child;
- no spool file and no open spool descriptor after 100 client aborts, an
  upstream reset, an upstream timeout, a stalled body and a shutdown
  mid-upload;
- a full disk (a 1 MiB tmpfs, when this runner may mount) and a vanished
  spool_dir answer 507 spool_failed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from proxy.demo import demo_routes
from proxy.mock.vendors import DEMO_CREDENTIALS
from tests.aws_fakes import AwsKey, AwsState, aws_service_app
from tests.conftest import SUITE_SECRETS, config_text, secret
from tests.fakes import PeakRss

MiB = 1024 * 1024
TC = DEMO_CREDENTIALS["threecommas"]
for _vendor in DEMO_CREDENTIALS.values():
    for _name, _value in _vendor.items():
        if "secret" in _name:
            SUITE_SECRETS.add(_value)

APLIIQ_RECIPE = {  # the apliiq scheme as an hmac recipe: exercises a streamed {body_base64}
    "scheme": "hmac",
    "vars": {
        "app_id": DEMO_CREDENTIALS["apliiq"]["app_id"],
        "shared_secret": DEMO_CREDENTIALS["apliiq"]["shared_secret"],
    },
    "message": "{app_id}{timestamp}{nonce}{body_base64}",
    "key": "{shared_secret}",
    "encoding": "base64",
    "headers": {"Authorization": "x-apliiq-auth {timestamp}:{signature}:{app_id}:{nonce}"},
}


def spool_fds(pid: int) -> list[str]:
    """The child's open descriptors that point at a (deleted) spool file."""
    out = []
    fd_dir = Path(f"/proc/{pid}/fd")
    for entry in fd_dir.iterdir():
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if "signet-body-" in target:
            out.append(target)
    return out


def wait_no_spool_fds(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while fds := spool_fds(pid):
        assert time.monotonic() < deadline, f"{len(fds)} spool descriptors still open: {fds[:3]}"
        time.sleep(0.05)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    path.mkdir()
    return path


def config(routes: list[dict[str, Any]], spool_dir: Path, **defaults: Any) -> str:
    d = {"max_body_bytes": 2 * 1024 * MiB, "spool_dir": str(spool_dir), **defaults}
    return config_text(routes, defaults=d).replace("${", "$${")


# -------------------------------------------------------- every scheme, 12 MiB


@pytest.fixture
async def mock_routes(aiohttp_server: Any) -> list[dict[str, Any]]:
    routes = []
    for r in demo_routes():
        if r.name not in ("threeclicks-strict", "threecommas", "apliiq", "quicklizard"):
            continue
        server = await aiohttp_server(r.make_app(), host="127.0.0.1")
        url = str(server.make_url("")).rstrip("/")
        routes.append({"name": r.name, "prefix": f"/{r.name}", "upstream": url + r.base_path, "auth": r.auth})
        if r.name == "apliiq":
            routes.append(
                {"name": "recipe", "prefix": "/recipe", "upstream": url + r.base_path, "auth": APLIIQ_RECIPE}
            )
    return routes


async def test_every_scheme_signs_a_spooled_body(
    mock_routes: list[dict[str, Any]], signet_process: Any, spool: Path
) -> None:
    proc = signet_process(config(mock_routes, spool))
    body = os.urandom(12 * MiB + 1)

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length from the client
        for start in range(0, len(body), MiB):
            yield body[start : start + MiB]

    async with aiohttp.ClientSession() as session:
        for route in ("threeclicks-strict", "threecommas", "apliiq", "quicklizard", "recipe"):
            for data in (body, chunked()):
                url = URL(f"{proc.proxy_url}/{route}/orders/A%2FB?x=1&y=2", encoded=True)
                async with session.post(url, data=data) as resp:
                    answer = await resp.json()
                    assert resp.status == 200, (route, answer)
                assert answer["ok"] is True and answer["body_bytes"] == len(body), (route, answer)
    assert list(spool.iterdir()) == []
    wait_no_spool_fds(proc.proc.pid)


# ------------------------------------------------------------ 1 GiB, flat RSS


def threecommas_streaming_vendor(secret: str, seen: dict[str, Any]) -> web.Application:
    """3Commas as its signing page says, verifying a body of any size chunk by chunk."""

    async def handle(request: web.Request) -> web.Response:
        path, _, query = request.raw_path.partition("?")
        mac = hmac.new(secret.encode(), (path + ("?" + query if query else "")).encode(), hashlib.sha256)
        sha = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_chunked(1 << 20):
            mac.update(chunk)
            sha.update(chunk)
            size += len(chunk)
        seen.update(size=size, sha256=sha.hexdigest(), length=request.headers.get("Content-Length"))
        if not hmac.compare_digest(request.headers.get("Signature", ""), mac.hexdigest()):
            return web.json_response({"ok": False, "error": "Signature mismatch"}, status=401)
        if request.headers.get("Apikey") != TC["api_key"]:
            return web.json_response({"ok": False, "error": "bad Apikey"}, status=401)
        return web.json_response({"ok": True, "body_bytes": size})

    app = web.Application(client_max_size=1 << 40)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app



def body_blocks(total: int, block: bytes) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        piece = block[: total - sent]
        sent += len(piece)
        yield piece


async def test_one_gib_signed_upload_in_flat_memory(
    aiohttp_server: Any, signet_process: Any, spool: Path
) -> None:
    seen: dict[str, Any] = {}
    vendor = await aiohttp_server(threecommas_streaming_vendor(TC["secret"], seen), host="127.0.0.1")
    route = {
        "name": "threecommas",
        "prefix": "/3c",
        "upstream": str(vendor.make_url("/public/api/ver1")).rstrip("/"),
        "auth": {"scheme": "threecommas", **TC},
    }
    proc = signet_process(config([route], spool))
    total = 1024 * MiB
    block = os.urandom(4 * MiB)
    client_sha = hashlib.sha256()

    async def data() -> AsyncIterator[bytes]:
        for piece in body_blocks(total, block):
            client_sha.update(piece)
            yield piece

    url = f"{proc.proxy_url}/3c/bots/1/update?mode=paper"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        async with session.post(url, data=b"warm-up") as resp:  # load every code path first
            assert resp.status == 200, await resp.text()
        with PeakRss(proc.proc.pid) as rss:
            started = time.perf_counter()
            async with session.post(url, data=data(), headers={"Content-Length": str(total)}) as resp:
                answer = await resp.json()
            elapsed = time.perf_counter() - started
    assert resp.status == 200 and answer == {"ok": True, "body_bytes": total}, answer
    assert seen == {"size": total, "sha256": client_sha.hexdigest(), "length": str(total)}
    print(f"\n1 GiB signed upload: {total / MiB / elapsed:.0f} MiB/s, RSS growth {rss.growth / MiB:.1f} MiB")
    assert rss.growth < 64 * MiB, f"RSS grew by {rss.growth / MiB:.1f} MiB"
    assert list(spool.iterdir()) == []
    wait_no_spool_fds(proc.proc.pid)


# ------------------------------------------------------- cleanup on every path


def start_upload(address: tuple[str, int], path: str, length: int, send: int) -> socket.socket:
    """A raw client that declares ``length`` body bytes and sends ``send`` of them."""
    sock = socket.create_connection(address, timeout=30)
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode()
    sock.sendall(head + b"\0" * send)
    return sock


def address(url: str) -> tuple[str, int]:
    u = URL(url)
    assert u.host is not None and u.port is not None
    return u.host, u.port


async def test_no_spool_file_left_after_aborts_errors_stalls_and_shutdown(
    aiohttp_server: Any, signet_process: Any, spool: Path
) -> None:
    async def reset_midway(request: web.Request) -> web.StreamResponse:
        await request.content.read(64 * 1024)
        assert request.transport is not None
        request.transport.abort()  # the upstream dies while Signet sends the spooled body
        return web.Response()

    async def ok(request: web.Request) -> web.Response:
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
        return web.json_response({"size": size})

    app = web.Application(client_max_size=1 << 30)

    async def too_slow(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(5)  # past the route's read timeout
        return web.Response()

    app.router.add_post("/reset", reset_midway)
    app.router.add_post("/slow", too_slow)
    app.router.add_route("*", "/{tail:.*}", ok)
    up = await aiohttp_server(app, host="127.0.0.1")
    route = {
        "name": "tc",
        "prefix": "/tc",
        "upstream": str(up.make_url("")).rstrip("/"),
        "auth": {"scheme": "threecommas", **TC},
        "timeout": {"read": 1},
    }
    text = config_text(
        [route], defaults={"spool_dir": str(spool), "spool_bytes": 64 * 1024}, limits={"body_read_timeout": 1}
    )
    proc = signet_process(text.replace("${", "$${"))
    pid = proc.proc.pid
    addr = address(proc.proxy_url)

    # 100 clients abort mid-body, ten at a time, each well past spool_bytes
    for _ in range(10):
        socks = [start_upload(addr, "/tc/x", 8 * MiB, 512 * 1024) for _ in range(10)]
        await asyncio.sleep(0.05)
        for s in socks:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # RST
            s.close()
    wait_no_spool_fds(pid)
    assert list(spool.iterdir()) == []

    async with aiohttp.ClientSession() as session:
        # the upstream resets while the spooled body is being sent
        async with session.post(f"{proc.proxy_url}/tc/reset", data=os.urandom(4 * MiB)) as resp:
            assert resp.status == 502, await resp.text()
        # the upstream takes the body, then answers too late: 504
        async with session.post(f"{proc.proxy_url}/tc/slow", data=os.urandom(4 * MiB)) as resp:
            assert resp.status == 504, await resp.text()
        wait_no_spool_fds(pid)
        # a client that stalls mid-body: 408 body_timeout after body_read_timeout
        sock = await asyncio.to_thread(start_upload, addr, "/tc/x", 4 * MiB, MiB)
        status = (await asyncio.to_thread(sock.recv, 64)).split(b" ")[1]
        sock.close()
        assert status == b"408"
        wait_no_spool_fds(pid)
        # still serving
        async with session.post(f"{proc.proxy_url}/tc/x", data=os.urandom(2 * MiB)) as resp:
            assert (await resp.json()) == {"size": 2 * MiB}
    wait_no_spool_fds(pid)

    # shutdown with an upload mid-spool: nothing is left behind
    sock = start_upload(addr, "/tc/x", 8 * MiB, 2 * MiB)
    deadline = time.monotonic() + 30
    while not spool_fds(pid):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    proc.stop()
    sock.close()
    assert list(spool.iterdir()) == []


# ------------------------------------------------------------------ disk full


async def _expect_spool_failed(proxy_url: str, size: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{proxy_url}/tc/x", data=os.urandom(size)) as resp:
            answer = await resp.json()
            assert resp.status == 507, answer
            assert resp.headers["X-Signet-Error"] == "spool_failed"
        assert answer["error"]["code"] == "spool_failed" and answer["error"]["route"] == "tc"
        async with session.post(f"{proxy_url}/tc/x", data=b"small bodies stay in memory") as resp:
            assert resp.status == 200
    return answer


@pytest.fixture
async def ok_upstream(aiohttp_server: Any) -> dict[str, Any]:
    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/{tail:.*}", ok)
    up = await aiohttp_server(app, host="127.0.0.1")
    return {
        "name": "tc",
        "prefix": "/tc",
        "upstream": str(up.make_url("")).rstrip("/"),
        "auth": {"scheme": "threecommas", **TC},
    }


async def test_vanished_spool_dir_is_507(
    ok_upstream: dict[str, Any], signet_process: Any, spool: Path
) -> None:
    proc = signet_process(config([ok_upstream], spool))
    spool.rmdir()  # e.g. a cleaner removed it, or a volume went away
    answer = await _expect_spool_failed(proc.proxy_url, 2 * MiB)
    assert "ENOENT" in answer["error"]["message"] and str(spool) in answer["error"]["message"]


def test_unwritable_spool_dir_is_a_config_error(tmp_path: Path, signet_process: Any) -> None:
    route = {"name": "tc", "prefix": "/tc", "upstream": "http://127.0.0.1:9", "auth": {"scheme": "none"}}
    proc = signet_process(config([route], tmp_path / "missing"), wait=False)
    assert proc.proc.wait(30) != 0
    assert "defaults.spool_dir" in proc.text() and "not a writable directory" in proc.text()


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_full_disk_is_507(ok_upstream: dict[str, Any], signet_process: Any, tiny_tmpfs: Path) -> None:
    proc = signet_process(config([ok_upstream], tiny_tmpfs, spool_bytes=64 * 1024))
    answer = await _expect_spool_failed(proc.proxy_url, 4 * MiB)
    assert "ENOSPC" in answer["error"]["message"]
    wait_no_spool_fds(proc.proc.pid)
    assert os.statvfs(tiny_tmpfs).f_bfree == os.statvfs(tiny_tmpfs).f_blocks  # space given back


# ------------------------------------------------------- time of the signature


async def test_timestamp_is_taken_when_the_body_is_complete(
    mock_routes: list[dict[str, Any]], signet_process: Any, spool: Path
) -> None:
    """A slow upload: Quicklizard's qts (ms) is read after the last body byte arrived."""
    proc = signet_process(config(mock_routes, spool))
    sent_last = 0.0

    async def slow() -> AsyncIterator[bytes]:
        nonlocal sent_last
        for _ in range(5):
            yield os.urandom(MiB)
            await asyncio.sleep(0.4)
        sent_last = time.time()
        yield b"end"

    async with aiohttp.ClientSession() as session:
        async with session.put(f"{proc.proxy_url}/quicklizard/slow", data=slow()) as resp:
            assert resp.status == 200, await resp.text()
        vendor = URL(next(r["upstream"] for r in mock_routes if r["name"] == "quicklizard"))
        async with session.get(vendor.origin() / "__mock" / "requests") as resp:
            recorded = await resp.json()
    qts = int(recorded[-1]["raw_path"].rpartition("qts=")[2])
    assert qts >= int(sent_last * 1000) - 5, "the timestamp predates the end of the body"


# ------------------------------------------------------------------- SigV4


async def test_aws_sigv4_signs_a_spooled_body(aiohttp_server: Any, signet_process: Any, spool: Path) -> None:
    """S3 and API Gateway with a 12 MiB body, each verified by botocore in the AWS stand-in."""
    ak, sk = "AKIASPOOLEXAMPLE0001", secret("spool-aws-secret/K7MDENG+bPxRfiCY")
    states = {svc: AwsState("eu-west-1", svc, {ak: AwsKey(sk)}) for svc in ("s3", "execute-api")}
    routes = []
    for svc, state in states.items():
        server = await aiohttp_server(aws_service_app(state), host="127.0.0.1")
        routes.append(
            {
                "name": svc,
                "prefix": f"/{svc}",
                "upstream": str(server.make_url("")).rstrip("/"),
                "auth": {
                    "scheme": "aws-sigv4",
                    "region": "eu-west-1",
                    "service": svc,
                    "access_key_id": ak,
                    "secret_access_key": "${SK}",
                },
            }
        )
    d = {"max_body_bytes": 64 * MiB, "spool_dir": str(spool)}
    proc = signet_process(config_text(routes, defaults=d), env={"SK": sk})
    body = os.urandom(12 * MiB + 5)
    async with aiohttp.ClientSession() as session:
        for svc in states:
            url = URL(f"{proc.proxy_url}/{svc}/bucket/dir%2Fkey.bin?x-id=PutObject", encoded=True)
            async with session.put(url, data=body) as resp:
                assert resp.status == 200, await resp.text()
                answer = await resp.json()
            assert answer["len"] == len(body) and answer["sha256"] == hashlib.sha256(body).hexdigest()
    assert [len(s.accepted) for s in states.values()] == [1, 1]
    wait_no_spool_fds(proc.proc.pid)

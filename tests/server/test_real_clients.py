"""Real HTTP clients against the proxy listener: each gets the upstream's answer whole.

Python clients run in a thread (they block); command-line clients run as
subprocesses. The upstream echoes the digest of the body it received, so a
body the listener mangled (decoded, cut, re-framed wrongly) fails the check.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
from typing import Any

import aiohttp
import httpx
import pytest
import requests
import urllib3

from tests.conftest import config_text
from tests.fakes import STATE

BODY = b"0123456789abcdef" * 4096  # 64 KiB
DIGEST = hashlib.sha256(BODY).hexdigest()


async def run(*argv: str, stdin: bytes | None = None, timeout: float = 60) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    return proc.returncode or 0, out, err


def _requests(url: str) -> list[tuple[int, bytes]]:
    with requests.Session() as s:
        return [
            (r.status_code, r.content)
            for r in (s.get(url), s.post(url, data=BODY), s.post(url, data=iter([BODY[:1000], BODY[1000:]])))
        ]


def _httpx(url: str) -> list[tuple[int, bytes]]:
    with httpx.Client() as c:
        return [(r.status_code, r.content) for r in (c.get(url), c.post(url, content=BODY))]


def _urllib3(url: str) -> list[tuple[int, bytes]]:
    with urllib3.PoolManager() as pool:
        return [
            (r.status, r.data)
            for r in (pool.request("GET", url), pool.request("POST", url, body=BODY), pool.request("GET", url))
        ]


async def _aiohttp(url: str) -> list[tuple[int, bytes]]:
    out = []
    async with aiohttp.ClientSession() as s:
        for method, data in (("GET", None), ("POST", BODY), ("PUT", BODY)):
            async with s.request(method, url, data=data) as r:
                out.append((r.status, await r.read()))
    return out


async def _curl(url: str, *args: str) -> list[tuple[int, bytes]]:
    code, out, err = await run("curl", "-sS", "-w", "\n%{http_code}", *args, url, stdin=BODY)
    assert code == 0, err
    body, _, status = out.rpartition(b"\n")
    return [(int(status), body)]


CLIENTS = [
    "requests", "httpx", "urllib3", "aiohttp", "curl-1.1", "curl-1.0", "curl-T-chunked", "curl-limit-rate",
    "curl-expect", "ab", "ab-k", "wrk", "wget",
]


@pytest.mark.parametrize("client", CLIENTS)
async def test_real_client(make_signet: Any, upstream: Any, client: str) -> None:
    tool = {"ab": "ab", "ab-k": "ab", "wrk": "wrk", "wget": "wget"}.get(client, "curl")
    if client.startswith(("ab", "wrk", "wget", "curl")) and shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed (Debian package in .ci/run)")
    app = await make_signet(config_text([{"name": "up", "prefix": "/up", "upstream": str(upstream.make_url("/b"))}]))
    url = app.proxy_url + "/up/echo"
    results: list[tuple[int, bytes]]
    if client == "requests":
        results = await asyncio.to_thread(_requests, url)
    elif client == "httpx":
        results = await asyncio.to_thread(_httpx, url)
    elif client == "urllib3":
        results = await asyncio.to_thread(_urllib3, url)
    elif client == "aiohttp":
        results = await _aiohttp(url)
    elif client == "curl-1.1":
        results = await _curl(url, "--data-binary", "@-")
    elif client == "curl-1.0":
        results = await _curl(url, "-0", "--data-binary", "@-")
    elif client == "curl-T-chunked":
        results = await _curl(url, "-T", "-", "-H", "Transfer-Encoding: chunked")
    elif client == "curl-limit-rate":
        results = await _curl(url, "--limit-rate", "128k", "--data-binary", "@-")
    elif client == "curl-expect":  # curl asks Expect: 100-continue for a large body on its own
        results = await _curl(url, "-H", "Expect: 100-continue", "--data-binary", "@-")
    elif client in ("ab", "ab-k"):
        keep = ["-k"] if client == "ab-k" else []
        code, out, err = await run("ab", *keep, "-n", "300", "-c", "10", url)
        assert code == 0, err
        text = out.decode()
        assert re.search(r"Complete requests:\s+300", text) and re.search(r"Failed requests:\s+0", text), text
        assert not re.search(r"Non-2xx responses", text), text
        if keep:
            assert re.search(r"Keep-Alive requests:\s+300", text), text  # HTTP/1.0 keep-alive confirmed
        return
    elif client == "wrk":
        code, out, err = await run("wrk", "-t1", "-c8", "-d1s", url)
        assert code == 0, err
        text = out.decode()
        assert "Non-2xx" not in text and "Socket errors" not in text, text
        assert int(re.search(r"(\d+) requests in", text).group(1)) > 50, text  # type: ignore[union-attr]
        return
    else:  # wget
        code, out, err = await run("wget", "-q", "-O", "-", "--post-data", "hello", url)
        assert code == 0, err
        results = [(200, out)]
    for status, body in results:
        assert status == 200, (client, body[:200])
        answer = json.loads(body)
        if answer["method"] in ("POST", "PUT") and client != "wget":
            assert answer["body_len"] == len(BODY) and answer["body_sha256"] == DIGEST, client
    assert upstream.app[STATE].received  # it went through

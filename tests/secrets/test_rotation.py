"""Rotation without restart: Vault values under load, a Vault outage, Kubernetes-style file swaps."""

from __future__ import annotations

import asyncio
import os
import re
import secrets as pysecrets
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import SignetProcess, secret
from tests.secrets.bao import Bao
from tests.secrets.load import Load
from tests.secrets.vendor import RotatingVendor

REFRESH = 1.0


def fresh() -> str:
    return secret("rot-" + pysecrets.token_hex(16))


def config(bao: Bao, upstream: str, path: str, refresh: float = REFRESH) -> str:
    return f"""
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
secret_refresh: {refresh}
vault:
  address: {bao.addr}
  auth: {{token: "${{file:{bao_token_file(bao)}}}"}}
routes:
  - name: threecommas
    prefix: /3c
    upstream: {upstream}/public/api
    auth:
      scheme: threecommas
      api_key: "${{vault:secret/{path}#api_key}}"
      secret: "${{vault:secret/{path}#secret}}"
"""


def bao_token_file(bao: Bao) -> Path:
    path = Path(bao.home) / "signet-token"
    path.write_text(bao.root_token + "\n")
    return path


async def metric(admin_url: str, name: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(admin_url + "/metrics") as r:
        text = await r.text()
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, re.M):
        total += float(m.group(1))
    return total


async def test_vault_rotation_under_load_no_failed_request(
    bao: Bao, aiohttp_server: Any, signet_process: Callable[..., SignetProcess]
) -> None:
    key, old, new = fresh(), fresh(), fresh()
    vendor = RotatingVendor({key: [old]})
    server = await aiohttp_server(vendor.app(), host="127.0.0.1")
    bao.put("signet/rotation", api_key=key, secret=old)
    proc = signet_process(config(bao, str(server.make_url("")).rstrip("/"), "signet/rotation"))
    pid = proc.proc.pid

    async with Load(proc.proxy_url + "/3c/ver1/deals") as load:
        await load.wait_ok(50)
        vendor.accounts[key].append(new)  # the vendor accepts both during the change-over
        bao.put("signet/rotation", api_key=key, secret=new)
        changed = time.monotonic()
        async with asyncio.timeout(REFRESH + 10):
            while vendor.first_use(key, 1) is None:
                await asyncio.sleep(0.01)
        first_use = vendor.first_use(key, 1)
        assert first_use is not None
        delay = first_use - changed
        # new requests use the new secret from now on; then the vendor revokes the old one
        await load.wait_ok(50)
        seen = len(vendor.seen)
        await load.wait_ok(50)
        assert all(s.secret_index == 1 for s in vendor.seen[seen:])
        vendor.accounts[key] = [new]
        await load.wait_ok(100)

    print(f"\nrotation: new secret first used {delay:.3f}s after the change in OpenBao; "
          f"{load.ok} requests ok, {sum(load.failed.values())} failed")
    assert not load.failed, load.failed
    assert vendor.rejected == 0
    assert delay < REFRESH + 1.0, f"new secret used after {delay:.2f}s"
    assert proc.proc.poll() is None and proc.proc.pid == pid  # no restart
    refreshed = proc.wait_event("secrets_refreshed")
    assert refreshed["references"] == ["${vault:secret/signet/rotation#secret}"]
    assert await metric(proc.admin_url, "signet_secret_refresh_failures_total") == 0
    assert await metric(proc.admin_url, "signet_secret_refresh_seconds_count") >= 1
    age = await metric(proc.admin_url, "signet_secret_age_seconds")
    assert 0 <= age < 30


async def test_vault_outage_keeps_last_good_values_and_resumes(
    aiohttp_server: Any, signet_process: Callable[..., SignetProcess]
) -> None:
    bao = Bao().start()  # this test stops its own server
    try:
        key, old, new = fresh(), fresh(), fresh()
        vendor = RotatingVendor({key: [old, new]})
        server = await aiohttp_server(vendor.app(), host="127.0.0.1")
        bao.put("signet/outage", api_key=key, secret=old)
        proc = signet_process(
            config(bao, str(server.make_url("")).rstrip("/"), "signet/outage", refresh=0.5)
        )
        async with Load(proc.proxy_url + "/3c/ver1/deals", concurrency=2) as load:
            await load.wait_ok(20)
            bao.stop()
            failed = await asyncio.to_thread(proc.wait_event, "secret_refresh_failed", 15)
            assert failed["reference"].startswith("${vault:secret/signet/outage#")
            assert "cannot reach Vault" in failed["reason"]
            assert failed["locations"][0].startswith("routes[0].auth.")
            await load.wait_ok(30)  # still serving with the last good values
            assert await metric(proc.admin_url, "signet_secret_refresh_failures_total") >= 1
            assert all(s.secret_index == 0 for s in vendor.seen)

            bao.start()  # same address and root token; dev mode starts empty
            bao.put("signet/outage", api_key=key, secret=new)
            await asyncio.to_thread(proc.wait_event, "secrets_refreshed", 15)
            seen = len(vendor.seen)
            await load.wait_ok(20)
            assert any(s.secret_index == 1 for s in vendor.seen[seen:])
        assert not load.failed, load.failed
    finally:
        bao.stop()


# ------------------------------------------------------------------ files


def sample(app: Any, name: str) -> float:
    return app.metrics.registry.get_sample_value(name) or 0.0


def k8s_secret_dir(root: Path, files: dict[str, str]) -> None:
    """Write a Secret volume the way kubelet does: a timestamped dir, ``..data`` and per-key symlinks."""
    stamp = root / f"..{time.monotonic_ns()}"
    stamp.mkdir()
    for name, value in files.items():
        (stamp / name).write_text(value + "\n")
    tmp = root / "..data_tmp"
    tmp.symlink_to(stamp.name)
    os.replace(tmp, root / "..data")  # the atomic swap
    for name in files:
        link = root / name
        if not link.is_symlink():
            link.symlink_to(f"..data/{name}")


async def test_file_rotation_by_atomic_symlink_swap(
    tmp_path: Path, aiohttp_server: Any, make_signet: Callable[..., Any]
) -> None:
    key, old, new, bad = fresh(), fresh(), fresh(), ""
    vendor = RotatingVendor({key: [old, new]})
    server = await aiohttp_server(vendor.app(), host="127.0.0.1")
    mount = tmp_path / "secret-volume"
    mount.mkdir()
    k8s_secret_dir(mount, {"api_key": key, "secret": old})
    text = f"""
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
secret_refresh: 0.2
routes:
  - name: threecommas
    prefix: /3c
    upstream: {str(server.make_url("")).rstrip("/")}/public/api
    auth: {{scheme: threecommas, api_key: "${{file:{mount}/api_key}}", secret: "${{file:{mount}/secret}}"}}
"""
    app = await make_signet(text)

    async with aiohttp.ClientSession() as s:
        async def call() -> int:
            async with s.get(app.proxy_url + "/3c/ver1/accounts") as r:
                await r.read()
                return r.status

        assert await call() == 200
        assert vendor.seen[-1].secret_index == 0
        runtime = app.runtime
        k8s_secret_dir(mount, {"api_key": key, "secret": new})
        async with asyncio.timeout(10):
            while app.runtime is runtime:
                await asyncio.sleep(0.05)
        assert await call() == 200
        assert vendor.seen[-1].secret_index == 1

        # a bad new value (empty) is a refresh failure: the last good value stays
        runtime = app.runtime
        failures = sample(app, "signet_secret_refresh_failures_total")
        k8s_secret_dir(mount, {"api_key": key, "secret": bad})
        async with asyncio.timeout(10):
            while sample(app, "signet_secret_refresh_failures_total") == failures:
                await asyncio.sleep(0.05)
        assert app.runtime is runtime
        assert await call() == 200
        assert vendor.seen[-1].secret_index == 1


async def test_unchanged_values_build_no_new_runtime(
    tmp_path: Path, upstream: Any, make_signet: Callable[..., Any]
) -> None:
    f = tmp_path / "key"
    f.write_text(fresh())
    text = f"""
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
secret_refresh: 0.1
routes:
  - prefix: /u
    upstream: {str(upstream.make_url("")).rstrip("/")}
    auth: {{scheme: bearer, token: "${{file:{f}}}"}}
"""
    app = await make_signet(text)
    runtime = app.runtime
    before = sample(app, "signet_secret_refresh_seconds_count")
    async with asyncio.timeout(10):
        while sample(app, "signet_secret_refresh_seconds_count") == before:
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    assert app.runtime is runtime


async def test_sighup_rereads_vault_at_once(
    bao: Bao, aiohttp_server: Any, signet_process: Callable[..., SignetProcess]
) -> None:
    key, old, new = fresh(), fresh(), fresh()
    vendor = RotatingVendor({key: [old, new]})
    server = await aiohttp_server(vendor.app(), host="127.0.0.1")
    bao.put("signet/hup", api_key=key, secret=old)
    proc = signet_process(
        config(bao, str(server.make_url("")).rstrip("/"), "signet/hup", refresh=300)
    )
    async with aiohttp.ClientSession() as s:
        async def call() -> None:
            async with s.get(proc.proxy_url + "/3c/ver1/accounts") as r:
                assert r.status == 200, await r.text()

        await call()
        bao.put("signet/hup", api_key=key, secret=new)
        await call()
        assert [x.secret_index for x in vendor.seen] == [0, 0]  # not before the next refresh
        proc.signal(signal.SIGHUP)
        await asyncio.to_thread(proc.wait_event, "reloaded", 15)
        await call()
        assert vendor.seen[-1].secret_index == 1

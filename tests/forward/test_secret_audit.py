"""The CA key is a secret like the vendor's: never in a log line, an answer, /metrics or `signet check`.

One session at debug level with the key given as PEM text through an
environment reference (``key: ${CA_KEY}``, newlines and all): tunnels that
work, refusals, a handshake refused, plain HTTP in a tunnel, a reload with a
key that does not match, then `signet check` and `signet ca show`. The whole
PEM and each of its base64 lines are looked for everywhere (and registered
for the suite-wide log audit).
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
import yaml

from proxy.forward_proxy.ca import generate_ca
from tests.conftest import ROOT
from tests.forward import rawclient
from tests.forward.ca_helpers import register_key
from tests.forward.conftest import SECRETS_ENV, TOKEN_A, Vendor, forward_config, threecommas_route

HOST = "api.vendor.example"


async def test_the_ca_key_leaks_nowhere(
    signet_process: Any, vendor: Vendor, signet_ca: Path, vendor_tls: tuple[trustme.CA, Path], tmp_path: Path
) -> None:
    key_pem = (signet_ca / "ca-key.pem").read_text()
    register_key(key_pem.encode())
    data = yaml.safe_load(
        forward_config(signet_ca, vendor_tls[1], [threecommas_route(vendor)], clients=[
            {"name": "app-a", "token": "${TOKEN_A}"}])
    )
    data["forward_proxy"]["ca"] = {"cert_file": str(signet_ca / "ca.pem"), "key": "${CA_KEY}"}
    text = yaml.safe_dump(data, sort_keys=False)
    env = {**SECRETS_ENV, "CA_KEY": key_pem}
    p = signet_process(text, env=env, args=["--log-level", "debug"])
    port = int(p.proxy_url.rpartition(":")[2])
    auth = {"Proxy-Authorization": f"Bearer {TOKEN_A}"}
    bodies: list[bytes] = []

    reader, writer = await rawclient.tunnel(port, HOST, signet_ca / "ca.pem", auth)
    status, _, answer = await rawclient.get(reader, writer, HOST, "/ok", body=b"{}")
    writer.close()
    assert status == 200 and answer["signed"]
    for target, headers in ((f"{HOST}:443", {}), ("nowhere.example:443", auth), (f"{HOST}:80", auth)):
        status, _, body, _, w = await rawclient.connect(port, target, headers)
        w.close()
        assert status in (403, 407)
        bodies.append(body)
    status, _, _, reader, writer = await rawclient.connect(port, f"{HOST}:443", auth)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await writer.start_tls(rawclient.client_context(signet_ca / "ca.pem"), server_hostname="evil.example")
    writer.close()
    status, _, _, reader, writer = await rawclient.connect(port, f"{HOST}:443", auth)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    bodies.append(await asyncio.wait_for(reader.read(), 15))
    writer.close()

    # a reload whose key does not match the certificate: refused, the old CA kept
    _, other_key = generate_ca()
    register_key(other_key)
    config_path = Path(next(a for a in p.proc.args if str(a).endswith(".yaml")))
    other_file = tmp_path / "other-key.pem"
    other_file.write_bytes(other_key)
    data["forward_proxy"]["ca"] = {"cert_file": str(signet_ca / "ca.pem"), "key_file": str(other_file)}
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    p.signal(signal.SIGHUP)
    failed = p.wait_event("reload_failed")
    assert any("does not match" in problem for problem in failed["problems"])

    check = subprocess.run(
        [sys.executable, "-m", "proxy", "check", "--config", str(config_path)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env={**env, "PATH": "/usr/bin:/bin"},
    )
    assert check.returncode == 1
    config_path.write_text(text)
    shown = subprocess.run(
        [sys.executable, "-m", "proxy", "ca", "show", "--config", str(config_path)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env={**env, "PATH": "/usr/bin:/bin"},
    )
    assert shown.returncode == 0, shown.stderr
    async with aiohttp.ClientSession() as session, session.get(p.admin_url + "/metrics") as r:
        metrics = await r.text()
    assert 'route="vendor"' in metrics
    assert p.stop() == 0
    stderr = p.text()
    assert "tunnel_failed" in stderr and "Traceback" not in stderr

    places = {
        "stderr": stderr,
        "answers": b"".join(bodies).decode("latin-1"),
        "signet check": check.stdout + check.stderr,
        "signet ca show": shown.stdout + shown.stderr,
        "/metrics": metrics,
    }
    for pem in (key_pem, other_key.decode()):
        lines = [ln for ln in pem.splitlines() if ln and not ln.startswith("-----")]
        for where, haystack in places.items():
            assert pem.strip() not in haystack, where
            assert "".join(lines) not in haystack, where
            for line in lines:
                assert line not in haystack, f"a line of a CA key leaked into {where}"

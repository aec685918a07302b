"""listen_tls: the shared Signet over TLS, clients known by certificate, rotation without a restart.

Real TLS throughout: trustme CAs, `signet serve` processes, and curl,
requests, httpx and wrk as the clients.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import trustme
import yaml

from proxy.config import load_config_text
from proxy.errors import ConfigError
from tests.conftest import SignetProcess, secret
from tests.tls.certs import Pair, client_pair, server_pair

BILLING_TOKEN = secret("billing-token-0123456789abcdef")
BOTH_TOKEN = secret("both-token-0123456789abcdef012")
ROUTES = [{"name": "up", "prefix": "/up", "upstream": "UPSTREAM"}]
SPIFFE = "spiffe://cluster.local/ns/billing/sa/app"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("pki")
    server_ca, client_ca, rogue_ca = trustme.CA(), trustme.CA(), trustme.CA()
    server_ca.cert_pem.write_to_path(str(d / "server-ca.pem"))
    client_ca.cert_pem.write_to_path(str(d / "client-ca.pem"))
    return {
        "dir": d,
        "server_ca": server_ca,
        "server_ca_file": str(d / "server-ca.pem"),
        "client_ca_file": str(d / "client-ca.pem"),
        "server": server_pair(server_ca, d),
        "cn": client_pair(client_ca, d, "cn", common_name="billing-app"),
        "spiffe": client_pair(client_ca, d, "spiffe", common_name="ignored", uri=SPIFFE),
        "both": client_pair(client_ca, d, "both", common_name="reporting"),
        "stranger": client_pair(client_ca, d, "stranger", common_name="stranger"),
        "expired": client_pair(client_ca, d, "expired", common_name="billing-app", expired=True),
        "rogue": client_pair(rogue_ca, d, "rogue", common_name="billing-app"),
    }


def tls_config(upstream_url: str, pki: dict[str, Any], **top: Any) -> str:
    routes = [dict(r, upstream=upstream_url) for r in ROUTES]
    data: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "admin_listen": "127.0.0.1:0",
        "listen_tls": {
            "cert_file": str(pki["server"].cert),
            "key_file": str(pki["server"].key),
            "client_ca_file": pki["client_ca_file"],
        },
        "clients": [
            {"name": "billing", "token": BILLING_TOKEN},
            {"name": "billing-app", "cert": {"subject_cn": "billing-app"}},
            {"name": "mesh-app", "cert": {"san_uri": SPIFFE}},
            {"name": "reporting", "token": BOTH_TOKEN, "cert": {"subject_cn": "reporting"}},
        ],
        **top,
        "routes": routes,
    }
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture
async def tls_signet(
    upstream: Any, pki: dict[str, Any], signet_process: Callable[..., SignetProcess]
) -> SignetProcess:
    proc = signet_process(tls_config(str(upstream.make_url("")).rstrip("/"), pki))
    assert proc.proxy_url.startswith("https://")
    return proc


def _get(url: str, verify: str, cert: Pair | None = None, token: str | None = None) -> requests.Response:
    headers = {"Proxy-Authorization": f"Bearer {token}"} if token else {}
    return requests.get(
        url, verify=verify, cert=cert.as_tuple() if cert else None, headers=headers, timeout=10
    )


# ------------------------------------------------------------------ clients


async def test_requests_with_token_over_tls(tls_signet: SignetProcess, pki: dict[str, Any]) -> None:
    r = await asyncio.to_thread(
        _get, tls_signet.proxy_url + "/up/a?x=1", pki["server_ca_file"], token=BILLING_TOKEN
    )
    assert r.status_code == 200, r.text
    assert r.json()["raw_path"] == "/a?x=1"
    line = tls_signet.wait_event("request")
    assert line["client"] == "billing" and line["status"] == 200


async def test_curl_and_httpx_with_client_certificates(
    tls_signet: SignetProcess, pki: dict[str, Any]
) -> None:
    url = tls_signet.proxy_url + "/up/by-cert"
    cn, spiffe = pki["cn"], pki["spiffe"]
    curl = await asyncio.to_thread(
        subprocess.run,
        ["curl", "-sS", "--cacert", pki["server_ca_file"], "--cert", str(cn.cert), "--key", str(cn.key),
         "-o", "/dev/null", "-w", "%{http_code} %{ssl_verify_result}", url],
        capture_output=True, text=True, timeout=20, check=False,
    )
    assert curl.stdout == "200 0", curl.stderr
    ctx = ssl.create_default_context(cafile=pki["server_ca_file"])
    ctx.load_cert_chain(*spiffe.as_tuple())
    async with httpx.AsyncClient(verify=ctx) as client:
        r = await client.get(url)
    assert r.status_code == 200, r.text
    with httpx.Client(verify=ctx) as sync_client:
        r2 = await asyncio.to_thread(sync_client.get, url)
    assert r2.status_code == 200
    clients = [e["client"] for e in tls_signet.events() if e.get("event") == "request"]
    assert clients == ["billing-app", "mesh-app", "mesh-app"], clients


async def test_token_and_certificate_both_must_match(tls_signet: SignetProcess, pki: dict[str, Any]) -> None:
    url, ca = tls_signet.proxy_url + "/up/both", pki["server_ca_file"]
    both = await asyncio.to_thread(_get, url, ca, pki["both"], BOTH_TOKEN)
    assert both.status_code == 200, both.text
    token_only = await asyncio.to_thread(_get, url, ca, None, BOTH_TOKEN)
    assert token_only.status_code == 403 and token_only.headers["X-Signet-Error"] == "forbidden"
    assert "certificate" in token_only.json()["error"]["message"]
    cert_only = await asyncio.to_thread(_get, url, ca, pki["both"])
    assert cert_only.status_code == 407 and "token" in cert_only.json()["error"]["message"]
    wrong_cert = await asyncio.to_thread(_get, url, ca, pki["cn"], BOTH_TOKEN)
    assert wrong_cert.status_code == 403
    assert [e["client"] for e in tls_signet.events() if e.get("status") == 200] == ["reporting"]


# ----------------------------------------------------------------- refusals


async def test_unknown_identity_is_403_naming_only_the_subject(
    tls_signet: SignetProcess, pki: dict[str, Any]
) -> None:
    r = await asyncio.to_thread(_get, tls_signet.proxy_url + "/up/x", pki["server_ca_file"], pki["stranger"])
    assert r.status_code == 403 and r.headers["X-Signet-Error"] == "forbidden"
    message = r.json()["error"]["message"]
    assert "CN=stranger" in message and "BEGIN" not in message


@pytest.mark.parametrize("which", ["rogue", "expired"])
async def test_untrusted_or_expired_client_certificate_fails_the_handshake(
    tls_signet: SignetProcess, pki: dict[str, Any], which: str
) -> None:
    # TLS 1.3 checks the client's certificate after the client's side of the handshake is done,
    # so the refusal shows as an alert or a closed connection (requests' SSLError is one of these)
    with pytest.raises(requests.exceptions.ConnectionError):
        await asyncio.to_thread(_get, tls_signet.proxy_url + "/up/x", pki["server_ca_file"], pki[which])
    # nothing of it reached the upstream or counts as a request
    assert not [e for e in tls_signet.events() if e.get("event") == "request"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the point is to offer them
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
async def test_old_tls_versions_are_refused(tls_signet: SignetProcess, version: ssl.TLSVersion) -> None:
    host, port = tls_signet.proxy_url.removeprefix("https://").rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        ctx.minimum_version = ctx.maximum_version = version
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip(f"this OpenSSL cannot even offer {version.name}")

    def handshake() -> None:
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1"):
                pass

    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await asyncio.to_thread(handshake)


async def test_plain_http_to_the_tls_port_fails_cleanly(
    tls_signet: SignetProcess, pki: dict[str, Any]
) -> None:
    host, port = tls_signet.proxy_url.removeprefix("https://").rsplit(":", 1)

    def plain() -> bytes:
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"GET /up/x HTTP/1.1\r\nHost: x\r\n\r\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)

    got = await asyncio.to_thread(plain)
    assert not got.startswith(b"HTTP/")  # no HTTP answer in clear, and the connection ends
    # still serving, and nothing but JSON lines in its log: no traceback
    after = await asyncio.to_thread(
        _get, tls_signet.proxy_url + "/up/after", pki["server_ca_file"], token=BILLING_TOKEN
    )
    assert after.status_code == 200
    text = tls_signet.text()
    assert "Traceback" not in text and all(
        line.startswith("{") for line in text.splitlines() if line.strip()
    ), text


# ------------------------------------------------------------------ config


def _config(pki: dict[str, Any], **over: Any) -> str:
    data: dict[str, Any] = {
        "listen": "0.0.0.0:8443",
        "clients": [{"name": "a", "token": BILLING_TOKEN}],
        "routes": [{"prefix": "/a", "upstream": "http://h"}],
        **over,
    }
    return yaml.safe_dump(data, sort_keys=False)


def _problems(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, env={})
    return str(info.value)


def test_plaintext_tokens_on_a_public_listener_are_refused(pki: dict[str, Any]) -> None:
    msg = _problems(_config(pki))
    assert "listen_tls" in msg and "allow_plaintext_tokens" in msg and "in clear" in msg
    load_config_text(_config(pki, allow_plaintext_tokens=True), env={})
    load_config_text(_config(pki, listen="127.0.0.1:8080"), env={})  # loopback never crosses a network
    tls = {"cert_file": str(pki["server"].cert), "key_file": str(pki["server"].key)}
    assert load_config_text(_config(pki, listen_tls=tls), env={}).listen_tls is not None


def test_signet_check_reports_plaintext_tokens(pki: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(_config(pki))
    out = subprocess.run(
        ["python", "-m", "proxy", "check", "--config", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.returncode == 1
    assert "allow_plaintext_tokens" in out.stdout + out.stderr and BILLING_TOKEN not in out.stdout + out.stderr


def test_listen_tls_files_are_checked(pki: dict[str, Any], tmp_path: Path) -> None:
    d: Path = pki["dir"]
    missing = _problems(_config(pki, listen_tls={"cert_file": str(tmp_path / "no.crt"), "key_file": "/nope"}))
    assert "listen_tls.cert_file" in missing and "cannot read" in missing
    mismatch = _problems(_config(pki, listen_tls={"cert_file": str(d / "server.crt"), "key_file": str(d / "cn.key")}))
    assert "listen_tls.key_file" in mismatch and "cannot be used together" in mismatch
    expired = _problems(_config(pki, listen_tls={"cert_file": str(d / "expired.crt"), "key_file": str(d / "expired.key")}))
    assert "expired" in expired
    no_ca = _problems(
        _config(
            pki,
            listen_tls={"cert_file": str(d / "server.crt"), "key_file": str(d / "server.key")},
            clients=[{"name": "m", "cert": {"subject_cn": "m"}}],
        )
    )
    assert "clients[0].cert" in no_ca and "client_ca_file" in no_ca
    neither = _problems(_config(pki, allow_plaintext_tokens=True, clients=[{"name": "m"}]))
    assert "clients[0]" in neither and "'token', a 'cert', or both" in neither
    both_fields = _problems(
        _config(pki, allow_plaintext_tokens=True, clients=[{"name": "m", "cert": {"subject_cn": "a", "san_uri": "b"}}])
    )
    assert "exactly one of subject_cn or san_uri" in both_fields


# ---------------------------------------------------------------- rotation


def _served_serial(host: str, port: int, cafile: str | None) -> int:
    ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl._create_unverified_context()
    with socket.create_connection((host, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            der = tls.getpeercert(binary_form=True)
    from cryptography import x509

    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@pytest.mark.skipif(not shutil.which("wrk"), reason="wrk is not installed (Debian: apt-get install wrk)")
@pytest.mark.timeout(120)
async def test_certificate_rotation_under_load_drops_nothing(
    upstream: Any, pki: dict[str, Any], signet_process: Callable[..., SignetProcess], tmp_path: Path
) -> None:
    live = tmp_path / "live"
    live.mkdir()
    first = server_pair(pki["server_ca"], tmp_path, "first")
    second = server_pair(trustme.CA(), tmp_path, "second")  # another CA: which one is served shows
    shutil.copy(first.cert, live / "tls.crt")
    shutil.copy(first.key, live / "tls.key")
    config = yaml.safe_dump(
        {
            "listen": "127.0.0.1:0",
            "admin_listen": "127.0.0.1:0",
            "listen_tls": {"cert_file": str(live / "tls.crt"), "key_file": str(live / "tls.key")},
            "routes": [{"name": "up", "prefix": "/up", "upstream": str(upstream.make_url("")).rstrip("/")}],
        }
    )
    proc = signet_process(config)
    host, port_text = proc.proxy_url.removeprefix("https://").rsplit(":", 1)
    port = int(port_text)
    before = await asyncio.to_thread(_served_serial, host, port, pki["server_ca_file"])
    # new connections for every request (Connection: close), so handshakes go on throughout
    wrk = await asyncio.create_subprocess_exec(
        "wrk", "-t1", "-c8", "-d4s", "-H", "Connection: close", proc.proxy_url + "/up/rotate",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    await asyncio.to_thread(proc.wait_event, "request")  # load is flowing
    # what cert-manager does to a Secret volume: new files renamed into place, key last
    for src, name in ((second.cert, "tls.crt"), (second.key, "tls.key")):
        tmp = live / f".{name}.new"
        shutil.copy(src, tmp)
        os.replace(tmp, live / name)
    event = await asyncio.to_thread(proc.wait_event, "listen_tls_reloaded", 10.0)
    assert event["cert_file"].endswith("tls.crt")
    after = await asyncio.to_thread(_served_serial, host, port, None)
    assert after != before
    out, err = await asyncio.wait_for(wrk.communicate(), 60)
    report = out.decode()
    assert wrk.returncode == 0, err.decode()
    done = int(report.split(" requests in")[0].split()[-1])
    assert done > 0 and "Socket errors" not in report and "Non-2xx" not in report, report
    # every answer Signet gave was a 200; a 499 is a request wrk itself cut off when its time was up
    statuses = {e["status"] for e in proc.events() if e.get("event") == "request"}
    assert 200 in statuses and statuses <= {200, 499}, statuses


async def test_a_new_client_ca_in_the_bundle_is_trusted_without_a_restart(
    upstream: Any, pki: dict[str, Any], signet_process: Callable[..., SignetProcess], tmp_path: Path
) -> None:
    bundle = tmp_path / "clients-ca.pem"
    shutil.copy(pki["client_ca_file"], bundle)
    newer_ca = trustme.CA()
    newcomer = client_pair(newer_ca, tmp_path, "newcomer", common_name="billing-app")
    config = yaml.safe_load(tls_config(str(upstream.make_url("")).rstrip("/"), pki))
    config["listen_tls"]["client_ca_file"] = str(bundle)
    proc = signet_process(yaml.safe_dump(config))
    url, ca = proc.proxy_url + "/up/ca", pki["server_ca_file"]
    with pytest.raises(requests.exceptions.ConnectionError):
        await asyncio.to_thread(_get, url, ca, newcomer)
    # rotation the usual way: the new CA is added to the bundle beside the old one
    staged = tmp_path / "bundle.new"
    staged.write_bytes(bundle.read_bytes() + newer_ca.cert_pem.bytes())
    os.replace(staged, bundle)
    event = await asyncio.to_thread(proc.wait_event, "listen_tls_reloaded", 10.0)
    assert event["client_ca_file"] == str(bundle)
    assert (await asyncio.to_thread(_get, url, ca, newcomer)).status_code == 200
    assert (await asyncio.to_thread(_get, url, ca, pki["cn"])).status_code == 200  # the old CA still works

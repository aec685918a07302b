"""The local CA: `signet ca init` / `ca show`, the forward_proxy config block, leaf certificates.

Certificates are checked with tools that are not Signet's: `openssl` for the
fingerprint and the chain, the ssl module for real TLS handshakes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from proxy.config import load_config_text
from proxy.errors import ConfigError
from proxy.forward_proxy.ca import load_ca
from proxy.forward_proxy.leaf import LEAF_LIFETIME, LeafCertificates
from tests.conftest import ROOT
from tests.forward.ca_helpers import handmade_ca, register_key

OPENSSL = shutil.which("openssl")


def signet(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    out = tmp_path / "ca"
    done = signet("ca", "init", "--out", str(out))
    assert done.returncode == 0, done.stderr
    register_key((out / "ca-key.pem").read_bytes())
    return out


def fp_config(ca: str, routes: str = "", other: str = "") -> str:
    return f"""
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
forward_proxy:
  ca: {ca}
{other}
routes:
  - name: threecommas
    prefix: /3commas
    upstream: https://api.3commas.io
{routes}
"""


def files(ca_dir: Path) -> str:
    return f"{{cert_file: {ca_dir / 'ca.pem'}, key_file: {ca_dir / 'ca-key.pem'}}}"


# ------------------------------------------------------------------ ca init


def test_ca_init_writes_a_ten_year_ca_and_a_private_key(ca_dir: Path) -> None:
    cert_path, key_path = ca_dir / "ca.pem", ca_dir / "ca-key.pem"
    assert stat.S_IMODE(cert_path.stat().st_mode) == 0o644
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=3650) <= life <= dt.timedelta(days=3651)
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    load_ca(cert_path.read_bytes(), key_path.read_bytes())  # the key matches


@pytest.mark.parametrize("existing", ["ca.pem", "ca-key.pem"])
def test_ca_init_refuses_to_overwrite(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).write_text("keep me")
    done = signet("ca", "init", "--out", str(tmp_path))
    assert done.returncode == 1
    assert "refusing to overwrite" in done.stderr and existing in done.stderr
    assert (tmp_path / existing).read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]


def test_ca_init_twice_keeps_the_first_ca(ca_dir: Path) -> None:
    before = (ca_dir / "ca-key.pem").read_bytes()
    assert signet("ca", "init", "--out", str(ca_dir)).returncode == 1
    assert (ca_dir / "ca-key.pem").read_bytes() == before


# ------------------------------------------------------------------ ca show


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
def test_ca_show_prints_subject_fingerprint_expiry_and_trust_steps(ca_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "signet.yaml"
    config.write_text(fp_config(files(ca_dir)))
    done = signet("ca", "show", "--config", str(config))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    ours = subprocess.run(
        [str(OPENSSL), "x509", "-in", str(ca_dir / "ca.pem"), "-noout", "-fingerprint", "-sha256",
         "-enddate", "-subject"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    fingerprint = ours.split("Fingerprint=")[1].split()[0]
    assert fingerprint in out
    assert "Signet local CA" in out
    cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    assert f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC" in out
    for needle in ("--cacert", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "AWS_CA_BUNDLE",
                   "NODE_EXTRA_CA_CERTS", "keytool -importcert", "update-ca-certificates"):
        assert needle in out, needle
    assert str(ca_dir / "ca.pem") in out
    key_text = (ca_dir / "ca-key.pem").read_text()
    assert key_text.splitlines()[1] not in out + done.stderr


def test_ca_show_without_a_forward_proxy_block_says_what_to_do(tmp_path: Path) -> None:
    config = tmp_path / "signet.yaml"
    config.write_text("routes: [{prefix: /a, upstream: 'https://a.example'}]\n")
    done = signet("ca", "show", "--config", str(config))
    assert done.returncode == 1
    assert "signet ca init" in done.stderr and "forward_proxy" in done.stderr


def test_ca_show_cert_file(ca_dir: Path) -> None:
    done = signet("ca", "show", "--cert", str(ca_dir / "ca.pem"))
    assert done.returncode == 0 and "NODE_EXTRA_CA_CERTS" in done.stdout


# ------------------------------------------------------------ config + check


def test_check_reports_the_forward_proxy_and_route_hosts(ca_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "signet.yaml"
    config.write_text(
        fp_config(
            files(ca_dir),
            routes="""  - name: vendor
    prefix: /vendor
    upstream: https://gw.vendor.example:8443/api
    hosts: [vendor.example, 'legacy.vendor.example:443']
""",
        )
    )
    done = signet("check", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "forward proxy: CA" in done.stdout and "other hosts: refuse" in done.stdout
    assert "hosts api.3commas.io:443" in done.stdout
    assert "hosts vendor.example:8443, legacy.vendor.example:443" in done.stdout
    register_key((ca_dir / "ca-key.pem").read_bytes())
    for line in (ca_dir / "ca-key.pem").read_text().splitlines()[1:-1]:
        assert line not in done.stdout + done.stderr


def _problems(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, env=env or {})
    return "\n".join(str(p) for p in caught.value.problems)


def test_check_refuses_a_ca_that_cannot_be_used(ca_dir: Path, tmp_path: Path) -> None:
    other_cert, other_key = handmade_ca(tmp_path, "other")
    expired_cert, expired_key = handmade_ca(
        tmp_path, "expired", not_after=dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    )
    leaf_cert, leaf_key = handmade_ca(tmp_path, "notaca", ca=False)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    cases = {
        f"{{cert_file: {tmp_path / 'missing.pem'}, key_file: {ca_dir / 'ca-key.pem'}}}": (
            "forward_proxy.ca.cert_file", "cannot read CA certificate"),
        f"{{cert_file: {ca_dir / 'ca.pem'}, key_file: {tmp_path / 'missing-key.pem'}}}": (
            "forward_proxy.ca.key_file", "cannot read CA key"),
        f"{{cert_file: {ca_dir / 'ca.pem'}, key_file: {other_key}}}": (
            "forward_proxy.ca.key_file", "does not match"),
        f"{{cert_file: {expired_cert}, key_file: {expired_key}}}": (
            "forward_proxy.ca.cert_file", "expired on"),
        f"{{cert_file: {leaf_cert}, key_file: {leaf_key}}}": (
            "forward_proxy.ca.cert_file", "not a CA certificate"),
        f"{{cert_file: {garbage}, key_file: {leaf_key}}}": (
            "forward_proxy.ca.cert_file", "not a PEM certificate"),
        f"{{cert_file: {ca_dir / 'ca.pem'}, key_file: {garbage}}}": (
            "forward_proxy.ca.key_file", "not a PEM private key"),
        f"{{cert_file: {ca_dir / 'ca.pem'}}}": ("forward_proxy.ca", "one of them is required"),
        f"{{cert_file: {ca_dir / 'ca.pem'}, key_file: {ca_dir / 'ca-key.pem'}, key: '${{K}}'}}": (
            "forward_proxy.ca", "not both"),
        f"{{cert_file: {ca_dir / 'ca.pem'}, key: literal-pem-text}}": (
            "forward_proxy.ca.key", "is a secret"),
    }
    assert other_cert.exists()
    for ca, (where, what) in cases.items():
        text = _problems(fp_config(ca), env={"K": "x"})
        assert where in text and what in text, (ca, text)
        for key in (ca_dir / "ca-key.pem", other_key, leaf_key):
            for line in key.read_text().splitlines()[1:-1]:
                assert line not in text


def test_check_through_the_cli_exits_1_with_the_location(ca_dir: Path, tmp_path: Path) -> None:
    other_cert, other_key = handmade_ca(tmp_path, "other2")
    config = tmp_path / "signet.yaml"
    config.write_text(fp_config(f"{{cert_file: {ca_dir / 'ca.pem'}, key_file: {other_key}}}"))
    done = signet("check", "--config", str(config))
    assert done.returncode == 1
    assert "forward_proxy.ca.key_file (line 5): the CA key does not match the CA certificate" in done.stderr


def test_the_key_may_come_as_pem_text_from_a_reference(ca_dir: Path, tmp_path: Path) -> None:
    key_text = (ca_dir / "ca-key.pem").read_text()
    for ref, env in (
        ("${CA_KEY}", {"CA_KEY": key_text}),
        (f"${{file:{ca_dir / 'ca-key.pem'}}}", {}),
    ):
        settings = load_config_text(fp_config(f"{{cert_file: {ca_dir / 'ca.pem'}, key: '{ref}'}}"), env=env)
        assert settings.forward_proxy is not None
        assert settings.forward_proxy.key_source == "a secret reference"
        assert key_text.strip() in settings.secret_values  # masked in every log line
        body = "".join(key_text.splitlines()[1:-1])
        assert body in settings.secret_values
        shown = repr(settings) + repr(settings.forward_proxy)
        assert body[:40] not in shown and key_text.splitlines()[1] not in shown


def test_an_empty_key_reference_is_an_error(ca_dir: Path) -> None:
    text = _problems(fp_config(f"{{cert_file: {ca_dir / 'ca.pem'}, key: '${{CA_KEY}}'}}"), {"CA_KEY": ""})
    assert "forward_proxy.ca.key" in text and "is empty" in text


def test_other_hosts_takes_refuse_or_tunnel(ca_dir: Path) -> None:
    s = load_config_text(fp_config(files(ca_dir), other="  other_hosts: tunnel"), env={})
    assert s.forward_proxy is not None and s.forward_proxy.other_hosts == "tunnel"
    text = _problems(fp_config(files(ca_dir), other="  other_hosts: allow"))
    assert "forward_proxy.other_hosts" in text


# ----------------------------------------------------------------- route hosts


def test_hosts_default_to_the_upstreams_host_and_port(ca_dir: Path) -> None:
    s = load_config_text(
        fp_config(
            files(ca_dir),
            routes="""  - prefix: /plain
    upstream: http://Plain.Example/base
  - prefix: /port
    upstream: https://port.example:8443
""",
        ),
        env={},
    )
    assert [r.hosts for r in s.routes] == [
        (("api.3commas.io", 443),),
        (("plain.example", 80),),
        (("port.example", 8443),),
    ]


def test_two_routes_claiming_one_host_is_a_located_error(ca_dir: Path) -> None:
    text = _problems(
        fp_config(
            files(ca_dir),
            routes="""  - name: v2
    prefix: /v2
    upstream: https://api.3commas.io/v2
""",
        )
    )
    assert "routes[1].upstream (line 13)" in text and "also claimed by routes[0]" in text
    text = _problems(
        fp_config(
            files(ca_dir),
            routes="""  - name: other
    prefix: /other
    upstream: https://other.example
    hosts: [other.example, API.3commas.io]
""",
        )
    )
    assert "routes[1].hosts[1]" in text and "'api.3commas.io'" in text
    # hosts: [] claims nothing: the two routes may share an upstream
    s = load_config_text(
        fp_config(
            files(ca_dir),
            routes="""  - name: v2
    prefix: /v2
    upstream: https://api.3commas.io/v2
    hosts: []
""",
        ),
        env={},
    )
    assert s.routes[1].hosts == ()


def test_hosts_need_forward_proxy_and_well_formed_names(ca_dir: Path) -> None:
    text = _problems(
        """routes:
  - prefix: /a
    upstream: https://a.example
    hosts: [a.example]
"""
    )
    assert "routes[0].hosts" in text and "forward_proxy" in text
    text = _problems(
        fp_config(
            files(ca_dir),
            routes="""  - prefix: /b
    upstream: https://b.example
    hosts: ['https://b.example/x', 'b.example:99999', '*.b.example']
""",
        )
    )
    for j in range(3):
        assert f"routes[1].hosts[{j}]" in text, text


def test_without_forward_proxy_routes_may_share_an_upstream_host() -> None:
    s = load_config_text(
        """routes:
  - {prefix: /a, upstream: 'https://same.example/a'}
  - {prefix: /b, upstream: 'https://same.example/b'}
""",
        env={},
    )
    assert s.forward_proxy is None


# -------------------------------------------------------------------- leaves


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def _handshake(
    context: ssl.SSLContext, ca_file: Path, sni: str, *, max_version: ssl.TLSVersion | None = None
) -> tuple[x509.Certificate, str | None]:
    """A real TLS handshake on loopback: the client trusts only ``ca_file`` and checks ``sni``."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(1)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    client = ssl.create_default_context(cafile=str(ca_file))
    client.set_alpn_protocols(["h2", "http/1.1"])
    if max_version is not None:
        client.minimum_version = ssl.TLSVersion.TLSv1
        client.maximum_version = max_version
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname=sni), 10
        )
        sslobj = writer.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True)
        alpn = sslobj.selected_alpn_protocol()
        writer.close()
        return x509.load_der_x509_certificate(der), alpn
    finally:
        server.close()
        await server.wait_closed()


async def test_a_leaf_is_a_short_lived_p256_certificate_for_the_host(ca_dir: Path) -> None:
    ca = load_ca((ca_dir / "ca.pem").read_bytes(), (ca_dir / "ca-key.pem").read_bytes())
    leaves = LeafCertificates(ca)
    try:
        cert, alpn = await _handshake(leaves.context_for("api.3commas.io"), ca_dir / "ca.pem", "api.3commas.io")
    finally:
        leaves.close()
    assert alpn == "http/1.1"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["api.3commas.io"]
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) <= LEAF_LIFETIME
    assert cert.issuer == ca.cert.subject
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


async def test_a_client_hello_for_another_host_is_refused(ca_dir: Path) -> None:
    ca = load_ca((ca_dir / "ca.pem").read_bytes(), (ca_dir / "ca-key.pem").read_bytes())
    leaves = LeafCertificates(ca)
    try:
        with pytest.raises((ssl.SSLError, ConnectionError)):  # an alert, or the server hung up
            await _handshake(leaves.context_for("api.3commas.io"), ca_dir / "ca.pem", "evil.example")
        # names compare as DNS does: case does not matter
        cert, _ = await _handshake(leaves.context_for("a.example"), ca_dir / "ca.pem", "A.Example")
        assert cert.subject.rfc4514_string() == "CN=a.example"
    finally:
        leaves.close()


async def test_tls_below_1_2_is_refused(ca_dir: Path) -> None:
    ca = load_ca((ca_dir / "ca.pem").read_bytes(), (ca_dir / "ca-key.pem").read_bytes())
    leaves = LeafCertificates(ca)
    try:
        with pytest.raises(ssl.SSLError):
            await _handshake(
                leaves.context_for("a.example"), ca_dir / "ca.pem", "a.example",
                max_version=ssl.TLSVersion.TLSv1_1,
            )
    finally:
        leaves.close()


def test_leaves_are_cached_renewed_with_a_third_left_and_bounded(ca_dir: Path) -> None:
    ca = load_ca((ca_dir / "ca.pem").read_bytes(), (ca_dir / "ca-key.pem").read_bytes())
    clock = FakeClock()
    leaves = LeafCertificates(ca, clock=clock, maxsize=3)
    try:
        first = leaves.context_for("a.example")
        assert leaves.context_for("A.example.") is first and leaves.minted == 1
        clock.now += LEAF_LIFETIME.total_seconds() * 0.6
        assert leaves.context_for("a.example") is first
        clock.now += LEAF_LIFETIME.total_seconds() * 0.1  # past 2/3 of its life: renewed
        renewed = leaves.context_for("a.example")
        assert renewed is not first and leaves.minted == 2
        for host in ("b.example", "c.example", "d.example"):
            leaves.context_for(host)
        assert leaves.minted == 5
        leaves.context_for("a.example")  # evicted by the bound: minted again
        assert leaves.minted == 6
    finally:
        leaves.close()

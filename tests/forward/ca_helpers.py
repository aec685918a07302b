"""Certificates for the CA tests: a CA written by `signet ca init`, and broken ones made by hand."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import secret


def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def handmade_ca(
    tmp: Path,
    name: str,
    *,
    ca: bool = True,
    not_after: dt.datetime | None = None,
) -> tuple[Path, Path]:
    """A self-signed certificate and its key; ``ca=False`` or a past ``not_after`` make it unusable."""
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(not_after or now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{name}.pem", tmp / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem = pem_key(key)
    register_key(key_pem)
    key_path.write_bytes(key_pem)
    key_path.chmod(0o600)
    return cert_path, key_path


def register_key(pem: bytes) -> None:
    """A CA key is a secret for the suite's log audit: the whole PEM and each base64 line."""
    text = pem.decode()
    secret(text.strip())
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("-----")]
    secret("".join(lines))
    for ln in lines:
        if len(ln) >= 16:
            secret(ln)

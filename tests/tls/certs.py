"""Certificates for the listen_tls tests: trustme CAs, plus client certificates trustme cannot make.

trustme issues server certificates; client certificates here need a URI SAN
(SPIFFE IDs), an expiry in the past, or no SAN at all, so they are built with
``cryptography`` and signed by a trustme CA's key.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import secret


@dataclass
class Pair:
    cert: Path
    key: Path

    def as_tuple(self) -> tuple[str, str]:
        return str(self.cert), str(self.key)


def server_pair(ca: trustme.CA, directory: Path, name: str = "server") -> Pair:
    """A server certificate for 127.0.0.1 and localhost, its key registered with the log audit."""
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    leaf.private_key_pem.write_to_path(str(key))
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    secret(leaf.private_key_pem.bytes().decode())
    return Pair(cert, key)


def client_pair(
    ca: trustme.CA,
    directory: Path,
    name: str,
    *,
    common_name: str | None = None,
    uri: str | None = None,
    expired: bool = False,
) -> Pair:
    """A client certificate (clientAuth) with a subject CN and/or a URI SAN, signed by ``ca``."""
    issuer_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    issuer = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    not_after = now - datetime.timedelta(days=1) if expired else now + datetime.timedelta(days=1)
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=2))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    if uri:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False
        )
    cert = builder.sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_path.write_bytes(key_pem)
    secret(key_pem.decode())
    return Pair(cert_path, key_path)

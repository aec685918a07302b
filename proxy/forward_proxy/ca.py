"""The local certificate authority of forward-proxy mode.

An app that keeps its vendor URL (``https://api.3commas.io``) and goes through
``HTTPS_PROXY`` must see a certificate for that host it trusts: Signet mints it
from this CA (:mod:`proxy.forward_proxy.leaf`). ``signet ca init`` writes a new
CA, the config loads it (:func:`load_ca`, with every problem ``signet check``
reports), and ``signet ca show`` says how each kind of app trusts it.

The CA key can sign a certificate for any name its clients trust, so it is
handled like a vendor secret: written 0600, never logged, never in a repr.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import socket
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from proxy.errors import CAError

CA_CERT_NAME = "ca.pem"
CA_KEY_NAME = "ca-key.pem"
CA_LIFETIME = dt.timedelta(days=3650)  # 10 years: a local CA is re-trusted rarely

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class LocalCA:
    """A loaded CA: its certificate and the key that signs leaves (never shown)."""

    cert: x509.Certificate
    key: SigningKey = field(repr=False)
    cert_pem: bytes = field(repr=False)

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the DER certificate, as ``openssl x509 -fingerprint -sha256`` prints it."""
        digest = self.cert.fingerprint(hashes.SHA256())
        return ":".join(f"{b:02X}" for b in digest)

    @property
    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc

    def __repr__(self) -> str:
        return f"<LocalCA subject={self.subject!r} sha256={self.fingerprint[:23]}...>"


# ------------------------------------------------------------------- creating


def generate_ca(
    common_name: str | None = None, now: dt.datetime | None = None
) -> tuple[bytes, bytes]:
    """A new CA as (certificate PEM, private key PEM): ECDSA P-256, CA:TRUE pathlen 0, 10 years."""
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Signet"),
            x509.NameAttribute(
                NameOID.COMMON_NAME,
                common_name or f"Signet local CA ({socket.gethostname()[:30]} {now:%Y-%m-%d})",
            ),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))  # a client clock slightly behind still accepts it
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def write_ca(out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``signet ca init``: write ``ca.pem`` (0644) and ``ca-key.pem`` (0600); never overwrite."""
    out = Path(out_dir)
    cert_path, key_path = out / CA_CERT_NAME, out / CA_KEY_NAME
    existing = [str(p) for p in (cert_path, key_path) if p.exists() or p.is_symlink()]
    if existing:
        raise CAError(
            f"refusing to overwrite {' and '.join(existing)}: a CA that apps already trust "
            "would be lost; remove the files first, or pick another --out directory"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CAError(f"cannot create {str(out)!r}: {exc.strerror or exc}") from None
    cert_pem, key_pem = generate_ca()
    try:
        _write_new(key_path, key_pem, 0o600)  # the key first: a failure leaves no CA without its key
        try:
            _write_new(cert_path, cert_pem, 0o644)
        except BaseException:
            key_path.unlink(missing_ok=True)
            raise
    except FileExistsError as exc:  # created between the check and the write
        raise CAError(f"refusing to overwrite {exc.filename!r}") from None
    except OSError as exc:
        raise CAError(f"cannot write into {str(out)!r}: {exc.strerror or exc}") from None
    return cert_path, key_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` from the start (no window with wider permissions)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it: ca.pem must be readable by all
        os.write(fd, data)
    finally:
        os.close(fd)


# -------------------------------------------------------------------- loading


def load_ca(cert_pem: bytes, key_pem: bytes, now: dt.datetime | None = None) -> LocalCA:
    """A usable CA, or ValueError saying what is wrong (never quoting the key)."""
    cert = load_ca_cert(cert_pem, now)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise ValueError("the CA key is encrypted: give it without a passphrase") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not a PEM private key ({_reason(exc)})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError("the CA key must be an ECDSA or RSA key")
    if _public_der(key.public_key()) != _public_der(cert.public_key()):
        raise ValueError("the CA key does not match the CA certificate")
    return LocalCA(cert, key, cert.public_bytes(serialization.Encoding.PEM))


def load_ca_cert(cert_pem: bytes, now: dt.datetime | None = None) -> x509.Certificate:
    """The CA certificate, checked: PEM, a CA that may sign server certificates, in date."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise ValueError(f"not a PEM certificate ({_reason(exc)})") from None
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        basic = None
    if basic is None or not basic.ca:
        raise ValueError("not a CA certificate (basicConstraints CA:TRUE is missing)")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.key_cert_sign:
            raise ValueError("this CA certificate may not sign certificates (keyUsage lacks keyCertSign)")
    except x509.ExtensionNotFound:
        pass
    now = now or dt.datetime.now(dt.UTC)
    if cert.not_valid_after_utc <= now:
        raise ValueError(f"the CA certificate expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if cert.not_valid_before_utc > now:
        raise ValueError(
            f"the CA certificate is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )
    if not isinstance(cert.public_key(), ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise ValueError("the CA certificate must hold an ECDSA or RSA key")
    return cert


def _public_der(public: object) -> bytes:
    assert isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _reason(exc: BaseException) -> str:
    """A short reason that cannot quote the input (cryptography's messages never do; clip anyway)."""
    text = str(exc).split("\n", 1)[0]
    return text[:80] if text else type(exc).__name__


# ------------------------------------------------------------------- showing


def describe(ca: LocalCA | x509.Certificate, cert_path: str, now: dt.datetime | None = None) -> str:
    """``signet ca show``: what the CA is, and how each kind of app trusts it."""
    cert = ca.cert if isinstance(ca, LocalCA) else ca
    now = now or dt.datetime.now(dt.UTC)
    digest = ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))
    days = (cert.not_valid_after_utc - now).days
    path = shlex.quote(cert_path)
    return f"""Signet local CA (forward-proxy mode)
  subject:      {cert.subject.rfc4514_string()}
  sha256:       {digest}
  expires:      {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC (in {days} days)
  certificate:  {cert_path}

Point the app at Signet, e.g. HTTPS_PROXY=http://127.0.0.1:8080 (with NO_PROXY for
hosts it reaches directly), and make it trust this certificate:

  curl        curl --cacert {path} -x http://127.0.0.1:8080 https://api.vendor.example/...
              or: export CURL_CA_BUNDLE={path}
  Python      export REQUESTS_CA_BUNDLE={path}     (requests)
              export SSL_CERT_FILE={path}          (httpx, aiohttp, urllib, the ssl module)
  boto3       export AWS_CA_BUNDLE={path}          (boto3, botocore, the AWS CLI)
  Node        export NODE_EXTRA_CA_CERTS={path}    (added to Node's own list)
  Java        keytool -importcert -noprompt -alias signet-local-ca -file {path} \\
                -cacerts -storepass changeit
  Debian      cp {path} /usr/local/share/ca-certificates/signet-local-ca.crt && update-ca-certificates

CURL_CA_BUNDLE, REQUESTS_CA_BUNDLE, SSL_CERT_FILE and AWS_CA_BUNDLE replace the
default bundle: an app that also reaches other HTTPS hosts directly needs a bundle
with both, e.g. cat /etc/ssl/certs/ca-certificates.crt {path} > bundle.pem.
"""

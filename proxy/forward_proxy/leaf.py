"""Server certificates for route hosts, minted from the local CA on first use.

Each host gets an ECDSA P-256 key and a certificate whose only SAN is that
host, valid for a short time (:data:`LEAF_LIFETIME`): a leaked leaf is worth
little, and nothing needs revoking. A leaf is renewed once less than a third of
its life is left, so a long-running Signet never serves an expired one.

The ``ssl`` module loads a certificate only from a path, so each new leaf is
handed over through an anonymous memory file (Linux) or a private 0600 file
unlinked at once (elsewhere), into its own server context. The contexts are kept in a bounded LRU
cache; route hosts are few, so in practice each is minted once a day.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import ssl
import tempfile
import time
from collections.abc import Callable

from cachetools import LRUCache
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from proxy.forward_proxy.ca import LocalCA

LEAF_LIFETIME = dt.timedelta(hours=24)
CLOCK_SKEW = dt.timedelta(hours=1)  # not_before in the past: clients with a slow clock accept it
DEFAULT_CACHE_SIZE = 1024


def mint_leaf(ca: LocalCA, host: str, now: dt.datetime, lifetime: dt.timedelta = LEAF_LIFETIME) -> bytes:
    """PEM of a new private key followed by its certificate for ``host`` (one file for the ssl module)."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    san: x509.GeneralName
    try:
        san = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])]))
        .issuer_name(ca.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + lifetime, ca.cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    builder = builder.add_extension(_authority_key_id(ca), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem + cert.public_bytes(serialization.Encoding.PEM)


def _authority_key_id(ca: LocalCA) -> x509.AuthorityKeyIdentifier:
    """The CA's own key identifier when it has one (strict verifiers match on it)."""
    try:
        ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def same_host(a: str, b: str) -> bool:
    """Host names compared as DNS does: case-insensitive, a trailing dot ignored."""
    return a.rstrip(".").lower() == b.rstrip(".").lower()


class LeafCertificates:
    """Server TLS contexts per host, each with a leaf from the local CA (bounded, renewed)."""

    def __init__(
        self,
        ca: LocalCA,
        *,
        lifetime: dt.timedelta = LEAF_LIFETIME,
        maxsize: int = DEFAULT_CACHE_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ca = ca
        self.lifetime = lifetime
        self.clock = clock
        self.minted = 0  # leaves minted so far (renewals included)
        self._cache: LRUCache[str, tuple[ssl.SSLContext, float]] = LRUCache(maxsize=maxsize)
        self._dir: str | None = None

    def context_for(self, host: str) -> ssl.SSLContext:
        """The server context for ``host``: TLS 1.2+, ALPN http/1.1, another host's SNI refused."""
        host = host.rstrip(".").lower()
        now = self.clock()
        entry = self._cache.get(host)
        if entry is not None and now < entry[1]:
            return entry[0]
        context = self._new_context(host, dt.datetime.fromtimestamp(now, dt.UTC))
        renew_at = now + self.lifetime.total_seconds() * 2 / 3  # renewed with a third of its life left
        self._cache[host] = (context, renew_at)
        return context

    def _new_context(self, host: str, now: dt.datetime) -> ssl.SSLContext:
        pem = mint_leaf(self.ca, host, now, self.lifetime)
        self.minted += 1
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])
        _load_pem(context, pem, self._private_dir)
        context.sni_callback = _sni_check(host)
        return context

    def _private_dir(self) -> str:
        if self._dir is None or not os.path.isdir(self._dir):
            self._dir = tempfile.mkdtemp(prefix="signet-leaf-")  # 0700
        return self._dir

    def close(self) -> None:
        self._cache.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _load_pem(context: ssl.SSLContext, pem: bytes, private_dir: Callable[[], str]) -> None:
    """Load key + certificate PEM into ``context`` without leaving them on a disk.

    On Linux the PEM goes into an anonymous memory file (``memfd_create``), read
    back by path through /proc: nothing is written to a file system, so a
    container's root can stay read-only. Elsewhere: a 0600 file in a private
    0700 directory, unlinked at once.
    """
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("signet-leaf", getattr(os, "MFD_CLOEXEC", 0))
        try:
            os.write(fd, pem)
            context.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    path = os.path.join(private_dir(), f"leaf-{os.urandom(8).hex()}.pem")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        context.load_cert_chain(path)
    finally:
        os.unlink(path)


def _sni_check(host: str) -> Callable[[ssl.SSLObject, str | None, ssl.SSLContext], int | None]:
    """Refuse a ClientHello whose SNI names another host than the CONNECT did (fatal alert).

    A client that sends no SNI (an IP address, or an old client) gets this
    host's certificate, which is all it could be given anyway.
    """

    def check(conn: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> int | None:
        if server_name is None or same_host(server_name, host):
            return None
        return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME

    return check

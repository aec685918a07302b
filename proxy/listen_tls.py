"""The proxy listener over TLS (``listen_tls``), and clients known by certificate.

A shared Signet is reached across a network, so client tokens must not cross
it in clear. This module owns three things:

- :class:`ListenTLS`, the resolved ``listen_tls`` block, and
  :func:`listen_tls_problems`, which ``signet check`` and every start run: the
  files are readable, the key matches the certificate, the certificate has
  not expired, and a client CA is given when client certificates are wanted.
- :class:`ServerTLS`, the one server ``SSLContext`` of a process: TLS 1.2+,
  ALPN ``http/1.1``, optional client certificates. :meth:`ServerTLS.reload_if_changed`
  re-reads the certificate and key when they change on disk (cert-manager
  swaps the files of a Kubernetes Secret volume): the same context gets the
  new chain, so new handshakes present it, connections already open keep
  theirs, and nothing restarts. A half-written pair (the certificate swapped
  before its key) fails to load and is retried at the next check, the old
  pair still serving meanwhile.
- :class:`CertMatch` and :func:`peer_identity`: what a client certificate
  says about who is calling (its subject CN and URI SANs, e.g. SPIFFE IDs).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from proxy.upstream.tls import load_cert_pair

# How often the certificate files are looked at: two stat calls, cheap enough
# that a rotated certificate is served within a second or two.
CHECK_INTERVAL = 1.0


@dataclass(frozen=True)
class ListenTLS:
    """``listen_tls`` as configured."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    require_client_cert: bool = False


@dataclass(frozen=True)
class CertMatch:
    """``clients[].cert``: which client certificate names this client (exactly one field set)."""

    subject_cn: str | None = None
    san_uri: str | None = None

    def matches(self, peer: PeerIdentity) -> bool:
        if self.subject_cn is not None:
            return peer.common_name == self.subject_cn
        return self.san_uri is not None and self.san_uri in peer.uris

    def describe(self) -> str:
        return f"subject CN {self.subject_cn}" if self.subject_cn is not None else f"URI SAN {self.san_uri}"


@dataclass(frozen=True)
class PeerIdentity:
    """The verified client certificate of a TLS connection, reduced to what names a client."""

    common_name: str | None
    uris: tuple[str, ...]

    def describe(self) -> str:
        """The subject only (the contract: a refusal names nothing of the certificate beyond it)."""
        return f"CN={self.common_name}" if self.common_name is not None else "(no subject CN)"


def peer_identity(peercert: dict[str, Any] | None) -> PeerIdentity | None:
    """The identity in ``SSLObject.getpeercert()``'s answer; None without a (verified) certificate."""
    if not peercert:
        return None
    cn = None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                cn = value
    uris = tuple(value for kind, value in peercert.get("subjectAltName", ()) if kind == "URI")
    return PeerIdentity(cn, uris)


# ------------------------------------------------------------------ checking


def listen_tls_problems(tls: ListenTLS, now: datetime.datetime | None = None) -> list[tuple[str, str]]:
    """Every problem with ``tls`` as (field, message); empty when a server context can be built."""
    problems: list[tuple[str, str]] = []
    for name in ("cert_file", "key_file", "client_ca_file"):
        path = getattr(tls, name)
        if path is not None and not os.access(path, os.R_OK):
            problems.append((name, f"cannot read {path}"))
    if tls.require_client_cert and tls.client_ca_file is None:
        problems.append(
            ("require_client_cert", "client certificates are checked against client_ca_file: set it too")
        )
    if problems:
        return problems
    try:
        build_context(tls)
    except ssl.SSLError as exc:
        problems.append(("key_file", f"the key and certificate cannot be used together ({_ssl_words(exc)})"))
        return problems
    except (OSError, ValueError) as exc:
        problems.append(("cert_file", f"cannot load the certificate or key: {exc.__class__.__name__}"))
        return problems
    expiry = certificate_expiry(tls.cert_file)
    if expiry is not None and expiry <= (now or datetime.datetime.now(datetime.UTC)):
        problems.append(("cert_file", f"the certificate expired on {expiry:%Y-%m-%d %H:%M} UTC"))
    return problems


def certificate_expiry(path: str) -> datetime.datetime | None:
    """The first certificate's notAfter in ``path`` (None when it cannot be parsed)."""
    from cryptography import x509  # only configs with listen_tls pay for the import

    try:
        with open(path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError):
        return None
    return cert.not_valid_after_utc


def _ssl_words(exc: ssl.SSLError) -> str:
    if exc.reason is None:  # OpenSSL names no reason for a key it could not decrypt
        return "an encrypted key, or not a PEM key: give Signet an unencrypted PEM key"
    return str(exc.reason).lower().replace("_", " ")


def build_context(tls: ListenTLS) -> ssl.SSLContext:
    """The server context: TLS 1.2+, ALPN http/1.1, client certificates as configured."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    load_cert_pair(ctx, tls.cert_file, tls.key_file)
    if tls.client_ca_file is not None:
        ctx.load_verify_locations(cafile=tls.client_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    return ctx


# ------------------------------------------------------------------- serving


def _stamp(paths: Iterable[str]) -> tuple[tuple[int, int, int], ...]:
    """What changes when a file is replaced: inode (a renamed-in file), mtime and size."""
    out = []
    for path in paths:
        try:
            st = os.stat(path)  # follows the ..data symlink of a Secret volume
        except OSError:
            out.append((-1, -1, -1))
        else:
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(out)


class ServerTLS:
    """The listener's SSLContext, kept in step with the certificate files on disk."""

    def __init__(self, tls: ListenTLS, on_event: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.tls = tls
        self.context = build_context(tls)
        self._stamp = _stamp(self._paths())
        self._ca_stamp = _stamp(self._ca_paths())
        self._on_event = on_event or (lambda event, fields: None)
        self.reloads = 0
        self._task: asyncio.Task[None] | None = None

    def _paths(self) -> tuple[str, ...]:
        return (self.tls.cert_file, self.tls.key_file)

    def _ca_paths(self) -> tuple[str, ...]:
        return (self.tls.client_ca_file,) if self.tls.client_ca_file else ()

    def _reload_client_ca(self) -> None:
        """A changed client CA bundle is added to what verifies clients.

        OpenSSL's store only grows: a CA taken out of the bundle stays trusted
        until a restart (rotate by adding the new CA first, as usual).
        """
        stamp = _stamp(self._ca_paths())
        if stamp == self._ca_stamp or self.tls.client_ca_file is None:
            return
        try:
            self.context.load_verify_locations(cafile=self.tls.client_ca_file)
        except (ssl.SSLError, OSError) as exc:
            self._on_event(
                "listen_tls_reload_failed",
                {"client_ca_file": self.tls.client_ca_file, "reason": exc.__class__.__name__},
            )
            return
        self._ca_stamp = stamp
        self._on_event("listen_tls_reloaded", {"client_ca_file": self.tls.client_ca_file})

    def reload_if_changed(self) -> bool:
        """Load the chain again if either file changed; True when the new pair is now served."""
        self._reload_client_ca()
        stamp = _stamp(self._paths())
        if stamp == self._stamp:
            return False
        try:
            load_cert_pair(self.context, self.tls.cert_file, self.tls.key_file)
        except (ssl.SSLError, OSError, ValueError) as exc:
            # mid-rotation (certificate swapped, key not yet) or a bad file: keep serving the
            # old pair, try again at the next check; the stamp is not taken, so it is retried
            self._on_event(
                "listen_tls_reload_failed",
                {"cert_file": self.tls.cert_file, "reason": exc.__class__.__name__},
            )
            return False
        self._stamp = stamp
        self.reloads += 1
        self._on_event("listen_tls_reloaded", {"cert_file": self.tls.cert_file})
        return True

    def retarget(self, tls: ListenTLS) -> None:
        """Serve from the files a reloaded config names (checked now, not at the next tick)."""
        if tls.client_ca_file != self.tls.client_ca_file:
            self._ca_stamp = ()  # another file: load it whatever its stamp
        self.tls = tls
        self.reload_if_changed()

    def start(self, interval: float = CHECK_INTERVAL) -> None:
        """Watch the files from now on (the running loop's task; :meth:`stop` ends it)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch(interval))

    async def _watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.reload_if_changed()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

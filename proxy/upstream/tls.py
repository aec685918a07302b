"""TLS client contexts for upstreams: verification, a private CA, a client certificate.

One context per distinct setting, built once: ``create_default_context``
reads the system trust store, which costs milliseconds.
"""

from __future__ import annotations

import functools
import ssl


@functools.lru_cache(maxsize=64)
def client_context(
    verify: bool = True,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
) -> ssl.SSLContext:
    """A context that verifies the vendor (unless told not to) and offers HTTP/1.1 by ALPN."""
    if verify:
        context = ssl.create_default_context(cafile=ca_file)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file:
        load_client_cert(context, cert_file, key_file)  # mTLS: the vendor asks for a client cert
    context.set_alpn_protocols(["http/1.1"])
    return context


def load_client_cert(context: ssl.SSLContext, cert_file: str, key_file: str | None) -> None:
    """Load a client certificate; an encrypted key fails instead of prompting on a terminal."""
    load_cert_pair(context, cert_file, key_file)


def load_cert_pair(context: ssl.SSLContext, cert_file: str, key_file: str | None) -> None:
    """A certificate chain and its key, client or server side: never a password prompt on the tty."""
    context.load_cert_chain(cert_file, key_file, password=_no_password)


def check_client_cert(cert_file: str, key_file: str | None) -> str | None:
    """Why the pair cannot be used (for the config check), or None when it loads."""
    try:
        load_client_cert(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), cert_file, key_file)
    except ssl.SSLError as exc:
        return f"cannot load the client certificate and key ({exc.reason or 'bad PEM'})"
    except OSError as exc:
        return f"cannot read the client certificate or key ({exc.strerror or type(exc).__name__})"
    return None


def _no_password() -> bytes:
    return b""  # encrypted keys are not supported: OpenSSL would otherwise ask on the tty

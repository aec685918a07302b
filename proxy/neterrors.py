"""Network failures in contract words: the one place they are mapped.

- :func:`upstream_failure`: an engine failure before the answer started ->
  ``502 upstream_unreachable`` / ``504 upstream_timeout``;
- :func:`mid_body_failure`: a failure after the answer started -> the code
  and reason logged for a response that is cut short;
- :func:`client_error_reason`: aiohttp client failures, for the OAuth2 token
  fetcher (which keeps aiohttp's ClientSession, see proxy/tokens.py).

Built from exception classes, fixed words and OS error strings only, never
from a URL's query or a header, so a reason can go into an error body or a
log line.
"""

from __future__ import annotations

import aiohttp

from proxy.errors import RequestError, UpstreamTimeout, UpstreamUnreachable
from proxy.upstream import (
    ConnectFailed,
    ConnectTimeout,
    ReadTimeout,
    UpstreamError,
)


def upstream_failure(
    exc: UpstreamError, *, route: str, host: str, port: int | None, read_timeout: float
) -> RequestError:
    """The contract error for an upstream that failed before answering."""
    where = f"{host}:{port}"
    if isinstance(exc, ConnectTimeout):
        return UpstreamTimeout(exc.reason, route=route)
    if isinstance(exc, ReadTimeout):
        return UpstreamTimeout(f"the upstream sent nothing for {read_timeout}s", route=route)
    if isinstance(exc, ConnectFailed):
        hint = " (a private CA? set tls.ca_file)" if exc.tls else ""
        return UpstreamUnreachable(f"cannot connect to upstream {where}: {exc.reason}{hint}", route=route)
    return UpstreamUnreachable(f"upstream {where}: {exc.reason}", route=route)


def mid_body_failure(exc: UpstreamError, read_timeout: float) -> tuple[str, str]:
    """(code, reason) for an answer cut after its head was relayed."""
    if isinstance(exc, ReadTimeout):
        return "upstream_timeout", f"upstream sent nothing for {read_timeout}s mid-body"
    return "upstream_reset", f"upstream connection failed mid-body: {type(exc).__name__}"


def client_error_reason(exc: aiohttp.ClientError) -> str:
    """A short phrase saying why a request to a token endpoint failed."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "DNS lookup failed"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "TLS certificate verification failed"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "TLS handshake failed"
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if isinstance(os_error, ConnectionRefusedError):
            return "connection refused"
        return os_error.strerror if os_error is not None and os_error.strerror else "connection failed"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "closed the connection before answering"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "incomplete answer"
    if isinstance(exc, aiohttp.ClientResponseError):  # the response head did not parse
        return "sent a malformed HTTP response"
    if isinstance(exc, aiohttp.ClientOSError):
        return exc.strerror or type(exc).__name__
    return type(exc).__name__


def is_tls_failure(exc: BaseException) -> bool:
    return isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError)

"""Words for aiohttp client failures, shared by the pipeline and the token fetcher.

Built from exception classes and OS error strings only, never from a URL's
query or a header, so a reason can go into an error body or a log line.
"""

from __future__ import annotations

import aiohttp


def client_error_reason(exc: aiohttp.ClientError) -> str:
    """A short phrase saying why a request to an upstream or token endpoint failed."""
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

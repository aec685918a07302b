"""What can go wrong talking to an upstream, as the engine reports it.

::

    UpstreamError
    ├── ConnectFailed        DNS, refused, reset or TLS failure while connecting
    ├── ConnectTimeout       DNS + TCP + TLS took longer than ``connect``
    ├── ReadTimeout          no byte for ``read`` seconds (``mid_body`` says where)
    ├── Malformed            the answer broke HTTP/1.1 framing or header syntax
    ├── Disconnected         the connection closed before the answer was complete
    │   └── StaleConnection  a reused pooled connection died before any byte: retryable
    └── RequestBodyFailed    reading the request body (the client's) failed

Messages are built from exception classes and fixed words only, never from
bytes the upstream or the client sent, so they can go into error bodies and
logs. :mod:`proxy.neterrors` maps these onto the contract's errors.
"""

from __future__ import annotations


class UpstreamError(Exception):
    """Base of every engine failure; ``reason`` is a short, safe phrase."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConnectFailed(UpstreamError):
    def __init__(self, reason: str, *, tls: bool = False, dns: bool = False) -> None:
        super().__init__(reason)
        self.tls = tls
        self.dns = dns


class ConnectTimeout(UpstreamError):
    pass


class ReadTimeout(UpstreamError):
    def __init__(self, reason: str, *, mid_body: bool) -> None:
        super().__init__(reason)
        self.mid_body = mid_body


class Malformed(UpstreamError):
    pass


class Disconnected(UpstreamError):
    def __init__(self, reason: str, *, mid_body: bool = False) -> None:
        super().__init__(reason)
        self.mid_body = mid_body


class StaleConnection(Disconnected):
    """A reused keep-alive connection closed before a single response byte."""


class RequestBodyFailed(UpstreamError):
    """The request body source raised; ``__cause__`` holds what it raised."""

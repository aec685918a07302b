"""Signet's upstream engine: a strict, lean HTTP/1.1 client made for a proxy.

- :mod:`.connection`: one connection, an asyncio Protocol around llhttp;
- :mod:`.pool`: per-origin keep-alive pools and ``Pool.request``;
- :mod:`.head`: the request head, one write, client's header spelling;
- :mod:`.tls`: client TLS contexts (verify, CA file, client certificate);
- :mod:`.errors`: what can fail, mapped to contract errors by :mod:`proxy.neterrors`.
"""

from proxy.upstream.errors import (
    ConnectFailed,
    ConnectTimeout,
    Disconnected,
    Malformed,
    ReadTimeout,
    RequestBodyFailed,
    StaleConnection,
    UpstreamError,
)
from proxy.upstream.pool import Origin, Pool, UpstreamResponse
from proxy.upstream.tls import client_context

__all__ = [
    "ConnectFailed",
    "ConnectTimeout",
    "Disconnected",
    "Malformed",
    "Origin",
    "Pool",
    "ReadTimeout",
    "RequestBodyFailed",
    "StaleConnection",
    "UpstreamError",
    "UpstreamResponse",
    "client_context",
]

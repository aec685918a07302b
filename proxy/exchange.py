"""The seam between a client's request and the upstream: ``prepare`` and the ``Exchange`` record.

:func:`prepare` builds the request Signet sends upstream (path, query, the
scheme's headers and query) for both ``serve`` (the pipeline) and
``signet sign`` (which prints it instead), so what ``sign`` shows is what the
pipeline sends. :class:`Exchange` is what one proxied request did, filled in
as the pipeline goes and read by the request log line and the metrics.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from multidict import CIMultiDict

from proxy.auth import AuthResult, AuthScheme, UpstreamRequest

if TYPE_CHECKING:
    from proxy.body import SignedBody
    from proxy.runtime import RouteRuntime


@dataclass(slots=True)
class Prepared:
    """The upstream request, signed."""

    method: str
    path: str  # raw upstream path (base path + the rest after the prefix)
    query: str  # raw query as sent ("" when none); a scheme may have added to it
    headers: CIMultiDict[str]  # the client's (already stripped) plus the scheme's
    result: AuthResult

    @property
    def target(self) -> str:
        """The request target sent upstream: raw path and query, byte for byte."""
        return f"{self.path}?{self.query}" if self.query else self.path


async def prepare(
    route: RouteRuntime,
    method: str,
    raw_path: str,
    headers: CIMultiDict[str],
    body: SignedBody | bytes | None,
    *,
    scheme: AuthScheme | None = None,
    apply: Callable[[UpstreamRequest], Awaitable[AuthResult]] | None = None,
) -> Prepared:
    """Sign one request for ``route``.

    ``raw_path`` is what followed the route prefix, with its query, exactly as
    the client sent it; ``headers`` the client's headers after stripping (they
    are updated in place with the scheme's, so a second call for a retry
    replaces the first attempt's values); ``body`` the buffered body, given to
    the scheme only when it needs it. ``scheme`` is the one signing this
    request (a client's own, ``auth_by_client``; default the route's);
    ``apply`` replaces its ``apply`` (``signet sign`` without fetching a token).
    """
    scheme = scheme or route.scheme
    rest, _, query = raw_path.partition("?")
    path = route.upstream_path(rest)
    request = UpstreamRequest(
        method=method,
        path=path,
        query=query,
        headers=headers,
        body=body if scheme.needs_body else None,
        scheme_host=route.origin,
    )
    result = await (apply or scheme.apply)(request)
    for name, value in result.headers.items():
        headers[name] = value
    return Prepared(method, path, query if result.query is None else result.query, headers, result)


@dataclass(slots=True)
class Exchange:
    """One proxied request, as the log line and the metrics see it."""

    route: str | None = None
    client: str | None = None
    upstream_status: int | None = None
    upstream_ms: float | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    error: str | None = None  # a contract code, or upstream_reset / client_disconnected
    message: str | None = None
    status_sent: int | None = None  # the status line already on its way to the client
    response: Any = None  # the answer being streamed (proxy.server.respond.Responder)
    body_stalled: bool = False  # the client's upload stalled (not the upstream)
    body: SignedBody | None = None  # a body read whole for signing; closed when the request ends

    def fail(self, code: str, message: str) -> None:
        self.error = code
        self.message = message

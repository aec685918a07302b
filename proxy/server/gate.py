"""Two decisions taken before a request reaches the pipeline, each in one function.

- :func:`serve_proxy_form`: CONNECT and absolute-form (``GET http://host/x``)
  are forward-proxy requests, served by :mod:`proxy.forward_proxy.gate` (or
  ``400 bad_request`` without a ``forward_proxy`` block).
- :func:`upgrade_refusal`: an upgrade request is ``400 bad_request`` naming
  the route option ``websocket: true``, and nothing is forwarded, unless it is
  a WebSocket handshake on a route with that option
  (:func:`proxy.websocket.upgrade_refusal` decides); then the pipeline relays
  the handshake and takes the transport over with ``Request.detach``
  (:meth:`proxy.server.protocol.ProxyConnection.detach`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proxy.errors import RequestError
from proxy.server.request import Request
from proxy.websocket import upgrade_refusal as websocket_refusal

if TYPE_CHECKING:
    from proxy.server.protocol import ProxyConnection


def is_proxy_form(request: Request) -> bool:
    """CONNECT, or a target that is not origin-form (absolute-form, ``*``)."""
    return request.method == "CONNECT" or not request.raw_path.startswith("/")


async def serve_proxy_form(request: Request, connection: ProxyConnection) -> Any:
    """A CONNECT or absolute-form request: forward-proxy mode serves it, or answers 400 without it."""
    from proxy.forward_proxy.gate import serve  # it builds on the listener's modules

    return await serve(request, connection)


def upgrade_refusal(request: Request, route: str, websocket: bool) -> RequestError | None:
    """The answer to an upgrade request (None: not an upgrade, or a WebSocket the route relays)."""
    if not request.upgrade:
        return None
    return websocket_refusal(
        route=route,
        websocket=websocket,
        method=request.method,
        http11=request.http11,
        has_body=request.body_exists,
        raw_headers=request.raw_headers,
    )

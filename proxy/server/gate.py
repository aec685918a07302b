"""Two decisions taken before a request reaches the pipeline, each in one function.

- :func:`proxy_form_refusal`: CONNECT and absolute-form (``GET http://host/x``)
  are forward-proxy requests. Until forward-proxy mode serves them, they are
  ``400 bad_request`` and the connection closes (a CONNECT would turn it into
  a tunnel). Forward-proxy mode replaces this function.
- :func:`upgrade_refusal`: an upgrade request is ``400 bad_request`` naming
  the route option ``websocket: true``, and nothing is forwarded, unless it is
  a WebSocket handshake on a route with that option
  (:func:`proxy.websocket.upgrade_refusal` decides); then the pipeline relays
  the handshake and takes the transport over with ``Request.detach``
  (:meth:`proxy.server.protocol.ProxyConnection.detach`).
"""

from __future__ import annotations

from proxy.errors import BadRequest, RequestError
from proxy.server.request import Request
from proxy.websocket import upgrade_refusal as websocket_refusal


def is_proxy_form(request: Request) -> bool:
    """CONNECT, or a target that is not origin-form (absolute-form, ``*``)."""
    return request.method == "CONNECT" or not request.raw_path.startswith("/")


def proxy_form_refusal(request: Request) -> RequestError | None:
    """The answer to a CONNECT or absolute-form request (None: serve it as usual)."""
    if request.method == "CONNECT":
        return BadRequest("CONNECT is not supported: Signet is a reverse proxy")
    if not request.raw_path.startswith("/"):
        return BadRequest("only origin-form request targets (/path?query) are accepted")
    return None


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

"""Two decisions taken before a request reaches the pipeline, each in one function.

- :func:`serve_proxy_form`: CONNECT and absolute-form (``GET http://host/x``)
  are forward-proxy requests, served by :mod:`proxy.forward_proxy.gate` (or
  ``400 bad_request`` without a ``forward_proxy`` block).
- :func:`upgrade_refusal`: any ``Upgrade`` request (WebSocket or other) is
  ``400 bad_request`` naming the route option ``websocket: true``, and nothing
  is forwarded. The WebSocket work wires its handshake in here and then takes
  the transport over with :meth:`proxy.server.protocol.ProxyConnection.detach`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proxy.errors import BadRequest, RequestError
from proxy.server.request import Request

if TYPE_CHECKING:
    from proxy.server.protocol import ProxyConnection


def is_proxy_form(request: Request) -> bool:
    """CONNECT, or a target that is not origin-form (absolute-form, ``*``)."""
    return request.method == "CONNECT" or not request.raw_path.startswith("/")


async def serve_proxy_form(request: Request, connection: ProxyConnection) -> Any:
    """A CONNECT or absolute-form request: forward-proxy mode serves it, or answers 400 without it."""
    from proxy.forward_proxy.gate import serve  # it builds on the listener's modules

    return await serve(request, connection)


def upgrade_refusal(request: Request) -> RequestError | None:
    """The answer to a request with an ``Upgrade`` header (None: not an upgrade)."""
    if not request.upgrade:
        return None
    return BadRequest(
        "protocol upgrades (Upgrade header) are not forwarded: a WebSocket needs a route "
        "with 'websocket: true'"
    )

"""Two decisions taken before a request reaches the pipeline, each in one function.

- :func:`proxy_form_refusal`: CONNECT and absolute-form (``GET http://host/x``)
  are forward-proxy requests. Until forward-proxy mode serves them, they are
  ``400 bad_request`` and the connection closes (a CONNECT would turn it into
  a tunnel). Forward-proxy mode replaces this function.
- :func:`upgrade_refusal`: any ``Upgrade`` request (WebSocket or other) is
  ``400 bad_request`` naming the route option ``websocket: true``, and nothing
  is forwarded. The WebSocket work wires its handshake in here and then takes
  the transport over with :meth:`proxy.server.protocol.ProxyConnection.detach`.
"""

from __future__ import annotations

from proxy.errors import BadRequest, RequestError
from proxy.server.request import Request


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


def upgrade_refusal(request: Request) -> RequestError | None:
    """The answer to a request with an ``Upgrade`` header (None: not an upgrade)."""
    if not request.upgrade:
        return None
    return BadRequest(
        "protocol upgrades (Upgrade header) are not forwarded: a WebSocket needs a route "
        "with 'websocket: true'"
    )

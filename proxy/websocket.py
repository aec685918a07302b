"""WebSocket on routes with ``websocket: true``: which upgrades pass, what goes upstream, the 101.

The handshake itself runs through the ordinary pipeline (inbound auth,
policy, rate limits, signing, the upstream engine with ``upgrade=True``);
this module holds the three decisions specific to it, so the pipeline only
calls them:

- :func:`upgrade_refusal`: an upgrade request (``Upgrade`` named by
  ``Connection``) is relayed only on a route with ``websocket: true``, only
  for ``Upgrade: websocket``, and only as a WebSocket handshake (GET,
  HTTP/1.1, no body);
  anything else is ``400 bad_request`` naming the route option, before a
  byte goes upstream. The messages never quote the client's bytes.
- :func:`handshake_headers`: the client's ``Upgrade`` and a ``Connection:
  Upgrade`` (hop-by-hop, so stripped for every other request) added back,
  in the client's spelling, to the headers the route signs and sends.
- :func:`switching_head`: the upstream's ``101`` head for the client, in
  the upstream's bytes (its reason, names, values and order), plus
  ``X-Request-Id``.

After the 101, :func:`proxy.tunnel.splice` carries the bytes.
"""

from __future__ import annotations

from collections.abc import Iterable

from proxy.errors import BadRequest, RequestError

_REQUEST_ID = b"x-request-id"


def _tokens(raw_headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """Every comma-separated token of every ``name`` header, lower case."""
    out: list[bytes] = []
    for n, v in raw_headers:
        if n.lower() == name:
            out += (t.strip().lower() for t in v.split(b","))
    return [t for t in out if t]


def upgrade_refusal(
    *,
    route: str,
    websocket: bool,
    method: str,
    http11: bool,
    has_body: bool,
    raw_headers: list[tuple[bytes, bytes]],
) -> RequestError | None:
    """For an upgrade request (``Upgrade`` named by ``Connection``): None when the route relays it."""
    if not websocket:
        return BadRequest(
            f"route {route!r} does not relay protocol upgrades: a WebSocket needs "
            "'websocket: true' on the route",
            route=route,
        )
    if _tokens(raw_headers, b"upgrade") != [b"websocket"]:
        return BadRequest(
            "only WebSocket upgrades ('Upgrade: websocket') are relayed, on routes with 'websocket: true'",
            route=route,
        )
    if method != "GET" or not http11 or has_body:
        return BadRequest(
            "a WebSocket handshake is a GET over HTTP/1.1 without a body (route option 'websocket: true')",
            route=route,
        )
    return None


def handshake_headers(raw_headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """The hop-by-hop headers a WebSocket handshake must carry upstream, in the client's spelling."""
    upgrade: list[tuple[str, str]] = []
    connection_name = "Connection"
    for n, v in raw_headers:
        lname = n.lower()
        if lname == b"upgrade":
            upgrade.append((n.decode("latin-1"), v.decode("utf-8", "surrogateescape")))
        elif lname == b"connection":
            connection_name = n.decode("latin-1")
    return [*upgrade, (connection_name, "Upgrade")]


def switching_head(reason: bytes, raw_headers: Iterable[tuple[bytes, bytes]], rid: str) -> bytes:
    """``HTTP/1.1 101 <reason>`` and the upstream's header lines as it sent them, plus X-Request-Id."""
    parts = [b"HTTP/1.1 101 ", reason, b"\r\n"]
    for name, value in raw_headers:
        if name.lower() != _REQUEST_ID:
            parts += (name, b": ", value, b"\r\n")
    parts += (b"X-Request-Id: ", rid.encode("latin-1"), b"\r\n\r\n")
    return b"".join(parts)

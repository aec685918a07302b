"""Signet's own HTTP/1.1 proxy listener, on llhttp (httptools), byte-exact both ways.

- :mod:`.listener`: ``loop.create_server``, the live connections, the drain;
- :mod:`.protocol`: one client connection (scanner, parser callbacks, keep-alive,
  pipelining, timers, ``detach`` for protocol upgrades);
- :mod:`.request`: the parsed request (raw header bytes in order, body stream);
- :mod:`.respond`: relayed heads and framing, trailers, 1xx, Signet's JSON errors;
- :mod:`.flow`: flow control both ways;
- :mod:`.gate`: the CONNECT/absolute-form refusal and the Upgrade decision.
"""

from proxy.server.listener import Listener
from proxy.server.protocol import ProxyConnection
from proxy.server.request import Request
from proxy.server.respond import ErrorAnswer, Responder

__all__ = ["ErrorAnswer", "Listener", "ProxyConnection", "Request", "Responder"]

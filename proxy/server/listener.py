"""The proxy listener: ``loop.create_server`` with a :class:`ProxyConnection` per client.

It keeps the set of live connections so a drain (SIGTERM, ``Signet.stop``)
can stop accepting, close idle keep-alive connections at once, let requests
in progress finish up to the grace period, and cut whatever is left.
"""

from __future__ import annotations

import asyncio
import socket
from ssl import SSLContext
from typing import Any

from proxy.server.protocol import Handler, ProxyConnection


class Listener:
    """The proxy socket and its connections."""

    def __init__(self, handler: Handler, limits: Any) -> None:
        self._handler = handler
        self._limits = limits
        self.connections: set[ProxyConnection] = set()
        self._server: asyncio.Server | None = None

    def _protocol(self) -> ProxyConnection:
        return ProxyConnection(self._handler, self._limits, self.connections)

    async def start(
        self,
        host: str,
        port: int,
        sock: socket.socket | None = None,
        ssl: SSLContext | None = None,
    ) -> None:
        """Serve ``sock`` (already bound and listening) or bind ``host:port``; OSError if busy.

        ``ssl``: listen_tls's context; the handshake is the event loop's, before a byte reaches
        the connection, so a client that speaks plain HTTP to it never gets a protocol at all.
        """
        loop = asyncio.get_running_loop()
        if sock is not None:
            self._server = await loop.create_server(self._protocol, sock=sock, backlog=1024, ssl=ssl)
        else:
            self._server = await loop.create_server(
                self._protocol, host or None, port, backlog=1024, reuse_address=True, ssl=ssl
            )

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        name = self._server.sockets[0].getsockname()
        return str(name[0]), int(name[1])

    async def drain(self, grace: float) -> None:
        """Stop accepting; finish requests in progress for up to ``grace`` seconds; close the rest."""
        server = self._server
        if server is None:
            return
        self._server = None
        server.close()
        for conn in list(self.connections):
            conn.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        await asyncio.sleep(0)  # let the aborted connections' tasks see their cancellation
        await server.wait_closed()

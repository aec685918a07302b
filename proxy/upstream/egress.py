"""Reaching vendors through an egress (forward) proxy.

- ``https://`` upstreams: a ``CONNECT vendor:443`` tunnel, then TLS to the
  vendor end to end (SNI and verification as without a proxy); the proxy sees
  only the CONNECT line and its own credentials. The CONNECT target always
  carries the port, the default one too (RFC 9110 §9.3.6: authority-form).
- ``http://`` upstreams, proxy URL with credentials: a ``CONNECT vendor:80``
  tunnel too, with plain HTTP inside it. ``Proxy-Authorization`` then sits in
  the CONNECT head alone, which the proxy consumes; a request in absolute form
  would carry it in the same head as the vendor's request, and whether it
  travels on is up to the proxy (tinyproxy without ``BasicAuth`` forwards it).
- ``http://`` upstreams, proxy without credentials: absolute form
  (``GET http://vendor/path HTTP/1.1``): no secret to protect, and it works
  with proxies that only allow CONNECT to port 443 (Squid's default).

``env`` mode reads the variables the way curl does: ``https_proxy`` /
``HTTPS_PROXY`` for https upstreams, ``http_proxy`` (and, unlike curl,
``HTTP_PROXY`` too, as the contract names it) for http ones, ``all_proxy`` /
``ALL_PROXY`` as a fallback, and ``no_proxy`` / ``NO_PROXY``: ``*``, host
names matched as domain suffixes (``example.com`` and ``.example.com`` both
match ``api.example.com``), IP addresses and CIDR ranges.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from yarl import URL

from proxy.upstream.errors import ConnectFailed

MAX_REPLY_HEAD = 16 * 1024


@dataclass(frozen=True)
class EgressProxy:
    """Where the egress proxy listens, and the credential only it ever receives."""

    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)  # "Basic ..." or None

    def __repr__(self) -> str:
        return f"EgressProxy({self.host}:{self.port}{', credentials=***' if self.authorization else ''})"


def aiohttp_proxy(proxy: EgressProxy | None) -> URL | None:
    """aiohttp's ``proxy=`` argument for a side request (a token endpoint, STS) of a route.

    The low-volume calls that keep aiohttp's client leave through the route's
    egress proxy too: CONNECT for https, absolute form for http, the proxy
    URL's credentials sent to the proxy only.
    """
    if proxy is None:
        return None
    user = password = None
    if proxy.authorization:
        login, _, pw = base64.b64decode(proxy.authorization.split(" ", 1)[1]).decode().partition(":")
        user, password = login, pw
    return URL.build(scheme="http", user=user, password=password, host=proxy.host, port=proxy.port)


def parse_proxy_url(text: str) -> EgressProxy:
    """``http://[user:pass@]host[:port]`` -> EgressProxy; ValueError names what is wrong."""
    if "://" not in text:
        text = "http://" + text  # curl's reading of a bare host:port
    try:
        url = URL(text)
        port = url.port
    except ValueError:  # yarl's words may quote the URL, which may hold a password
        raise ValueError("the egress proxy URL does not parse") from None
    if url.scheme != "http":
        raise ValueError("an egress proxy is reached over plain http:// (https:// proxies are not supported)")
    if not url.host:
        raise ValueError("the egress proxy URL has no host")
    if url.raw_path not in ("", "/") or url.raw_query_string:
        raise ValueError("the egress proxy URL takes no path or query")
    authorization = None
    if url.raw_user is not None:
        user = unquote(url.raw_user)
        password = unquote(url.raw_password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        authorization = f"Basic {token}"
    return EgressProxy(url.raw_host or url.host, port or 80, authorization)


def proxy_from_env(env: Mapping[str, str], scheme: str, host: str) -> EgressProxy | None:
    """The proxy ``env`` mode picks for an upstream, or None (direct)."""
    if no_proxy_matches(_first(env, "no_proxy", "NO_PROXY") or "", host):
        return None
    if scheme == "https":
        value = _first(env, "https_proxy", "HTTPS_PROXY")
    else:
        value = _first(env, "http_proxy", "HTTP_PROXY")
    value = value or _first(env, "all_proxy", "ALL_PROXY")
    return parse_proxy_url(value) if value else None


def no_proxy_matches(no_proxy: str, host: str) -> bool:
    host = host.strip("[]").lower().rstrip(".")
    address = _ip(host)
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        entry = entry.strip("[]")
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        entry = entry.lstrip(".").rstrip(".")
        if host == entry or host.endswith("." + entry):
            return True
    return False


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _first(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = env.get(name)
        if value:
            return value
    return None


# ------------------------------------------------------------------ CONNECT


def authority(host: str, port: int) -> str:
    """``host:port`` for CONNECT (RFC 9110 §9.3.6), the port always there; IPv6 in brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"



class _ConnectReply(asyncio.Protocol):
    """Collects the proxy's answer to CONNECT, up to the end of its head."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.head = loop.create_future()
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        if self.head.done():
            return
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end >= 0:
            self.head.set_result(self.buffer[: end + 4])
        elif len(self.buffer) > MAX_REPLY_HEAD:
            self.head.set_exception(ConnectFailed("egress proxy sent an oversized answer to CONNECT"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            self.head.set_exception(ConnectFailed("egress proxy closed the connection during CONNECT"))


async def open_tunnel(
    proxy: EgressProxy,
    host: str,
    port: int,
    context: ssl.SSLContext | None,
    factory: Callable[[], asyncio.Protocol],
) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
    """TCP to the proxy, ``CONNECT host:port``, then TLS to the vendor through the tunnel.

    With ``context`` None the tunnel carries plain HTTP (an ``http://`` vendor
    behind a proxy with credentials).
    """
    loop = asyncio.get_running_loop()
    try:
        transport, reply = await loop.create_connection(
            lambda: _ConnectReply(loop), proxy.host, proxy.port
        )
    except OSError as exc:
        raise ConnectFailed(f"egress proxy {proxy.host}:{proxy.port}: {_os_reason(exc)}") from None
    try:
        target = authority(host, port)
        lines = [f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"]
        if proxy.authorization:
            lines.append(f"Proxy-Authorization: {proxy.authorization}\r\n")
        lines.append("\r\n")
        transport.write("".join(lines).encode("latin-1"))
        head = await reply.head
        status = _status_of(head)
        if not 200 <= status < 300:
            what = {407: " (proxy authentication required or refused)", 403: " (forbidden)"}.get(status, "")
            raise ConnectFailed(f"egress proxy answered {status} to CONNECT{what}")
        if len(reply.buffer) > len(head):
            raise ConnectFailed("egress proxy sent bytes before the tunnel was set up")
        protocol = factory()
        if context is None:  # plain HTTP through the tunnel
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
            return transport, protocol
        tls = await loop.start_tls(transport, protocol, context, server_hostname=host)
        if tls is None:
            raise ConnectFailed("TLS handshake through the egress proxy failed", tls=True)
        protocol.connection_made(tls)
        return tls, protocol
    except BaseException:
        transport.close()
        raise


def _status_of(head: bytes) -> int:
    parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ConnectFailed("egress proxy sent a malformed answer to CONNECT")
    return int(parts[1])


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return exc.strerror or type(exc).__name__

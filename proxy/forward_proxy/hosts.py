"""Which route a forward-proxy request names: its host and port, against every route's ``hosts``.

Pure functions of strings, like :mod:`proxy.routes`: the place a mistake
would let an app reach a host with the wrong credentials, so kept small and
tested on its own.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from proxy.errors import BadRequest, Forbidden

_PORT = re.compile(r"[0-9]{1,5}\Z")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,253}\Z")


@dataclass(frozen=True, slots=True)
class Claim:
    """A route host as the table holds it: the route's name and the port it answers on."""

    route: str
    port: int


def normal_host(host: str) -> str:
    """Lower case, no trailing dot, IPv6 without brackets and in its canonical form."""
    host = host.strip("[]").rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def parse_authority(target: str) -> tuple[str, int]:
    """A CONNECT target (``host:port``, ``[v6]:port``) -> (host, port); BadRequest otherwise.

    RFC 9110 §9.3.6: the target of CONNECT is only the host and port; the port
    is required.
    """
    host, sep, port = target.rpartition(":")
    if not sep or not _PORT.match(port) or not 1 <= int(port) <= 65535:
        raise BadRequest("a CONNECT target must be host:port (e.g. api.vendor.example:443)")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise BadRequest("a CONNECT target has a malformed IPv6 address") from None
    elif not _NAME.match(host):
        raise BadRequest("a CONNECT target must be host:port (e.g. api.vendor.example:443)")
    return normal_host(host), int(port)


@dataclass(frozen=True, slots=True)
class AbsoluteTarget:
    """An absolute-form target split: ``http://host[:port]/path?query``."""

    scheme: str
    host: str
    port: int | None  # None: the URL named none
    path_query: str  # origin-form, always starting with '/'


def parse_absolute(target: str) -> AbsoluteTarget:
    """Split an absolute-form target without decoding anything; BadRequest when it is not one.

    The path and query are kept byte for byte (they are forwarded and signed as sent).
    """
    scheme, sep, rest = target.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise BadRequest("only origin-form (/path) or absolute http:// targets are accepted")
    slash = rest.find("/")
    question = rest.find("?")
    cut = min(i for i in (slash, question, len(rest)) if i >= 0)
    authority, path_query = rest[:cut], rest[cut:]
    if "@" in authority:
        raise BadRequest("a request target must not carry credentials (user@host)")
    if not path_query.startswith("/"):
        path_query = "/" + path_query
    host, port = authority, None
    if authority.startswith("["):
        inner, close, after = authority[1:].partition("]")
        if not close or (after and not after.startswith(":")):
            raise BadRequest("a request target has a malformed IPv6 address")
        host = inner
        if after:
            port = _port(after[1:])
    elif ":" in authority:
        host, _, port_text = authority.partition(":")
        port = _port(port_text)
    if not host or not (_NAME.match(host) or ":" in host):
        raise BadRequest("a request target has no valid host")
    return AbsoluteTarget(scheme.lower(), normal_host(host), port, path_query)


def _port(text: str) -> int:
    if not _PORT.match(text) or not 1 <= int(text) <= 65535:
        raise BadRequest("a request target has a malformed port")
    return int(text)


class HostTable:
    """Route hosts -> the route claiming each (config checks that no two routes claim one)."""

    def __init__(self, claims: Iterable[tuple[str, str, int]]) -> None:
        """``claims``: (route name, host, port) for every entry of every route's ``hosts``."""
        self._hosts: dict[str, Claim] = {}
        for route, host, port in claims:
            self._hosts.setdefault(normal_host(host), Claim(route, port))

    def __len__(self) -> int:
        return len(self._hosts)

    def claim(self, host: str) -> Claim | None:
        return self._hosts.get(normal_host(host))

    def route_for(self, host: str, port: int | None) -> str | None:
        """The route for ``host:port``; None for a host of no route; Forbidden for another port.

        ``port=None`` (an absolute-form URL without a port) takes the route's own.
        """
        found = self._hosts.get(normal_host(host))
        if found is None:
            return None
        if port is not None and port != found.port:
            raise Forbidden(
                f"{_shown(host)} is served by route {found.route!r} on port {found.port} only, "
                f"not {port}",
                route=found.route,
            )
        return found.route


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host

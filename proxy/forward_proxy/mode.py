"""Forward-proxy mode as a runtime holds it: the host table, the leaf certificates, the admission.

A CONNECT or absolute-form request is admitted here, before any byte goes
anywhere: inbound authentication first (as for the prefix form: a request
without a token is 407 whatever it names), then the host and port, then the
client's route list. What is admitted becomes a :class:`Binding` that every
request served for it carries; the pipeline resolves the route from it again
per request, so a reload that moves a host is honoured inside open tunnels.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from proxy.config import Client, ForwardProxySettings, Route
from proxy.errors import BadRequest, Forbidden, ProxyAuthRequired
from proxy.forward_proxy.hosts import HostTable, parse_absolute, parse_authority
from proxy.identity import identify

if TYPE_CHECKING:
    from proxy.listen_tls import PeerIdentity

Headers = Mapping[str, str]  # a case-insensitive multidict in practice


@dataclass(frozen=True, slots=True)
class Binding:
    """What a CONNECT (or an absolute-form request) named, and who asked."""

    host: str  # as normalised by hosts.normal_host
    port: int | None  # None: an absolute-form URL without a port
    client: str | None  # the inbound client, None without `clients`
    via: Literal["connect", "absolute"]


@dataclass(frozen=True, slots=True)
class ConnectAdmitted:
    """A CONNECT that may go on: intercepted for ``route``, or tunnelled blindly (route None)."""

    binding: Binding
    route: str | None


class ForwardMode:
    """One runtime's forward-proxy state (a reload builds a new one)."""

    def __init__(self, settings: ForwardProxySettings, routes: Sequence[Route]) -> None:
        self.settings = settings
        self.hosts = HostTable((r.name, host, port) for r in routes for host, port in r.hosts)
        from proxy.forward_proxy.leaf import LeafCertificates  # cryptography: forward-proxy mode only

        self.leaves = LeafCertificates(settings.ca, maxsize=settings.leaf_cache_size)

    @property
    def tunnel_other_hosts(self) -> bool:
        return self.settings.other_hosts == "tunnel"

    def carry_over(self, old: ForwardMode) -> None:
        """After a reload with the same CA, keep the leaves already minted."""
        if old.settings.ca.fingerprint == self.settings.ca.fingerprint:
            self.leaves, old.leaves = old.leaves, self.leaves

    def close(self) -> None:
        self.leaves.close()

    # ------------------------------------------------------------ admission

    def admit_connect(
        self,
        target: str,
        headers: Headers,
        clients: Sequence[Client] | None,
        peer: PeerIdentity | None = None,
    ) -> ConnectAdmitted:
        """Check a CONNECT: 400 bad target, 407/403 inbound auth, 403 host or port.

        The client's route list is checked by the caller (:func:`may_use`), which
        also counts the denial with the other policy refusals.
        """
        host, port = parse_authority(target)
        client = proxy_client(clients, headers, peer)
        route = self.hosts.route_for(host, port)  # Forbidden: a route host on another port
        if route is None and not self.tunnel_other_hosts:
            raise Forbidden(f"{_shown(host)} is the host of no route (forward_proxy.other_hosts: refuse)")
        return ConnectAdmitted(Binding(host, port, client, "connect"), route)

    def admit_absolute(
        self,
        target: str,
        headers: Headers,
        clients: Sequence[Client] | None,
        peer: PeerIdentity | None = None,
    ) -> tuple[Binding, str, str]:
        """Check an absolute-form request: its binding, route name and origin-form path and query.

        As for CONNECT, the client's route list is the caller's to check.
        """
        parsed = parse_absolute(target)
        client = proxy_client(clients, headers, peer)
        route = self.hosts.route_for(parsed.host, parsed.port)
        if route is None:
            raise Forbidden(f"{_shown(parsed.host)} is the host of no route")
        return Binding(parsed.host, parsed.port, client, "absolute"), route, parsed.path_query

    def route_of(self, binding: Binding) -> str:
        """The route a bound request goes to now (after a reload too); Forbidden when there is none."""
        route = self.hosts.route_for(binding.host, binding.port)
        if route is None:
            raise Forbidden(f"{_shown(binding.host)} is no longer the host of a route")
        return route


def reject_without_forward_proxy(method: str) -> BadRequest:
    """The contract's answer to CONNECT and absolute-form when forward-proxy mode is off."""
    if method == "CONNECT":
        return BadRequest(
            "CONNECT needs forward-proxy mode (a forward_proxy block in the config); "
            "otherwise send /<route prefix>/... to Signet"
        )
    return BadRequest(
        "absolute-form targets need forward-proxy mode (a forward_proxy block in the config); "
        "otherwise send origin-form /<route prefix>/..."
    )


# ----------------------------------------------------------- inbound clients


def proxy_client(
    clients: Sequence[Client] | None, headers: Headers, peer: PeerIdentity | None = None
) -> str | None:
    """The client a forward-proxy request authenticates as; 407 without credentials, 403 unknown.

    ``Proxy-Authorization: Bearer <token>`` as in the prefix form, or ``Basic``
    with the token as the password: what an SDK sends for
    ``HTTPS_PROXY=http://app:<token>@127.0.0.1:8080`` (the user name is not
    checked). ``X-Signet-Token`` is accepted too. On a ``listen_tls`` listener a
    client certificate counts as for the prefix form (:func:`proxy.identity.identify`).
    """
    if clients is None:
        return None
    presented: str | None = None
    value = headers.get("Proxy-Authorization")
    if value is not None:
        kind, _, credentials = value.strip().partition(" ")
        if kind.lower() == "bearer":
            presented = credentials.strip()
        elif kind.lower() == "basic":
            presented = _basic_password(credentials.strip())
    if presented is None:
        presented = headers.get("X-Signet-Token")
    given = presented.encode("utf-8", "surrogateescape") if presented else None
    if given is None and peer is None:
        raise ProxyAuthRequired(
            "this Signet requires a client token: put it in the proxy URL "
            "(HTTPS_PROXY=http://app:<token>@host:port) or send 'Proxy-Authorization: Bearer <token>'"
        )
    return identify(clients, given, peer)


def _basic_password(credentials: str) -> str | None:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8", "surrogateescape")
    except (binascii.Error, ValueError):
        return None
    _, sep, password = decoded.partition(":")
    return password if sep else None


def may_use(clients: Sequence[Client] | None, client: str | None, route: str) -> bool:
    """Whether ``client`` may use ``route`` (its ``routes``, or the routes its ``allow`` names)."""
    if clients is None or client is None:
        return clients is None
    for c in clients:
        if c.name == client:
            return c.routes is None or route in c.routes
    return False


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host

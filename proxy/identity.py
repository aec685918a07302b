"""Who is calling: a client token, a client certificate, or both.

One function for the listener to ask, whatever carried the credentials:

- A token (``Proxy-Authorization: Bearer`` or ``X-Signet-Token``) is compared
  with every client's token in constant time, so timing does not reveal which
  client matched. A client that also names a certificate must present it on
  the same connection: then both must match.
- Without a token, a verified client certificate names the client whose
  ``cert`` matches its subject CN or one of its URI SANs (SPIFFE IDs).
- Neither: 407. Something presented that names nobody: 403, whose message
  names nothing of a certificate beyond its subject.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from proxy.config import Client
from proxy.errors import Forbidden, ProxyAuthRequired
from proxy.listen_tls import PeerIdentity

TOKEN_HINT = (
    "this Signet requires a client token: send 'Proxy-Authorization: Bearer <token>' "
    "or 'X-Signet-Token: <token>'"
)


def identify(clients: Sequence[Client], token: bytes | None, peer: PeerIdentity | None) -> str:
    """The name of the client these credentials belong to (raises 407/403 otherwise)."""
    if token:
        found: Client | None = None
        for client in clients:  # every client compared: time does not reveal which matched
            if client.token is not None and hmac.compare_digest(token, client.token.reveal().encode()):
                found = client
        if found is None:
            raise Forbidden("unknown client token")
        if found.cert is not None and (peer is None or not found.cert.matches(peer)):
            raise Forbidden(f"client {found.name!r} must also present its client certificate")
        return found.name
    if peer is not None:
        for client in clients:
            if client.cert is not None and client.cert.matches(peer):
                if client.token is not None:
                    raise ProxyAuthRequired(f"client {client.name!r} must also send its token")
                return client.name
        raise Forbidden(f"no client is known by the certificate with subject {peer.describe()}")
    raise ProxyAuthRequired(TOKEN_HINT)

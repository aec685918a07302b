"""The one header policy: what is stripped from a request and from a response.

Kept in one module so the rules the contract states ("What is stripped") live
in one place and the pipeline, ``signet sign`` and the tests use the same ones.

Header names are compared by :func:`header_key`: case-insensitively and with
``_`` and ``-`` treated alike, because CGI, WSGI, Rack and PHP merge the two
spellings (``X_Api_Key`` reaches them as the ``X-Api-Key`` a scheme set).
Every ``Connection`` header counts, not only the first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from multidict import CIMultiDict, istr

from proxy.auth import all_injected_headers

if TYPE_CHECKING:
    from proxy.runtime import RouteRuntime

X_REQUEST_ID = istr("X-Request-Id")
CONNECTION = istr("Connection")
HOST = istr("Host")

# What Signet answers in ``Server`` on its own responses: no software or version.
SERVER_NAME = "Signet"


def header_key(name: str) -> str:
    """A header name as the strip rules compare it: lower case, ``_`` read as ``-``."""
    return name.lower().replace("_", "-")


def _keys(names: Iterable[str]) -> frozenset[str]:
    return frozenset(header_key(n) for n in names)


# Hop-by-hop (RFC 9110 §7.6.1) plus what the contract always strips. The names
# every scheme injects are added from the auth registry (:func:`stripped_names`).
ALWAYS_STRIPPED = _keys(
    (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Host",
        "Authorization",
        "Cookie",
        "Expect",  # Signet sends its own 100-continue expectation once the request is admitted
        "X-Signet-Token",  # inbound credential, never forwarded
    )
)

# Not copied from the upstream's response: hop-by-hop (the relay sets its own framing).
RESPONSE_STRIPPED = _keys(
    (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
    )
)

_RESPONSE_STRIPPED_RAW = frozenset(k.encode("latin-1") for k in RESPONSE_STRIPPED)

# Replaced, not appended to, when a route forwards client information.
CLIENT_INFO = _keys(("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "X-Real-IP"))


def stripped_names(strip_headers: Iterable[str], scheme_headers: Iterable[str]) -> frozenset[str]:
    """Every name stripped for a route, as :func:`header_key` keys.

    The always-stripped set, every header any registered scheme injects (so a
    client can never set a signature header, whatever the route's scheme), the
    route's ``strip_headers`` and the headers its own scheme instance sets
    (a recipe declares its own).
    """
    return ALWAYS_STRIPPED | _keys(all_injected_headers()) | _keys(strip_headers) | _keys(scheme_headers)


def connection_named(headers: Any) -> set[str]:
    """The keys of every header named by any ``Connection`` header (all of them count)."""
    named: set[str] = set()
    for value in headers.getall(CONNECTION, ()):
        for token in value.split(","):
            token = token.strip()
            if token:
                named.add(header_key(token))
    return named


def upstream_headers(
    client_headers: Any,
    route: RouteRuntime,
    rid: str,
    client_info: tuple[str, str] | None = None,
) -> CIMultiDict[str]:
    """The client's headers minus every credential and hop-by-hop header, plus the route's.

    ``client_info`` is (peer address, scheme) when the route forwards it; then
    the client's own ``X-Forwarded-*``, ``Forwarded`` and ``X-Real-IP`` are
    replaced by what Signet saw, never appended to (a client could otherwise
    claim any address).
    """
    stripped: frozenset[str] | set[str] = route.stripped
    if CONNECTION in client_headers:
        stripped = stripped | connection_named(client_headers)
    if client_info is not None:
        stripped = stripped | CLIENT_INFO
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in client_headers.items():
        if header_key(name) not in stripped:
            out.add(name, value)
    out[X_REQUEST_ID] = rid
    if client_info is not None:
        peer, scheme = client_info
        host = client_headers.get(HOST, "")
        out["X-Forwarded-For"] = peer
        out["X-Forwarded-Proto"] = scheme
        out["X-Forwarded-Host"] = host
        out["X-Real-IP"] = peer
        node = f"[{peer}]" if ":" in peer else peer
        out["Forwarded"] = f'for="{node}";proto={scheme}' + (f';host="{_quoted(host)}"' if host else "")
    for name, value in route.set_headers:
        out[name] = value
    return out


def relayed_header_lines(
    raw: list[tuple[bytes, bytes]], also: frozenset[bytes] = frozenset()
) -> list[tuple[bytes, bytes]]:
    """The upstream's response header lines a client may see, in its bytes and order.

    Hop-by-hop headers go (RESPONSE_STRIPPED, and every name any ``Connection``
    header of the response lists); ``also`` names more keys (lower case, ``-``)
    the caller replaces itself. Names and values are never re-spelled or decoded.
    """
    dropped = _RESPONSE_STRIPPED_RAW | also if also else _RESPONSE_STRIPPED_RAW
    keys = _KEYS
    out = []
    named = False  # a Connection header names more hop-by-hop headers: second pass
    for line in raw:
        key = keys.get(line[0]) or _raw_key(line[0])
        if key == b"connection":
            named = True
        elif key not in dropped:
            out.append(line)
    if not named:
        return out
    for name, value in raw:
        if _raw_key(name) == b"connection":
            for token in value.split(b","):
                token = token.strip()
                if token:
                    dropped = dropped | {token.lower().replace(b"_", b"-")}
    return [line for line in out if _raw_key(line[0]) not in dropped]


_KEYS: dict[bytes, bytes] = {}


def _raw_key(name: bytes) -> bytes:
    """:func:`header_key` for raw bytes, memoised (a server sends the same few names)."""
    key = _KEYS.get(name)
    if key is None:
        key = name.lower().replace(b"_", b"-")
        if len(_KEYS) < 4096:  # bounded: names are chosen by the upstream
            _KEYS[name] = key
    return key


def response_headers(upstream: Any) -> CIMultiDict[str]:
    """:func:`relayed_header_lines` for a multidict of str (one policy for both forms)."""
    raw = [(n.encode("latin-1"), v.encode("utf-8", "surrogateescape")) for n, v in upstream.items()]
    return CIMultiDict(
        (n.decode("latin-1"), v.decode("utf-8", "surrogateescape")) for n, v in relayed_header_lines(raw)
    )


async def hide_server_version(request: Any, response: Any) -> None:
    """``on_response_prepare`` hook: Signet's own answers name no software version."""
    response.headers["Server"] = SERVER_NAME


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')

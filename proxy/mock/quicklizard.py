"""Mock Quicklizard API (vendor-docs/quicklizard-authentication.txt).

The query carries ``qts``, a UTC Unix timestamp in milliseconds within "a 3
minutes window". Headers ``API_KEY`` (an underscore, not a hyphen) and
``API_DIGEST`` = ``SHA256.hexdigest(request-path + query-string + request-body
+ API_SECRET)``: a plain salted digest, not an HMAC, with no ``?`` between path
and query, the query including ``qts``, and empty parts simply left out.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from urllib.parse import unquote

from aiohttp import web

from proxy.mock.common import (
    Reject,
    check_window,
    header,
    matches,
    parse_digits,
    shorten,
    split_raw,
    vendor_app,
)


def create_app(
    *,
    api_key: str,
    api_secret: str,
    window: float = 180,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """A Quicklizard endpoint; any method, any path. ``window`` bounds qts skew in seconds."""

    def verify(request: web.Request, body: bytes) -> None:
        path, query = split_raw(request)
        _check_qts(query, body, window, clock())
        got = header(request, "API_KEY")
        if not hmac.compare_digest(got.encode(), api_key.encode()):
            raise Reject(f"API_KEY {shorten(got)!r} is not the configured API key")
        _check_digest(header(request, "API_DIGEST"), path, query, body, api_secret)

    return vendor_app("quicklizard", verify, [api_secret])


def qts_values(query: str) -> list[str]:
    """Every raw value of a ``qts`` parameter in the raw query."""
    pairs = (p.partition("=") for p in query.split("&") if p)
    return [value for name, _, value in pairs if name == "qts"]


def _check_qts(query: str, body: bytes, window: float, now: float) -> None:
    values = qts_values(query)
    if not values:
        where = " (found in the body: it must be in the query string)" if b"qts" in body else ""
        raise Reject(f"missing query parameter qts (Unix milliseconds){where}")
    if len(values) > 1:
        raise Reject(f"query parameter qts appears {len(values)} times; send it exactly once")
    qts = values[0]
    ms = parse_digits(qts, "qts", "milliseconds")
    if len(qts) <= 11:
        raise Reject(f"qts {qts!r} looks like seconds ({len(qts)} digits); Quicklizard wants milliseconds")
    check_window("qts", qts, ms / 1000, now, window)


def digest(path: str, query: str, body: bytes, secret: str) -> str:
    return hashlib.sha256(path.encode() + query.encode() + body + secret.encode()).hexdigest()


def _check_digest(got: str, path: str, query: str, body: bytes, secret: str) -> None:
    expected = digest(path, query, body, secret)
    if hmac.compare_digest(got.encode(), expected.encode()):
        return
    if got.lower() == expected:
        raise Reject(
            f"API_DIGEST is uppercase hex; Quicklizard's hexdigest is lowercase (expected {expected})"
        )
    without_qts = "&".join(p for p in query.split("&") if p.partition("=")[0] != "qts")
    hints = [
        ("with '?' between path and query", digest(path + "?", query, body, secret)),
        ("without qts in the query", digest(path, without_qts, body, secret)),
        ("without the body", digest(path, query, b"", secret)),
        ("over the percent-decoded path", digest(unquote(path), query, body, secret)),
        ("as HMAC-SHA256 instead of a salted SHA-256", _hmac(secret, path, query, body)),
    ]
    raise Reject(
        "API_DIGEST mismatch: expected hex SHA-256 of path + query + body + API_SECRET "
        "(no '?' between path and query, query including qts) with "
        f"path={shorten(path, 200)!r}, query={shorten(query, 200)!r}, body=<{len(body)} bytes>; "
        f"expected {expected}, received {shorten(got, 64)!r}{matches(hints, got.lower())}"
    )


def _hmac(secret: str, path: str, query: str, body: bytes) -> str:
    return hmac.new(secret.encode(), path.encode() + query.encode() + body, hashlib.sha256).hexdigest()

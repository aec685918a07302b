"""Mock 3 Clicks API (vendor-docs/3clicks-authentication.txt).

Simple authentication: ``X-Api-Key`` and ``X-Api-Secret`` as issued.
Strict authentication: ``X-Api-Key``, ``X-Api-Timestamp`` (Unix seconds, "not
milliseconds", within 600 s of server time) and ``X-Api-Signature``, "the
lowercase hex HMAC-SHA256" keyed with the API secret over
``[api_key][api_secret][method][data][timestamp]`` with no separators, the
method lowercase ("e.g. get, post") and data the body as sent, or ``{}`` for
an empty body ("use {} or the exact payload for empty bodies").
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from aiohttp import web

from proxy.mock.common import (
    Reject,
    check_window,
    header,
    matches,
    parse_digits,
    shorten,
    vendor_app,
)

MODES = ("simple", "strict")


def create_app(
    *,
    api_key: str,
    api_secret: str,
    mode: str = "strict",
    window: float = 600,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """A 3 Clicks endpoint in ``simple`` or ``strict`` mode; any method, any path."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")

    def verify(request: web.Request, body: bytes) -> None:
        _check_key(request, api_key)
        if mode == "simple":
            _check_secret(request, api_secret)
        else:
            _check_strict(request, body, api_key, api_secret, window, clock())

    return vendor_app(f"threeclicks-{mode}", verify, [api_secret])


def _check_key(request: web.Request, api_key: str) -> None:
    got = header(request, "X-Api-Key")
    if not hmac.compare_digest(got.encode(), api_key.encode()):
        raise Reject(f"X-Api-Key {shorten(got)!r} is not the configured API key")


def _check_secret(request: web.Request, api_secret: str) -> None:
    got = header(request, "X-Api-Secret")
    if not hmac.compare_digest(got.encode(), api_secret.encode()):
        raise Reject(f"X-Api-Secret does not match the configured API secret (received {len(got)} chars)")


def _check_timestamp(request: web.Request, window: float, now: float) -> str:
    """Seconds only: the doc says "10 digits for current-era times" and rejects milliseconds."""
    ts = header(request, "X-Api-Timestamp")
    value = parse_digits(ts, "X-Api-Timestamp", "seconds")
    if len(ts) >= 12:
        raise Reject(
            f"X-Api-Timestamp {ts!r} looks like milliseconds ({len(ts)} digits); "
            "3 Clicks wants Unix seconds (10 digits)"
        )
    check_window("X-Api-Timestamp", ts, value, now, window)
    return ts


def signature(api_key: str, api_secret: str, method: str, data: bytes, ts: str) -> str:
    message = api_key.encode() + api_secret.encode() + method.encode() + data + ts.encode()
    return hmac.new(api_secret.encode(), message, hashlib.sha256).hexdigest()


def _check_strict(
    request: web.Request, body: bytes, api_key: str, api_secret: str, window: float, now: float
) -> None:
    if "X-Api-Secret" in request.headers:
        raise Reject("X-Api-Secret must not be sent with strict authentication (it exposes the secret)")
    ts = _check_timestamp(request, window, now)
    sig = header(request, "X-Api-Signature")
    method = request.method.lower()
    data = body or b"{}"
    expected = signature(api_key, api_secret, method, data, ts)
    if sig == expected:
        return
    if sig.lower() == expected:
        raise Reject(
            "X-Api-Signature is uppercase hex; 3 Clicks wants the lowercase hex HMAC-SHA256 "
            f"(expected {expected})"
        )
    shown = "'{}' (empty body)" if not body else f"<{len(data)} bytes>"
    hints = [
        ("with the method not lowercased", signature(api_key, api_secret, request.method, data, ts)),
        ("with data = '' instead of '{}' for the empty body", signature(api_key, api_secret, method, b"", ts))
        if not body
        else ("with data = '{}' instead of the body", signature(api_key, api_secret, method, b"{}", ts)),
    ]
    raise Reject(
        "X-Api-Signature mismatch: expected lowercase hex HMAC-SHA256 keyed with api_secret over "
        "api_key + api_secret + method(lower) + data + timestamp with "
        f"method={method!r}, data={shown}, timestamp={ts!r}; "
        f"expected {expected}, received {shorten(sig, 64)!r}{matches(hints, sig)}"
    )

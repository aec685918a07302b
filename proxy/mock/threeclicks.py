"""Mock 3 Clicks API (vendor-docs/3clicks-authentication.txt).

Simple: ``X-Api-Key`` and ``X-Api-Secret`` as issued. Strict: ``X-Api-Key``,
``X-Api-Timestamp`` (Unix seconds, within 600 s) and ``X-Api-Signature``, the
lowercase hex HMAC-SHA256 keyed with the secret over
``api_key + api_secret + method(lower) + data + timestamp``, data being the
body as sent or ``{}`` when empty.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from aiohttp import web

from proxy.mock.common import Reject, check_window, now_clock, require, shorten, vendor_app


def create_app(
    *,
    api_key: str,
    api_secret: str,
    mode: str = "strict",
    window: float = 600,
    clock: Callable[[], float] = now_clock,
) -> web.Application:
    if mode not in ("simple", "strict"):
        raise ValueError("mode must be simple or strict")

    def verify(request: web.Request, body: bytes) -> None:
        if require(request, "X-Api-Key") != api_key:
            raise Reject("X-Api-Key is not a known API key")
        if mode == "simple":
            if not hmac.compare_digest(require(request, "X-Api-Secret").encode(), api_secret.encode()):
                raise Reject("X-Api-Secret does not match the API key's secret")
            return
        ts = require(request, "X-Api-Timestamp")
        if not ts.isdigit():
            raise Reject(f"X-Api-Timestamp must be Unix seconds (digits), got {shorten(ts)!r}")
        if len(ts) >= 13:
            raise Reject("X-Api-Timestamp looks like milliseconds; 3 Clicks wants seconds")
        check_window(int(ts), clock(), window, "X-Api-Timestamp")
        sig = require(request, "X-Api-Signature")
        data = body if body else b"{}"
        message = (
            api_key.encode() + api_secret.encode() + request.method.lower().encode() + data + ts.encode()
        )
        expected = hmac.new(api_secret.encode(), message, hashlib.sha256).hexdigest()
        if sig != expected:
            hint = " (uppercase hex: must be lowercase)" if sig.lower() == expected else ""
            raise Reject(
                "X-Api-Signature mismatch: expected lowercase hex HMAC-SHA256 over "
                "api_key + api_secret + method(lower) + data + timestamp with "
                f"method={request.method.lower()!r}, data=<{len(data)} bytes{' = {}' if not body else ''}>, "
                f"timestamp={ts!r}; expected {expected}, received {shorten(sig, 64)!r}{hint}"
            )

    return vendor_app(f"threeclicks-{mode}", verify, [api_secret])

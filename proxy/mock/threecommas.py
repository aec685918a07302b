"""Mock 3Commas API (vendor-docs/3commas-signing.txt).

``Apikey`` and ``Signature``: hex HMAC-SHA256 keyed with the secret over
``path + ('?' + query if any) + body``, the path as received (e.g.
``/public/api/ver1/users/change_mode``). The docs say the signature is not
case sensitive.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

from proxy.mock.common import Reject, require, shorten, split_raw, vendor_app


def create_app(*, api_key: str, secret: str) -> web.Application:
    def verify(request: web.Request, body: bytes) -> None:
        if require(request, "Apikey") != api_key:
            raise Reject("Apikey is not a known API key")
        sig = require(request, "Signature")
        path, query = split_raw(request)
        message = (path + ("?" + query if query else "")).encode() + body
        expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
        if sig.lower() != expected:
            raise Reject(
                "Signature mismatch: expected hex HMAC-SHA256 over path?query + body with "
                f"path={path!r}, query={query!r}, body=<{len(body)} bytes>; "
                f"expected {expected}, received {shorten(sig, 64)!r}"
            )

    return vendor_app("threecommas", verify, [secret])

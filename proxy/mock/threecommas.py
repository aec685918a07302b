"""Mock 3Commas API (vendor-docs/3commas-signing.txt).

Headers ``Apikey`` and ``Signature``; the signature is the hex HMAC-SHA256
keyed with the secret over "uri?totalParams": the path as sent (e.g.
``/public/api/ver1/users/change_mode``), then ``?`` and the query string when
there is one, then the request body. The doc says twice that "the signature
is not case sensitive", so hex case is ignored.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import unquote

from aiohttp import web

from proxy.mock.common import Reject, header, matches, shorten, split_raw, vendor_app


def create_app(*, api_key: str, secret: str) -> web.Application:
    """A 3Commas endpoint; any method, any path."""

    def verify(request: web.Request, body: bytes) -> None:
        got = header(request, "Apikey")
        if not hmac.compare_digest(got.encode(), api_key.encode()):
            raise Reject(f"Apikey {shorten(got)!r} is not the configured API key")
        _check_signature(request, body, secret)

    return vendor_app("threecommas", verify, [secret])


def signature(secret: str, path: str, query: str, body: bytes) -> str:
    message = (path + ("?" + query if query else "")).encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _check_signature(request: web.Request, body: bytes, secret: str) -> None:
    sig = header(request, "Signature")
    path, query = split_raw(request)
    expected = signature(secret, path, query, body)
    if hmac.compare_digest(sig.lower().encode(), expected.encode()):
        return
    hints = [
        ("without the query", signature(secret, path, "", body)),
        ("without the body", signature(secret, path, query, b"")),
        ("over the percent-decoded path", signature(secret, unquote(path), query, body)),
    ]
    layout = f"{path}?{query}" if query else path
    raise Reject(
        "Signature mismatch: expected hex HMAC-SHA256 keyed with the secret over "
        "path + ('?' + query if query) + body, the path and query as received, with "
        f"path+query={shorten(layout, 200)!r}, body=<{len(body)} bytes>; "
        f"expected {expected}, received {shorten(sig, 64)!r}{matches(hints, sig.lower())}"
    )

"""Mock Quicklizard API (vendor-docs/quicklizard-authentication.txt).

``qts`` (Unix milliseconds, within 3 minutes) in the query; ``API_KEY`` and
``API_DIGEST`` = hex SHA-256 of path + query + body + API_SECRET, with no
``?`` between path and query, the query including ``qts``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from aiohttp import web

from proxy.mock.common import Reject, check_window, now_clock, require, shorten, split_raw, vendor_app


def create_app(
    *, api_key: str, api_secret: str, window: float = 180, clock: Callable[[], float] = now_clock
) -> web.Application:
    def verify(request: web.Request, body: bytes) -> None:
        path, query = split_raw(request)
        qts = [p.partition("=")[2] for p in query.split("&") if p.partition("=")[0] == "qts"]
        if not qts:
            raise Reject("missing qts query parameter (Unix milliseconds)")
        if len(qts) > 1:
            raise Reject("qts appears more than once in the query")
        if not qts[0].isdigit():
            raise Reject("qts must be Unix milliseconds (digits)")
        if len(qts[0]) <= 11:
            raise Reject("qts looks like seconds; Quicklizard wants milliseconds")
        check_window(int(qts[0]) / 1000, clock(), window, "qts")
        if require(request, "API_KEY") != api_key:
            raise Reject("API_KEY is not a known API key")
        digest = require(request, "API_DIGEST")
        expected = hashlib.sha256(path.encode() + query.encode() + body + api_secret.encode()).hexdigest()
        if not hmac.compare_digest(digest.lower().encode(), expected.encode()):
            raise Reject(
                "API_DIGEST mismatch: expected hex SHA-256 of path + query + body + API_SECRET "
                f"(no '?') with path={path!r}, query={query!r}, body=<{len(body)} bytes>; "
                f"expected {expected}, received {shorten(digest, 64)!r}"
            )

    return vendor_app("quicklizard", verify, [api_secret])

"""A loopback vendor for forward-proxy tests: HTTPS with a trustme certificate, 3Commas signing.

It checks each request the way the 3Commas docs describe (hex HMAC-SHA256
of path + '?' + query + body, keyed with the secret; ``Apikey`` the key:
vendor-docs/3commas-signing.txt), hashing the body as it arrives so a 50 MiB
upload costs no memory, and answers what it received: the raw target, the
body's SHA-256 and length, the headers. 401 with the reason when the
signature is wrong, so a test sees why.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
from dataclasses import dataclass, field
from typing import Any

import trustme
from aiohttp import web

KEY = web.AppKey("vendor", "VendorState")


@dataclass
class VendorState:
    api_key: str
    secret: str
    seen: list[dict[str, Any]] = field(default_factory=list)


def vendor_app(api_key: str, secret: str) -> web.Application:
    app = web.Application(client_max_size=1024**3)
    app[KEY] = VendorState(api_key, secret)
    app.router.add_route("*", r"/{tail:[\s\S]*}", _handle)
    return app


async def _handle(request: web.Request) -> web.Response:
    state: VendorState = request.app[KEY]
    raw = request.raw_path
    path, _, query = raw.partition("?")
    mac = hmac.new(state.secret.encode(), (path + ("?" + query if query else "")).encode(), hashlib.sha256)
    digest = hashlib.sha256()
    n = 0
    async for chunk in request.content.iter_any():
        mac.update(chunk)
        digest.update(chunk)
        n += len(chunk)
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
    got_key = request.headers.get("Apikey", "")
    got_sig = request.headers.get("Signature", "")
    signed = hmac.compare_digest(got_key.encode(), state.api_key.encode()) and hmac.compare_digest(
        got_sig.lower().encode(), mac.hexdigest().encode()
    )
    seen = {
        "method": request.method,
        "raw_path": raw,
        "body_sha256": digest.hexdigest(),
        "body_len": n,
        "headers": headers,
        "signed": signed,
        "host": request.headers.get("Host"),
    }
    state.seen.append(seen)
    if not signed:
        return web.json_response({**seen, "error": "bad Apikey or Signature"}, status=401)
    return web.json_response(seen, headers={"X-Vendor": "loopback"})


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    """A vendor's server context: a trustme leaf for ``names`` (127.0.0.1 by default)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*(names or ("127.0.0.1", "localhost"))).configure_cert(context)
    return context

"""A 3Commas-style vendor whose accounts can change while it runs (a key rotation on the vendor side).

Signatures are checked with the mock vendor's own verifier
(:func:`proxy.mock.threecommas.signature`, written from the vendor's doc),
never with Signet's signer. Each accepted request records which account
and which of the account's secrets signed it, and when.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field

from aiohttp import web

from proxy.mock.threecommas import signature


@dataclass
class Seen:
    api_key: str
    secret_index: int  # position in the account's secrets list
    at: float  # time.monotonic()


@dataclass
class RotatingVendor:
    accounts: dict[str, list[str]] = field(default_factory=dict)  # api key -> accepted secrets
    seen: list[Seen] = field(default_factory=list)
    rejected: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        key = request.headers.get("Apikey", "")
        sig = request.headers.get("Signature", "").lower()
        path, _, query = request.raw_path.partition("?")
        for i, sec in enumerate(self.accounts.get(key, [])):
            if hmac.compare_digest(sig.encode(), signature(sec, path, query, body).encode()):
                self.seen.append(Seen(key, i, time.monotonic()))
                return web.json_response({"ok": True, "account": key[:6]})
        self.rejected += 1
        return web.json_response({"error": "signature or key not accepted"}, status=401)

    def first_use(self, api_key: str, secret_index: int) -> float | None:
        for s in self.seen:
            if s.api_key == api_key and s.secret_index == secret_index:
                return s.at
        return None

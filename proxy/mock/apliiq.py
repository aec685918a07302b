"""Mock Apliiq API (vendor-docs/apliiq-authentication.txt).

``Authorization: x-apliiq-auth RTS:SIG:APPID:STATE``; SIG is
base64(HMAC-SHA256(shared secret, APPID + RTS + STATE + base64(body))),
base64(body) empty for an empty body. A STATE seen before is a replay.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable

from aiohttp import web

from proxy.mock.common import Reject, check_window, now_clock, require, shorten, vendor_app

_STATE = re.compile(r"[0-9a-f]{32}\Z")


def create_app(
    *, app_id: str, shared_secret: str, window: float = 300, clock: Callable[[], float] = now_clock
) -> web.Application:
    seen: dict[str, float] = {}  # nonce -> time seen; pruned after the window

    def verify(request: web.Request, body: bytes) -> None:
        value = require(request, "Authorization")
        scheme, _, creds = value.partition(" ")
        if scheme != "x-apliiq-auth":
            raise Reject(f"Authorization scheme must be x-apliiq-auth, got {shorten(scheme)!r}")
        parts = creds.split(":")
        if len(parts) != 4:
            raise Reject("Authorization must be x-apliiq-auth RTS:SIG:APPID:STATE (4 fields)")
        rts, sig, appid, state = parts
        if appid != app_id:
            raise Reject("APPID is not a known app id")
        if not rts.isdigit():
            raise Reject("RTS must be Unix seconds (digits)")
        now = clock()
        check_window(int(rts), now, window, "RTS")
        if not _STATE.match(state):
            raise Reject("STATE must be a 32-character lowercase hex nonce")
        body_b64 = base64.b64encode(body) if body else b""
        message = appid.encode() + rts.encode() + state.encode() + body_b64
        expected = base64.b64encode(
            hmac.new(shared_secret.encode(), message, hashlib.sha256).digest()
        ).decode()
        if not hmac.compare_digest(sig.encode(), expected.encode()):
            raise Reject(
                "SIG mismatch: expected base64 HMAC-SHA256 over APPID + RTS + STATE + base64(body) with "
                f"RTS={rts!r}, STATE={state!r}, body=<{len(body)} bytes>; expected {expected}, "
                f"received {shorten(sig, 64)!r}"
            )
        for old in [n for n, t in seen.items() if now - t > window * 2]:
            del seen[old]
        if state in seen:
            raise Reject("STATE was already used: replayed request")
        seen[state] = now

    return vendor_app("apliiq", verify, [shared_secret])

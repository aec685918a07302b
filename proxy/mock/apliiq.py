"""Mock Apliiq API (vendor-docs/apliiq-authentication.txt).

``Authorization: x-apliiq-auth RTS:SIG:APPID:STATE`` where RTS is Unix seconds,
STATE a random unique nonce (the doc's C# sample: a GUID lowercased without
dashes, i.e. 32 lowercase hex) and SIG =
base64(HMAC-SHA256([APPId][RTS][STATE][Base64_ReqContentIFanyOREmptyString],
Shared_SECRET)). The doc promises requests "can't be stolen, replayed, or
tampered with", so a STATE seen before is rejected.

Quirk: the sample's helper is named ``Base64_HmacSha256HexDigest`` but the
note says "HMAC digest should return a base64 of the hash value": SIG is the
base64 of the raw 32-byte digest, not of its hex string.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
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

SCHEME = "x-apliiq-auth"
MAX_NONCES = 100_000
_STATE = re.compile(r"[0-9a-f]{32}\Z")


class NonceStore:
    """STATE values already accepted, each kept until its RTS leaves the window.

    Bounded: expired entries go first; past ``limit`` the oldest are dropped.
    """

    def __init__(self, window: float, limit: int = MAX_NONCES) -> None:
        self.window = window
        self.limit = limit
        self._expiry: dict[str, float] = {}  # insertion order ~ arrival order

    def __len__(self) -> int:
        return len(self._expiry)

    def __contains__(self, state: str) -> bool:
        return state in self._expiry

    def add(self, state: str, rts: int, now: float) -> None:
        self.prune(now)
        while len(self._expiry) >= self.limit:
            del self._expiry[next(iter(self._expiry))]
        self._expiry[state] = max(rts, now) + self.window

    def prune(self, now: float) -> None:
        for state in [s for s, t in self._expiry.items() if t < now]:
            del self._expiry[state]


NONCES = web.AppKey("apliiq_nonces", NonceStore)


def create_app(
    *,
    app_id: str,
    shared_secret: str,
    window: float = 300,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """An Apliiq endpoint; any method, any path. ``window`` bounds RTS skew in seconds."""
    nonces = NonceStore(window)

    def verify(request: web.Request, body: bytes) -> None:
        now = clock()
        rts, sig, appid, state = _parse(header(request, "Authorization"))
        if not hmac.compare_digest(appid.encode(), app_id.encode()):
            raise Reject(f"APPID {shorten(appid)!r} in Authorization is not the configured app id")
        ts = parse_digits(rts, "RTS", "seconds")
        if len(rts) >= 12:
            raise Reject(f"RTS {rts!r} looks like milliseconds; Apliiq wants Unix seconds")
        check_window("RTS", rts, ts, now, window)
        if not _STATE.match(state):
            raise Reject(f"STATE {shorten(state, 40)!r} must be a 32-character lowercase hex nonce")
        _check_sig(sig, appid, rts, state, body, shared_secret)
        nonces.prune(now)
        if state in nonces:
            raise Reject(f"STATE {state!r} was already used: replayed request")
        nonces.add(state, ts, now)

    app = vendor_app("apliiq", verify, [shared_secret])
    app[NONCES] = nonces
    return app


def _parse(value: str) -> tuple[str, str, str, str]:
    scheme, sep, creds = value.partition(" ")
    if scheme != SCHEME or not sep:
        raise Reject(f"Authorization must start with '{SCHEME} ' (received scheme {shorten(scheme)!r})")
    parts = creds.split(":")
    if len(parts) != 4:
        raise Reject(
            f"Authorization must be '{SCHEME} RTS:SIG:APPID:STATE' (4 fields separated by ':'), "
            f"received {len(parts)} fields"
        )
    rts, sig, appid, state = parts
    return rts, sig, appid, state


def signature(secret: str, appid: str, rts: str, state: str, body_b64: bytes) -> str:
    message = appid.encode() + rts.encode() + state.encode() + body_b64
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def _check_sig(sig: str, appid: str, rts: str, state: str, body: bytes, secret: str) -> None:
    body_b64 = base64.b64encode(body)
    expected = signature(secret, appid, rts, state, body_b64)
    if hmac.compare_digest(sig.encode(), expected.encode()):
        return
    digest = hmac.new(secret.encode(), appid.encode() + rts.encode() + state.encode() + body_b64, "sha256")
    hints = [
        ("over the raw body instead of base64(body)", signature(secret, appid, rts, state, body)),
        ("as a hex digest instead of base64", digest.hexdigest()),
        ("as base64 of the hex digest", base64.b64encode(digest.hexdigest().encode()).decode()),
    ]
    raise Reject(
        "SIG mismatch: expected base64(HMAC-SHA256) keyed with the shared secret over "
        "APPID + RTS + STATE + base64(body) (empty for an empty body) with "
        f"APPID={appid!r}, RTS={rts!r}, STATE={state!r}, body=<{len(body)} bytes>; "
        f"expected {expected}, received {shorten(sig, 64)!r}{matches(hints, sig)}"
    )

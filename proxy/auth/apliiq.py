"""Apliiq: ``Authorization: x-apliiq-auth RTS:SIG:APPID:STATE``.

From the vendor's "Authentication" page and its C# sample:

- ``RTS``: Unix time in seconds;
- ``STATE``: a random unique nonce; the sample uses a GUID lower-cased without
  dashes, i.e. 32 lowercase hex characters, which is what the clock's
  ``nonce()`` gives (fresh per request);
- ``SIG`` = base64(HMAC-SHA256(key ``shared_secret``,
  message ``APPID + RTS + STATE + base64(body)``)), ``base64(body)`` being the
  empty string when there is no body. (The page says "HMACSHA265" and the
  sample's helper is named ``..HexDigest``, but the note above the sample says
  the digest is returned as base64, as the header format requires.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Literal

from pydantic import Field

from proxy.auth.base import AuthResult, AuthScheme, SchemeContext, SchemeOptions, UpstreamRequest
from proxy.auth.digest import unix_seconds
from proxy.auth.registry import register
from proxy.body import (
    BODY_BASE64,
    Message,
    SignedBody,
    body_bytes,
    body_size,
    feed_message,
    off_loop,
)
from proxy.secret import Secret, reveal

HEADER = "Authorization"
AUTH_PREFIX = "x-apliiq-auth "


class ApliiqOptions(SchemeOptions):
    scheme: Literal["apliiq"]
    app_id: str | Secret = Field(description="Apliiq application id (APPID in the Authorization header).")
    shared_secret: Secret = Field(
        description="Apliiq shared secret: the HMAC-SHA256 key of SIG (never sent)."
    )


@register
class Apliiq(AuthScheme):
    name = "apliiq"
    Options = ApliiqOptions
    needs_body = True
    injected_headers = frozenset({HEADER})

    def __init__(self, options: ApliiqOptions, context: SchemeContext) -> None:
        super().__init__(options, context)
        self._app_id = reveal(options.app_id)
        self._app_id_b = self._app_id.encode()
        self._mac = hmac.new(options.shared_secret.reveal().encode(), digestmod=hashlib.sha256)

    def message(self, timestamp: int, nonce: str, size: int) -> Message:
        """``APPID + RTS + STATE + base64(body)`` (``""`` for an empty body) as parts."""
        head = self._app_id_b + b"%d" % timestamp + nonce.encode()
        return (head, BODY_BASE64) if size else (head,)

    def string_to_sign(self, timestamp: int, nonce: str, body: bytes | SignedBody | None) -> bytes:
        """The message as bytes (an in-memory body)."""
        data = body_bytes(body)
        return (
            self._app_id_b
            + b"%d" % timestamp
            + nonce.encode()
            + (base64.b64encode(data) if data else b"")
        )

    def signature(self, message: bytes) -> str:
        """Standard base64 (with padding) of HMAC-SHA256 keyed with ``shared_secret``."""
        h = self._mac.copy()
        h.update(message)
        return base64.b64encode(h.digest()).decode("ascii")

    def authorization(self, timestamp: int, signature: str, nonce: str) -> str:
        return f"{AUTH_PREFIX}{timestamp}:{signature}:{self._app_id}:{nonce}"

    def sign(self, request: UpstreamRequest) -> AuthResult:
        """Blocking for a spooled body (it is read and hashed): :meth:`apply` runs it off the loop."""
        clock = self.context.clock
        ts = unix_seconds(clock.time())
        nonce = clock.nonce()
        h = self._mac.copy()
        feed_message(h, self.message(ts, nonce, body_size(request.body)), request.body)
        sig = base64.b64encode(h.digest()).decode("ascii")
        return AuthResult(headers={HEADER: self.authorization(ts, sig, nonce)})

    async def apply(self, request: UpstreamRequest) -> AuthResult:
        return await off_loop(self.sign, request, request.body)

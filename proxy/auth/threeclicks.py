"""3 Clicks: ``threeclicks-simple`` (key + secret headers) and ``threeclicks-strict`` (HMAC).

From the vendor's "Authentication" page:

- simple: ``X-Api-Key: <api key>`` and ``X-Api-Secret: <api secret>``;
- strict: ``X-Api-Key``, ``X-Api-Timestamp`` (Unix *seconds*) and
  ``X-Api-Signature`` = lowercase hex HMAC-SHA256 with the api secret as key
  over ``api_key + api_secret + lower(method) + data + timestamp`` (no
  separators), ``data`` being the body exactly as sent, or ``{}`` when the
  body is empty.

The body is used as bytes: the message is built by concatenating bytes, so a
body that is not UTF-8 is signed exactly as it is sent.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

from proxy.auth.base import AuthResult, AuthScheme, SchemeContext, SchemeOptions, UpstreamRequest
from proxy.auth.digest import unix_seconds
from proxy.auth.registry import register
from proxy.secret import Secret, reveal

KEY_HEADER = "X-Api-Key"
SECRET_HEADER = "X-Api-Secret"
TIMESTAMP_HEADER = "X-Api-Timestamp"
SIGNATURE_HEADER = "X-Api-Signature"
EMPTY_BODY_DATA = b"{}"


class ThreeClicksSimpleOptions(SchemeOptions):
    scheme: Literal["threeclicks-simple"]
    api_key: str | Secret
    api_secret: Secret


class ThreeClicksStrictOptions(SchemeOptions):
    scheme: Literal["threeclicks-strict"]
    api_key: str | Secret
    api_secret: Secret


@register
class ThreeClicksSimple(AuthScheme):
    """Sends the key and the secret themselves; nothing is computed per request."""

    name = "threeclicks-simple"
    Options = ThreeClicksSimpleOptions
    needs_body = False
    injected_headers = frozenset({KEY_HEADER, SECRET_HEADER})

    def __init__(self, options: ThreeClicksSimpleOptions, context: SchemeContext) -> None:
        super().__init__(options, context)
        secret_headers = {SECRET_HEADER}
        if isinstance(options.api_key, Secret):
            secret_headers.add(KEY_HEADER)
        self._headers = {
            KEY_HEADER: reveal(options.api_key),
            SECRET_HEADER: options.api_secret.reveal(),
        }
        self._secret_headers = frozenset(secret_headers)

    def sign(self, request: UpstreamRequest) -> AuthResult:
        # A fresh dict each time: the pipeline may mutate what it is given.
        return AuthResult(headers=dict(self._headers), secret_headers=self._secret_headers)

    async def apply(self, request: UpstreamRequest) -> AuthResult:
        return self.sign(request)


@register
class ThreeClicksStrict(AuthScheme):
    """HMAC-SHA256 over key, secret, lower-case method, body (or ``{}``) and timestamp."""

    name = "threeclicks-strict"
    Options = ThreeClicksStrictOptions
    needs_body = True
    injected_headers = frozenset({KEY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER})

    def __init__(self, options: ThreeClicksStrictOptions, context: SchemeContext) -> None:
        super().__init__(options, context)
        self._api_key = reveal(options.api_key)
        secret = options.api_secret.reveal()
        self._prefix = (self._api_key + secret).encode()
        self._mac = hmac.new(secret.encode(), digestmod=hashlib.sha256)
        self._secret_headers = (
            frozenset({KEY_HEADER}) if isinstance(options.api_key, Secret) else frozenset()
        )

    def string_to_sign(self, method: str, body: bytes | None, timestamp: int) -> bytes:
        """``api_key + api_secret + lower(method) + (body or "{}") + timestamp`` as bytes."""
        data = body or EMPTY_BODY_DATA
        return self._prefix + method.lower().encode() + data + b"%d" % timestamp

    def signature(self, message: bytes) -> str:
        """Lower-case hex HMAC-SHA256 of ``message`` keyed with the api secret."""
        h = self._mac.copy()
        h.update(message)
        return h.hexdigest()

    def sign(self, request: UpstreamRequest) -> AuthResult:
        ts = unix_seconds(self.context.clock.time())
        sig = self.signature(self.string_to_sign(request.method, request.body, ts))
        return AuthResult(
            headers={KEY_HEADER: self._api_key, TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sig},
            secret_headers=self._secret_headers,
        )

    async def apply(self, request: UpstreamRequest) -> AuthResult:
        return self.sign(request)

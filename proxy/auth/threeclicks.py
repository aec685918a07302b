"""3 Clicks: ``threeclicks-simple`` (key + secret headers) and ``threeclicks-strict`` (HMAC).

From the vendor's "Authentication" page:

- simple: ``X-Api-Key: <api key>`` and ``X-Api-Secret: <api secret>``;
- strict: ``X-Api-Key``, ``X-Api-Timestamp`` (Unix *seconds*) and
  ``X-Api-Signature`` = lowercase hex HMAC-SHA256 with the api secret as key
  over ``api_key + api_secret + lower(method) + data + timestamp`` (no
  separators), ``data`` being the body exactly as sent, or ``{}`` when the
  body is empty.

The body is used as bytes: the message is built by concatenating bytes, so a
body that is not UTF-8 is signed exactly as it is sent. A body spooled to disk
is streamed through the HMAC in a worker thread (:mod:`proxy.body`).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

from pydantic import Field

from proxy.auth.base import AuthResult, AuthScheme, SchemeContext, SchemeOptions, UpstreamRequest
from proxy.auth.digest import unix_seconds
from proxy.auth.registry import register
from proxy.body import (
    BODY,
    BodyPrefix,
    Message,
    SignedBody,
    body_bytes,
    body_size,
    feed_message,
    off_loop,
    prehashed,
)
from proxy.secret import Secret, reveal

KEY_HEADER = "X-Api-Key"
SECRET_HEADER = "X-Api-Secret"
TIMESTAMP_HEADER = "X-Api-Timestamp"
SIGNATURE_HEADER = "X-Api-Signature"
EMPTY_BODY_DATA = b"{}"


class ThreeClicksSimpleOptions(SchemeOptions):
    scheme: Literal["threeclicks-simple"]
    api_key: str | Secret = Field(description="3 Clicks API key, sent as X-Api-Key.")
    api_secret: Secret = Field(description="3 Clicks API secret, sent as X-Api-Secret.")


class ThreeClicksStrictOptions(SchemeOptions):
    scheme: Literal["threeclicks-strict"]
    api_key: str | Secret = Field(description="3 Clicks API key, sent as X-Api-Key and signed.")
    api_secret: Secret = Field(
        description="3 Clicks API secret: the HMAC-SHA256 key of X-Api-Signature (never sent)."
    )


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

    def head(self, method: str) -> bytes:
        """``api_key + api_secret + lower(method)``: the message up to the body."""
        return self._prefix + method.lower().encode()

    def message(self, method: str, size: int, timestamp: int) -> Message:
        """``api_key + api_secret + lower(method) + (body or "{}") + timestamp`` as parts."""
        data = BODY if size else EMPTY_BODY_DATA
        return (self.head(method), data, b"%d" % timestamp)

    def string_to_sign(
        self, method: str, body: bytes | SignedBody | None, timestamp: int
    ) -> bytes:
        """The message as bytes (an in-memory body)."""
        message = self.message(method, body_size(body), timestamp)
        return b"".join(p if isinstance(p, bytes) else body_bytes(body) for p in message)

    def signature(self, message: bytes) -> str:
        """Lower-case hex HMAC-SHA256 of ``message`` keyed with the api secret."""
        h = self._mac.copy()
        h.update(message)
        return h.hexdigest()

    def body_prefix(self, request: UpstreamRequest) -> BodyPrefix | None:
        prefix = self.head(request.method)
        h = self._mac.copy()
        h.update(prefix)
        return BodyPrefix(self, prefix, h)

    def sign(self, request: UpstreamRequest) -> AuthResult:
        """Blocking for a spooled body (it is read and hashed): :meth:`apply` runs it off the loop."""
        ts = unix_seconds(self.context.clock.time())
        h = prehashed(request.body, self, self.head(request.method))  # fed while spooling
        if h is not None:
            h.update(b"%d" % ts)  # the timestamp, read now that the body is complete
        else:
            h = self._mac.copy()
            feed_message(h, self.message(request.method, body_size(request.body), ts), request.body)
        return AuthResult(
            headers={
                KEY_HEADER: self._api_key,
                TIMESTAMP_HEADER: str(ts),
                SIGNATURE_HEADER: h.hexdigest(),
            },
            secret_headers=self._secret_headers,
        )

    async def apply(self, request: UpstreamRequest) -> AuthResult:
        if prehashed(request.body, self, self.head(request.method)) is not None:
            return self.sign(request)  # only the timestamp is left to hash
        return await off_loop(self.sign, request, request.body)

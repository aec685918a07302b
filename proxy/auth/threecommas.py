"""3Commas: ``Apikey`` and ``Signature`` = hex HMAC-SHA256 of ``uri?totalParams``.

From the vendor's "Signing a Request Using HMAC SHA256" page: the message is
the request path, then ``?`` and the query string when there is one, then the
request body (``totalParams`` = query string + payload), keyed with the
account's secret; the hex digest goes in ``Signature``. The path is the one
sent upstream (e.g. ``/public/api/ver1/users/change_mode``), byte for byte.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

from pydantic import Field

from proxy.auth.base import AuthResult, AuthScheme, SchemeContext, SchemeOptions, UpstreamRequest
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

KEY_HEADER = "Apikey"
SIGNATURE_HEADER = "Signature"


class ThreeCommasOptions(SchemeOptions):
    scheme: Literal["threecommas"]
    api_key: str | Secret = Field(description="3Commas API key, sent as Apikey.")
    secret: Secret = Field(
        description="3Commas secret: the HMAC-SHA256 key of the Signature header (never sent)."
    )


def head(path: str, query: str) -> bytes:
    """``path + ('?' + query if query)``: the message up to the body."""
    return f"{path}?{query}".encode() if query else path.encode()


def message(path: str, query: str, size: int) -> Message:
    """``path + ('?' + query if query) + body`` as parts (body used as is)."""
    return (head(path, query), BODY) if size else (head(path, query),)


def string_to_sign(path: str, query: str, body: bytes | SignedBody | None) -> bytes:
    """The message as bytes (an in-memory body)."""
    if query:
        return f"{path}?{query}".encode() + body_bytes(body)
    return path.encode() + body_bytes(body)


@register
class ThreeCommas(AuthScheme):
    name = "threecommas"
    Options = ThreeCommasOptions
    needs_body = True
    injected_headers = frozenset({KEY_HEADER, SIGNATURE_HEADER})

    def __init__(self, options: ThreeCommasOptions, context: SchemeContext) -> None:
        super().__init__(options, context)
        self._api_key = reveal(options.api_key)
        self._mac = hmac.new(options.secret.reveal().encode(), digestmod=hashlib.sha256)
        self._secret_headers = (
            frozenset({KEY_HEADER}) if isinstance(options.api_key, Secret) else frozenset()
        )

    string_to_sign = staticmethod(string_to_sign)
    message = staticmethod(message)

    def signature(self, message: bytes) -> str:
        """Hex HMAC-SHA256 of ``message`` keyed with ``secret``."""
        h = self._mac.copy()
        h.update(message)
        return h.hexdigest()

    def body_prefix(self, request: UpstreamRequest) -> BodyPrefix | None:
        prefix = head(request.path, request.query)
        h = self._mac.copy()
        h.update(prefix)
        return BodyPrefix(self, prefix, h)

    def sign(self, request: UpstreamRequest) -> AuthResult:
        """Blocking for a spooled body (it is read and hashed): :meth:`apply` runs it off the loop."""
        h = prehashed(request.body, self, head(request.path, request.query))  # while spooling
        if h is None:
            h = self._mac.copy()
            parts = message(request.path, request.query, body_size(request.body))
            feed_message(h, parts, request.body)
        return AuthResult(
            headers={KEY_HEADER: self._api_key, SIGNATURE_HEADER: h.hexdigest()},
            secret_headers=self._secret_headers,
        )

    async def apply(self, request: UpstreamRequest) -> AuthResult:
        if prehashed(request.body, self, head(request.path, request.query)) is not None:
            return self.sign(request)  # only the digest is left to compute
        return await off_loop(self.sign, request, request.body)

"""Quicklizard: ``qts`` in the query, ``API_KEY`` and ``API_DIGEST`` headers.

From the vendor's "REST API - Authentication" page:

- append ``qts=<UTC Unix time in milliseconds>`` to the query string (any
  ``qts`` the client sent is replaced, also when its name is percent-encoded;
  the other parameters keep their bytes and order, see
  :func:`proxy.auth.base.set_query_params`);
- ``API_DIGEST`` = hex SHA-256 (a plain digest, not an HMAC) of
  ``path + query + body + api_secret``, with no ``?`` between path and query
  and the query including ``qts``; an empty body or query adds nothing.

The header names contain underscores, which some servers and proxies drop;
they are sent exactly as the vendor spells them.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import Field

from proxy.auth.base import (
    AuthResult,
    AuthScheme,
    SchemeContext,
    SchemeOptions,
    UpstreamRequest,
    set_query_params,
)
from proxy.auth.digest import unix_ms
from proxy.auth.registry import register
from proxy.body import BODY, Message, SignedBody, body_bytes, body_size, feed_message, off_loop
from proxy.secret import Secret, reveal

KEY_HEADER = "API_KEY"
DIGEST_HEADER = "API_DIGEST"
TIMESTAMP_PARAM = "qts"


class QuicklizardOptions(SchemeOptions):
    scheme: Literal["quicklizard"]
    api_key: str | Secret = Field(description="Quicklizard API key, sent as API_KEY.")
    api_secret: Secret = Field(
        description="Quicklizard API secret, appended to the digested message of API_DIGEST (never sent)."
    )


def timestamped_query(query: str, ms: int) -> str:
    """The raw query with ``qts=<ms>`` appended (a client ``qts`` removed).

    Same result as :func:`set_query_params`; the common case (no ``qts``, no
    percent sign that could spell one, no empty parameter to drop) skips its
    split/unquote/quote work.
    """
    if not query:
        return f"qts={ms}"
    if (
        "qts" not in query
        and "%" not in query
        and "&&" not in query
        and query[0] != "&"
        and query[-1] != "&"
    ):
        return f"{query}&qts={ms}"
    return set_query_params(query, {TIMESTAMP_PARAM: str(ms)})


@register
class Quicklizard(AuthScheme):
    name = "quicklizard"
    Options = QuicklizardOptions
    needs_body = True
    injected_headers = frozenset({KEY_HEADER, DIGEST_HEADER})

    def __init__(self, options: QuicklizardOptions, context: SchemeContext) -> None:
        super().__init__(options, context)
        self._api_key = reveal(options.api_key)
        self._secret_b = options.api_secret.reveal().encode()
        self._secret_headers = (
            frozenset({KEY_HEADER}) if isinstance(options.api_key, Secret) else frozenset()
        )

    timestamped_query = staticmethod(timestamped_query)

    def message(self, path: str, query: str, size: int) -> Message:
        """``path + query + body + api_secret`` (query already carrying ``qts``) as parts."""
        if size:
            return ((path + query).encode(), BODY, self._secret_b)
        return ((path + query).encode(), self._secret_b)

    def string_to_sign(self, path: str, query: str, body: bytes | SignedBody | None) -> bytes:
        """The message as bytes (an in-memory body)."""
        return (path + query).encode() + body_bytes(body) + self._secret_b

    @staticmethod
    def signature(message: bytes) -> str:
        """Hex SHA-256 of ``message``."""
        return hashlib.sha256(message).hexdigest()

    def sign(self, request: UpstreamRequest) -> AuthResult:
        """Blocking for a spooled body (it is read and hashed): :meth:`apply` runs it off the loop."""
        query = timestamped_query(request.query, unix_ms(self.context.clock.time()))
        h = hashlib.sha256()
        feed_message(h, self.message(request.path, query, body_size(request.body)), request.body)
        return AuthResult(
            headers={KEY_HEADER: self._api_key, DIGEST_HEADER: h.hexdigest()},
            query=query,
            secret_headers=self._secret_headers,
        )

    async def apply(self, request: UpstreamRequest) -> AuthResult:
        return await off_loop(self.sign, request, request.body)

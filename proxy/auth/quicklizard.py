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
from proxy.secret import Secret, reveal

KEY_HEADER = "API_KEY"
DIGEST_HEADER = "API_DIGEST"
TIMESTAMP_PARAM = "qts"


class QuicklizardOptions(SchemeOptions):
    scheme: Literal["quicklizard"]
    api_key: str | Secret
    api_secret: Secret


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

    def string_to_sign(self, path: str, query: str, body: bytes | None) -> bytes:
        """``path + query + body + api_secret`` (query already carrying ``qts``)."""
        return (path + query).encode() + (body or b"") + self._secret_b

    @staticmethod
    def signature(message: bytes) -> str:
        """Hex SHA-256 of ``message``."""
        return hashlib.sha256(message).hexdigest()

    def sign(self, request: UpstreamRequest) -> AuthResult:
        query = timestamped_query(request.query, unix_ms(self.context.clock.time()))
        digest = hashlib.sha256(self.string_to_sign(request.path, query, request.body)).hexdigest()
        return AuthResult(
            headers={KEY_HEADER: self._api_key, DIGEST_HEADER: digest},
            query=query,
            secret_headers=self._secret_headers,
        )

    async def apply(self, request: UpstreamRequest) -> AuthResult:
        return self.sign(request)

"""OAuth2 client-credentials bearer tokens: ``oauth2-client-credentials`` and ``threeplcentral``.

The scheme fetches a token (RFC 6749 §4.4) through :mod:`proxy.tokens`,
caches it until ``expires_in - refresh_before``, renews it in the background
ahead of expiry, shares one in-flight token request between concurrent
requests, and backs off when the endpoint fails. On an upstream 401 the
pipeline calls :meth:`on_unauthorized`; the token used is dropped and the
request may be retried once with a fresh one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import Field, field_validator
from yarl import URL

from proxy.auth.base import AuthResult, AuthScheme, SchemeContext, SchemeOptions, UpstreamRequest
from proxy.auth.registry import register
from proxy.secret import Secret, reveal
from proxy.tokens import ClientCredentialsFetcher, TokenManager, TokenRequestSpec

THREEPL_TOKEN_URL = "https://secure-wms.com/AuthServer/api/Token"
RESERVED_FIELDS = frozenset({"grant_type", "client_id", "client_secret"})
PLACEHOLDER = "Bearer <token>"


def _check_url(value: str | Secret) -> str | Secret:
    text = reveal(value)
    try:
        url = URL(text)
    except (ValueError, TypeError):
        raise ValueError("must be an http(s) URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an absolute http:// or https:// URL")
    if url.fragment:
        raise ValueError("must not have a #fragment")
    return value


def _scope_text(scope: str | Secret | list[str] | None) -> str | None:
    if scope is None:
        return None
    if isinstance(scope, list):
        return " ".join(scope) or None
    return reveal(scope) or None


class _TokenOptions(SchemeOptions):
    """Fields shared by both schemes."""

    client_id: str | Secret = Field(description="OAuth2 client id.")
    client_secret: Secret = Field(description="OAuth2 client secret (a secret reference).")
    scope: str | Secret | list[str] | None = Field(
        None, description="Scope to ask for: a string or a list (joined with spaces); default none."
    )
    refresh_before: float = Field(
        60.0, ge=0,
        description=(
            "Seconds before expiry when the token is renewed in the background; when expires_in is not more "
            "than this, renew at half its life."
        ),
    )
    default_expires_in: float = Field(
        300.0, gt=0, description="Token lifetime in seconds assumed when the token answer has no expires_in."
    )

    @field_validator("client_id", "client_secret")
    @classmethod
    def _not_empty(cls, v: str | Secret) -> str | Secret:
        if not reveal(v):
            raise ValueError("must not be empty")
        return v


class OAuth2Options(_TokenOptions):
    scheme: Literal["oauth2-client-credentials"]
    token_url: str | Secret = Field(description="The token endpoint (https://...).")
    client_auth: Literal["basic", "body"] = Field(
        "basic",
        description=(
            "How the client authenticates to the token endpoint: 'basic' (HTTP Basic, RFC 6749 2.3.1) or "
            "'body' (client_id and client_secret in the request body)."
        ),
    )
    request_format: Literal["form", "json"] = Field(
        "form", description="Token request body format: 'form' (application/x-www-form-urlencoded) or 'json'."
    )
    extra: dict[str, str | Secret] = Field(
        default_factory=dict,
        description=(
            "More fields for the token request (e.g. audience); values may be references."
        ),
    )

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, v: str | Secret) -> str | Secret:
        return _check_url(v)

    @field_validator("extra")
    @classmethod
    def _no_reserved(cls, v: dict[str, str | Secret]) -> dict[str, str | Secret]:
        clash = sorted(k for k in v if k in RESERVED_FIELDS)
        if clash:
            raise ValueError(f"{', '.join(clash)} cannot be set in extra (Signet sends it itself)")
        return v


class ThreePLCentralOptions(_TokenOptions):
    scheme: Literal["threeplcentral"]
    user_login: str | Secret = Field(description="The 3PL Central user login sent in the token request.")
    tpl: str | Secret | None = Field(
        None, description="The tpl value for single-tenant dynamic credentials; omit otherwise."
    )
    token_url: str | Secret = Field(THREEPL_TOKEN_URL, description="The 3PL Central token endpoint.")

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, v: str | Secret) -> str | Secret:
        return _check_url(v)


class _BearerTokenScheme(AuthScheme):
    """Shared machinery: a fetcher (HTTP) and a manager (cache/single flight/backoff)."""

    needs_body = True  # so a 401 can be retried with the same bytes
    retries_on_401 = True  # a rejected token is dropped and a fresh one fetched
    injected_headers = frozenset({"Authorization"})

    def __init__(self, options: Any, context: SchemeContext) -> None:
        super().__init__(options, context)
        self.spec = self._spec(options)
        self.fetcher = ClientCredentialsFetcher(
            self.spec,
            clock=context.clock,
            connect_timeout=context.connect_timeout,
            read_timeout=context.read_timeout,
            ssl=context.ssl,
            proxy=context.egress,  # token requests leave the way the route's requests do
        )
        shared = None
        if context.state is not None:  # Redis (and cryptography) only for a config that uses it
            from proxy.sharedtokens import SharedTokenCache

            shared = SharedTokenCache(
                context.state,
                route=context.route,
                spec=self.spec,
                fetch_timeout=context.connect_timeout + context.read_timeout,
            )
        self.tokens = TokenManager(
            route=context.route,
            key=self.spec.cache_key(context.route),
            fetch=self.fetcher.fetch,
            clock=context.clock,
            metrics=context.metrics,
            shared=shared,
        )

    def _spec(self, options: Any) -> TokenRequestSpec:
        raise NotImplementedError

    async def start(self) -> None:
        await self.fetcher.start()

    async def close(self) -> None:
        await self.tokens.close()
        await self.fetcher.close()

    async def apply(self, request: UpstreamRequest | None = None) -> AuthResult:
        token = await self.tokens.get()
        return AuthResult(
            headers={"Authorization": token.authorization},
            secret_headers=frozenset({"Authorization"}),
            state=token,
        )

    async def on_unauthorized(self, result: AuthResult) -> bool:
        """Drop the token ``result`` carried (if still cached); retrying once is worthwhile."""
        if result.state is None:
            return False
        self.tokens.invalidate(result.state)
        return True

    def placeholder_result(self) -> AuthResult:
        """The header ``signet sign`` shows without fetching: ``Authorization: Bearer <token>``."""
        return AuthResult(headers={"Authorization": PLACEHOLDER}, secret_headers=frozenset())

    def secret_values(self) -> Iterable[str]:
        yield from super().secret_values()
        yield from self.tokens.recent_tokens()


@register
class OAuth2ClientCredentials(_BearerTokenScheme):
    name = "oauth2-client-credentials"
    Options = OAuth2Options

    def _spec(self, options: OAuth2Options) -> TokenRequestSpec:
        fields: dict[str, str] = {}
        scope = _scope_text(options.scope)
        if scope:
            fields["scope"] = scope
        fields.update({k: reveal(v) for k, v in options.extra.items()})
        secret_values = tuple(
            v.reveal()
            for v in [*options.extra.values(), options.client_id, options.scope]
            if isinstance(v, Secret)
        )
        return TokenRequestSpec(
            token_url=reveal(options.token_url),
            client_id=reveal(options.client_id),
            client_secret=options.client_secret.reveal(),
            client_auth=options.client_auth,
            request_format=options.request_format,
            fields=fields,
            refresh_before=options.refresh_before,
            default_expires_in=options.default_expires_in,
            secret_values=secret_values,
        )


@register
class ThreePLCentral(_BearerTokenScheme):
    """3PL Central (Extensiv) WMS: Basic client auth, JSON body with ``user_login`` [``tpl``]."""

    name = "threeplcentral"
    Options = ThreePLCentralOptions

    def _spec(self, options: ThreePLCentralOptions) -> TokenRequestSpec:
        fields = {"user_login": reveal(options.user_login)}
        if options.tpl is not None and reveal(options.tpl):
            fields["tpl"] = reveal(options.tpl)
        scope = _scope_text(options.scope)
        if scope:
            fields["scope"] = scope
        secret_values = tuple(
            v.reveal()
            for v in (options.client_id, options.user_login, options.tpl, options.scope)
            if isinstance(v, Secret)
        )
        return TokenRequestSpec(
            token_url=reveal(options.token_url),
            client_id=reveal(options.client_id),
            client_secret=options.client_secret.reveal(),
            client_auth="basic",
            request_format="json",
            fields=fields,
            refresh_before=options.refresh_before,
            default_expires_in=options.default_expires_in,
            secret_values=secret_values,
        )

"""The four schemes that need no vendor rules: none, static, basic, bearer."""

from __future__ import annotations

import base64
from typing import Literal

from pydantic import Field

from proxy.auth.base import AuthResult, AuthScheme, SchemeOptions, UpstreamRequest
from proxy.auth.registry import register
from proxy.secret import Secret, reveal


class NoneOptions(SchemeOptions):
    scheme: Literal["none"]


@register
class NoAuth(AuthScheme):
    """Adds nothing; the pipeline has still stripped every client credential."""

    name = "none"
    Options = NoneOptions

    async def apply(self, request: UpstreamRequest) -> AuthResult:
        return _EMPTY


_EMPTY = AuthResult()


class StaticOptions(SchemeOptions):
    scheme: Literal["static"]
    headers: dict[str, str | Secret] = Field(
        description=(
            "Headers sent on every request: name -> value (values from references are masked by 'signet "
            "sign')."
        ),
    )


@register
class StaticHeaders(AuthScheme):
    """Fixed headers; values that came from a secret reference are masked by ``sign``."""

    name = "static"
    Options = StaticOptions

    def __init__(self, options: StaticOptions, context) -> None:
        super().__init__(options, context)
        self._result = AuthResult(
            headers={k: reveal(v) for k, v in options.headers.items()},
            secret_headers=frozenset(
                k for k, v in options.headers.items() if isinstance(v, Secret)
            ),
        )

    async def apply(self, request: UpstreamRequest) -> AuthResult:
        return self._result


class BasicOptions(SchemeOptions):
    scheme: Literal["basic"]
    username: Secret = Field(description="User name for 'Authorization: Basic'.")
    password: Secret = Field(description="Password for 'Authorization: Basic' (a secret reference).")


def basic_authorization(user: str, password: str) -> str:
    """``Basic base64(user:password)`` (RFC 7617, UTF-8)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


@register
class BasicAuth(AuthScheme):
    name = "basic"
    Options = BasicOptions

    def __init__(self, options: BasicOptions, context) -> None:
        super().__init__(options, context)
        self._result = AuthResult(
            headers={
                "Authorization": basic_authorization(
                    options.username.reveal(), options.password.reveal()
                )
            },
            secret_headers=frozenset({"Authorization"}),
        )

    async def apply(self, request: UpstreamRequest) -> AuthResult:
        return self._result


class BearerOptions(SchemeOptions):
    scheme: Literal["bearer"]
    token: Secret = Field(description="Token sent as 'Authorization: Bearer <token>' (a secret reference).")


@register
class BearerAuth(AuthScheme):
    name = "bearer"
    Options = BearerOptions

    def __init__(self, options: BearerOptions, context) -> None:
        super().__init__(options, context)
        self._result = AuthResult(
            headers={"Authorization": f"Bearer {options.token.reveal()}"},
            secret_headers=frozenset({"Authorization"}),
        )

    async def apply(self, request: UpstreamRequest) -> AuthResult:
        return self._result

"""Every failure Signet reports, as one exception tree.

Each leaf carries the HTTP status and the contract's error code, so the
request pipeline turns any of them into the contract's JSON body and
``X-Signet-Error`` header in one place (``proxy.forward``)::

    SignetError
    ├── ConfigError                  not an HTTP error: ``signet check`` / start-up, exit 1
    ├── ListenError                  not an HTTP error: an address cannot be bound, exit 1
    ├── CAError                      not an HTTP error: ``signet ca`` cannot write or read the local CA
    └── RequestError                 answered to the client as JSON
        ├── BadRequest               400 bad_request
        ├── Forbidden                403 forbidden
        ├── ProxyAuthRequired        407 proxy_auth_required
        ├── NoRoute                  404 no_route
        ├── BodyTimeout              408 body_timeout
        ├── BodyTooLarge             413 body_too_large
        ├── RateLimited              429 rate_limited (with Retry-After)
        ├── Overloaded               503 overloaded
        ├── StateUnavailable         503 state_unavailable
        ├── SpoolFailed              507 spool_failed
        ├── UpstreamUnreachable      502 upstream_unreachable
        ├── TokenError               502 token_error
        └── UpstreamTimeout          504 upstream_timeout

Messages never contain a secret: callers build them from names, statuses and
OAuth2 error fields only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


class SignetError(Exception):
    """Root of every error Signet raises on purpose."""


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a config file: where it is and what is wrong."""

    location: str  # e.g. "routes[2].auth.api_secret"
    message: str
    line: int | None = None  # 1-based line in the YAML file, when known

    def __str__(self) -> str:
        where = self.location or "<top level>"
        line = f" (line {self.line})" if self.line else ""
        return f"{where}{line}: {self.message}"


class ConfigError(SignetError):
    """The config cannot be used; carries every problem found, not just the first."""

    def __init__(self, problems: list[ConfigProblem], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        head = f"{source}: " if source else ""
        super().__init__(
            head + count(len(problems), "problem") + "\n" + "\n".join(f"  {p}" for p in problems)
        )


def count(n: int, noun: str) -> str:
    """``1 problem``, ``2 problems``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class ListenError(SignetError):
    """A listener cannot bind its address; names the address and the setting that chose it."""

    SETTINGS = {"listen": "--listen", "admin_listen": "--admin-listen"}

    def __init__(self, setting: str, address: tuple[str, int], reason: str) -> None:
        self.setting = setting
        self.address = address
        self.reason = reason
        host, port = address
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        flag = self.SETTINGS.get(setting, "")
        super().__init__(
            f"cannot listen on {shown} ({reason}); change '{setting}' in the config"
            + (f" or pass {flag} HOST:PORT" if flag else "")
        )


class CAError(SignetError):
    """``signet ca init``/``show`` cannot do what was asked (files exist, unreadable, not a CA)."""


class RequestError(SignetError):
    """An error answered to the client with the contract's JSON body."""

    status: int = 500
    code: str = "internal_error"
    headers: Mapping[str, str] = {}  # extra response headers (e.g. Retry-After); never a secret

    def __init__(self, message: str, *, route: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.route = route


class BadRequest(RequestError):
    status, code = 400, "bad_request"


class UriTooLong(RequestError):
    """A request line over ``limits.max_url_length``."""

    status, code = 414, "uri_too_long"


class HeadersTooLarge(RequestError):
    """Too many headers, a header line too long, or a head over ``limits.max_head_bytes``."""

    status, code = 431, "headers_too_large"


class Forbidden(RequestError):
    status, code = 403, "forbidden"


class NoRoute(RequestError):
    status, code = 404, "no_route"


class ProxyAuthRequired(RequestError):
    status, code = 407, "proxy_auth_required"


class BodyTimeout(RequestError):
    """A client sending its body slower than ``limits.min_upload_rate``, or silent too long."""

    status, code = 408, "body_timeout"


class BodyTooLarge(RequestError):
    status, code = 413, "body_too_large"


class RateLimited(RequestError):
    """A route's or client's rate limit, or a vendor's 429 pause; says when to come back."""

    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after: str, route: str | None = None) -> None:
        super().__init__(message, route=route)
        self.headers = {"Retry-After": retry_after}


class UpstreamUnreachable(RequestError):
    status, code = 502, "upstream_unreachable"


class TokenError(RequestError):
    status, code = 502, "token_error"


class Overloaded(RequestError):
    status, code = 503, "overloaded"


class StateUnavailable(RequestError):
    """Redis (``state.redis``) cannot be reached and ``state.on_error`` is ``deny``."""

    status, code = 503, "state_unavailable"


class SpoolFailed(RequestError):
    """The disk under ``spool_dir`` refused a large signed body (full, unwritable, I/O error).

    507 Insufficient Storage (RFC 4918 §11.5) says exactly this: the server
    could not store what it needs to complete the request. It is kept apart
    from 503 ``overloaded``, which invites a plain retry, because an operator
    must act (free space, fix ``spool_dir``) before a retry can succeed.
    """

    status, code = 507, "spool_failed"


class UpstreamTimeout(RequestError):
    status, code = 504, "upstream_timeout"

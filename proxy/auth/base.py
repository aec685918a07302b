"""The interface every auth scheme implements.

Modelled on httpx's ``Auth`` and botocore's signers: a scheme is a small
class that receives the request exactly as it will be sent upstream
(:class:`UpstreamRequest`) and returns what to add (:class:`AuthResult`). The
pipeline owns stripping, buffering and sending; the scheme owns only its
vendor's rules.

A scheme declares, as class attributes:

- ``name``: the ``auth.scheme`` value that selects it;
- ``Options``: a pydantic model of its config fields (``extra="forbid"``), so
  config validation, locations and did-you-mean come for free;
- ``needs_body``: whether the pipeline must read the body whole (up to
  ``max_body_bytes``) and pass it in ``UpstreamRequest.body``;
- ``body_digests``: digests of the body the scheme uses (``sha256``,
  ``md5``...), computed as the bytes arrive when the body is spooled to disk;
- ``retries_on_401``: whether :meth:`AuthScheme.on_unauthorized` can make a
  second attempt worthwhile (a token scheme), so the pipeline keeps the body.

``needs_body`` and ``retries_on_401`` are capabilities of the *instance*: the
class value is the default, and a scheme whose answer depends on its options
(an ``hmac`` recipe signs the body only when a template uses it) sets them in
``__init__``. The pipeline and ``signet check`` read them from the instance,
never from the class or by comparing methods.
- ``injected_headers``: header names it sets, always stripped from clients.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from proxy.body import BodyPrefix, SignedBody
from proxy.clock import SYSTEM_CLOCK, Clock
from proxy.secret import secret_values_in


class SchemeOptions(BaseModel):
    """Base of every scheme's config model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    scheme: str


@dataclass(slots=True)
class UpstreamRequest:
    """The request as it will go upstream.

    ``path`` and ``query`` are raw (percent-encoded exactly as the client sent
    them, after the route prefix was replaced by the upstream base path);
    ``query`` has no leading ``?`` and is ``""`` when there is none. ``body``
    is the exact body to be sent when the scheme asked for it, else None:
    ``bytes``, or from the pipeline a :class:`~proxy.body.SignedBody`, which
    may be spooled to disk; schemes read it through the helpers of
    :mod:`proxy.body` (``feed_message``, ``body_digest``, ``off_loop``) so both
    work without loading a large body into memory.
    """

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes | SignedBody | None = None
    scheme_host: str = ""  # the upstream origin, e.g. "https://api.example.com" (aws-sigv4 signs its host)

    @property
    def path_query(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


@dataclass(slots=True)
class AuthResult:
    """What a scheme adds to a request.

    ``headers`` are set on the upstream request (replacing any of the same
    name). ``query``, when not None, replaces the raw query string (schemes
    that add a parameter build it with :func:`set_query_params`, so what they
    sign is what is sent); ``path`` likewise replaces the raw path.
    ``secret_headers`` names headers whose whole value is secret-bearing
    (``signet sign`` masks them). ``state`` is opaque to the pipeline and
    handed back to :meth:`AuthScheme.on_unauthorized`. ``debug``
    holds labelled texts (e.g. SigV4's canonical request) that only
    ``signet sign --show-secrets`` prints; they may contain secrets.
    """

    headers: dict[str, str] = field(default_factory=dict, repr=False)  # may hold a credential
    query: str | None = None
    path: str | None = None  # when not None, replaces the raw path (aws-sigv4 sends what it signed)
    secret_headers: frozenset[str] = frozenset()
    state: Any = None
    debug: list[tuple[str, str]] | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class SchemeContext:
    """What the runtime hands a scheme besides its options."""

    route: str
    clock: Clock = SYSTEM_CLOCK
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    ssl: Any = None  # ssl.SSLContext | bool | None, for schemes that make their own calls
    egress: Any = None  # proxy.upstream.egress.EgressProxy | None: the route's egress proxy
    metrics: Any = None  # proxy.metrics.Metrics | None
    state: Any = None  # proxy.state.SharedState | None: Redis shared across processes
    # aws-sigv4: the x-amz-* header globs it may sign besides its own (None: no rule, e.g. `signet sign`)
    client_amz_headers: tuple[str, ...] | None = None


class AuthScheme:
    """Base class: subclasses set the class attributes and implement ``apply``."""

    name: ClassVar[str]
    Options: ClassVar[type[SchemeOptions]] = SchemeOptions
    needs_body: bool = False
    retries_on_401: bool = False
    body_digests: frozenset[str] = frozenset()
    injected_headers: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: SchemeOptions, context: SchemeContext) -> None:
        self.options = options
        self.context = context

    async def start(self) -> None:
        """Acquire resources (e.g. an HTTP session for a token endpoint)."""

    async def close(self) -> None:
        """Release what ``start`` acquired."""

    async def apply(self, request: UpstreamRequest) -> AuthResult:
        raise NotImplementedError

    def body_prefix(self, request: UpstreamRequest) -> BodyPrefix | None:
        """A hash state fed ``prefix`` when the message is ``prefix + body + ...``.

        Called before the body arrives (``request.body`` is None). The spooler
        feeds the returned state every body byte, so signing a spooled body
        needs no second pass over the file (see :func:`proxy.body.prehashed`).
        None, the default, when the prefix depends on something known only
        later (a timestamp read when the body is complete).
        """
        return None

    async def on_unauthorized(self, result: AuthResult) -> bool:
        """The upstream answered 401 to a request signed with ``result``.

        Return True when retrying once is worthwhile (a token was dropped and a
        new one can be fetched). Signature schemes cannot do better: False.
        """
        return False

    def secret_values(self) -> Iterable[str]:
        """Every secret this scheme holds, for log and output redaction."""
        return secret_values_in(self.options)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} route={self.context.route!r}>"


_QUERY_SAFE = "-._~!$'()*,;:@/?"


def set_query_params(raw_query: str, params: Mapping[str, str]) -> str:
    """Append ``params`` to a raw query, dropping client parameters of the same name.

    The client's other parameters keep their exact bytes and order; names are
    compared after percent-decoding so ``q%74s=1`` cannot smuggle a second
    ``qts`` past the replacement. New values are percent-encoded (RFC 3986
    query characters kept).
    """
    from urllib.parse import unquote

    names = set(params)
    kept = [
        part
        for part in raw_query.split("&")
        if part and unquote(part.split("=", 1)[0]) not in names
    ]
    kept.extend(
        f"{quote(k, safe=_QUERY_SAFE)}={quote(v, safe=_QUERY_SAFE)}" for k, v in params.items()
    )
    return "&".join(kept)

"""``hmac``: a declarative signature recipe, for a new vendor without new code.

```yaml
auth:
  scheme: hmac
  vars: {key_id: ${ACME_KEY}, secret: ${ACME_SECRET}}
  message: "{method}\\n{path}\\n{query}\\n{body_sha256}\\n{timestamp}"
  key: "{secret}"            # omit for a plain digest (no HMAC)
  algorithm: sha256          # sha1 | sha256 | sha512 | md5
  encoding: hex              # hex | HEX | base64 | base64url
  headers: {X-Key: "{key_id}", X-Sig: "{signature}", X-Ts: "{timestamp}"}
  query: {}                  # parameters to append, e.g. {qts: "{timestamp_ms}"}
```

Templates
    Every template is parsed once, when the config is validated, into a
    :class:`Template` (a tuple of literal bytes and placeholder names), so a
    bad template is a config error with its location (``('message',)``,
    ``('headers', 'X-Sig')``...): unknown placeholder (with did-you-mean and
    the list of valid ones), ``{signature}`` in ``message``/``key``, unbalanced
    brace, empty placeholder. ``{{``/``}}`` are literal braces. When the scheme
    is built, the ``vars`` are folded into the templates as literal bytes, so
    their values are data (never parsed again, ``{`` or ``%`` in a secret is
    harmless) and per request only the request-dependent placeholders are
    filled in. A template given directly as a secret reference (e.g.
    ``key: ${ACME_SECRET}``) is taken literally, never parsed: a secret is data.

Bytes
    The message and key are bytes: literals and values UTF-8 encoded, the body
    raw, so a body that is not UTF-8 is signed exactly as sent. ``headers`` and
    ``query`` values are text: the raw-body placeholders ``{body}`` and
    ``{body_or_empty_json}`` are refused there (a body could carry line breaks
    into a header; use ``{body_sha256}``, ``{body_md5}`` or ``{body_base64}``).

Bodies spooled to disk
    A body larger than ``spool_bytes`` is never loaded whole: ``{body_sha256}``
    and ``{body_md5}`` were computed as it arrived (the scheme declares them in
    ``body_digests``), and a message holding ``{body}``,
    ``{body_or_empty_json}`` or ``{body_base64}`` is streamed through the
    HMAC/digest in a worker thread (``RecipeSigning.message`` is then None);
    when everything before a ``{body}`` is known before the body arrives
    (method, path, query, vars) and the key is constant, that prefix and the
    body are hashed as the bytes arrive and no second pass is needed.
    Only a ``key``, header or query parameter that holds the body itself or
    its base64 cannot work that way; such a request is answered
    ``413 body_too_large``.

One time, one nonce
    A request reads the clock once and asks for one nonce, and only when a
    template uses them; ``{timestamp}``, ``{timestamp_ms}`` and ``{nonce}``
    are the same value wherever they appear (seconds are derived from the
    rounded milliseconds).

Query parameters and ``{signature}``: the ordering
    ``query`` parameters are added with
    :func:`proxy.auth.base.set_query_params` (a client parameter of the same
    name is dropped, the new ones go at the end). A parameter whose template
    does not use ``{signature}`` is added *before* signing, so ``{query}`` and
    ``{path_query}`` include it (what is signed is what is sent). A parameter
    whose template uses ``{signature}`` cannot be part of what it signs: it is
    appended *after* signing, last, and is not part of the signed ``{query}``
    (client parameters of that name are still removed before signing). So in
    ``headers`` and in those late parameters, ``{query}`` is the signed query.
    A parameter added before signing may not use ``{query}``/``{path_query}``
    (it would be part of its own value): that is a config error.

Built-ins are classes, not recipes
    The five vendor schemes (``threeclicks-simple``, ``threeclicks-strict``,
    ``threecommas``, ``apliiq``, ``quicklizard``) are small hand-written
    classes rather than canned recipes, for three reasons: each reads line by
    line against its vendor's page (botocore-style ``string_to_sign`` /
    ``signature`` steps, vendor quirks documented where they apply); they skip
    the template machinery, which matters for the per-signature benchmark; and
    two independent implementations let the tests check each against the
    other (``tests/auth/test_recipe_equivalence.py`` shows a recipe for each
    vendor produces byte-identical headers and query), which a recipe tested
    against itself could not.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationInfo,
    field_validator,
)

from proxy.auth.base import (
    AuthResult,
    AuthScheme,
    SchemeContext,
    SchemeOptions,
    UpstreamRequest,
    set_query_params,
)
from proxy.auth.digest import (
    ALGORITHMS,
    drop_query_params,
    encode_digest,
    keyed_signer,
    make_signer,
    unix_times,
)
from proxy.auth.registry import register
from proxy.body import (
    BODY,
    BODY_BASE64,
    BodyPrefix,
    MessagePart,
    body_digest,
    feed_message,
    is_spooled,
    off_loop,
    prehashed,
)
from proxy.errors import BodyTooLarge
from proxy.secret import MASK, Secret, reveal

BUILTIN_PLACEHOLDERS: tuple[str, ...] = (
    "method",
    "method_lower",
    "path",
    "query",
    "path_query",
    "body",
    "body_or_empty_json",
    "body_base64",
    "body_sha256",
    "body_md5",
    "timestamp",
    "timestamp_ms",
    "nonce",
    "signature",
)
_BUILTIN_SET = frozenset(BUILTIN_PLACEHOLDERS)
BODY_PLACEHOLDERS = frozenset(
    {"body", "body_or_empty_json", "body_base64", "body_sha256", "body_md5"}
)
RAW_BODY_PLACEHOLDERS = frozenset({"body", "body_or_empty_json"})
INLINE_BODY_PLACEHOLDERS = RAW_BODY_PLACEHOLDERS | {"body_base64"}  # the body itself, not a digest
_TIME = frozenset({"timestamp", "timestamp_ms"})
_KNOWN_BEFORE_BODY = frozenset({"method", "method_lower", "path", "query", "path_query"})
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")  # RFC 9110 field-name


class TemplateError(ValueError):
    """A template that cannot be parsed or uses a placeholder it may not."""


@dataclass(frozen=True, slots=True, repr=False)
class Template:
    """A parsed template: literal ``bytes`` parts and placeholder names (``str``).

    ``secret`` templates (given directly as a secret reference) are one
    literal and show as ``***``.
    """

    source: str
    parts: tuple[bytes | str, ...]
    secret: bool = False

    @property
    def names(self) -> frozenset[str]:
        return frozenset(p for p in self.parts if isinstance(p, str))

    def bind(self, values: Mapping[str, bytes]) -> Template:
        """Replace the placeholders named in ``values`` by literal bytes (merged)."""
        out: list[bytes | str] = []
        for part in self.parts:
            if isinstance(part, str) and part in values:
                part = values[part]
            if isinstance(part, bytes) and out and isinstance(out[-1], bytes):
                out[-1] = out[-1] + part
            elif part != b"":
                out.append(part)
        return Template(self.source, tuple(out), self.secret)

    def compile(self) -> tuple[bytes, tuple[str, ...]]:
        """``(fmt, names)`` such that ``fmt % tuple(values[n] for n in names)`` renders it."""
        fmt = b"".join(
            p.replace(b"%", b"%%") if isinstance(p, bytes) else b"%s" for p in self.parts
        )
        return fmt, tuple(p for p in self.parts if isinstance(p, str))

    def render(self, values: Mapping[str, bytes]) -> bytes:
        """Render with ``values`` (name -> bytes); every placeholder must be present."""
        return b"".join(p if isinstance(p, bytes) else values[p] for p in self.parts)

    def __repr__(self) -> str:
        return f"Template({MASK if self.secret else self.source!r})"


def parse_template(source: str) -> Template:
    """Parse ``source`` into literal and placeholder parts (``{{``/``}}`` are braces)."""
    parts: list[bytes | str] = []
    literal: list[str] = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c == "{":
            if source.startswith("{", i + 1):
                literal.append("{")
                i += 2
                continue
            end = source.find("}", i + 1)
            inner_open = source.find("{", i + 1)
            if end < 0 or (0 <= inner_open < end):
                raise TemplateError(
                    f"unbalanced brace: '{{' at position {i} is not closed "
                    "(write '{{' for a literal brace)"
                )
            name = source[i + 1 : end]
            if not name:
                raise TemplateError(f"empty placeholder '{{}}' at position {i}")
            if not _NAME_RE.match(name):
                raise TemplateError(
                    f"invalid placeholder {{{name}}} at position {i}: "
                    "a placeholder is a name of letters, digits and '_'"
                )
            if literal:
                parts.append("".join(literal).encode())
                literal.clear()
            parts.append(name)
            i = end + 1
        elif c == "}":
            if source.startswith("}", i + 1):
                literal.append("}")
                i += 2
                continue
            raise TemplateError(
                f"unbalanced brace: '}}' at position {i} has no opening '{{' "
                "(write '}}' for a literal brace)"
            )
        else:
            literal.append(c)
            i += 1
    if literal:
        parts.append("".join(literal).encode())
    return Template(source, tuple(parts))


def _braced(names: Any) -> str:
    return ", ".join(f"{{{name}}}" for name in names)


def _check_template(template: Template, kind: str, data: Mapping[str, Any]) -> None:
    """Placeholder rules for one template; ``kind`` is message|key|header|query."""
    variables = data.get("vars")  # absent when vars itself was invalid
    names = [p for p in template.parts if isinstance(p, str)]
    for name in names:
        if name in _BUILTIN_SET:
            if name == "signature":
                if kind in ("message", "key"):
                    raise TemplateError(
                        f"{{signature}} cannot be used in {kind!r}: it is computed from "
                        "the message and key; use it in 'headers' or 'query'"
                    )
                if "message" in data and data["message"] is None:
                    raise TemplateError("{signature} needs a 'message' to sign; none is set")
            elif name in RAW_BODY_PLACEHOLDERS and kind in ("header", "query"):
                raise TemplateError(
                    f"{{{name}}} (the raw body) cannot go into a {kind}; "
                    "use {body_sha256}, {body_md5} or {body_base64}"
                )
            elif (
                name in ("query", "path_query")
                and kind == "query"
                and "signature" not in names
            ):
                raise TemplateError(
                    f"{{{name}}} in a query parameter added before signing would contain "
                    "the parameter itself"
                )
            continue
        if variables is None:
            continue
        if name not in variables:
            valid = [
                p
                for p in BUILTIN_PLACEHOLDERS
                if not (p == "signature" and kind in ("message", "key"))
                and not (p in RAW_BODY_PLACEHOLDERS and kind in ("header", "query"))
            ]
            valid += sorted(variables)
            close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
            hint = f"; did you mean {{{close[0]}}}?" if close else ""
            raise TemplateError(
                f"unknown placeholder {{{name}}}{hint} (valid: {_braced(valid)}; "
                "names in 'vars' are placeholders too)"
            )
        if kind == "header":
            value = reveal(variables[name])
            if any(ch in value for ch in "\r\n\0"):
                raise TemplateError(
                    f"vars.{name} contains a line break or NUL and cannot go into a header"
                )


def _template(kind: str) -> Any:
    def validate(value: Any, info: ValidationInfo) -> Template:
        if isinstance(value, Template):
            template = value
        elif isinstance(value, Secret):
            # A secret is data: taken literally, never parsed as a template.
            template = Template(MASK, (value.reveal().encode(),), secret=True)
        elif isinstance(value, str):
            template = parse_template(value)
        else:
            raise TemplateError("must be a template string")
        _check_template(template, kind, info.data)
        return template

    return PlainValidator(validate)


def _check_var_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ValueError(
            f"var name {name!r} must be letters, digits and '_' (not starting with a digit)"
        )
    if name in _BUILTIN_SET:
        raise ValueError(
            f"var name {name!r} collides with the built-in placeholder {{{name}}}; rename it"
        )
    return name


def _check_header_name(name: str) -> str:
    if not _TOKEN_RE.match(name):
        raise ValueError(f"{name!r} is not a valid header name")
    return name


def _check_param_name(name: str) -> str:
    if not name:
        raise ValueError("query parameter name must not be empty")
    return name


VarName = Annotated[str, AfterValidator(_check_var_name)]
HeaderName = Annotated[str, AfterValidator(_check_header_name)]
ParamName = Annotated[str, AfterValidator(_check_param_name)]
# dumped as the template's source (``***`` for a secret one)
_AS_SOURCE = PlainSerializer(lambda t: t.source, return_type=str)
MessageTemplate = Annotated[Template, _template("message"), _AS_SOURCE]
KeyTemplate = Annotated[Template, _template("key"), _AS_SOURCE]
HeaderTemplate = Annotated[Template, _template("header"), _AS_SOURCE]
QueryTemplate = Annotated[Template, _template("query"), _AS_SOURCE]


class RecipeOptions(SchemeOptions):
    """``auth`` of a ``scheme: hmac`` route. Field order matters: ``vars`` and
    ``message`` are validated first so the templates can be checked against them."""

    scheme: Literal["hmac"]
    vars: dict[VarName, str | Secret] = Field(
        {},
        description=(
            "Named values the templates use by name (secrets allowed); substituted as data, never parsed as "
            "templates."
        ),
    )
    message: MessageTemplate | None = Field(
        None,
        description=(
            "Template of the signed message ({method}, {path}, {query}, {body_sha256}, {timestamp}, "
            "vars...); omit for headers without a signature."
        ),
    )
    key: KeyTemplate | None = Field(
        None,
        description=(
            "Template of the HMAC key, usually \"{secret}\"; omit for a plain digest of the message."
        ),
    )
    algorithm: Literal["sha1", "sha256", "sha512", "md5"] = Field(
        "sha256", description="Hash: sha1, sha256, sha512 or md5."
    )
    encoding: Literal["hex", "HEX", "base64", "base64url"] = Field(
        "hex",
        description=(
            "Signature encoding: hex, HEX (upper case), base64 (padded) or base64url (URL-safe, no padding)."
        ),
    )
    headers: dict[HeaderName, HeaderTemplate] = Field(
        {}, description="Headers to set: name -> template ({signature} allowed)."
    )
    query: dict[ParamName, QueryTemplate] = Field(
        {},
        description=(
            "Query parameters to append (replacing the client's of the same name): name -> template."
        ),
    )

    @field_validator("key")
    @classmethod
    def _key_needs_message(cls, value: Template | None, info: ValidationInfo) -> Template | None:
        if value is not None and "message" in info.data and info.data["message"] is None:
            raise ValueError("a 'key' without a 'message' has nothing to sign")
        return value

    @field_validator("headers")
    @classmethod
    def _unique_headers(cls, value: dict[str, Template]) -> dict[str, Template]:
        seen: dict[str, str] = {}
        for name in value:
            if name.lower() in seen:
                raise ValueError(f"header {name!r} is given twice (as {seen[name.lower()]!r} too)")
            seen[name.lower()] = name
        return value


@dataclass(slots=True)
class RecipeSigning:
    """Every step of one signature: for tests, ``signet sign`` and debugging."""

    message: bytes | None  # None too when the body was spooled (the message was streamed)
    signature: str | None
    headers: dict[str, str]
    query: str | None


_Compiled = tuple[bytes, tuple[str, ...]]


@register
class HmacRecipe(AuthScheme):
    name = "hmac"
    Options = RecipeOptions
    needs_body = False  # per instance: True when a template uses a body placeholder

    def __init__(self, options: RecipeOptions, context: SchemeContext) -> None:
        super().__init__(options, context)
        var_bytes = {name: reveal(v).encode() for name, v in options.vars.items()}
        secret_vars = {name for name, v in options.vars.items() if isinstance(v, Secret)}
        used: set[str] = set()

        def bound(template: Template) -> Template:
            t = template.bind(var_bytes)
            used.update(t.names)
            return t

        # message and key
        self._message: _Compiled | None = None
        self._message_t: Template | None = None
        self._signer = None
        self._keyed = None
        self._key: _Compiled | None = None
        self._key_t: Template | None = None
        self._stream_base: Any = None  # hash/HMAC state to copy for a streamed (spooled) message
        inline: set[str] = set()  # placeholders that put the body itself outside the message
        ctor = self._ctor = ALGORITHMS[options.algorithm]
        self._encoding = options.encoding
        if options.message is not None:
            self._message_t = bound(options.message)
            self._message = self._message_t.compile()
            if options.key is None:
                self._signer = make_signer(options.algorithm, options.encoding, None)
                self._stream_base = ctor()
            else:
                key = bound(options.key)
                inline |= key.names & INLINE_BODY_PLACEHOLDERS
                if key.names:
                    self._key_t = key
                    self._key = key.compile()
                    self._keyed = keyed_signer(options.algorithm, options.encoding)
                else:
                    self._signer = make_signer(options.algorithm, options.encoding, key.render({}))
                    self._stream_base = hmac.new(key.render({}), digestmod=ctor)

        # headers: constant ones rendered now
        self._const_headers: dict[str, str] = {}
        self._dyn_headers: list[tuple[str, bytes, tuple[str, ...]]] = []
        for name, template in options.headers.items():
            t = bound(template)
            inline |= t.names & INLINE_BODY_PLACEHOLDERS
            if t.names:
                self._dyn_headers.append((name, *t.compile()))
            else:
                self._const_headers[name] = t.render({}).decode()
        self._secret_headers = frozenset(
            name for name, t in options.headers.items() if t.secret or (t.names & secret_vars)
        )

        # query: parameters without {signature} before signing, with it after
        self._pre_query: list[tuple[str, bytes, tuple[str, ...]]] = []
        self._post_query: list[tuple[str, bytes, tuple[str, ...]]] = []
        for name, template in options.query.items():
            t = bound(template)
            inline |= t.names & INLINE_BODY_PLACEHOLDERS
            late = "signature" in t.names
            (self._post_query if late else self._pre_query).append((name, *t.compile()))
        self._post_names = frozenset(name for name, _, _ in self._post_query)
        self._sets_query = bool(options.query)

        self.needs_body = bool(used & BODY_PLACEHOLDERS)
        self.body_digests = frozenset(
            name for name in ("sha256", "md5") if f"body_{name}" in used
        )
        self._inline = frozenset(inline)
        self.injected_headers = frozenset(options.headers)  # type: ignore[misc]
        self._used = frozenset(used)
        self._need_method = bool(used & {"method", "method_lower"})
        self._need_path = "path" in used
        self._need_time = bool(used & _TIME)
        self._need_nonce = "nonce" in used
        self._need_query = "query" in used
        self._need_path_query = "path_query" in used
        self._prefix_at = self._find_body_prefix()

    def _find_body_prefix(self) -> int | None:
        """Index of the message's ``{body}`` when all before it is known before the body.

        Then the spooler hashes the prefix and the body as they arrive. Not when
        a timestamp or nonce comes first, a query parameter is added before
        signing, the key is per request, or the body appears again later.
        """
        if self._message_t is None or self._stream_base is None or self._pre_query:
            return None
        parts = self._message_t.parts
        for i, part in enumerate(parts):
            if not isinstance(part, str):
                continue
            if part in RAW_BODY_PLACEHOLDERS:
                later = {p for p in parts[i + 1 :] if isinstance(p, str)}
                return None if later & INLINE_BODY_PLACEHOLDERS else i
            if part not in _KNOWN_BEFORE_BODY:
                return None
        return None

    def _prefix_bytes(self, request: UpstreamRequest) -> bytes:
        assert self._message_t is not None and self._prefix_at is not None
        query = request.query
        if self._post_names:
            query = drop_query_params(query, self._post_names)
        v = {
            "method": request.method.encode(),
            "method_lower": request.method.lower().encode(),
            "path": request.path.encode(),
            "query": query.encode(),
            "path_query": (f"{request.path}?{query}" if query else request.path).encode(),
        }
        head = self._message_t.parts[: self._prefix_at]
        return b"".join(p if isinstance(p, bytes) else v[p] for p in head)

    def body_prefix(self, request: UpstreamRequest) -> BodyPrefix | None:
        if self._prefix_at is None:
            return None
        prefix = self._prefix_bytes(request)
        h = self._stream_base.copy()
        h.update(prefix)
        return BodyPrefix(self, prefix, h)

    def render(self, request: UpstreamRequest) -> RecipeSigning:
        """Compute everything for one request (one clock read, one nonce)."""
        used = self._used
        v: dict[str, bytes] = {}
        if self._need_method:
            method = request.method
            v["method"] = method.encode()
            v["method_lower"] = method.lower().encode()
        if self._need_path:
            v["path"] = request.path.encode()
        spooled = is_spooled(request.body)
        if spooled:
            self._check_spoolable()
            for name in self.body_digests:
                v[f"body_{name}"] = body_digest(request.body, name).encode()
        elif self.needs_body:
            body = request.body or b""
            if not isinstance(body, bytes):
                body = body.data
            v["body"] = body
            if "body_or_empty_json" in used:
                v["body_or_empty_json"] = body or b"{}"
            if "body_base64" in used:
                v["body_base64"] = base64.b64encode(body)
            if "body_sha256" in used:
                v["body_sha256"] = hashlib.sha256(body).hexdigest().encode()
            if "body_md5" in used:
                v["body_md5"] = hashlib.md5(body).hexdigest().encode()
        clock = self.context.clock
        if self._need_time:
            seconds, ms = unix_times(clock.time())
            v["timestamp"] = b"%d" % seconds
            v["timestamp_ms"] = b"%d" % ms
        if self._need_nonce:
            v["nonce"] = clock.nonce().encode()

        query = request.query
        if self._post_names:
            query = drop_query_params(query, self._post_names)
        if self._pre_query:
            query = set_query_params(
                query,
                {n: (f % tuple([v[x] for x in xs])).decode() for n, f, xs in self._pre_query},
            )
        if self._need_query:
            v["query"] = query.encode()
        if self._need_path_query:
            v["path_query"] = (f"{request.path}?{query}" if query else request.path).encode()

        message = signature = None
        if spooled and self._message_t is not None:
            signature = self._streamed_signature(request, v)
            v["signature"] = signature.encode()
        elif self._message is not None:
            fmt, names = self._message
            message = fmt % tuple([v[n] for n in names])
            if self._signer is not None:
                signature = self._signer(message)
            else:
                kfmt, knames = self._key  # type: ignore[misc]
                signature = self._keyed(kfmt % tuple([v[n] for n in knames]), message)  # type: ignore[misc]
            v["signature"] = signature.encode()

        headers = dict(self._const_headers)
        for name, fmt, names in self._dyn_headers:
            headers[name] = (fmt % tuple([v[n] for n in names])).decode()
        if self._post_query:
            query = set_query_params(
                query,
                {n: (f % tuple([v[x] for x in xs])).decode() for n, f, xs in self._post_query},
            )
        return RecipeSigning(message, signature, headers, query if self._sets_query else None)

    def _check_spoolable(self) -> None:
        if self._inline:
            raise BodyTooLarge(
                f"this recipe puts {_braced(sorted(self._inline))} in its key, a header or "
                "a query parameter, which works only for bodies up to spool_bytes",
                route=self.context.route,
            )

    def _streamed_signature(self, request: UpstreamRequest, v: dict[str, bytes]) -> str:
        """The signature of a message holding a spooled body, streamed from its file."""
        assert self._message_t is not None and request.body is not None
        empty = len(request.body) == 0
        parts: list[MessagePart] = []
        for part in self._message_t.parts:
            if isinstance(part, bytes):
                parts.append(part)
            elif part == "body" or (part == "body_or_empty_json" and not empty):
                parts.append(BODY)
            elif part == "body_or_empty_json":
                parts.append(b"{}")
            elif part == "body_base64":
                parts.append(BODY_BASE64)
            else:
                parts.append(v[part])
        if self._prefix_at is not None:
            h = prehashed(request.body, self, self._prefix_bytes(request))
            if h is not None:  # prefix and body hashed while spooling: only the rest is left
                feed_message(h, parts[self._prefix_at + 1 :], request.body)
                return encode_digest(h.digest(), self._encoding)
        if self._key_t is not None:
            h = hmac.new(self._key_t.render(v), digestmod=self._ctor)
        else:
            h = self._stream_base.copy()
        feed_message(h, parts, request.body)
        return encode_digest(h.digest(), self._encoding)

    def secret_values(self) -> Iterable[str]:
        """The secret ``vars`` and every template given directly as a secret reference."""
        yield from super().secret_values()
        o = self.options
        assert isinstance(o, RecipeOptions)
        for t in (o.message, o.key, *o.headers.values(), *o.query.values()):
            if t is not None and t.secret:
                yield t.render({}).decode()

    def sign(self, request: UpstreamRequest) -> AuthResult:
        """Blocking for a spooled body (it is read and hashed): :meth:`apply` runs it off the loop."""
        r = self.render(request)
        return AuthResult(headers=r.headers, query=r.query, secret_headers=self._secret_headers)

    async def apply(self, request: UpstreamRequest) -> AuthResult:
        if is_spooled(request.body):
            self._check_spoolable()  # refuse before the clock is read or a thread taken
        return await off_loop(self.sign, request, request.body)

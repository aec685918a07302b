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
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
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
from proxy.auth.digest import drop_query_params, keyed_signer, make_signer, unix_times
from proxy.auth.registry import register
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
_TIME = frozenset({"timestamp", "timestamp_ms"})
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
    vars: dict[VarName, str | Secret] = {}
    message: MessageTemplate | None = None
    key: KeyTemplate | None = None
    algorithm: Literal["sha1", "sha256", "sha512", "md5"] = "sha256"
    encoding: Literal["hex", "HEX", "base64", "base64url"] = "hex"
    headers: dict[HeaderName, HeaderTemplate] = {}
    query: dict[ParamName, QueryTemplate] = {}

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

    message: bytes | None
    signature: str | None
    headers: dict[str, str]
    query: str | None


_Compiled = tuple[bytes, tuple[str, ...]]


@register
class HmacRecipe(AuthScheme):
    name = "hmac"
    Options = RecipeOptions
    needs_body = False  # per instance: True when a template uses a body placeholder

    def __init__(self, options: RecipeOptions, context: SchemeContext) -> None:  # type: ignore[override]
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
        self._signer = None
        self._keyed = None
        self._key: _Compiled | None = None
        if options.message is not None:
            self._message = bound(options.message).compile()
            if options.key is None:
                self._signer = make_signer(options.algorithm, options.encoding, None)
            else:
                key = bound(options.key)
                if key.names:
                    self._key = key.compile()
                    self._keyed = keyed_signer(options.algorithm, options.encoding)
                else:
                    self._signer = make_signer(options.algorithm, options.encoding, key.render({}))

        # headers: constant ones rendered now
        self._const_headers: dict[str, str] = {}
        self._dyn_headers: list[tuple[str, bytes, tuple[str, ...]]] = []
        for name, template in options.headers.items():
            t = bound(template)
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
            late = "signature" in t.names
            (self._post_query if late else self._pre_query).append((name, *t.compile()))
        self._post_names = frozenset(name for name, _, _ in self._post_query)
        self._sets_query = bool(options.query)

        self.needs_body = bool(used & BODY_PLACEHOLDERS)
        self.injected_headers = frozenset(options.headers)  # type: ignore[misc]
        self._used = frozenset(used)
        self._need_method = bool(used & {"method", "method_lower"})
        self._need_path = "path" in used
        self._need_time = bool(used & _TIME)
        self._need_nonce = "nonce" in used
        self._need_query = "query" in used
        self._need_path_query = "path_query" in used

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
        if self.needs_body:
            body = request.body or b""
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
        if self._message is not None:
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

    def secret_values(self) -> Iterable[str]:
        """The secret ``vars`` and every template given directly as a secret reference."""
        yield from super().secret_values()
        o = self.options
        for t in (o.message, o.key, *o.headers.values(), *o.query.values()):
            if t is not None and t.secret:
                yield t.render({}).decode()

    def sign(self, request: UpstreamRequest) -> AuthResult:
        r = self.render(request)
        return AuthResult(headers=r.headers, query=r.query, secret_headers=self._secret_headers)

    async def apply(self, request: UpstreamRequest) -> AuthResult:
        return self.sign(request)

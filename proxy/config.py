"""YAML config -> validated, frozen :class:`Settings`.

Three passes, each collecting every problem rather than stopping at the first:

1. parse the YAML, remembering the line of every key (so a problem can say
   ``routes[2].auth.api_secret (line 14)``) and refusing duplicate keys;
2. resolve ``${NAME}`` / ``${file:/path}`` references; a value that used one
   becomes a :class:`~proxy.secret.Secret`;
3. validate with pydantic models (unknown keys are errors with a did-you-mean),
   then each route's ``auth`` block against its scheme's own ``Options`` model,
   then cross-field rules (unique names and prefixes, listen address safety).

No problem message ever contains a value from the file: only locations, key
names, variable names and paths.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, ValidationError
from yarl import URL

from proxy.auth import SCHEMES, SchemeOptions
from proxy.auth.base import AuthScheme
from proxy.errors import ConfigError, ConfigProblem
from proxy.secret import Secret, reveal, secret_values_in
from proxy.upstream.egress import EgressProxy, parse_proxy_url, proxy_from_env
from proxy.upstream.tls import check_client_cert

Loc = tuple[str | int, ...]

DEFAULT_CONFIG_PATH = "config/signet.yaml"


# --------------------------------------------------------------------------- models


def _plain(value: Any) -> Any:
    """Non-secret fields accept a reference too (e.g. ``upstream: ${URL}``)."""
    return reveal(value) if isinstance(value, Secret) else value


Text = Annotated[str, BeforeValidator(_plain)]


def _text_or_secret(value: Any) -> str | Secret:
    """A value that stays a Secret when it came from a reference (``Text | Secret`` would reveal it)."""
    if isinstance(value, Secret | str):
        return value
    raise ValueError("must be a string")


TextOrSecret = Annotated[Any, PlainValidator(_text_or_secret)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class TimeoutModel(_Model):
    connect: float = Field(5.0, gt=0)
    read: float = Field(60.0, gt=0)


class RouteTimeoutModel(_Model):
    connect: float | None = Field(None, gt=0)
    read: float | None = Field(None, gt=0)


class TLSModel(_Model):
    verify: bool = True
    ca_file: Text | None = None
    cert_file: Text | None = None  # client certificate (mTLS), PEM
    key_file: Text | None = None  # its private key; None when cert_file holds both


class RouteTLSModel(_Model):
    verify: bool | None = None
    ca_file: Text | None = None
    cert_file: Text | None = None
    key_file: Text | None = None


class DefaultsModel(_Model):
    timeout: TimeoutModel = TimeoutModel()
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=0)
    tls: TLSModel = TLSModel()
    max_in_flight: int = Field(1024, ge=1)
    egress_proxy: TextOrSecret | None = None  # http://[user:pass@]host:port, "env" or "none"


class LimitsModel(_Model):
    """Inbound limits; defaults are safe for a proxy that holds secrets."""

    max_header_bytes: int = Field(8190, ge=256)  # one header line (name + value)
    max_headers: int = Field(100, ge=8)
    max_url_length: int = Field(8190, ge=64)  # request line
    keepalive_timeout: float = Field(75.0, gt=0)  # idle client keep-alive connections
    request_header_timeout: float = Field(30.0, gt=0)  # time for a client to send its headers
    body_read_timeout: float = Field(60.0, gt=0)  # max time without a body byte from a client


class ClientModel(_Model):
    name: Text = Field(min_length=1)
    token: Secret
    routes: list[Text] | None = None


class RouteModel(_Model):
    name: Text | None = None
    prefix: Text
    upstream: Text
    auth: dict[str, Any] = Field(default_factory=lambda: {"scheme": "none"})
    strip_headers: list[Text] = Field(default_factory=list)
    set_headers: dict[str, TextOrSecret] = Field(default_factory=dict)
    forward_client_info: bool = False
    timeout: RouteTimeoutModel | None = None
    max_body_bytes: int | None = Field(None, ge=0)
    tls: RouteTLSModel | None = None
    max_in_flight: int | None = Field(None, ge=1)
    egress_proxy: TextOrSecret | None = None


class SettingsModel(_Model):
    listen: Text = "127.0.0.1:8080"
    admin_listen: Text = "127.0.0.1:9191"
    shutdown_grace: float = Field(10.0, ge=0)
    allow_unauthenticated: bool = False
    defaults: DefaultsModel = DefaultsModel()
    limits: LimitsModel = LimitsModel()
    clients: list[ClientModel] | None = None
    routes: list[RouteModel] = Field(min_length=1)


# ---------------------------------------------------------------- resolved settings


@dataclass(frozen=True)
class Timeouts:
    connect: float
    read: float


@dataclass(frozen=True)
class TLSSettings:
    verify: bool
    ca_file: str | None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class Route:
    """One route, with every default applied."""

    name: str
    prefix: str
    upstream: URL
    upstream_base: str  # scheme://host[:port]/base-path with no trailing slash
    scheme_cls: type[AuthScheme]
    auth: SchemeOptions
    timeout: Timeouts
    tls: TLSSettings
    max_body_bytes: int
    max_in_flight: int
    strip_headers: tuple[str, ...] = ()
    set_headers: Mapping[str, str | Secret] = field(default_factory=dict)
    forward_client_info: bool = False
    egress: EgressProxy | None = None  # resolved (env mode applied); None: direct

    @property
    def origin(self) -> str:
        return str(self.upstream.origin())


@dataclass(frozen=True)
class Client:
    name: str
    token: Secret
    routes: frozenset[str] | None  # None: every route


@dataclass(frozen=True)
class Settings:
    listen: tuple[str, int]
    admin_listen: tuple[str, int]
    shutdown_grace: float
    allow_unauthenticated: bool
    limits: LimitsModel
    clients: tuple[Client, ...] | None
    routes: tuple[Route, ...]
    source: str = "<string>"
    secret_values: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        names = ", ".join(r.name for r in self.routes)
        return f"<Settings source={self.source!r} routes=[{names}]>"


# ------------------------------------------------------------------- YAML + lines


class _Problems:
    def __init__(self, lines: dict[Loc, int]) -> None:
        self.items: list[ConfigProblem] = []
        self.lines = lines

    def add(self, loc: Loc, message: str) -> None:
        line = None
        for n in range(len(loc), -1, -1):  # nearest enclosing key with a known line
            line = self.lines.get(tuple(loc[:n]))
            if line:
                break
        self.items.append(ConfigProblem(format_loc(loc), message, line))


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_RAW_REF = re.compile(r"\$?\$\{[^}\n]*\}")


def _shield_refs(text: str) -> tuple[str, dict[str, str]]:
    """Hide ``${...}`` from the YAML parser.

    The contract's own example writes ``auth: {api_key: ${TC_KEY}}``: inside a
    YAML flow mapping ``{`` and ``}`` are syntax, so a plain parser rejects it.
    Each reference becomes a plain-scalar-safe placeholder on the same line
    (line numbers stay right) and is put back in the parsed strings.
    """
    refs: dict[str, str] = {}

    def hide(match: re.Match[str]) -> str:
        key = f"__signet_ref_{len(refs)}__"
        refs[key] = match.group(0)
        return key

    return _RAW_REF.sub(hide, text), refs


_PLACEHOLDER = re.compile(r"__signet_ref_\d+__")


def _unshield(value: Any, refs: dict[str, str]) -> Any:
    if not refs:
        return value
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: refs.get(m.group(0), m.group(0)), value)
    if isinstance(value, dict):
        return {_unshield(k, refs): _unshield(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [_unshield(v, refs) for v in value]
    return value


def _parse_yaml(text: str, problems: list[ConfigProblem]) -> tuple[Any, dict[Loc, int]]:
    text, refs = _shield_refs(text)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problems.append(ConfigProblem("", f"not valid YAML: {getattr(exc, 'problem', exc)}", line))
        return None, {}
    if node is None:
        return {}, {}
    lines: dict[Loc, int] = {}
    data = _construct(node, (), lines, problems)
    if refs:
        data = _unshield(data, refs)
        lines = {tuple(_unshield(p, refs) for p in loc): n for loc, n in lines.items()}
    return data, lines


def _construct(
    node: yaml.Node, loc: Loc, lines: dict[Loc, int], problems: list[ConfigProblem]
) -> Any:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "<complex key>"
            child = (*loc, key)
            if key in out:
                problems.append(
                    ConfigProblem(format_loc(child), "duplicate key", key_node.start_mark.line + 1)
                )
            lines[child] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, child, lines, problems)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*loc, i), lines, problems) for i, item in enumerate(node.value)]
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node)
    except yaml.YAMLError as exc:
        problems.append(
            ConfigProblem(format_loc(loc), f"bad value: {exc}", node.start_mark.line + 1)
        )
        return None


# -------------------------------------------------------------- secret references

_REF = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _resolve_refs(
    value: Any, loc: Loc, env: Mapping[str, str], problems: _Problems, found: set[str]
) -> Any:
    if isinstance(value, dict):
        return {k: _resolve_refs(v, (*loc, k), env, problems, found) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_refs(v, (*loc, i), env, problems, found) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    used_reference = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal used_reference
        if match.group(0) == "$${":
            return "${"
        used_reference = True
        ref = match.group(1).strip()
        if ref.startswith("file:"):
            path = ref[5:].strip()
            try:
                content = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = (
                    exc.strerror
                    if isinstance(exc, OSError) and exc.strerror
                    else type(exc).__name__
                )
                problems.add(loc, f"cannot read secret file {path!r} ({reason})")
                return ""
            return content[:-1] if content.endswith("\n") else content
        if not _ENV_NAME.match(ref):
            problems.add(loc, f"bad reference ${{{ref}}}: use ${{NAME}} or ${{file:/path}}")
            return ""
        if ref not in env:
            problems.add(loc, f"environment variable {ref} is not set")
            return ""
        return env[ref]

    resolved = _REF.sub(substitute, value)
    if "${" in _REF.sub("", value):
        problems.add(loc, "unterminated ${ reference (write $${ for a literal ${)")
    if used_reference:
        if resolved:
            found.add(resolved)
        return Secret(resolved)
    return resolved


# ---------------------------------------------------------------------- validation


def _validate(model: type[BaseModel], data: Any) -> tuple[BaseModel | None, list[dict[str, Any]]]:
    """Validate, letting a Secret stand in for a plain string where a field wants one."""
    for _ in range(200):
        try:
            return model.model_validate(data), []
        except ValidationError as exc:
            errors = exc.errors(include_input=True, include_url=False)
            retry = False
            for err in errors:
                if isinstance(err.get("input"), Secret):
                    data = _replace_at(data, err["loc"], err["input"].reveal())
                    retry = True
            if not retry:
                return None, errors
    return None, []


def _replace_at(data: Any, loc: tuple[Any, ...], value: Any) -> Any:
    if not loc:
        return value
    head, rest = loc[0], loc[1:]
    if isinstance(data, dict) and head in data:
        return {**data, head: _replace_at(data[head], rest, value)}
    if isinstance(data, list) and isinstance(head, int) and head < len(data):
        copy = list(data)
        copy[head] = _replace_at(data[head], rest, value)
        return copy
    # union branches add a non-key element to loc (e.g. 'str'); skip it
    return _replace_at(data, rest, value)


def _fields_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model that sits at ``loc`` (for did-you-mean)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = _model_in(fields[part].annotation)
    fields = getattr(current, "model_fields", None)
    return list(fields) if fields else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found:
            return found
    return None


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _report(
    errors: list[dict[str, Any]], model: type[BaseModel], base: Loc, problems: _Problems
) -> None:
    for err in errors:
        loc = tuple(p for p in err["loc"] if isinstance(p, int | str))
        # pydantic puts union member names ('str', 'Secret', ...) in loc: drop those
        loc = tuple(p for p in loc if not (isinstance(p, str) and p in _UNION_TAGS))
        if err["type"] == "extra_forbidden":
            key = str(loc[-1])
            known = [f for f in _fields_at(model, loc[:-1]) if f != "scheme"] or _fields_at(
                model, loc[:-1]
            )
            hint = _did_you_mean(key, known)
            allowed = f" (allowed: {', '.join(known)})" if known and not hint else ""
            problems.add((*base, *loc), f"unknown key{hint}{allowed}")
        elif err["type"] == "missing":
            problems.add((*base, *loc), "required key is missing")
        else:
            problems.add((*base, *loc), _safe_message(err))


_UNION_TAGS = frozenset({"str", "Secret", "int", "float", "bool", "list", "dict", "none"})


def _safe_message(err: dict[str, Any]) -> str:
    """pydantic's message without the input value (it may be a secret)."""
    msg = str(err.get("msg", "invalid value"))
    if err["type"].startswith("value_error"):
        msg = msg.removeprefix("Value error, ")
    return msg


def _default_route_name(prefix: str) -> str:
    return prefix.strip("/").replace("/", "-") or "root"


_PREFIX_OK = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@/-]*\Z")


def _check_prefix(prefix: str) -> str | None:
    if not _PREFIX_OK.match(prefix):
        return "must start with '/' and contain only path characters (no '?', '#', '%' or spaces)"
    if prefix != "/" and prefix.endswith("/"):
        return "must not end with '/' (it is matched on a segment boundary already)"
    if any(seg in (".", "..") for seg in prefix.split("/")) or "//" in prefix:
        return "must not contain empty, '.' or '..' segments"
    return None


def _check_upstream(upstream: str) -> tuple[URL | None, str | None]:
    try:
        url = URL(upstream)
    except (ValueError, TypeError):
        return None, "not a valid URL"
    if url.scheme not in ("http", "https") or not url.host:
        return None, "must be an http:// or https:// URL with a host"
    if url.raw_query_string or url.raw_fragment:
        return None, "must not have a query or fragment"
    if url.user or url.password:
        return None, "must not contain credentials; put them in auth"
    return url, None


def parse_hostport(value: str) -> tuple[str, int]:
    """``HOST:PORT`` / ``[v6]:PORT`` -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:8080")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def unsafe_listen(host: str, has_clients: bool, allow_unauthenticated: bool) -> str | None:
    """Why listening on ``host`` is refused, or None when it is fine."""
    if is_loopback(host) or has_clients or allow_unauthenticated:
        return None
    return (
        f"listening on {host} (not loopback) without inbound authentication would let "
        "anyone who can reach this address use every vendor credential in this file; "
        "add a 'clients' section with tokens, or set 'allow_unauthenticated: true' if a "
        "network policy already restricts who can connect"
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- entry


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate a config file; raises ConfigError with every problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem("", f"cannot read config file: {exc.strerror or exc}")], source
        ) from None
    return load_config_text(text, env=env, source=source)


def load_config_text(
    text: str, env: Mapping[str, str] | None = None, source: str = "<string>"
) -> Settings:
    env = os.environ if env is None else env
    early: list[ConfigProblem] = []
    data, lines = _parse_yaml(text, early)
    problems = _Problems(lines)
    problems.items.extend(early)
    if data is None and early:
        raise ConfigError(problems.items, source)
    if not isinstance(data, dict):
        problems.add((), "the config must be a mapping of keys (listen, routes, ...)")
        raise ConfigError(problems.items, source)

    secrets: set[str] = set()
    data = _resolve_refs(data, (), env, problems, secrets)

    model, errors = _validate(SettingsModel, data)
    _report(errors, SettingsModel, (), problems)
    if model is None:
        # still check each route's auth block so one run shows every problem
        for i, raw in enumerate(data.get("routes") or []):
            if isinstance(raw, dict) and isinstance(raw.get("auth"), dict):
                _build_auth(raw["auth"], ("routes", i, "auth"), problems)
        raise ConfigError(problems.items, source)
    assert isinstance(model, SettingsModel)
    settings = _build_settings(model, problems, source, secrets, env)
    if problems.items:
        raise ConfigError(problems.items, source)
    assert settings is not None
    return settings


def _egress(
    value: str | Secret | None, loc: Loc, upstream: URL, env: Mapping[str, str], problems: _Problems
) -> EgressProxy | None:
    """The egress proxy for one upstream: a URL, ``env`` (curl's variables) or none."""
    text = reveal(value) if isinstance(value, Secret) else value
    if text is None or text.strip().lower() in ("", "none"):
        return None
    try:
        if text.strip().lower() == "env":
            return proxy_from_env(env, upstream.scheme, upstream.raw_host or "")
        return parse_proxy_url(text.strip())
    except ValueError as exc:  # the message never quotes the URL: it may hold a password
        problems.add(loc, f"bad egress proxy: {exc}")
        return None


def _build_auth(
    raw: dict[str, Any], loc: Loc, problems: _Problems
) -> tuple[type[AuthScheme], SchemeOptions] | None:
    name = raw.get("scheme")
    if not isinstance(name, str):
        problems.add((*loc, "scheme"), f"required: one of {', '.join(sorted(SCHEMES))}")
        return None
    cls = SCHEMES.get(name)
    if cls is None:
        hint = _did_you_mean(name, sorted(SCHEMES))
        problems.add(
            (*loc, "scheme"), f"unknown scheme{hint} (known: {', '.join(sorted(SCHEMES))})"
        )
        return None
    options, errors = _validate(cls.Options, raw)
    _report(errors, cls.Options, loc, problems)
    if options is None:
        return None
    assert isinstance(options, SchemeOptions)
    return cls, options


def _build_settings(
    model: SettingsModel,
    problems: _Problems,
    source: str,
    secrets: set[str],
    env: Mapping[str, str],
) -> Settings | None:
    listen = admin = ("", 0)
    for key in ("listen", "admin_listen"):
        try:
            value = parse_hostport(getattr(model, key))
        except ValueError as exc:
            problems.add((key,), str(exc))
            continue
        if key == "listen":
            listen = value
        else:
            admin = value

    d = model.defaults
    routes: list[Route] = []
    names: dict[str, int] = {}
    prefixes: dict[str, int] = {}
    for i, r in enumerate(model.routes):
        loc: Loc = ("routes", i)
        name = r.name or _default_route_name(r.prefix)
        if name in names:
            problems.add(
                (*loc, "name"), f"route name {name!r} is also used by routes[{names[name]}]"
            )
        names.setdefault(name, i)
        if err := _check_prefix(r.prefix):
            problems.add((*loc, "prefix"), err)
        elif r.prefix in prefixes:
            problems.add(
                (*loc, "prefix"),
                f"prefix {r.prefix!r} is also used by routes[{prefixes[r.prefix]}]",
            )
        prefixes.setdefault(r.prefix, i)
        url, err = _check_upstream(r.upstream)
        if err:
            problems.add((*loc, "upstream"), err)
        for h in r.set_headers.values():
            if isinstance(h, Secret):
                secrets.add(h.reveal())
        built = _build_auth(r.auth, (*loc, "auth"), problems)
        rt = r.timeout or RouteTimeoutModel()
        rtls = r.tls or RouteTLSModel()
        own_client_cert = rtls.cert_file is not None or rtls.key_file is not None
        tls = TLSSettings(
            verify=d.tls.verify if rtls.verify is None else rtls.verify,
            ca_file=rtls.ca_file if rtls.ca_file is not None else d.tls.ca_file,
            # a route that names either file brings both: never a route cert with a default key
            cert_file=rtls.cert_file if own_client_cert else d.tls.cert_file,
            key_file=rtls.key_file if own_client_cert else d.tls.key_file,
        )
        tls_loc = (*loc, "tls") if r.tls and (own_client_cert or rtls.ca_file) else ("defaults", "tls")
        if tls.ca_file and not os.access(tls.ca_file, os.R_OK):
            problems.add((*tls_loc, "ca_file"), f"cannot read CA file {tls.ca_file!r}")
        for key, path in (("cert_file", tls.cert_file), ("key_file", tls.key_file)):
            if path and not os.access(path, os.R_OK):
                problems.add((*tls_loc, key), f"cannot read {key.replace('_', ' ')} {path!r}")
        if tls.key_file and not tls.cert_file:
            problems.add((*tls_loc, "key_file"), "key_file needs cert_file (the client certificate)")
        elif (
            tls.cert_file
            and all(os.access(f, os.R_OK) for f in (tls.cert_file, tls.key_file) if f)
            and (why := check_client_cert(tls.cert_file, tls.key_file))
        ):
            problems.add((*tls_loc, "cert_file"), why)
        egress = None
        if url is not None:
            own = r.egress_proxy is not None
            egress = _egress(
                r.egress_proxy if own else d.egress_proxy,
                (*loc, "egress_proxy") if own else ("defaults", "egress_proxy"),
                url,
                env,
                problems,
            )
            if egress is not None and egress.authorization:
                secrets.add(egress.authorization.removeprefix("Basic "))
        if built is None or url is None:
            continue
        scheme_cls, options = built
        routes.append(
            Route(
                name=name,
                prefix=r.prefix,
                upstream=url,
                upstream_base=str(url).rstrip("/"),
                scheme_cls=scheme_cls,
                auth=options,
                timeout=Timeouts(rt.connect or d.timeout.connect, rt.read or d.timeout.read),
                tls=tls,
                max_body_bytes=d.max_body_bytes if r.max_body_bytes is None else r.max_body_bytes,
                max_in_flight=r.max_in_flight or d.max_in_flight,
                strip_headers=tuple(r.strip_headers),
                set_headers=dict(r.set_headers),
                forward_client_info=r.forward_client_info,
                egress=egress,
            )
        )

    clients: tuple[Client, ...] | None = None
    if model.clients is not None:
        seen: dict[str, int] = {}
        tokens: dict[str, int] = {}
        built_clients = []
        for i, c in enumerate(model.clients):
            if c.name in seen:
                problems.add(
                    ("clients", i, "name"),
                    f"client name {c.name!r} is also used by clients[{seen[c.name]}]",
                )
            seen.setdefault(c.name, i)
            tok = c.token.reveal()
            if len(tok) < 16:
                problems.add(
                    ("clients", i, "token"), "token is too short: use at least 16 characters"
                )
            if tok in tokens:
                problems.add(("clients", i, "token"), f"same token as clients[{tokens[tok]}]")
            tokens.setdefault(tok, i)
            secrets.add(tok)
            for j, rn in enumerate(c.routes or []):
                if rn not in names:
                    hint = _did_you_mean(rn, list(names))
                    problems.add(("clients", i, "routes", j), f"no route named {rn!r}{hint}")
            built_clients.append(
                Client(c.name, c.token, frozenset(c.routes) if c.routes is not None else None)
            )
        clients = tuple(built_clients)

    if listen[0] and (why := unsafe_listen(listen[0], bool(model.clients), model.allow_unauthenticated)):
        problems.add(("listen",), why)

    for r in routes:
        secrets.update(secret_values_in(r.auth))

    if problems.items:
        return None
    return Settings(
        listen=listen,
        admin_listen=admin,
        shutdown_grace=model.shutdown_grace,
        allow_unauthenticated=model.allow_unauthenticated,
        limits=model.limits,
        clients=clients,
        routes=tuple(routes),
        source=source,
        secret_values=frozenset(s for s in secrets if s),
    )

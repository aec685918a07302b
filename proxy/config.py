"""YAML config -> validated, frozen :class:`Settings`.

Three passes, each collecting every problem rather than stopping at the first:

1. parse the YAML, remembering the line of every key (so a problem can say
   ``routes[2].auth.api_secret (line 14)``) and refusing duplicate keys;
2. resolve ``${NAME}`` / ``${file:/path}`` / ``${vault:MOUNT/PATH#FIELD}``
   references, one resolver per kind (:class:`References`); a value that used
   one becomes a :class:`~proxy.secret.Secret`. Vault reads are network I/O,
   so :func:`load_config_async` fetches every vault reference first (one read
   per secret path) and the synchronous pass looks the values up; the
   synchronous :func:`load_config` refuses a config that uses vault;
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, ValidationError
from yarl import URL

from proxy.auth import SCHEMES, SchemeOptions
from proxy.auth.aws_headers import DEFAULT_CLIENT_AMZ_HEADERS, amz_glob_problem
from proxy.auth.aws_operations import OPERATION, S3_OPERATIONS
from proxy.auth.base import AuthScheme
from proxy.errors import ConfigError, ConfigProblem
from proxy.listen_tls import CertMatch, ListenTLS, listen_tls_problems
from proxy.redisurl import redis_url_problem
from proxy.secret import Secret, reveal, secret_values_in, value_problem
from proxy.upstream.egress import EgressProxy, parse_proxy_url, proxy_from_env
from proxy.upstream.tls import check_client_cert
from proxy.vault import (
    AppRoleAuth,
    KubernetesAuth,
    TokenAuth,
    VaultClients,
    VaultError,
    VaultRef,
    VaultSettings,
    fetch_refs,
)

if TYPE_CHECKING:  # cryptography is imported only by configs with a forward_proxy block
    from proxy.forward_proxy.ca import LocalCA

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
    connect: float = Field(
        5.0, gt=0,
        description=(
            "Seconds to connect to the upstream (DNS, TCP and TLS together); 504 upstream_timeout past it."
        ),
    )
    read: float = Field(
        60.0, gt=0,
        description=(
            "Seconds without a byte from the upstream, counted once the request is sent (upload time does "
            "not count); 504 upstream_timeout past it."
        ),
    )


class RouteTimeoutModel(_Model):
    connect: float | None = Field(
        None, gt=0, description="This route's connect timeout in seconds; default defaults.timeout.connect."
    )
    read: float | None = Field(
        None, gt=0, description="This route's read timeout in seconds; default defaults.timeout.read."
    )


class TLSModel(_Model):
    verify: bool = Field(
        True,
        description=(
            "Verify the upstream's certificate and host name. Turn off only for a test upstream."
        ),
    )
    ca_file: Text | None = Field(
        None, description="PEM bundle of CAs to trust for upstreams (a private CA); default the system store."
    )
    cert_file: Text | None = Field(
        None, description="Client certificate (PEM) presented to upstreams that ask for one (mTLS)."
    )
    key_file: Text | None = Field(
        None, description="Private key of cert_file (PEM); omit when cert_file holds both."
    )


class RouteTLSModel(_Model):
    verify: bool | None = Field(
        None, description="Verify this route's upstream certificate; default defaults.tls.verify."
    )
    ca_file: Text | None = Field(
        None,
        description=(
            "PEM bundle of CAs to trust for this route's upstream; default defaults.tls.ca_file."
        ),
    )
    cert_file: Text | None = Field(
        None,
        description=(
            "Client certificate (PEM) for this route (mTLS); naming it or key_file brings both from this "
            "block."
        ),
    )
    key_file: Text | None = Field(None, description="Private key of this route's cert_file (PEM).")


class DefaultsModel(_Model):
    timeout: TimeoutModel = Field(
        TimeoutModel(), description="Upstream timeouts; each route may override them."
    )
    max_body_bytes: int = Field(
        10 * 1024 * 1024, ge=0,
        description=(
            "Largest request body a signing scheme buffers (in memory or spooled); larger is 413 "
            "body_too_large. Streamed bodies are not limited."
        ),
    )
    tls: TLSModel = Field(TLSModel(), description="How Signet connects to upstreams over TLS.")
    max_in_flight: int = Field(
        1024, ge=1, description="Concurrent upstream requests per route; beyond it 503 overloaded at once."
    )
    spool_bytes: int = Field(
        1024 * 1024, ge=0,
        description=(
            "A signed body larger than this goes to a temporary file instead of memory."
        ),
    )
    spool_dir: Text | None = Field(
        None,
        description=(
            "Directory for spooled bodies (must be writable, checked at start); default the system temp "
            "directory."
        ),
    )
    egress_proxy: TextOrSecret | None = Field(
        None, description="Reach upstreams through an HTTP proxy: http://[user:pass@]host:port, 'env' "
        "(HTTPS_PROXY/HTTP_PROXY/NO_PROXY as curl reads them) or 'none' (direct, the default)."
    )


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\Z")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string with a unit (``500ms``, ``2s``, ``1m``, ``1h``)."""
    value = _plain(value)
    if isinstance(value, bool):
        raise ValueError("must be a duration: a number of seconds or a string like 500ms, 2s, 1m")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value.strip())):
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    else:
        raise ValueError("must be a duration: a number of seconds or a string like 500ms, 2s, 1m")
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError("must be a finite duration of 0 or more")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(b|kb|kib|mb|mib|gb|gib)?\Z", re.I)
_SIZE_UNIT = {
    None: 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2,
    "gb": 1000**3, "gib": 1024**3,
}


def parse_size(value: Any) -> int:
    """Bytes from a number or a string with a unit (``64KiB``, ``256MiB``, ``1GB``)."""
    value = _plain(value)
    if isinstance(value, bool):
        raise ValueError("must be a size: a number of bytes or a string like 64KiB, 256MiB")
    if isinstance(value, int | float):
        size = float(value)
    elif isinstance(value, str) and (m := _SIZE.match(value.strip())):
        unit = m.group(2).lower() if m.group(2) else None
        size = float(m.group(1)) * _SIZE_UNIT[unit]
    else:
        raise ValueError("must be a size: a number of bytes or a string like 64KiB, 256MiB")
    if size < 0 or size != size or size == float("inf"):
        raise ValueError("must be a finite size of 0 or more")
    return int(size)


def parse_rate(value: Any) -> float:
    """Bytes per second from a number or a size per second (``64KiB/s``)."""
    value = _plain(value)
    if isinstance(value, str) and value.strip().lower().endswith("/s"):
        value = value.strip()[:-2]
    try:
        return float(parse_size(value))
    except ValueError:
        raise ValueError("must be a rate: bytes per second or a string like 64KiB/s") from None


Size = Annotated[int, BeforeValidator(parse_size)]
Rate = Annotated[float, BeforeValidator(parse_rate)]


class LimitsModel(_Model):
    """Inbound limits; defaults are safe for a proxy that holds secrets."""

    max_header_bytes: int = Field(
        8190, ge=256,
        description=(
            "Longest request header line (name and value); else 431 headers_too_large and the connection "
            "is closed."
        ),
    )
    max_headers: int = Field(
        100, ge=8,
        description="Most request headers; else 431 headers_too_large and the connection is closed.",
    )
    max_url_length: int = Field(
        8190, ge=64, description="Longest request line; else 414 uri_too_long and the connection is closed."
    )
    max_head_bytes: int = Field(
        65536, ge=1024,
        description=(
            "Largest whole request head (request line and every header); answered 431 headers_too_large as"
            " soon as it is passed."
        ),
    )
    keepalive_timeout: float = Field(
        75.0, gt=0, description="Seconds an idle client keep-alive connection is kept open."
    )
    request_header_timeout: float = Field(
        30.0, gt=0,
        description=(
            "Seconds for a client to send a complete request head, from connect or from the first byte of a "
            "later request; else the connection is closed."
        ),
    )
    body_read_timeout: float = Field(
        60.0, gt=0,
        description=(
            "Seconds without a body byte from the client (a stalled upload); else 408 body_timeout and the "
            "connection is closed."
        ),
    )
    # bodies a scheme must buffer (proxy.uploads): per client at once, minimum rate, memory
    client_uploads: int = Field(
        4, ge=1,
        description=(
            "Bodies a scheme must buffer that one client (or remote address, without clients) may be "
            "sending at once; a body in hand takes no slot; one more is 429 rate_limited."
        ),
    )
    min_upload_rate: Rate = Field(
        64 * 1024,
        description=(
            "Slowest average rate (bytes/s or e.g. 64KiB/s) for a buffered body once min_upload_rate_after "
            "has passed; slower is 408 body_timeout. 0: no minimum."
        ),
    )
    min_upload_rate_after: Duration = Field(
        10.0, description="How long a buffered body may take before min_upload_rate is judged."
    )
    body_memory: Size = Field(
        256 * 1024 * 1024,
        description=(
            "Process-wide budget (bytes or e.g. 256MiB) for buffered bodies held in memory; past it a body "
            "goes to a spool file at once."
        ),
    )


class RateLimitModel(_Model):
    """``requests`` per ``per`` (GCRA), ``burst`` more at once, queue up to ``max_wait``."""

    requests: int = Field(
        ge=1, description="Requests admitted per 'per' (GCRA: one every per/requests seconds)."
    )
    per: Duration = Field(
        gt=0, description="The window for 'requests': seconds, or a string with a unit (500ms, 2s, 1m, 1h)."
    )
    burst: int = Field(0, ge=0, description="How many more may pass at once after a quiet spell.")
    max_wait: Duration | None = Field(
        None,
        description=(
            "Route limits only: how long a request may wait for its slot before 429 rate_limited (default 0,"
            " no waiting). Seconds or a unit."
        ),
    )


class AllowModel(_Model):
    route: Text = Field(description="The route this rule allows.")
    methods: list[Text] | None = Field(
        None, description="Methods allowed (upper-case, as sent); default every method."
    )
    paths: list[Text] | None = Field(
        None,
        description=(
            "Globs over the path as sent after the prefix ('*' within a segment, '**' across segments); "
            "default every path."
        ),
    )
    operations: list[Text] | None = Field(
        None,
        description=(
            "aws-sigv4 routes: AWS operations allowed, as service:Operation (s3:GetObject, dynamodb:Query); "
            "default every operation."
        ),
    )


class ClientCertModel(_Model):
    """``clients[].cert``: the client certificate that names this client (one of the two)."""

    subject_cn: Text | None = Field(None, description="The certificate's subject common name (CN).")
    san_uri: Text | None = Field(
        None, description="A URI subject alternative name of the certificate, e.g. a SPIFFE ID."
    )


class ListenTLSModel(_Model):
    """``listen_tls``: the proxy listener speaks TLS (see proxy/listen_tls.py)."""

    cert_file: Text = Field(
        description="PEM certificate chain of the listener; re-read when it changes on disk (no restart)."
    )
    key_file: Text = Field(description="PEM private key (unencrypted) matching cert_file; re-read with it.")
    client_ca_file: Text | None = Field(
        None, description="PEM CA bundle: ask clients for a certificate and verify it against these CAs."
    )
    require_client_cert: bool = Field(
        False, description="Refuse a TLS session without a valid client certificate (needs client_ca_file)."
    )


class ClientModel(_Model):
    name: Text = Field(
        min_length=1, description="The client's name, used in logs, metrics and policy messages."
    )
    token: Secret | None = Field(
        None,
        description=(
            "The token the client sends as 'Proxy-Authorization: Bearer <token>' or 'X-Signet-Token'. Use a "
            "secret reference. Optional for a client known by its certificate ('cert')."
        ),
    )
    cert: ClientCertModel | None = Field(
        None,
        description=(
            "The client certificate that names this client (needs listen_tls.client_ca_file); with a "
            "token too, both must match."
        ),
    )
    routes: list[Text] | None = Field(
        None, description="Routes this client may use; default all. Give 'routes' or 'allow', not both."
    )
    allow: list[AllowModel] | None = Field(
        None, description="Finer rules (route, methods, paths); replaces 'routes' when present."
    )
    rate_limit: RateLimitModel | None = Field(
        None, description="This client's own limit (never queues: over it is 429 at once)."
    )


class RouteModel(_Model):
    name: Text | None = Field(
        None,
        description=(
            "Unique name used in logs and metrics; default the prefix without its leading slash, other "
            "slashes as '-'."
        ),
    )
    prefix: Text = Field(
        description=(
            "Path prefix, matched on a segment boundary and then removed; the longest matching prefix wins."
        ),
    )
    upstream: Text = Field(
        description=(
            "http(s)://host[:port][/base]; the rest of the path and the query are appended byte for byte."
        ),
    )
    auth: dict[str, Any] = Field(
        default_factory=lambda: {"scheme": "none"},
        description=(
            "How requests are signed: 'scheme' plus that scheme's fields (see Auth schemes)."
        ),
    )
    auth_by_client: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description=(
            "Per-client credentials: client name -> an auth block used for that client's requests instead of"
            " 'auth'."
        ),
    )
    strip_headers: list[Text] = Field(
        default_factory=list, description="Request headers removed on top of the default list."
    )
    set_headers: dict[str, TextOrSecret] = Field(
        default_factory=dict,
        description=(
            "Headers set on every upstream request (values may be secret references)."
        ),
    )
    forward_client_info: bool = Field(
        False,
        description=(
            "Set X-Forwarded-For/-Proto/-Host, X-Real-IP and Forwarded to what Signet saw, replacing any the"
            " client sent."
        ),
    )
    client_amz_headers: list[Text] | None = Field(
        None,
        description=(
            "aws-sigv4 routes: the client x-amz-* headers signed and sent (globs, case-insensitive); any"
            " other is 403. Default [x-amz-meta-*, x-amz-checksum-*, x-amz-storage-class, x-amz-tagging]."
        ),
    )
    websocket: bool = Field(
        False,
        description=(
            "Relay WebSocket handshakes (Upgrade: websocket) on this route, then tunnel the bytes both ways;"
            " timeout.read is the tunnel's idle timeout. Without it an upgrade request is 400 bad_request."
        ),
    )
    timeout: RouteTimeoutModel | None = Field(None, description="Overrides defaults.timeout for this route.")
    max_body_bytes: int | None = Field(
        None, ge=0, description="Overrides defaults.max_body_bytes for this route."
    )
    spool_bytes: int | None = Field(None, ge=0, description="Overrides defaults.spool_bytes for this route.")
    tls: RouteTLSModel | None = Field(None, description="Overrides defaults.tls for this route.")
    max_in_flight: int | None = Field(
        None, ge=1, description="Overrides defaults.max_in_flight for this route."
    )
    rate_limit: RateLimitModel | None = Field(
        None,
        description=(
            "The vendor's quota for this route's credentials; requests over it wait up to max_wait, else "
            "429."
        ),
    )
    max_pause: Duration | None = Field(
        None,
        description=(
            "Longest a vendor 429 with Retry-After pauses the credential that received it (the route's "
            "auth or one auth_by_client entry); default 5m."
        ),
    )
    egress_proxy: TextOrSecret | None = Field(
        None, description="Overrides defaults.egress_proxy for this route (a URL, 'env' or 'none')."
    )
    hosts: list[Text] | None = Field(
        None,
        description=(
            "Forward-proxy mode: the hosts (host or host:port) a CONNECT or absolute-form request names "
            "for this route; default the upstream's host, on the upstream's port. [] claims none."
        ),
    )


class ForwardProxyCAModel(_Model):
    cert_file: Text = Field(description="The local CA's certificate (PEM), as `signet ca init` writes it.")
    key_file: Text | None = Field(None, description="Its private key (PEM, mode 0600); or give 'key'.")
    key: TextOrSecret | None = Field(
        None,
        description=(
            "The key as PEM text from a secret reference (${vault:...}, ${file:...}); the one value that "
            "may hold newlines. Never logged."
        ),
    )


class ForwardProxyModel(_Model):
    ca: ForwardProxyCAModel = Field(description="The local CA that mints a certificate per route host.")
    other_hosts: Literal["refuse", "tunnel"] = Field(
        "refuse",
        description=(
            "A CONNECT to a host of no route: 'refuse' (403) or 'tunnel' (a blind tunnel, not intercepted)."
        ),
    )
    leaf_cache_size: int = Field(
        1024, ge=1, description="Most leaf certificates (one per host) kept in memory at once."
    )


class VaultAppRoleModel(_Model):
    role_id: Secret = Field(description="AppRole role_id (a secret reference).")
    secret_id: Secret = Field(
        description="AppRole secret_id (a secret reference, e.g. ${file:/run/secrets/secret-id})."
    )
    mount: Text = Field("approle", description="Where the AppRole auth method is mounted.")


class VaultKubernetesModel(_Model):
    role: Text = Field(min_length=1, description="Vault role bound to the pod's service account.")
    mount: Text = Field("kubernetes", description="Where the Kubernetes auth method is mounted.")
    jwt_file: Text = Field(
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
        description=(
            "The service account token, read again at every login (kubelet rotates it)."
        ),
    )


class VaultAuthModel(_Model):
    token: Secret | None = Field(
        None, description="A Vault token (a secret reference); default $VAULT_TOKEN."
    )
    approle: VaultAppRoleModel | None = Field(None, description="Log in with AppRole.")
    kubernetes: VaultKubernetesModel | None = Field(
        None, description="Log in with the pod's Kubernetes service account."
    )


class VaultModel(_Model):
    address: Text | None = Field(None, description="Vault/OpenBao URL; default $VAULT_ADDR.")
    namespace: Text | None = Field(None, description="Vault namespace (X-Vault-Namespace); optional.")
    ca_file: Text | None = Field(
        None, description="PEM bundle to verify Vault's certificate; default the system store."
    )
    auth: VaultAuthModel | None = Field(
        None, description="One login method; omitted, Signet uses $VAULT_TOKEN."
    )


class StateModel(_Model):
    """``state``: where limits and OAuth2 tokens are shared across processes (optional)."""

    redis: TextOrSecret | None = Field(
        None,
        description=(
            "redis://, rediss:// or unix:// URL of a Redis shared by every Signet process and replica "
            "(limits, OAuth2 tokens). A URL with a password must come from a reference."
        ),
    )
    on_error: Literal["allow", "deny"] = Field(
        "allow",
        description=(
            "When Redis cannot be reached: 'allow' falls back to per-process limits and caches, 'deny' "
            "answers 503 state_unavailable."
        ),
    )


class SettingsModel(_Model):
    listen: Text = Field(
        "127.0.0.1:8080",
        description=(
            "Proxy address HOST:PORT. A non-loopback address needs 'clients' or 'allow_unauthenticated: "
            "true'."
        ),
    )
    admin_listen: Text = Field("127.0.0.1:9191", description="Address of /healthz, /readyz and /metrics.")
    shutdown_grace: float = Field(
        10.0, ge=0, description="Seconds SIGTERM/SIGINT waits for in-flight requests before exiting."
    )
    allow_unauthenticated: bool = Field(
        False, description="Allow a non-loopback 'listen' without 'clients' (only behind a network policy)."
    )
    listen_tls: ListenTLSModel | None = Field(
        None, description="Serve the proxy listener over TLS (1.2+); without it the listener is plain HTTP."
    )
    allow_plaintext_tokens: bool = Field(
        False,
        description=(
            "Allow client tokens over plain HTTP on a non-loopback 'listen' (a trusted network only); "
            "without it such a config is refused: use listen_tls."
        ),
    )
    defaults: DefaultsModel = Field(
        DefaultsModel(), description="Route settings every route inherits unless it overrides them."
    )
    limits: LimitsModel = Field(
        LimitsModel(),
        description=(
            "Limits on what clients send; the defaults are safe for a proxy that holds secrets."
        ),
    )
    clients: list[ClientModel] | None = Field(
        None, description="Inbound authentication: with it, every request must carry a client's token."
    )
    vault: VaultModel | None = Field(
        None,
        description=(
            "OpenBao / HashiCorp Vault connection; needed only when a ${vault:...} reference is used."
        ),
    )
    secret_refresh: float = Field(
        300.0, gt=0,
        description=(
            "Seconds between re-reads of every vault and file reference (rotation without restart)."
        ),
    )
    routes: list[RouteModel] = Field(min_length=1, description="The routes, matched by longest path prefix.")
    state: StateModel = Field(
        StateModel(), description="Shared state across processes and replicas (optional)."
    )
    forward_proxy: ForwardProxyModel | None = Field(
        None,
        description=(
            "Forward-proxy mode: apps keep their vendor URLs and use Signet as HTTPS_PROXY (CONNECT, "
            "absolute-form); without it both are 400."
        ),
    )


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
    websocket: bool = False  # WebSocket upgrades are relayed and tunnelled (else 400)
    # inbound client name -> its own vendor credentials on this route
    auth_by_client: Mapping[str, tuple[type[AuthScheme], SchemeOptions]] = field(
        default_factory=dict
    )
    rate_limit: RateLimit | None = None
    spool_bytes: int = 1024 * 1024  # signed bodies larger than this are spooled to disk
    spool_dir: str | None = None  # None: the system temp directory
    egress: EgressProxy | None = None  # resolved (env mode applied); None: direct
    max_pause: float = 300.0  # seconds a vendor 429 may pause one credential of this route
    # aws-sigv4: the client x-amz-* headers signed and sent (globs); any other is refused
    client_amz_headers: tuple[str, ...] = DEFAULT_CLIENT_AMZ_HEADERS
    # forward-proxy mode: the (host, port) pairs a CONNECT or absolute-form request names
    hosts: tuple[tuple[str, int], ...] = ()

    @property
    def origin(self) -> str:
        return str(self.upstream.origin())


@dataclass(frozen=True)
class RateLimit:
    """A GCRA limit as configured (before any per-worker share is taken)."""

    requests: int
    per: float  # seconds
    burst: int = 0
    max_wait: float = 0.0  # seconds; always 0 for a client limit (client limits never queue)

    def describe(self) -> str:
        wait = f", max_wait {self.max_wait:g}s" if self.max_wait else ""
        return f"{self.requests} per {self.per:g}s, burst {self.burst}{wait}"


@dataclass(frozen=True)
class AllowRule:
    """One ``clients[].allow`` entry: a route, and optionally methods and raw-path globs."""

    route: str
    methods: frozenset[str] | None = None  # upper-case; None: every method
    paths: tuple[str, ...] | None = None  # globs over the path after the prefix; None: every path
    operations: frozenset[str] | None = None  # AWS operations (service:Name); None: any


@dataclass(frozen=True)
class Client:
    name: str
    token: Secret | None  # None: known by its certificate alone
    routes: frozenset[str] | None  # None: every route (with allow: the routes it names)
    allow: tuple[AllowRule, ...] | None = None
    rate_limit: RateLimit | None = None
    cert: CertMatch | None = None  # with a token too, both must match


@dataclass(frozen=True)
class ForwardProxySettings:
    """``forward_proxy``: the loaded local CA and what to do with hosts of no route."""

    ca: LocalCA
    cert_file: str
    key_source: str  # where the key came from, for `signet check`: a path or a reference text
    other_hosts: Literal["refuse", "tunnel"] = "refuse"
    leaf_cache_size: int = 1024


@dataclass(frozen=True)
class StateSettings:
    redis: Secret | None = None  # the URL may carry a password: kept as a Secret
    on_error: Literal["allow", "deny"] = "allow"


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
    vault: VaultSettings | None = None
    secret_refresh: float = 300.0
    # every reference the config used: key ("NAME", "file:/p", "vault:m/p#f") -> value
    references: Mapping[str, str] = field(default_factory=dict, repr=False)
    reference_locations: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # location ("routes[0].auth.secret") -> the reference texts its value was read from
    # ("${THREECOMMAS_SECRET}"): reference text only, never a value; see route_secret_sources
    reference_texts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    origin: ConfigOrigin | None = field(default=None, repr=False, compare=False)
    listen_tls: ListenTLS | None = None
    allow_plaintext_tokens: bool = False

    def refreshable(self) -> list[str]:
        """The references re-read by a secret refresh (files and vault; env is read once)."""
        return [k for k in self.references if ref_kind(k) in ("file", "vault")]
    workers: int = 1  # processes serving this config (--workers); local limits are split N ways
    state: StateSettings = StateSettings()
    forward_proxy: ForwardProxySettings | None = None

    def __repr__(self) -> str:
        names = ", ".join(r.name for r in self.routes)
        return f"<Settings source={self.source!r} routes=[{names}]>"


# ------------------------------------------------------------------- YAML + lines


class _Problems:
    def __init__(self, lines: dict[Loc, int]) -> None:
        self.items: list[ConfigProblem] = []
        self.lines = lines
        self.bad_values: set[Loc] = set()  # a reference there already has its one error

    def add(self, loc: Loc, message: str, *, value: bool = False) -> None:
        """Record a problem; ``value``: one about the value a reference gave ``loc``.

        Each bad value is one error: once a reference's problem is recorded, what
        validation then says about the value it left behind (``must not be
        empty``) adds nothing and is dropped.
        """
        loc = tuple(loc)
        if value:
            self.bad_values.add(loc)
        elif loc in self.bad_values:
            return
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


_YAML_HINTS = (  # PyYAML's problem -> what a person editing the file should look at
    ("mapping values are not allowed", "a ':' YAML did not expect: a value with ': ' in it needs quotes, "
     "or the line above is missing its ':' or indentation"),
    ("could not find expected ':'", "a line without 'key: value' (a missing ':' or a stray line)"),
    ("cannot start any token", "a character YAML cannot start a value with (a tab: indent with spaces)"),
    ("expected <block end>", "the indentation does not line up with the lines above"),
    ("did not find expected key", "the indentation does not line up with the lines above"),
    ("did not find expected '-'", "a list item that does not line up with the items above"),
    ("found unexpected end of stream", "a quote or bracket opened and never closed"),
    ("found unexpected ':'", "a ':' inside a value that needs quotes"),
    ("expected ',' or ']'", "a [list] that is not closed, or an item that needs quotes"),
    ("expected ',' or '}'", "a {mapping} that is not closed, or a value that needs quotes"),
)


def yaml_summary(exc: yaml.YAMLError) -> str:
    """Signet's one-line account of a YAML syntax error (PyYAML's words kept in brackets).

    Only PyYAML's problem text and the column are used, never the line's content, which
    may hold a secret.
    """
    problem = str(getattr(exc, "problem", None) or exc).split("\n", 1)[0]
    hint = next((text for key, text in _YAML_HINTS if key in problem), "the YAML syntax is broken here")
    mark = getattr(exc, "problem_mark", None)
    column = f" at column {mark.column + 1}" if mark else ""
    return f"not valid YAML{column}: {hint} [{problem}]"


def _parse_yaml(text: str, problems: list[ConfigProblem]) -> tuple[Any, dict[Loc, int]]:
    text, refs = _shield_refs(text)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problems.append(ConfigProblem("", yaml_summary(exc), line))
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
PEM_KEY_LOC: Loc = ("forward_proxy", "ca", "key")  # the one value that may hold newlines
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class RefProblem(Exception):
    """A reference that cannot be resolved; the message names it, never a value."""


def ref_kind(key: str) -> str:
    """``env``, ``file`` or ``vault`` for a reference key (the text inside ``${...}``)."""
    kind, sep, _ = key.partition(":")
    return kind if sep and kind in ("file", "vault") else "env"


def ref_text(key: str) -> str:
    return "${" + key + "}"


class References:
    """Resolves ``${...}`` references, one resolver per kind, and remembers each one used.

    ``values`` maps a reference key to its value for the keys resolved elsewhere:
    vault values fetched by :func:`load_config_async`, or every file and vault
    value a secret refresh re-read. Other keys go to the kind's resolver.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        values: Mapping[str, str | VaultError] | None = None,
    ) -> None:
        self.env = env
        self.values = dict(values or {})
        self.used: dict[str, str] = {}
        self.locations: dict[str, list[str]] = {}
        self.resolvers: dict[str, Callable[[str], str]] = {
            "env": self._env,
            "file": self._file,
            "vault": self._vault,
        }

    def resolve(self, key: str, loc: Loc) -> str:
        self.locations.setdefault(key, [])
        if format_loc(loc) not in self.locations[key]:
            self.locations[key].append(format_loc(loc))
        known = self.values.get(key)
        if isinstance(known, VaultError):
            raise RefProblem(f"cannot read {ref_text(key)}: {known.message}")
        value = known if known is not None else self.resolvers[ref_kind(key)](key)
        self.used[key] = value
        return value

    def _env(self, key: str) -> str:
        if not _ENV_NAME.match(key):
            raise RefProblem(
                f"bad reference ${{{key}}}: use ${{NAME}}, ${{file:/path}} or "
                "${vault:MOUNT/PATH#FIELD}"
            )
        if key not in self.env:
            raise RefProblem(f"environment variable {key} is not set")
        return self.env[key]

    def _file(self, key: str) -> str:
        path = key[5:].strip()
        try:
            return read_secret_file(path)
        except OSError as exc:
            raise RefProblem(f"cannot read secret file {path!r} ({exc.strerror or exc})") from None

    def _vault(self, key: str) -> str:
        try:
            VaultRef.parse(key[6:])
        except ValueError as exc:
            raise RefProblem(f"bad reference {ref_text(key)}: {exc}") from None
        raise RefProblem(
            f"{ref_text(key)} needs Vault, which only the async loader reads "
            "(signet serve / check do; load_config_async in code)"
        )


def read_secret_file(path: str) -> str:
    """A ``${file:...}`` value: the content, one trailing newline removed."""
    try:
        content = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise OSError(0, "not UTF-8 text") from None
    return content[:-1] if content.endswith("\n") else content


def _resolve_refs(
    value: Any, loc: Loc, refs: References, problems: _Problems, found: set[str]
) -> Any:
    if isinstance(value, dict):
        return {k: _resolve_refs(v, (*loc, k), refs, problems, found) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_refs(v, (*loc, i), refs, problems, found) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    used_reference = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal used_reference
        if match.group(0) == "$${":
            return "${"
        used_reference = True
        try:
            resolved = refs.resolve(match.group(1).strip(), loc)
        except RefProblem as exc:
            problems.add(loc, str(exc), value=True)
            return ""
        return _checked(resolved, match.group(0))

    def _checked(resolved: str, reference: str) -> str:
        """One rule for every secret value (proxy.secret.value_problem); names the reference only.

        The CA key (``forward_proxy.ca.key``) is PEM text, never sent in a header:
        its newlines are its format, so only emptiness is checked there.
        """
        if loc == PEM_KEY_LOC:
            if not resolved.strip():
                problems.add(loc, f"{reference} is empty", value=True)
            return resolved
        problem = value_problem(resolved)
        if problem is not None:
            problems.add(loc, f"{reference} {problem}", value=True)
        return resolved

    resolved = _REF.sub(substitute, value)
    if "${" in _REF.sub("", value):
        problems.add(loc, "unterminated ${ reference (write $${ for a literal ${)")
    if used_reference:
        if resolved:
            found.add(resolved)
        return Secret(resolved)
    return resolved


def _references_in(value: Any, loc: Loc, out: dict[str, tuple[str, ...]]) -> None:
    """Record, per location, the reference text each value names (``${NAME}``, ``${file:...}``).

    Read before resolution and independent of it, so it works for every
    reference kind; only the ``${...}`` parts are kept, never the text around them.
    """
    if isinstance(value, dict):
        for k, v in value.items():
            _references_in(v, (*loc, k), out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _references_in(v, (*loc, i), out)
    elif isinstance(value, str) and "${" in value:
        refs = tuple(m.group(0) for m in _REF.finditer(value) if m.group(0) != "$${")
        if refs:
            out[format_loc(loc)] = refs


def secret_fields(value: Any, path: str = "") -> Iterator[str]:
    """The dotted path of every Secret inside ``value`` (a model, mapping or sequence)."""
    if isinstance(value, Secret):
        yield path
    elif isinstance(value, BaseModel):
        for k, v in value.__dict__.items():
            yield from secret_fields(v, f"{path}.{k}" if path else k)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from secret_fields(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from secret_fields(v, f"{path}[{i}]")


def route_secret_sources(settings: Settings, index: int) -> list[tuple[str, str]]:
    """``(field, where it came from)`` for every secret-bearing field of ``routes[index]``.

    ``where`` is the reference text (``${THREECOMMAS_SECRET}``) or, for a
    value written into the file itself, ``a literal in the config file``.
    """
    route = settings.routes[index]
    fields = [*secret_fields(route.auth, "auth")]
    fields += [f"set_headers.{k}" for k, v in route.set_headers.items() if isinstance(v, Secret)]
    base = f"routes[{index}]."
    # fields that used a reference but are not kept as a Secret (e.g. upstream: ${URL}) still count
    fields += [
        loc[len(base):] for loc in settings.reference_texts
        if loc.startswith(base) and loc[len(base):] not in fields
    ]
    out = []
    for f in fields:
        refs = settings.reference_texts.get(base + f)
        out.append((f, " ".join(refs) if refs else "a literal in the config file"))
    return out


def vault_refs_in(value: Any) -> set[str]:
    """Every ``vault:...`` reference key in the raw (unresolved) config data."""
    out: set[str] = set()
    if isinstance(value, dict):
        for v in value.values():
            out |= vault_refs_in(v)
    elif isinstance(value, list):
        for v in value:
            out |= vault_refs_in(v)
    elif isinstance(value, str) and "${" in value:
        for m in _REF.finditer(value):
            if m.group(1) is not None and ref_kind(m.group(1).strip()) == "vault":
                out.add(m.group(1).strip())
    return out


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
                return None, [dict(e) for e in errors]
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
    except (ValueError, TypeError) as exc:
        # yarl says why ("Port out of range 0-65535"); the value itself never goes in a message
        why = str(exc)
        if not why or upstream in why or len(why) > 80:
            return None, "not a valid URL"
        return None, f"not a valid URL: {why}"
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


def unsafe_listen(
    host: str, clients: Sequence[object] | None, allow_unauthenticated: bool
) -> str | None:
    """Why listening on ``host`` is refused, or None when it is fine.

    The one rule, for the config file and for ``--listen``: only a non-empty
    ``clients`` list counts as inbound authentication (``clients: []`` admits
    nobody, so a public address with it would only answer 407 to everyone).
    """
    if is_loopback(host) or clients or allow_unauthenticated:
        return None
    return (
        f"listening on {host} (not loopback) without inbound authentication would let "
        "anyone who can reach this address use every vendor credential in this file; "
        "add a 'clients' section with tokens, or set 'allow_unauthenticated: true' if a "
        "network policy already restricts who can connect"
    )


def plaintext_tokens(
    host: str, clients: Sequence[Client] | None, tls: ListenTLS | None, allowed: bool
) -> str | None:
    """Why client tokens would cross the network in clear on ``host``, or None.

    The contract's safe default: with ``clients`` holding tokens, a non-loopback
    listener must speak TLS, unless ``allow_plaintext_tokens: true`` says the
    network between the apps and Signet is trusted.
    """
    if tls is not None or allowed or is_loopback(host):
        return None
    if not any(c.token is not None for c in clients or ()):
        return None
    return (
        f"client tokens would cross the network in clear on {host} (not loopback): "
        "set 'listen_tls' (cert_file, key_file) so clients connect over TLS, or "
        "'allow_plaintext_tokens: true' if the network between the apps and Signet is trusted"
    )


def override_listen(
    settings: Settings,
    listen: tuple[str, int] | None = None,
    admin_listen: tuple[str, int] | None = None,
) -> Settings:
    """``settings`` with ``--listen`` / ``--admin-listen`` applied, under the config's own rule."""
    if listen is None and admin_listen is None:
        return settings
    new = replace(
        settings,
        listen=listen or settings.listen,
        admin_listen=admin_listen or settings.admin_listen,
    )
    why = unsafe_listen(new.listen[0], new.clients, new.allow_unauthenticated) or plaintext_tokens(
        new.listen[0], new.clients, new.listen_tls, new.allow_plaintext_tokens
    )
    if why:
        raise ConfigError([ConfigProblem("--listen", why)], settings.source)
    return new


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listen_tls(model: ListenTLSModel | None, problems: _Problems) -> ListenTLS | None:
    if model is None:
        return None
    tls = ListenTLS(model.cert_file, model.key_file, model.client_ca_file, model.require_client_cert)
    for name, message in listen_tls_problems(tls):
        problems.add(("listen_tls", name), message)
    return tls


def _client_cert(
    c: ClientModel, i: int, tls: ListenTLSModel | None, problems: _Problems
) -> CertMatch | None:
    """``clients[i].cert``, checked: one identity field, and a client CA to verify it against."""
    if c.cert is None:
        if c.token is None:
            problems.add(("clients", i), "a client needs a 'token', a 'cert', or both")
        return None
    given = [k for k in ("subject_cn", "san_uri") if getattr(c.cert, k)]
    if len(given) != 1:
        problems.add(("clients", i, "cert"), "give exactly one of subject_cn or san_uri")
        return None
    if tls is None or tls.client_ca_file is None:
        problems.add(
            ("clients", i, "cert"),
            "clients known by certificate need listen_tls with a client_ca_file to verify it against",
        )
    return CertMatch(c.cert.subject_cn, c.cert.san_uri)


def _build_state(model: StateModel, problems: _Problems, secrets: set[str]) -> StateSettings:
    if model.redis is None:
        return StateSettings(on_error=model.on_error)
    url = reveal(model.redis)
    if why := redis_url_problem(url):
        problems.add(("state", "redis"), why)
    elif URL(url).password and not isinstance(model.redis, Secret):
        problems.add(
            ("state", "redis"),
            "the URL holds a password: put it in the environment or a file and "
            "write redis: ${REDIS_URL} (or ${file:/path})",
        )
    password = URL(url).password if not redis_url_problem(url) else None
    if password:
        secrets.add(password)
    return StateSettings(redis=Secret(url), on_error=model.on_error)


# --------------------------------------------------------------------------- entry


@dataclass(frozen=True)
class ConfigOrigin:
    """The parsed (unresolved) config, kept so a secret refresh can rebuild it with new values."""

    data: dict[str, Any]
    lines: dict[Loc, int]
    env: Mapping[str, str]
    source: str


def _read_text(path: str | os.PathLike[str]) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem("", f"cannot read config file: {exc.strerror or exc}")], str(path)
        ) from None


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate a config file without vault references; raises ConfigError with every problem."""
    return load_config_text(_read_text(path), env=env, source=str(path))


def load_config_text(
    text: str, env: Mapping[str, str] | None = None, source: str = "<string>"
) -> Settings:
    origin = _parse_origin(text, os.environ if env is None else env, source)
    return _build_from(origin, References(origin.env))


async def load_config_async(
    path: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    vault_clients: VaultClients | None = None,
) -> Settings:
    """:func:`load_config` that also reads ``${vault:...}`` references (serve, check, SIGHUP).

    ``vault_clients`` keeps the Vault login across reloads; without it a
    client is made for this load and closed after.
    """
    return await load_config_text_async(
        _read_text(path), env=env, source=str(path), vault_clients=vault_clients
    )


async def load_config_text_async(
    text: str,
    env: Mapping[str, str] | None = None,
    source: str = "<string>",
    vault_clients: VaultClients | None = None,
) -> Settings:
    origin = _parse_origin(text, os.environ if env is None else env, source)
    keys = vault_refs_in(origin.data)
    if not keys:
        return _build_from(origin, References(origin.env))
    problems = _Problems(origin.lines)
    vault = _vault_settings(origin.data.get("vault"), origin.env, problems, origin.data)
    if vault is None:
        raise ConfigError(problems.items, source)
    own = vault_clients is None
    clients = vault_clients or VaultClients()
    try:
        fetched = await fetch_refs(clients.get(vault), keys)
    finally:
        if own:
            await clients.close()
    return _build_from(origin, References(origin.env, fetched))


def rebuild_settings(settings: Settings, values: Mapping[str, str]) -> Settings:
    """The same config with new values for some references (a secret refresh); raises ConfigError."""
    assert settings.origin is not None, "settings without an origin cannot be refreshed"
    known = {**settings.references, **values}
    rebuilt = _build_from(settings.origin, References(settings.origin.env, known))
    # addresses may have been overridden on the command line; a refresh keeps them
    return replace(rebuilt, listen=settings.listen, admin_listen=settings.admin_listen)


def _parse_origin(text: str, env: Mapping[str, str], source: str) -> ConfigOrigin:
    early: list[ConfigProblem] = []
    data, lines = _parse_yaml(text, early)
    problems = _Problems(lines)
    problems.items.extend(early)
    if data is None and early:
        raise ConfigError(problems.items, source)
    if not isinstance(data, dict):
        problems.add((), "the config must be a mapping of keys (listen, routes, ...)")
        raise ConfigError(problems.items, source)
    if early:
        raise ConfigError(problems.items, source)
    return ConfigOrigin(data, lines, env, source)


def _first_vault_ref(value: Any, loc: Loc = ()) -> Loc | None:
    """Where the first ``${vault:...}`` reference is, in file order."""
    if isinstance(value, str):
        return loc if "${vault:" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if (found := _first_vault_ref(item, (*loc, key))) is not None:
            return found
    return None


def _vault_settings(
    raw: Any, env: Mapping[str, str], problems: _Problems, config: Any = None
) -> VaultSettings | None:
    """The ``vault:`` block, resolved (its own references are env/file only)."""
    loc: Loc = ("vault",)
    had_block = raw is not None
    raw = {} if raw is None else raw
    if vault_refs_in(raw):
        problems.add(loc, "the vault block cannot use ${vault:...} references")
        return None
    refs = References(env)
    data = _resolve_refs(raw, loc, refs, problems, set())
    model, errors = _validate(VaultModel, data)
    _report(errors, VaultModel, loc, problems)
    if model is None or problems.items:
        return None
    assert isinstance(model, VaultModel)
    address = model.address or env.get("VAULT_ADDR")
    if not address and not had_block:  # point at what needs Vault, not at a block that is not there
        where = _first_vault_ref(config) or loc
        problems.add(where, "a ${vault:...} reference needs Vault: add a 'vault:' block with 'address', "
                     "or set $VAULT_ADDR")
        return None  # the rest of a block that is not there has nothing more to say
    elif not address:
        problems.add((*loc, "address"), "required: set vault.address or $VAULT_ADDR")
    elif URL(address).scheme not in ("http", "https"):
        problems.add((*loc, "address"), "must be an http:// or https:// URL")
    if model.ca_file and not os.access(model.ca_file, os.R_OK):
        problems.add((*loc, "ca_file"), f"cannot read CA file {model.ca_file!r}")
    a = model.auth or VaultAuthModel()
    chosen = [k for k in ("token", "approle", "kubernetes") if getattr(a, k) is not None]
    auth: TokenAuth | AppRoleAuth | KubernetesAuth | None = None
    if len(chosen) > 1:
        problems.add((*loc, "auth"), f"choose one method, not {' and '.join(chosen)}")
    elif a.approle is not None:
        auth = AppRoleAuth(a.approle.role_id, a.approle.secret_id, a.approle.mount)
    elif a.kubernetes is not None:
        k = a.kubernetes
        auth = KubernetesAuth(k.role, k.jwt_file, k.mount)
    elif a.token is not None:
        auth = TokenAuth(a.token)
    elif env.get("VAULT_TOKEN"):
        auth = TokenAuth(Secret(env["VAULT_TOKEN"]))
    else:
        problems.add((*loc, "auth"), "no Vault credentials: set vault.auth or $VAULT_TOKEN")
    if problems.items or auth is None or not address:
        return None
    return VaultSettings(address, auth, model.namespace, model.ca_file)


def _build_from(origin: ConfigOrigin, refs: References) -> Settings:
    source = origin.source
    problems = _Problems(origin.lines)
    secrets: set[str] = set()
    data = _resolve_refs(origin.data, (), refs, problems, secrets)

    model, errors = _validate(SettingsModel, data)
    _report(errors, SettingsModel, (), problems)
    if model is None:
        # still check each route's auth block so one run shows every problem
        for i, raw in enumerate(data.get("routes") or []):
            if isinstance(raw, dict) and isinstance(raw.get("auth"), dict):
                _build_auth(raw["auth"], ("routes", i, "auth"), problems)
        raise ConfigError(problems.items, source)
    assert isinstance(model, SettingsModel)
    settings = _build_settings(model, problems, source, secrets, origin.env)
    if settings is not None:
        _check_secret_values(settings, problems)
    vault = None
    if vault_refs_in(origin.data):
        vault = _vault_settings(origin.data.get("vault"), origin.env, problems, origin.data)
    if problems.items:
        raise ConfigError(problems.items, source)
    assert settings is not None
    extra: set[str] = set()
    if vault is not None:
        a = vault.auth
        held = [a.token] if isinstance(a, TokenAuth) else []
        held += [a.role_id, a.secret_id] if isinstance(a, AppRoleAuth) else []
        extra = {s.reveal() for s in held if s}
    texts: dict[str, tuple[str, ...]] = {}
    _references_in(origin.data, (), texts)
    return replace(
        settings,
        secret_values=settings.secret_values | extra,
        vault=vault,
        secret_refresh=model.secret_refresh,
        references=dict(refs.used),
        reference_locations={k: tuple(v) for k, v in refs.locations.items()},
        reference_texts=texts,
        origin=origin,
    )


def _check_secret_values(settings: Settings, problems: _Problems) -> None:
    """Every value held as a Secret, written literally too, follows ``value_problem``.

    Values from references were checked as they were resolved; this catches a
    literal ``api_key: ""`` (or one with a control character) in a field a
    scheme declares secret. One error per value, never the value itself.
    """
    reported = {p.location for p in problems.items}
    found: list[tuple[Loc, Secret]] = []
    for i, route in enumerate(settings.routes):
        found.extend(_secrets_at(route.auth, ("routes", i, "auth")))
        found.extend(_secrets_at(dict(route.set_headers), ("routes", i, "set_headers")))
        for name, (_, options) in route.auth_by_client.items():
            found.extend(_secrets_at(options, ("routes", i, "auth_by_client", name)))
    for i, client in enumerate(settings.clients or ()):
        found.extend(_secrets_at(client.token, ("clients", i, "token")))
    for loc, value in found:
        problem = value_problem(value.reveal())
        if problem is not None and loc not in problems.bad_values and format_loc(loc) not in reported:
            problems.add(loc, f"the value {problem}")


def _secrets_at(value: Any, loc: Loc) -> list[tuple[Loc, Secret]]:
    """(location, Secret) for every Secret in ``value``: itself, or inside a model, mapping or list."""
    if isinstance(value, Secret):
        return [(loc, value)]
    items: Any = ()
    if isinstance(value, BaseModel):
        items = value.__dict__.items()
    elif isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    return [found for k, v in items for found in _secrets_at(v, (*loc, k))]


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


def _check_auth_by_client(model: SettingsModel, names: dict[str, int], problems: _Problems) -> None:
    """Every ``auth_by_client`` key names a client that exists and may use the route."""
    clients = {c.name: c for c in model.clients or ()}
    for i, r in enumerate(model.routes):
        route_name = r.name or _default_route_name(r.prefix)
        for client_name in r.auth_by_client:
            loc: Loc = ("routes", i, "auth_by_client", client_name)
            if model.clients is None:
                problems.add(loc, "auth_by_client needs a 'clients' section (inbound authentication)")
                continue
            client = clients.get(client_name)
            if client is None:
                hint = _did_you_mean(client_name, list(clients))
                problems.add(loc, f"no client named {client_name!r}{hint}")
            else:
                allowed = client.routes if client.allow is None else [a.route for a in client.allow]
                if allowed is not None and route_name not in allowed:
                    problems.add(
                        loc, f"client {client_name!r} may not use route {route_name!r} (its routes or allow)"
                    )
def _rate_limit(model: RateLimitModel | None) -> RateLimit | None:
    if model is None:
        return None
    return RateLimit(model.requests, model.per, model.burst, model.max_wait or 0.0)


def _allow_rules(
    c: ClientModel,
    loc: Loc,
    route_names: list[str],
    problems: _Problems,
    aws_services: Mapping[str, Mapping[str | None, str | None]] | None = None,
) -> tuple[AllowRule, ...] | None:
    """Validate ``clients[i].allow``: known routes, HTTP method tokens, well-formed globs."""
    from proxy.policy import glob_problem  # policy imports this module's types

    if c.allow is None:
        return None
    if c.routes is not None:
        problems.add(
            (*loc, "allow"),
            "use either 'routes' or 'allow' (allow replaces routes: list every route there)",
        )
    rules = []
    for j, a in enumerate(c.allow):
        where: Loc = (*loc, "allow", j)
        if a.route not in route_names:
            hint = _did_you_mean(a.route, route_names)
            problems.add((*where, "route"), f"no route named {a.route!r}{hint}")
        methods = None
        if a.methods is not None:
            if not a.methods:
                problems.add((*where, "methods"), "empty: leave methods out to allow every method")
            for k, m in enumerate(a.methods):
                if not _METHOD.match(m):
                    problems.add((*where, "methods", k), "not an HTTP method name (e.g. GET)")
            methods = frozenset(m.upper() for m in a.methods)
        if a.paths is not None:
            if not a.paths:
                problems.add((*where, "paths"), "empty: leave paths out to allow every path")
            for k, pattern in enumerate(a.paths):
                if why := glob_problem(pattern):
                    problems.add((*where, "paths", k), why)
        # the service this client's requests on the route are signed for (auth_by_client or auth)
        by_client = (aws_services or {}).get(a.route, {})
        operations = _operations(a, where, by_client.get(c.name, by_client.get(None)), problems)
        rules.append(
            AllowRule(a.route, methods, tuple(a.paths) if a.paths is not None else None, operations)
        )
    if not rules:
        problems.add((*loc, "allow"), "empty: this client could use nothing (remove the client?)")
    return tuple(rules)


_METHOD = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")


def _operations(
    a: AllowModel, where: Loc, service: str | None, problems: _Problems
) -> frozenset[str] | None:
    """Validate ``allow[j].operations``: ``service:Name`` for the route's own AWS service."""
    if a.operations is None:
        return None
    if not a.operations:
        problems.add((*where, "operations"), "empty: leave operations out to allow every operation")
    if service is None:
        problems.add(
            (*where, "operations"),
            f"route {a.route!r} does not sign with aws-sigv4: operations apply to AWS routes only",
        )
        return frozenset(a.operations)
    for k, op in enumerate(a.operations):
        m = OPERATION.match(op)
        if m is None:
            problems.add(
                (*where, "operations", k),
                f"not an AWS operation: write service:Operation (e.g. {service}:"
                f"{'GetObject' if service == 's3' else 'Query'})",
            )
        elif m.group(1) != service:
            problems.add(
                (*where, "operations", k),
                f"unknown service prefix {m.group(1)!r}: route {a.route!r} signs for "
                f"service {service!r} (write {service}:{m.group(2)})",
            )
        elif service == "s3" and m.group(2) not in S3_OPERATIONS:
            hint = _did_you_mean(m.group(2), sorted(S3_OPERATIONS))
            problems.add(
                (*where, "operations", k),
                f"Signet cannot tell the S3 operation {m.group(2)!r} apart{hint} "
                "(see README: AWS operations)",
            )
    return frozenset(a.operations)


def _client_amz_headers(r: RouteModel, loc: Loc, aws: bool, problems: _Problems) -> tuple[str, ...]:
    """Validate ``routes[i].client_amz_headers`` (globs over x-amz-* names, aws-sigv4 routes only)."""
    if r.client_amz_headers is None:
        return DEFAULT_CLIENT_AMZ_HEADERS
    if not aws:
        problems.add(
            (*loc, "client_amz_headers"),
            "only aws-sigv4 routes sign client x-amz-* headers: remove it or change the scheme",
        )
    for k, pattern in enumerate(r.client_amz_headers):
        if why := amz_glob_problem(pattern):
            problems.add((*loc, "client_amz_headers", k), why)
    return tuple(p.lower() for p in r.client_amz_headers)


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
    if d.spool_dir is not None and not (
        os.path.isdir(d.spool_dir) and os.access(d.spool_dir, os.W_OK | os.X_OK)
    ):
        problems.add(("defaults", "spool_dir"), f"{d.spool_dir!r} is not a writable directory")
    routes: list[Route] = []
    names: dict[str, int] = {}
    prefixes: dict[str, int] = {}
    # route name -> {client name (None: the route's auth) -> its aws-sigv4 service, or None}
    aws_services: dict[str, dict[str | None, str | None]] = {}
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
        by_client: dict[str, tuple[type[AuthScheme], SchemeOptions]] = {}
        for client_name, raw_auth in r.auth_by_client.items():
            if (one := _build_auth(raw_auth, (*loc, "auth_by_client", client_name), problems)):
                by_client[client_name] = one
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
        hosts = _route_hosts(r, url, loc, model.forward_proxy is not None, problems)
        if built is None or url is None:
            continue
        scheme_cls, options = built
        signers: dict[str | None, SchemeOptions] = {None: options}
        signers.update((k, o) for k, (_, o) in by_client.items())
        aws_services[name] = {
            k: getattr(o, "service", None) if o.scheme == "aws-sigv4" else None
            for k, o in signers.items()
        }
        amz_headers = _client_amz_headers(r, loc, any(aws_services[name].values()), problems)
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
                websocket=r.websocket,
                auth_by_client=by_client,
                rate_limit=_rate_limit(r.rate_limit),
                spool_bytes=d.spool_bytes if r.spool_bytes is None else r.spool_bytes,
                spool_dir=d.spool_dir,
                egress=egress,
                max_pause=300.0 if r.max_pause is None else r.max_pause,
                client_amz_headers=amz_headers,
                hosts=hosts,
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
            if c.token is not None:
                tok = c.token.reveal()
                if len(tok) < 16:
                    problems.add(
                        ("clients", i, "token"), "token is too short: use at least 16 characters"
                    )
                if tok in tokens:
                    problems.add(("clients", i, "token"), f"same token as clients[{tokens[tok]}]")
                tokens.setdefault(tok, i)
                secrets.add(tok)
            cert = _client_cert(c, i, model.listen_tls, problems)
            for j, rn in enumerate(c.routes or []):
                if rn not in names:
                    hint = _did_you_mean(rn, list(names))
                    problems.add(("clients", i, "routes", j), f"no route named {rn!r}{hint}")
            allow = _allow_rules(c, ("clients", i), list(names), problems, aws_services)
            if c.rate_limit is not None and c.rate_limit.max_wait is not None:
                problems.add(
                    ("clients", i, "rate_limit", "max_wait"),
                    "client limits never queue: a client over its limit gets 429 at once "
                    "(max_wait belongs on a route's rate_limit)",
                )
            routes_allowed = frozenset(c.routes) if c.routes is not None else None
            if allow is not None:
                routes_allowed = frozenset(rule.route for rule in allow)
            built_clients.append(
                Client(c.name, c.token, routes_allowed, allow, _rate_limit(c.rate_limit), cert)
            )
        clients = tuple(built_clients)

    _check_auth_by_client(model, names, problems)

    if listen[0] and (why := unsafe_listen(listen[0], model.clients, model.allow_unauthenticated)):
        problems.add(("listen",), why)
    listen_tls = _listen_tls(model.listen_tls, problems)
    if listen[0] and (why := plaintext_tokens(listen[0], clients, listen_tls, model.allow_plaintext_tokens)):
        problems.add(("listen",), why)

    for built_route in routes:
        secrets.update(secret_values_in(built_route.auth))
        for _, options in built_route.auth_by_client.values():
            secrets.update(secret_values_in(options))
    state = _build_state(model.state, problems, secrets)
    forward_proxy = None
    if model.forward_proxy is not None:
        _check_host_claims(model, routes, problems)
        forward_proxy = _build_forward_proxy(model.forward_proxy, problems, secrets)

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
        state=state,
        forward_proxy=forward_proxy,
        listen_tls=listen_tls,
        allow_plaintext_tokens=model.allow_plaintext_tokens,
    )


# ------------------------------------------------------------ forward-proxy mode

_LABEL = r"[a-z0-9_][a-z0-9_-]{0,62}"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\.?\Z")


def parse_route_host(text: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` -> (lower-case host, port); ValueError says why."""
    text = text.strip().lower()
    if "/" in text or "@" in text or "*" in text:
        raise ValueError("must be a host name, optionally with :port (no scheme, path or wildcard)")
    host, port = text, default_port
    if text.startswith("["):
        inner, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError("bad IPv6 literal: write [::1] or [::1]:8443")
        host, port_text = inner, rest[1:]
        if rest:
            port = _port(port_text)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(port_text)
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        if not _HOST_NAME.match(host):
            raise ValueError(
                "must be a host name (letters, digits, '-' and '.'), optionally with :port"
            ) from None
        host = host.rstrip(".")
    return host, port


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError("the port must be a number from 1 to 65535")
    return int(text)


def _route_hosts(
    r: RouteModel, url: URL | None, loc: Loc, forward: bool, problems: _Problems
) -> tuple[tuple[str, int], ...]:
    """The hosts a route answers as a forward proxy: its ``hosts``, else its upstream's host."""
    if r.hosts is not None and not forward:
        problems.add(
            (*loc, "hosts"),
            "hosts is used only in forward-proxy mode: add a forward_proxy block (with its CA)",
        )
        return ()
    if url is None:
        return ()
    default_port = url.port or (443 if url.scheme == "https" else 80)
    if r.hosts is None:
        return ((parse_route_host(url.raw_host or "", default_port)),) if url.raw_host else ()
    out: list[tuple[str, int]] = []
    for j, text in enumerate(r.hosts):
        try:
            out.append(parse_route_host(text, default_port))
        except ValueError as exc:
            problems.add((*loc, "hosts", j), str(exc))
    return tuple(out)


def _check_host_claims(model: SettingsModel, routes: list[Route], problems: _Problems) -> None:
    """One route per host: a CONNECT must name exactly one route's credentials."""
    claimed: dict[str, int] = {}
    by_name = {route.name: route for route in routes}
    for i, r in enumerate(model.routes):
        route = by_name.get(r.name or _default_route_name(r.prefix))
        if route is None:
            continue
        for j, (host, _) in enumerate(route.hosts):
            if host in claimed and claimed[host] != i:
                where: Loc = ("routes", i, "hosts", j) if r.hosts is not None else ("routes", i, "upstream")
                how = "" if r.hosts is not None else " (its upstream's host, the default of hosts)"
                problems.add(
                    where,
                    f"host {host!r}{how} is also claimed by routes[{claimed[host]}]: each host "
                    "belongs to one route in forward-proxy mode; set hosts on one of them "
                    "(hosts: [] claims none)",
                )
            claimed.setdefault(host, i)


def _build_forward_proxy(
    model: ForwardProxyModel, problems: _Problems, secrets: set[str]
) -> ForwardProxySettings | None:
    """Load the local CA; reports what `signet check` must: unreadable, mismatch, expired, not a CA."""
    loc: Loc = ("forward_proxy", "ca")
    ca = model.ca
    if (ca.key_file is None) == (ca.key is None):
        problems.add(
            loc,
            "give the CA key as key_file (a path) or as key (PEM text from a secret reference), "
            + ("not both" if ca.key_file is not None else "one of them is required"),
        )
        return None
    if ca.key is not None and not isinstance(ca.key, Secret):
        problems.add(
            (*loc, "key"),
            "the CA key is a secret: write key: ${vault:MOUNT/PATH#FIELD} or ${file:/path}, "
            "or use key_file",
        )
        return None
    try:
        cert_pem = Path(ca.cert_file).read_bytes()
    except OSError as exc:
        problems.add(
            (*loc, "cert_file"),
            f"cannot read CA certificate {ca.cert_file!r} ({exc.strerror or exc})",
        )
        return None
    if ca.key_file is not None:
        try:
            key_pem = Path(ca.key_file).read_bytes()
        except OSError as exc:
            problems.add((*loc, "key_file"), f"cannot read CA key {ca.key_file!r} ({exc.strerror or exc})")
            return None
        source = ca.key_file
        key_loc: Loc = (*loc, "key_file")
    else:
        assert isinstance(ca.key, Secret)
        key_pem = ca.key.reveal().encode()
        source = "a secret reference"
        key_loc = (*loc, "key")
    secrets.update(_pem_secrets(key_pem))
    from proxy.forward_proxy.ca import load_ca, load_ca_cert  # cryptography: forward-proxy configs only

    try:
        load_ca_cert(cert_pem)
    except ValueError as exc:
        problems.add((*loc, "cert_file"), str(exc))
        return None
    try:
        loaded = load_ca(cert_pem, key_pem)  # the certificate is fine: what is left is the key
    except ValueError as exc:
        problems.add(key_loc, str(exc))
        return None
    return ForwardProxySettings(
        ca=loaded,
        cert_file=ca.cert_file,
        key_source=source,
        other_hosts=model.other_hosts,
        leaf_cache_size=model.leaf_cache_size,
    )


def _pem_secrets(pem: bytes) -> set[str]:
    """The key as text, and each of its base64 lines: a log line must show neither."""
    text = pem.decode("ascii", "replace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("-----")]
    return {text.strip(), "".join(lines), *(ln for ln in lines if len(ln) >= 16)}

"""AWS Signature Version 4 (``aws-sigv4``), built to verify with botocore's own signer.

The steps and their names follow botocore's ``SigV4Auth``: :meth:`canonical_request`,
:meth:`string_to_sign`, :meth:`signature`. Inputs are the request exactly as it
goes upstream; only the *canonical* forms are normalised, never what is sent.

- **URI.** The raw path is taken as AWS-encoded text: each segment is
  percent-decoded and encoded again with AWS's rule (only ``A-Za-z0-9-_.~``
  kept), so ``%2F`` stays ``%2F``, ``%7e`` becomes ``~`` and a raw ``(``
  becomes ``%28``, which is what the service computes from the path it
  receives. For an SDK-encoded path this is the path itself, as botocore signs
  it. ``s3`` stops there (encoded once); every other service has empty and dot
  segments removed and the result encoded again (``%2F`` -> ``%252F``), as
  botocore's ``SigV4Auth`` does.
- **Query.** Split on ``&`` and the first ``=``; names and values decoded and
  encoded with the same rule (``+`` is a literal plus, as in RFC 3986); sorted
  by encoded name, then value; ``a`` becomes ``a=``; empty pieces (``&&``) are
  ignored.
- **Signed headers.** ``host``, ``content-type``, ``content-md5`` and every
  ``x-amz-*`` header, lowercase and sorted, values trimmed with whitespace runs
  collapsed, repeated headers joined with ``,``. Other client headers (e.g.
  ``User-Agent``, ``Accept``) go upstream unsigned, so an intermediary that
  rewrites them cannot break the signature. Signet sets ``Host`` itself, to the
  value it signs.
- **Payload.** Hex SHA-256 of the body (``payload: signed``) or
  ``UNSIGNED-PAYLOAD`` (``payload: unsigned``, body streamed, never buffered).
  ``X-Amz-Content-Sha256`` is sent for ``s3`` always and for other services
  with ``UNSIGNED-PAYLOAD`` (botocore does the same).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, unquote_to_bytes

from pydantic import Field, field_validator, model_validator
from yarl import URL

from proxy.auth.base import AuthResult, AuthScheme, SchemeContext, SchemeOptions, UpstreamRequest
from proxy.auth.registry import register
from proxy.body import body_digest
from proxy.secret import Secret, reveal, value_problem

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

HOST = "Host"
AUTHORIZATION = "Authorization"
DATE_HEADER = "X-Amz-Date"
TOKEN_HEADER = "X-Amz-Security-Token"
CONTENT_SHA256_HEADER = "X-Amz-Content-Sha256"

#: client headers signed besides ``host`` and every ``x-amz-*``
SIGNED_CLIENT_HEADERS = frozenset({"content-type", "content-md5"})
_SET_BY_SIGNET = frozenset(
    h.lower() for h in (HOST, AUTHORIZATION, DATE_HEADER, TOKEN_HEADER, CONTENT_SHA256_HEADER)
)

ROLE_ARN_ENV = "AWS_ROLE_ARN"
TOKEN_FILE_ENV = "AWS_WEB_IDENTITY_TOKEN_FILE"
SESSION_NAME_ENV = "AWS_ROLE_SESSION_NAME"

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    """One set of AWS credentials; the secret parts never show themselves."""

    access_key_id: str
    secret_access_key: Secret
    session_token: Secret | None = None


# --------------------------------------------------------------------------- options


class AwsSigV4Options(SchemeOptions):
    scheme: Literal["aws-sigv4"]
    region: str = Field(description="AWS region of the endpoint, e.g. eu-west-1.")
    service: str = Field(description="The service's signing name: s3, execute-api, dynamodb, sqs, ...")
    access_key_id: str | Secret | None = Field(None, description="Static credentials: the access key id.")
    secret_access_key: Secret | None = Field(
        None, description="Static credentials: the secret access key (a secret reference)."
    )
    session_token: Secret | None = Field(
        None, description="Temporary credentials: the session token, sent as X-Amz-Security-Token."
    )
    credentials: Literal["web-identity"] | None = Field(
        None,
        description=(
            "'web-identity': assume AWS_ROLE_ARN with the token in AWS_WEB_IDENTITY_TOKEN_FILE (EKS IRSA) "
            "instead of static keys."
        ),
    )
    sts_endpoint: str | None = Field(
        None, description="STS endpoint for web identity; default https://sts.<region>.amazonaws.com/."
    )
    payload: Literal["signed", "unsigned"] = Field(
        "signed",
        description=(
            "'signed' (SHA-256 of the body) or 'unsigned' (UNSIGNED-PAYLOAD: the body streams, no size "
            "limit; S3 over HTTPS)."
        ),
    )

    @field_validator("region", "service")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("must be lowercase letters, digits and '-' (e.g. us-east-1, s3)")
        return v

    @field_validator("access_key_id", "secret_access_key", "session_token")
    @classmethod
    def _usable(cls, v: str | Secret | None) -> str | Secret | None:
        if v is not None:
            problem = value_problem(reveal(v))
            if problem:
                raise ValueError(problem)
        return v

    @field_validator("sts_endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            url = URL(v)
        except (ValueError, TypeError):
            raise ValueError("must be an http(s) URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an absolute http:// or https:// URL")
        return v

    @model_validator(mode="after")
    def _one_credential_source(self) -> AwsSigV4Options:
        keys = [
            n
            for n in ("access_key_id", "secret_access_key", "session_token")
            if getattr(self, n) is not None
        ]
        if self.credentials == "web-identity":
            if keys:
                raise ValueError(
                    f"credentials: web-identity cannot be combined with {', '.join(keys)}"
                )
            missing = [n for n in (ROLE_ARN_ENV, TOKEN_FILE_ENV) if not os.environ.get(n)]
            if missing:
                raise ValueError(
                    f"credentials: web-identity needs the environment variable(s) "
                    f"{', '.join(missing)} (set by EKS for a service account with a role)"
                )
        else:
            if self.access_key_id is None or self.secret_access_key is None:
                raise ValueError(
                    "needs access_key_id and secret_access_key, or credentials: web-identity"
                )
            if self.sts_endpoint is not None:
                raise ValueError("sts_endpoint is only used with credentials: web-identity")
        return self


# --------------------------------------------------------------------------- canonical forms


def _aws_encode(raw: str) -> str:
    """A raw (percent-encoded) component in AWS's canonical encoding."""
    if all(ch in _UNRESERVED for ch in raw):
        return raw  # the common case: nothing to decode or encode
    data = unquote_to_bytes(raw.encode("utf-8", "surrogateescape"))
    return quote(data, safe="-_.~")


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4 plus AWS's removal of empty segments (botocore's rule)."""
    out: list[str] = []
    for seg in path.split("/"):
        if seg == "..":
            if out:
                out.pop()
        elif seg and seg != ".":
            out.append(seg)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and out else ""
    return first + "/".join(out) + last


def canonical_uri(raw_path: str, *, s3: bool) -> str:
    """The CanonicalURI: encoded once for ``s3``, normalised and encoded twice otherwise."""
    once = "/".join(_aws_encode(seg) for seg in raw_path.split("/"))
    if s3:
        return once or "/"
    return quote(_remove_dot_segments(once), safe="/~") or "/"


def canonical_query(raw_query: str) -> str:
    """The CanonicalQueryString: pairs AWS-encoded, sorted by name then value."""
    if not raw_query:
        return ""
    pairs = []
    for part in raw_query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((_aws_encode(name), _aws_encode(value)))
    pairs.sort()
    return "&".join(f"{k}={v}" for k, v in pairs)


def _trimall(value: str) -> str:
    return " ".join(value.split())


def _host_header(scheme_host: str) -> str:
    """The ``Host`` value for an origin, as botocore and aiohttp derive it."""
    url = URL(scheme_host)
    host = url.raw_host or ""
    if ":" in host:
        host = f"[{host}]"
    if url.port is not None and not url.is_default_port():
        host = f"{host}:{url.port}"
    return host


def _payload_sha256(request: UpstreamRequest) -> str:
    """Hex SHA-256 of the body: the one place the payload digest comes from.

    For a body spooled to disk it was computed as the bytes arrived (the
    scheme declares ``body_digests``), so signing never reads the file.
    """
    body = request.body
    return body_digest(body, "sha256") if body else EMPTY_SHA256


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    """kSigning = HMAC chain over date, region, service and ``aws4_request``."""
    k = _hmac(f"AWS4{secret_access_key}".encode(), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


# --------------------------------------------------------------------------- scheme


@register
class AwsSigV4(AuthScheme):
    name = "aws-sigv4"
    Options = AwsSigV4Options
    needs_body = True  # per instance: False with payload: unsigned (the body streams)
    body_digests = frozenset({"sha256"})  # computed while a large body is spooled
    injected_headers = frozenset(
        {AUTHORIZATION, DATE_HEADER, TOKEN_HEADER, CONTENT_SHA256_HEADER}
    )

    def __init__(self, options: AwsSigV4Options, context: SchemeContext) -> None:
        super().__init__(options, context)
        self.region = options.region
        self.service = options.service
        self.s3 = options.service == "s3"
        self.unsigned = options.payload == "unsigned"
        self.needs_body = not self.unsigned
        self._scope_tail = f"/{self.region}/{self.service}/aws4_request"
        self._key_cache: tuple[str, Secret, bytes] | None = None
        self._host_cache: tuple[str, str] = ("", "")
        self.static: AwsCredentials | None = None
        self.web_identity: Any = None  # proxy.auth.aws_sts.WebIdentity
        if options.credentials == "web-identity":
            from proxy.auth.aws_sts import WebIdentity

            self.web_identity = WebIdentity(options, context)
            self.placeholder_result = self._placeholder
        else:
            assert options.access_key_id is not None and options.secret_access_key is not None
            self.static = AwsCredentials(
                reveal(options.access_key_id), options.secret_access_key, options.session_token
            )

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        if self.web_identity is not None:
            await self.web_identity.start()

    async def close(self) -> None:
        if self.web_identity is not None:
            await self.web_identity.close()

    def secret_values(self) -> Iterable[str]:
        yield from super().secret_values()
        if self.web_identity is not None:
            yield from self.web_identity.secret_values()

    # -- the steps, named as botocore names them --------------------------------

    def headers_to_sign(
        self, request: UpstreamRequest, added: dict[str, str]
    ) -> list[tuple[str, str]]:
        """(lowercase name, canonical value) pairs, sorted; repeated names joined with ``,``."""
        grouped: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            lname = name.lower()
            if lname in _SET_BY_SIGNET:
                continue  # Signet sets these itself (the pipeline replaces them)
            if lname.startswith("x-amz-") or lname in SIGNED_CLIENT_HEADERS:
                grouped.setdefault(lname, []).append(_trimall(value))
        for name, value in added.items():
            grouped[name.lower()] = [_trimall(value)]
        return sorted((k, ",".join(v)) for k, v in grouped.items())

    def canonical_request(
        self,
        request: UpstreamRequest,
        signed: list[tuple[str, str]],
        payload_hash: str,
    ) -> str:
        return "\n".join(
            (
                request.method,
                canonical_uri(request.path, s3=self.s3),
                canonical_query(request.query),
                "".join(f"{k}:{v}\n" for k, v in signed),
                ";".join(k for k, _ in signed),
                payload_hash,
            )
        )

    def credential_scope(self, amz_date: str) -> str:
        return amz_date[:8] + self._scope_tail

    def string_to_sign(self, amz_date: str, canonical_request: str) -> str:
        digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
        return f"{ALGORITHM}\n{amz_date}\n{self.credential_scope(amz_date)}\n{digest}"

    def signature(self, string_to_sign: str, amz_date: str, credentials: AwsCredentials) -> str:
        date = amz_date[:8]
        cached = self._key_cache
        if cached is not None and cached[0] == date and cached[1] is credentials.secret_access_key:
            key = cached[2]
        else:
            key = signing_key(
                credentials.secret_access_key.reveal(), date, self.region, self.service
            )
            self._key_cache = (date, credentials.secret_access_key, key)
        return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()

    # -- putting it together ----------------------------------------------------

    def host(self, request: UpstreamRequest) -> str:
        origin, host = self._host_cache
        if origin != request.scheme_host:
            if not request.scheme_host:
                raise ValueError("aws-sigv4 signs the upstream host: UpstreamRequest.scheme_host is empty")
            host = _host_header(request.scheme_host)
            self._host_cache = (request.scheme_host, host)
        return host

    def sign(self, request: UpstreamRequest, credentials: AwsCredentials, now: float) -> AuthResult:
        amz_date = time.strftime(AMZ_DATE_FORMAT, time.gmtime(now))
        payload_hash = UNSIGNED_PAYLOAD if self.unsigned else _payload_sha256(request)
        added = {HOST: self.host(request), DATE_HEADER: amz_date}
        if credentials.session_token is not None:
            added[TOKEN_HEADER] = credentials.session_token.reveal()
        if self.s3 or self.unsigned:
            added[CONTENT_SHA256_HEADER] = payload_hash
        signed = self.headers_to_sign(request, added)
        canonical = self.canonical_request(request, signed, payload_hash)
        to_sign = self.string_to_sign(amz_date, canonical)
        sig = self.signature(to_sign, amz_date, credentials)
        added[AUTHORIZATION] = (
            f"{ALGORITHM} Credential={credentials.access_key_id}/{self.credential_scope(amz_date)}, "
            f"SignedHeaders={';'.join(k for k, _ in signed)}, Signature={sig}"
        )
        return AuthResult(
            headers=added,
            secret_headers=frozenset({TOKEN_HEADER}) if credentials.session_token else frozenset(),
            debug=[("CanonicalRequest", canonical), ("StringToSign", to_sign)],
        )

    async def apply(self, request: UpstreamRequest) -> AuthResult:
        if self.static is not None:
            credentials = self.static
        else:
            credentials = await self.web_identity.credentials()
        return self.sign(request, credentials, self.context.clock.time())

    def _placeholder(self) -> AuthResult:
        """What ``signet sign`` shows without ``--fetch-token`` (no STS call)."""
        return AuthResult(
            headers={AUTHORIZATION: f"{ALGORITHM} <web-identity credentials: add --fetch-token>"}
        )

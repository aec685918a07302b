"""AWS credentials from a web identity token (EKS IRSA), through STS.

``AWS_ROLE_ARN`` and ``AWS_WEB_IDENTITY_TOKEN_FILE`` (and optionally
``AWS_ROLE_SESSION_NAME``) are read as EKS sets them. Each fetch re-reads the
token file (the kubelet rotates it) and calls STS ``AssumeRoleWithWebIdentity``
(query API, form POST, XML answer; the call itself is not signed). When to
fetch is not decided here: a :class:`proxy.tokens.TokenManager` caches the
credentials, renews them ahead of ``Expiration`` in one background task,
shares one in-flight call between concurrent requests and backs off on
failure, exactly as it does for OAuth2 tokens.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from proxy.auth.aws_sigv4 import (
    ROLE_ARN_ENV,
    SESSION_NAME_ENV,
    TOKEN_FILE_ENV,
    AwsCredentials,
    AwsSigV4Options,
)
from proxy.auth.base import SchemeContext
from proxy.log import REDACTOR
from proxy.neterrors import client_error_reason
from proxy.secret import Secret, value_problem
from proxy.tokens import (
    MAX_TOKEN_RESPONSE_BYTES,
    USER_AGENT,
    Token,
    TokenFetchError,
    TokenManager,
    endpoint_name,
    sanitize,
    schedule,
)
from proxy.upstream.egress import aiohttp_proxy

STS_VERSION = "2011-06-15"
REFRESH_BEFORE = 300.0  # seconds; with shorter lives the manager renews at half life


def default_sts_endpoint(region: str) -> str:
    """The regional STS endpoint (``https://sts.<region>.amazonaws.com[.cn]``)."""
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://sts.{region}.{suffix}/"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(root: ET.Element, name: str) -> ET.Element | None:
    for el in root.iter():
        if _local(el.tag) == name:
            return el
    return None


def _text(root: ET.Element, name: str) -> str:
    el = _find(root, name)
    return (el.text or "").strip() if el is not None else ""


def parse_sts_response(
    status: int, body: bytes, *, now: float, obtained_at: float, secrets: Iterable[str] = ()
) -> Token:
    """An ``AssumeRoleWithWebIdentity`` answer as a :class:`Token` carrying :class:`AwsCredentials`."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise TokenFetchError(
            f"STS answered HTTP {status} with a body that is not XML", status=status
        ) from None
    if status != 200:
        code = sanitize(_text(root, "Code"), secrets=secrets, limit=60)
        message = sanitize(_text(root, "Message"), secrets=secrets)
        detail = f": {code}" if code else ""
        detail += f" ({message})" if message else ""
        raise TokenFetchError(f"STS answered HTTP {status}{detail}", status=status)
    creds = _find(root, "Credentials")
    if creds is None:
        raise TokenFetchError("STS answered HTTP 200 without Credentials", status=status)
    values = {n: _text(creds, n) for n in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")}
    for name in ("AccessKeyId", "SecretAccessKey", "SessionToken"):
        problem = value_problem(values[name])
        if problem:
            raise TokenFetchError(f"STS answered credentials whose {name} {problem}", status=status)
    try:
        when = datetime.fromisoformat(values["Expiration"])
        expiration = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    except ValueError:
        raise TokenFetchError("STS answered credentials without a valid Expiration", status=status) from None
    expires_in = expiration - now
    if expires_in <= 0:
        raise TokenFetchError("STS answered credentials that have already expired", status=status)
    refresh_at, expires_at = schedule(expires_in, obtained_at=obtained_at, refresh_before=REFRESH_BEFORE)
    return Token(
        access_token=values["SessionToken"],
        expires_in=expires_in,
        obtained_at=obtained_at,
        refresh_at=refresh_at,
        expires_at=expires_at,
        token_type="AWS",
        status=status,
        payload=AwsCredentials(
            values["AccessKeyId"], Secret(values["SecretAccessKey"]), Secret(values["SessionToken"])
        ),
    )


class WebIdentity:
    """Temporary AWS credentials for one route: STS calls plus the shared token manager."""

    def __init__(self, options: AwsSigV4Options, context: SchemeContext) -> None:
        self.context = context
        self.region = options.region
        self.endpoint = options.sts_endpoint or default_sts_endpoint(options.region)
        self.role_arn = os.environ.get(ROLE_ARN_ENV, "")
        self.token_file = os.environ.get(TOKEN_FILE_ENV, "")
        self.session_name = os.environ.get(SESSION_NAME_ENV) or ""
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._recent: deque[str] = deque(maxlen=8)  # secret keys and web identity tokens
        self.tokens = TokenManager(
            route=context.route,
            key=(context.route, "aws-web-identity", self.endpoint, self.role_arn),
            fetch=self.fetch,
            clock=context.clock,
            metrics=context.metrics,
        )

    async def start(self) -> None:
        if self._session is None or self._session.closed:
            self._closed = False
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=self.context.connect_timeout + self.context.read_timeout,
                    sock_connect=self.context.connect_timeout,
                    sock_read=self.context.read_timeout,
                ),
                trust_env=False,
            )

    async def close(self) -> None:
        self._closed = True
        await self.tokens.close()
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
        REDACTOR.set_dynamic(self, ())

    async def credentials(self) -> AwsCredentials:
        token = await self.tokens.get()
        creds: AwsCredentials = token.payload
        return creds

    def secret_values(self) -> Iterable[str]:
        yield from self._recent
        yield from self.tokens.recent_tokens()

    def _remember(self, value: str) -> None:
        if value not in self._recent:
            self._recent.append(value)
            REDACTOR.set_dynamic(self, self._recent)

    def _read_token_file(self) -> str:
        try:
            token = Path(self.token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            reason = getattr(e, "strerror", None) or type(e).__name__
            raise TokenFetchError(
                f"cannot read the web identity token file {self.token_file}: {reason}"
            ) from None
        problem = value_problem(token)
        if problem:
            raise TokenFetchError(f"the web identity token file {self.token_file} {problem}")
        return token

    async def fetch(self) -> Token:
        """One ``AssumeRoleWithWebIdentity`` call (the token manager decides when)."""
        if self._closed:
            raise TokenFetchError("STS client is closed (the config was replaced)")
        if self._session is None:
            await self.start()
        assert self._session is not None
        web_token = self._read_token_file()  # re-read every time: the kubelet rotates it
        self._remember(web_token)
        clock = self.context.clock
        body = urlencode(
            {
                "Action": "AssumeRoleWithWebIdentity",
                "Version": STS_VERSION,
                "RoleArn": self.role_arn,
                "RoleSessionName": self.session_name or f"signet-{int(clock.time())}",
                "WebIdentityToken": web_token,
            }
        )
        headers = {
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "Accept": "text/xml",
            "User-Agent": USER_AGENT,
        }
        obtained_at = clock.monotonic()
        where = endpoint_name(self.endpoint)
        try:
            async with self._session.post(
                self.endpoint,
                data=body.encode("ascii"),
                headers=headers,
                allow_redirects=False,
                ssl=True if self.context.ssl is None else self.context.ssl,
                proxy=aiohttp_proxy(self.context.egress),  # the route's egress proxy, as for OAuth2
            ) as resp:
                status = resp.status
                raw = bytearray()
                async for chunk in resp.content.iter_chunked(65536):
                    raw += chunk
                    if len(raw) > MAX_TOKEN_RESPONSE_BYTES:
                        raise TokenFetchError(
                            f"STS answered HTTP {status} with more than {MAX_TOKEN_RESPONSE_BYTES} bytes",
                            status=status,
                        )
        except TokenFetchError:
            raise
        except aiohttp.ConnectionTimeoutError:
            raise TokenFetchError(f"cannot connect to STS endpoint {where}: connect timeout") from None
        except (aiohttp.SocketTimeoutError, TimeoutError):
            raise TokenFetchError(f"STS endpoint {where} timed out") from None
        except aiohttp.ClientError as e:
            reason = sanitize(client_error_reason(e), limit=80)
            raise TokenFetchError(f"STS request to {where} failed: {reason}") from None
        except RuntimeError as e:  # session closed underneath us
            raise TokenFetchError(f"STS request to {where} failed: {type(e).__name__}") from None
        token = parse_sts_response(
            status, bytes(raw), now=clock.time(), obtained_at=obtained_at, secrets=[web_token]
        )
        creds: Any = token.payload
        self._remember(creds.secret_access_key.reveal())
        return token

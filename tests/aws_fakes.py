"""Loopback stand-ins for AWS: a service that verifies SigV4 with botocore, and STS.

The service rebuilds what an AWS endpoint sees from the request as received
(raw path and query decoded, then encoded the way an SDK sends them; the
headers named in ``SignedHeaders``; ``X-Amz-Date``) and lets botocore's own
``SigV4Auth``/``S3SigV4Auth`` compute the signature. A mismatch answers 403
``SignatureDoesNotMatch`` with the canonical request and string to sign it
expected, as S3 does. It never calls Signet's signer.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, unquote_to_bytes
from xml.sax.saxutils import escape

from aiohttp import web
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode

AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<ak>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
    r"/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<sig>[0-9a-f]{64})$"
)


@dataclass
class AwsKey:
    secret_key: str
    session_token: str | None = None
    expires_at: float | None = None  # wall time


@dataclass
class AwsState:
    region: str
    service: str
    keys: dict[str, AwsKey] = field(default_factory=dict)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


AWS_STATE = web.AppKey("aws_state", AwsState)
STS_STATE: web.AppKey[Any] = web.AppKey("sts_state")


def _error(status: int, code: str, message: str, **extra: str) -> web.Response:
    parts = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in extra.items())
    body = f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>{parts}</Error>"
    return web.Response(status=status, text=body, content_type="application/xml")


def received_as_sdk_url(raw_path: str) -> str:
    """The raw path as an AWS SDK would have encoded the same segments."""
    return "/".join(
        percent_encode(unquote_to_bytes(seg.encode("utf-8", "surrogateescape")))
        for seg in raw_path.split("/")
    )


def aws_service_app(state: AwsState) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        st = state
        auth = request.headers.get("Authorization", "")
        m = AUTH_RE.match(auth)
        if m is None:
            st.rejected.append("malformed")
            return _error(403, "IncompleteSignature", "Authorization header missing or malformed")
        key = st.keys.get(m["ak"])
        if key is None:
            st.rejected.append("unknown key")
            return _error(403, "InvalidAccessKeyId", "unknown access key id")
        if (m["region"], m["service"]) != (st.region, st.service):
            st.rejected.append("scope")
            return _error(403, "SignatureDoesNotMatch", "wrong credential scope")
        if key.expires_at is not None and time.time() >= key.expires_at:
            st.rejected.append("expired")
            return _error(403, "ExpiredToken", "The security token included in the request is expired")
        if request.headers.get("X-Amz-Security-Token") != key.session_token:
            st.rejected.append("token")
            return _error(403, "InvalidToken", "security token missing or wrong")
        signed = m["signed"].split(";")
        unsigned_amz = [h.lower() for h in request.headers if h.lower().startswith("x-amz-") and h.lower() not in signed]
        if "host" not in signed or unsigned_amz:
            st.rejected.append("signed headers")
            return _error(403, "AccessDenied", f"host and every x-amz-* header must be signed: {unsigned_amz}")
        content_sha = request.headers.get("X-Amz-Content-Sha256")
        if st.service == "s3" and content_sha is None:
            st.rejected.append("no content sha")
            return _error(400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
        if content_sha not in (None, "UNSIGNED-PAYLOAD") and content_sha != hashlib.sha256(body).hexdigest():
            st.rejected.append("content sha mismatch")
            return _error(400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match")

        raw = request.raw_path
        raw_path, _, raw_query = raw.partition("?")
        params = [
            (unquote(k), unquote(v))
            for k, _, v in (piece.partition("=") for piece in raw_query.split("&") if piece)
        ]
        aws_req = AWSRequest(
            method=request.method,
            url=f"http://{request.headers['Host']}{received_as_sdk_url(raw_path)}",
            data=body,
            params=params,
        )
        for name in signed:
            for value in request.headers.getall(name, []):
                aws_req.headers[name] = value
        aws_req.context["timestamp"] = request.headers.get("X-Amz-Date", "")
        creds = Credentials(m["ak"], key.secret_key, key.session_token)
        signer = (S3SigV4Auth if st.service == "s3" else SigV4Auth)(creds, st.service, st.region)
        canonical = signer.canonical_request(aws_req)
        to_sign = signer.string_to_sign(aws_req, canonical)
        expected = signer.signature(to_sign, aws_req)
        if not hmac.compare_digest(expected, m["sig"]):
            st.rejected.append("signature")
            return _error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
                CanonicalRequest=canonical,
                StringToSign=to_sign,
            )
        st.accepted.append(
            {"ak": m["ak"], "path": raw_path, "query": raw_query, "body_len": len(body),
             "headers": dict(request.headers)}
        )
        return web.json_response(
            {"ok": True, "path": raw_path, "query": raw_query,
             "sha256": hashlib.sha256(body).hexdigest(), "len": len(body)}
        )

    app = web.Application(client_max_size=1 << 30)
    app[AWS_STATE] = state
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@dataclass
class StsState:
    """What the STS stand-in expects and what it issued."""

    aws: AwsState
    role_arn: str
    expected_token: Callable[[], str]
    lifetime: int = 3600
    calls: int = 0
    tokens_seen: list[str] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)  # secret keys and session tokens


def sts_app(state: StsState) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        form = dict(parse_qsl((await request.read()).decode(), keep_blank_values=True))
        state.calls += 1
        if form.get("Action") != "AssumeRoleWithWebIdentity" or form.get("Version") != "2011-06-15":
            return _sts_error(400, "InvalidAction", "unsupported action")
        if form.get("RoleArn") != state.role_arn or not form.get("RoleSessionName"):
            return _sts_error(403, "AccessDenied", "role or session name wrong")
        token = form.get("WebIdentityToken", "")
        state.tokens_seen.append(token)
        if token != state.expected_token():
            return _sts_error(400, "InvalidIdentityToken", "The web identity token is not valid")
        ak = "ASIA" + secrets.token_hex(8).upper()
        sk = secrets.token_urlsafe(30)
        session = secrets.token_urlsafe(60)
        expires = int(time.time()) + state.lifetime
        state.aws.keys[ak] = AwsKey(sk, session, float(expires))
        state.issued += [sk, session]
        expiration = datetime.datetime.fromtimestamp(expires, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        xml = (
            '<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            "<AssumeRoleWithWebIdentityResult><Credentials>"
            f"<SessionToken>{session}</SessionToken><SecretAccessKey>{sk}</SecretAccessKey>"
            f"<Expiration>{expiration}</Expiration><AccessKeyId>{ak}</AccessKeyId>"
            "</Credentials><SubjectFromWebIdentityToken>system:serviceaccount:ns:sa</SubjectFromWebIdentityToken>"
            "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
        )
        return web.Response(text=xml, content_type="text/xml")

    app = web.Application()
    app[STS_STATE] = state
    app.router.add_post("/", handle)
    return app


def _sts_error(status: int, code: str, message: str) -> web.Response:
    xml = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{escape(message)}</Message></Error>"
        "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
    )
    return web.Response(status=status, text=xml, content_type="text/xml")

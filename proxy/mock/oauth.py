"""A mock OAuth2 client-credentials token server plus a protected API.

The token endpoint checks a request the way a strict server would (RFC 6749
§2.3.1 client authentication, §4.4 grant, content type and body format,
required vendor fields such as 3PL Central's ``user_login``/``tpl``) and answers
§5.1 tokens or §5.2 errors. Every other path is a protected API that wants
``Authorization: Bearer <issued, unexpired, unrevoked token>``.

Tests drive it through :data:`OAUTH_STATE` (counters, recorded requests,
knobs) or ``POST /__mock/control`` with a JSON object of knobs::

    fail_mode: null | "down" | "invalid_client" | "non_json" | "no_token" | "slow"
    lifetime: seconds        revoke_all: true        reject_next_api: N

3PL Central flavour::

    create_app(client_id=..., client_secret=..., token_path="/AuthServer/api/Token",
               request_format="json", required_fields={"user_login": "guysmiley"})
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from aiohttp import web

from proxy.clock import SYSTEM_CLOCK, Clock

FAIL_MODES = (None, "down", "invalid_client", "non_json", "no_token", "slow")


@dataclass
class RecordedRequest:
    method: str
    raw_path: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class OAuthState:
    client_id: str
    client_secret: str
    client_auth: str = "basic"
    request_format: str = "form"
    required_fields: dict[str, str] = field(default_factory=dict)
    lifetime: float = 3600.0
    token_path: str = "/oauth/token"
    clock: Clock = SYSTEM_CLOCK
    vendor: str = "oauth2"  # named in every API answer
    # counters and records
    token_requests: int = 0
    api_requests: int = 0
    token_calls: list[RecordedRequest] = field(default_factory=list)
    api_calls: list[RecordedRequest] = field(default_factory=list)
    # knobs
    fail_mode: str | None = None
    reject_next_api: int = 0
    slow_seconds: float = 3600.0
    gate: asyncio.Event | None = None  # when set, token answers wait for gate.set()
    # issued tokens: token -> monotonic expiry
    tokens: dict[str, float] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)
    issued: list[str] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def revoke_all(self) -> None:
        self.revoked.update(self.tokens)

    def snapshot(self) -> dict[str, Any]:
        return {
            "token_requests": self.token_requests,
            "api_requests": self.api_requests,
            "fail_mode": self.fail_mode,
            "lifetime": self.lifetime,
            "reject_next_api": self.reject_next_api,
            "tokens_issued": len(self.issued),
        }


OAUTH_STATE = web.AppKey("oauth_state", OAuthState)


def _record(request: web.Request, body: bytes) -> RecordedRequest:
    return RecordedRequest(
        method=request.method,
        raw_path=request.raw_path,
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers],
        body=body,
    )


def _oauth_error(status: int, error: str, description: str, **headers: str) -> web.Response:
    return web.json_response(
        {"error": error, "error_description": description},
        status=status,
        headers={"Cache-Control": "no-store", "Pragma": "no-cache", **headers},
    )


def _eq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


async def _wait_slow(request: web.Request, state: OAuthState) -> None:
    """Never answer in time: wait until the client goes away or the server stops."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + state.slow_seconds
    while loop.time() < deadline and not state.stopping.is_set():
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(0.05)


async def _token(request: web.Request) -> web.StreamResponse:
    state = request.app[OAUTH_STATE]
    body = await request.read()
    state.token_requests += 1
    state.token_calls.append(_record(request, body))
    if state.gate is not None:
        await state.gate.wait()
    if request.method != "POST":
        return _oauth_error(405, "invalid_request", "the token endpoint wants POST", Allow="POST")

    mode = state.fail_mode
    if mode == "slow":
        await _wait_slow(request, state)
        return web.Response(status=503, text="too late")
    if mode == "down":
        return web.Response(status=500, text="internal server error")
    if mode == "invalid_client":
        return _oauth_error(
            401,
            "invalid_client",
            "Client authentication failed",
            **{"WWW-Authenticate": 'Basic realm="mock"'},
        )
    if mode == "non_json":
        return web.Response(
            status=200, content_type="text/html", text="<html><body>Maintenance</body></html>"
        )

    # content type and body
    ctype = request.content_type
    if state.request_format == "json":
        if ctype != "application/json":
            return _oauth_error(
                400, "invalid_request", f"expected application/json, got {ctype or 'none'}"
            )
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return _oauth_error(400, "invalid_request", "body is not valid JSON")
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            return _oauth_error(400, "invalid_request", "body must be a JSON object of strings")
        fields: dict[str, str] = data
    else:
        if ctype != "application/x-www-form-urlencoded":
            return _oauth_error(
                400,
                "invalid_request",
                f"expected application/x-www-form-urlencoded, got {ctype or 'none'}",
            )
        try:
            text = body.decode("ascii")
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
        except (UnicodeDecodeError, ValueError):
            return _oauth_error(400, "invalid_request", "body is not form-urlencoded")
        fields = {}
        for k, v in pairs:
            if k in fields:
                return _oauth_error(400, "invalid_request", f"parameter {k} repeated")
            fields[k] = v

    # client authentication (exactly one method)
    auth = request.headers.get("Authorization")
    in_body = "client_secret" in fields or "client_id" in fields
    challenge = {"WWW-Authenticate": 'Basic realm="mock"'}
    if state.client_auth == "basic":
        if in_body:
            return _oauth_error(
                400, "invalid_request", "client credentials must not be in the body (use Basic)"
            )
        if not auth or not auth.startswith("Basic "):
            return _oauth_error(
                401, "invalid_client", "Basic client authentication required", **challenge
            )
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return _oauth_error(401, "invalid_client", "malformed Basic credentials", **challenge)
        user, sep, password = decoded.partition(":")
        if not sep or not (
            _eq(unquote_plus(user), state.client_id)
            and _eq(unquote_plus(password), state.client_secret)
        ):
            return _oauth_error(401, "invalid_client", "Client authentication failed", **challenge)
    else:
        if auth:
            return _oauth_error(
                400, "invalid_request", "use one client authentication method (body), not a header"
            )
        if not (
            _eq(fields.get("client_id", ""), state.client_id)
            and _eq(fields.get("client_secret", ""), state.client_secret)
        ):
            return _oauth_error(401, "invalid_client", "Client authentication failed")

    grant = fields.get("grant_type")
    if grant is None:
        return _oauth_error(400, "invalid_request", "grant_type is missing")
    if grant != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")
    for name, expected in state.required_fields.items():
        if name not in fields:
            return _oauth_error(400, "invalid_request", f"{name} is missing")
        if not _eq(fields[name], expected):
            return _oauth_error(400, "invalid_grant", f"{name} is not accepted")

    lifetime = state.lifetime
    expires_in = int(lifetime) if float(lifetime).is_integer() else lifetime
    if mode == "no_token":
        answer: dict[str, Any] = {"token_type": "Bearer", "expires_in": expires_in}
    else:
        token = secrets.token_urlsafe(32)
        state.tokens[token] = state.clock.monotonic() + lifetime
        state.issued.append(token)
        answer = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "refresh_token": None,
            "scope": None,
        }
    return web.json_response(answer, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


async def _control(request: web.Request) -> web.Response:
    state = request.app[OAUTH_STATE]
    try:
        knobs = await request.json()
    except ValueError:
        return web.json_response({"error": "body must be JSON"}, status=400)
    if not isinstance(knobs, dict):
        return web.json_response({"error": "body must be a JSON object"}, status=400)
    unknown = set(knobs) - {"fail_mode", "lifetime", "revoke_all", "reject_next_api"}
    if unknown:
        return web.json_response({"error": f"unknown knobs: {sorted(unknown)}"}, status=400)
    if "fail_mode" in knobs:
        if knobs["fail_mode"] not in FAIL_MODES:
            return web.json_response(
                {"error": f"fail_mode must be one of {FAIL_MODES}"}, status=400
            )
        state.fail_mode = knobs["fail_mode"]
    if "lifetime" in knobs:
        state.lifetime = float(knobs["lifetime"])
    if knobs.get("revoke_all"):
        state.revoke_all()
    if "reject_next_api" in knobs:
        state.reject_next_api = int(knobs["reject_next_api"])
    return web.json_response(state.snapshot())


async def _state(request: web.Request) -> web.Response:
    return web.json_response(request.app[OAUTH_STATE].snapshot())


def _unauthorized(reason: str, vendor: str) -> web.Response:
    return web.json_response(
        {"ok": False, "vendor": vendor, "error": reason},
        status=401,
        headers={
            "WWW-Authenticate": f'Bearer realm="mock", error="invalid_token", '
            f'error_description="{reason}"'
        },
    )


async def _api(request: web.Request) -> web.Response:
    state = request.app[OAUTH_STATE]
    body = await request.read()
    state.api_requests += 1
    state.api_calls.append(_record(request, body))
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _unauthorized("missing bearer token", state.vendor)
    token = token.strip()
    expiry = state.tokens.get(token)
    if expiry is None:
        return _unauthorized("unknown token", state.vendor)
    if token in state.revoked:
        return _unauthorized("revoked token", state.vendor)
    if state.clock.monotonic() >= expiry:
        return _unauthorized("expired token", state.vendor)
    if state.reject_next_api > 0:
        state.reject_next_api -= 1
        return _unauthorized("token rejected", state.vendor)
    return web.json_response(
        {
            "ok": True,
            "vendor": state.vendor,
            "method": request.method,
            "path": request.rel_url.raw_path,
            "query": request.rel_url.raw_query_string,
            "body_bytes": len(body),
        }
    )


def create_app(
    *,
    client_id: str,
    client_secret: str,
    client_auth: str = "basic",
    request_format: str = "form",
    required_fields: dict[str, str] | None = None,
    lifetime: float = 3600,
    token_path: str = "/oauth/token",
    clock: Clock = SYSTEM_CLOCK,
    vendor: str = "oauth2",
) -> web.Application:
    """The mock token server and protected API as one aiohttp application."""
    if client_auth not in ("basic", "body"):
        raise ValueError("client_auth must be basic or body")
    if request_format not in ("form", "json"):
        raise ValueError("request_format must be form or json")
    app = web.Application()
    state = OAuthState(
        client_id=client_id,
        client_secret=client_secret,
        client_auth=client_auth,
        request_format=request_format,
        required_fields=dict(required_fields or {}),
        lifetime=float(lifetime),
        token_path=token_path,
        clock=clock,
        vendor=vendor,
    )
    app[OAUTH_STATE] = state

    async def _stop(_app: web.Application) -> None:
        state.stopping.set()
        if state.gate is not None:
            state.gate.set()

    app.on_shutdown.append(_stop)
    app.router.add_route("*", token_path, _token)
    app.router.add_post("/__mock/control", _control)
    app.router.add_get("/__mock/state", _state)
    app.router.add_route("*", "/{tail:.*}", _api)
    return app


def threeplcentral_app(
    *,
    client_id: str,
    client_secret: str,
    user_login: str,
    tpl: str | None = None,
    lifetime: float = 3600,
    clock: Clock = SYSTEM_CLOCK,
) -> web.Application:
    """The 3PL Central flavour: JSON body with ``user_login`` (and ``tpl``), Basic client auth."""
    required = {"user_login": user_login}
    if tpl is not None:
        required["tpl"] = tpl
    return create_app(
        client_id=client_id,
        client_secret=client_secret,
        client_auth="basic",
        request_format="json",
        required_fields=required,
        lifetime=lifetime,
        token_path="/AuthServer/api/Token",
        clock=clock,
        vendor="threeplcentral",
    )

"""Vault auth methods against a real OpenBao: token renewal, AppRole with re-login at max TTL, Kubernetes."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets as pysecrets
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web

from proxy.config import load_config_text_async
from proxy.log import REDACTOR
from proxy.secret import Secret
from proxy.vault import (
    AppRoleAuth,
    KubernetesAuth,
    TokenAuth,
    VaultClient,
    VaultRef,
    VaultSettings,
)
from tests.conftest import secret
from tests.secrets.bao import Bao

READ_POLICY = """
path "secret/data/signet/*" { capabilities = ["read"] }
path "sys/internal/ui/mounts/*" { capabilities = ["read"] }
"""


def fresh() -> str:
    return secret("auth-" + pysecrets.token_hex(16))


async def wait_for(condition: Any, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def test_token_is_renewed_before_it_expires(bao: Bao) -> None:
    value = fresh()
    bao.put("signet/renew", api_key=value)
    token = bao.policy_token("signet-read", READ_POLICY, ttl="2s", renewable=True)
    client = VaultClient(VaultSettings(bao.addr, TokenAuth(Secret(token))))
    try:
        ref = VaultRef.parse("secret/signet/renew#api_key")
        assert await client.read(ref) == value
        await wait_for(lambda: client.renewals >= 3)  # ~1.3 s apart: well past the first 2 s TTL
        assert await client.read(ref) == value  # the token still works: it was extended
        assert client.logins == 1
    finally:
        await client.close()


def enable_approle(bao: Bao, ttl: str, max_ttl: str) -> tuple[str, str]:
    c = bao.client()
    if "approle/" not in c.sys.list_auth_methods()["data"]:
        c.sys.enable_auth_method("approle")
    c.sys.create_or_update_policy("signet-read", READ_POLICY)
    c.auth.approle.create_or_update_approle(
        "signet", token_policies=["signet-read"], token_ttl=ttl, token_max_ttl=max_ttl
    )
    role_id = c.auth.approle.read_role_id("signet")["data"]["role_id"]
    secret_id = c.auth.approle.generate_secret_id("signet")["data"]["secret_id"]
    return secret(role_id), secret(secret_id)


async def test_approle_logs_in_again_at_max_ttl(bao: Bao) -> None:
    value = fresh()
    bao.put("signet/approle", api_key=value)
    role_id, secret_id = enable_approle(bao, ttl="2s", max_ttl="4s")
    client = VaultClient(
        VaultSettings(bao.addr, AppRoleAuth(Secret(role_id), Secret(secret_id)))
    )
    try:
        ref = VaultRef.parse("secret/signet/approle#api_key")
        assert await client.read(ref) == value
        await wait_for(lambda: client.logins >= 2)  # renewals stopped extending: a new login
        assert client.renewals >= 1
        await asyncio.sleep(1.5)  # past the first login's max TTL
        assert await client.read(ref) == value
    finally:
        await client.close()


async def test_approle_from_config(bao: Bao) -> None:
    value = fresh()
    bao.put("signet/approle-config", api_key=value)
    role_id, secret_id = enable_approle(bao, ttl="60s", max_ttl="120s")
    text = f"""
vault:
  address: {bao.addr}
  auth:
    approle: {{role_id: "${{ROLE_ID}}", secret_id: "${{SECRET_ID}}"}}
routes:
  - prefix: /b
    upstream: http://127.0.0.1:9
    auth: {{scheme: bearer, token: "${{vault:secret/signet/approle-config#api_key}}"}}
"""
    settings = await load_config_text_async(
        text, env={"ROLE_ID": role_id, "SECRET_ID": secret_id}
    )
    assert settings.routes[0].auth.token == Secret(value)  # type: ignore[attr-defined]
    assert {role_id, secret_id} <= settings.secret_values


# ------------------------------------------------------------- kubernetes


def fake_jwt(name: str) -> str:
    """A service-account JWT's shape; the TokenReview stand-in, not a signature, decides."""

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    claims = {
        "iss": "kubernetes/serviceaccount",
        "aud": ["vault"],  # a projected token made for Vault (serviceAccountToken.audience)
        "sub": f"system:serviceaccount:signet:{name}",
        "kubernetes.io/serviceaccount/namespace": "signet",
        "kubernetes.io/serviceaccount/service-account.name": name,
        "kubernetes.io/serviceaccount/service-account.uid": "uid-" + name,
        "nonce": pysecrets.token_hex(8),
    }
    return secret(f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.{pysecrets.token_hex(16)}")


class TokenReviewAPI:
    """A loopback stand-in for the Kubernetes API's TokenReview endpoint."""

    def __init__(self, reviewer: str) -> None:
        self.reviewer = reviewer
        self.valid: dict[str, str] = {}  # jwt -> service account name
        self.reviewed: list[str] = []
        self.audiences: list[list[str]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", self.review)
        return app

    async def review(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.reviewer}":
            return web.json_response({"kind": "Status", "code": 401}, status=401)
        body = await request.json()
        token = body["spec"]["token"]
        self.reviewed.append(token)
        self.audiences.append(body["spec"].get("audiences") or [])
        name = self.valid.get(token)
        status: dict[str, Any] = {"authenticated": False}
        if name:
            status = {
                "authenticated": True,
                "user": {
                    "username": f"system:serviceaccount:signet:{name}",
                    "uid": "uid-" + name,
                    "groups": ["system:serviceaccounts", "system:serviceaccounts:signet"],
                },
                "audiences": body["spec"].get("audiences") or [],
            }
        return web.json_response(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status},
            status=201,
        )


async def test_kubernetes_auth_rereads_the_jwt_at_every_login(
    bao: Bao, aiohttp_server: Any, tmp_path: Path
) -> None:
    value = fresh()
    bao.put("signet/k8s", api_key=value)
    api = TokenReviewAPI(reviewer=fake_jwt("vault-reviewer"))
    server = await aiohttp_server(api.app(), host="127.0.0.1")
    c = bao.client()
    if "kubernetes/" not in c.sys.list_auth_methods()["data"]:
        c.sys.enable_auth_method("kubernetes")
    c.write(
        "auth/kubernetes/config",
        kubernetes_host=str(server.make_url("")).rstrip("/"),
        token_reviewer_jwt=api.reviewer,
        disable_local_ca_jwt=True,
        # required by the config API; unused, since the stand-in speaks plain http on loopback
        kubernetes_ca_cert=trustme.CA().cert_pem.bytes().decode(),
    )
    c.sys.create_or_update_policy("signet-read", READ_POLICY)
    c.write(
        "auth/kubernetes/role/signet",
        bound_service_account_names=["signet"],
        bound_service_account_namespaces=["signet"],
        audience="vault",
        token_policies=["signet-read"],
        token_ttl="60s",
    )
    first, second = fake_jwt("signet"), fake_jwt("signet")
    api.valid = {first: "signet", second: "signet"}
    jwt_file = tmp_path / "token"
    jwt_file.write_text(first)

    text = f"""
vault:
  address: {bao.addr}
  auth:
    kubernetes: {{role: signet, jwt_file: {jwt_file}}}
routes:
  - prefix: /b
    upstream: http://127.0.0.1:9
    auth: {{scheme: bearer, token: "${{vault:secret/signet/k8s#api_key}}"}}
"""
    settings = await load_config_text_async(text, env={})
    assert settings.routes[0].auth.token == Secret(value)  # type: ignore[attr-defined]
    assert api.reviewed == [first]
    assert api.audiences == [["vault"]]

    # kubelet rotated the projected token: the next login reads the new one
    assert settings.vault is not None
    assert isinstance(settings.vault.auth, KubernetesAuth)
    client = VaultClient(settings.vault)
    try:
        await client.token()
        jwt_file.write_text(second + "\n")
        await client.relogin()
        assert api.reviewed[-2:] == [first, second]
        # an unknown JWT is refused, and the error names no token
        api.valid = {}
        jwt_file.write_text(fake_jwt("signet"))
        try:
            await client.relogin()
        except Exception as exc:  # VaultError
            assert "kubernetes login at auth/kubernetes/login failed" in str(exc)
            assert not any(t in str(exc) for t in (first, second, api.reviewer))
        else:
            raise AssertionError("login with an unreviewed JWT succeeded")
    finally:
        await client.close()
    assert REDACTOR is not None


async def test_refresh_denied_keeps_values_and_revoked_token_logs_in_again(
    bao: Bao, upstream: Any
) -> None:
    """Denied by policy: a refresh failure, no login churn. Token revoked: one new login, refresh goes on."""
    from proxy.app import Signet

    value = fresh()
    bao.put("signet/denied", api_key=value)
    role_id, secret_id = enable_approle(bao, ttl="300s", max_ttl="600s")
    text = f"""
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
secret_refresh: 0.2
vault:
  address: {bao.addr}
  auth: {{approle: {{role_id: {role_id}, secret_id: {secret_id}}}}}
routes:
  - prefix: /b
    upstream: {str(upstream.make_url("")).rstrip("/")}
    auth: {{scheme: bearer, token: "${{vault:secret/signet/denied#api_key}}"}}
"""
    app = Signet(await load_config_text_async(text, env={}))
    await app.start()
    try:
        def failures() -> float:
            return app.metrics.registry.get_sample_value("signet_secret_refresh_failures_total") or 0

        assert app.settings.vault is not None
        client = app.vault.get(app.settings.vault)
        await wait_for(lambda: client.logins >= 1)
        # the policy no longer grants the path: refreshes fail, the value stays, no new logins
        bao.client().sys.create_or_update_policy(
            "signet-read", 'path "secret/data/other/*" { capabilities = ["read"] }\n'
        )
        await wait_for(lambda: failures() >= 2)
        assert client.logins == 1
        route = app.runtime.routes[0] if app.runtime else None
        assert route is not None and route.route.auth.token == Secret(value)  # type: ignore[attr-defined]

        # access back, but Signet's token revoked: a 403, then lookup-self fails -> one new login
        bao.client().sys.create_or_update_policy("signet-read", READ_POLICY)
        assert client._login is not None
        bao.client().auth.token.revoke(client._login.token)
        new_value = fresh()
        bao.put("signet/denied", api_key=new_value)
        runtime = app.runtime
        await wait_for(lambda: app.runtime is not runtime)
        assert client.logins == 2
        assert app.runtime is not None
        assert app.runtime.routes[0].route.auth.token == Secret(new_value)  # type: ignore[attr-defined]
    finally:
        await app.stop()

"""``${vault:...}`` references against a real OpenBao: KV v1 and v2, token auth, and every failure `signet check` must name."""

from __future__ import annotations

import os
import secrets as pysecrets
import subprocess
import sys
from pathlib import Path

import hvac
import pytest

from proxy.config import load_config_text, load_config_text_async
from proxy.errors import ConfigError
from proxy.secret import Secret
from tests.conftest import ROOT, no_secret_in, secret
from tests.secrets.bao import Bao, free_port


def vault_config(addr: str, auth: str, key_ref: str, secret_ref: str) -> str:
    return f"""
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
vault:
  address: {addr}
{auth}
routes:
  - name: threecommas
    prefix: /3c
    upstream: http://127.0.0.1:9/api
    auth: {{scheme: threecommas, api_key: "{key_ref}", secret: "{secret_ref}"}}
"""


def token_auth(token: str) -> str:
    return f"  auth: {{token: {token}}}"


def fresh(n: int = 16) -> str:
    return secret("v-" + pysecrets.token_hex(n))


async def test_kv2_and_kv1_references_resolve_with_token_auth(bao: Bao) -> None:
    key, sec = fresh(), fresh()
    bao.put("signet/threecommas", api_key=key)
    bao.put_v1("signet/threecommas", secret=sec)
    text = vault_config(
        bao.addr,
        token_auth(bao.root_token),
        "${vault:secret/signet/threecommas#api_key}",
        "${vault:kv1/signet/threecommas#secret}",
    )
    settings = await load_config_text_async(text, env={})
    auth = settings.routes[0].auth
    assert auth.api_key == Secret(key)  # type: ignore[attr-defined]
    assert auth.secret == Secret(sec)  # type: ignore[attr-defined]
    assert {key, sec} <= settings.secret_values
    assert settings.references["vault:secret/signet/threecommas#api_key"] == key
    assert settings.reference_locations["vault:kv1/signet/threecommas#secret"] == (
        "routes[0].auth.secret",
    )


async def test_vault_token_defaults_to_env_and_address_to_vault_addr(bao: Bao) -> None:
    key = fresh()
    bao.put("signet/env-default", api_key=key)
    text = """
routes:
  - prefix: /3c
    upstream: http://127.0.0.1:9/api
    auth: {scheme: threecommas, api_key: "${vault:secret/signet/env-default#api_key}", secret: s3cr3t-value}
"""
    env = {"VAULT_ADDR": bao.addr, "VAULT_TOKEN": bao.root_token}
    settings = await load_config_text_async(text, env=env)
    assert settings.routes[0].auth.api_key == Secret(key)  # type: ignore[attr-defined]
    assert bao.root_token in settings.secret_values  # the Vault token is masked in logs too


def test_sync_loader_refuses_vault_references_clearly() -> None:
    text = vault_config("http://127.0.0.1:9", token_auth("t"), "${vault:secret/a#b}", "x")
    with pytest.raises(ConfigError) as err:
        load_config_text(text, env={})
    assert "routes[0].auth.api_key" in str(err.value)
    assert "${vault:secret/a#b}" in str(err.value)


async def test_bad_reference_syntax_and_missing_credentials(bao: Bao) -> None:
    text = """
vault: {address: ADDR}
routes:
  - prefix: /3c
    upstream: http://127.0.0.1:9/api
    auth: {scheme: threecommas, api_key: "${vault:secret/a#b}", secret: s3cr3t-value}
""".replace("ADDR", bao.addr)
    with pytest.raises(ConfigError) as err:
        await load_config_text_async(text, env={})
    assert "vault.auth" in str(err.value) and "VAULT_TOKEN" in str(err.value)
    text = vault_config(bao.addr, token_auth(bao.root_token), "${vault:secret/nofield}", "x")
    with pytest.raises(ConfigError) as err:
        await load_config_text_async(text, env={})
    assert "MOUNT/PATH#FIELD" in str(err.value)


def _check(config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNET_", "VAULT_"))}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "proxy", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=ROOT,
        timeout=60,
    )


def test_check_names_every_vault_failure_without_values(bao: Bao, tmp_path: Path) -> None:
    good = fresh()
    bao.put("signet/check", api_key=good)
    reader = bao.policy_token(
        "signet-check",
        'path "secret/data/signet/check" { capabilities = ["read"] }\n'
        'path "sys/internal/ui/mounts/*" { capabilities = ["read"] }\n',
    )
    text = f"""
vault:
  address: {bao.addr}
  auth: {{token: {reader}}}
routes:
  - name: ok
    prefix: /ok
    upstream: http://127.0.0.1:9/api
    auth: {{scheme: threecommas, api_key: "${{vault:secret/signet/check#api_key}}", secret: plain-secret-1}}
  - name: nopath
    prefix: /nopath
    upstream: http://127.0.0.1:9/api
    auth: {{scheme: threecommas, api_key: "${{vault:secret/signet/absent#api_key}}", secret: plain-secret-1}}
  - name: nofield
    prefix: /nofield
    upstream: http://127.0.0.1:9/api
    auth: {{scheme: threecommas, api_key: "${{vault:secret/signet/check#nope}}", secret: plain-secret-1}}
"""
    cfg = tmp_path / "signet.yaml"
    cfg.write_text(text)
    bao.put("signet/absent-but-denied", api_key=fresh())
    r = _check(cfg)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    # nopath: the policy does not grant it, so Vault answers 403 (it never says whether it exists)
    assert "routes[1].auth.api_key" in out and "${vault:secret/signet/absent#api_key}" in out
    assert "permission denied" in out
    assert "routes[2].auth.api_key" in out and "has no field 'nope'" in out
    assert "routes[0]" not in out
    no_secret_in(out)

    # with a token that may read everything, a missing path is reported as missing
    cfg.write_text(text.replace(reader, bao.root_token))
    r = _check(cfg)
    out = r.stdout + r.stderr
    assert r.returncode == 1
    assert "no secret at 'secret/signet/absent'" in out and "routes[1].auth.api_key" in out
    no_secret_in(out)

    # the good route alone passes and prints its line
    ok_only = text.split("  - name: nopath")[0]
    cfg.write_text(ok_only)
    r = _check(cfg)
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout
    assert "secrets: 0 file references and 1 vault reference, re-read every 300 s" in r.stdout
    no_secret_in(r.stdout + r.stderr)


def test_check_reports_unreachable_vault(tmp_path: Path) -> None:
    cfg = tmp_path / "signet.yaml"
    cfg.write_text(
        vault_config(
            f"http://127.0.0.1:{free_port()}",
            token_auth("${file:%s}" % (tmp_path / "tok")),
            "${vault:secret/signet/x#api_key}",
            "${vault:secret/signet/x#secret}",
        )
    )
    (tmp_path / "tok").write_text(secret("tok-" + pysecrets.token_hex(8)) + "\n")
    r = _check(cfg)
    out = r.stdout + r.stderr
    assert r.returncode == 1
    assert "routes[0].auth.api_key" in out and "routes[0].auth.secret" in out
    assert "cannot reach Vault: connection refused" in out
    no_secret_in(out)


def test_check_reports_a_denied_mount_lookup(bao: Bao, tmp_path: Path) -> None:
    """A token with no access under the path: Vault refuses even the mount lookup."""
    bao.put("signet/nomounts", api_key=fresh())
    tok = bao.policy_token("signet-elsewhere", 'path "secret/data/other" { capabilities = ["read"] }\n')
    cfg = tmp_path / "signet.yaml"
    cfg.write_text(
        vault_config(bao.addr, token_auth(tok), "${vault:secret/signet/nomounts#api_key}", "x")
    )
    r = _check(cfg)
    assert r.returncode == 1
    assert "routes[0].auth.api_key" in r.stderr
    assert "${vault:secret/signet/nomounts#api_key}: permission denied" in r.stderr
    no_secret_in(r.stdout + r.stderr)


async def test_ca_file_and_namespace_are_honoured() -> None:
    """An OpenBao with its own CA (-dev-tls), a secret inside a namespace."""
    bao = Bao(tls=True).start()
    try:
        c = bao.client()
        c.adapter.post("/v1/sys/namespaces/team-a")
        team = hvac.Client(
            url=bao.addr, token=bao.root_token, namespace="team-a", verify=str(bao.ca_file)
        )
        team.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
        value = fresh()
        team.secrets.kv.v2.create_or_update_secret("signet/ns", secret={"api_key": value})
        text = f"""
vault:
  address: {bao.addr}
  namespace: team-a
  ca_file: {bao.ca_file}
  auth: {{token: {bao.root_token}}}
routes:
  - prefix: /b
    upstream: http://127.0.0.1:9
    auth: {{scheme: bearer, token: "${{vault:secret/signet/ns#api_key}}"}}
"""
        settings = await load_config_text_async(text, env={})
        assert settings.routes[0].auth.token == Secret(value)  # type: ignore[attr-defined]

        # without the namespace the path does not exist; without the CA, TLS fails
        with pytest.raises(ConfigError, match=r"no secret at|permission denied|no secrets engine"):
            await load_config_text_async(text.replace("  namespace: team-a\n", ""), env={})
        with pytest.raises(ConfigError, match="TLS certificate verification failed"):
            await load_config_text_async(text.replace(f"  ca_file: {bao.ca_file}\n", ""), env={})
    finally:
        bao.stop()

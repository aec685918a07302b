"""`signet check` against a real OpenBao prints its human lines only: the Vault
login it makes is logged at info, below the one-shot commands' default level
(issue 22: a JSON vault_login line appeared among the route lines)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, no_secret_in, secret
from tests.secrets.bao import Bao
from tests.secrets.test_vault_auth import enable_approle


def _check(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNET_", "VAULT_"))}
    return subprocess.run([sys.executable, "-m", "proxy", "check", "--config", str(config), *extra],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)


def test_check_with_vault_references_prints_no_log_lines(bao: Bao, tmp_path: Path) -> None:
    value = secret("check-output-api-key-Tq93")
    bao.put("signet/check-output", api_key=value)
    role_id, secret_id = enable_approle(bao, ttl="1h", max_ttl="2h")
    (tmp_path / "role-id").write_text(role_id)
    (tmp_path / "secret-id").write_text(secret(secret_id))
    config = tmp_path / "signet.yaml"
    config.write_text(f"""
vault:
  address: {bao.addr}
  auth: {{approle: {{role_id: "${{file:{tmp_path / 'role-id'}}}", secret_id: "${{file:{tmp_path / 'secret-id'}}}"}}}}
routes:
  - name: tc
    prefix: /tc
    upstream: http://127.0.0.1:9/api
    auth: {{scheme: bearer, token: "${{vault:secret/signet/check-output#api_key}}"}}
""")
    r = _check(config)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = (r.stdout + r.stderr).splitlines()
    assert lines[0].endswith("ok, 1 route, listen 127.0.0.1:8080, admin 127.0.0.1:9191")
    assert not [line for line in lines if line.lstrip().startswith("{") or "vault_login" in line], lines
    no_secret_in(r.stdout + r.stderr)
    # the login is still there for whoever asks for it
    r = _check(config, "--log-level", "info", "--log-format", "json")
    assert r.returncode == 0 and '"event": "vault_login"' in r.stderr.replace('":"', '": "')

"""``auth_by_client``: one route, each team signed with its own vendor account."""

from __future__ import annotations

import os
import re
import secrets as pysecrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.config import load_config_text
from proxy.errors import ConfigError
from tests.conftest import ROOT, SignetProcess, no_secret_in, secret
from tests.secrets.vendor import RotatingVendor


def fresh() -> str:
    return secret("abc-" + pysecrets.token_hex(16))


def config(upstream: str, team_a: str, team_b: str, accounts: dict[str, str]) -> str:
    return f"""
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
clients:
  - {{name: team-a, token: "{team_a}"}}
  - {{name: team-b, token: "{team_b}"}}
routes:
  - name: threecommas
    prefix: /3c
    upstream: {upstream}/public/api
    auth: {{scheme: threecommas, api_key: "${{A_KEY}}", secret: "${{A_SECRET}}"}}
    auth_by_client:
      team-b: {{scheme: threecommas, api_key: "${{B_KEY}}", secret: "${{file:{accounts['b_file']}}}"}}
"""


async def test_each_client_is_signed_with_its_own_account(
    tmp_path: Path, aiohttp_server: Any, signet_process: Callable[..., SignetProcess]
) -> None:
    a_key, a_sec, b_key, b_sec = fresh(), fresh(), fresh(), fresh()
    team_a, team_b = fresh(), fresh()
    vendor = RotatingVendor({a_key: [a_sec], b_key: [b_sec]})
    server = await aiohttp_server(vendor.app(), host="127.0.0.1")
    b_file = tmp_path / "b-secret"
    b_file.write_text(b_sec + "\n")
    text = config(str(server.make_url("")).rstrip("/"), team_a, team_b, {"b_file": str(b_file)})
    proc = signet_process(text, env={"A_KEY": a_key, "A_SECRET": a_sec, "B_KEY": b_key})

    async with aiohttp.ClientSession() as s:
        for token, expect in ((team_a, a_key), (team_b, b_key), (team_a, a_key)):
            async with s.post(
                proc.proxy_url + "/3c/ver1/deals?limit=1",
                data=b'{"x":1}',
                headers={"Proxy-Authorization": f"Bearer {token}"},
            ) as r:
                assert r.status == 200, await r.text()
            assert vendor.seen[-1].api_key == expect
        async with s.get(proc.admin_url + "/metrics") as r:
            metrics = await r.text()
    assert vendor.rejected == 0

    requests = [e for e in proc.events() if e.get("event") == "request"]
    assert [e["client"] for e in requests] == ["team-a", "team-b", "team-a"]
    assert re.search(r'signet_requests_total\{client="team-b",route="threecommas",status_class="2xx"\} 1\.0', metrics)
    assert re.search(r'signet_requests_total\{client="team-a",route="threecommas",status_class="2xx"\} 2\.0', metrics)

    # signet check says who has their own credentials, and shows no value
    cfg = tmp_path / "check.yaml"
    cfg.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
    env.update({"A_KEY": a_key, "A_SECRET": a_sec, "B_KEY": b_key})
    r2 = subprocess.run(
        [sys.executable, "-m", "proxy", "check", "--config", str(cfg)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
    )
    assert r2.returncode == 0, r2.stderr
    assert "own credentials: team-b (threecommas)" in r2.stdout
    no_secret_in(r2.stdout + r2.stderr)


def test_auth_by_client_names_must_be_known_clients() -> None:
    base = """
clients:
  - {name: team-a, token: aaaaaaaaaaaaaaaaaaaa, routes: [other]}
  - {name: team-b, token: bbbbbbbbbbbbbbbbbbbb}
routes:
  - name: other
    prefix: /o
    upstream: http://127.0.0.1:9
  - name: r
    prefix: /r
    upstream: http://127.0.0.1:9
    auth_by_client:
      team-c: {scheme: bearer, token: cccccccccccc}
      team-a: {scheme: bearer, token: dddddddddddd}
      team-b: {scheme: bearer}
"""
    with pytest.raises(ConfigError) as err:
        load_config_text(base, env={})
    text = str(err.value)
    assert "routes[1].auth_by_client.team-c" in text and "no client named 'team-c'" in text
    assert "routes[1].auth_by_client.team-a" in text and "may not use route 'r'" in text
    assert "routes[1].auth_by_client.team-b.token" in text and "required" in text

    without_clients = """
routes:
  - prefix: /r
    upstream: http://127.0.0.1:9
    auth_by_client: {team-b: {scheme: bearer, token: cccccccccccc}}
"""
    with pytest.raises(ConfigError, match="needs a 'clients' section"):
        load_config_text(without_clients, env={})

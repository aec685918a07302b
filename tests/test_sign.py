"""`signet sign`: the dry run prints what would be sent, with the vendors' published examples."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, secret

TC_SECRET = secret("NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j")
TC_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
QL_SECRET = secret("0d66f4f97239b4530a5ab226eede766657933948c4fdd1ea22e14773c8342ee5")
QL_KEY = "ccae6d912a41bfefd569a77b5cd86603cde92e53cdd45813cba9e5bf080b3734"
BEARER = secret("sign-test-bearer-Kp93Xa")

CONFIG = """
routes:
  - {name: threecommas, prefix: /3commas, upstream: 'https://api.3commas.io', auth: {scheme: threecommas, api_key: '${TC_KEY}', secret: '${TC_SECRET}'}}
  - {name: quicklizard, prefix: /ql, upstream: 'https://api.quicklizard.com', auth: {scheme: quicklizard, api_key: '${QL_KEY}', api_secret: '${QL_SECRET}'}}
  - {name: bearer, prefix: /b, upstream: 'https://b.example/base', auth: {scheme: bearer, token: '${BEARER}'}}
  - {name: apliiq, prefix: /ap, upstream: 'https://api.apliiq.com', auth: {scheme: apliiq, app_id: demo-app, shared_secret: '${TC_SECRET}'}}
  - {name: tpl, prefix: /3pl, upstream: 'https://secure-wms.com', auth: {scheme: threeplcentral, client_id: id, client_secret: '${BEARER}', user_login: u}}
"""


def sign(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    env = {"TC_KEY": TC_KEY, "TC_SECRET": TC_SECRET, "QL_KEY": QL_KEY, "QL_SECRET": QL_SECRET,
           "BEARER": BEARER, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "proxy", "sign", "--config", str(cfg), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT)


def test_threecommas_published_example(tmp_path: Path) -> None:
    out = sign(tmp_path, "POST", "/3commas/public/api/ver1/users/change_mode?mode=paper", "--show-secrets")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "POST https://api.3commas.io/public/api/ver1/users/change_mode?mode=paper"
    assert "Signature: bca8d8c10acfbe8e76c5335d3efbe0a550487170a8bb7aaea0a13efabab55316" in lines
    assert f"Apikey: {TC_KEY}" in lines


def test_quicklizard_published_example_with_pinned_time(tmp_path: Path) -> None:
    out = sign(tmp_path, "GET", "/ql/api/v1/dummy?paramA=1&paramB=2&qts=999", "--time", "1414562585.331")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "GET https://api.quicklizard.com/api/v1/dummy?paramA=1&paramB=2&qts=1414562585331"
    assert "API_DIGEST: 9f910f3354fd28e4d9b54d902ed881c8e5a912337bce02d51d5f24a1755b552d" in lines
    assert QL_SECRET not in out.stdout


def test_secrets_masked_unless_show_secrets(tmp_path: Path) -> None:
    out = sign(tmp_path, "GET", "/b/x?y=1", "-H", "Authorization: Bearer from-client", "-H", "X-Other: 1")
    assert out.returncode == 0, out.stderr
    assert "Authorization: Bearer ***" in out.stdout and BEARER not in out.stdout
    assert "from-client" not in out.stdout and "X-Other: 1" in out.stdout
    assert out.stdout.splitlines()[0] == "GET https://b.example/base/x?y=1"
    shown = sign(tmp_path, "GET", "/b/x", "--show-secrets")
    assert f"Authorization: Bearer {BEARER}" in shown.stdout


def test_apliiq_pinned_nonce_and_body(tmp_path: Path) -> None:
    import base64
    import hashlib
    import hmac

    nonce = "0123456789abcdef0123456789abcdef"
    body = '{"id":1}'
    out = sign(tmp_path, "POST", "/ap/api/Order", "--data", body, "--time", "1700000000", "--nonce", nonce)
    assert out.returncode == 0, out.stderr
    msg = ("demo-app" + "1700000000" + nonce + base64.b64encode(body.encode()).decode()).encode()
    sig = base64.b64encode(hmac.new(TC_SECRET.encode(), msg, hashlib.sha256).digest()).decode()
    assert f"Authorization: x-apliiq-auth 1700000000:{sig}:demo-app:{nonce}" in out.stdout.splitlines()
    assert out.stdout.rstrip().endswith(body)


def test_oauth_route_shows_placeholder_without_fetch(tmp_path: Path) -> None:
    out = sign(tmp_path, "GET", "/3pl/customers/17")
    assert out.returncode == 0, out.stderr
    assert "Authorization: Bearer <token>" in out.stdout


def test_no_route_and_bad_header(tmp_path: Path) -> None:
    out = sign(tmp_path, "GET", "/nowhere")
    assert out.returncode == 1 and "no route" in out.stderr
    out = sign(tmp_path, "GET", "/b/x", "-H", "no-colon")
    assert out.returncode == 2

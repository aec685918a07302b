"""The command line as a new user meets it: --version, check's report, argument errors, --listen."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from proxy.cli import main
from proxy.config import load_config_text
from proxy.errors import ConfigError
from proxy.log import configure_logging
from proxy.workers import run_workers
from tests.conftest import _IN_PROCESS_LOG as SUITE_LOG
from tests.conftest import ROOT, secret

TC_KEY = secret("check-threecommas-key-5Rq")
TC_SECRET = secret("check-threecommas-secret-9Zk")
FILE_SECRET = secret("check-file-secret-Lm3")
HEADER_TOKEN = secret("check-header-token-Pw8")
CLIENT_TOKEN = secret("check-client-token-0123456789")
LITERAL_SECRET = secret("check-literal-bearer-Vb2")

HMAC_BODY = '{method}\\n{path}\\n{body_sha256}'
HMAC_NO_BODY = '{method}\\n{path}\\n{timestamp}'


@pytest.fixture(autouse=True)
def _suite_logging() -> Iterator[None]:
    """main() configures logging onto the captured stderr: give the suite its log back after."""
    yield
    configure_logging("json", "debug", stream=SUITE_LOG)


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "signet.yaml"
    path.write_text(text)
    return str(path)


def _run(argv: list[str], capsys: Any) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_version_comes_from_package_metadata() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "--version"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    assert out.stdout.strip() == f"signet {metadata.version('signet-proxy')}"


def test_check_names_each_secret_reference_never_the_value(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "file-secret"
    secret_file.write_text(FILE_SECRET + "\n")
    path = _write(
        tmp_path,
        f"""
clients:
  - {{name: app, token: "${{CLIENT_TOKEN}}"}}
routes:
  - name: threecommas
    prefix: /3commas
    upstream: https://api.3commas.io
    auth: {{scheme: threecommas, api_key: ${{THREECOMMAS_KEY}}, secret: ${{THREECOMMAS_SECRET}}}}
    set_headers: {{X-Tenant: plain, X-Token: "Token ${{file:{secret_file}}}"}}
  - name: literal
    prefix: /literal
    upstream: https://example.com
    auth: {{scheme: bearer, token: {LITERAL_SECRET}}}
""",
    )
    for name, value in {
        "THREECOMMAS_KEY": TC_KEY,
        "THREECOMMAS_SECRET": TC_SECRET,
        "CLIENT_TOKEN": CLIENT_TOKEN,
    }.items():
        monkeypatch.setenv(name, value)
    code, out, err = _run(["check", "--config", path], capsys)
    assert code == 0, err
    lines = [line.strip() for line in out.splitlines()]
    assert "auth.api_key <- ${THREECOMMAS_KEY}" in lines
    assert "auth.secret <- ${THREECOMMAS_SECRET}" in lines
    assert f"set_headers.X-Token <- ${{file:{secret_file}}}" in lines
    assert "auth.token <- a literal in the config file" in lines
    assert "app.token <- ${CLIENT_TOKEN}" in lines
    assert not any("X-Tenant" in line for line in lines)  # not secret-bearing
    assert "2 routes" in out
    for value in (TC_KEY, TC_SECRET, FILE_SECRET, CLIENT_TOKEN, LITERAL_SECRET):
        assert value not in out + err


def test_references_stay_out_of_the_settings_repr() -> None:
    settings = load_config_text(
        "routes: [{prefix: /a, upstream: 'http://h', auth: {scheme: bearer, token: '${T}'}}]",
        env={"T": HEADER_TOKEN},
    )
    assert settings.reference_texts == {"routes[0].auth.token": ("${T}",)}
    assert "${T}" not in repr(settings) and HEADER_TOKEN not in repr(settings)


@pytest.mark.parametrize(("message", "body"), [(HMAC_BODY, "buffered"), (HMAC_NO_BODY, "streamed")])
def test_check_reports_body_handling_of_the_scheme_instance(
    tmp_path: Path, capsys: Any, message: str, body: str
) -> None:
    """``hmac`` decides per config whether it signs the body; check must say what the runtime does."""
    path = _write(
        tmp_path,
        f"""
routes:
  - name: acme
    prefix: /acme
    upstream: https://api.acme.example
    auth:
      scheme: hmac
      vars: {{secret: not-a-real-secret}}
      message: "{message}"
      key: "{{secret}}"
      headers: {{X-Sig: "{{signature}}"}}
""",
    )
    code, out, _ = _run(["check", "--config", path], capsys)
    assert code == 0
    (route_line,) = [line for line in out.splitlines() if "auth=hmac" in line]
    assert route_line.endswith(f"body={body}")


def test_one_problem_is_singular(tmp_path: Path, capsys: Any) -> None:
    path = _write(tmp_path, "routes: [{prefix: /a, upstream: 'https://host:99999'}]\n")
    code, _, err = _run(["check", "--config", path], capsys)
    assert code == 1
    assert "has 1 problem:" in err
    assert "routes[0].upstream (line 1): not a valid URL: Port out of range 0-65535" in err


def test_admin_listen_errors_name_admin_listen(tmp_path: Path, capsys: Any) -> None:
    path = _write(tmp_path, "routes: [{prefix: /a, upstream: 'http://127.0.0.1:9'}]\n")
    code, _, err = _run(["serve", "--config", path, "--admin-listen", "nonsense"], capsys)
    assert (code, err.split(":")[1].strip()) == (2, "--admin-listen")
    code, _, err = _run(["serve", "--config", path, "--listen", "nonsense"], capsys)
    assert (code, err.split(":")[1].strip()) == (2, "--listen")


def test_every_option_has_help(capsys: Any) -> None:
    for command in ("serve", "check", "sign", "demo"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
        assert "--log-level" in text and "(default " in text.split("--log-level", 1)[1]
        if command == "sign":
            assert "HTTP method" in text and "route prefix included" in text


# ------------------------------------------------------------- --listen safety, one rule

EMPTY_CLIENTS = "clients: []\nroutes: [{prefix: /a, upstream: 'http://127.0.0.1:9'}]\n"


def test_empty_clients_do_not_make_a_public_listen_safe(tmp_path: Path, capsys: Any) -> None:
    """``clients: []`` admits nobody: the config's rule refuses 0.0.0.0, and --listen obeys it too."""
    with pytest.raises(ConfigError):
        load_config_text("listen: 0.0.0.0:0\n" + EMPTY_CLIENTS, env={})
    path = _write(tmp_path, EMPTY_CLIENTS)
    for workers in ("1", "2"):
        code, _, err = _run(
            ["serve", "--config", path, "--listen", "0.0.0.0:0", "--workers", workers], capsys
        )
        assert code == 1 and "--listen" in err and "not loopback" in err
    with pytest.raises(ConfigError, match="--listen"):
        run_workers(path, 2, listen=("0.0.0.0", 0))


# ------------------------------------------------------------------- import graph


def test_nothing_imports_the_command_line() -> None:
    """cli sits on top: workers and demo share proxy.serving with it, never import it back."""
    offenders = []
    for file in sorted((ROOT / "proxy").rglob("*.py")):
        if file.name in ("cli.py", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(file.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if "proxy.cli" in names:
                offenders.append(str(file.relative_to(ROOT)))
    assert offenders == []

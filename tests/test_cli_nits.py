"""What a newcomer tripped over on the command line (issue 22), each fixed and held here:
help text of one-shot commands, a missing default config, YAML syntax errors, a vault
reference without a vault block, --nonce, binary bodies in `signet sign`. The Vault
login line in `signet check` output is in tests/secrets/test_check_output.py."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from proxy.cli import main
from tests.test_cli import _run, _suite_logging, _write  # noqa: F401  (_suite_logging: autouse fixture)

ROUTE = "routes:\n  - {name: up, prefix: /up, upstream: 'http://127.0.0.1:9/api', auth: {scheme: none}}\n"


def _help(command: str, capsys: Any) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_only_serve_and_demo_help_speaks_of_per_request_logging(capsys: Any) -> None:
    for command in ("check", "sign"):
        text = _help(command, capsys)
        assert "per request" not in text and "(default warning)" in text, command
    for command in ("serve", "demo"):
        assert "one line per request" in _help(command, capsys), command


def test_serve_without_a_config_says_how_to_give_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SIGNET_CONFIG"}
    r = subprocess.run([sys.executable, "-m", "proxy", "serve"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "no config file at 'config/signet.yaml'" in r.stderr
    assert "--config PATH" in r.stderr and "$SIGNET_CONFIG" in r.stderr
    env["SIGNET_CONFIG"] = str(tmp_path / "absent.yaml")
    r = subprocess.run([sys.executable, "-m", "proxy", "check"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "(from $SIGNET_CONFIG)" not in r.stderr and "$SIGNET_CONFIG):" in r.stderr


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("listen: 127.0.0.1:8080\nroutes: [a, b\n", 3, "a [list] that is not closed"),
        ("routes:\n  - name: a\n    prefix: /a\n     upstream: http://x\n", 4, "a ':' YAML did not expect"),
        ("routes:\n\t- name: a\n", 2, "indent with spaces"),
    ],
)
def test_a_yaml_syntax_error_gets_one_line_of_signets_own(
    text: str, line: int, words: str, tmp_path: Path, capsys: Any
) -> None:
    code, out, err = _run(["check", "--config", _write(tmp_path, text)], capsys)
    assert code == 1
    [problem] = [x for x in err.splitlines() if "not valid YAML" in x]
    assert f"(line {line}): not valid YAML at column" in problem and words in problem
    assert "[" in problem.split(words, 1)[1]  # PyYAML's own words follow, in brackets


def test_a_vault_reference_without_a_vault_block_points_at_the_reference(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    text = ("listen: 127.0.0.1:8080\nroutes:\n  - name: tc\n    prefix: /tc\n    upstream: https://h\n"
            "    auth: {scheme: bearer, token: '${vault:secret/signet/tc#token}'}\n")
    code, _, err = _run(["check", "--config", _write(tmp_path, text)], capsys)
    assert code == 1
    assert "routes[0].auth.token (line 6): a ${vault:...} reference needs Vault" in err
    assert "vault.address" not in err and "(line 1)" not in err


def test_sign_refuses_a_nonce_that_is_not_32_hex(tmp_path: Path, capsys: Any) -> None:
    path = _write(tmp_path, ROUTE)
    for bad in ("zz", "0" * 31, "A" * 32):
        code, out, err = _run(["sign", "--config", path, "GET", "/up/x", "--nonce", bad], capsys)
        assert (code, out) == (2, "") and "32 lowercase hex" in err
    code, _, _ = _run(["sign", "--config", path, "GET", "/up/x", "--nonce", "0123456789abcdef" * 2], capsys)
    assert code == 0


def test_sign_shows_a_binary_body_as_length_and_sha256(tmp_path: Path, capsys: Any) -> None:
    path = _write(tmp_path, ROUTE)
    blob = bytes(range(256)) * 4
    (tmp_path / "blob.bin").write_bytes(blob)
    code, out, _ = _run(["sign", "--config", path, "POST", "/up/x", "--data", f"@{tmp_path / 'blob.bin'}"], capsys)
    assert code == 0
    assert f"<binary body: 1024 bytes, sha256 {hashlib.sha256(blob).hexdigest()}>" in out
    assert "\x00" not in out and "\ufffd" not in out
    (tmp_path / "text.json").write_text('{"a": 1}\n')
    code, out, _ = _run(["sign", "--config", path, "POST", "/up/x", "--data", f"@{tmp_path / 'text.json'}"], capsys)
    assert code == 0 and out.endswith('{"a": 1}\n\n')  # text stays text



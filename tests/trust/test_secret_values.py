"""Issue 15 gap 10 and issue 14 item 7: a secret that cannot be sent is a config error.

Every value a ``${NAME}`` or ``${file:...}`` reference gives is checked with
``proxy.secret.value_problem`` when the config loads: one error per bad value,
naming the location and the reference, never the value.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config import load_config_text
from proxy.errors import ConfigError
from tests.conftest import ROOT, secret

HALF = secret("stray-newline-secret-4b3a")


def config(auth: Mapping[str, object], **top: object) -> str:
    route = {"name": "tc", "prefix": "/tc", "upstream": "http://127.0.0.1:9/", "auth": auth}
    return yaml.safe_dump({"listen": "127.0.0.1:0", **top, "routes": [route]}, sort_keys=False)


def problems(text: str, env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, env=env)
    out = [f"{p.location}: {p.message}" for p in info.value.problems]
    for value in env.values():
        if value.strip():
            assert value not in str(info.value), "a secret value leaked into a config error"
    return out


TC = {"scheme": "threecommas", "api_key": "${THREECOMMAS_KEY}", "secret": "${THREECOMMAS_SECRET}"}


def test_an_empty_variable_is_one_error_naming_the_reference() -> None:
    got = problems(config(TC), {"THREECOMMAS_KEY": "", "THREECOMMAS_SECRET": "s3"})
    assert got == ["routes[0].auth.api_key: ${THREECOMMAS_KEY} is empty"]


@pytest.mark.parametrize("bad", [f"{HALF}\nrest", f"{HALF}\r\n", f"a\x00{HALF}", f"{HALF}\x7f"])
def test_control_bytes_in_a_variable_are_one_error_never_the_value(bad: str) -> None:
    got = problems(config(TC), {"THREECOMMAS_KEY": "k", "THREECOMMAS_SECRET": bad})
    assert len(got) == 1, got
    assert got[0].startswith("routes[0].auth.secret: ${THREECOMMAS_SECRET} contains a control character")
    assert HALF not in got[0]


def test_a_secret_file_with_a_newline_in_the_middle_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(f"{HALF}\n{HALF}\n")  # the final newline alone is dropped, not the one inside
    auth = {"scheme": "threecommas", "api_key": "k", "secret": f"${{file:{path}}}"}
    got = problems(config(auth), {})
    assert got == [
        f"routes[0].auth.secret: ${{file:{path}}} contains a control character (U+000A), "
        "which cannot be sent in a header"
    ]
    path.write_text(f"{HALF}\n")
    assert load_config_text(config(auth), env={}).routes[0].auth.secret.reveal() == HALF  # type: ignore[attr-defined]


def test_client_tokens_and_set_headers_follow_the_same_rule() -> None:
    text = config(
        {"scheme": "none"},
        clients=[{"name": "app", "token": "${TOK}"}],
    )
    got = problems(text, {"TOK": "x" * 20 + "\n"})
    assert any(p.startswith("clients[0].token: ${TOK} contains a control character") for p in got), got
    route = {
        "name": "h",
        "prefix": "/h",
        "upstream": "http://127.0.0.1:9/",
        "set_headers": {"X-Key": "Key ${HK}"},
    }
    text = yaml.safe_dump({"listen": "127.0.0.1:0", "routes": [route]})
    assert problems(text, {"HK": ""}) == ["routes[0].set_headers.X-Key: ${HK} is empty"]


OAUTH = {
    "scheme": "oauth2-client-credentials",
    "token_url": "http://127.0.0.1:9/token",
    "client_id": "${OAUTH_ID}",
    "client_secret": "${OAUTH_SECRET}",
}


def test_oauth2_missing_variables_are_reported_once_each() -> None:
    got = problems(config(OAUTH), {})
    assert got == [
        "routes[0].auth.client_id: environment variable OAUTH_ID is not set",
        "routes[0].auth.client_secret: environment variable OAUTH_SECRET is not set",
    ]


def test_oauth2_empty_variables_are_one_error_each_naming_the_reference() -> None:
    got = problems(config(OAUTH), {"OAUTH_ID": "", "OAUTH_SECRET": ""})
    assert got == [
        "routes[0].auth.client_id: ${OAUTH_ID} is empty",
        "routes[0].auth.client_secret: ${OAUTH_SECRET} is empty",
    ]


def test_signet_check_refuses_an_unsendable_secret(tmp_path: Path) -> None:
    path = tmp_path / "signet.yaml"
    path.write_text(config(TC))
    env = {"PATH": "/usr/bin:/bin", "THREECOMMAS_KEY": "", "THREECOMMAS_SECRET": f"{HALF}\r\nX-Evil: 1"}
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "routes[0].auth.api_key (line" in out.stderr and "${THREECOMMAS_KEY} is empty" in out.stderr
    assert "${THREECOMMAS_SECRET} contains a control character (U+000D)" in out.stderr
    assert HALF not in out.stdout + out.stderr and "X-Evil" not in out.stdout + out.stderr
    env["THREECOMMAS_KEY"] = "key"
    env["THREECOMMAS_SECRET"] = HALF
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert HALF not in out.stdout + out.stderr


async def test_a_reload_with_an_unsendable_secret_keeps_the_old_config(make_signet: Any) -> None:
    """Values that arrive later (a reload reading the environment or a file again) get the same rule."""
    app = await make_signet(config(TC), env={"THREECOMMAS_KEY": "k", "THREECOMMAS_SECRET": HALF})
    old = app.runtime
    bad = {"THREECOMMAS_KEY": "k", "THREECOMMAS_SECRET": f"{HALF}\nX-Evil: 1"}
    assert await app.reload(lambda: load_config_text(config(TC), env=bad)) is False
    assert app.runtime is old


def test_literal_secret_fields_follow_the_same_rule() -> None:
    auth = {"scheme": "threecommas", "api_key": "k", "secret": f"{HALF}\r\nX-Evil: 1"}
    got = problems(config(auth), {})
    assert got == [
        "routes[0].auth.secret: the value contains a control character (U+000D), "
        "which cannot be sent in a header",
    ]
    assert HALF not in got[0]
    auth["secret"] = ""
    assert problems(config(auth), {}) == ["routes[0].auth.secret: the value is empty"]

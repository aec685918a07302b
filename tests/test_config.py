"""Config loading: every kind of problem, with location and line, never a value."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from proxy.config import load_config, load_config_text
from proxy.errors import ConfigError
from proxy.secret import Secret
from tests.conftest import secret

SECRET = secret("cfg-test-secret-Zq81Lk")


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(textwrap.dedent(text), env=env or {})
    out = [str(p) for p in info.value.problems]
    for line in out:
        assert SECRET not in line
    assert SECRET not in str(info.value)
    return out


def one(text: str, env: dict[str, str] | None = None) -> str:
    found = problems(text, env)
    assert len(found) == 1, found
    return found[0]


def test_contract_example_with_flow_mapping_and_references_loads() -> None:
    # The contract writes `auth: {..., api_key: ${TC_KEY}}`; `{` is YAML syntax there.
    s = load_config_text(
        textwrap.dedent(
            """\
            routes:
              - name: threeclicks
                prefix: /3clicks
                upstream: https://acme.3clicks.example/api-user/v1
                auth: {scheme: bearer, token: ${TC_SECRET}}
                strip_headers: [Cookie]
                set_headers: {Accept: application/json}
            """
        ),
        env={"TC_SECRET": SECRET},
    )
    route = s.routes[0]
    assert isinstance(route.auth.token, Secret)  # type: ignore[attr-defined]
    assert route.auth.token.reveal() == SECRET  # type: ignore[attr-defined]
    assert SECRET not in repr(s) and SECRET not in repr(route) and SECRET not in repr(route.auth)
    assert SECRET in s.secret_values


def test_defaults_and_route_name_default() -> None:
    s = load_config_text("routes: [{prefix: /a/b, upstream: 'http://h:81/x/'}]", env={})
    r = s.routes[0]
    assert r.name == "a-b"
    assert r.upstream_base == "http://h:81/x"
    assert (r.timeout.connect, r.timeout.read, r.max_body_bytes) == (5, 60, 10485760)
    assert s.listen == ("127.0.0.1", 8080) and s.admin_listen == ("127.0.0.1", 9191)
    assert s.shutdown_grace == 10 and r.scheme_cls.name == "none"


def test_route_overrides_defaults() -> None:
    s = load_config_text(
        """
defaults: {timeout: {connect: 2, read: 9}, max_body_bytes: 100}
routes:
  - {prefix: /a, upstream: 'http://h', timeout: {read: 3}, max_body_bytes: 5}
  - {prefix: /b, upstream: 'http://h'}
""",
        env={},
    )
    a, b = s.routes
    assert (a.timeout.connect, a.timeout.read, a.max_body_bytes) == (2, 3, 5)
    assert (b.timeout.connect, b.timeout.read, b.max_body_bytes) == (2, 9, 100)


def test_unknown_key_did_you_mean_with_line() -> None:
    msg = one(
        """\
        routes:
          - prefix: /a
            upstream: http://h
            strip_header: [X]
        """
    )
    assert msg.startswith("routes[0].strip_header (line 4)")
    assert "did you mean 'strip_headers'" in msg


def test_unknown_key_inside_auth_block() -> None:
    msg = one(
        """\
        routes:
          - prefix: /a
            upstream: http://h
            auth:
              scheme: basic
              username: u
              password: p
              pasword: q
        """
    )
    assert msg.startswith("routes[0].auth.pasword (line 8)") and "did you mean 'password'" in msg


def test_unknown_scheme_did_you_mean() -> None:
    msg = one("routes: [{prefix: /a, upstream: 'http://h', auth: {scheme: bearr, token: t}}]")
    assert "routes[0].auth.scheme" in msg and "did you mean 'bearer'" in msg


def test_missing_env_var_names_location_and_variable() -> None:
    msg = one(
        """\
        routes:
          - prefix: /a
            upstream: http://h
            auth: {scheme: bearer, token: ${NOT_SET_ANYWHERE}}
        """
    )
    assert msg == "routes[0].auth.token (line 4): environment variable NOT_SET_ANYWHERE is not set"


def test_unreadable_secret_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    msg = one(
        f"routes: [{{prefix: /a, upstream: 'http://h', auth: {{scheme: bearer, token: '${{file:{missing}}}'}}}}]"
    )
    assert "routes[0].auth.token" in msg and str(missing) in msg and "No such file" in msg


def test_secret_file_trailing_newline_removed(tmp_path: Path) -> None:
    f = tmp_path / "tok"
    f.write_text(SECRET + "\n")
    s = load_config_text(
        f"routes: [{{prefix: /a, upstream: 'http://h', auth: {{scheme: bearer, token: '${{file:{f}}}'}}}}]",
        env={},
    )
    assert s.routes[0].auth.token.reveal() == SECRET  # type: ignore[attr-defined]


def test_dollar_dollar_is_literal() -> None:
    s = load_config_text(
        "routes: [{prefix: /a, upstream: 'http://h', set_headers: {X-Lit: '$${HOME}'}}]", env={}
    )
    assert s.routes[0].set_headers["X-Lit"] == "${HOME}"


def test_reference_in_non_secret_field() -> None:
    s = load_config_text(
        "routes: [{prefix: /a, upstream: '${UP}'}]", env={"UP": "http://up.example:81/b"}
    )
    assert str(s.routes[0].upstream) == "http://up.example:81/b"


def test_all_problems_reported_at_once() -> None:
    found = problems(
        """\
        listen: nonsense
        routes:
          - name: a
            prefix: /a
            upstream: ftp://h
            auth: {scheme: bearer, token: ${MISSING_ONE}}
          - name: a
            prefix: /a
            upstream: http://h
        """
    )
    text = "\n".join(found)
    for expected in (
        "listen (line 1)",
        "routes[0].upstream",
        "MISSING_ONE",
        "routes[1].name",
        "routes[1].prefix",
    ):
        assert expected in text, text


def test_bad_prefixes() -> None:
    for bad in ("a", "/a/", "/a?b", "/a/../b", "/a//b", "/a b"):
        msg = one(f"routes: [{{prefix: '{bad}', upstream: 'http://h'}}]")
        assert "routes[0].prefix" in msg


def test_wrong_types_and_values() -> None:
    msg = one("shutdown_grace: soon\nroutes: [{prefix: /a, upstream: 'http://h'}]")
    assert msg.startswith("shutdown_grace (line 1)")
    msg = one("defaults: {timeout: {read: -1}}\nroutes: [{prefix: /a, upstream: 'http://h'}]")
    assert msg.startswith("defaults.timeout.read (line 1)")


def test_no_routes_and_invalid_yaml() -> None:
    assert "routes" in one("listen: 127.0.0.1:1\n")
    msg = one("routes: [\n  {prefix: /a\n")
    assert "not valid YAML" in msg and "line" in msg


def test_duplicate_yaml_key() -> None:
    found = problems("routes: [{prefix: /a, upstream: 'http://h'}]\nroutes: []\n")
    assert "routes (line 2): duplicate key" in found


def test_secret_value_never_in_type_errors() -> None:
    # a secret used where a number is expected: the message must not echo it
    found = problems(
        "shutdown_grace: ${S}\nroutes: [{prefix: /a, upstream: 'http://h'}]", env={"S": SECRET}
    )
    assert found and all(SECRET not in p for p in found)


def test_non_loopback_listen_needs_clients_or_opt_in() -> None:
    msg = one("listen: 0.0.0.0:8080\nroutes: [{prefix: /a, upstream: 'http://h'}]")
    assert "listen" in msg and "clients" in msg and "allow_unauthenticated" in msg
    load_config_text(
        "listen: 0.0.0.0:8080\nallow_unauthenticated: true\nroutes: [{prefix: /a, upstream: 'http://h'}]",
        env={},
    )
    load_config_text("listen: '[::1]:8080'\nroutes: [{prefix: /a, upstream: 'http://h'}]", env={})


def test_clients_validation() -> None:
    found = problems(
        """\
        clients:
          - {name: app, token: short, routes: [a, bb]}
        routes: [{name: a, prefix: /a, upstream: 'http://h'}]
        """
    )
    text = "\n".join(found)
    assert "clients[0].token" in text and "too short" in text
    assert "clients[0].routes[1]" in text and "no route named 'bb'" in text


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.yaml")
    assert "cannot read config file" in str(info.value)


def test_example_config_is_valid() -> None:
    root = Path(__file__).resolve().parent.parent
    env = {
        name: f"example-value-{name.lower()}-0123456789"
        for name in _env_names(root / "config" / "signet.yaml")
    }
    s = load_config(root / "config" / "signet.yaml", env=env)
    assert len(s.routes) >= 5


def _env_names(path: Path) -> set[str]:
    import re

    return set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}", path.read_text()))

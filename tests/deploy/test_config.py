"""The sample Signet configs shipped under deploy/: known keys only, no
secret values (every credential is a ``${...}`` reference), and a real load
with the secret files stubbed.

The allowed keys, schemes and credential fields are read from the config
models and the scheme registry, never copied here, so they cannot drift."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from proxy.auth import SCHEMES as REGISTERED
from proxy.config import (
    ClientModel,
    DefaultsModel,
    RouteModel,
    SettingsModel,
    load_config_text,
    route_secret_sources,
)
from proxy.forward_proxy.ca import write_ca
from proxy.secret import Secret

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "deploy").rglob("signet.yaml"))

TOP_KEYS = set(SettingsModel.model_fields)
DEFAULTS_KEYS = set(DefaultsModel.model_fields)
CLIENT_KEYS = set(ClientModel.model_fields)
ROUTE_KEYS = set(RouteModel.model_fields)
SCHEMES = set(REGISTERED)
# auth fields that only hold credentials (typed Secret in their scheme's Options): their
# values must be whole references
SECRET_FIELDS = {
    name
    for cls in REGISTERED.values()
    for name, info in cls.Options.model_fields.items()
    if info.annotation is Secret
}
REFERENCE = re.compile(r"\$\{[^}]+\}")
LOOKS_RANDOM = re.compile(r"[A-Za-z0-9+/=_-]{24,}")


def _strings(value: Any):
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def assert_no_secret_values(config: dict[str, Any]) -> None:
    """Every credential is a whole ${...} reference; nothing token-like is inline."""
    for client in config.get("clients") or []:
        if "token" in client or "cert" not in client:  # a client known by certificate holds no token
            assert REFERENCE.fullmatch(client["token"]), f"client {client['name']}: inline token"
    for route in config.get("routes") or []:
        auth = route.get("auth") or {}
        for key, value in auth.items():
            if key in SECRET_FIELDS:
                assert isinstance(value, str) and REFERENCE.fullmatch(value), (
                    f"route {route.get('name')}: auth.{key} must be a ${{...}} reference"
                )
        for block in ("headers", "vars"):
            for key, value in (auth.get(block) or {}).items():
                assert not LOOKS_RANDOM.search(REFERENCE.sub("", str(value))), (route, key)
    # file paths of listen_tls and certificate identities (SPIFFE URIs) are long but public
    public = {k: v for k, v in config.items() if k not in {"listen_tls", "clients"}}
    public["clients"] = [{k: v for k, v in c.items() if k != "cert"} for c in config.get("clients") or []]
    for text in _strings(public):
        assert not LOOKS_RANDOM.search(REFERENCE.sub("", text)), "token-like literal in config"


def test_schema_is_read_from_the_models() -> None:
    assert {"limits", "routes", "clients"} <= TOP_KEYS and "max_in_flight" in ROUTE_KEYS
    assert {"api_secret", "client_secret", "password", "secret", "token"} <= SECRET_FIELDS
    assert "hmac" in SCHEMES


def test_there_are_sample_configs() -> None:
    names = {p.relative_to(REPO).as_posix() for p in CONFIGS}
    assert {
        "deploy/kubernetes/sidecar/signet.yaml",
        "deploy/kubernetes/shared/signet.yaml",
        "deploy/compose/signet.yaml",
    } <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_config_uses_contract_keys(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    assert set(config) <= TOP_KEYS
    assert set(config.get("defaults") or {}) <= DEFAULTS_KEYS
    route_names = set()
    for client in config.get("clients") or []:
        assert set(client) <= CLIENT_KEYS
    for route in config["routes"]:
        assert set(route) <= ROUTE_KEYS
        assert route["prefix"].startswith("/")
        assert route["upstream"].startswith("https://")
        assert route["auth"]["scheme"] in SCHEMES
        route_names.add(route["name"])
    for client in config.get("clients") or []:
        assert set(client.get("routes") or []) <= route_names
    listen_host = config["listen"].rpartition(":")[0]
    if listen_host not in {"127.0.0.1", "::1", "[::1]", "localhost"}:
        assert config.get("clients"), "a non-loopback listener needs clients"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_config_holds_no_secret_values(path: Path) -> None:
    assert_no_secret_values(yaml.safe_load(path.read_text()))


def test_secret_check_catches_inline_secrets() -> None:
    bad = {
        "routes": [
            {"name": "x", "auth": {"scheme": "bearer", "token": "s3cr3t-value"}},
        ]
    }
    with pytest.raises(AssertionError):
        assert_no_secret_values(bad)


def stub_listen_tls(text: str, tmp_path: Path) -> str:
    """The listen_tls files a pod would mount, made by trustme under tmp_path (Signet loads them)."""
    config = yaml.safe_load(text)
    tls = config.get("listen_tls")
    if not tls:
        return text
    ca = trustme.CA()
    leaf = ca.issue_cert("signet.signet.svc")
    files = {
        tls["cert_file"]: leaf.cert_chain_pems[0].bytes(),
        tls["key_file"]: leaf.private_key_pem.bytes(),
        tls.get("client_ca_file"): ca.cert_pem.bytes(),
    }
    for path, data in files.items():
        if path:
            stub = tmp_path / path.lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_bytes(data)
            text = text.replace(f": {path}", f": {stub}")
    return text


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_config_loads_with_signet(path: Path, tmp_path: Path) -> None:
    """`signet check` equivalent, with every ${file:...} stubbed under tmp_path: every
    secret-bearing field of the loaded config came from a reference."""
    text = path.read_text()
    for ref in re.findall(r"\$\{file:([^}]+)\}", text):
        stub = tmp_path / ref.lstrip("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text(f"stub-{stub.name}\n")
    text = text.replace("${file:/", "${file:" + str(tmp_path) + "/")
    text = stub_listen_tls(text, tmp_path)
    # offline: each ${vault:...} is stubbed by a file (the vault block is still validated)
    for n, ref in enumerate(sorted(set(re.findall(r"\$\{vault:[^}]+\}", text)))):
        stub = tmp_path / f"vault-stub-{n}"
        stub.write_text(f"stub-vault-{n}\n")
        text = text.replace(ref, "${file:" + str(stub) + "}")
    config = yaml.safe_load(text)
    if "forward_proxy" in config:  # a real CA, as `signet ca init` writes it, stands in for the mounted one
        ca = config["forward_proxy"]["ca"]
        cert_file, key_file = write_ca(tmp_path / "signet-ca")
        text = text.replace(ca["cert_file"], str(cert_file)).replace(ca["key_file"], str(key_file))
    settings = load_config_text(text, env={}, source=str(path))
    for i, route in enumerate(settings.routes):
        literal = [f for f, source in route_secret_sources(settings, i) if not source.startswith("${")]
        assert literal == [], f"route {route.name}: secret-bearing fields written inline"

"""deploy/compose.yaml: hardened services, secrets as compose secrets with
*.example templates only, config mounted read-only."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)", value)
    assert match, value
    return int(match[1]) * {"ms": 0.001, "s": 1, "m": 60}[match[2]]


def test_every_service_is_hardened() -> None:
    for name, service in compose()["services"].items():
        assert service.get("read_only") is True, name
        user = str(service.get("user", ""))
        assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), f"{name}: numeric non-root user"
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        image = service.get("image", "")
        assert not image.endswith(":latest"), name


def test_signet_service() -> None:
    doc = compose()
    signet = doc["services"]["signet"]
    assert (DEPLOY / signet["build"]["context"] / signet["build"]["dockerfile"]).is_file()
    assert signet["command"] == ["serve", "--config", "/etc/signet/signet.yaml"]
    mounts = [v.split(":") for v in signet["volumes"]]
    assert [m[1:] for m in mounts] == [["/etc/signet/signet.yaml", "ro"]]
    assert (DEPLOY / mounts[0][0]).is_file()
    assert "9191" in " ".join(signet["healthcheck"]["test"])
    for port in signet.get("ports", []):
        assert port.startswith("127.0.0.1:"), "publish on the host's loopback only"
    config = yaml.safe_load((DEPLOY / mounts[0][0]).read_text())
    assert _seconds(signet["stop_grace_period"]) > config["shutdown_grace"]
    assert doc["services"]["legacy-app"]["depends_on"]["signet"]["condition"] == "service_healthy"


def test_secrets_are_files_with_examples_only() -> None:
    doc = compose()
    config = (DEPLOY / "compose" / "signet.yaml").read_text()
    declared = doc["secrets"]
    used = {s for svc in doc["services"].values() for s in svc.get("secrets", [])}
    assert used == set(declared)
    for spec in declared.values():
        path = DEPLOY / spec["file"]
        assert path.parent == DEPLOY / "compose-secrets"
        example = path.with_name(path.name + ".example")
        assert example.is_file(), f"{example} is missing"
        assert example.read_text().startswith("REPLACE_ME")
    referenced = set(re.findall(r"\$\{file:/run/secrets/([^}]+)\}", config))
    assert referenced and referenced <= set(doc["services"]["signet"]["secrets"])
    ignore = [
        line.strip()
        for line in (DEPLOY / "compose-secrets" / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*" and "!*.example" in ignore

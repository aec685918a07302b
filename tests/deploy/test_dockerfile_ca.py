"""Building behind a TLS-intercepting proxy (docs/deployment.md): the corporate CA
reaches pip only as a BuildKit secret mount, so no layer, ENV or ARG of the image
keeps it."""

from __future__ import annotations

import re

from tests.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instructions() -> list[str]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_every_pip_step_can_take_the_ca_bundle_secret_and_nothing_else_holds_it() -> None:
    pip_runs = [i for i in _instructions() if i.startswith("RUN") and re.search(r"\bpip (install|wheel)\b", i)]
    assert len(pip_runs) == 2  # the wheel build and the install
    for run in pip_runs:
        assert "--mount=type=secret,id=ca_bundle" in run
        assert "PIP_CERT=/run/secrets/ca_bundle" in run and "[ -s /run/secrets/ca_bundle ]" in run
    for inst in _instructions():
        if inst.startswith(("ENV", "ARG", "COPY", "ADD", "LABEL")):
            assert "ca_bundle" not in inst and "PIP_CERT" not in inst, inst


def test_the_deployment_page_shows_the_build_secret_and_podman_format() -> None:
    page = (ROOT / "docs" / "deployment.md").read_text()
    assert "--secret id=ca_bundle,src=" in page
    assert "podman build --format docker" in page

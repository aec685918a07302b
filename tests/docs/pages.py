"""Where the documentation lives, for the tests that hold it to the code.

The README is a front page; the manual is docs/*.md (a mkdocs site). Tests that
check "the documentation says X" read :func:`manual` (README plus every page), or
one page by name.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def pages() -> list[Path]:
    """README.md and every docs page, in a stable order."""
    return [README, *sorted(DOCS.glob("*.md"))]


def page(name: str) -> str:
    return (DOCS / name).read_text()


def manual() -> str:
    """Everything a user can read: the README and every docs page."""
    return "\n".join(path.read_text() for path in pages())

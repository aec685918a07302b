"""The error table (docs/operations.md, "Errors") lists every code Signet answers with (the one SignetError tree)."""

from __future__ import annotations

from pathlib import Path

from proxy import errors

OPERATIONS = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


def _codes() -> dict[str, int]:
    found: dict[str, int] = {}
    todo: list[type] = list(errors.RequestError.__subclasses__())  # the base is no answer
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        code = getattr(cls, "code", None)
        if cls.__module__ == errors.__name__ and isinstance(code, str) and code:
            found[code] = cls.status
    return found


def test_every_error_code_is_in_the_docs_error_table() -> None:
    table = OPERATIONS.read_text().split("## Errors", 1)[1].split("\n## ", 1)[0]
    codes = _codes()
    assert len(codes) >= 12, codes
    missing = [f"{status} {code}" for code, status in codes.items() if f"`{code}`" not in table]
    assert missing == [], missing

"""A string that never shows itself.

Every value that came from a ``${...}`` reference, and every field a scheme
declares secret, is held as a :class:`Secret`. Its ``repr`` and ``str`` are
``***`` so it cannot leak through a log line, an exception or a debugger; code
that really needs the value calls :meth:`Secret.reveal` at the point of use.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel
from pydantic_core import core_schema

MASK = "***"


class Secret:
    """An opaque secret string; ``reveal()`` is the only way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return MASK

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:  # pickling would be a way around the mask
        raise TypeError("Secret values cannot be pickled")

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        """Accept a plain string or a Secret; always store a Secret."""

        def to_secret(value: Any) -> Secret:
            if isinstance(value, Secret):
                return value
            if isinstance(value, str):
                return Secret(value)
            raise ValueError("must be a string")

        return core_schema.no_info_plain_validator_function(
            to_secret,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda v: MASK),
        )


def secret_values_in(value: Any) -> Iterator[str]:
    """Every secret held in ``value``: a Secret, or one inside a model, mapping or sequence."""
    if isinstance(value, Secret):
        yield value.reveal()
    elif isinstance(value, BaseModel):
        for v in value.__dict__.values():
            yield from secret_values_in(v)
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from secret_values_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from secret_values_in(v)


def value_problem(value: str) -> str | None:
    """Why a secret's value cannot be sent, or None when it can.

    One rule for every secret-bearing value, whatever its source (environment,
    file, Vault, a refresh): an empty value is almost always a missing
    variable, and a control byte (a stray CR/LF in the middle of a file) can
    never go in an HTTP header. The answer names the problem, never the value.
    """
    if not value:
        return "is empty"
    for ch in value:
        if (ch < " " and ch != "\t") or ch == "\x7f":
            return f"contains a control character (U+{ord(ch):04X}), which cannot be sent in a header"
    return None


def reveal(value: str | Secret) -> str:
    """The plain text of a value that may or may not be secret."""
    return value.reveal() if isinstance(value, Secret) else value

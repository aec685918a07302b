"""Request target checks and the prefix table.

Kept apart from the pipeline because both are pure functions of strings:
easy to property-test, and the place where a path-traversal bug would live.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Generic, TypeVar
from urllib.parse import unquote

from proxy.errors import BadRequest

T = TypeVar("T")

_SEPARATORS = re.compile(r"[/\\]")


def check_request_target(method: str, raw_target: str) -> tuple[str, str]:
    """Split an origin-form target into raw (path, query) or raise BadRequest.

    Refused: CONNECT, absolute-form (``GET http://host/x``), asterisk-form, and
    any path with a dot-segment however it is spelled: ``..``, ``%2e%2E``,
    double-encoded ``%252e``, or hidden behind an encoded slash/backslash
    (``a%2f..%2fb``), since an upstream may decode any of those.
    """
    if method == "CONNECT":
        raise BadRequest("CONNECT is not supported: Signet is a reverse proxy")
    if not raw_target.startswith("/"):
        raise BadRequest("only origin-form request targets (/path?query) are accepted")
    path, _, query = raw_target.partition("?")
    if "#" in path:
        raise BadRequest("a fragment (#) is not allowed in a request target")
    if has_dot_segment(path):
        raise BadRequest("dot-segments ('..' or '.') are not allowed in the path")
    return path, query


def has_dot_segment(path: str) -> bool:
    if "." not in path and "%" not in path:
        return False
    for segment in path.split("/"):
        decoded = segment
        for _ in range(4):  # decode until stable: catches double and triple encoding
            if any(part in (".", "..") for part in _SEPARATORS.split(decoded)):
                return True
            if "%" not in decoded:
                break
            nxt = unquote(decoded)
            if nxt == decoded:
                break
            decoded = nxt
    return False


class PrefixTable(Generic[T]):
    """Longest prefix wins, matched on a path-segment boundary.

    ``/3clicks`` matches ``/3clicks`` and ``/3clicks/x`` but not ``/3clicksx``.
    """

    def __init__(self, entries: Iterable[tuple[str, T]]) -> None:
        self._entries = sorted(entries, key=lambda e: len(e[0]), reverse=True)

    def match(self, path: str) -> tuple[T, str] | None:
        """The entry for ``path`` and the rest of the path after the prefix."""
        for prefix, value in self._entries:
            if prefix == "/":
                return value, path
            if path.startswith(prefix):
                rest = path[len(prefix) :]
                if not rest or rest[0] == "/":
                    return value, rest
        return None

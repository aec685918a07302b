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


# Rounds of percent-decoding before a segment is given up on: real clients
# encode once (twice at most, through a second proxy); deeper nesting is an attack.
MAX_DECODE_ROUNDS = 8


def check_request_target(method: str, raw_target: str) -> tuple[str, str]:
    """Split an origin-form target into raw (path, query) or raise BadRequest.

    Refused: CONNECT, absolute-form (``GET http://host/x``), asterisk-form,
    ``#`` anywhere (a signed ``?a=1#b`` would be sent as ``?a=1``), control
    bytes, bytes that are not UTF-8, and any path with a dot-segment however it
    is spelled: ``..``, ``%2e%2E``, percent-encoded to any depth (``%2525252e``),
    hidden behind an encoded slash/backslash (``a%2f..%2fb``) or before a
    ``;parameter`` (``..;`` - Tomcat, Jetty and Spring drop ``;params`` before
    they normalise), since an upstream may decode any of those. Raw UTF-8
    (bytes 0x80-0xFF, as curl sends ``?q=ü``) is accepted and kept as it is.
    """
    if method == "CONNECT":
        raise BadRequest("CONNECT is not supported: Signet is a reverse proxy")
    if not raw_target.startswith("/"):
        raise BadRequest("only origin-form request targets (/path?query) are accepted")
    if "#" in raw_target:
        raise BadRequest("'#' is not allowed in a request target (a fragment is never sent)")
    if not raw_target.isascii():
        _check_raw_text(raw_target)
    elif _CONTROL.search(raw_target):
        raise BadRequest("control characters are not allowed in the request target")
    path, _, query = raw_target.partition("?")
    if has_dot_segment(path):
        raise BadRequest("dot-segments ('..' or '.', in any spelling) are not allowed in the path")
    return path, query


_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def _check_raw_text(target: str) -> None:
    """Non-ASCII in a target: raw UTF-8 is fine; invalid UTF-8 and controls are not.

    aiohttp decodes the request line as UTF-8 with ``surrogateescape``, so a
    byte that is not part of valid UTF-8 shows up as a lone surrogate.
    """
    for ch in target:
        if "\udc80" <= ch <= "\udcff":
            raise BadRequest("the request target is not valid UTF-8")
    if _CONTROL.search(target):
        raise BadRequest("control characters are not allowed in the request target")


def has_dot_segment(path: str) -> bool:
    """Whether any segment is '.' or '..' in any spelling (see check_request_target).

    Raises BadRequest when a segment is still changing after
    ``MAX_DECODE_ROUNDS`` rounds of percent-decoding.
    """
    if "." not in path and "%" not in path:
        return False
    for segment in path.split("/"):
        decoded = segment
        for _ in range(MAX_DECODE_ROUNDS):
            if _any_dot_segment(decoded):
                return True
            if "%" not in decoded:
                break
            nxt = unquote(decoded, errors="surrogateescape")
            if nxt == decoded:
                break
            decoded = nxt
        else:
            if _any_dot_segment(decoded):
                return True
            if "%" in decoded and unquote(decoded, errors="surrogateescape") != decoded:
                raise BadRequest(
                    f"the path is percent-encoded more than {MAX_DECODE_ROUNDS} levels deep"
                )
    return False


def _any_dot_segment(decoded: str) -> bool:
    """A dot-segment in one (partly decoded) segment, also before ';' or a decoded slash."""
    return any(part.partition(";")[0] in (".", "..") for part in _SEPARATORS.split(decoded))


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

"""Request target checks and the prefix table.

Kept apart from the pipeline because both are pure functions of strings:
easy to property-test, and the place where a path-traversal bug would live.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Generic, TypeVar

from proxy.errors import BadRequest
from proxy.spellings import MAX_DECODE_ROUNDS, TooDeep, views

T = TypeVar("T")


def check_request_target(method: str, raw_target: str) -> tuple[str, str]:
    """Split an origin-form target into raw (path, query) or raise BadRequest.

    Refused: CONNECT, absolute-form (``GET http://host/x``), asterisk-form,
    ``#`` anywhere (a signed ``?a=1#b`` would be sent as ``?a=1``), control
    bytes, bytes that are not UTF-8, a NUL byte after decoding (``%00``,
    ``%2500``, ``%u0000``, overlong ``%c0%80``; path or query), and any path
    with a dot-segment however it is spelled (:func:`has_dot_segment`), since
    an upstream may decode any of those. Raw UTF-8 (bytes 0x80-0xFF, as curl
    sends ``?q=ü``) is accepted and kept as it is.
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
    found = _path_problem(path)
    if found == _DOT:
        raise BadRequest(
            "dot-segments ('..' or '.', in any spelling: encoded, overlong UTF-8, %u, "
            "full-width, or followed by NUL, tab or space) are not allowed in the path"
        )
    if found == _NUL or _has_nul(query):
        raise BadRequest(_NUL_MESSAGE)
    return path, query


_DOT, _NUL = "dot-segment", "NUL"
_NUL_MESSAGE = "a NUL byte (in any spelling, e.g. %00) is not allowed in the request target"


_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def _check_raw_text(target: str) -> None:
    """Non-ASCII in a target: raw UTF-8 is fine; invalid UTF-8 and controls are not.

    The listener (proxy/server) decodes the target as UTF-8 with ``surrogateescape``, so a
    byte that is not part of valid UTF-8 shows up as a lone surrogate.
    """
    for ch in target:
        if "\udc80" <= ch <= "\udcff":
            raise BadRequest("the request target is not valid UTF-8")
    if _CONTROL.search(target):
        raise BadRequest("control characters are not allowed in the request target")


def has_dot_segment(path: str) -> bool:
    """Whether any segment is '.' or '..' in any spelling (see check_request_target).

    Each raw segment is looked at in every spelling an upstream may read
    (:func:`proxy.spellings.views`: percent-decoded to any depth, ``%uXXXX``,
    overlong UTF-8, full-width dots through NFKC); within each, parts split at
    a decoded ``/`` or ``\\``, cut at ``;`` (``..;`` - Tomcat, Jetty and Spring
    drop ``;params`` before they normalise) and stripped of NUL, whitespace and
    control characters (``..%00``, ``..%09``, ``..%20``: C-string truncation
    and servers that trim) are compared with ``.`` and ``..``. Raises
    BadRequest when a segment is still changing after ``MAX_DECODE_ROUNDS``
    rounds of decoding.
    """
    return _path_problem(path) == _DOT


def _path_problem(path: str) -> str | None:
    """``_DOT`` for a dot-segment, ``_NUL`` for a NUL byte in some reading of the path, or None."""
    if path.isascii() and "." not in path and "%" not in path:
        return None
    nul = False
    for segment in path.split("/"):
        if segment.isascii() and "%" not in segment:
            if _any_dot_segment(segment):  # as sent is all there is to read
                return _DOT
            continue
        try:
            for view in views(segment):
                if _any_dot_segment(view):
                    return _DOT
                nul = nul or "\x00" in view
        except TooDeep:
            raise BadRequest(
                f"the path is percent-encoded more than {MAX_DECODE_ROUNDS} levels deep"
            ) from None
    return _NUL if nul else None


# trimmed before comparing with '.' and '..': NUL, whitespace, other C0 controls, DEL
_TRIMMED = "".join(chr(c) for c in range(0x21)) + "\x7f"


def _any_dot_segment(view: str) -> bool:
    """A dot-segment in one view of a segment, also before ';' or a decoded separator."""
    if "." not in view:
        return False
    return any(
        part.partition(";")[0].strip(_TRIMMED) in (".", "..") for part in _SEPARATORS.split(view)
    )


_SEPARATORS = re.compile(r"[/\\]")


def _has_nul(text: str) -> bool:
    """A NUL byte in some decoding of ``text``.

    Only percent-decoding can make one: the raw text has none (controls are
    refused first), and neither UTF-8 nor NFKC turns a character into NUL.
    """
    if "%" not in text:
        return False
    try:
        return any("\x00" in view for view in views(text))
    except TooDeep:
        raise BadRequest(
            f"the request target is percent-encoded more than {MAX_DECODE_ROUNDS} levels deep"
        ) from None


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

"""Every spelling a server behind Signet might decode a piece of a URL into.

Signet forwards the client's raw bytes, but the application behind the vendor
may decode them: once (Django, Flask, gunicorn), twice (a second proxy), with
IIS's ``%uXXXX``, leniently (overlong UTF-8 such as ``%c0%ae`` for ``.``), or
with a Unicode compatibility mapping (full-width dot U+FF0E and solidus
U+FF0F become ``.`` and ``/``, as NFKC and Windows' best-fit code pages do). A check that
looks at one spelling only is a check a client can walk around, so the target
checks (:mod:`proxy.routes`) and the path globs (:mod:`proxy.policy`) look at
all of them: :func:`views` yields the text as sent and after each round of
decoding, each as readable text.

Pure functions of strings, used only to decide; what is forwarded is always
the client's raw target.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from urllib.parse import unquote_to_bytes

# Rounds of percent-decoding before a piece is given up on: real clients
# encode once (twice at most, through a second proxy); deeper nesting is an attack.
MAX_DECODE_ROUNDS = 8

# '%XX', and IIS's '%uXXXX' (a code point, taken as its UTF-8 bytes)
_PERCENT = re.compile(rb"%(?:[uU]([0-9A-Fa-f]{4})|([0-9A-Fa-f]{2}))")

SEPARATORS = ("/", "\\")


class TooDeep(ValueError):
    """Still changing after ``MAX_DECODE_ROUNDS`` rounds of decoding."""


def views(text: str) -> Iterator[str]:
    """``text`` as sent, then after each round of decoding, each as readable text.

    Each view is lenient UTF-8 (overlong forms decoded to their code point,
    bytes that are no UTF-8 kept as lone surrogates) in NFKC form. The next
    round decodes ``%XX`` and ``%uXXXX`` in the previous view's bytes, so a
    piece encoded to different depths (``%EF%25BC%8F``) is still put together,
    as a server that decodes bytes twice would. Raises :class:`TooDeep` when
    the text is still changing after ``MAX_DECODE_ROUNDS`` rounds.
    """
    if text.isascii() and "%" not in text:
        yield text  # the common case: nothing to decode, NFKC leaves ASCII alone
        return
    view = _readable(text.encode("utf-8", "surrogateescape"))
    yield view
    for _ in range(MAX_DECODE_ROUNDS):
        if "%" not in view:
            return
        data = view.encode("utf-8", "surrogateescape")
        decoded = _decode_round(data)
        if decoded == data:
            return
        view = _readable(decoded)
        yield view
    if "%" in view and _PERCENT.search(view.encode("utf-8", "surrogateescape")):
        raise TooDeep(f"percent-encoded more than {MAX_DECODE_ROUNDS} levels deep")


def _decode_round(data: bytes) -> bytes:
    """``%XX`` and ``%uXXXX`` decoded once; unquote_to_bytes (faster) when there is no ``%u``."""
    if b"%u" in data or b"%U" in data:
        return _PERCENT.sub(_byte_for, data)
    return unquote_to_bytes(data)


def _byte_for(match: re.Match[bytes]) -> bytes:
    code_point, byte = match.groups()
    if byte is not None:
        return bytes((int(byte, 16),))
    return chr(int(code_point, 16)).encode("utf-8", "surrogatepass")


def _readable(data: bytes) -> str:
    """Lenient UTF-8, then NFKC: what a forgiving server reads in ``data``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = _lenient_utf8(data)
    return text if text.isascii() else unicodedata.normalize("NFKC", text)


def _lenient_utf8(data: bytes) -> str:
    """UTF-8 that also accepts overlong forms (``C0 AE`` is '.', ``E0 80 AF`` is '/').

    Old decoders (and Java's modified UTF-8, which writes NUL as ``C0 80``)
    did; a byte that starts no sequence stays a lone surrogate, as with
    ``surrogateescape``, so the next round of decoding still sees it.
    """
    out = []
    i = 0
    n = len(data)
    while i < n:
        lead = data[i]
        length = _sequence_length(lead)
        if length > 1:
            tail = data[i + 1 : i + length]
            if len(tail) == length - 1 and all(0x80 <= b < 0xC0 for b in tail):
                cp = lead & (0x7F >> length)
                for b in tail:
                    cp = (cp << 6) | (b & 0x3F)
                if cp <= 0x10FFFF and not 0xD800 <= cp <= 0xDFFF:
                    out.append(chr(cp))
                    i += length
                    continue
        out.append(chr(lead) if lead < 0x80 else chr(0xDC00 + lead))
        i += 1
    return "".join(out)


def _sequence_length(lead: int) -> int:
    """Bytes in a (possibly overlong, possibly pre-2003 5- or 6-byte) sequence starting with ``lead``."""
    if lead < 0xC0:
        return 1  # ASCII, or a continuation byte out of place
    if lead < 0xE0:
        return 2
    if lead < 0xF0:
        return 3
    if lead < 0xF8:
        return 4
    if lead < 0xFC:
        return 5
    return 6 if lead < 0xFE else 1


def has_separator(piece: str) -> bool:
    """Whether ``piece`` (one raw path segment) holds a separator in any spelling.

    ``/`` and ``\\`` at any depth of encoding (``%2F``, ``%5c``, ``%252F``,
    ``%u002f``, ``%c0%af``), and anything NFKC maps to them (full-width
    solidus U+FF0F and reverse solidus U+FF3C, raw or ``%EF%BC%8F``). A piece too deeply encoded to
    tell counts as holding one.
    """
    if piece.isascii() and "%" not in piece:
        return "\\" in piece or "/" in piece
    try:
        return any("/" in view or "\\" in view for view in views(piece))
    except TooDeep:
        return True

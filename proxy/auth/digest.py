"""Small helpers shared by the signing schemes: time, digests, encodings, query.

Everything here works on bytes and is cheap to call per request; whatever can
be prepared once (a keyed HMAC state, the encoder) is prepared by
:func:`make_signer` when a scheme is built.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterable
from typing import Any, Literal
from urllib.parse import unquote

Algorithm = Literal["sha1", "sha256", "sha512", "md5"]
Encoding = Literal["hex", "HEX", "base64", "base64url"]

ALGORITHMS: dict[str, Callable[..., Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
    "md5": hashlib.md5,
}
ENCODINGS: tuple[str, ...] = ("hex", "HEX", "base64", "base64url")


def unix_ms(t: float) -> int:
    """Unix milliseconds from a float clock reading, rounded (not truncated).

    ``1414562585.331 * 1000`` is ``1414562585330.9998`` in binary floating
    point; rounding gives the intended ``1414562585331``.
    """
    return round(t * 1000)


def unix_times(t: float) -> tuple[int, int]:
    """``(seconds, milliseconds)`` from one clock reading, always consistent.

    Seconds are derived from the rounded milliseconds so that a request that
    carries both never disagrees with itself (and the built-in schemes agree
    with the equivalent recipes to the last digit).
    """
    ms = round(t * 1000)
    return ms // 1000, ms


def unix_seconds(t: float) -> int:
    return round(t * 1000) // 1000


def encode_digest(digest: bytes, encoding: str) -> str:
    """Render raw digest bytes as the recipe ``encoding`` says."""
    if encoding == "hex":
        return digest.hex()
    if encoding == "HEX":
        return digest.hex().upper()
    if encoding == "base64":
        return base64.b64encode(digest).decode("ascii")
    if encoding == "base64url":
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    raise ValueError(f"unknown encoding {encoding!r}")


def make_signer(algorithm: str, encoding: str, key: bytes | None) -> Callable[[bytes], str]:
    """A function ``message -> encoded signature`` with the key already absorbed.

    With a key it is an HMAC whose keyed state is computed once and copied per
    call (saves the two key-pad compressions); without a key a plain digest.
    """
    ctor = ALGORITHMS[algorithm]
    if key is not None:
        base = hmac.new(key, digestmod=ctor)
        if encoding == "hex":

            def sign(message: bytes) -> str:
                h = base.copy()
                h.update(message)
                return h.hexdigest()

            return sign

        def sign_encoded(message: bytes) -> str:
            h = base.copy()
            h.update(message)
            return encode_digest(h.digest(), encoding)

        return sign_encoded

    if encoding == "hex":
        return lambda message: ctor(message).hexdigest()
    return lambda message: encode_digest(ctor(message).digest(), encoding)


def keyed_signer(algorithm: str, encoding: str) -> Callable[[bytes, bytes], str]:
    """A function ``(key, message) -> encoded signature`` for per-request keys."""
    ctor = ALGORITHMS[algorithm]
    if encoding == "hex":
        return lambda key, message: hmac.new(key, message, ctor).hexdigest()
    return lambda key, message: encode_digest(hmac.new(key, message, ctor).digest(), encoding)


def drop_query_params(raw_query: str, names: Iterable[str]) -> str:
    """Remove parameters named ``names`` (compared percent-decoded) from a raw query.

    Same rule as :func:`proxy.auth.base.set_query_params`, without appending:
    the remaining parameters keep their exact bytes and order.
    """
    drop = set(names)
    if not drop or not raw_query:
        return raw_query
    return "&".join(
        part for part in raw_query.split("&") if part and unquote(part.split("=", 1)[0]) not in drop
    )

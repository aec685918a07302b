"""Which client ``x-amz-*`` headers an ``aws-sigv4`` route signs: ``client_amz_headers``.

SigV4 signs every ``x-amz-*`` header, and such a header can change what the
request does (``x-amz-copy-source``, ``x-amz-acl``, ``X-Amz-Target``...), so a
client's is signed only when the route lists it. Used twice: by the pipeline
before the body is read (:mod:`proxy.auth.aws_firewall`), and by the scheme
itself when it signs, so no path to the signer skips the rule.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

from proxy.errors import Forbidden

DEFAULT_CLIENT_AMZ_HEADERS: tuple[str, ...] = (
    "x-amz-meta-*",
    "x-amz-checksum-*",
    "x-amz-storage-class",
    "x-amz-tagging",
)
#: set by the scheme itself; a client's are stripped (never signed, never refused)
SET_BY_SCHEME = frozenset({"x-amz-date", "x-amz-security-token", "x-amz-content-sha256"})
_GLOB = re.compile(r"^x-amz-[a-z0-9!#$%&'*+.^_`|~-]*$")


def amz_glob_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a usable ``client_amz_headers`` glob, or None."""
    low = pattern.lower()
    if not _GLOB.match(low):
        return (
            "must be an x-amz-* header name, optionally with '*' "
            "(e.g. x-amz-meta-*, x-amz-target)"
        )
    if low in SET_BY_SCHEME:
        return f"{pattern} is set by the aws-sigv4 scheme itself (a client's is always stripped)"
    return None


@functools.lru_cache(maxsize=64)
def _compiled(patterns: tuple[str, ...]) -> re.Pattern[str]:
    parts = ("[^ ]*".join(re.escape(p) for p in pat.lower().split("*")) for pat in patterns)
    return re.compile("|".join(f"(?:{p})" for p in parts) or "(?!)")


def forbidden_amz_header(
    headers: Mapping[str, str], patterns: tuple[str, ...], stripped: frozenset[str] = frozenset()
) -> str | None:
    """The first client ``x-amz-*`` header outside ``patterns`` (as the client spelled it), or None.

    ``_`` counts as ``-`` (many servers merge the two spellings), and an
    ``x_amz_*`` spelling is never allowed: it would go upstream unsigned.
    Names in ``stripped`` (the route strips them: never signed) are let be.
    """
    allowed = _compiled(patterns)
    for name in headers:
        low = name.lower()
        if low[:6] not in ("x-amz-", "x_amz_", "x-amz_", "x_amz-"):
            continue
        norm = low.replace("_", "-")
        if norm in SET_BY_SCHEME or norm in stripped:
            continue
        if "_" in low or allowed.fullmatch(norm) is None:
            return name
    return None


def amz_header_refused(name: str, route: str, patterns: tuple[str, ...]) -> Forbidden:
    """The 403 for a client ``x-amz-*`` header the route does not list."""
    return Forbidden(
        f"header {name!r} may not be sent through route {route!r}: SigV4 would sign it "
        f"with the route's key; the route's client_amz_headers allow {', '.join(patterns) or 'none'}",
        route=route,
    )

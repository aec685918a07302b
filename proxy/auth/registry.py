"""Scheme name -> class, like botocore's ``AUTH_TYPE_MAPS``."""

from __future__ import annotations

from proxy.auth.base import AuthScheme

SCHEMES: dict[str, type[AuthScheme]] = {}


def register(cls: type[AuthScheme]) -> type[AuthScheme]:
    """Class decorator: make ``cls`` selectable as ``auth.scheme: <cls.name>``."""
    if cls.name in SCHEMES and SCHEMES[cls.name] is not cls:
        raise ValueError(f"auth scheme {cls.name!r} registered twice")
    SCHEMES[cls.name] = cls
    return cls


def all_injected_headers() -> frozenset[str]:
    """Lower-cased names of every header any registered scheme injects."""
    return frozenset(h.lower() for cls in SCHEMES.values() for h in cls.injected_headers)

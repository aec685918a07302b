"""A generic verifier/echo upstream for the ``none``, ``static``, ``basic`` and ``bearer`` schemes.

401 when an expected header is missing, repeated or different, or when a
forbidden header arrived (e.g. a client's ``Cookie`` or ``Authorization``
that the proxy should have stripped). Expected values are treated as secrets:
never echoed, masked in ``GET /__mock/requests``.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from aiohttp import web

from proxy.mock.common import Reject, header, vendor_app


def create_app(
    *,
    expect_headers: dict[str, str] | None = None,
    forbid_headers: Iterable[str] = (),
    vendor: str = "simple",
) -> web.Application:
    """An upstream wanting exactly ``expect_headers`` and none of ``forbid_headers``."""
    expected = dict(expect_headers or {})
    forbidden = tuple(forbid_headers)

    def verify(request: web.Request, body: bytes) -> None:
        for name, value in expected.items():
            _check(name, header(request, name), value)
        for name in forbidden:
            if name in request.headers:
                raise Reject(f"header {name} must not reach the upstream")

    secrets = [*expected.values(), *(_credential(v) for v in expected.values())]
    return vendor_app(vendor, verify, secrets)


def _credential(value: str) -> str:
    """The part after an auth scheme ('Bearer tok' -> 'tok'), masked on its own too."""
    _, sep, rest = value.partition(" ")
    return rest if sep and len(rest) >= 4 else ""


def _check(name: str, got: str, want: str) -> None:
    if hmac.compare_digest(got.encode(), want.encode()):
        return
    detail = f"received {len(got)} chars, expected {len(want)}"
    got_scheme, want_scheme = got.partition(" ")[0], want.partition(" ")[0]
    if " " in want and " " in got and got_scheme != want_scheme:  # a scheme word is not secret
        detail = f"received scheme {got_scheme[:20]!r}, expected {want_scheme!r}"
    raise Reject(f"header {name} does not have the configured value ({detail})")

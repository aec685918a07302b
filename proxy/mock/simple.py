"""A generic upstream for the ``none``, ``static``, ``basic`` and ``bearer`` schemes."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from aiohttp import web

from proxy.mock.common import Reject, vendor_app


def create_app(
    *, expect_headers: dict[str, str] | None = None, forbid_headers: Iterable[str] = ()
) -> web.Application:
    expected = dict(expect_headers or {})
    forbidden = tuple(forbid_headers)

    def verify(request: web.Request, body: bytes) -> None:
        for name, value in expected.items():
            got = request.headers.get(name)
            if got is None:
                raise Reject(f"missing header {name}")
            if not hmac.compare_digest(got.encode(), value.encode()):
                raise Reject(f"header {name} does not have the expected value")
        for name in forbidden:
            if name in request.headers:
                raise Reject(f"header {name} must not be sent")

    return vendor_app("simple", verify, expected.values())

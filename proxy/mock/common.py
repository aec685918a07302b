"""What every mock vendor shares: recording requests and answering like a vendor.

The mocks are independent verifiers: each computes the expected value from
the raw request with hashlib/hmac/base64 as its vendor's page describes, and
never imports Signet's signers, so a mistake in a signer cannot hide itself.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiohttp import web


@dataclass
class RecordedRequest:
    method: str
    raw_path: str  # path and query exactly as received
    headers: list[tuple[str, str]]  # as received, case and order kept
    body: bytes
    accepted: bool
    reason: str | None


RECORDED = web.AppKey("recorded", list[RecordedRequest])
SECRETS = web.AppKey("secrets", tuple[str, ...])

Verifier = Callable[[web.Request, bytes], str | None]  # None: accepted, else the reason


class Reject(Exception):
    """Raised by a verifier with the precise reason for a 401."""


def raw_headers(request: web.Request) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]


def split_raw(request: web.Request) -> tuple[str, str]:
    path, _, query = request.raw_path.partition("?")
    return path, query


def require(request: web.Request, name: str) -> str:
    value = request.headers.get(name)
    if value is None:
        raise Reject(f"missing header {name}")
    return value


def check_window(ts: float, now: float, window: float, field: str) -> None:
    skew = ts - now
    if abs(skew) > window:
        raise Reject(f"{field} is {skew:+.0f} s from server time; the window is ±{window:.0f} s")


def shorten(value: str, keep: int = 16) -> str:
    return value if len(value) <= keep else value[:keep] + "…"


def vendor_app(
    vendor: str,
    verify: Callable[[web.Request, bytes], Awaitable[None] | None],
    secrets: Iterable[str],
) -> web.Application:
    """A catch-all app that records, verifies and answers like a vendor API."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[RECORDED] = []
    app[SECRETS] = tuple(s for s in secrets if s)

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        reason = None
        try:
            result = verify(request, body)
            if result is not None:
                await result
        except Reject as exc:
            reason = str(exc)
        for s in request.app[SECRETS]:  # a reason must never carry a secret
            if reason and s in reason:
                reason = reason.replace(s, "***")
        path, query = split_raw(request)
        app[RECORDED].append(
            RecordedRequest(
                request.method, request.raw_path, raw_headers(request), body, reason is None, reason
            )
        )
        if reason is not None:
            return web.json_response({"ok": False, "vendor": vendor, "error": reason}, status=401)
        return web.json_response(
            {
                "ok": True,
                "vendor": vendor,
                "method": request.method,
                "path": path,
                "query": query,
                "body_bytes": len(body),
            }
        )

    async def recorded(request: web.Request) -> web.Response:
        masked = request.app[SECRETS]

        def mask(v: str) -> str:
            for s in masked:
                v = v.replace(s, "***")
            return v

        return web.json_response(
            [
                {
                    "method": r.method,
                    "raw_path": r.raw_path,
                    "headers": [[k, mask(v)] for k, v in r.headers],
                    "body_bytes": len(r.body),
                    "accepted": r.accepted,
                    "reason": r.reason,
                }
                for r in request.app[RECORDED]
            ]
        )

    app.router.add_get("/__mock/requests", recorded)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def now_clock() -> float:
    return time.time()

"""What every mock vendor shares: recording requests, precise 401 reasons, the catch-all app.

The mocks are independent verifiers: each one recomputes the expected value
from the raw request (``request.raw_path`` and the body bytes as received)
with hashlib/hmac/base64, following its vendor's page, and never imports
Signet's signers, so a mistake in a signer cannot hide itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass
class RecordedRequest:
    """One request as the mock received it, accepted or not."""

    method: str
    raw_path: str  # path and query exactly as on the request line
    headers: list[tuple[str, str]]  # as received: order, case and duplicates kept (latin-1 decoded)
    body: bytes
    accepted: bool
    reason: str | None  # the 401 reason, None when accepted

    @property
    def path(self) -> str:
        return self.raw_path.partition("?")[0]

    @property
    def query(self) -> str:
        return self.raw_path.partition("?")[2]

    def header_values(self, name: str) -> list[str]:
        """Every value sent under ``name`` (case-insensitive)."""
        return [v for k, v in self.headers if k.lower() == name.lower()]


RECORDED = web.AppKey("recorded", list[RecordedRequest])
SECRETS = web.AppKey("secrets", tuple[str, ...])
VENDOR = web.AppKey("vendor", str)

MOCK_PREFIX = "/__mock/"  # no real vendor API lives here
MAX_SHOWN_BODY = 4096
MAX_RECORDED = 10_000  # a long-running `signet demo` keeps the newest requests only

Verifier = Callable[[web.Request, bytes], None]  # raises Reject with the reason, returns when accepted
_DIGITS = re.compile(r"[0-9]+\Z")


class Reject(Exception):
    """Raised by a verifier with the precise reason for a 401."""


# --------------------------------------------------------------- raw request


def raw_headers(request: web.Request) -> list[tuple[str, str]]:
    """Headers byte for byte (latin-1 maps each byte to one character, so nothing is lost)."""
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]


def split_raw(request: web.Request) -> tuple[str, str]:
    """(path, query) exactly as on the request line, split at the first '?'."""
    path, _, query = request.raw_path.partition("?")
    return path, query


def header(request: web.Request, name: str) -> str:
    """The one value of header ``name``; missing or repeated is a reason to reject.

    A repeated credential header usually means a client's header was forwarded
    next to the one the proxy computed, which a real vendor may resolve either way.
    """
    values = request.headers.getall(name, [])
    if len(values) == 1:
        return values[0]
    if values:
        raise Reject(f"header {name} sent {len(values)} times; send it once")
    raise Reject(f"missing header {name}{_near_miss(request, name)}")


def _near_miss(request: web.Request, name: str) -> str:
    """Point at a header that differs only by '-' vs '_' (e.g. API-KEY for API_KEY)."""
    want = name.lower().replace("-", "_")
    for k in request.headers:
        if k.lower() != name.lower() and k.lower().replace("-", "_") == want:
            return f" (received {k!r}: the name must be exactly {name!r})"
    return ""


def parse_digits(value: str, field: str, unit: str) -> int:
    if not _DIGITS.match(value):
        raise Reject(f"{field} must be Unix {unit} as ASCII digits, received {shorten(value)!r}")
    return int(value)


def check_window(field: str, value: str, ts: float, now: float, window: float) -> None:
    """Reject a timestamp more than ``window`` seconds from the server clock, saying by how much."""
    skew = ts - now
    if abs(skew) > window:
        side = "ahead of" if skew > 0 else "behind"
        seconds = f"{abs(skew):.3f}".rstrip("0").rstrip(".")
        raise Reject(
            f"{field} {value!r} is {seconds} s {side} the server clock; "
            f"the window is ±{window:g} s (stale, future or wrong unit)"
        )


def shorten(value: str, keep: int = 16) -> str:
    return value if len(value) <= keep else value[:keep] + "…"


def matches(candidates: Iterable[tuple[str, str]], received: str) -> str:
    """A hint naming the common mistake whose signature equals what was received, if any."""
    for label, value in candidates:
        if value == received:
            return f"; hint: the received value is what you get {label}"
    return ""


def scrub(text: str, secrets: Iterable[str]) -> str:
    for s in secrets:
        text = text.replace(s, "***")
    return text


# --------------------------------------------------------------------- app


def vendor_app(vendor: str, verify: Verifier, secrets: Iterable[str]) -> web.Application:
    """A catch-all app (any method, any path) that records, verifies and answers like a vendor API.

    ``secrets`` are never shown: they are scrubbed from every reason and from
    ``GET /__mock/requests``, as a last line of defence behind reasons that
    are written not to contain them.
    """
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[RECORDED] = []
    app[VENDOR] = vendor
    # longest first, so a secret containing another is replaced whole
    app[SECRETS] = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        reason: str | None = None
        try:
            verify(request, body)
        except Reject as exc:
            known: tuple[str, ...] = app[SECRETS]
            reason = scrub(str(exc), known)
        seen = RecordedRequest(
            request.method, request.raw_path, raw_headers(request), body, reason is None, reason
        )
        record(app, seen)
        if reason is not None:
            return web.json_response({"ok": False, "vendor": vendor, "error": reason}, status=401)
        path, query = split_raw(request)
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

    app.router.add_get(MOCK_PREFIX + "requests", _list_recorded)
    app.router.add_delete(MOCK_PREFIX + "requests", _clear_recorded)
    app.router.add_route("*", r"/{tail:[\s\S]*}", handle)  # [\s\S]: even a decoded %0A matches
    return app


def record(app: web.Application, request: RecordedRequest) -> None:
    recorded = app[RECORDED]
    recorded.append(request)
    if len(recorded) > MAX_RECORDED:
        del recorded[: len(recorded) - MAX_RECORDED]


def recorded_json(app: web.Application) -> list[dict[str, Any]]:
    """The recorded requests, secrets masked, bodies shown as text up to 4 KiB."""
    secrets = app[SECRETS]
    out = []
    for r in app[RECORDED]:
        text = r.body[:MAX_SHOWN_BODY].decode("utf-8", "replace")
        out.append(
            {
                "method": r.method,
                "raw_path": scrub(r.raw_path, secrets),
                "headers": [[k, scrub(v, secrets)] for k, v in r.headers],
                "body": scrub(text, secrets),
                "body_bytes": len(r.body),
                "accepted": r.accepted,
                "reason": r.reason,
            }
        )
    return out


async def _list_recorded(request: web.Request) -> web.Response:
    return web.json_response(recorded_json(request.app))


async def _clear_recorded(request: web.Request) -> web.Response:
    request.app[RECORDED].clear()
    return web.json_response({"ok": True, "vendor": request.app[VENDOR]})

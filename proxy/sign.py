"""``signet sign``: the exact request Signet would send, without sending it.

It runs the same steps as the pipeline (target check, route match, header
stripping, and :func:`proxy.exchange.prepare`, the pipeline's own signing
step) so what it prints is what goes upstream.
Secret-bearing values are masked unless ``--show-secrets``.
"""

from __future__ import annotations

import hashlib
import uuid

from multidict import CIMultiDict

from proxy.auth import AuthResult, UpstreamRequest
from proxy.clock import SYSTEM_CLOCK, Clock, FrozenClock
from proxy.config import Settings
from proxy.errors import NoRoute
from proxy.exchange import prepare
from proxy.headers import upstream_headers
from proxy.metrics import Metrics
from proxy.routes import check_request_target
from proxy.runtime import Runtime
from proxy.secret import MASK


class PinnedClock:
    """The system clock, with the wall time and/or nonce pinned by the user."""

    def __init__(self, at_time: float | None, nonce: str | None) -> None:
        self._time = at_time
        self._nonce = nonce

    def time(self) -> float:
        return self._time if self._time is not None else SYSTEM_CLOCK.time()

    def monotonic(self) -> float:
        return SYSTEM_CLOCK.monotonic()

    def nonce(self) -> str:
        return self._nonce if self._nonce is not None else SYSTEM_CLOCK.nonce()


async def dry_run(
    settings: Settings,
    method: str,
    target: str,
    *,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    show_secrets: bool = False,
    fetch_token: bool = False,
    at_time: float | None = None,
    nonce: str | None = None,
    clock: Clock | None = None,
) -> str:
    clock = clock or (PinnedClock(at_time, nonce) if (at_time or nonce) else SYSTEM_CLOCK)
    runtime = Runtime(settings, metrics=Metrics(), clock=clock)
    await runtime.start()
    try:
        path, query = check_request_target(method, target)
        matched = runtime.table.match(path)
        if matched is None:
            raise NoRoute(f"no route matches {path}")
        route, rest = matched
        client_headers: CIMultiDict[str] = CIMultiDict(headers or [])
        if body:
            client_headers["Content-Length"] = str(len(body))
        out = upstream_headers(client_headers, route, "signet-sign-" + uuid.uuid4().hex[:8])
        placeholder = getattr(route.scheme, "placeholder_result", None)
        apply = None
        shown_secret_headers: frozenset[str] = frozenset()  # "<token>" is not a secret
        if placeholder is not None and not fetch_token:

            async def apply(_: UpstreamRequest) -> AuthResult:
                return placeholder()

        # the pipeline's own step: what is printed is what serve would send
        raw_path = rest + "?" + query if query else rest
        prepared = await prepare(route, method, raw_path, out, body, apply=apply)
        if apply is None:
            shown_secret_headers = frozenset(h.lower() for h in prepared.result.secret_headers)
        url = route.origin + prepared.target
        secrets = runtime.secret_values() if not show_secrets else set()
        lines = [f"{method} {url}"]
        for name, value in out.items():
            if not show_secrets:
                value = _mask(name, value, shown_secret_headers, secrets)
            lines.append(f"{name}: {value}")
        text = "\n".join(lines) + "\n\n"
        if body and _binary(body):  # a terminal is no place for raw bytes: say what they are
            text += f"<binary body: {len(body)} bytes, sha256 {hashlib.sha256(body).hexdigest()}>\n"
        elif body:
            shown = body.decode("utf-8")
            text += (_mask_text(shown, secrets) if not show_secrets else shown) + "\n"
        if show_secrets and prepared.result.debug:  # e.g. SigV4's canonical request: may hold secrets
            text += "".join(f"\n{label}:\n{value}\n" for label, value in prepared.result.debug)
        return text
    finally:
        await runtime.close()


def _mask(name: str, value: str, secret_headers: frozenset[str], secrets: set[str]) -> str:
    if name.lower() in secret_headers:
        kind, sep, _ = value.partition(" ")
        # keep the auth scheme word ("Basic ***") so the shape stays readable
        return f"{kind} {MASK}" if sep and kind in ("Basic", "Bearer") else MASK
    return _mask_text(value, secrets)


def _mask_text(text: str, secrets: set[str]) -> str:
    for s in sorted(secrets, key=len, reverse=True):
        if len(s) >= 3 and s in text:
            text = text.replace(s, MASK)
    return text


__all__ = ["FrozenClock", "PinnedClock", "dry_run"]


def _binary(body: bytes) -> bool:
    """Not UTF-8 text, or text with control characters other than tab and line breaks."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return any((ord(c) < 32 and c not in "\t\n\r") or ord(c) == 127 for c in text)

"""The one source of time and nonces for every scheme.

Schemes never call ``time.time()`` or ``secrets`` themselves; they ask the
clock they were given, so tests and ``signet sign --time/--nonce`` can pin
both. Monotonic time (for caches and timeouts) is a separate method so a
frozen wall clock still lets a token cache be driven by tests.
"""

from __future__ import annotations

import secrets
import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock Unix time in seconds (for signatures)."""
        ...

    def monotonic(self) -> float:
        """Monotonic seconds (for expiry and backoff)."""
        ...

    def nonce(self) -> str:
        """A fresh random 32-character lowercase hex string."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def nonce(self) -> str:
        return secrets.token_hex(16)


class FrozenClock:
    """A clock tests move by hand; ``nonce`` is fixed when given, else random."""

    def __init__(self, t: float = 1_700_000_000.0, nonce: str | None = None) -> None:
        self.t = t
        self.mono = 1000.0
        self.fixed_nonce = nonce

    def time(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.mono

    def nonce(self) -> str:
        return self.fixed_nonce if self.fixed_nonce is not None else secrets.token_hex(16)

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.mono += seconds


SYSTEM_CLOCK = SystemClock()

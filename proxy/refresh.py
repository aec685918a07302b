"""Secret rotation without restart: re-read every file and vault reference on a timer.

Every ``secret_refresh`` seconds the :class:`SecretRefresher` reads each
``${file:...}`` and ``${vault:...}`` reference again. Unchanged values do
nothing (no new runtime, no new OAuth2 token). Changed values rebuild the
settings from the parsed config (``config.rebuild_settings``) and go through
the same swap as a SIGHUP reload: a new :class:`~proxy.runtime.Runtime` for
new requests, the old one finishing its requests in flight.

A reference that cannot be read (Vault down, permission denied, a file gone,
a value ``value_problem`` refuses) keeps its last good value; the failure is
logged as ``secret_refresh_failed`` with the reference, never a value, and
counted in ``signet_secret_refresh_failures_total``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from proxy.config import (
    Route,
    Settings,
    read_secret_file,
    rebuild_settings,
    ref_kind,
    ref_text,
)
from proxy.errors import ConfigError
from proxy.log import get_logger
from proxy.metrics import Metrics
from proxy.secret import reveal, secret_values_in, value_problem
from proxy.vault import VaultClients, VaultError, fetch_refs

if TYPE_CHECKING:
    from collections.abc import Iterable

log = get_logger("signet.secrets")

# apply(base, new): swap ``new`` in unless the settings changed since ``base`` was read
ApplyRefresh = Callable[[Settings, Settings], Awaitable[bool]]


class SecretRefresher:
    """Re-reads references periodically and hands changed settings to the app."""

    def __init__(
        self,
        current: Callable[[], Settings],
        apply: ApplyRefresh,
        vault: VaultClients,
        metrics: Metrics,
    ) -> None:
        self._current = current
        self._apply = apply
        self.vault = vault
        self.metrics = metrics
        self._task: asyncio.Task[None] | None = None
        self._fingerprints: dict[str, str] = {}
        self._changed_at: dict[str, float] = {}
        self.note_settings(current())
        self._note_read(current())  # the load itself read every reference

    # ------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._current().secret_refresh)
            try:
                await self.refresh()
            except Exception as exc:  # the loop must outlive any one bad refresh
                log.error("secret_refresh_error", error=type(exc).__name__)

    # --------------------------------------------------------------- refresh

    async def refresh(self) -> bool:
        """One pass; True when changed values were swapped in."""
        base = self._current()
        keys = base.refreshable()
        if not keys:
            return False
        started = time.perf_counter()
        values, failures = await self._read_all(base, keys)
        self.metrics.secret_refresh_seconds.observe(time.perf_counter() - started)
        for key, reason in failures.items():
            self._failed(base, key, reason)
        if not failures:
            self._note_read(base)
        changed = {k: v for k, v in values.items() if base.references.get(k) != v}
        if not changed:
            return False
        try:
            new = rebuild_settings(base, changed)
        except ConfigError as exc:
            self.metrics.secret_refresh_failures.inc()
            log.error(
                "secret_refresh_failed",
                references=sorted(ref_text(k) for k in changed),
                message="new secret values rejected; still serving the previous ones",
                problems=[str(p) for p in exc.problems],
            )
            return False
        if not await self._apply(base, new):
            return False
        await self.vault.retain_only(new.vault)  # e.g. a rotated Vault token file: a new login
        log.info("secrets_refreshed", references=sorted(ref_text(k) for k in changed))
        return True

    async def _read_all(
        self, base: Settings, keys: Iterable[str]
    ) -> tuple[dict[str, str], dict[str, str]]:
        values: dict[str, str] = {}
        failures: dict[str, str] = {}
        vault_keys = []
        for key in keys:
            if ref_kind(key) == "file":
                path = key[5:].strip()
                try:
                    values[key] = read_secret_file(path)
                except OSError as exc:
                    failures[key] = f"cannot read secret file {path!r} ({exc.strerror or exc})"
            else:
                vault_keys.append(key)
        if vault_keys and base.vault is not None:
            fetched = await fetch_refs(self.vault.get(base.vault), vault_keys)
            for key, got in fetched.items():
                if isinstance(got, VaultError):
                    failures[key] = got.message
                else:
                    values[key] = got
        for key, value in list(values.items()):
            if why := value_problem(value):
                failures[key] = f"new value {why}"
                del values[key]
        return values, failures

    def _failed(self, base: Settings, key: str, reason: str) -> None:
        self.metrics.secret_refresh_failures.inc()
        log.warning(
            "secret_refresh_failed",
            reference=ref_text(key),
            locations=list(base.reference_locations.get(key, ())),
            reason=reason,
            message="keeping the last good value",
        )

    def _note_read(self, settings: Settings) -> None:
        """Every reference was read: operators alert when this grows past a few intervals."""
        if settings.refreshable():
            self.metrics.secret_refresh_interval.set(settings.secret_refresh)
            self.metrics.secret_last_refresh.set(time.time())

    # ------------------------------------------------------------------ ages

    def note_settings(self, settings: Settings) -> None:
        """After a start, reload or refresh: restart the age of routes whose secrets changed."""
        now = time.monotonic()
        fingerprints = {r.name: route_fingerprint(r) for r in settings.routes}
        for name, fp in fingerprints.items():
            if self._fingerprints.get(name) != fp:
                self._changed_at[name] = now
        for gone in set(self._changed_at) - set(fingerprints):
            del self._changed_at[gone]
            with contextlib.suppress(KeyError):
                self.metrics.secret_age.remove(gone)
        self._fingerprints = fingerprints
        self.update_ages()

    def update_ages(self) -> None:
        now = time.monotonic()
        for name, at in self._changed_at.items():
            self.metrics.secret_age.labels(name).set(round(now - at, 3))


def route_fingerprint(route: Route) -> str:
    """A digest of a route's secret values: tells a change without keeping the values."""
    values = list(secret_values_in(route.auth))
    values += [reveal(v) for v in route.set_headers.values()]
    for options in getattr(route, "auth_by_client", {}).values():
        values += list(secret_values_in(options[1] if isinstance(options, tuple) else options))
    digest = hashlib.sha256()
    for v in values:
        digest.update(v.encode() + b"\0")
    return digest.hexdigest()

"""Reading secrets from OpenBao / HashiCorp Vault over its HTTP API (aiohttp, no sync client).

``${vault:secret/signet/3commas#api_key}`` names a path as ``bao kv get``
takes it. Like the CLI (``kvPreflightVersionRequest`` in vault's
``command/kv_helpers.go``), :class:`VaultClient` first asks
``GET sys/internal/ui/mounts/<path>`` which mount holds the path and whether
it is KV version 1 or 2, then reads ``<mount>/<rest>`` (v1) or
``<mount>/data/<rest>`` (v2).

Authentication is one of: a token (default ``$VAULT_TOKEN``), AppRole, or
Kubernetes (the service-account JWT file is read again at every login, since
kubelet rotates it). A :class:`LifetimeWatcher` per login renews the token at
about two thirds of its TTL and, once renewals stop extending it (max TTL) or
it is not renewable, logs in again (see STYLE.md, vault's
``api/lifetime_watcher.go``).

Every :class:`VaultError` message names a path, a field, a status or a
reason; never a value or a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from proxy.log import REDACTOR, get_logger
from proxy.metrics import Metrics
from proxy.neterrors import client_error_reason
from proxy.secret import Secret

log = get_logger("signet.vault")

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10, connect=5)
MIN_RENEW_DELAY = 0.5  # seconds; never spin on a tiny TTL


# ----------------------------------------------------------------- settings


@dataclass(frozen=True)
class TokenAuth:
    token: Secret


@dataclass(frozen=True)
class AppRoleAuth:
    role_id: Secret
    secret_id: Secret
    mount: str = "approle"


@dataclass(frozen=True)
class KubernetesAuth:
    role: str
    jwt_file: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    mount: str = "kubernetes"


VaultAuth = TokenAuth | AppRoleAuth | KubernetesAuth


@dataclass(frozen=True)
class VaultSettings:
    """The config's ``vault:`` block, references in it already resolved."""

    address: str
    auth: VaultAuth
    namespace: str | None = None
    ca_file: str | None = None

    @property
    def method(self) -> str:
        return {TokenAuth: "token", AppRoleAuth: "approle", KubernetesAuth: "kubernetes"}[
            type(self.auth)
        ]


@dataclass(frozen=True)
class VaultRef:
    """``MOUNT/PATH#FIELD`` as written after ``vault:``."""

    path: str
    field: str

    @classmethod
    def parse(cls, text: str) -> VaultRef:
        path, sep, field = text.strip().partition("#")
        path = path.strip().strip("/")
        if not sep or not path or not field or "/" not in path:
            raise ValueError("write ${vault:MOUNT/PATH#FIELD}, e.g. ${vault:secret/signet/app#api_key}")
        return cls(path, field)

    def __str__(self) -> str:
        return f"${{vault:{self.path}#{self.field}}}"


# ------------------------------------------------------------------- errors


class VaultError(Exception):
    """A read or login that failed; ``kind`` is one of the class constants."""

    UNREACHABLE = "unreachable"
    DENIED = "permission_denied"
    MISSING_PATH = "missing_path"
    MISSING_FIELD = "missing_field"
    BAD_VALUE = "bad_value"
    LOGIN = "login_failed"

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


# ------------------------------------------------------------------- client


@dataclass
class _Login:
    token: str
    ttl: float  # seconds; 0 = does not expire
    renewable: bool
    obtained: float  # monotonic


class VaultClient:
    """One Vault server and identity: login, KV reads, token lifetime."""

    def __init__(self, settings: VaultSettings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self._session: aiohttp.ClientSession | None = None
        self._login: _Login | None = None
        self._login_lock = asyncio.Lock()
        self._mounts: dict[str, tuple[str, int]] = {}  # path -> (mount path, kv version)
        self._watcher: asyncio.Task[None] | None = None
        self.logins = 0  # successful logins (tests and logs)
        self.renewals = 0

    # ------------------------------------------------------------ plumbing

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            ssl_ctx: ssl.SSLContext | bool = True
            if self.settings.ca_file:
                ssl_ctx = ssl.create_default_context(cafile=self.settings.ca_file)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ssl_ctx, limit=8),
                timeout=REQUEST_TIMEOUT,
                trust_env=False,
            )
        return self._session

    async def _call(
        self, method: str, path: str, *, token: str | None, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """One HTTP API call; (status, JSON body). Connection failures are UNREACHABLE."""
        headers = {"Accept": "application/json"}
        if token:
            headers["X-Vault-Token"] = token
        if self.settings.namespace:
            headers["X-Vault-Namespace"] = self.settings.namespace
        url = self.settings.address.rstrip("/") + "/v1/" + path.lstrip("/")
        try:
            async with self._http().request(method, url, headers=headers, json=body) as resp:
                try:
                    data = await resp.json(content_type=None)
                except ValueError:
                    data = None
                return resp.status, data if isinstance(data, dict) else {}
        except TimeoutError:
            raise VaultError(VaultError.UNREACHABLE, "Vault did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise VaultError(
                VaultError.UNREACHABLE, f"cannot reach Vault: {client_error_reason(exc)}"
            ) from None

    # --------------------------------------------------------------- login

    async def token(self) -> str:
        """A current Vault token, logging in first when there is none."""
        if self._login is None:
            async with self._login_lock:
                if self._login is None:
                    await self._do_login()
        assert self._login is not None
        return self._login.token

    async def _do_login(self) -> None:
        auth = self.settings.auth
        if isinstance(auth, TokenAuth):
            token = auth.token.reveal()
            status, data = await self._call("GET", "auth/token/lookup-self", token=token)
            if status != 200:
                self._count("logins", "error")
                raise VaultError(VaultError.LOGIN, f"token lookup failed ({_why(status, data)})")
            info = data.get("data") or {}
            ttl = float(info.get("ttl") or 0)
            login = _Login(token, ttl, bool(info.get("renewable")), time.monotonic())
        else:
            if isinstance(auth, AppRoleAuth):
                path = f"auth/{auth.mount.strip('/')}/login"
                body = {"role_id": auth.role_id.reveal(), "secret_id": auth.secret_id.reveal()}
            else:
                try:
                    jwt = Path(auth.jwt_file).read_text(encoding="utf-8").strip()
                except (OSError, UnicodeDecodeError) as exc:
                    self._count("logins", "error")
                    reason = getattr(exc, "strerror", None) or type(exc).__name__
                    raise VaultError(
                        VaultError.LOGIN, f"cannot read jwt_file {auth.jwt_file!r} ({reason})"
                    ) from None
                REDACTOR.set_dynamic((self, "jwt"), {jwt})
                path = f"auth/{auth.mount.strip('/')}/login"
                body = {"role": auth.role, "jwt": jwt}
            status, data = await self._call("POST", path, token=None, body=body)
            info = data.get("auth") or {}
            token = info.get("client_token") or ""
            if status != 200 or not token:
                self._count("logins", "error")
                raise VaultError(
                    VaultError.LOGIN,
                    f"{self.settings.method} login at {path} failed ({_why(status, data)})",
                )
            login = _Login(
                token,
                float(info.get("lease_duration") or 0),
                bool(info.get("renewable")),
                time.monotonic(),
            )
        REDACTOR.set_dynamic(self, {login.token})
        self._login = login
        self.logins += 1
        self._count("logins", "ok")
        log.info(
            "vault_login",
            method=self.settings.method,
            ttl_s=login.ttl,
            renewable=login.renewable,
        )
        self._start_watcher(login)

    def _start_watcher(self, login: _Login) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        self._watcher = None
        if login.ttl > 0:
            self._watcher = asyncio.create_task(LifetimeWatcher(self, login).run())

    async def relogin(self) -> None:
        """Drop the current token and log in again (when the method allows it)."""
        async with self._login_lock:
            await self._do_login()

    # ---------------------------------------------------------------- reads

    async def read_secret(self, path: str) -> dict[str, Any]:
        """The key/value data of one secret (KV v1 or v2)."""
        try:
            return await self._read_secret(path)
        except VaultError as exc:
            if exc.kind != VaultError.DENIED or isinstance(self.settings.auth, TokenAuth):
                raise
            denied = exc
        # a 403 may come from an expired token rather than the policy: then log in once more
        if await self._token_valid():
            raise denied
        await self.relogin()
        return await self._read_secret(path)

    async def _token_valid(self) -> bool:
        token = self._login.token if self._login else ""
        status, _ = await self._call("GET", "auth/token/lookup-self", token=token)
        return status == 200

    async def _read_secret(self, path: str) -> dict[str, Any]:
        token = await self.token()
        mount, version = await self._mount_of(path, token)
        rest = path[len(mount) :].strip("/")
        api_path = f"{mount}/data/{rest}" if version == 2 else f"{mount}/{rest}"
        status, data = await self._call("GET", api_path, token=token)
        if status == 404:
            raise VaultError(VaultError.MISSING_PATH, f"no secret at {path!r} (KV v{version})")
        if status == 403:
            raise VaultError(VaultError.DENIED, f"permission denied reading {path!r}")
        if status != 200:
            raise VaultError(VaultError.UNREACHABLE, f"reading {path!r}: {_why(status, data)}")
        payload = data.get("data") or {}
        if version == 2:
            payload = payload.get("data") or {}
        if not isinstance(payload, dict):
            raise VaultError(VaultError.MISSING_PATH, f"no key/value data at {path!r}")
        return payload

    async def _mount_of(self, path: str, token: str) -> tuple[str, int]:
        """(mount path, KV version) as the CLI finds them: sys/internal/ui/mounts/<path>."""
        cached = self._mounts.get(path)
        if cached:
            return cached
        status, data = await self._call("GET", f"sys/internal/ui/mounts/{path}", token=token)
        if status == 404:  # a Vault older than the preflight endpoint: the CLI assumes KV v1
            found = (path.split("/", 1)[0], 1)
        elif status == 403:
            raise VaultError(
                VaultError.DENIED,
                f"permission denied on sys/internal/ui/mounts/{path}: no secrets engine is "
                "mounted there, or the policy grants nothing under it (read is needed to "
                "detect the KV version)",
            )
        elif status != 200:
            raise VaultError(
                VaultError.UNREACHABLE, f"mount lookup for {path!r}: {_why(status, data)}"
            )
        else:
            info = data.get("data") or {}
            mount = str(info.get("path") or "").strip("/")
            if not mount or not path.startswith(mount):
                raise VaultError(VaultError.MISSING_PATH, f"no secrets engine is mounted at {path!r}")
            options = info.get("options") or {}
            version = 2 if str(options.get("version") or "1") == "2" else 1
            found = (mount, version)
        self._mounts[path] = found
        return found

    async def read(self, ref: VaultRef) -> str:
        """One field's value, as a string."""
        data = await self.read_secret(ref.path)
        return field_of(data, ref)

    # --------------------------------------------------------------- close

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(BaseException):
                await self._watcher
            self._watcher = None
        if self._session is not None:
            await self._session.close()
        REDACTOR.set_dynamic(self, ())
        REDACTOR.set_dynamic((self, "jwt"), ())

    def _count(self, what: str, outcome: str) -> None:
        if self.metrics is not None:
            counter = self.metrics.vault_logins if what == "logins" else self.metrics.vault_renewals
            counter.labels(self.settings.method, outcome).inc()


def field_of(data: dict[str, Any], ref: VaultRef) -> str:
    if ref.field not in data:
        raise VaultError(VaultError.MISSING_FIELD, f"secret {ref.path!r} has no field {ref.field!r}")
    value = data[ref.field]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise VaultError(
            VaultError.BAD_VALUE, f"field {ref.field!r} of {ref.path!r} is not a string"
        )
    return str(value)


def _why(status: int, data: dict[str, Any]) -> str:
    """HTTP status plus Vault's own error strings (they name paths, not values)."""
    errors = data.get("errors")
    if isinstance(errors, list) and errors:
        text = "; ".join(str(e) for e in errors)[:300]
        return f"HTTP {status}: {text}"
    return f"HTTP {status}"


# ------------------------------------------------------------------ watcher


class LifetimeWatcher:
    """Keeps one login alive: renew-self at ~2/3 of the TTL, log in again when renewing stops working.

    Modelled on vault's ``api/lifetime_watcher.go``: sleep two thirds of the
    remaining lease plus a jittered third of a grace period, renew; when a
    renewal no longer extends the lease (max TTL reached) or the token is not
    renewable, log in again before it expires. A plain token cannot log in
    again: its expiry is logged and renewing goes on while it lives.
    """

    def __init__(self, client: VaultClient, login: _Login) -> None:
        self.client = client
        self.login = login

    async def run(self) -> None:
        client, login = self.client, self.login
        can_login = not isinstance(client.settings.auth, TokenAuth)
        requested = login.ttl
        ttl = login.ttl
        renewable = login.renewable
        while True:
            grace = ttl / 10
            delay = max(MIN_RENEW_DELAY, ttl * 2 / 3 + random.uniform(0, grace / 3))
            await asyncio.sleep(delay)
            if renewable:
                try:
                    status, data = await client._call(
                        "POST",
                        "auth/token/renew-self",
                        token=login.token,
                        body={"increment": f"{int(requested)}s"},
                    )
                except VaultError as exc:
                    status, data = 0, {"errors": [exc.message]}
                info = data.get("auth") or {}
                if status == 200 and info.get("client_token"):
                    new_ttl = float(info.get("lease_duration") or 0)
                    client.renewals += 1
                    client._count("renewals", "ok")
                    log.info("vault_token_renewed", method=client.settings.method, ttl_s=new_ttl)
                    renewable = bool(info.get("renewable", True))
                    if new_ttl <= 0:
                        return  # the token no longer expires
                    ttl = new_ttl
                    if new_ttl >= requested * 0.9 or not can_login:
                        continue
                    # the lease stopped growing: max TTL is near, log in while it still lives
                else:
                    client._count("renewals", "error")
                    log.warning(
                        "vault_renew_failed",
                        method=client.settings.method,
                        reason=_why(status, data) if status else data["errors"][0],
                    )
                    if not can_login:
                        ttl = max(ttl / 2, MIN_RENEW_DELAY)
                        continue
            elif not can_login:
                log.warning("vault_token_expiring", message="token is not renewable; it will expire")
                return
            if can_login:
                try:
                    await client.relogin()  # starts a new watcher and cancels this one
                except VaultError as exc:
                    log.warning("vault_login_failed", method=client.settings.method, reason=exc.message)
                    ttl = max(MIN_RENEW_DELAY * 4, ttl / 2)
                    continue
                return


# -------------------------------------------------------------------- pool


class VaultClients:
    """One :class:`VaultClient` per distinct ``vault:`` block, kept across reloads and refreshes."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics
        self._clients: dict[VaultSettings, VaultClient] = {}

    def use_metrics(self, metrics: Metrics) -> None:
        self.metrics = metrics
        for client in self._clients.values():
            client.metrics = metrics

    def get(self, settings: VaultSettings) -> VaultClient:
        client = self._clients.get(settings)
        if client is None:
            client = self._clients[settings] = VaultClient(settings, self.metrics)
        return client

    async def retain_only(self, settings: VaultSettings | None) -> None:
        """Close clients of a ``vault:`` block the config no longer has."""
        for key in [k for k in self._clients if k != settings]:
            await self._clients.pop(key).close()

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()


async def fetch_refs(client: VaultClient, keys: set[str] | list[str]) -> dict[str, str | VaultError]:
    """Every ``vault:...`` reference key -> its value or the error; one read per secret path.

    Keys that do not parse are left out (the config pass reports them).
    """
    by_path: dict[str, list[tuple[str, VaultRef]]] = {}
    for key in keys:
        try:
            ref = VaultRef.parse(key.removeprefix("vault:"))
        except ValueError:
            continue
        by_path.setdefault(ref.path, []).append((key, ref))

    async def one(path: str) -> dict[str, Any] | VaultError:
        try:
            return await client.read_secret(path)
        except VaultError as exc:
            return exc

    paths = list(by_path)
    results = await asyncio.gather(*(one(p) for p in paths))
    out: dict[str, str | VaultError] = {}
    for path, data in zip(paths, results, strict=True):
        for key, ref in by_path[path]:
            if isinstance(data, VaultError):
                out[key] = data
                continue
            try:
                out[key] = field_of(data, ref)
            except VaultError as exc:
                out[key] = exc
    return out

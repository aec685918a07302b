"""The running server: proxy listener, admin listener, reload and drain.

A :class:`Signet` is one proxy instance: tests start it in-process on port 0,
``signet serve`` and each ``--workers`` worker run it under
:func:`serve_until_stopped` (signals, reload, drain).
The proxy listener is Signet's own (:mod:`proxy.server`, an asyncio Protocol
on llhttp started with ``loop.create_server``); the admin listener is a plain
aiohttp ``web.Application``.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from proxy.clock import SYSTEM_CLOCK, Clock
from proxy.config import Settings, load_config_async
from proxy.errors import ConfigError, ListenError
from proxy.forward import ProxyHandler
from proxy.headers import hide_server_version
from proxy.listen_tls import ServerTLS
from proxy.log import REDACTOR, get_logger
from proxy.metrics import Metrics
from proxy.refresh import SecretRefresher
from proxy.runtime import Runtime
from proxy.server import Listener
from proxy.serving import os_reason
from proxy.vault import VaultClients

log = get_logger("signet")

# gen0 threshold of a serving process (CPython's default is 700); see tune_gc().
GC_GEN0_THRESHOLD = 7000


def tune_gc() -> None:
    """Collector settings for a process whose job is serving: freeze the startup heap.

    Startup leaves ~50k container objects (modules, pydantic models, structlog,
    prometheus, the pools) that every full collection traversed again under
    load: ~3 % of CPU and 30 ms pauses (the p99). ``gc.freeze()`` takes what is
    alive now out of the collector's sight; it is still freed by reference
    counting, and a reload unfreezes and freezes again (``_refreeze``).

    The gen0 threshold goes from 700 to 7000: steady proxying makes almost no
    cyclic garbage, yet at 700 the collector ran every ~30 requests to scan
    (and promote to older generations) the objects of requests in flight.
    Measured (bench/RESULTS.md): +7.5 % req/s at c50, p99 20.8 -> 12.0 ms.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def _refreeze() -> None:
    """After a reload retired the old runtime: let its frozen cycles be collected."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class Signet:
    """One proxy instance: its listeners, its current runtime, its lifecycle."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = SYSTEM_CLOCK,
        metrics: Metrics | None = None,
        config_path: str | None = None,
        tune_gc: bool = False,
        vault_clients: VaultClients | None = None,
        listen_sock: socket.socket | None = None,
        serve_admin: bool = True,
    ) -> None:
        """``listen_sock``: an already bound and listening socket to serve instead of
        binding ``listen`` (a worker gets its supervisor's); ``serve_admin=False``:
        this process opens no admin listener."""
        self.settings = settings
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.config_path = config_path
        self.listen_sock = listen_sock
        self.serve_admin = serve_admin
        self.tune_gc = tune_gc  # the serving process (signet serve, a worker), not tests
        self.ready = False
        self.draining = False
        self.runtime: Runtime | None = None
        self.handler: ProxyHandler | None = None
        self._listener: Listener | None = None
        self._admin_runner: web.AppRunner | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._reload_lock = asyncio.Lock()
        self.proxy_address: tuple[str, int] = ("", 0)
        self.admin_address: tuple[str, int] = ("", 0)
        self.vault = vault_clients or VaultClients()
        self.vault.use_metrics(self.metrics)
        self.refresher: SecretRefresher | None = None
        self.server_tls: ServerTLS | None = None  # listen_tls: the context, kept in step with its files

    # --------------------------------------------------------------- start

    async def start(self) -> None:
        """Start the runtime and both listeners; a busy address raises ListenError, leaving nothing open."""
        runtime = Runtime(self.settings, metrics=self.metrics, clock=self.clock)
        await runtime.start()
        self.runtime = runtime
        try:
            await self._listen()
        except BaseException:
            await self._close_partial()
            raise
        self.refresher = SecretRefresher(
            lambda: self.settings, self.apply_refresh, self.vault, self.metrics
        )
        self.refresher.start()
        if self.server_tls is not None:
            self.server_tls.start()
        if self.tune_gc:
            tune_gc()
        self.ready = True
        log.info(
            "listening",
            proxy=f"{self.proxy_address[0]}:{self.proxy_address[1]}",
            admin=f"{self.admin_address[0]}:{self.admin_address[1]}" if self.serve_admin else None,
            routes=[r.name for r in self.settings.routes],
            pid=os.getpid(),
            tls=self.server_tls is not None,
        )

    async def _listen(self) -> None:
        assert self.runtime is not None
        runtime = self.runtime
        REDACTOR.set_static(runtime.secret_values())
        limits = self.settings.limits
        self.handler = ProxyHandler(
            runtime, self.metrics, body_read_timeout=limits.body_read_timeout
        )
        listener = Listener(self.handler, limits)
        host, port = self.settings.listen
        if self.settings.listen_tls is not None:
            self.server_tls = ServerTLS(self.settings.listen_tls, on_event=_tls_event)
        try:
            await listener.start(
                host, port, self.listen_sock, ssl=self.server_tls.context if self.server_tls else None
            )
        except OSError as exc:
            raise ListenError("listen", self.settings.listen, os_reason(exc)) from None
        self._listener = listener
        self.proxy_address = listener.address

        if not self.serve_admin:
            return
        admin = web.Application()
        admin.on_response_prepare.append(hide_server_version)
        admin.router.add_get("/healthz", self._healthz)
        admin.router.add_get("/readyz", self._readyz)
        admin.router.add_get("/metrics", self._metrics)
        self._admin_runner = web.AppRunner(admin, access_log=None, handle_signals=False)
        await self._admin_runner.setup()
        ahost, aport = self.settings.admin_listen
        admin_site = web.TCPSite(self._admin_runner, ahost, aport)
        await _start_site(admin_site, "admin_listen", self.settings.admin_listen)
        self.admin_address = _bound(self._admin_runner)

    async def _close_partial(self) -> None:
        """Undo a start that failed half-way (no unclosed sessions, no bound sockets)."""
        if self._listener is not None:
            await self._listener.drain(0)
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
        self._listener = self._admin_runner = None
        if self.runtime is not None:
            await self.runtime.close()
            self.runtime = None

    @property
    def listener(self) -> Listener | None:
        """The proxy listener (its ``connections`` are the live client connections)."""
        return self._listener

    @property
    def proxy_url(self) -> str:
        host, port = self.proxy_address
        scheme = "https" if self.settings.listen_tls is not None else "http"
        return f"{scheme}://{_url_host(host)}:{port}"

    @property
    def admin_url(self) -> str:
        host, port = self.admin_address
        return f"http://{_url_host(host)}:{port}"

    # -------------------------------------------------------------- admin

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.ready and not self.draining:
            return web.json_response({"status": "ready", "routes": len(self.settings.routes)})
        return web.json_response(
            {"status": "draining" if self.draining else "starting"}, status=503
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        if self.refresher is not None:
            self.refresher.update_ages()
        self.metrics.ready.set(1 if self.ready and not self.draining else 0)  # what /readyz says
        return web.Response(
            body=self.metrics.render(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    # ------------------------------------------------------------- reload

    async def reload(
        self, load: Callable[[], Settings | Awaitable[Settings]] | None = None
    ) -> bool:
        """Load the config again (re-reading every file and vault reference) and swap it in.

        A bad new config is logged and the old one kept.
        """
        async with self._reload_lock:
            try:
                if load is not None:
                    loaded = load()
                    settings = await loaded if inspect.isawaitable(loaded) else loaded
                elif self.config_path:
                    settings = await load_config_async(self.config_path, vault_clients=self.vault)
                else:
                    raise ConfigError([], "no config path to reload from")
            except ConfigError as exc:
                self.metrics.config_reloads.labels("error").inc()
                log.error(
                    "reload_failed",
                    message="new config rejected; still serving the previous one",
                    problems=[str(p) for p in exc.problems],
                )
                return False
            if (
                settings.listen != self.settings.listen
                or settings.admin_listen != self.settings.admin_listen
            ):
                log.warning(
                    "reload_listen_ignored",
                    message="listen/admin_listen changes need a restart; addresses kept",
                )
            if not await self._swap(settings):
                return False

            self.metrics.config_reloads.labels("ok").inc()
            log.info("reloaded", routes=[r.name for r in settings.routes], source=settings.source)
            await self.vault.retain_only(settings.vault)
            return True

    async def apply_refresh(self, base: Settings, new: Settings) -> bool:
        """Swap in settings with refreshed secret values, unless a reload replaced ``base`` meanwhile."""
        async with self._reload_lock:
            if self.settings is not base:
                return False
            return await self._swap(new)

    async def _swap(self, settings: Settings) -> bool:
        """A new runtime for new requests; the old one finishes its requests, then closes."""
        new = Runtime(settings, metrics=self.metrics, clock=self.clock)
        try:
            await new.start()
        except Exception as exc:
            self.metrics.config_reloads.labels("error").inc()
            log.error(
                "reload_failed", message=f"could not start new config: {type(exc).__name__}"
            )
            return False
        old = self.runtime
        if old is not None:  # a reload or refresh keeps rate-limit state and vendor pauses
            new.admission.carry_over(old.admission)
            if new.forward is not None and old.forward is not None:
                new.forward.carry_over(old.forward)  # same CA: the leaves minted so far stay
        REDACTOR.set_static(new.secret_values() | (old.secret_values() if old else set()))
        self.runtime = new
        self.settings = settings
        assert self.handler is not None
        self.handler.runtime = new
        if self.refresher is not None:
            self.refresher.note_settings(settings)
        self._retarget_tls(settings)
        if old is not None:
            task = asyncio.create_task(self._retire(old))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        return True

    def _retarget_tls(self, settings: Settings) -> None:
        """A reload may name other certificate files: the same context serves them from now on.

        Turning TLS on or off changes what the socket speaks, which only a restart does.
        """
        if self.server_tls is None or settings.listen_tls is None:
            if (self.server_tls is None) != (settings.listen_tls is None):
                log.warning(
                    "listen_tls_restart_needed", message="turning listen_tls on or off needs a restart"
                )
            return
        self.server_tls.retarget(settings.listen_tls)

    async def _retire(self, old: Runtime) -> None:
        """Close a replaced runtime once its last request is done."""
        longest = max((r.timeout.read + r.timeout.connect for r in old.settings.routes), default=60)
        await old.wait_idle(longest + self.settings.shutdown_grace)
        await old.close()
        REDACTOR.set_static(self.runtime.secret_values() if self.runtime else set())
        if self.tune_gc:
            del old  # this frame's reference: the old runtime must be collectable now
            _refreeze()

    # -------------------------------------------------------------- stop

    async def stop(self) -> None:
        """Drain: readyz 503, stop accepting, finish in-flight (up to shutdown_grace), close."""
        if self.draining:
            return
        self.draining = True
        log.info(
            "draining",
            in_flight=self.runtime.active if self.runtime else 0,
            grace_s=self.settings.shutdown_grace,
        )
        grace = self.settings.shutdown_grace
        deadline = asyncio.get_running_loop().time() + grace
        if self._listener is not None:
            # stops listening, closes idle connections, waits for requests up to the grace
            await self._listener.drain(grace)
        if self.handler is not None:  # WebSocket tunnels: the rest of the grace, then cut
            await self.handler.tunnels.drain(max(0.0, deadline - asyncio.get_running_loop().time()))
        if self.refresher is not None:
            await self.refresher.stop()
        if self.server_tls is not None:
            await self.server_tls.stop()
        for task in list(self._retiring):
            task.cancel()
        if self.runtime is not None:
            await self.runtime.close()
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
        await self.vault.close()
        log.info("stopped")

    async def __aenter__(self) -> Signet:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


async def serve_until_stopped(
    app: Signet,
    load: Callable[[], Settings | Awaitable[Settings]],
    after_start: Callable[[], bool] | None = None
) -> int:
    """Run ``app`` until SIGTERM/SIGINT (then drain); SIGHUP reloads with ``load``.

    ``after_start`` runs once the listeners are up; returning False stops at once (exit 1).
    """
    loop = asyncio.get_running_loop()
    await app.start()
    if after_start is not None and not after_start():
        await app.stop()
        return 1
    stop = asyncio.Event()
    reloads: set[asyncio.Task[bool]] = set()

    def on_hup() -> None:
        log.info("reload_requested", signal="SIGHUP")
        task = asyncio.create_task(app.reload(load))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    await stop.wait()
    await app.stop()
    return 0


async def _start_site(site: web.BaseSite, setting: str, address: tuple[str, int]) -> None:
    """Bind ``site``; an address in use (or not ours) becomes one ListenError naming ``setting``."""
    try:
        await site.start()
    except OSError as exc:
        raise ListenError(setting, address, os_reason(exc)) from None


def _bound(runner: web.BaseRunner) -> tuple[str, int]:
    """The address a runner's only site is bound to (port 0 resolved)."""
    addr = runner.addresses[0]
    return addr[0], addr[1]


def _tls_event(event: str, fields: dict[str, Any]) -> None:
    """A certificate rotation (or a failed attempt) is worth a log line; no key material is in it."""
    if event.endswith("failed"):
        log.warning(event, **fields)
    else:
        log.info(event, **fields)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host

"""``signet serve --workers N``: one supervisor, one proxy socket, N worker processes.

The proxy socket is bound and put in listening state once, by the
supervisor (the process you started), without ``SO_REUSEPORT``: the kernel
then refuses any other process a bind on that port, so no process of the
same user can join it and receive clients' requests and tokens. The
listening socket is inherited by N workers (``python -m proxy.workers``,
``pass_fds``; its number travels in the worker spec), each a complete Signet
with its own upstream pools and OAuth2 token cache, all accepting on the one
socket.

Signals: SIGTERM/SIGINT are forwarded to every worker (each drains its own
in-flight requests within ``shutdown_grace``; the supervisor closes its copy
of the socket first, so the port is released once the last worker has
stopped); the supervisor exits 0 once all have exited 0. SIGHUP is forwarded
too: every worker reloads the config itself (a bad config is logged by each
worker and the old one kept). A worker that dies while not draining is
started again (at most once per second) on the same socket.

Admin (``admin_listen``) is the only admin socket, served by the supervisor;
workers open no listening socket of their own:

- ``/healthz``: 200 while the supervisor runs;
- ``/readyz``: 200 when every worker is ready, else 503 (starting, a worker
  down, draining). A worker reports ready with one JSON line on its stdout
  pipe once its listener is up; its exit is seen by the supervisor;
- ``/metrics``: the fleet's metrics through prometheus-client's
  multiprocess mode. The supervisor creates a private (0700) directory,
  hands it to the workers as ``PROMETHEUS_MULTIPROC_DIR`` (read by
  prometheus-client when it is imported, so before any metric exists), and
  removes it at exit. Counters and histograms are summed over workers (those
  of a restarted worker's predecessor included, so totals never go back);
  gauges say in :mod:`proxy.metrics` how they combine (in-flight requests
  are summed over live workers). A dead worker's live gauges are dropped
  (``mark_process_dead``).

Worker log lines carry ``worker`` (index) and ``pid``; the supervisor logs
``listening`` (proxy address, admin address, worker pids) once all are ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import Any

from proxy.config import load_config_async, override_listen
from proxy.errors import ConfigError, ListenError, SignetError
from proxy.headers import hide_server_version
from proxy.log import bind_process_fields, configure_logging, get_logger
from proxy.serving import os_reason, run_async

WORKER_SPEC_ENV = "SIGNET_WORKER_SPEC"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LISTEN_BACKLOG = 1024
START_TIMEOUT = 30.0

log = get_logger("signet.supervisor")


# ------------------------------------------------------------------ supervisor


def run_workers(
    path: str,
    workers: int,
    *,
    listen: tuple[str, int] | None = None,
    admin_listen: tuple[str, int] | None = None,
    log_format: str = "json",
    log_level: str = "info",
) -> int:
    """Entry from ``signet serve --workers N`` (N >= 2)."""
    # ConfigError -> exit 1 in cli.main; --listen obeys the config's own rule (as in run_server)
    settings = override_listen(run_async(load_config_async(path)), listen, admin_listen)
    sup = Supervisor(
        path,
        workers,
        listen=settings.listen,
        admin=settings.admin_listen,
        grace=settings.shutdown_grace,
        log_format=log_format,
        log_level=log_level,
    )
    return run_async(sup.run())


@dataclasses.dataclass
class _Worker:
    index: int
    proc: asyncio.subprocess.Process | None = None
    ready: bool = False
    started_at: float = 0.0


class Supervisor:
    def __init__(
        self,
        config_path: str,
        workers: int,
        *,
        listen: tuple[str, int],
        admin: tuple[str, int],
        grace: float,
        log_format: str,
        log_level: str,
    ) -> None:
        self.config_path = config_path
        self.n = workers
        self.listen = listen
        self.admin = admin
        self.grace = grace
        self.log_format = log_format
        self.log_level = log_level
        self.workers = [_Worker(i) for i in range(workers)]
        self.draining = False
        self._failed = False
        self._stop = asyncio.Event()
        self._sock: socket.socket | None = None
        self._metrics_dir = ""
        self._monitors: set[asyncio.Task[None]] = set()

    # ---------------------------------------------------------------- run

    async def run(self) -> int:
        """Bind both addresses (ListenError when one is taken), start the workers, serve."""
        from aiohttp import web

        try:
            self._sock = bind_listening(*self.listen)
        except OSError as exc:
            raise ListenError("listen", self.listen, os_reason(exc)) from None
        host, port = self.listen[0], self._sock.getsockname()[1]
        self.listen = (host, port)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._forward_hup)
        runner: web.AppRunner | None = None
        try:
            # admin first: a taken admin address fails before any worker starts
            app = web.Application()
            app.on_response_prepare.append(hide_server_version)
            app.router.add_get("/healthz", self._healthz)
            app.router.add_get("/readyz", self._readyz)
            app.router.add_get("/metrics", self._metrics)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, self.admin[0], self.admin[1])
            try:
                await site.start()
            except OSError as exc:
                raise ListenError("admin_listen", self.admin, os_reason(exc)) from None
            ahost, aport = runner.addresses[0][:2]
            self.admin = (self.admin[0], aport)
            self._metrics_dir = tempfile.mkdtemp(prefix="signet-metrics-")  # mode 0700
            started = await asyncio.gather(
                *(self._spawn(w) for w in self.workers), return_exceptions=True
            )
            if any(isinstance(r, BaseException) for r in started):
                log.error("workers_failed", message="a worker could not start; stopping")
                return 1
            for w in self.workers:
                self._watch(w)
            log.info(
                "listening",
                proxy=f"{host}:{port}",
                admin=f"{ahost}:{aport}",
                workers=self.n,
                worker_pids=[w.proc.pid for w in self.workers if w.proc],
                pid=os.getpid(),
            )
            await self._stop.wait()
            return await self._shutdown()
        finally:
            self.draining = True
            for t in list(self._monitors):
                t.cancel()
            await self._kill_all()
            if runner is not None:
                await runner.cleanup()
            self._close_socket()
            if self._metrics_dir:
                shutil.rmtree(self._metrics_dir, ignore_errors=True)

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def _spawn(self, w: _Worker) -> None:
        assert self._sock is not None
        fd = self._sock.fileno()
        spec = {
            "index": w.index,
            "workers": self.n,  # local rate limits are split N ways
            "config": self.config_path,
            "listen": list(self.listen),
            "listen_fd": fd,
            "admin": list(self.admin),
            "log_format": self.log_format,
            "log_level": self.log_level,
        }
        env = {k: v for k, v in os.environ.items() if k.lower() != MULTIPROC_ENV.lower()}
        env[MULTIPROC_ENV] = self._metrics_dir
        env[WORKER_SPEC_ENV] = json.dumps(spec)
        w.ready = False
        w.started_at = time.monotonic()
        w.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "proxy.workers",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,  # one JSON line when ready; stderr (logs) inherited
            env=env,
            pass_fds=(fd,),  # the listening socket, and no other descriptor of ours
        )
        assert w.proc.stdout is not None
        try:
            line = await asyncio.wait_for(w.proc.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            line = b""
        if not line or json.loads(line).get("ready") is not True:
            raise RuntimeError(f"worker {w.index} did not start")
        w.ready = True

    def _watch(self, w: _Worker) -> None:
        task = asyncio.create_task(self._monitor(w))
        self._monitors.add(task)
        task.add_done_callback(self._monitors.discard)

    async def _monitor(self, w: _Worker) -> None:
        """Restart a worker that died while we were not draining."""
        while not self.draining:
            assert w.proc is not None
            code = await w.proc.wait()
            w.ready = False
            self._forget(w.proc.pid)
            if self.draining:
                return
            log.error("worker_exited", worker=w.index, pid=w.proc.pid, code=code)
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - w.started_at)))
            if self.draining:
                return
            try:
                await self._spawn(w)
                log.info("worker_restarted", worker=w.index, pid=w.proc.pid)
            except Exception:
                log.error("worker_restart_failed", worker=w.index)
                await asyncio.sleep(1.0)

    def _forward_hup(self) -> None:
        log.info("reload_requested", signal="SIGHUP", workers=self.n)
        self._signal_all(signal.SIGHUP)

    def _signal_all(self, sig: int) -> None:
        for w in self.workers:
            if w.proc is not None and w.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(sig)

    def _forget(self, pid: int) -> None:
        """A worker exited: its live gauges (in-flight requests...) no longer count."""
        from prometheus_client import multiprocess

        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid, self._metrics_dir)

    async def _shutdown(self) -> int:
        self.draining = True
        self._close_socket()  # the port is released once the last worker closes its copy
        log.info("draining", workers=self.n, grace_s=self.grace)
        self._signal_all(signal.SIGTERM)
        procs = [w.proc for w in self.workers if w.proc is not None]
        try:
            codes = await asyncio.wait_for(
                asyncio.gather(*(p.wait() for p in procs)), self.grace + 15
            )
        except TimeoutError:
            log.error("workers_did_not_exit", message="killing the workers still running")
            return 1
        ok = all(c == 0 for c in codes)
        log.info("stopped", worker_exit_codes=list(codes))
        return 0 if ok else 1

    async def _kill_all(self) -> None:
        for w in self.workers:
            p = w.proc
            if p is not None and p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                with contextlib.suppress(Exception):
                    await p.wait()

    # --------------------------------------------------------------- admin

    async def _healthz(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response({"status": "ok", "workers": self.n})

    async def _readyz(self, request: Any) -> Any:
        from aiohttp import web

        ready = sum(1 for w in self.workers if w.ready and w.proc and w.proc.returncode is None)
        if self.draining:
            return web.json_response({"status": "draining"}, status=503)
        if ready < self.n:
            return web.json_response(
                {"status": "starting", "workers_ready": ready, "workers": self.n}, status=503
            )
        return web.json_response({"status": "ready", "workers": self.n})

    async def _metrics(self, request: Any) -> Any:
        from aiohttp import web

        body = await asyncio.to_thread(collect_metrics, self._metrics_dir)
        return web.Response(
            body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        )


def collect_metrics(directory: str) -> bytes:
    """Prometheus text for every worker's samples in ``directory`` (multiprocess mode)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    return generate_latest(registry)


def bind_listening(host: str, port: int) -> socket.socket:
    """The proxy socket, bound and listening, for the workers to inherit.

    ``SO_REUSEADDR`` (a restart may bind over connections in TIME_WAIT, as
    asyncio's servers do) but never ``SO_REUSEPORT``: a listening socket
    without it is the port's only owner, whatever another process asks.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, socktype, proto, _, addr = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


# ---------------------------------------------------------------------- worker


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker if the supervisor dies, so no worker outlives it."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


SECRET_AGE_EVERY = 5.0  # seconds


def _keep_secret_ages(app: Any) -> None:
    """Nobody scrapes a worker, so it refreshes its secret-age gauges on a timer instead."""

    async def tick() -> None:
        while not app.draining:
            await asyncio.sleep(SECRET_AGE_EVERY)
            if app.refresher is not None:
                app.refresher.update_ages()

    task = asyncio.get_running_loop().create_task(tick())
    _background.add(task)
    task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()


def worker_main() -> int:
    import structlog

    from proxy.app import Signet, serve_until_stopped

    spec = json.loads(os.environ.pop(WORKER_SPEC_ENV))
    ppid = os.getppid()
    _die_with_parent()
    index = int(spec["index"])
    pid = os.getpid()
    configure_logging(spec["log_format"], spec["log_level"])

    def tag(logger: Any, name: str, event: Any) -> Any:
        if event.get("event") == "listening":  # the supervisor's line is the "listening" one
            event["event"] = "worker_listening"
        event.setdefault("worker", index)
        event.setdefault("pid", pid)
        return event

    structlog.configure(processors=[tag, *structlog.get_config()["processors"]])
    bind_process_fields(worker=index, pid=pid)  # request lines are rendered outside structlog
    wlog = get_logger("signet")
    path = spec["config"]
    listen = (spec["listen"][0], int(spec["listen"][1]))
    admin = (spec["admin"][0], int(spec["admin"][1]))
    sock = socket.socket(fileno=int(spec["listen_fd"]))  # the supervisor's listening socket

    workers = int(spec.get("workers", 1))

    async def load() -> Any:
        s = await load_config_async(path, vault_clients=app.vault)
        return dataclasses.replace(s, listen=listen, admin_listen=admin, workers=workers)

    try:
        first = run_async(load_config_async(path))
        settings = dataclasses.replace(first, listen=listen, admin_listen=admin, workers=workers)
    except ConfigError as exc:
        wlog.error("worker_config_error", problems=[str(p) for p in exc.problems])
        return 1

    def announce() -> bool:
        if os.getppid() != ppid:  # the supervisor died before prctl took effect
            return False
        sys.stdout.write(json.dumps({"pid": pid, "ready": True}) + "\n")
        sys.stdout.flush()
        _keep_secret_ages(app)
        return True

    app = Signet(settings, config_path=path, listen_sock=sock, serve_admin=False, tune_gc=True)
    try:
        return run_async(serve_until_stopped(app, load, announce))
    except SignetError as exc:  # e.g. ListenError: one log line, no traceback
        wlog.error("worker_start_failed", message=str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(worker_main())

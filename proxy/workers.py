"""``signet serve --workers N``: N worker processes on one port, one supervisor.

The supervisor (the process you started) binds nothing that accepts proxy
traffic. It reserves the ``listen`` address with ``SO_REUSEPORT`` (so
``127.0.0.1:0`` resolves to one port that every worker then shares), spawns N
workers (``python -m proxy.workers``), each a complete Signet with its own
upstream pools, OAuth2 token cache and metrics, listening on that port with
``SO_REUSEPORT``: the kernel spreads new connections across them.

Signals: SIGTERM/SIGINT are forwarded to every worker (each drains its own
in-flight requests within ``shutdown_grace``); the supervisor exits 0 once all
have exited 0. SIGHUP is forwarded too: every worker reloads the config
itself (a bad config is logged by each worker and the old one kept). A worker
that dies while not draining is started again (at most once per second).

Admin (``admin_listen``) is served by the supervisor:

- ``/healthz``: 200 while the supervisor runs;
- ``/readyz``: 200 when every worker is ready, else 503 (starting, a worker
  down or not ready, draining);
- ``/metrics``: every worker's metrics, each sample with a ``worker="<i>"``
  label (``sum without (worker) (...)`` gives the totals).

Each worker also answers ``/healthz``, ``/readyz`` and ``/metrics`` on an
ephemeral port of the admin host, logged in its ``worker_listening`` line.
Worker log lines carry ``worker`` (index) and ``pid``; the supervisor logs
``listening`` (proxy address, admin address, worker pids) once all are ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import socket
import sys
import time
from typing import Any

from proxy.config import load_config_async, override_listen
from proxy.errors import ConfigError, ListenError, SignetError
from proxy.log import bind_process_fields, configure_logging, get_logger
from proxy.serving import os_reason, run_async

WORKER_SPEC_ENV = "SIGNET_WORKER_SPEC"
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
    admin_url: str = ""
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
        self._reserved: socket.socket | None = None
        self._monitors: set[asyncio.Task[None]] = set()

    # ---------------------------------------------------------------- run

    async def run(self) -> int:
        """Bind both addresses (ListenError when one is taken), start the workers, serve."""
        from aiohttp import web

        try:
            self._reserved = _reserve(*self.listen)
        except OSError as exc:
            raise ListenError("listen", self.listen, os_reason(exc)) from None
        host, port = self.listen[0], self._reserved.getsockname()[1]
        self.listen = (host, port)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._forward_hup)
        runner: web.AppRunner | None = None
        try:
            # admin first: a taken admin address fails before any worker starts
            app = web.Application()
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
            if self._reserved is not None:
                self._reserved.close()

    async def _spawn(self, w: _Worker) -> None:
        spec = {
            "index": w.index,
            "workers": self.n,  # local rate limits are split N ways
            "config": self.config_path,
            "listen": list(self.listen),
            "admin_host": self.admin[0],
            "log_format": self.log_format,
            "log_level": self.log_level,
        }
        env = dict(os.environ)
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
        )
        assert w.proc.stdout is not None
        try:
            line = await asyncio.wait_for(w.proc.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            line = b""
        if not line:
            raise RuntimeError(f"worker {w.index} did not start")
        w.admin_url = json.loads(line)["admin"]
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

    async def _shutdown(self) -> int:
        self.draining = True
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
        import aiohttp
        from aiohttp import web

        texts: list[tuple[int, str]] = []
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def one(w: _Worker) -> None:
                if not w.ready:
                    return
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(w.admin_url + "/metrics") as r:
                        texts.append((w.index, await r.text()))

            await asyncio.gather(*(one(w) for w in self.workers))
        return web.Response(
            body=merge_metrics(sorted(texts)),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )


def merge_metrics(texts: list[tuple[int, str]]) -> bytes:
    """Prometheus text from several workers as one exposition, each sample labelled worker=i."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.metrics_core import Metric
    from prometheus_client.parser import text_string_to_metric_families
    from prometheus_client.samples import Sample

    families: dict[str, Metric] = {}
    for index, text in texts:
        for fam in text_string_to_metric_families(text):
            merged = families.get(fam.name)
            if merged is None:
                merged = families[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
            for s in fam.samples:
                labels = {**s.labels, "worker": str(index)}
                merged.samples.append(Sample(s.name, labels, s.value, s.timestamp, s.exemplar))

    class _Collector:
        def collect(self) -> Any:
            return list(families.values())

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry)


def _reserve(host: str, port: int) -> socket.socket:
    """Bind (not listen) host:port with SO_REUSEPORT: fixes the port every worker then binds."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, socktype, proto, _, addr = infos[0]
    sock = socket.socket(family, socktype, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(addr)
    return sock


# ---------------------------------------------------------------------- worker


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker if the supervisor dies, so no worker outlives it."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


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
    admin = (spec["admin_host"], 0)

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
        sys.stdout.write(json.dumps({"pid": pid, "admin": app.admin_url}) + "\n")
        sys.stdout.flush()
        return True

    try:
        sock = _reserve(*listen)  # as before: each worker joins the port with SO_REUSEPORT
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        wlog.error("worker_start_failed", message=str(ListenError("listen", listen, os_reason(exc))))
        return 1
    app = Signet(settings, config_path=path, tune_gc=True, listen_sock=sock)
    try:
        return run_async(serve_until_stopped(app, load, announce))
    except SignetError as exc:  # e.g. ListenError: one log line, no traceback
        wlog.error("worker_start_failed", message=str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(worker_main())

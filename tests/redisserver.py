"""A real ``redis-server`` (Debian's /usr/bin/redis-server) on a free port, restartable.

No persistence (``--save '' --appendonly no``): a restart is an empty Redis,
as after a crash. :meth:`stop` and :meth:`start` keep the port, so clients
configured with the URL see an outage and a recovery.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.fakes import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"




class RedisServer:
    def __init__(self, port: int | None = None, args: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.args = args  # extra redis-server options, e.g. ("--requirepass", "...")
        self.dir = Path(tempfile.mkdtemp(prefix="signet-redis-"))
        atexit.register(shutil.rmtree, self.dir, ignore_errors=True)  # the server's log and dir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> RedisServer:
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited: {(self.dir / 'redis.log').read_text()}")
            if self.ping():
                return self
            time.sleep(0.02)
        raise AssertionError("redis-server did not answer PING in time")

    def ping(self) -> bool:
        try:
            with self.client() as r:
                return bool(r.ping())
        except (redis.RedisError, OSError):
            return False

    def client(self) -> redis.Redis:
        """A synchronous redis-py client, for tests to look inside."""
        password = self.args[self.args.index("--requirepass") + 1] if "--requirepass" in self.args else None
        return redis.Redis(port=self.port, password=password, socket_timeout=2, socket_connect_timeout=0.5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> RedisServer:
        self.stop()
        return self.start()

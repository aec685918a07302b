"""Fixtures for forward-proxy tests: a Signet CA, HTTPS vendors on loopback, client processes.

How vendor names reach loopback without a resolver: a route claims the vendor's
real name with ``hosts: ['api.vendor.example:443']`` while its ``upstream``
points at the mock (``https://127.0.0.1:<port>``, a trustme certificate for
127.0.0.1, trusted through ``tls.ca_file``). Clients never resolve a name
they send through a proxy (the CONNECT carries it), and Signet resolves only
the upstream, so no name has to map to 127.0.0.1 anywhere.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from proxy.forward_proxy.ca import write_ca
from tests.conftest import ROOT, secret
from tests.forward.ca_helpers import register_key
from tests.forward.vendor import KEY, VendorState, server_context, vendor_app

VENDOR_KEY = secret("fwd-vendor-api-key-7Hq2")
VENDOR_SECRET = secret("fwd-vendor-secret-Xk93-Lp0")
TOKEN_A = secret("fwd-client-token-a-0123456789")
TOKEN_B = secret("fwd-client-token-b-9876543210")


@pytest.fixture(scope="session")
def vendor_tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    """The vendors' CA (trustme) and its PEM file, which Signet's routes trust."""
    ca = trustme.CA()
    path = tmp_path_factory.mktemp("vendor-ca") / "vendor-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


@pytest.fixture(scope="session")
def signet_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA written as `signet ca init` writes it; its key is a secret for the log audit."""
    out = tmp_path_factory.mktemp("signet-ca")
    write_ca(out)
    register_key((out / "ca-key.pem").read_bytes())
    return out


@dataclass
class Vendor:
    port: int
    state: VendorState

    @property
    def upstream(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@pytest.fixture
async def vendor(aiohttp_server: Any, vendor_tls: tuple[trustme.CA, Path]) -> Vendor:
    app = vendor_app(VENDOR_KEY, VENDOR_SECRET)
    server = await aiohttp_server(app, host="127.0.0.1", ssl=server_context(vendor_tls[0]))
    return Vendor(server.port, app[KEY])


def forward_config(
    signet_ca: Path,
    vendor_ca: Path,
    routes: list[dict[str, Any]],
    *,
    other_hosts: str = "refuse",
    clients: list[dict[str, Any]] | None = None,
    **top: Any,
) -> str:
    """A config with forward_proxy on; each route trusts the vendors' CA."""
    data: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "admin_listen": "127.0.0.1:0",
        "forward_proxy": {
            "ca": {"cert_file": str(signet_ca / "ca.pem"), "key_file": str(signet_ca / "ca-key.pem")},
            "other_hosts": other_hosts,
        },
        **top,
    }
    if clients is not None:
        data["clients"] = clients
    data["routes"] = [{"tls": {"ca_file": str(vendor_ca)}, **r} for r in routes]
    return yaml.safe_dump(data, sort_keys=False)


def threecommas_route(vendor: Vendor, host: str = "api.vendor.example", **extra: Any) -> dict[str, Any]:
    return {
        "name": "vendor",
        "prefix": "/vendor",
        "upstream": vendor.upstream,
        "hosts": [f"{host}:443"],
        "auth": {"scheme": "threecommas", "api_key": "${VENDOR_KEY}", "secret": "${VENDOR_SECRET}"},
        **extra,
    }


SECRETS_ENV = {"VENDOR_KEY": VENDOR_KEY, "VENDOR_SECRET": VENDOR_SECRET, "TOKEN_A": TOKEN_A, "TOKEN_B": TOKEN_B}


def client_env(proxy_url: str, ca_file: Path, *, token: str | None = None, **extra: str) -> dict[str, str]:
    """What an app is given: HTTPS_PROXY (with a token as the password), and Signet's CA."""
    proxy = proxy_url
    if token is not None:
        proxy = proxy_url.replace("http://", f"http://app:{token}@")
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    env.update(
        {
            "HTTPS_PROXY": proxy,
            "https_proxy": proxy,
            "HTTP_PROXY": proxy,
            "http_proxy": proxy,
            "SSL_CERT_FILE": str(ca_file),
            "REQUESTS_CA_BUNDLE": str(ca_file),
            "CURL_CA_BUNDLE": str(ca_file),
            "NODE_EXTRA_CA_CERTS": str(ca_file),
            "PYTHONPATH": str(ROOT),
            **extra,
        }
    )
    return env


_PROXY_VARS = {"https_proxy", "http_proxy", "all_proxy", "no_proxy", "ssl_cert_file", "requests_ca_bundle",
               "curl_ca_bundle", "aws_ca_bundle", "node_extra_ca_certs"}


async def run(
    argv: list[str], env: dict[str, str], timeout: float = 120, stdin: bytes = b""
) -> tuple[int, str, str]:
    """A client as its own process (its own trust settings, its own event loop)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(ROOT),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.fixture
def forward_signet(
    signet_process: Callable[..., Any], signet_ca: Path, vendor_tls: tuple[trustme.CA, Path]
) -> Callable[..., Any]:
    """Start `signet serve` with forward_proxy on and these routes."""

    def start(routes: list[dict[str, Any]], extra_env: dict[str, str] | None = None, **kw: Any) -> Any:
        config = forward_config(signet_ca, vendor_tls[1], routes, **kw)
        return signet_process(config, env={**SECRETS_ENV, **(extra_env or {})})

    return start


async def log_lines(p: Any, want: Callable[[dict[str, Any]], bool], count: int = 1) -> list[dict[str, Any]]:
    """The request lines matching ``want``, once ``count`` are there: a line is written after its
    answer is sent, so a client can have the answer before the line exists."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        found = [e for e in p.events() if e.get("event") == "request" and want(e)]
        if len(found) >= count or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.05)

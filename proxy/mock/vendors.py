"""Every mock vendor on its own loopback port, with fixed, obviously fake demo credentials.

Used by ``signet demo`` and the end-to-end tests::

    vendors = await start_mock_vendors()
    vendors.urls["quicklizard"]   # "http://127.0.0.1:PORT"
    await vendors.close()
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

from proxy.mock import apliiq, quicklizard, simple, threeclicks, threecommas

# Each entry holds the `auth` fields of that scheme in the config, minus `scheme`.
# 3Commas and Quicklizard use their documentation's example pairs
# (vendor-docs/3commas-signing.txt, vendor-docs/quicklizard-authentication.txt).
DEMO_CREDENTIALS: dict[str, dict[str, Any]] = {
    "threeclicks": {"api_key": "demo-3clicks-key", "api_secret": "demo-3clicks-secret-0001"},
    "threecommas": {
        "api_key": "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A",
        "secret": "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j",
    },
    "apliiq": {"app_id": "demo-apliiq-app", "shared_secret": "demo-apliiq-shared-secret-0001"},
    "quicklizard": {
        "api_key": "ccae6d912a41bfefd569a77b5cd86603cde92e53cdd45813cba9e5bf080b3734",
        "api_secret": "0d66f4f97239b4530a5ab226eede766657933948c4fdd1ea22e14773c8342ee5",
    },
    "static": {"headers": {"X-Api-Token": "demo-static-token-0001"}},
    "basic": {"username": "demo-user", "password": "demo-password-0001"},
    "bearer": {"token": "demo-bearer-token-0001"},
    "none": {},
}

VENDOR_NAMES = (
    "threeclicks-simple",
    "threeclicks-strict",
    "threecommas",
    "apliiq",
    "quicklizard",
    "static",
    "basic",
    "bearer",
    "none",
)

# What the proxy always strips (CONTRACT.md, "What is stripped"); the generic upstreams check it.
CLIENT_ONLY_HEADERS = ("Cookie", "Proxy-Authorization", "X-Signet-Token")


def basic_header(username: str, password: str) -> str:
    """RFC 7617: ``Basic base64(user:password)``."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def demo_apps() -> dict[str, web.Application]:
    """A fresh app per vendor name, configured with DEMO_CREDENTIALS."""
    c = DEMO_CREDENTIALS
    tc = c["threeclicks"]
    basic = basic_header(c["basic"]["username"], c["basic"]["password"])
    bearer = "Bearer " + c["bearer"]["token"]
    return {
        "threeclicks-simple": threeclicks.create_app(mode="simple", **tc),
        "threeclicks-strict": threeclicks.create_app(mode="strict", **tc),
        "threecommas": threecommas.create_app(**c["threecommas"]),
        "apliiq": apliiq.create_app(**c["apliiq"]),
        "quicklizard": quicklizard.create_app(**c["quicklizard"]),
        "static": simple.create_app(
            expect_headers=dict(c["static"]["headers"]),
            forbid_headers=("Authorization", *CLIENT_ONLY_HEADERS),
            vendor="static",
        ),
        "basic": simple.create_app(
            expect_headers={"Authorization": basic}, forbid_headers=CLIENT_ONLY_HEADERS, vendor="basic"
        ),
        "bearer": simple.create_app(
            expect_headers={"Authorization": bearer}, forbid_headers=CLIENT_ONLY_HEADERS, vendor="bearer"
        ),
        "none": simple.create_app(forbid_headers=("Authorization", *CLIENT_ONLY_HEADERS), vendor="none"),
    }


@dataclass
class MockVendors:
    """Running mock vendors: name -> base URL and name -> app (for ``app[RECORDED]``)."""

    urls: dict[str, str] = field(default_factory=dict)
    apps: dict[str, web.Application] = field(default_factory=dict)
    runners: dict[str, web.AppRunner] = field(default_factory=dict)

    async def close(self) -> None:
        """Stop every server; safe to call twice."""
        runners, self.runners = self.runners, {}
        for runner in reversed(list(runners.values())):
            await runner.cleanup()

    async def __aenter__(self) -> MockVendors:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def start_mock_vendors(
    host: str = "127.0.0.1", *, extra_apps: dict[str, web.Application] | None = None
) -> MockVendors:
    """Start one server per vendor (and per ``extra_apps`` entry) on ``host``, each on a free port."""
    apps = demo_apps()
    for name, app in (extra_apps or {}).items():
        if name in apps:
            raise ValueError(f"extra app {name!r} clashes with a built-in mock vendor")
        apps[name] = app
    vendors = MockVendors()
    try:
        for name, app in apps.items():
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            vendors.runners[name] = runner
            site = web.TCPSite(runner, host, 0)
            await site.start()
            port = runner.addresses[0][1]
            vendors.urls[name] = _url(host, port)
            vendors.apps[name] = app
    except BaseException:
        await vendors.close()
        raise
    return vendors

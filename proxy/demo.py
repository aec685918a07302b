"""``signet demo``: every vendor mocked in-process, the proxy in front, curl lines printed.

The mock vendors (``proxy.mock``) verify requests exactly as each vendor
documents, independently of Signet's signers, so the demo is also the
quickest end-to-end check: ``signet demo --selftest`` sends a GET with a
query and a JSON POST through every route and exits 0 only if every mock
accepted both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from proxy.app import Signet
from proxy.config import load_config_text

# Obviously fake credentials. 3Commas and Quicklizard use their documentation's example pairs.
CREDS: dict[str, dict[str, str]] = {
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
    "threeplcentral": {
        "client_id": "fr4zzl3d-g0rp-ni11-b0rk-cr4ck3rj4ck5",
        "client_secret": "rump3lstiltskin",
        "user_login": "guysmiley",
    },
    "oauth2": {"client_id": "demo-oauth-client", "client_secret": "demo-oauth-secret-0001"},
    "static": {"value": "demo-static-token-0001"},
    "basic": {"username": "demo-user", "password": "demo-password-0001"},
    "bearer": {"token": "demo-bearer-token-0001"},
}


@dataclass(frozen=True)
class DemoRoute:
    name: str
    base_path: str  # the upstream base path on the mock
    auth: dict[str, Any]
    make_app: Callable[[], web.Application]
    example: str  # path and query to try


def demo_routes() -> list[DemoRoute]:
    from proxy.mock import apliiq, oauth, quicklizard, simple, threeclicks, threecommas

    c = CREDS
    tc, ql, ap = c["threeclicks"], c["quicklizard"], c["apliiq"]
    tpl, o2 = c["threeplcentral"], c["oauth2"]
    st, ba, be = c["static"], c["basic"], c["bearer"]
    return [
        DemoRoute(
            "threeclicks-strict",
            "/api-user/v1",
            {"scheme": "threeclicks-strict", **tc},
            lambda: threeclicks.create_app(mode="strict", **tc),
            "/style/basic/detail?style_number=SO00123",
        ),
        DemoRoute(
            "threeclicks-simple",
            "/api-user/v1",
            {"scheme": "threeclicks-simple", **tc},
            lambda: threeclicks.create_app(mode="simple", **tc),
            "/style/ABC%2F123?lang=en",
        ),
        DemoRoute(
            "threecommas",
            "/public/api/ver1",
            {"scheme": "threecommas", **c["threecommas"]},
            lambda: threecommas.create_app(**c["threecommas"]),
            "/bots/84512/show?include_events=true",
        ),
        DemoRoute(
            "apliiq",
            "/api",
            {"scheme": "apliiq", **ap},
            lambda: apliiq.create_app(**ap),
            "/Order?status=open",
        ),
        DemoRoute(
            "quicklizard",
            "/api/v1",
            {"scheme": "quicklizard", **ql},
            lambda: quicklizard.create_app(**ql),
            "/products?page=1",
        ),
        DemoRoute(
            "threeplcentral",
            "",
            {"scheme": "threeplcentral", **tpl, "token_url": "{url}/AuthServer/api/Token"},
            lambda: oauth.threeplcentral_app(**tpl),
            "/customers/17?detail=all",
        ),
        DemoRoute(
            "oauth2",
            "/api",
            {"scheme": "oauth2-client-credentials", **o2, "token_url": "{url}/oauth/token"},
            lambda: oauth.create_app(**o2),
            "/orders?limit=5",
        ),
        DemoRoute(
            "static",
            "",
            {"scheme": "static", "headers": {"X-Api-Token": st["value"]}},
            lambda: simple.create_app(expect_headers={"X-Api-Token": st["value"]}),
            "/items?x=1",
        ),
        DemoRoute(
            "basic",
            "",
            {"scheme": "basic", **ba},
            lambda: simple.create_app(expect_headers={"Authorization": _basic(ba)}),
            "/items?x=1",
        ),
        DemoRoute(
            "bearer",
            "",
            {"scheme": "bearer", **be},
            lambda: simple.create_app(expect_headers={"Authorization": f"Bearer {be['token']}"}),
            "/items?x=1",
        ),
        DemoRoute(
            "none",
            "",
            {"scheme": "none"},
            lambda: simple.create_app(forbid_headers=["Authorization", "Cookie"]),
            "/items?x=1",
        ),
    ]


def _basic(creds: dict[str, str]) -> str:
    import base64

    raw = f"{creds['username']}:{creds['password']}".encode()
    return "Basic " + base64.b64encode(raw).decode()


class Demo:
    """Mock vendors on loopback ports plus one Signet in front of them."""

    def __init__(
        self, listen: str = "127.0.0.1:8080", admin_listen: str = "127.0.0.1:9191"
    ) -> None:
        self.listen = listen
        self.admin_listen = admin_listen
        self.routes = demo_routes()
        self.mock_urls: dict[str, str] = {}
        self._runners: list[web.AppRunner] = []
        self.signet: Signet | None = None

    async def start(self) -> None:
        for r in self.routes:
            runner = web.AppRunner(r.make_app(), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self._runners.append(runner)
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.mock_urls[r.name] = f"http://127.0.0.1:{port}"
        settings = load_config_text(self.config_text(), env={}, source="<demo>")
        self.signet = Signet(settings)
        await self.signet.start()

    def config_text(self) -> str:
        routes = []
        for r in self.routes:
            url = self.mock_urls[r.name]
            auth = {k: (v.format(url=url) if k == "token_url" else v) for k, v in r.auth.items()}
            routes.append(
                {
                    "name": r.name,
                    "prefix": f"/{r.name}",
                    "upstream": url + r.base_path,
                    "auth": auth,
                }
            )
        data = {"listen": self.listen, "admin_listen": self.admin_listen, "routes": routes}
        # `$` in demo values must not be read as a reference
        return yaml.safe_dump(data, sort_keys=False).replace("${", "$${")

    async def stop(self) -> None:
        if self.signet is not None:
            await self.signet.stop()
        for runner in self._runners:
            await runner.cleanup()

    def curl_lines(self) -> list[str]:
        assert self.signet is not None
        base = self.signet.proxy_url
        lines = []
        for r in self.routes:
            lines.append(f"curl -s '{base}/{r.name}{r.example}'")
            lines.append(
                f"curl -s -X POST '{base}/{r.name}{r.example}' "
                "-H 'Content-Type: application/json' -d '{\"field\":\"value\"}'"
            )
        return lines


async def selftest(demo: Demo) -> list[tuple[str, bool, str]]:
    """One GET with a query and one JSON POST per route; every mock must accept both."""
    assert demo.signet is not None
    base = demo.signet.proxy_url
    results = []
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for r in demo.routes:
            ok, details = True, []
            for method, body in (("GET", None), ("POST", b'{"field":"value","n":1}')):
                headers = {
                    # hostile: none of these may reach the vendor or change the signature
                    "Authorization": "Bearer client-supplied",
                    "X-Api-Secret": "client-supplied",
                    "Cookie": "session=client",
                }
                if body is not None:
                    headers["Content-Type"] = "application/json"
                try:
                    async with session.request(
                        method, base + f"/{r.name}{r.example}", data=body, headers=headers
                    ) as resp:
                        text = await resp.text()
                        status = resp.status
                except aiohttp.ClientError as exc:
                    ok = False
                    details.append(f"{method} failed: {type(exc).__name__}")
                    continue
                accepted = status == 200 and _json_ok(text)
                ok = ok and accepted
                details.append(f"{method} {status}" + ("" if accepted else f" {text[:200]}"))
            results.append((r.name, ok, ", ".join(details)))
    return results


def _json_ok(text: str) -> bool:
    try:
        return json.loads(text).get("ok") is True
    except (ValueError, AttributeError):
        return False


def run_demo(args: argparse.Namespace) -> int:
    from proxy.cli import run_async

    return int(run_async(_run(args)))


async def _run(args: argparse.Namespace) -> int:
    demo = Demo(args.listen, args.admin_listen)
    if args.selftest:
        # never collide with a real Signet on the default ports
        demo.listen = "127.0.0.1:0" if args.listen == "127.0.0.1:8080" else args.listen
        demo.admin_listen = (
            "127.0.0.1:0" if args.admin_listen == "127.0.0.1:9191" else args.admin_listen
        )
    try:
        await demo.start()
    except OSError as exc:
        print(
            f"signet demo: cannot listen ({exc.strerror}); try --listen 127.0.0.1:18080",
            file=sys.stderr,
        )
        await demo.stop()
        return 1
    try:
        if args.selftest:
            results = await selftest(demo)
            width = max(len(name) for name, _, _ in results)
            for name, ok, detail in results:
                print(f"{'PASS' if ok else 'FAIL'}  {name:<{width}}  {detail}")
            failed = sum(1 for _, ok, _ in results if not ok)
            print(f"{len(results) - failed} passed, {failed} failed")
            return 0 if failed == 0 else 1
        assert demo.signet is not None
        print(f"Signet demo: proxy on {demo.signet.proxy_url}, admin on {demo.signet.admin_url}")
        print("Mock vendors (each verifies signatures as its vendor documents):")
        for r in demo.routes:
            print(f"  /{r.name:<20} -> {demo.mock_urls[r.name]}{r.base_path}")
        print("\nTry:")
        for line in demo.curl_lines():
            print("  " + line)
        print("\nPress Ctrl-C to stop.")
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        return 0
    finally:
        await demo.stop()

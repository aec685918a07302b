"""``signet demo``: every vendor mocked in-process, the proxy in front, curl lines printed.

The curl lines come from the route table below (:func:`curl_lines`); the
README's Quick start shows some of them and a test requests each one against
a running ``signet demo``, so the examples cannot drift from the demo.

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
from proxy.errors import ListenError
from proxy.serving import run_async

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_ADMIN_LISTEN = "127.0.0.1:9191"

# Obviously fake credentials for the token-based mocks; the signature vendors'
# demo credentials live with their mocks (proxy.mock.vendors.DEMO_CREDENTIALS).
TOKEN_CREDS: dict[str, dict[str, str]] = {
    "threeplcentral": {  # 3PL Central's documentation example
        "client_id": "fr4zzl3d-g0rp-ni11-b0rk-cr4ck3rj4ck5",
        "client_secret": "rump3lstiltskin",
        "user_login": "guysmiley",
    },
    "oauth2": {"client_id": "demo-oauth-client", "client_secret": "demo-oauth-secret-0001"},
}


@dataclass(frozen=True)
class DemoRoute:
    name: str
    base_path: str  # the upstream base path on the mock
    auth: dict[str, Any]
    make_app: Callable[[], web.Application]
    example: str  # path and query to try


# route name -> (mock credentials entry, upstream base path on the mock, example path and query)
_SIGNED = {
    "threeclicks-strict": ("threeclicks", "/api-user/v1", "/style/basic/detail?style_number=SO00123"),
    "threeclicks-simple": ("threeclicks", "/api-user/v1", "/style/ABC%2F123?lang=en"),
    "threecommas": ("threecommas", "/public/api/ver1", "/bots/84512/show?include_events=true"),
    "apliiq": ("apliiq", "/api", "/Order?status=open"),
    "quicklizard": ("quicklizard", "/api/v1", "/products?page=1"),
    "static": ("static", "", "/items?x=1"),
    "basic": ("basic", "", "/items?x=1"),
    "bearer": ("bearer", "", "/items?x=1"),
    "none": ("none", "", "/items?x=1"),
}


def demo_routes() -> list[DemoRoute]:
    from proxy.mock import oauth
    from proxy.mock.vendors import DEMO_CREDENTIALS, demo_apps

    routes = [
        DemoRoute(
            name,
            base_path,
            {"scheme": name, **DEMO_CREDENTIALS[creds]},
            lambda name=name: demo_apps()[name],  # type: ignore[misc]
            example,
        )
        for name, (creds, base_path, example) in _SIGNED.items()
    ]
    tpl, o2 = TOKEN_CREDS["threeplcentral"], TOKEN_CREDS["oauth2"]
    routes += [
        DemoRoute(
            "threeplcentral", "",
            {"scheme": "threeplcentral", **tpl, "token_url": "{url}/AuthServer/api/Token"},
            lambda: oauth.threeplcentral_app(
                client_id=tpl["client_id"],
                client_secret=tpl["client_secret"],
                user_login=tpl["user_login"],
            ),
            "/customers/17?detail=all",
        ),
        DemoRoute(
            "oauth2", "/api",
            {"scheme": "oauth2-client-credentials", **o2, "token_url": "{url}/oauth/token"},
            lambda: oauth.create_app(client_id=o2["client_id"], client_secret=o2["client_secret"]),
            "/orders?limit=5",
        ),
    ]
    return routes


def curl_lines(routes: list[DemoRoute], base: str = f"http://{DEFAULT_LISTEN}") -> list[str]:
    """A GET and a JSON POST per route, as the banner prints them (and the README shows them)."""
    lines = []
    for r in routes:
        lines.append(f"curl -s '{base}/{r.name}{r.example}'")
        lines.append(
            f"curl -s -X POST '{base}/{r.name}{r.example}' "
            "-H 'Content-Type: application/json' -d '{\"field\":\"value\"}'"
        )
    return lines


class Demo:
    """Mock vendors on loopback ports plus one Signet in front of them."""

    def __init__(self, listen: str = DEFAULT_LISTEN, admin_listen: str = DEFAULT_ADMIN_LISTEN) -> None:
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
            port = runner.addresses[0][1]
            self.mock_urls[r.name] = f"http://127.0.0.1:{port}"
        settings = load_config_text(self.config_text(), env={}, source="<demo>")
        signet = Signet(settings)
        await signet.start()  # on failure it closed what it opened
        self.signet = signet

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
        """Stop the proxy, then the mocks; safe to call twice."""
        signet, self.signet = self.signet, None
        if signet is not None:
            await signet.stop()
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()

    def curl_lines(self) -> list[str]:
        assert self.signet is not None
        return curl_lines(self.routes, self.signet.proxy_url)


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
    return run_async(_run(args))


async def _run(args: argparse.Namespace) -> int:
    demo = Demo(args.listen, args.admin_listen)
    if args.selftest:
        # never collide with a real Signet on the default ports
        demo.listen = "127.0.0.1:0" if args.listen == DEFAULT_LISTEN else args.listen
        demo.admin_listen = (
            "127.0.0.1:0" if args.admin_listen == DEFAULT_ADMIN_LISTEN else args.admin_listen
        )
    try:
        await demo.start()
    except ListenError as exc:
        flag = ListenError.SETTINGS[exc.setting]
        example = "127.0.0.1:18080" if exc.setting == "listen" else "127.0.0.1:19191"
        host, port = exc.address
        print(
            f"signet demo: cannot listen on {host}:{port} ({exc.reason}); "
            f"pass another address, e.g. {flag} {example}",
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
        print(
            f"\nLogs: one line per request below (--log-level {args.log_level}; "
            "--log-level warning for quiet, debug for more)."
        )
        print("Press Ctrl-C to stop.")
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await demo.stop()
        print("Signet demo stopped.")
        return 0
    finally:
        await demo.stop()

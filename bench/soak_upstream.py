"""Upstreams for bench/soak.py, one per process so the soak can restart them.

    python bench/soak_upstream.py echo  PORT      # a fast JSON echo
    python bench/soak_upstream.py oauth PORT      # proxy.mock.oauth (token endpoint + API);
                                                  # client secret from $SOAK_OAUTH_SECRET

Prints ``READY`` once listening; exits on SIGTERM. Idle keep-alive connections
are closed after 2 s, so the proxy's pooled connections drain soon after a
run and its file descriptors can be compared with the cold baseline.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response({"method": request.method, "path": request.raw_path, "body_len": len(body)})


def echo_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _echo)
    return app


def oauth_app() -> web.Application:
    from proxy.mock.oauth import create_app

    return create_app(client_id="soak-client", client_secret=os.environ["SOAK_OAUTH_SECRET"])


async def main(kind: str, port: int) -> None:
    app = echo_app() if kind == "echo" else oauth_app()
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=2, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True, backlog=1024)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY", flush=True)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))

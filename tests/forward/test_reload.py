"""A reload inside open tunnels: the route is looked up again per request; leaves minted survive."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trustme

from proxy.config import load_config_text
from tests.forward import rawclient
from tests.forward.conftest import SECRETS_ENV, Vendor, forward_config, threecommas_route

HOST = "api.vendor.example"


async def test_a_reload_moves_hosts_inside_open_tunnels_and_keeps_the_leaves(
    make_signet: Any, vendor: Vendor, signet_ca: Path, vendor_tls: tuple[trustme.CA, Path]
) -> None:
    first = forward_config(signet_ca, vendor_tls[1], [threecommas_route(vendor)])
    app = await make_signet(first, env=SECRETS_ENV)
    port = app.proxy_address[1]
    reader, writer = await rawclient.tunnel(port, HOST, signet_ca / "ca.pem")
    assert (await rawclient.get(reader, writer, HOST, "/before"))[0] == 200
    forward = app.runtime.forward
    assert forward is not None and forward.leaves.minted == 1
    leaves = forward.leaves

    # the same CA, the host now claimed by nobody
    second = forward_config(signet_ca, vendor_tls[1], [threecommas_route(vendor, host="moved.vendor.example")])
    assert await app.reload(lambda: load_config_text(second, env=SECRETS_ENV))
    status, headers, body = await rawclient.get(reader, writer, HOST, "/after")
    writer.close()
    assert status == 403 and headers["x-signet-error"] == "forbidden"
    assert "no longer the host of a route" in body["error"]["message"]
    assert app.runtime.forward is not None and app.runtime.forward.leaves is leaves  # carried over

    status, _, refusal, _, w = await rawclient.connect(port, f"{HOST}:443")
    w.close()
    assert status == 403 and json.loads(refusal)["error"]["code"] == "forbidden"
    reader, writer = await rawclient.tunnel(port, "moved.vendor.example", signet_ca / "ca.pem")
    status, _, answer = await rawclient.get(reader, writer, "moved.vendor.example", "/moved")
    writer.close()
    assert status == 200 and answer["signed"] and answer["raw_path"] == "/moved"

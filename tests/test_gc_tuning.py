"""A serving process freezes its startup heap; a reload lets the old runtime be collected."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from proxy import app as app_module
from proxy.config import load_config_text
from tests.conftest import config_text


async def test_serving_process_freezes_heap_and_refreezes_after_reload(
    make_signet: Any, upstream: Any, monkeypatch: Any
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append("collect") or 0)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(gc, "unfreeze", lambda: calls.append("unfreeze"))
    monkeypatch.setattr(gc, "set_threshold", lambda *t: calls.append(("threshold", t)))
    routes = [{"name": "r", "prefix": "/r", "upstream": str(upstream.make_url("/")), "auth": {"scheme": "none"}}]

    app = await make_signet(routes, tune_gc=True)
    gen1, gen2 = gc.get_threshold()[1:]
    assert calls == ["collect", "freeze", ("threshold", (app_module.GC_GEN0_THRESHOLD, gen1, gen2))]

    calls.clear()
    settings = load_config_text(config_text(routes), env={})
    assert await app.reload(lambda: settings)
    for task in list(app._retiring):
        await asyncio.wait_for(task, 10)
    assert calls == ["unfreeze", "collect", "freeze"]


async def test_in_process_signet_leaves_the_collector_alone(
    make_signet: Any, upstream: Any, monkeypatch: Any
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(gc, "set_threshold", lambda *t: calls.append("threshold"))
    routes = [{"name": "r", "prefix": "/r", "upstream": str(upstream.make_url("/")), "auth": {"scheme": "none"}}]
    await make_signet(routes)
    assert calls == []

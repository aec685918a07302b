"""What the command line, the workers and the demo share to run a server.

Kept apart from :mod:`proxy.cli` so the command line sits on top: ``cli``
imports ``workers``, ``demo`` and this module, and none of them imports
``cli`` back.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from proxy.config import DEFAULT_CONFIG_PATH

T = TypeVar("T")


def default_config_path() -> str:
    """``$SIGNET_CONFIG``, else ``config/signet.yaml``: where ``--config`` points when omitted."""
    return os.environ.get("SIGNET_CONFIG") or DEFAULT_CONFIG_PATH


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on uvloop when installed, else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where available
        return asyncio.run(coro)
    return uvloop.run(coro)


def os_reason(exc: OSError) -> str:
    """The OS's words for an error (``address already in use``), without asyncio's wrapping."""
    if exc.errno:
        return os.strerror(exc.errno).lower()
    return (exc.strerror or type(exc).__name__).lower()

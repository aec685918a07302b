"""Heavy libraries are imported only by a config that uses them (idle RSS and start time).

A fresh interpreter serves a config with a ``none`` and an OAuth2 route: redis, cryptography,
botocore and hvac must not be loaded. With ``state.redis`` the runtime does load redis.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("redis", "cryptography", "botocore", "boto3", "hvac")

SCRIPT = """
import asyncio, json, sys
from proxy.app import Signet
from proxy.config import load_config_text
import proxy.cli, proxy.workers  # what `signet serve` imports

config = '''
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
routes:
  - {name: plain, prefix: /plain, upstream: 'http://127.0.0.1:9', auth: {scheme: none}}
  - name: oauth
    prefix: /oauth
    upstream: 'http://127.0.0.1:9'
    auth: {scheme: oauth2-client-credentials, token_url: 'http://127.0.0.1:9/token',
           client_id: id, client_secret: not-a-real-secret}
''' + sys.argv[1]

async def main():
    app = Signet(load_config_text(config, env={}))
    if sys.argv[1]:
        from proxy.runtime import Runtime
        Runtime(app.settings, metrics=app.metrics)  # built, not connected
    else:
        await app.start()
        await app.stop()

asyncio.run(main())
print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[2].split(',')))))
"""


def _heavy_loaded(extra_config: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, extra_config, ",".join(HEAVY)],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_a_config_without_redis_imports_no_heavy_library() -> None:
    assert _heavy_loaded("") == []


def test_state_redis_loads_redis_when_the_runtime_is_built() -> None:
    assert "redis" in _heavy_loaded("state: {redis: 'redis://127.0.0.1:9/0'}\n")

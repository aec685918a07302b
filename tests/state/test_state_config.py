"""``state:`` in the config: URL validation, the password kept secret, what `signet check` says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from proxy.config import load_config_text
from proxy.errors import ConfigError
from proxy.redisurl import describe, redis_url_problem
from tests.conftest import ROOT, secret

PASSWORD = secret("redis-pass-Qm27vXr9")
BASE = "routes: [{prefix: /a, upstream: 'http://127.0.0.1:1', rate_limit: {requests: 5, per: 1s}}]\n"


def problems(state: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as e:
        load_config_text(BASE + state, env=env or {})
    return str(e.value)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://h:6379/0", "must be a redis://, rediss:// or unix:// URL"),
        ("redis:///0", "must name a host"),
        ("redis://h:6379/zero", "database number"),
        ("redis://h:6379/0?x=1", "query"),
        ("unix://", "socket path"),
    ],
)
def test_bad_urls_are_refused_with_a_reason(url: str, why: str) -> None:
    assert why in (redis_url_problem(url) or "")
    assert why in problems(f"state: {{redis: '{url}'}}")


@pytest.mark.parametrize("url", ["redis://h:6379/0", "rediss://redis.svc:6380/2", "redis://h", "unix:///run/redis.sock"])
def test_good_urls(url: str) -> None:
    assert redis_url_problem(url) is None
    s = load_config_text(BASE + f"state: {{redis: '{url}', on_error: deny}}", env={})
    assert s.state.redis is not None and s.state.redis.reveal() == url
    assert s.state.on_error == "deny"


def test_default_is_no_redis_and_allow() -> None:
    s = load_config_text(BASE, env={})
    assert s.state.redis is None and s.state.on_error == "allow"


def test_on_error_must_be_allow_or_deny() -> None:
    assert "state.on_error" in problems("state: {redis: 'redis://h/0', on_error: maybe}")


def test_a_password_must_come_from_a_reference() -> None:
    text = problems(f"state: {{redis: 'redis://:{PASSWORD}@h:6379/0'}}")
    assert "${REDIS_URL}" in text and PASSWORD not in text
    s = load_config_text(BASE + "state: {redis: '${REDIS_URL}'}", env={"REDIS_URL": f"redis://:{PASSWORD}@h:6379/0"})
    assert PASSWORD in s.secret_values  # redacted from every log line
    assert PASSWORD not in repr(s.state)
    assert describe(s.state.redis.reveal()) == "redis://h:6379/0"  # type: ignore[union-attr]


def test_check_says_limits_are_shared(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(BASE + "state: {redis: '${REDIS_URL}'}\n")
    env = {"REDIS_URL": f"redis://:{PASSWORD}@redis.example:6379/0", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "check", "--config", str(path)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "shared state: redis://redis.example:6379/0 (on_error: allow)" in out.stdout
    assert "1/N" not in out.stdout
    assert PASSWORD not in out.stdout + out.stderr
    path.write_text(BASE)
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "check", "--config", str(path)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert "1/N" in out.stdout


async def test_wrong_password_is_logged_without_it() -> None:
    from structlog.testing import capture_logs

    from proxy.metrics import Metrics
    from proxy.state import SharedState
    from tests.redisserver import RedisServer

    right = secret("redis-right-pass-4Hq9c")
    wrong = secret("redis-wrong-pass-8Zt1m")
    server = RedisServer(args=("--requirepass", right)).start()
    try:
        metrics = Metrics()
        good = SharedState(f"redis://:{right}@127.0.0.1:{server.port}/0", metrics=metrics)
        await good.start()
        assert good.up
        await good.close()
        bad = SharedState(f"redis://:{wrong}@127.0.0.1:{server.port}/0", metrics=metrics)
        with capture_logs() as logs:
            await bad.start()
        await bad.close()
    finally:
        server.stop()
    assert not bad.up
    (line,) = [e for e in logs if e["event"] == "state_unavailable"]
    assert line["op"] == "connect" and "Authentication" in line["reason"]
    assert wrong not in repr(logs) and right not in repr(logs)
    assert line["redis"] == f"redis://127.0.0.1:{server.port}/0"
    assert metrics.state_errors.labels(op="connect")._value.get() == 1

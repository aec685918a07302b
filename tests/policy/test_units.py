"""Pure parts: path globs, durations, config validation, GCRA on a hand-driven clock, Retry-After."""

from __future__ import annotations

from email.utils import formatdate
from typing import Any

import pytest

from proxy.admission import check_lines, worker_share
from proxy.config import RateLimit, load_config_text, parse_duration
from proxy.errors import ConfigError
from proxy.policy import ClientPolicy, RawPath, compile_glob, glob_problem
from proxy.ratelimit import LocalLimitStore, parse_retry_after, retry_after_header
from tests.conftest import config_text, secret

TOKEN = secret("policy-unit-token-7f3a9c1e55")


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("/bots/*", "/bots/12", True),
        ("/bots/*", "/bots/", True),
        ("/bots/*", "/bots", False),
        ("/bots/*", "/bots/12/delete", False),
        # '*' never matches a separator in any spelling (trust round 3, finding 3)
        ("/bots/*", "/bots/12%2Fdelete", False),
        ("/bots/*", "/bots/12%2fdelete", False),
        ("/bots/*/show", "/bots/a%2Fb/show", False),
        ("/deals/**", "/deals/a%2Fb/c%5Cd", True),  # '**' crosses segments in any spelling
        ("/bots/*/show", "/bots/a/b/show", False),
        ("/deals/**", "/deals", True),
        ("/deals/**", "/deals/", True),
        ("/deals/**", "/deals/1/2/3", True),
        ("/deals/**", "/dealsx", False),
        ("/deals/**", "/dealsx/1", False),
        ("/a/**/b", "/a/b", True),
        ("/a/**/b", "/a/x/y/b", True),
        ("/a/**/b", "/a/xb", False),
        ("/a/**/b", "/a/x/b/c", False),
        ("/**", "/anything/at/all", True),
        ("/**", "/", True),
        ("/v1/items.json", "/v1/itemsXjson", False),  # '.' is literal
        ("/v1/items.json", "/v1/items.json", True),
        ("/x/a*z", "/x/abcz", True),
        ("/x/a*z", "/x/ab/cz", False),
        ("/Caps", "/caps", False),  # raw and case-sensitive
        ("/q", "/q%20", False),
    ],
)
def test_glob(pattern: str, path: str, matches: bool) -> None:
    assert glob_problem(pattern) is None
    assert compile_glob(pattern).matches(RawPath(path)) is matches


@pytest.mark.parametrize(
    "pattern", ["bots/*", "/a**", "/a/**b", "/***", "/a?b", "/a#b", "/a b", ""]
)
def test_bad_globs(pattern: str) -> None:
    assert glob_problem(pattern)


def test_policy_names_the_rule_it_missed() -> None:
    from proxy.config import AllowRule

    policy = ClientPolicy(
        "reporting",
        (
            AllowRule("tc", frozenset({"GET", "HEAD"}), ("/bots/*", "/deals/**")),
            AllowRule("ql", None, None),
            AllowRule("tc", frozenset({"POST"}), ("/bots/*/start",)),
        ),
    )
    assert policy.denial("tc", "GET", "/bots/1") is None
    assert policy.denial("tc", "HEAD", "/deals/1/x") is None
    assert policy.denial("tc", "POST", "/bots/1/start") is None
    assert policy.denial("ql", "DELETE", "/anything") is None
    why = policy.denial("tc", "POST", "/bots/1/delete")
    assert why is not None
    assert "allow[0]" in why and "allow[2]" in why and "allow[1]" not in why
    assert "POST /bots/1/delete" in why and "'reporting'" in why
    assert policy.denial("tc", "get", "/bots/1") is not None  # methods are case-sensitive on the wire
    assert policy.denial("other", "GET", "/") is not None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(2, 2.0), (0.5, 0.5), ("500ms", 0.5), ("2s", 2.0), ("1m", 60.0), ("1h", 3600.0), ("1.5s", 1.5), ("3", 3.0)],
)
def test_durations(value: Any, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["2 parsecs", "-1s", "s", True, "1d", [1]])
def test_bad_durations(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def _config(client: dict[str, Any], route_limit: Any = None) -> str:
    route: dict[str, Any] = {"name": "tc", "prefix": "/tc", "upstream": "http://127.0.0.1:9/base"}
    if route_limit is not None:
        route["rate_limit"] = route_limit
    other = {"name": "ql", "prefix": "/ql", "upstream": "http://127.0.0.1:9/q"}
    return config_text([route, other], clients=[{"name": "rep", "token": "${T}", **client}])


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, env={"T": TOKEN})
    return [str(p) for p in info.value.problems]


def test_config_builds_rules_and_limits() -> None:
    s = load_config_text(
        _config(
            {
                "allow": [{"route": "tc", "methods": ["get"], "paths": ["/bots/*"]}],
                "rate_limit": {"requests": 20, "per": "1s", "burst": 5},
            },
            {"requests": 100, "per": "1m", "burst": 10, "max_wait": "2s"},
        ),
        env={"T": TOKEN},
    )
    (c,) = s.clients or ()
    assert c.routes == frozenset({"tc"})  # allow replaces routes
    assert c.allow is not None and c.allow[0].methods == frozenset({"GET"})
    assert c.rate_limit == RateLimit(20, 1.0, 5, 0.0)
    assert s.routes[0].rate_limit == RateLimit(100, 60.0, 10, 2.0)
    lines = check_lines(s)
    assert "route tc: rate_limit 100 per 60s, burst 10, max_wait 2s" in lines
    assert "client rep: allow[0]: tc GET /bots/*" in lines
    assert any("1/N" in line for line in lines)
    assert TOKEN not in "\n".join(lines)


def test_config_problems_are_all_reported() -> None:
    problems = _problems(
        _config(
            {
                "routes": ["tc"],
                "allow": [
                    {"route": "tcc", "methods": ["G ET"], "paths": ["bots/*", "/a**"]},
                    {"route": "ql", "methods": [], "paths": []},
                ],
                "rate_limit": {"requests": 5, "per": 1, "max_wait": "1s"},
            }
        )
    )
    text = "\n".join(problems)
    assert "clients[0].allow" in text and "either 'routes' or 'allow'" in text
    assert "clients[0].allow[0].route" in text and "did you mean 'tc'" in text
    assert "clients[0].allow[0].methods[0]" in text
    assert "clients[0].allow[0].paths[0]" in text and "clients[0].allow[0].paths[1]" in text
    assert "clients[0].allow[1].methods" in text and "clients[0].allow[1].paths" in text
    assert "clients[0].rate_limit.max_wait" in text and "never queue" in text


@pytest.mark.parametrize(
    ("limit", "where"),
    [
        ({"requests": 0, "per": 1}, "requests"),
        ({"requests": 1, "per": "fast"}, "per"),
        ({"requests": 1, "per": "0s"}, "per"),
        ({"requests": 1, "per": 1, "burst": -1}, "burst"),
        ({"requests": 1, "per": 1, "max_wait": "-2s"}, "max_wait"),
        ({"requests": 1, "per": 1, "bursty": 1}, "bursty"),
    ],
)
def test_bad_route_limits(limit: dict[str, Any], where: str) -> None:
    problems = _problems(_config({}, limit))
    assert any(p.startswith(f"routes[0].rate_limit.{where}") for p in problems), problems


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_gcra_burst_zero_spaces_admissions() -> None:
    clock = Clock()
    store = LocalLimitStore(clock)
    first = await store.take("k", 0.5, 0, 0.0)
    assert first.admitted and first.wait == 0
    refused = await store.take("k", 0.5, 0, 0.0)
    assert not refused.admitted and refused.retry_after == pytest.approx(0.5)
    clock.now += 0.3
    refused = await store.take("k", 0.5, 0, 0.0)
    assert not refused.admitted and refused.retry_after == pytest.approx(0.2)
    clock.now += 0.2
    assert (await store.take("k", 0.5, 0, 0.0)).admitted


async def test_gcra_burst_and_exact_count() -> None:
    clock = Clock()
    store = LocalLimitStore(clock)
    admitted = 0
    for _ in range(1000):  # 10 s at 100 attempts/s against 5 per second, burst 3
        admitted += (await store.take("k", 0.2, 3, 0.0)).admitted
        clock.now += 0.01
    assert admitted == 4 + 49  # burst + 1 at once, then one per 0.2 s over 9.99 s


async def test_gcra_queue_reserves_in_order_within_max_wait() -> None:
    clock = Clock()
    store = LocalLimitStore(clock)
    waits = [await store.take("k", 0.1, 0, 0.35) for _ in range(6)]
    assert [d.admitted for d in waits] == [True, True, True, True, False, False]
    assert [round(d.wait, 6) for d in waits[:4]] == [0, 0.1, 0.2, 0.3]
    assert waits[4].retry_after == pytest.approx(0.4)  # a refusal reserved nothing
    assert waits[5].retry_after == pytest.approx(0.4)


async def test_pause_blocks_then_resumes_without_burst() -> None:
    clock = Clock()
    store = LocalLimitStore(clock)
    await store.pause("k", 2.0)
    d = await store.take("k", 0.1, 5, 0.0)
    assert not d.admitted and d.retry_after == pytest.approx(2.0)
    d = await store.take("k", 0.1, 5, 3.0)
    assert d.admitted and d.wait == pytest.approx(2.0)
    d = await store.take("k", 0.1, 5, 3.0)
    assert d.admitted and d.wait == pytest.approx(2.1)  # queued behind it, T apart
    clock.now += 5
    assert [(await store.take("k", 0.1, 5, 0.0)).admitted for _ in range(7)].count(True) == 6


def test_retry_after_parsing() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") is None
    assert parse_retry_after("99999999") == 3600.0  # capped
    now = 1_700_000_000.0
    date = formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=lambda: now) == pytest.approx(30.0)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=lambda: now) == 0.0
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(1.0) == "1"
    assert retry_after_header(1.2) == "2"
    assert retry_after_header(9.99) == "10"


def test_worker_share_never_exceeds_the_configured_burst() -> None:
    assert worker_share(RateLimit(100, 60.0, 10), 1) == (0.6, 10)
    interval, burst = worker_share(RateLimit(100, 60.0, 10), 4)
    assert interval == pytest.approx(2.4) and burst == 1  # 4 * (1 + 1) = 8 <= 11
    assert worker_share(RateLimit(10, 1.0, 0), 2) == (0.2, 0)
    for workers in range(1, 9):
        for b in range(0, 20):
            _, share = worker_share(RateLimit(10, 1.0, b), workers)
            assert workers * (share + 1) <= max(b + 1, workers)

"""Issue 19, findings 3, 4 and 10: the pure functions behind the rules.

``proxy.spellings`` (every way a server may read a piece of a URL),
``proxy.routes.has_dot_segment`` / ``check_request_target`` (legacy
dot-segment spellings, NUL after decoding) and ``proxy.policy`` (``*`` and
hidden separators, method overrides). The end-to-end proof is in
``test_round3_rules.py``.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.config import AllowRule
from proxy.errors import BadRequest
from proxy.policy import ClientPolicy, RawPath, compile_glob, glob_problem, method_overrides
from proxy.routes import check_request_target, has_dot_segment
from proxy.spellings import MAX_DECODE_ROUNDS, TooDeep, has_separator, views


def test_views_decode_each_round_leniently() -> None:
    assert list(views("abc")) == ["abc"]
    assert list(views("%252e")) == ["%252e", "%2e", "."]
    assert list(views("%c0%ae")) == ["%c0%ae", "."]  # overlong UTF-8
    assert list(views("%u002E")) == ["%u002E", "."]  # IIS %u
    assert list(views("\uff0e")) == ["."]  # NFKC
    assert list(views("%EF%25BC%8E")) == ["%EF%25BC%8E", "\udcef%BC\udc8e", "."]  # mixed depth
    assert list(views("%%32%65")) == ["%%32%65", "%2e", "."]  # the hex digits encoded
    assert list(views("caf%C3%A9")) == ["caf%C3%A9", "caf\u00e9"]
    with pytest.raises(TooDeep):
        list(views("%" + "25" * MAX_DECODE_ROUNDS + "2e"))
    assert list(views("%" + "25" * (MAX_DECODE_ROUNDS - 1) + "2e"))[-1] == "."


@pytest.mark.parametrize(
    "segment",
    [
        "x%2Fy", "x%2fy", "x\\y", "x%5Cy", "x%5cy", "x%252Fy", "x%25252fy", "x%255cy",
        "x\uff0fy", "x\uff3cy", "x\ufe68y", "x%EF%BC%8Fy", "x%ef%bc%bcy", "x%25EF%25BC%258Fy",
        "x%u002fy", "x%U005Cy", "x%c0%afy", "x%e0%80%afy", "x%c1%9cy", "x%%32%46y", "x%2%46y",
        "%" + "25" * 20 + "2F",  # too deep to tell: counts as a separator
    ],
)
def test_hidden_separators(segment: str) -> None:
    assert has_separator(segment)


@pytest.mark.parametrize("segment", ["x", "x%20y", "caf%C3%A9", "caf\u00e9", "100%", "%zz", "a;b=1", "x%2Ey", "\u2215"])
def test_plain_segments(segment: str) -> None:
    assert not has_separator(segment)


@given(st.lists(st.sampled_from(["a", "%", "2", "5", "F", "f", "C", "\\", "u", "0", "\uff0f", "%EF%BC%8F", "%c0%af"]), max_size=8))
def test_no_separator_means_none_after_any_decoding(parts: list[str]) -> None:
    """An independent decoder (stdlib unquote, to a fixpoint, then NFKC) finds none either."""
    segment = "".join(parts)
    if has_separator(segment):
        return
    data = segment.encode()
    for _ in range(MAX_DECODE_ROUNDS + 1):
        text = unicodedata.normalize("NFKC", data.decode("utf-8", "replace"))
        assert "/" not in text and "\\" not in text, segment
        data = unquote_to_bytes(data)


@pytest.mark.parametrize(
    "path",
    [
        "/a/..%00", "/a/..%09/b", "/a/..%20", "/a/..%0d%0a", "/a/.%00", "/a/..%2500", "/a/..%00;x",
        "/a/%c0%ae%c0%ae", "/a/%C0%AE%C0%AE/b", "/a/%c0%ae", "/a/%e0%80%ae%e0%80%ae",
        "/a/%f0%80%80%ae%f0%80%80%ae", "/a/%u002e%u002e", "/a/%U002E%U002E", "/a/%25u002e%25u002e",
        "/a/\uff0e\uff0e", "/a/\uff0e", "/a/%EF%BC%8E%EF%BC%8E", "/a/%25EF%25BC%258E%25EF%25BC%258E",
        "/a/%EF%BC%8E%EF%BC%8E;x", "/a/x%2f%c0%ae%c0%ae%2fy", "/a/x%EF%BC%8F..%EF%BC%8Fy", "/a/\u2025",
        "/a/\ufe52\ufe52",
    ],
)
def test_legacy_dot_segments_refused(path: str) -> None:
    assert has_dot_segment(path)
    with pytest.raises(BadRequest, match="dot-segment"):
        check_request_target("GET", path)


@pytest.mark.parametrize("path", ["/a/...", "/a/x..y", "/a/..x", "/a/.%20b", "/a/%2e%2e%2e", "/a/\uff0e\uff0e\uff0e"])
def test_dots_in_names_still_pass(path: str) -> None:
    assert not has_dot_segment(path)


@pytest.mark.parametrize(
    "target", ["/a%00", "/a%2500", "/a%252500", "/a%u0000", "/a%c0%80", "/a?q=%00", "/a?q=x%2500", "/a?%c0%80"]
)
def test_nul_after_decoding_refused(target: str) -> None:
    with pytest.raises(BadRequest, match="NUL"):
        check_request_target("GET", target)


def test_targets_without_nul_keep_their_bytes() -> None:
    assert check_request_target("GET", "/a%20b?q=%25x&r=%C3%A9") == ("/a%20b", "q=%25x&r=%C3%A9")


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("/pub/*", "/pub/x%2Fadmin%2Fdelete-all", False),
        ("/pub/*", "/pub/x\uff0fadmin", False),
        ("/pub/*", "/pub/x%EF%BC%8Fadmin", False),
        ("/pub/*", "/pub/x%255Cadmin", False),
        ("/pub/*", "/pub/x%20y", True),
        ("/pub/*.json", "/pub/a%2F.json", False),
        ("/pub/*/x", "/pub/a%5Cb/x", False),
        ("/**/b*/**", "/b%2Fx/bq", True),  # '**' takes the hidden separator, 'b*' the clean segment
        ("/**/b*", "/q/b%2Fx", False),
        ("/a%2Fb", "/a%2Fb", True),  # a literal segment is the rule author's own spelling
    ],
)
def test_star_segments(pattern: str, path: str, matches: bool) -> None:
    assert glob_problem(pattern) is None
    assert compile_glob(pattern).matches(RawPath(path)) is matches


def test_a_star_segment_that_can_never_match_is_a_config_problem() -> None:
    for pattern in ["/a%2F*", "/*%5cx", "/x\\*"]:
        problem = glob_problem(pattern)
        assert problem is not None and "never" in problem


def test_method_overrides_every_spelling() -> None:
    headers = [
        ("X-HTTP-Method-Override", "DELETE"),
        ("x_http_method", " put , patch "),
        ("X-METHOD-OVERRIDE", "post"),
        ("X-Other", "TRACE"),
        ("X-HTTP-Method-Override", ""),
    ]
    assert method_overrides(headers, "") == ("DELETE", "PUT", "PATCH", "POST")
    for query, expected in [
        ("_method=DELETE", ("DELETE",)),
        ("a=1&_method=put&_method=patch", ("PUT", "PATCH")),
        ("%5Fmethod=DELETE", ("DELETE",)),
        ("%255fmethod=DELETE", ("DELETE",)),
        ("_%6Dethod=DELETE", ("DELETE",)),
        ("_METHOD=DELETE", ("DELETE",)),
        (".method=DELETE", ("DELETE",)),  # PHP reads '.' in a name as '_'
        ("a=1;_method=DELETE", ("DELETE",)),
        ("_method=%44ELETE", ("%44ELETE", "DELETE")),  # every reading counts
        ("_method=", ()),
        ("method=DELETE&x_method=PUT&q=_method", ()),
    ]:
        assert method_overrides([], query) == expected, query


def test_overrides_must_be_allowed_by_the_same_rule() -> None:
    policy = ClientPolicy(
        "c",
        (
            AllowRule("r", frozenset({"GET", "HEAD"}), ("/pub/*",)),
            AllowRule("r", frozenset({"POST"}), ("/pub/*/start",)),
        ),
    )
    assert policy.denial("r", "GET", "/pub/x") is None
    assert policy.denial("r", "GET", "/pub/x", ("HEAD",)) is None
    why = policy.denial("r", "GET", "/pub/x", ("DELETE",))
    assert why is not None and "overridden to DELETE" in why and "allow[0]" in why and "allow[1]" in why
    assert policy.denial("r", "GET", "/pub/x/start", ("POST",)) is not None  # no single rule has both
    why = policy.denial("r", "GET", "/pub/x", ("%44ELETE", "DELETE", "SECRET=ABC123 TOKEN"))
    assert why is not None and "%44" not in why and "SECRET" not in why  # only method names are echoed
    assert "overridden to (a value that is not a method name), DELETE by" in why
    assert policy.denial("r", "POST", "/pub/x/start") is None
    assert ClientPolicy("d", (AllowRule("r", None, ("/pub/*",)),)).denial("r", "GET", "/pub/x", ("DELETE",)) is None


def test_compiled_rule_takes_a_raw_string_path_too() -> None:
    """Other checks (the AWS operation rules) call ``allows`` with the raw path as a string."""
    (rule,) = ClientPolicy("c", (AllowRule("r", frozenset({"GET"}), ("/pub/*",)),)).rules
    assert rule.allows("GET", "/pub/x")
    assert not rule.allows("GET", "/pub/x%2Fadmin")
    assert not rule.allows("GET", "/pub/x", ("DELETE",))
    assert rule.allows("GET", RawPath("/pub/x"), ("GET",))


def test_signet_config_names_a_star_glob_that_can_never_match() -> None:
    from proxy.config import load_config_text
    from proxy.errors import ConfigError
    from tests.conftest import config_text, secret

    token = secret("round3-config-token-6d2a9f0b1c")
    text = config_text(
        [{"name": "up", "prefix": "/up", "upstream": "http://127.0.0.1:9/base"}],
        clients=[{"name": "c", "token": "${T}", "allow": [{"route": "up", "paths": ["/ok/*", "/a%2F*"]}]}],
    )
    with pytest.raises(ConfigError) as info:
        load_config_text(text, env={"T": token})
    problems = [str(p) for p in info.value.problems]
    assert len(problems) == 1 and "paths" in problems[0] and "never match" in problems[0], problems

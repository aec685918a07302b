"""Request-target checks and prefix matching (pure functions, property-tested)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.errors import BadRequest
from proxy.routes import PrefixTable, check_request_target, has_dot_segment


def test_segment_boundary_and_longest_prefix() -> None:
    table = PrefixTable([("/a", "A"), ("/a/b", "AB"), ("/abc", "ABC")])
    assert table.match("/a") == ("A", "")
    assert table.match("/a/") == ("A", "/")
    assert table.match("/a/x") == ("A", "/x")
    assert table.match("/a/b/c") == ("AB", "/c")
    assert table.match("/a/bc") == ("A", "/bc")
    assert table.match("/abc/d") == ("ABC", "/d")
    assert table.match("/ab") is None
    assert table.match("/") is None


def test_root_prefix_matches_everything_last() -> None:
    table = PrefixTable([("/", "ROOT"), ("/a", "A")])
    assert table.match("/a/x") == ("A", "/x")
    assert table.match("/zzz") == ("ROOT", "/zzz")


@pytest.mark.parametrize(
    "path",
    [
        "/a/../b",
        "/..",
        "/a/.",
        "/a/%2e%2e/b",
        "/a/%2E%2e",
        "/a/.%2E/b",
        "/a/%252e%252e/b",
        "/a/x%2f..%2fy",
        "/a/x%5c..%5cy",
        "/a/..\\b",
        "/a/%25252e%25252e",
    ],
)
def test_dot_segments_refused(path: str) -> None:
    assert has_dot_segment(path)
    with pytest.raises(BadRequest):
        check_request_target("GET", path)


@pytest.mark.parametrize(
    "path", ["/a/b.c", "/a/...", "/a/.well-known", "/a/%2e%2e%2e", "/a/x..y", "/v1.2/x"]
)
def test_dots_inside_names_allowed(path: str) -> None:
    assert not has_dot_segment(path)


def test_absolute_form_connect_and_asterisk_refused() -> None:
    for method, target in [("GET", "http://evil/x"), ("CONNECT", "evil:443"), ("OPTIONS", "*")]:
        with pytest.raises(BadRequest):
            check_request_target(method, target)


def test_split_keeps_raw_bytes() -> None:
    assert check_request_target("GET", "/a/b%2Fc?z=1&a=%zz&&x") == ("/a/b%2Fc", "z=1&a=%zz&&x")


@given(st.lists(st.text(alphabet="abc./%2eE", max_size=6), max_size=5))
def test_no_decoded_dot_segment_passes(segments: list[str]) -> None:
    from urllib.parse import unquote

    path = "/" + "/".join(segments)
    if not has_dot_segment(path):
        for seg in path.split("/"):
            once, twice = unquote(seg), unquote(unquote(seg))
            assert once not in (".", "..") and twice not in (".", "..")

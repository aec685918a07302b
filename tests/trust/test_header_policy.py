"""The one header policy (proxy/headers.py), as pure functions.

The raw-socket tests in test_round2.py prove it end to end; these pin the
rules themselves, including the response side the pipeline uses.
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

from multidict import CIMultiDict

from proxy.auth import SCHEMES, all_injected_headers
from proxy.headers import (
    ALWAYS_STRIPPED,
    connection_named,
    header_key,
    response_headers,
    stripped_names,
    upstream_headers,
)


def fake_route(**extra: Any) -> Any:
    stripped = stripped_names(extra.pop("strip_headers", ()), extra.pop("scheme_headers", ()))
    return SimpleNamespace(stripped=stripped, set_headers=(), **extra)


def test_names_compare_case_insensitively_with_underscore_as_dash() -> None:
    assert header_key("X_Api_Key") == header_key("x-api-key") == "x-api-key"
    assert header_key("API_DIGEST") == header_key("Api-Digest")


def test_every_name_a_registered_scheme_injects_is_stripped() -> None:
    names = stripped_names((), ())
    assert SCHEMES  # the registry is populated: the check below is not vacuous
    for name in all_injected_headers():
        assert header_key(name) in names, name
    for name in ("Authorization", "Cookie", "X-Signet-Token", "Proxy-Authorization", "Connection"):
        assert header_key(name) in ALWAYS_STRIPPED


def test_every_connection_header_counts() -> None:
    headers = CIMultiDict(
        [("Connection", "keep-alive"), ("connection", "X-Hop2, x_hop3"), ("X-Hop2", "a"), ("X-Hop3", "b")]
    )
    assert connection_named(headers) == {"keep-alive", "x-hop2", "x-hop3"}
    out = upstream_headers(headers, fake_route(), "rid")
    assert list(out.items()) == [("X-Request-Id", "rid")]


def test_underscore_spellings_of_stripped_names_never_reach_the_upstream() -> None:
    headers = CIMultiDict(
        [("X_Api_Key", "a"), ("api-digest", "b"), ("X_SIGNET_TOKEN", "c"), ("X_Route", "d"), ("X-Keep", "e")]
    )
    out = upstream_headers(headers, fake_route(strip_headers=["X-Route"]), "rid")
    assert list(out.items()) == [("X-Keep", "e"), ("X-Request-Id", "rid")]


def test_client_info_is_replaced_not_appended() -> None:
    headers = CIMultiDict(
        [
            ("Host", "signet:8080"),
            ("X-Forwarded-For", "6.6.6.6"),
            ("X_Forwarded_For", "7.7.7.7"),
            ("Forwarded", "for=6.6.6.6"),
            ("X-Real-IP", "6.6.6.6"),
        ]
    )
    out = upstream_headers(headers, fake_route(), "rid", ("::1", "http"))
    assert out.getall("X-Forwarded-For") == ["::1"]
    assert out.getall("X-Real-IP") == ["::1"]
    assert out.getall("Forwarded") == ['for="[::1]";proto=http;host="signet:8080"']
    assert out["X-Forwarded-Host"] == "signet:8080" and out["X-Forwarded-Proto"] == "http"


def test_response_headers_drop_hop_by_hop_and_every_connection_named_one() -> None:
    upstream = CIMultiDict(
        [
            ("Content-Type", "text/plain"),
            ("Connection", "keep-alive"),
            ("Connection", "X-Internal"),
            ("X-Internal", "secret-route"),
            ("Transfer-Encoding", "chunked"),
            ("Set-Cookie", "a=b"),
        ]
    )
    assert list(response_headers(upstream).items()) == [("Content-Type", "text/plain"), ("Set-Cookie", "a=b")]


def test_readme_names_every_header_a_scheme_injects() -> None:
    """The docs' "Always stripped" paragraph (docs/configuration.md) lists what the registry says."""
    from tests.docs.pages import page

    readme = page("configuration.md")
    paragraph = readme.split("**Always stripped from the client's request**", 1)[1].split("\n\n", 1)[0]
    listed = {name.lower() for name in re.findall(r"`([A-Za-z0-9_-]+)`", paragraph)}
    missing = sorted(set(all_injected_headers()) - listed)  # the registry's names are lower-case
    assert missing == [], missing

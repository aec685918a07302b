"""Each vendor scheme expressed as an ``hmac`` recipe produces what the built-in produces.

The YAML below is what the README shows. ``${NAME}`` references are resolved
here the way the config loader does (the value becomes a ``Secret``).
"""

from __future__ import annotations

import re
import string
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.auth import SCHEMES, SchemeContext, UpstreamRequest
from proxy.clock import FrozenClock
from proxy.secret import Secret

RECIPES = {
    "threeclicks-simple": """
scheme: hmac
vars: {api_key: "${API_KEY}", api_secret: "${API_SECRET}"}
headers: {X-Api-Key: "{api_key}", X-Api-Secret: "{api_secret}"}
""",
    "threeclicks-strict": """
scheme: hmac
vars: {api_key: "${API_KEY}", api_secret: "${API_SECRET}"}
message: "{api_key}{api_secret}{method_lower}{body_or_empty_json}{timestamp}"
key: "{api_secret}"
algorithm: sha256
encoding: hex
headers:
  X-Api-Key: "{api_key}"
  X-Api-Timestamp: "{timestamp}"
  X-Api-Signature: "{signature}"
""",
    "threecommas": """
scheme: hmac
vars: {api_key: "${API_KEY}", secret: "${API_SECRET}"}
message: "{path_query}{body}"
key: "{secret}"
headers: {Apikey: "{api_key}", Signature: "{signature}"}
""",
    "apliiq": """
scheme: hmac
vars: {app_id: "${API_KEY}", shared_secret: "${API_SECRET}"}
message: "{app_id}{timestamp}{nonce}{body_base64}"
key: "{shared_secret}"
encoding: base64
headers:
  Authorization: "x-apliiq-auth {timestamp}:{signature}:{app_id}:{nonce}"
""",
    "quicklizard": """
scheme: hmac
vars: {api_key: "${API_KEY}", api_secret: "${API_SECRET}"}
message: "{path}{query}{body}{api_secret}"   # no key: a plain SHA-256
query: {qts: "{timestamp_ms}"}
headers: {API_KEY: "{api_key}", API_DIGEST: "{signature}"}
""",
}

BUILTIN_FIELDS = {
    "threeclicks-simple": ("api_key", "api_secret"),
    "threeclicks-strict": ("api_key", "api_secret"),
    "threecommas": ("api_key", "secret"),
    "apliiq": ("app_id", "shared_secret"),
    "quicklizard": ("api_key", "api_secret"),
}
ENV = {
    "API_KEY": "key-0d66f4f9-{not}-%s",
    "API_SECRET": "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j",
}
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def resolve(value: Any) -> Any:
    """A string that uses a ``${NAME}`` reference becomes a Secret (like the config loader)."""
    if isinstance(value, dict):
        return {k: resolve(v) for k, v in value.items()}
    if isinstance(value, str) and _REF.search(value):
        return Secret(_REF.sub(lambda m: ENV[m.group(1)], value))
    return value


def pair(name: str, clock: FrozenClock) -> tuple[Any, Any]:
    ctx = SchemeContext(route=name, clock=clock)
    cls = SCHEMES[name]
    key_field, secret_field = BUILTIN_FIELDS[name]
    builtin = cls(
        cls.Options.model_validate(
            {"scheme": name, key_field: ENV["API_KEY"], secret_field: ENV["API_SECRET"]}
        ),
        ctx,
    )
    recipe_cls = SCHEMES["hmac"]
    recipe = recipe_cls(recipe_cls.Options.model_validate(resolve(yaml.safe_load(RECIPES[name]))), ctx)
    return builtin, recipe


def assert_same(builtin: Any, recipe: Any, request: UpstreamRequest) -> None:
    a = builtin.sign(request)
    b = recipe.sign(request)
    assert a.headers == b.headers
    assert a.query == b.query


FIXED_REQUESTS = [
    UpstreamRequest("GET", "/api-user/v1/style/basic/detail", "style_number=SO00123", {}, b""),
    UpstreamRequest("PUT", "/api-user/v1/style/ecommerce/tags-create", "", {}, b'{"name": "A"}'),
    UpstreamRequest("POST", "/public/api/ver1/users/change_mode", "mode=paper", {}, b""),
    UpstreamRequest("POST", "/x", "", {}, '{"n":"Zoë 東京"}'.encode()),
    UpstreamRequest("GET", "/style/ABC%2F123", "a=%2F&qts=1&b", {}, b""),
    UpstreamRequest("PATCH", "/bin", "q%74s=3", {}, b"\xff\x00\xfe"),
    UpstreamRequest("DELETE", "/", "", {}, None),
]


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_equals_builtin_fixed(name: str) -> None:
    clock = FrozenClock(1414562585.331, nonce="0123456789abcdef0123456789abcdef")
    builtin, recipe = pair(name, clock)
    assert recipe.needs_body is builtin.needs_body
    assert set(recipe.injected_headers) == set(builtin.injected_headers)
    for t in (1414562585.331, 1717128481.0, 1.9996, 1700000000.0005):
        clock.t = t
        for request in FIXED_REQUESTS:
            assert_same(builtin, recipe, request)


def test_recipe_secret_headers_follow_secret_vars() -> None:
    builtin, recipe = pair("threeclicks-simple", FrozenClock())
    request = UpstreamRequest("GET", "/", "", {})
    # the recipe's key came from a reference too, so both headers are marked
    assert builtin.sign(request).secret_headers <= recipe.sign(request).secret_headers
    assert "X-Api-Secret" in recipe.sign(request).secret_headers


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_options_hide_secrets(name: str) -> None:
    _, recipe = pair(name, FrozenClock())
    for text in (repr(recipe.options), repr(recipe), recipe.options.model_dump_json()):
        assert ENV["API_SECRET"] not in text and ENV["API_KEY"] not in text


# ----------------------------------------------------------------- hypothesis

_PCHAR = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@"
segment = st.lists(
    st.one_of(st.sampled_from(list(_PCHAR)), st.sampled_from(["%2F", "%20", "%C3%A9", "%25"])),
    max_size=8,
).map("".join)
paths = st.lists(segment, min_size=1, max_size=5).map(lambda s: "/" + "/".join(s))
_QCHAR = string.ascii_letters + string.digits + "-._~!$'()*+,;:@/?%="
param = st.one_of(
    st.text(alphabet=_QCHAR, max_size=12),
    st.sampled_from(["qts=1", "q%74s=2", "qts", "%71ts=x", "qtsx=1", "a=%2F"]),
)
queries = st.lists(param, max_size=5).map("&".join)
bodies = st.one_of(
    st.binary(max_size=256),
    st.text(max_size=64).map(str.encode),
    st.just(b""),
    st.none(),
)
methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "get", "Options"])
times = st.one_of(
    st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False, allow_infinity=False),
    st.integers(min_value=0, max_value=4_102_444_800_000).map(lambda ms: ms / 1000),
    # just below a second boundary: seconds must follow the rounded milliseconds
    st.integers(min_value=0, max_value=4_102_444_800).map(lambda s: s + 0.9996),
)
nonces = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)


@pytest.mark.parametrize("name", sorted(RECIPES))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=methods, path=paths, query=queries, body=bodies, t=times, nonce=nonces)
def test_recipe_equals_builtin_generated(
    name: str, method: str, path: str, query: str, body: bytes | None, t: float, nonce: str
) -> None:
    builtin, recipe = pair(name, FrozenClock(t, nonce=nonce))
    assert_same(builtin, recipe, UpstreamRequest(method, path, query, {}, body))

"""The five vendor schemes against the vendors' published examples and hand-derived vectors.

``tests/vectors/published.json`` holds the examples printed in the vendors'
documentation; the other ``tests/vectors/*.json`` files hold vectors derived by
hand from each vendor's formula, the digests computed with ``openssl dgst``
(see each file's ``source``), so they do not depend on this code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.auth import SCHEMES, AuthResult, SchemeContext, UpstreamRequest, all_injected_headers
from proxy.auth.apliiq import Apliiq
from proxy.auth.base import set_query_params
from proxy.auth.digest import unix_ms, unix_seconds, unix_times
from proxy.auth.quicklizard import Quicklizard
from proxy.auth.threeclicks import ThreeClicksSimple, ThreeClicksStrict
from proxy.auth.threecommas import ThreeCommas
from proxy.clock import FrozenClock
from proxy.config import load_config_text
from proxy.secret import Secret

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
PUBLISHED = json.loads((VECTORS / "published.json").read_text())
VECTOR_FILES = [
    "threeclicks_simple.json",
    "threeclicks_strict.json",
    "threecommas.json",
    "apliiq.json",
    "quicklizard.json",
]


def run(coro: Any) -> Any:
    """Drive a coroutine that never suspends (every signing scheme's ``apply``)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise AssertionError("apply() suspended")


def build(options: dict[str, Any], clock: Any = None) -> Any:
    cls = SCHEMES[options["scheme"]]
    ctx = SchemeContext(route="test", clock=clock or FrozenClock())
    return cls(cls.Options.model_validate(options), ctx)


def _bytes(case: dict[str, Any], key: str) -> bytes:
    if key + "_hex" in case:
        return bytes.fromhex(case[key + "_hex"])
    return case[key].encode()


def _request(case: dict[str, Any]) -> UpstreamRequest:
    return UpstreamRequest(case["method"], case["path"], case["query"], {}, _bytes(case, "body"))


# ------------------------------------------------------------------ published


def test_threecommas_published_example() -> None:
    v = PUBLISHED["threecommas"]
    assert v["source"]
    scheme = build({"scheme": "threecommas", "api_key": v["api_key"], "secret": v["secret"]})
    req = UpstreamRequest(v["method"], v["path"], v["query"], {}, b"")
    message = scheme.string_to_sign(req.path, req.query, req.body)
    assert message == v["message"].encode()
    assert scheme.signature(message) == v["signature"]
    result = run(scheme.apply(req))
    assert result.headers == {"Apikey": v["api_key"], "Signature": v["signature"]}
    assert result.query is None


def test_quicklizard_published_example_through_the_scheme() -> None:
    v = PUBLISHED["quicklizard"]
    assert v["source"]
    clock = FrozenClock(v["time"])
    scheme = build({"scheme": "quicklizard", "api_key": v["api_key"], "api_secret": v["api_secret"]}, clock)
    req = UpstreamRequest(v["method"], v["path"], v["client_query"], {}, b"")
    result = run(scheme.apply(req))
    assert result.query == v["query"]
    assert result.headers == {"API_KEY": v["api_key"], "API_DIGEST": v["signature"]}
    # the intermediate steps, as the doc spells them
    assert scheme.timestamped_query(v["client_query"], 1414562585331) == v["query"]
    message = scheme.string_to_sign(v["path"], v["query"], b"")
    assert message == (v["path"] + v["query"] + v["api_secret"]).encode()
    assert scheme.signature(message) == v["signature"]


def test_float_clock_to_milliseconds_rounds() -> None:
    assert int(1.001 * 1000) == 1000  # truncation would lose a millisecond: round()
    assert unix_ms(1.001) == 1001
    assert unix_ms(1414562585.331) == 1414562585331
    assert unix_times(1414562585.331) == (1414562585, 1414562585331)
    assert unix_seconds(1717128481.7) == 1717128481
    # seconds follow the rounded milliseconds, so the two never disagree
    assert unix_times(1.9996) == (2, 2000)


# ----------------------------------------------------- hand-derived vectors


def _vector_cases() -> list[Any]:
    out = []
    for fname in VECTOR_FILES:
        doc = json.loads((VECTORS / fname).read_text())
        assert doc["source"]
        for case in doc["cases"]:
            out.append(pytest.param(doc, case, id=f"{doc['scheme']}-{case['name']}"))
    return out


@pytest.mark.parametrize(("doc", "case"), _vector_cases())
def test_hand_derived_vectors(doc: dict[str, Any], case: dict[str, Any]) -> None:
    clock = FrozenClock(doc["clock"]["time"], nonce=doc["clock"]["nonce"])
    scheme = build(doc["options"], clock)
    req = _request(case)
    result = run(scheme.apply(req))
    assert result.headers == case["headers"]
    assert result.query == case["query_out"]
    if "string_to_sign" in case or "string_to_sign_hex" in case:
        expected = _bytes(case, "string_to_sign")
        if isinstance(scheme, ThreeClicksStrict):
            ts = int(case["headers"]["X-Api-Timestamp"])
            assert scheme.string_to_sign(req.method, req.body, ts) == expected
        elif isinstance(scheme, ThreeCommas):
            assert scheme.string_to_sign(req.path, req.query, req.body) == expected
        elif isinstance(scheme, Apliiq):
            rts, _, _, state = case["headers"]["Authorization"].split(" ", 1)[1].split(":")
            assert scheme.string_to_sign(int(rts), state, req.body) == expected
        elif isinstance(scheme, Quicklizard):
            assert scheme.string_to_sign(req.path, result.query, req.body) == expected


def test_vector_tables_cover_the_required_kinds() -> None:
    for fname in VECTOR_FILES:
        doc = json.loads((VECTORS / fname).read_text())
        names = {c["name"] for c in doc["cases"]}
        assert {
            "get_with_query",
            "json_post",
            "empty_body_post",
            "unicode_body",
            "encoded_path",
            "binary_body",
        } <= names, fname


# ------------------------------------------------ independent formula checks

UNICODE_BODY = "{\"name\":\"Zoë \u2013 東京\"}".encode()
NOT_UTF8 = b"\xff\xfe\x00\x80\xc3("


@pytest.mark.parametrize("body", [b"", b'{"a":1}', UNICODE_BODY, NOT_UTF8])
@pytest.mark.parametrize("method", ["GET", "post", "Delete"])
def test_threeclicks_strict_formula(body: bytes, method: str) -> None:
    clock = FrozenClock(1717127589.999)
    scheme = build({"scheme": "threeclicks-strict", "api_key": "k1", "api_secret": "s3cr3t"}, clock)
    result = run(scheme.apply(UpstreamRequest(method, "/a%2Fb", "x=1", {}, body)))
    ts = "1717127589"  # .999 s is still that second (ms 1717127589999)
    message = b"k1" + b"s3cr3t" + method.lower().encode() + (body or b"{}") + ts.encode()
    assert result.headers == {
        "X-Api-Key": "k1",
        "X-Api-Timestamp": ts,
        "X-Api-Signature": hmac.new(b"s3cr3t", message, hashlib.sha256).hexdigest(),
    }
    assert re.fullmatch(r"[0-9a-f]{64}", result.headers["X-Api-Signature"])


def test_threeclicks_body_none_is_empty() -> None:
    scheme = build({"scheme": "threeclicks-strict", "api_key": "k", "api_secret": "s"})
    assert scheme.string_to_sign("GET", None, 5) == b"ksget{}5"


@pytest.mark.parametrize("body", [b"", b'{"a":1}', UNICODE_BODY, NOT_UTF8])
def test_threecommas_formula(body: bytes) -> None:
    scheme = build({"scheme": "threecommas", "api_key": "K", "secret": "S"})
    for path, query in [("/p/ABC%2F123", "a=1&b=%20"), ("/p", "")]:
        result = run(scheme.apply(UpstreamRequest("POST", path, query, {}, body)))
        message = path.encode() + (b"?" + query.encode() if query else b"") + body
        assert result.headers["Signature"] == hmac.new(b"S", message, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("body", [b"", b'{"a":1}', UNICODE_BODY, NOT_UTF8])
def test_apliiq_formula(body: bytes) -> None:
    clock = FrozenClock(1700000000.4, nonce="ab" * 16)
    scheme = build({"scheme": "apliiq", "app_id": "APP", "shared_secret": "SS"}, clock)
    result = run(scheme.apply(UpstreamRequest("POST", "/orders", "", {}, body)))
    message = b"APP" + b"1700000000" + b"ab" * 16 + (base64.b64encode(body) if body else b"")
    sig = base64.b64encode(hmac.new(b"SS", message, hashlib.sha256).digest()).decode()
    assert result.headers == {"Authorization": f"x-apliiq-auth 1700000000:{sig}:APP:{'ab' * 16}"}


@pytest.mark.parametrize("body", [b"", b'{"a":1}', UNICODE_BODY, NOT_UTF8])
def test_quicklizard_formula(body: bytes) -> None:
    clock = FrozenClock(1700000000.0)
    scheme = build({"scheme": "quicklizard", "api_key": "K", "api_secret": "S"}, clock)
    result = run(scheme.apply(UpstreamRequest("PUT", "/x/A%2FB", "z=1&a=2", {}, body)))
    assert result.query == "z=1&a=2&qts=1700000000000"
    message = b"/x/A%2FB" + b"z=1&a=2&qts=1700000000000" + body + b"S"
    assert result.headers["API_DIGEST"] == hashlib.sha256(message).hexdigest()


# ------------------------------------------------------------ quicklizard qts


@pytest.mark.parametrize(
    ("client_query", "expected"),
    [
        ("", "qts=5000"),
        ("qts=1", "qts=5000"),
        ("a=1&qts=1&b=2", "a=1&b=2&qts=5000"),
        ("a=1&q%74s=1&b=2", "a=1&b=2&qts=5000"),
        ("%71%74%73=1&z=9&y=8", "z=9&y=8&qts=5000"),
        ("qts&b=1", "b=1&qts=5000"),
        ("qts=1&qts=2&c=3", "c=3&qts=5000"),
        ("b=2&a=1&qtsx=1", "b=2&a=1&qtsx=1&qts=5000"),
        ("x=%2F%20&b=c+d", "x=%2F%20&b=c+d&qts=5000"),
    ],
)
def test_quicklizard_replaces_client_qts_and_keeps_order(client_query: str, expected: str) -> None:
    scheme = build({"scheme": "quicklizard", "api_key": "K", "api_secret": "S"}, FrozenClock(5.0))
    result = run(scheme.apply(UpstreamRequest("GET", "/p", client_query, {}, b"")))
    assert result.query == expected
    assert result.headers["API_DIGEST"] == hashlib.sha256(f"/p{expected}S".encode()).hexdigest()


# --------------------------------------------------------------- apliiq nonce


def test_apliiq_nonces_unique_with_the_system_clock() -> None:
    cls = SCHEMES["apliiq"]
    scheme = cls(
        cls.Options.model_validate({"scheme": "apliiq", "app_id": "A", "shared_secret": "S"}),
        SchemeContext(route="r"),  # the real clock
    )
    req = UpstreamRequest("POST", "/o", "", {}, b"{}")
    states = set()
    for _ in range(10_000):
        header = scheme.sign(req).headers["Authorization"]
        rts, sig, app, state = header.removeprefix("x-apliiq-auth ").split(":")
        assert re.fullmatch(r"[0-9a-f]{32}", state)
        states.add(state)
    assert len(states) == 10_000


def test_apliiq_reads_clock_at_apply() -> None:
    clock = FrozenClock(100.0, nonce="0" * 32)
    scheme = build({"scheme": "apliiq", "app_id": "A", "shared_secret": "S"}, clock)
    first = scheme.sign(UpstreamRequest("GET", "/", "", {}, b"")).headers["Authorization"]
    clock.advance(5)
    second = scheme.sign(UpstreamRequest("GET", "/", "", {}, b"")).headers["Authorization"]
    assert first.split(":")[0].endswith("100") and second.split(":")[0].endswith("105")


# ------------------------------------------------------- declarations, secrets

ALL_OPTIONS = [
    {"scheme": "threeclicks-simple", "api_key": "tc-key-XYZ", "api_secret": "tc-secret-ABC"},
    {"scheme": "threeclicks-strict", "api_key": "tc-key-XYZ", "api_secret": "tc-secret-ABC"},
    {"scheme": "threecommas", "api_key": "3c-key-XYZ", "secret": "3c-secret-ABC"},
    {"scheme": "apliiq", "app_id": "ap-id-XYZ", "shared_secret": "ap-secret-ABC"},
    {"scheme": "quicklizard", "api_key": "ql-key-XYZ", "api_secret": "ql-secret-ABC"},
]


@pytest.mark.parametrize("options", ALL_OPTIONS, ids=lambda o: o["scheme"])
def test_secrets_never_in_repr(options: dict[str, Any]) -> None:
    scheme = build(options)
    secret = next(v for k, v in options.items() if "secret" in k)
    for text in (repr(scheme.options), str(scheme.options), repr(scheme), scheme.options.model_dump_json()):
        assert secret not in text
    assert secret in set(scheme.secret_values())


def test_needs_body_and_injected_headers() -> None:
    expected = {
        "threeclicks-simple": (False, {"X-Api-Key", "X-Api-Secret"}),
        "threeclicks-strict": (True, {"X-Api-Key", "X-Api-Timestamp", "X-Api-Signature"}),
        "threecommas": (True, {"Apikey", "Signature"}),
        "apliiq": (True, {"Authorization"}),
        "quicklizard": (True, {"API_KEY", "API_DIGEST"}),
    }
    for options in ALL_OPTIONS:
        scheme = build(options)
        needs_body, headers = expected[options["scheme"]]
        assert scheme.needs_body is needs_body
        assert set(scheme.injected_headers) == headers
        result = scheme.sign(UpstreamRequest("POST", "/p", "", {}, b"x"))
        assert set(result.headers) == headers
    injected = all_injected_headers()
    for name in ("x-api-key", "x-api-secret", "x-api-signature", "x-api-timestamp", "apikey",
                 "signature", "api_key", "api_digest"):
        assert name in injected


def test_secret_headers() -> None:
    simple = build(ALL_OPTIONS[0]).sign(UpstreamRequest("GET", "/", "", {}))
    assert simple.headers == {"X-Api-Key": "tc-key-XYZ", "X-Api-Secret": "tc-secret-ABC"}
    assert simple.secret_headers == frozenset({"X-Api-Secret"})
    for options in ALL_OPTIONS[1:]:
        result = build(options).sign(UpstreamRequest("GET", "/", "", {}, b""))
        assert result.secret_headers == frozenset()  # signatures, timestamps, nonces: not secret
    # an api key that came from a secret reference marks its header
    cls = SCHEMES["threecommas"]
    opts = cls.Options.model_validate({"scheme": "threecommas", "api_key": Secret("k"), "secret": "s"})
    result = cls(opts, SchemeContext(route="r")).sign(UpstreamRequest("GET", "/", "", {}, b""))
    assert result.secret_headers == frozenset({"Apikey"})
    assert result.headers["Apikey"] == "k"


def test_simple_result_not_shared_between_requests() -> None:
    scheme = build(ALL_OPTIONS[0])
    a = scheme.sign(UpstreamRequest("GET", "/", "", {}))
    a.headers["X-Api-Key"] = "mutated"
    assert scheme.sign(UpstreamRequest("GET", "/", "", {})).headers["X-Api-Key"] == "tc-key-XYZ"


@pytest.mark.parametrize(
    "options",
    [
        {"scheme": "threecommas", "api_key": "k"},
        {"scheme": "threecommas", "api_key": "k", "secret": "s", "extra": 1},
        {"scheme": "apliiq", "app_id": "a", "shared_secret": 5},
    ],
)
def test_options_validation(options: dict[str, Any]) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        SCHEMES[options["scheme"]].Options.model_validate(options)


@pytest.mark.parametrize(
    ("scheme", "cls", "auth"),
    [
        ("threeclicks-simple", ThreeClicksSimple, "api_key: k, api_secret: s"),
        ("threeclicks-strict", ThreeClicksStrict, "api_key: k, api_secret: s"),
        ("threecommas", ThreeCommas, "api_key: k, secret: s"),
        ("apliiq", Apliiq, "app_id: k, shared_secret: s"),
        ("quicklizard", Quicklizard, "api_key: k, api_secret: s"),
    ],
)
def test_config_scheme_names_select_the_vendor_classes(scheme: str, cls: type, auth: str) -> None:
    """The name a user writes in ``auth.scheme`` (as documented) loads that vendor's signer."""
    settings = load_config_text(
        f"routes: [{{prefix: /v, upstream: 'https://h', auth: {{scheme: {scheme}, {auth}}}}}]", env={}
    )
    assert settings.routes[0].scheme_cls is cls


def test_every_registered_scheme_is_documented() -> None:
    from tests.docs.pages import manual

    readme = manual()  # the README and every docs page
    assert [name for name in sorted(SCHEMES) if f"`{name}`" not in readme and f"scheme: {name}" not in readme] == []


async def test_apply_is_a_coroutine() -> None:
    scheme = build(ALL_OPTIONS[2])
    result = await scheme.apply(UpstreamRequest("GET", "/public/api/ver1/x", "", {}, b""))
    assert isinstance(result, AuthResult)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(alphabet="aqts=%7&4", max_size=8),
            st.sampled_from(["qts=1", "q%74s=2", "qts", "", "x=%2F"]),
        ),
        max_size=6,
    ).map("&".join)
)
def test_quicklizard_fast_path_matches_set_query_params(query: str) -> None:
    assert Quicklizard.timestamped_query(query, 42) == set_query_params(query, {"qts": "42"})

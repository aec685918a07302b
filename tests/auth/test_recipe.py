"""The ``hmac`` recipe scheme: templates, config errors, one time/nonce, query ordering."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest
from pydantic import ValidationError

from proxy.auth import SCHEMES, SchemeContext, UpstreamRequest
from proxy.auth.recipe import (
    BUILTIN_PLACEHOLDERS,
    HmacRecipe,
    RecipeOptions,
    Template,
    TemplateError,
    parse_template,
)
from proxy.clock import FrozenClock
from proxy.secret import Secret


def build(clock: Any = None, **fields: Any) -> HmacRecipe:
    options = RecipeOptions.model_validate({"scheme": "hmac", **fields})
    return HmacRecipe(options, SchemeContext(route="r", clock=clock or FrozenClock(1700000000.5)))


def req(method: str = "GET", path: str = "/p", query: str = "", body: bytes | None = b"") -> Any:
    return UpstreamRequest(method, path, query, {}, body)


def errors_of(**fields: Any) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as info:
        RecipeOptions.model_validate({"scheme": "hmac", **fields})
    return info.value.errors()


def the_error(**fields: Any) -> tuple[tuple[Any, ...], str]:
    errs = errors_of(**fields)
    assert len(errs) == 1, errs
    return errs[0]["loc"], errs[0]["msg"]


# ------------------------------------------------------------------ parsing


def test_parse_template_parts() -> None:
    t = parse_template("a{method}\n{{x}}{path}}}")
    assert t.parts == (b"a", "method", b"\n{x}", "path", b"}")
    assert t.names == frozenset({"method", "path"})
    assert parse_template("").parts == ()
    assert parse_template("{{}}").parts == (b"{}",)
    assert parse_template("é{nonce}").parts == ("é".encode(), "nonce")


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("{method", "not closed"),
        ("abc}", "no opening"),
        ("{a{b}", "not closed"),
        ("{}", "empty placeholder"),
        ("{a b}", "invalid placeholder"),
        ("{1x}", "invalid placeholder"),
    ],
)
def test_parse_errors(source: str, fragment: str) -> None:
    with pytest.raises(TemplateError, match=fragment):
        parse_template(source)


def test_template_bind_and_compile() -> None:
    t = parse_template("{a}%s{method}{b}")
    bound = t.bind({"a": b"1%", "b": b"{x}"})
    assert bound.parts == (b"1%%s", "method", b"{x}")
    fmt, names = bound.compile()
    assert names == ("method",)
    assert fmt % (b"GET",) == b"1%%sGET{x}"
    assert bound.render({"method": b"GET"}) == b"1%%sGET{x}"


# ---------------------------------------------------------------- rendering


def test_literal_braces_and_all_request_placeholders() -> None:
    clock = FrozenClock(1414562585.331, nonce="f" * 32)
    body = b'{"k": "v"}'
    s = build(
        clock,
        message=(
            "{{lit}}|{method}|{method_lower}|{path}|{query}|{path_query}|{body}|"
            "{body_or_empty_json}|{body_base64}|{body_sha256}|{body_md5}|"
            "{timestamp}|{timestamp_ms}|{nonce}"
        ),
        key="k",
        headers={"X-Sig": "{signature}"},
    )
    r = s.render(req("PoSt", "/a%2Fb", "x=1&y=%20", body))
    assert r.message == b"|".join(
        [
            b"{lit}",
            b"PoSt",
            b"post",
            b"/a%2Fb",
            b"x=1&y=%20",
            b"/a%2Fb?x=1&y=%20",
            body,
            body,
            base64.b64encode(body),
            hashlib.sha256(body).hexdigest().encode(),
            hashlib.md5(body).hexdigest().encode(),
            b"1414562585",
            b"1414562585331",
            b"f" * 32,
        ]
    )
    assert r.signature == hmac.new(b"k", r.message, hashlib.sha256).hexdigest()
    assert r.headers == {"X-Sig": r.signature}
    assert r.query is None


def test_empty_body_placeholders() -> None:
    s = build(message="[{body}][{body_or_empty_json}][{body_base64}][{path_query}]")
    for body in (b"", None):
        assert s.render(req(body=body)).message == b"[][{}][][/p]"
    assert s.render(req(body=b"")).signature == hashlib.sha256(b"[][{}][][/p]").hexdigest()


def test_non_utf8_body_signed_as_bytes() -> None:
    body = b"\xff\x00\xfe\xc3("
    s = build(message="{method}{body}", key="k", headers={"S": "{signature}"})
    r = s.render(req("POST", body=body))
    assert r.message == b"POST" + body
    assert r.headers["S"] == hmac.new(b"k", b"POST" + body, hashlib.sha256).hexdigest()


def test_unicode_literals_and_vars_are_utf8() -> None:
    s = build(vars={"who": "Zoë"}, message="→{who}{body}", key="ключ", headers={"S": "{signature}"})
    body = "東京".encode()
    r = s.render(req(body=body))
    assert r.message == "→Zoë".encode() + body
    assert r.signature == hmac.new("ключ".encode(), r.message, hashlib.sha256).hexdigest()


def test_vars_are_data_never_parsed() -> None:
    s = build(
        vars={"tricky": "{nonce}%s%%{{", "sec": Secret("{timestamp}}")},
        message="{tricky}|{sec}",
        key="{sec}",
        headers={"X": "{tricky}", "S": "{signature}"},
    )
    r = s.render(req())
    assert r.message == b"{nonce}%s%%{{|{timestamp}}"
    assert r.headers["X"] == "{nonce}%s%%{{"
    assert r.signature == hmac.new(b"{timestamp}}", r.message, hashlib.sha256).hexdigest()


def test_secret_template_is_a_literal() -> None:
    # what `key: ${SECRET}` gives after reference resolution: taken as data
    s = build(message="{method}", key=Secret("{not-a-placeholder"), headers={"S": "{signature}"})
    assert s.render(req()).signature == hmac.new(b"{not-a-placeholder", b"GET", hashlib.sha256).hexdigest()
    assert "not-a-placeholder" not in repr(s.options)


@pytest.mark.parametrize(
    ("algorithm", "ctor"),
    [("sha1", hashlib.sha1), ("sha256", hashlib.sha256), ("sha512", hashlib.sha512), ("md5", hashlib.md5)],
)
@pytest.mark.parametrize("keyed", [True, False])
def test_algorithms_and_encodings(algorithm: str, ctor: Any, keyed: bool) -> None:
    msg = b"GET/p"
    raw = hmac.new(b"key", msg, ctor).digest() if keyed else ctor(msg).digest()
    expected = {
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
        "base64": base64.b64encode(raw).decode(),
        "base64url": base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }
    for encoding, value in expected.items():
        extra = {"key": "key"} if keyed else {}
        s = build(message="{method}{path}", algorithm=algorithm, encoding=encoding, **extra)
        assert s.render(req()).signature == value
    assert "=" not in expected["base64url"]


def test_per_request_key() -> None:
    s = build(vars={"sec": "S"}, message="{method}", key="{sec}{timestamp}", headers={"S": "{signature}"})
    r = s.render(req())
    assert r.signature == hmac.new(b"S1700000000", b"GET", hashlib.sha256).hexdigest()


def test_no_message_no_signature() -> None:
    s = build(vars={"k": "v"}, headers={"X-K": "{k}", "X-Path": "{path}"})
    r = s.render(req(path="/z"))
    assert r.message is None and r.signature is None
    assert r.headers == {"X-K": "v", "X-Path": "/z"}


# ------------------------------------------------------ one time, one nonce


class CountingClock:
    """Every read gives a new value, so a second read would show."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.time_calls = 0
        self.nonce_calls = 0

    def time(self) -> float:
        self.time_calls += 1
        self.t += 7.25
        return self.t

    def monotonic(self) -> float:
        return 0.0

    def nonce(self) -> str:
        self.nonce_calls += 1
        return f"{self.nonce_calls:032x}"


def test_one_clock_read_and_one_nonce_per_request() -> None:
    clock = CountingClock()
    s = build(
        clock,
        message="{timestamp}.{nonce}.{timestamp_ms}.{nonce}",
        key="{timestamp}",
        headers={"T": "{timestamp}", "N": "{nonce}", "S": "{signature}"},
        query={"ts": "{timestamp_ms}", "n": "{nonce}"},
    )
    for i in (1, 2):
        r = s.render(req())
        assert clock.time_calls == i and clock.nonce_calls == i
        t, n = r.headers["T"], r.headers["N"]
        ms = round(clock.t * 1000)  # the clock moves in 7.25 s steps
        assert int(t) == ms // 1000
        assert r.message == f"{t}.{n}.{ms}.{n}".encode()
        assert r.query == f"ts={ms}&n={n}"
    assert r.query is not None


def test_no_clock_read_when_unused() -> None:
    clock = CountingClock()
    s = build(clock, message="{path}", headers={"S": "{signature}"})
    s.render(req())
    assert clock.time_calls == 0 and clock.nonce_calls == 0


# ------------------------------------------------------------- query order


def test_query_params_before_signing_are_signed() -> None:
    clock = FrozenClock(1414562585.331)
    s = build(clock, message="{path_query}|{query}", key="k", query={"qts": "{timestamp_ms}", "v": "a b/é"})
    r = s.render(req(path="/x", query="a=1&qts=9&q%74s=8&b=2"))
    assert r.query == "a=1&b=2&qts=1414562585331&v=a%20b/%C3%A9"
    assert r.message == f"/x?{r.query}|{r.query}".encode()


def test_query_params_with_signature_are_appended_after_signing() -> None:
    clock = FrozenClock(50.0)
    s = build(
        clock,
        message="{path_query}",
        key="k",
        encoding="base64",
        query={"sig": "{signature}", "ts": "{timestamp}", "echo": "{query}#{signature}"},
    )
    r = s.render(req(path="/x", query="sig=evil&x=1&ts=0&%73ig=evil2"))
    signed = "x=1&ts=50"
    assert r.message == f"/x?{signed}".encode()
    sig = base64.b64encode(hmac.new(b"k", r.message, hashlib.sha256).digest()).decode()
    from urllib.parse import quote

    echo = quote(f"{signed}#{sig}", safe="/")
    assert r.query == f"{signed}&sig={quote(sig, safe='/')}&echo={echo}"
    assert "%2B" in r.query or "%3D" in r.query  # base64 '+' and '=' are percent-encoded


def test_no_query_templates_leave_query_alone() -> None:
    s = build(message="{path_query}", headers={"S": "{signature}"})
    assert s.sign(req(query="a=1&&b")).query is None


# -------------------------------------------------------- needs_body, headers


@pytest.mark.parametrize(
    ("fields", "needs"),
    [
        ({"message": "{path}"}, False),
        ({"message": "{body}"}, True),
        ({"message": "{path}", "headers": {"X-C": "{body_sha256}"}}, True),
        ({"message": "{path}", "query": {"h": "{body_md5}"}}, True),
        ({"message": "{path}", "key": "{body_base64}"}, True),
        ({"message": "{body_or_empty_json}"}, True),
        ({"vars": {"body_x": "1"}, "message": "{body_x}"}, False),
    ],
)
def test_needs_body_per_instance(fields: dict[str, Any], needs: bool) -> None:
    s = build(**fields)
    assert s.needs_body is needs
    assert HmacRecipe.needs_body is False


def test_injected_and_secret_headers() -> None:
    s = build(
        vars={"key_id": "public-id", "sec": Secret("hush-123")},
        message="{method}",
        key="{sec}",
        headers={"X-Key": "{key_id}", "X-Secret": "pre-{sec}", "X-Sig": "{signature}", "X-Lit": Secret("tok-9")},
    )
    assert s.injected_headers == frozenset({"X-Key", "X-Secret", "X-Sig", "X-Lit"})
    result = s.sign(req())
    assert result.headers["X-Secret"] == "pre-hush-123"
    assert result.headers["X-Lit"] == "tok-9"
    assert result.secret_headers == frozenset({"X-Secret", "X-Lit"})
    for text in (repr(s.options), str(s.options), repr(s), s.options.model_dump_json()):
        assert "hush-123" not in text and "tok-9" not in text
    assert {"hush-123", "tok-9"} <= set(s.secret_values())


def test_result_headers_are_fresh() -> None:
    s = build(vars={"k": "v"}, headers={"X-K": "{k}"})
    a = s.sign(req())
    a.headers["X-K"] = "changed"
    assert s.sign(req()).headers == {"X-K": "v"}


def test_registered() -> None:
    assert SCHEMES["hmac"] is HmacRecipe
    assert HmacRecipe.Options is RecipeOptions


# ------------------------------------------------------------ config errors


def test_unknown_placeholder_in_message() -> None:
    loc, msg = the_error(vars={"key_id": "x"}, message="{nonse}{key_id}")
    assert loc == ("message",)
    assert "{nonse}" in msg and "did you mean {nonce}" in msg
    assert "{key_id}" in msg and "{timestamp_ms}" in msg  # lists the valid ones


def test_unknown_placeholder_in_header_query_key() -> None:
    assert the_error(message="x", headers={"X-Sig": "{sig}"})[0] == ("headers", "X-Sig")
    assert the_error(message="x", query={"s": "{signatur}"})[0] == ("query", "s")
    loc, msg = the_error(vars={"secret": "s"}, message="x", key="{secrte}")
    assert loc == ("key",) and "did you mean {secret}" in msg


def test_signature_in_message_or_key() -> None:
    loc, msg = the_error(message="{path}{signature}")
    assert loc == ("message",) and "{signature}" in msg
    loc, msg = the_error(message="{path}", key="{signature}")
    assert loc == ("key",) and "{signature}" in msg


@pytest.mark.parametrize("bad", ["{method", "method}", "{a{b}", "{}", "{a-b}"])
def test_unbalanced_or_bad_brace(bad: str) -> None:
    assert the_error(message=bad)[0] == ("message",)
    assert the_error(message="x", headers={"X-A": bad})[0] == ("headers", "X-A")


def test_unknown_algorithm_and_encoding() -> None:
    loc, msg = the_error(message="x", algorithm="sha3")
    assert loc == ("algorithm",) and "sha256" in msg
    loc, msg = the_error(message="x", encoding="b64")
    assert loc == ("encoding",) and "base64url" in msg


@pytest.mark.parametrize("name", [p for p in BUILTIN_PLACEHOLDERS])
def test_var_colliding_with_builtin(name: str) -> None:
    loc, msg = the_error(vars={name: "x"})
    assert loc[:2] == ("vars", name) and "collides" in msg


def test_bad_var_name() -> None:
    loc, _ = the_error(vars={"a-b": "x"})
    assert loc[:2] == ("vars", "a-b")


def test_signature_without_message() -> None:
    loc, msg = the_error(headers={"X-Sig": "{signature}"})
    assert loc == ("headers", "X-Sig") and "message" in msg


def test_key_without_message() -> None:
    assert the_error(key="k")[0] == ("key",)


@pytest.mark.parametrize("placeholder", ["body", "body_or_empty_json"])
def test_raw_body_not_in_headers_or_query(placeholder: str) -> None:
    loc, msg = the_error(headers={"X-B": "{" + placeholder + "}"})
    assert loc == ("headers", "X-B") and "body_sha256" in msg
    assert the_error(query={"b": "{" + placeholder + "}"})[0] == ("query", "b")


def test_query_placeholder_in_presign_param() -> None:
    loc, msg = the_error(message="x", query={"a": "{path_query}"})
    assert loc == ("query", "a") and "itself" in msg
    build(message="x", query={"a": "{signature}{query}"})  # after signing: fine


def test_var_with_line_break_in_header() -> None:
    loc, _ = the_error(vars={"v": "a\r\nX-Evil: 1"}, headers={"X-V": "{v}"})
    assert loc == ("headers", "X-V")
    build(vars={"v": "a\nb"}, message="{v}")  # fine in a message


def test_header_names() -> None:
    assert the_error(headers={"Bad Name": "x"})[0][:2] == ("headers", "Bad Name")
    loc, msg = the_error(headers={"X-A": "1", "x-a": "2"})
    assert loc == ("headers",) and "twice" in msg


def test_unknown_field_and_non_string_template() -> None:
    errs = errors_of(messag="x")
    assert errs[0]["loc"] == ("messag",) and errs[0]["type"] == "extra_forbidden"
    assert the_error(message=5)[0] == ("message",)


def test_several_errors_reported_together() -> None:
    errs = errors_of(message="{nope}", algorithm="x", headers={"X-A": "{"})
    assert {e["loc"] for e in errs} == {("message",), ("algorithm",), ("headers", "X-A")}


def test_templates_are_parsed_at_load() -> None:
    o = RecipeOptions.model_validate(
        {"scheme": "hmac", "message": "{method}", "headers": {"S": "{signature}"}}
    )
    assert isinstance(o.message, Template) and o.message.parts == ("method",)
    assert isinstance(o.headers["S"], Template)

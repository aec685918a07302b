"""Token answers turned into tokens or safe error messages (no network)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.tokens import (
    TokenFetchError,
    TokenRequestSpec,
    endpoint_name,
    parse_token_response,
    sanitize,
    schedule,
)

SECRET = "hunter2-very-secret"


def parse(body, status=200, ctype="application/json", **kw):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    kw.setdefault("obtained_at", 1000.0)
    kw.setdefault("refresh_before", 60)
    kw.setdefault("default_expires_in", 300)
    kw.setdefault("secrets", [SECRET])
    return parse_token_response(status, ctype, body, **kw)


def test_bearer_token_with_expires_in():
    tok = parse({"access_token": "abc.def", "token_type": "Bearer", "expires_in": 3600})
    assert tok.access_token == "abc.def"
    assert (tok.expires_in, tok.refresh_at, tok.expires_at) == (3600, 4540, 4600)
    assert tok.authorization == "Bearer abc.def"
    assert "abc.def" not in repr(tok)


@pytest.mark.parametrize("token_type", ["bearer", "BEARER", "Bearer", None])
def test_token_type_bearer_any_case_or_missing(token_type):
    body = {"access_token": "t"}
    if token_type is not None:
        body["token_type"] = token_type
    assert parse(body).access_token == "t"


def test_other_token_type_rejected():
    with pytest.raises(TokenFetchError, match="token_type 'mac'"):
        parse({"access_token": "t", "token_type": "mac"})


@pytest.mark.parametrize("expires_in", [None, "soon", 0, -5, True, float("nan"), [1]])
def test_missing_or_invalid_expires_in_uses_default(expires_in):
    body = {"access_token": "t"}
    if expires_in is not None:
        body["expires_in"] = expires_in
    raw = json.dumps(body).replace("NaN", "NaN").encode()
    tok = parse(raw)
    assert tok.expires_in == 300 and tok.refresh_at == 1240 and tok.expires_at == 1300


def test_numeric_string_expires_in():
    assert parse({"access_token": "t", "expires_in": "120"}).expires_in == 120


def test_schedule_half_life_when_short():
    assert schedule(3600, obtained_at=0, refresh_before=60) == (3540, 3600)
    assert schedule(60, obtained_at=0, refresh_before=60) == (30, 60)
    assert schedule(10, obtained_at=5, refresh_before=60) == (10, 15)
    assert schedule(100, obtained_at=0, refresh_before=0) == (100, 100)


def test_error_answer_carries_status_and_oauth_fields():
    with pytest.raises(TokenFetchError) as ei:
        parse({"error": "invalid_client", "error_description": "Bad client"}, status=401)
    assert ei.value.message == "token endpoint answered HTTP 401: invalid_client (Bad client)"
    assert ei.value.endpoint_status == 401
    assert ei.value.status == 502 and ei.value.code == "token_error"


def test_error_description_sanitised_truncated_and_scrubbed():
    desc = f"client secret {SECRET} is wrong\r\nInjected: header\x00" + "x" * 500
    with pytest.raises(TokenFetchError) as ei:
        parse({"error": "invalid_client", "error_description": desc}, status=400)
    msg = ei.value.message
    assert SECRET not in msg and "***" in msg
    assert "\r" not in msg and "\n" not in msg and "\x00" not in msg
    assert len(msg) < 300 and msg.endswith("…)")


def test_200_without_access_token():
    with pytest.raises(TokenFetchError, match=r"HTTP 200 without an access_token$"):
        parse({"token_type": "bearer"})
    with pytest.raises(TokenFetchError, match=r"HTTP 200 without an access_token: server_error"):
        parse({"error": "server_error"})
    with pytest.raises(TokenFetchError, match="without an access_token"):
        parse({"access_token": ""})
    with pytest.raises(TokenFetchError, match="without an access_token"):
        parse({"access_token": 12345})


def test_token_from_error_status_not_used():
    with pytest.raises(TokenFetchError, match="HTTP 500"):
        parse({"access_token": "t"}, status=500)


def test_non_json_answer():
    with pytest.raises(TokenFetchError) as ei:
        parse(b"<html>oops</html>", status=502, ctype="text/html; charset=utf-8")
    assert ei.value.message == (
        "token endpoint answered HTTP 502 with a non-JSON body (content type "
        "text/html; charset=utf-8)"
    )
    with pytest.raises(TokenFetchError, match="an empty body"):
        parse(b"", status=204, ctype="")
    with pytest.raises(TokenFetchError, match="non-JSON"):
        parse(b"[1, 2]")


def test_token_with_control_characters_rejected():
    with pytest.raises(TokenFetchError, match="not a valid header value") as ei:
        parse({"access_token": "abc\r\nX-Evil: 1"})
    assert "abc" not in ei.value.message


def test_endpoint_name_hides_path_query_and_userinfo():
    assert endpoint_name("https://u:p@auth.example.com/t?secret=1") == "auth.example.com:443"
    assert endpoint_name("http://127.0.0.1:8081/x") == "127.0.0.1:8081"


def test_spec_form_body_and_cache_key():
    spec = TokenRequestSpec(
        token_url="https://a/t",
        client_id="id",
        client_secret=SECRET,
        client_auth="body",
        request_format="form",
        fields={"scope": "a b"},
    )
    headers, body = spec.build()
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["Accept"] == "application/json"
    assert "Authorization" not in headers
    assert body == b"grant_type=client_credentials&scope=a+b&client_id=id&client_secret=" + (
        SECRET.encode()
    )
    key = spec.cache_key("r")
    assert SECRET not in repr(key) and SECRET not in repr(spec)
    other = TokenRequestSpec(
        token_url="https://a/t",
        client_id="id",
        client_secret="x",
        client_auth="body",
        fields={"scope": "a b"},
    )
    assert other.cache_key("r") != key


@given(st.text(), st.text(min_size=3).filter(lambda s: "*" not in s and s.strip()))
def test_sanitize_never_leaks_and_is_one_line(text, secret):
    out = sanitize(text + secret + text, secrets=[secret])
    assert len(out) <= 200
    assert all(ch.isprintable() for ch in out)
    assert "\n" not in out
    assert secret not in out

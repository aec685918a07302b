"""aws-sigv4: AWS's published vectors, config rules, strip list, `signet sign`, STS parsing."""

from __future__ import annotations

import asyncio
import calendar
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict

from proxy.auth import SchemeContext, UpstreamRequest, all_injected_headers
from proxy.auth.aws_sigv4 import AwsSigV4, AwsSigV4Options, canonical_query, canonical_uri
from proxy.auth.aws_sts import WebIdentity, default_sts_endpoint, parse_sts_response
from proxy.clock import FrozenClock
from proxy.config import load_config_text
from proxy.errors import ConfigError
from proxy.secret import Secret
from proxy.tokens import TokenFetchError
from tests.aws_fakes import AwsState, StsState, sts_app
from tests.conftest import ROOT, SUITE_SECRETS, secret

# AWS's SigV4 test suite (aws-sig-v4-test-suite): credentials, time, region and service
SUITE_AK = "AKIDEXAMPLE"
SUITE_SK = secret("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SUITE_TIME = calendar.timegm((2015, 8, 30, 12, 36, 0))


def scheme(**opts: Any) -> AwsSigV4:
    options = AwsSigV4Options(
        scheme="aws-sigv4",
        **{"region": "us-east-1", "service": "service", "access_key_id": SUITE_AK,
           "secret_access_key": SUITE_SK, **opts},
    )
    return AwsSigV4(options, SchemeContext(route="aws", clock=FrozenClock(SUITE_TIME)))


def sign(s: AwsSigV4, method: str, path: str, query: str = "", body: bytes = b"",
         headers: list[tuple[str, str]] | None = None,
         origin: str = "https://example.amazonaws.com") -> Any:
    req = UpstreamRequest(method, path, query, CIMultiDict(headers or []),
                          body if s.needs_body else None, scheme_host=origin)
    return asyncio.run(s.apply(req))


@pytest.mark.parametrize(
    ("name", "method", "query", "signature"),
    [
        ("get-vanilla", "GET", "", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        ("get-vanilla-query-order-key-case", "GET", "Param2=value2&Param1=value1",
         "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
        ("post-vanilla", "POST", "", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
    ],
)
def test_aws_test_suite_vectors(name: str, method: str, query: str, signature: str) -> None:
    result = sign(scheme(), method, "/", query)
    assert result.headers["X-Amz-Date"] == "20150830T123600Z"
    assert result.headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={signature}"
    )
    assert result.headers["Host"] == "example.amazonaws.com"
    assert "X-Amz-Content-Sha256" not in result.headers  # not s3, payload signed: botocore sends none


def test_canonical_forms() -> None:
    assert canonical_uri("/a%2Fb/c d%7e/(x)", s3=True) == "/a%2Fb/c%20d~/%28x%29"
    assert canonical_uri("/a%2Fb//c/", s3=False) == "/a%252Fb/c/"
    assert canonical_uri("", s3=True) == "/" and canonical_uri("//", s3=False) == "/"
    assert canonical_uri("/%C3%A9/\u00e9", s3=True) == "/%C3%A9/%C3%A9"
    assert canonical_query("b=2&a&a=1&c=&&x=a+b") == "a=&a=1&b=2&c=&x=a%2Bb"
    assert canonical_query("k=v%2fw&k=%7E") == "k=v%2Fw&k=~"


def test_s3_sends_content_sha256_and_unsigned_streams() -> None:
    signed = scheme(service="s3")
    assert signed.needs_body
    r = sign(signed, "PUT", "/b/k", body=b"abc")
    assert r.headers["X-Amz-Content-Sha256"] == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    unsigned = scheme(service="s3", payload="unsigned")
    assert not unsigned.needs_body  # the pipeline streams the body
    r = sign(unsigned, "PUT", "/b/k")
    assert r.headers["X-Amz-Content-Sha256"] == "UNSIGNED-PAYLOAD"
    assert r.debug[0][1].endswith("\nUNSIGNED-PAYLOAD")


def test_signed_headers_are_host_content_type_md5_and_amz() -> None:
    r = sign(scheme(session_token=Secret("tok")), "POST", "/", headers=[
        ("Content-Type", " application/json "), ("User-Agent", "x"), ("X-Amz-Meta-A", "1"),
        ("x-amz-meta-a", " 2   3"), ("Accept", "*/*"), ("Content-MD5", "abc=="), ("X-Custom", "n"),
    ], origin="http://127.0.0.1:8080")
    assert "SignedHeaders=content-md5;content-type;host;x-amz-date;x-amz-meta-a;x-amz-security-token," \
        in r.headers["Authorization"]
    canonical = r.debug[0][1]
    assert "\nhost:127.0.0.1:8080\n" in canonical
    assert "\nx-amz-meta-a:1,2 3\n" in canonical
    assert "\ncontent-type:application/json\n" in canonical
    assert r.headers["X-Amz-Security-Token"] == "tok"
    assert r.secret_headers == frozenset({"X-Amz-Security-Token"})


def test_strip_list_gains_the_injected_headers() -> None:
    assert {"authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"} <= (
        all_injected_headers()
    )


def load(auth: str, env: dict[str, str] | None = None) -> Any:
    text = f"routes:\n  - {{name: a, prefix: /a, upstream: 'https://s3.amazonaws.com', auth: {auth}}}\n"
    return load_config_text(text, env=env or {})


def problems(auth: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as e:
        load(auth, env)
    return str(e.value)


def test_config_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    ok = load("{scheme: aws-sigv4, region: eu-west-1, service: s3, access_key_id: AK, secret_access_key: '${SK}'}",
              {"SK": "sk"})
    assert isinstance(ok.routes[0].auth.secret_access_key, Secret)
    assert "needs access_key_id and secret_access_key" in problems(
        "{scheme: aws-sigv4, region: eu-west-1, service: s3, access_key_id: AK}")
    assert "region" in problems(
        "{scheme: aws-sigv4, region: EU West, service: s3, access_key_id: AK, secret_access_key: x}")
    assert "is empty" in problems(
        "{scheme: aws-sigv4, region: eu-west-1, service: s3, access_key_id: AK, secret_access_key: '${SK}'}",
        {"SK": ""})
    assert "control character" in problems(
        "{scheme: aws-sigv4, region: eu-west-1, service: s3, access_key_id: AK, secret_access_key: '${SK}'}",
        {"SK": "a\nb"})
    assert "sts_endpoint is only used" in problems(
        "{scheme: aws-sigv4, region: eu-west-1, service: s3, access_key_id: AK, secret_access_key: x, "
        "sts_endpoint: 'https://sts.example'}")
    monkeypatch.delenv("AWS_ROLE_ARN", raising=False)
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)
    text = problems("{scheme: aws-sigv4, region: eu-west-1, service: s3, credentials: web-identity}")
    assert "AWS_ROLE_ARN" in text and "AWS_WEB_IDENTITY_TOKEN_FILE" in text
    assert "cannot be combined" in problems(
        "{scheme: aws-sigv4, region: eu-west-1, service: s3, credentials: web-identity, access_key_id: AK}")
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::1:role/r")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent")
    load("{scheme: aws-sigv4, region: eu-west-1, service: s3, credentials: web-identity}")


def test_default_sts_endpoint() -> None:
    assert default_sts_endpoint("eu-west-1") == "https://sts.eu-west-1.amazonaws.com/"
    assert default_sts_endpoint("cn-north-1") == "https://sts.cn-north-1.amazonaws.com.cn/"


STS_OK = (
    b'<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
    b"<AssumeRoleWithWebIdentityResult><Credentials><SessionToken>TOKvalue9</SessionToken>"
    b"<SecretAccessKey>SKvalue7</SecretAccessKey><Expiration>2023-11-14T22:13:20Z</Expiration>"
    b"<AccessKeyId>ASIAX</AccessKeyId></Credentials></AssumeRoleWithWebIdentityResult>"
    b"</AssumeRoleWithWebIdentityResponse>"
)


def test_parse_sts_response() -> None:
    now = 1_700_000_000.0 - 1000  # Expiration above is 1_700_000_000
    token = parse_sts_response(200, STS_OK, now=now, obtained_at=50.0)
    assert token.expires_in == pytest.approx(1000)
    assert token.refresh_at == pytest.approx(50 + 1000 - 300)
    assert token.payload.access_key_id == "ASIAX" and token.payload.secret_access_key == Secret("SKvalue7")
    assert "SKvalue7" not in repr(token.payload) and "TOKvalue9" not in repr(token) + repr(token.payload)
    with pytest.raises(TokenFetchError, match="already expired"):
        parse_sts_response(200, STS_OK, now=1_700_000_001.0, obtained_at=0)
    with pytest.raises(TokenFetchError, match="SecretAccessKey is empty"):
        parse_sts_response(200, STS_OK.replace(b">SKvalue7<", b"><"), now=now, obtained_at=0)
    err = (b"<ErrorResponse><Error><Code>InvalidIdentityToken</Code>"
           b"<Message>token jwt-secret-value expired</Message></Error></ErrorResponse>")
    with pytest.raises(TokenFetchError) as e:
        parse_sts_response(400, err, now=now, obtained_at=0, secrets=["jwt-secret-value"])
    assert e.value.reason == "STS answered HTTP 400: InvalidIdentityToken (token *** expired)"
    with pytest.raises(TokenFetchError, match="not XML"):
        parse_sts_response(502, b"<html", now=now, obtained_at=0)


async def test_web_identity_concurrent_requests_share_one_sts_call(
    aiohttp_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(secret("jwt-single-flight-abc") + "\n")
    sts = StsState(AwsState("eu-west-1", "s3"), "arn:aws:iam::1:role/r",
                   expected_token=lambda: "jwt-single-flight-abc")
    server = await aiohttp_server(sts_app(sts), host="127.0.0.1")
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::1:role/r")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
    options = AwsSigV4Options(scheme="aws-sigv4", region="eu-west-1", service="s3",
                              credentials="web-identity", sts_endpoint=str(server.make_url("/")))
    s = AwsSigV4(options, SchemeContext(route="wi"))
    await s.start()
    try:
        req = UpstreamRequest("GET", "/b/k", "", CIMultiDict(), b"", scheme_host="https://s3.amazonaws.com")
        results = await asyncio.gather(*(s.apply(req) for _ in range(20)))
    finally:
        SUITE_SECRETS.update(sts.issued)
        await s.close()
    assert sts.calls == 1
    assert len({r.headers["X-Amz-Security-Token"] for r in results}) == 1
    assert isinstance(s.web_identity, WebIdentity)

    token_file.write_text("")  # an empty token file is refused before any call
    s2 = AwsSigV4(options, SchemeContext(route="wi2"))
    with pytest.raises(TokenFetchError, match=r"token file .* is empty"):
        await s2.apply(req)
    await s2.close()
    assert sts.calls == 1


SIGN_CONFIG = """
routes:
  - name: s3
    prefix: /s3
    upstream: https://my-bucket.s3.eu-west-1.amazonaws.com
    auth: {scheme: aws-sigv4, region: eu-west-1, service: s3, access_key_id: AKIAEXAMPLE,
           secret_access_key: '${SK}', session_token: '${ST}'}
  - name: wi
    prefix: /wi
    upstream: https://abc.execute-api.eu-west-1.amazonaws.com
    auth: {scheme: aws-sigv4, region: eu-west-1, service: execute-api, credentials: web-identity,
           sts_endpoint: 'http://127.0.0.1:9/'}
"""
SIGN_SK = secret("sign-aws-secret-key-xyz123")
SIGN_ST = secret("sign-aws-session-token-abc987")


def run_sign(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(SIGN_CONFIG)
    env = {"SK": SIGN_SK, "ST": SIGN_ST, "PATH": "/usr/bin:/bin", "AWS_ROLE_ARN": "arn:aws:iam::1:role/r",
           "AWS_WEB_IDENTITY_TOKEN_FILE": str(tmp_path / "none")}
    return subprocess.run([sys.executable, "-m", "proxy", "sign", "--config", str(cfg), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT)


def test_sign_shows_canonical_request_only_with_show_secrets(tmp_path: Path) -> None:
    out = run_sign(tmp_path, "PUT", "/s3/a%2Fb.txt?x=1", "--data", "hello", "--time", "1700000000")
    assert out.returncode == 0, out.stderr
    assert "X-Amz-Date: 20231114T221320Z" in out.stdout
    assert "X-Amz-Security-Token: ***" in out.stdout and SIGN_ST not in out.stdout
    assert "CanonicalRequest" not in out.stdout
    shown = run_sign(tmp_path, "PUT", "/s3/a%2Fb.txt?x=1", "--data", "hello", "--time", "1700000000",
                     "--show-secrets")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "\nCanonicalRequest:\nPUT\n/a%2Fb.txt\nx=1\n" in text
    assert f"x-amz-security-token:{SIGN_ST}\n" in text
    assert "\nStringToSign:\nAWS4-HMAC-SHA256\n20231114T221320Z\n20231114/eu-west-1/s3/aws4_request\n" in text
    # the printed steps are the ones that produced the printed signature
    assert "Host: my-bucket.s3.eu-west-1.amazonaws.com" in text


def test_sign_web_identity_without_fetch_token_makes_no_sts_call(tmp_path: Path) -> None:
    out = run_sign(tmp_path, "GET", "/wi/prod/items")
    assert out.returncode == 0, out.stderr
    assert "Authorization: AWS4-HMAC-SHA256 <web-identity credentials: add --fetch-token>" in out.stdout

"""Issue 19, findings 1, 2 and 9: what a client can make Signet sign on an ``aws-sigv4`` route.

Raw bytes in over a socket, the exact bytes the upstream received checked
(:mod:`tests.trust.rawupstream`), or that it received nothing. Signatures of
what was received are checked with botocore's own signer, as a service
canonicalising the bytes it receives would (moto does exactly this; the moto
tests in tests/auth/test_sigv4_moto.py drive the real thing).
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from proxy.config import load_config_text
from proxy.errors import ConfigError
from tests.conftest import config_text, secret
from tests.trust import raw_exchange
from tests.trust.rawupstream import RawRequest, RawUpstream

AK = "AKIAFIREWALLEXAMPLE01"
SK = secret("firewall-aws-secret/K7MDENG+bPxRfiCY")
TOKEN = secret("sigv4-firewall-client-token-77aa")
UP_TOKEN = secret("sigv4-firewall-uploader-token-88bb")


def aws_route(up: RawUpstream, service: str = "s3", **extra: Any) -> dict[str, Any]:
    return {
        "name": service,
        "prefix": f"/{service}",
        "upstream": up.url(""),
        "auth": {
            "scheme": "aws-sigv4",
            "region": "eu-west-1",
            "service": service,
            "access_key_id": AK,
            "secret_access_key": "${SK}",
        },
        **extra,
    }


async def start(make_signet: Any, routes: list[dict[str, Any]], **top: Any) -> int:
    app = await make_signet(config_text(routes, **top), env={"SK": SK})
    return int(app.proxy_address[1])


def request(method: str, target: str, *headers: bytes, body: bytes = b"", token: str = TOKEN) -> bytes:
    lines = [
        f"{method} {target} HTTP/1.1".encode(),
        b"Host: signet",
        f"Proxy-Authorization: Bearer {token}".encode(),
        *headers,
        f"Content-Length: {len(body)}".encode(),
        b"Connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def verifies(received: RawRequest, service: str = "s3") -> bool:
    """Does the received request verify, canonicalised from its own bytes (moto's way)?"""
    target = received.request_line.split(b" ")[1].decode("ascii")
    headers = dict(received.headers)
    auth = headers["Authorization"]
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    req = AWSRequest(
        method=received.method,
        url="http://" + headers["Host"] + target,
        data=received.body,
        headers={k: v for k, v in headers.items() if k.lower() in signed},
    )
    req.context["timestamp"] = headers["X-Amz-Date"]
    cls = S3SigV4Auth if service == "s3" else SigV4Auth
    signer = cls(Credentials(AK, SK), service, "eu-west-1")
    canonical = signer.canonical_request(req)
    expected = signer.signature(signer.string_to_sign(req, canonical), req)
    return auth.endswith("Signature=" + expected)


def clients(*rules: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": "uploader", "token": TOKEN, "allow": list(rules)},
        {"name": "admin", "token": UP_TOKEN},
    ]


async def refused(port: int, up: RawUpstream, data: bytes, status: int = 403) -> dict[str, Any]:
    before = len(up.received)
    resp = await raw_exchange(port, data, linger=0.2)
    assert resp.status == status, (data, resp.raw[:400])
    assert up.received[before:] == [], data
    error: dict[str, Any] = resp.json()["error"]
    return error


# ------------------------------------------------- finding 1: client x-amz-* headers


FORBIDDEN = [
    b"x-amz-copy-source: /company-secrets/private/payroll.csv",
    b"x-amz-acl: public-read",
    b"X-Amz-Grant-Read: uri=http://acs.amazonaws.com/groups/global/AllUsers",
    b"x-amz-grant-full-control: id=attacker",
    b"x-amz-website-redirect-location: https://evil.example/",
    b"X-Amz-Target: DynamoDB_20120810.DeleteTable",
    b"x-amz-server-side-encryption-customer-key: QUJD",
    b"x_amz_acl: public-read",  # merged into x-amz-acl by many servers: never sent unsigned
    b"X-AMZ-COPY-SOURCE-RANGE: bytes=0-9",
]


async def test_client_amz_headers_outside_the_default_are_403_naming_the_header(
    make_signet: Any, raw_upstream: RawUpstream
) -> None:
    rule = {"route": "s3", "methods": ["PUT", "GET"], "paths": ["/uploads/*"]}
    port = await start(
        make_signet, [aws_route(raw_upstream)], clients=clients(rule)
    )
    for header in FORBIDDEN:
        error = await refused(port, raw_upstream, request("PUT", "/s3/uploads/x.csv", header, body=b"hi"))
        assert error["code"] == "forbidden"
        name = header.split(b":")[0].decode()
        assert repr(name) in error["message"], error
        assert "client_amz_headers" in error["message"]
    # the admin client, with no allow rule, is bound by the route's list too
    await refused(
        port,
        raw_upstream,
        request("PUT", "/s3/uploads/x.csv", b"x-amz-acl: public-read", body=b"hi", token=UP_TOKEN),
    )
    # the default list passes, signed; the scheme's own headers are stripped, never refused
    resp = await raw_exchange(
        port,
        request(
            "PUT",
            "/s3/uploads/x.csv",
            b"X-Amz-Meta-Owner: team-b",
            b"x-amz-checksum-sha256: 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            b"x-amz-storage-class: STANDARD_IA",
            b"x-amz-tagging: a=b",
            b"X-Amz-Date: 19990101T000000Z",
            b"X-Amz-Security-Token: client-supplied",
            b"X-Amz-Content-Sha256: UNSIGNED-PAYLOAD",
            body=b"hi",
        ),
    )
    assert resp.status == 200, resp.raw[:400]
    got = raw_upstream.received[-1]
    auth = got.header("Authorization")[0]
    assert (
        "SignedHeaders=host;x-amz-checksum-sha256;x-amz-content-sha256;x-amz-date;"
        "x-amz-meta-owner;x-amz-storage-class;x-amz-tagging," in auth
    )
    assert got.header("X-Amz-Security-Token") == []
    assert got.header("X-Amz-Date")[0] != "19990101T000000Z"
    assert verifies(got)


async def test_route_client_amz_headers_replace_the_default(
    make_signet: Any, raw_upstream: RawUpstream
) -> None:
    route = aws_route(raw_upstream, "dynamodb", client_amz_headers=["X-Amz-Target", "x-amz-acl*"])
    port = await start(make_signet, [route])
    body = b'{"TableName":"t"}'
    resp = await raw_exchange(
        port, request("POST", "/dynamodb/", b"X-Amz-Target: DynamoDB_20120810.Query", body=body)
    )
    assert resp.status == 200, resp.raw[:400]
    got = raw_upstream.received[-1]
    assert "x-amz-target" in got.header("Authorization")[0]
    assert verifies(got, "dynamodb")
    error = await refused(port, raw_upstream, request("POST", "/dynamodb/", b"x-amz-meta-a: 1", body=body))
    assert "'x-amz-meta-a'" in error["message"]


# ------------------------------------------------------- finding 1: operations


async def test_operations_in_allow_rules(make_signet: Any, raw_upstream: RawUpstream) -> None:
    s3 = aws_route(raw_upstream, client_amz_headers=["x-amz-meta-*", "x-amz-copy-source"])
    ddb = aws_route(raw_upstream, "dynamodb", client_amz_headers=["x-amz-target"])
    sqs = aws_route(raw_upstream, "sqs")
    rules = (
        {"route": "s3", "paths": ["/uploads/**"], "operations": ["s3:PutObject", "s3:GetObject"]},
        {"route": "s3", "paths": ["/reports"], "operations": ["s3:ListObjectsV2"]},
        {"route": "dynamodb", "operations": ["dynamodb:Query", "dynamodb:GetItem"]},
        {"route": "sqs", "operations": ["sqs:SendMessage"]},
    )
    port = await start(make_signet, [s3, ddb, sqs], clients=clients(*rules))

    async def ok(data: bytes) -> None:
        resp = await raw_exchange(port, data)
        assert resp.status == 200, (data, resp.raw[:400])

    await ok(request("PUT", "/s3/uploads/a.csv", b"x-amz-meta-a: 1", body=b"x"))
    await ok(request("GET", "/s3/uploads/a.csv?x-id=GetObject&response-content-type=text%2Fplain"))
    await ok(request("GET", "/s3/reports?list-type=2&prefix=2026/"))
    # the header the route lets through turns the PUT into a CopyObject: not in the rule
    error = await refused(
        port,
        raw_upstream,
        request("PUT", "/s3/uploads/a.csv", b"x-amz-copy-source: /secrets/payroll.csv"),
    )
    assert "s3:CopyObject" in error["message"] and "allow[0]" in error["message"]
    assert "operations s3:GetObject,s3:PutObject" in error["message"]
    for data in (
        request("DELETE", "/s3/uploads/a.csv"),  # DeleteObject
        request("PUT", "/s3/uploads/a.csv?acl", body=b"<x/>"),  # PutObjectAcl
        request("GET", "/s3/uploads/a.csv?tagging"),  # GetObjectTagging
        request("GET", "/s3/uploads/a.csv?torrent"),  # unknown sub-resource: not classified
        request("GET", "/s3/uploads/a.csv?acl&tagging"),  # two: not classified
        request("GET", "/s3/reports"),  # ListObjects (v1), not V2
        request("GET", "/s3/reports?list-type=2&list-type=1"),
    ):
        error = await refused(port, raw_upstream, data)
        assert "on route 's3'" in error["message"]

    # JSON services: X-Amz-Target names the operation
    await ok(request("POST", "/dynamodb/", b"X-Amz-Target: DynamoDB_20120810.Query", body=b"{}"))
    error = await refused(
        port, raw_upstream, request("POST", "/dynamodb/", b"X-Amz-Target: DynamoDB_20120810.DeleteTable", body=b"{}")
    )
    assert "dynamodb:DeleteTable" in error["message"]
    await refused(port, raw_upstream, request("POST", "/dynamodb/", body=b"{}"))  # no target

    # Query services: Action in the query or in a form body
    form = b"Content-Type: application/x-www-form-urlencoded; charset=utf-8"
    await ok(request("GET", "/sqs/?Action=SendMessage&MessageBody=hi"))
    await ok(request("POST", "/sqs/", form, body=b"MessageBody=hi&Action=SendMessage"))
    for data in (
        request("GET", "/sqs/?Action=DeleteQueue"),
        request("POST", "/sqs/", form, body=b"Action=DeleteQueue"),
        request("POST", "/sqs/", form, body=b"Action=SendMessage&Action=DeleteQueue"),
        request("POST", "/sqs/?Action=SendMessage", form, body=b"Action=PurgeQueue"),
        request("POST", "/sqs/", form, body=b"MessageBody=no-action"),
    ):
        await refused(port, raw_upstream, data)


def config_problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(textwrap.dedent(text), env={})
    return [str(p) for p in info.value.problems]


def test_config_errors_are_located() -> None:
    found = config_problems(
        """
        listen: 127.0.0.1:0
        clients:
          - name: a
            token: aaaaaaaaaaaaaaaaaaaaaaaa
            allow:
              - route: s3
                operations: [dynamodb:Query, s3:GetObjekt, s3:PutObject, getobject]
              - route: plain
                operations: [s3:GetObject]
        routes:
          - name: s3
            prefix: /s3
            upstream: http://127.0.0.1:9
            client_amz_headers: [x-amz-meta-*, x-goog-meta-*, "x-amz-a b", x-amz-date]
            auth: {scheme: aws-sigv4, region: eu-west-1, service: s3,
                   access_key_id: AKIAX, secret_access_key: abcdefgh}
          - name: plain
            prefix: /plain
            upstream: http://127.0.0.1:9
            client_amz_headers: [x-amz-meta-*]
        """
    )
    text = "\n".join(found)
    assert "clients[0].allow[0].operations[0]" in text and "unknown service prefix 'dynamodb'" in text
    assert "clients[0].allow[0].operations[1]" in text and "did you mean 'GetObject'" in text
    assert "clients[0].allow[0].operations[3]" in text
    assert "operations[2]" not in text
    assert "clients[0].allow[1].operations" in text and "aws-sigv4" in text
    assert "routes[0].client_amz_headers[1]" in text
    assert "routes[0].client_amz_headers[2]" in text
    assert "routes[0].client_amz_headers[3]" in text and "set by the aws-sigv4 scheme" in text
    assert "routes[1].client_amz_headers" in text
    assert len(found) == 8, found


# ------------------------------------------- finding 2: what is signed is what is sent


SENT = [
    # (client target after /s3, what the upstream must receive)
    ("/reports?list-type=2&prefix=reports/", "/reports?list-type=2&prefix=reports%2F"),
    ("/b/a+b(1)*=,:@~!$'.txt", "/b/a%2Bb%281%29%2A%3D%2C%3A%40~%21%24%27.txt"),
    ("/b/%7e%2Fk%20e%2By", "/b/~%2Fk%20e%2By"),
    ("/b/k?prefix=a+b&delimiter=/&x=(1)&&flag", "/b/k?prefix=a%2Bb&delimiter=%2F&x=%281%29&flag"),
]


async def test_path_and_query_go_upstream_as_signed(make_signet: Any, raw_upstream: RawUpstream) -> None:
    port = await start(make_signet, [aws_route(raw_upstream)])
    for target, expected in SENT:
        resp = await raw_exchange(port, request("GET", "/s3" + target))
        assert resp.status == 200, (target, resp.raw[:300])
        got = raw_upstream.received[-1]
        assert got.request_line == f"GET {expected} HTTP/1.1".encode(), target
        assert verifies(got), target
    # raw UTF-8 in a key and a query value (curl sends it unencoded)
    data = request("GET", "/s3/b/été.txt?prefix=ü").replace(b"\xc3\xa9t\xc3\xa9", "été".encode())
    resp = await raw_exchange(port, data)
    assert resp.status == 200, resp.raw[:300]
    got = raw_upstream.received[-1]
    assert got.request_line == b"GET /b/%C3%A9t%C3%A9.txt?prefix=%C3%BC HTTP/1.1"
    assert verifies(got)


async def test_other_services_get_the_once_encoded_path(make_signet: Any, raw_upstream: RawUpstream) -> None:
    route = aws_route(raw_upstream, "execute-api")
    port = await start(make_signet, [route])
    resp = await raw_exchange(port, request("GET", "/execute-api/prod/items/a(1)/%7eb?q=x y".replace(" ", "%20")))
    assert resp.status == 200, resp.raw[:300]
    got = raw_upstream.received[-1]
    assert got.request_line == b"GET /prod/items/a%281%29/~b?q=x%20y HTTP/1.1"
    assert verifies(got, "execute-api")


# --------------------------------------------- finding 9: non-UTF-8 in a signed header


async def test_non_utf8_signed_header_value_is_400_not_500(
    make_signet: Any, raw_upstream: RawUpstream
) -> None:
    port = await start(make_signet, [aws_route(raw_upstream)])
    for header in (b"x-amz-meta-a: \xff\xfe", b"Content-Type: text/\xc3("):
        error = await refused(port, raw_upstream, request("PUT", "/s3/b/k", header, body=b"x"), 400)
        assert error["code"] == "bad_request"
        assert "UTF-8" in error["message"]
    # valid UTF-8 in a signed value is signed as UTF-8 and verifies
    resp = await raw_exchange(port, request("PUT", "/s3/b/k", "x-amz-meta-a: été".encode(), body=b"x"))
    assert resp.status == 200, resp.raw[:300]


async def test_the_scheme_itself_refuses_what_the_route_does_not_list() -> None:
    """Defence in depth: whatever path reaches the signer, it never signs an unlisted x-amz-* header."""
    from multidict import CIMultiDict

    from proxy.auth import SchemeContext, UpstreamRequest
    from proxy.auth.aws_sigv4 import AwsSigV4, AwsSigV4Options
    from proxy.errors import Forbidden

    options = AwsSigV4Options(
        scheme="aws-sigv4", region="eu-west-1", service="s3", access_key_id=AK, secret_access_key=SK
    )
    guarded = AwsSigV4(options, SchemeContext(route="s3", client_amz_headers=("x-amz-meta-*",)))
    for name in ("x-amz-acl", "X-Amz-Copy-Source", "x_amz_meta_a"):
        req = UpstreamRequest("PUT", "/b/k", "", CIMultiDict([(name, "v")]), b"", "http://127.0.0.1:9")
        with pytest.raises(Forbidden) as info:
            await guarded.apply(req)
        assert repr(name) in info.value.message
    ok = UpstreamRequest("PUT", "/b/k", "", CIMultiDict([("X-Amz-Meta-A", "v")]), b"", "http://127.0.0.1:9")
    assert "x-amz-meta-a" in (await guarded.apply(ok)).headers["Authorization"]


async def test_operator_set_headers_are_signed_and_not_refused(
    make_signet: Any, raw_upstream: RawUpstream
) -> None:
    route = aws_route(raw_upstream, set_headers={"x-amz-storage-class": "GLACIER", "X-Amz-Acl": "private"})
    port = await start(make_signet, [route])
    resp = await raw_exchange(port, request("PUT", "/s3/b/k", body=b"x"))
    assert resp.status == 200, resp.raw[:300]
    got = raw_upstream.received[-1]
    assert got.header("x-amz-acl") == ["private"] and "x-amz-acl" in got.header("Authorization")[0]
    assert verifies(got)
    # a client cannot send it itself
    await refused(port, raw_upstream, request("PUT", "/s3/b/k", b"x-amz-acl: public-read", body=b"x"))


def test_signet_check_shows_the_header_list_and_operations() -> None:
    from proxy.admission import check_lines

    settings = load_config_text(
        textwrap.dedent(
            """
            listen: 127.0.0.1:0
            clients:
              - name: uploader
                token: aaaaaaaaaaaaaaaaaaaaaaaa
                allow: [{route: s3, paths: ["/uploads/**"], operations: [s3:PutObject]}]
            routes:
              - name: s3
                prefix: /s3
                upstream: http://127.0.0.1:9
                client_amz_headers: [X-Amz-Meta-*]
                auth: {scheme: aws-sigv4, region: eu-west-1, service: s3,
                       access_key_id: AKIAX, secret_access_key: abcdefgh}
            """
        ),
        env={},
    )
    lines = check_lines(settings)
    assert "route s3: client x-amz-* headers signed only if x-amz-meta-*" in lines
    assert "client uploader: allow[0]: s3 any method /uploads/** operations s3:PutObject" in lines


async def test_refused_before_the_body_is_read(make_signet: Any, raw_upstream: RawUpstream) -> None:
    """A client waiting for 100-continue gets the 403 instead: no body byte is read or sent."""
    port = await start(make_signet, [aws_route(raw_upstream)])
    head = (
        b"PUT /s3/b/k HTTP/1.1\r\nHost: signet\r\nx-amz-acl: public-read\r\n"
        b"Expect: 100-continue\r\nContent-Length: 1048576\r\n\r\n"
    )
    resp = await raw_exchange(port, head, timeout=5, linger=0.2)  # the body is never sent
    assert resp.status == 403, resp.raw[:300]
    assert b"100 Continue" not in resp.raw
    assert raw_upstream.received == []


async def test_a_streamed_form_body_cannot_be_classified(make_signet: Any, raw_upstream: RawUpstream) -> None:
    """payload: unsigned streams the body unread: a form's Action is unknown, so an operations rule refuses."""
    sns = aws_route(raw_upstream, "sns")
    sns["auth"]["payload"] = "unsigned"
    port = await start(make_signet, [sns], clients=clients({"route": "sns", "operations": ["sns:Publish"]}))
    form = b"Content-Type: application/x-www-form-urlencoded"
    await refused(port, raw_upstream, request("POST", "/sns/?Action=Publish", form, body=b"Action=DeleteTopic"))
    await refused(port, raw_upstream, request("POST", "/sns/", form, body=b"Action=Publish"))
    resp = await raw_exchange(port, request("POST", "/sns/?Action=Publish", body=b"{}"))  # not a form
    assert resp.status == 200, resp.raw[:300]


def test_operations_need_the_clients_own_signer_to_be_aws() -> None:
    """With auth_by_client, the rule's client must itself be signed with aws-sigv4 on that route."""
    found = config_problems(
        """
        listen: 127.0.0.1:0
        clients:
          - name: team-a
            token: aaaaaaaaaaaaaaaaaaaaaaaa
            allow: [{route: mixed, operations: [s3:GetObject]}]
          - name: team-b
            token: bbbbbbbbbbbbbbbbbbbbbbbb
            allow: [{route: mixed, operations: [s3:GetObject]}]
        routes:
          - name: mixed
            prefix: /mixed
            upstream: http://127.0.0.1:9
            auth: {scheme: bearer, token: abcdefgh}
            auth_by_client:
              team-b: {scheme: aws-sigv4, region: eu-west-1, service: s3,
                       access_key_id: AKIAX, secret_access_key: abcdefgh}
        """
    )
    assert len(found) == 1 and "clients[0].allow[0].operations" in found[0], found

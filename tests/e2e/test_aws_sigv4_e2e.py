"""aws-sigv4 through a real `signet serve` against loopback AWS and STS stand-ins.

The stand-ins (tests/aws_fakes.py) verify with botocore, never with Signet's
signer: S3 (encoded once) and API Gateway (encoded twice), static keys with a
session token, unsigned streamed payloads, a wrong secret (403 with the
expected canonical request), and web identity credentials from STS renewed
ahead of a short ``Expiration`` without a failed request.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.aws_fakes import AwsKey, AwsState, StsState, aws_service_app, sts_app
from tests.conftest import SUITE_SECRETS, config_text, no_secret_in, secret

AK = "AKIAE2EEXAMPLE0000001"
SK = secret("e2e-aws-secret-key/K7MDENG+bPxRfiCY")
SESSION = secret("e2e-aws-session-token//////////wEaDFAKE")
ROLE = "arn:aws:iam::123456789012:role/signet-e2e"


def aws_route(server: Any, service: str, region: str = "eu-west-1", **auth: Any) -> dict[str, Any]:
    route: dict[str, Any] = {
        "name": service,
        "prefix": f"/{service}",
        "upstream": str(server.make_url("")).rstrip("/"),
        "timeout": {"connect": 2, "read": 10},
        "auth": {"scheme": "aws-sigv4", "region": region, "service": service, **auth},
    }
    return route


def static_auth(**extra: Any) -> dict[str, Any]:
    return {"access_key_id": AK, "secret_access_key": "${SK}", **extra}


async def test_s3_and_api_gateway_verify_with_botocore(aiohttp_server: Any, signet_process: Any) -> None:
    s3 = AwsState("eu-west-1", "s3", {AK: AwsKey(SK, SESSION)})
    apigw = AwsState("eu-west-1", "execute-api", {AK: AwsKey(SK)})
    s3_server = await aiohttp_server(aws_service_app(s3), host="127.0.0.1")
    gw_server = await aiohttp_server(aws_service_app(apigw), host="127.0.0.1")
    routes = [
        aws_route(s3_server, "s3", **static_auth(session_token="${ST}")),
        {**aws_route(gw_server, "execute-api", **static_auth()), "client_amz_headers": ["x-amz-target"]},
    ]
    p = signet_process(config_text(routes), env={"SK": SK, "ST": SESSION})
    body = b'{"hello": "world"}' * 100
    async with aiohttp.ClientSession() as s:
        # S3 PUT: %2F, encoded space and unicode, raw reserved characters, metadata with odd spacing;
        # client-sent AWS headers are stripped and replaced
        target = "/s3/my-bucket/dir%2Fsub/na%20me/%C3%A9t%C3%A9(1)!.txt?x-id=PutObject&a=2&a=1&flag"
        headers = {
            "Content-Type": "application/json",
            "X-Amz-Meta-Note": "  two   spaces\tand tab ",
            "X-Amz-Security-Token": "client-token-must-not-pass",
            "X-Amz-Date": "19990101T000000Z",
            "Authorization": "AWS4-HMAC-SHA256 Credential=client",
        }
        async with s.put(aiohttp.client.URL(p.proxy_url + target, encoded=True), data=body, headers=headers) as r:
            text = await r.text()
            assert r.status == 200, text
            echo = await r.json()
        # sent as it was signed: AWS's encoding of each segment (a raw '(' leaves as %28)
        assert echo["path"] == "/my-bucket/dir%2Fsub/na%20me/%C3%A9t%C3%A9%281%29%21.txt"
        assert echo["query"] == "x-id=PutObject&a=2&a=1&flag"
        assert echo["sha256"] == hashlib.sha256(body).hexdigest()
        seen = s3.accepted[-1]["headers"]
        assert seen["X-Amz-Security-Token"] == SESSION
        assert seen["X-Amz-Content-Sha256"] == hashlib.sha256(body).hexdigest()

        # S3 GET ListObjectsV2 with an empty value and a raw '/' in a query value
        url = aiohttp.client.URL(p.proxy_url + "/s3/my-bucket?list-type=2&prefix=a/b&delimiter=&continuation-token=x%2By", encoded=True)
        async with s.get(url) as r:
            assert r.status == 200, await r.text()

        # API Gateway: double-encoded path, signed JSON body, empty segments
        url = aiohttp.client.URL(p.proxy_url + "/execute-api/prod/items/a%2Fb//c?q=x%20y&q=a", encoded=True)
        async with s.post(url, data=b'{"n":1}', headers={"Content-Type": "application/json", "X-Amz-Target": "x"}) as r:
            assert r.status == 200, await r.text()
        async with s.get(p.proxy_url + "/execute-api/prod") as r:
            assert r.status == 200, await r.text()
    assert s3.rejected == [] and apigw.rejected == []
    assert len(s3.accepted) == 2 and len(apigw.accepted) == 2
    no_secret_in(p.text())


async def test_unsigned_payload_streams_past_max_body_bytes(aiohttp_server: Any, signet_process: Any) -> None:
    state = AwsState("us-east-1", "s3", {AK: AwsKey(SK)})
    server = await aiohttp_server(aws_service_app(state), host="127.0.0.1")
    route = aws_route(server, "s3", region="us-east-1", payload="unsigned", **static_auth())
    route["max_body_bytes"] = 65536
    p = signet_process(config_text([route]), env={"SK": SK})
    size = 4 << 20

    async def chunks() -> Any:
        for _ in range(size // 65536):
            yield b"u" * 65536

    async with aiohttp.ClientSession() as s:
        async with s.put(p.proxy_url + "/s3/bucket/big.bin", data=chunks()) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["len"] == size
        # a signed route would have refused it: the same upload with payload signed is 413
    assert state.accepted[-1]["headers"]["X-Amz-Content-Sha256"] == "UNSIGNED-PAYLOAD"


async def test_wrong_secret_gets_403_with_the_expected_canonical_request(
    aiohttp_server: Any, signet_process: Any
) -> None:
    state = AwsState("eu-west-1", "dynamodb", {AK: AwsKey(SK)})
    server = await aiohttp_server(aws_service_app(state), host="127.0.0.1")
    wrong = secret("e2e-wrong-aws-secret-key-xxxxxxxxx")
    route = {**aws_route(server, "dynamodb", **static_auth()), "client_amz_headers": ["X-Amz-Target"]}
    p = signet_process(config_text([route]), env={"SK": wrong})
    async with aiohttp.ClientSession() as s:
        async with s.post(p.proxy_url + "/dynamodb/", data=b"{}", headers={"X-Amz-Target": "DynamoDB_20120810.ListTables"}) as r:
            text = await r.text()
    assert r.status == 403  # the vendor's answer, passed back unchanged
    assert "<Code>SignatureDoesNotMatch</Code>" in text
    assert "<CanonicalRequest>POST\n/\n\n" in text
    assert "x-amz-target:DynamoDB_20120810.ListTables" in text
    assert state.rejected == ["signature"]


def web_identity_env(tmp_path: Path, token: str) -> tuple[dict[str, str], Path]:
    token_file = tmp_path / "token"
    token_file.write_text(token)
    return {"AWS_ROLE_ARN": ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file)}, token_file


async def test_web_identity_renews_before_expiry_without_a_failed_request(
    aiohttp_server: Any, signet_process: Any, tmp_path: Path
) -> None:
    aws = AwsState("eu-west-1", "s3")
    env, token_file = web_identity_env(tmp_path, secret("web-identity-jwt-one.aaaa.bbbb"))
    sts = StsState(aws, ROLE, expected_token=lambda: token_file.read_text(), lifetime=4)
    aws_server = await aiohttp_server(aws_service_app(aws), host="127.0.0.1")
    sts_server = await aiohttp_server(sts_app(sts), host="127.0.0.1")
    route = aws_route(
        aws_server, "s3", credentials="web-identity", sts_endpoint=str(sts_server.make_url("/"))
    )
    p = signet_process(config_text([route]), env=env)
    statuses: list[int] = []
    rotated = False
    async with aiohttp.ClientSession() as s:
        deadline = time.monotonic() + 9
        while time.monotonic() < deadline:
            if not rotated and sts.calls >= 2:
                # the kubelet rotates the projected token; the next STS call must use the new one
                token_file.write_text(secret("web-identity-jwt-two.cccc.dddd"))
                rotated = True
            async with s.get(p.proxy_url + "/s3/bucket/key", data=b"") as r:
                statuses.append(r.status)
                if r.status != 200:
                    print(await r.text())
            await asyncio.sleep(0.05)
    SUITE_SECRETS.update(sts.issued)
    assert statuses and set(statuses) == {200}, statuses
    assert aws.rejected == []
    assert sts.calls >= 3  # 4 s credentials renewed at half life over 9 s
    assert len({a["ak"] for a in aws.accepted}) >= 3
    assert sts.tokens_seen[-1] == "web-identity-jwt-two.cccc.dddd"
    events = [e for e in p.events() if e.get("event") == "token_fetch"]
    assert events and all(e["outcome"] == "ok" for e in events)
    assert any(e.get("background") for e in events)
    no_secret_in(p.text())


async def test_web_identity_rejected_token_is_a_token_error(
    aiohttp_server: Any, signet_process: Any, tmp_path: Path
) -> None:
    aws = AwsState("eu-west-1", "s3")
    env, token_file = web_identity_env(tmp_path, secret("web-identity-jwt-stale.eeee"))
    sts = StsState(aws, ROLE, expected_token=lambda: "something-else")
    aws_server = await aiohttp_server(aws_service_app(aws), host="127.0.0.1")
    sts_server = await aiohttp_server(sts_app(sts), host="127.0.0.1")
    route = aws_route(
        aws_server, "s3", credentials="web-identity", sts_endpoint=str(sts_server.make_url("/"))
    )
    p = signet_process(config_text([route]), env=env)
    async with aiohttp.ClientSession() as s:
        async with s.get(p.proxy_url + "/s3/bucket/key") as r:
            err = await r.json()
    assert r.status == 502 and err["error"]["code"] == "token_error"
    assert "STS answered HTTP 400: InvalidIdentityToken" in err["error"]["message"]
    assert "web-identity-jwt-stale" not in err["error"]["message"]
    assert aws.accepted == []
    no_secret_in(p.text())

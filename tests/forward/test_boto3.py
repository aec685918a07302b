"""boto3, unchanged, through forward-proxy mode: Signet re-signs SigV4 with its own credentials.

The app's boto3 has dummy credentials and its default endpoint; HTTPS_PROXY
and AWS_CA_BUNDLE are all it is given. Its bucket host
(``signet-demo.s3.amazonaws.com``, virtual-hosted style) is a route host whose
upstream carries the bucket as a base path, so ``https://bucket-host/key``
becomes ``upstream/signet-demo/key`` (path style) at the AWS stand-in.

The stand-in is tests/aws_fakes.py served over TLS: it verifies SigV4 with
botocore's own signer (moto's server does not check signatures, which is the
point here), so a pass means the signature Signet computed is AWS's.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web

from tests.aws_fakes import AwsKey, AwsState, aws_service_app
from tests.conftest import secret
from tests.forward.conftest import TOKEN_A, client_env, python, run
from tests.forward.vendor import server_context

AK = "AKIAFORWARDEXAMPLE001"
SK = secret("forward-aws-secret-key/K7MDENG+bPxRfi")


def _s3_answers(objects: dict[str, bytes]) -> Any:
    """Answer as S3 does once the stand-in accepted the signature: an ETag for a PUT, the object for a GET
    (boto3 takes any other 200 body for an error)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        response = await handler(request)
        if response.status != 200:
            return response
        if request.method == "PUT":
            objects[request.raw_path] = body
            return web.Response(headers={"ETag": f'"{hashlib.md5(body).hexdigest()}"'})
        return web.Response(body=objects.get(request.raw_path, b""), content_type="application/octet-stream")

    return middleware


async def test_boto3_put_and_get_through_the_proxy(
    aiohttp_server: Any, vendor_tls: tuple[trustme.CA, Path], forward_signet: Any, signet_ca: Path
) -> None:
    s3 = AwsState("us-east-1", "s3", {AK: AwsKey(SK)})
    app = aws_service_app(s3)
    objects: dict[str, bytes] = {}
    app.middlewares.append(_s3_answers(objects))
    server = await aiohttp_server(app, host="127.0.0.1", ssl=server_context(vendor_tls[0]))
    route = {
        "name": "s3",
        "prefix": "/s3",
        "upstream": f"https://127.0.0.1:{server.port}/signet-demo",
        "hosts": ["signet-demo.s3.amazonaws.com:443"],
        "auth": {
            "scheme": "aws-sigv4",
            "region": "us-east-1",
            "service": "s3",
            "access_key_id": AK,
            "secret_access_key": "${AWS_SK}",
        },
    }
    p = forward_signet([route], clients=[{"name": "app-a", "token": "${TOKEN_A}"}], extra_env={"AWS_SK": SK})
    code = """
import boto3, hashlib, json, sys
from botocore.config import Config
s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="APPS-OWN-KEY",
                  aws_secret_access_key="apps-own-secret",
                  config=Config(s3={"addressing_style": "virtual"}, retries={"max_attempts": 1}))
body = sys.stdin.buffer.read()
put = s3.put_object(Bucket="signet-demo", Key="reports/2026 q4.json", Body=body, Metadata={"team": "ops"})
got = s3.get_object(Bucket="signet-demo", Key="reports/2026 q4.json")
print(json.dumps({"put": put["ResponseMetadata"]["HTTPStatusCode"], "etag": put["ETag"],
                  "get": got["ResponseMetadata"]["HTTPStatusCode"],
                  "same": got["Body"].read() == body}))
"""
    body = json.dumps({"rows": list(range(500))}).encode()
    env = client_env(p.proxy_url, signet_ca / "ca.pem", token=TOKEN_A, AWS_CA_BUNDLE=str(signet_ca / "ca.pem"))
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        env.pop(name, None)
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent"
    # boto3 1.36+ sends PutObject as aws-chunked with a trailing checksum by default; the
    # aws-sigv4 scheme signs plain payloads only (in either form), so the app is told to
    # checksum only where S3 requires it: its configuration, not its code
    env["AWS_REQUEST_CHECKSUM_CALCULATION"] = "when_required"
    rc, out, err = await run(python(code), env, stdin=body)
    assert rc == 0, err[-1500:] + p.text()[-4000:]
    result = json.loads(out)
    assert objects == {"/signet-demo/reports/2026%20q4.json": body}, {k: v[:100] for k, v in objects.items()}
    assert result["put"] == 200 and result["get"] == 200 and result["same"] is True
    assert result["etag"] == f'"{hashlib.md5(body).hexdigest()}"'
    put, get = s3.accepted[-2:]
    assert put["path"] == "/signet-demo/reports/2026%20q4.json" and put["body_len"] == len(body)
    assert put["headers"]["X-Amz-Content-Sha256"] == hashlib.sha256(body).hexdigest()
    assert put["headers"]["x-amz-meta-team"] == "ops"
    assert get["ak"] == AK and "APPS-OWN-KEY" not in json.dumps([put, get])
    assert s3.rejected == []

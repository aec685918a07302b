"""moto's server as a second, independent SigV4 verifier (issue 19, finding 2).

moto (a real ``python -m moto.server`` process on loopback) authenticates
every request with IAM once its first ``INITIAL_NO_AUTH_ACTION_COUNT`` actions
are spent, and it rebuilds the canonical request from the bytes it receives:
a request verifies only when what Signet sent is exactly what it signed. The
fixture spends those actions creating an IAM user, its access key and an
``s3:*`` + ``dynamodb:*`` policy, then proves a wrong key is refused before any test relies on
a success. Clients are real: curl, and boto3 without credentials
(``botocore.UNSIGNED``) pointed at Signet's route.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import config_text, secret
from tests.fakes import free_port

REGION = "us-east-1"
SETUP_ACTIONS = 3  # CreateUser, CreateAccessKey, PutUserPolicy: authentication starts after them
CURL = shutil.which("curl") or "/usr/bin/curl"


@dataclass(frozen=True)
class Moto:
    endpoint: str
    access_key_id: str
    secret_access_key: str


def _wait_ready(endpoint: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"moto_server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(endpoint + "/moto-api/", timeout=1) as r:  # not an AWS action
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("moto_server did not answer in time")


def _s3(moto: Moto, secret_key: str, access_key: str | None = None) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=moto.endpoint,
        region_name=REGION,
        aws_access_key_id=access_key or moto.access_key_id,
        aws_secret_access_key=secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


@contextlib.contextmanager
def _quiet_botocore() -> Iterator[None]:
    loggers = [logging.getLogger(n) for n in ("botocore", "boto3", "urllib3")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@pytest.fixture(scope="session")
def moto() -> Iterator[Moto]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    workdir = Path(tempfile.mkdtemp(prefix="signet-moto-"))
    log = workdir / "moto.log"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_ACTIONS)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )
    try:
        _wait_ready(endpoint, proc, log)
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="AKIDMOTOSETUP0000000",
            aws_secret_access_key="unused-before-auth-starts",
        )
        with _quiet_botocore():  # its debug log would print the new secret key (the suite logs at debug)
            iam.create_user(UserName="signet")
            key = iam.create_access_key(UserName="signet")["AccessKey"]
            policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*", "dynamodb:*"], "Resource": "*"}]}
            iam.put_user_policy(UserName="signet", PolicyName="s3", PolicyDocument=json.dumps(policy))
        found = Moto(endpoint, key["AccessKeyId"], secret(key["SecretAccessKey"]))
        _assert_refuses_a_wrong_key(found)  # before any test may rely on a success
        yield found
    finally:
        proc.kill()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def test_moto_refuses_a_wrong_key(moto: Moto) -> None:
    _assert_refuses_a_wrong_key(moto)


def _assert_refuses_a_wrong_key(moto: Moto) -> None:
    with pytest.raises(ClientError) as info:
        _s3(moto, "not-the-secret-" + "x" * 25).list_buckets()
    assert info.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as info:
        _s3(moto, moto.secret_access_key, access_key="AKIANOSUCHKEY0000000").list_buckets()
    assert info.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    _s3(moto, moto.secret_access_key).list_buckets()  # and the right one is accepted


@pytest.fixture
def signet_s3(moto: Moto, signet_process: Any) -> str:
    """A Signet whose ``/s3`` route signs for moto's IAM user; its route URL."""
    route = {
        "name": "s3",
        "prefix": "/s3",
        "upstream": moto.endpoint,
        "max_body_bytes": 64 << 20,
        "timeout": {"connect": 5, "read": 60},
        "auth": {
            "scheme": "aws-sigv4",
            "region": REGION,
            "service": "s3",
            "access_key_id": moto.access_key_id,
            "secret_access_key": "${MOTO_SECRET}",
        },
    }
    p = signet_process(config_text([route]), env={"MOTO_SECRET": moto.secret_access_key})
    return str(p.proxy_url) + "/s3"


def _unsigned_s3(url: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name=REGION,
        config=Config(
            signature_version=botocore.UNSIGNED,
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            # boto3 >= 1.36 adds x-amz-sdk-checksum-algorithm and trailing checksums by
            # default; the route's default client_amz_headers let x-amz-checksum-* through only
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


SPECIAL_KEYS = [
    "plain.txt",
    "a+b (1)*=,:@~!$'.txt",
    "dir/sub/été ü.txt",
    "reports/2026/q1.csv",
    "percent%2Fliteral.txt",
]


def test_boto3_through_signet(signet_s3: str) -> None:
    s3 = _unsigned_s3(signet_s3)
    bucket = "boto-bucket"
    s3.create_bucket(Bucket=bucket)
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    small = os.urandom(1024)
    large = os.urandom(50 << 20)
    for key in SPECIAL_KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=small)
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == small, key
    s3.put_object(Bucket=bucket, Key="big/50mib.bin", Body=large)
    got = s3.get_object(Bucket=bucket, Key="big/50mib.bin")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(large).digest()
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="reports/")
    assert [o["Key"] for o in listed["Contents"]] == ["reports/2026/q1.csv"]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="a+b (", Delimiter="/")
    assert [o["Key"] for o in listed["Contents"]] == ["a+b (1)*=,:@~!$'.txt"]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="dir/sub/é")
    assert [o["Key"] for o in listed["Contents"]] == ["dir/sub/été ü.txt"]
    for key in [*SPECIAL_KEYS, "big/50mib.bin"]:
        s3.delete_object(Bucket=bucket, Key=key)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    s3.delete_bucket(Bucket=bucket)
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def curl(*args: str, data: Path | None = None) -> tuple[int, bytes]:
    cmd = [CURL, "-sS", "--path-as-is", "-g", "--max-time", "60", "-o", "-", "-w", "\n%{http_code}"]
    if data is not None:
        cmd += ["--data-binary", f"@{data}", "-H", "Content-Type:"]
    out = subprocess.run([*cmd, *args], capture_output=True, timeout=90, check=True).stdout
    body, _, code = out.rpartition(b"\n")
    return int(code), body


def test_curl_through_signet_with_raw_and_encoded_characters(signet_s3: str, tmp_path: Path) -> None:
    bucket = signet_s3 + "/curl-bucket"
    assert curl("-X", "PUT", bucket)[0] == 200
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(1024))
    large = tmp_path / "large.bin"
    large.write_bytes(os.urandom(50 << 20))
    # (key as curl sends it, the same key spelled another way, the key S3 stores)
    keys = [
        ("a+b(1)*=,:@~.txt", "a%2Bb%281%29%2A%3D%2C%3A%40%7E.txt", "a+b(1)*=,:@~.txt"),
        ("sp%20ace%2Fslash.txt", "sp%20ace/slash.txt", "sp ace/slash.txt"),
        ("été.txt", "%C3%A9t%C3%A9.txt", "été.txt"),
        ("reports/2026/q1.csv", "reports%2F2026%2Fq1.csv", "reports/2026/q1.csv"),
    ]
    for sent, other, _ in keys:
        code, body = curl("-X", "PUT", f"{bucket}/{sent}", data=small)
        assert code == 200, (sent, body)
        code, body = curl(f"{bucket}/{other}")
        assert code == 200 and body == small.read_bytes(), (other, body[:300])
    code, body = curl("-X", "PUT", f"{bucket}/big.bin", data=large)
    assert code == 200, body
    code, body = curl(f"{bucket}/big.bin")
    assert code == 200 and hashlib.sha256(body).digest() == hashlib.sha256(large.read_bytes()).digest()
    # queries: the README's own, a raw '/' and '+', raw UTF-8, an encoded '('
    for query, expected in (
        ("list-type=2&prefix=reports/", ["reports/2026/q1.csv"]),
        ("list-type=2&prefix=a+b(", ["a+b(1)*=,:@~.txt"]),
        ("list-type=2&prefix=a%2Bb%28", ["a+b(1)*=,:@~.txt"]),
        ("list-type=2&prefix=ét", ["été.txt"]),
        ("list-type=2&prefix=sp%20ace/&delimiter=/", ["sp ace/slash.txt"]),
        ("prefix=big&max-keys=5", ["big.bin"]),
    ):
        code, body = curl(f"{bucket}?{query}")
        assert code == 200, (query, body[:400])
        listed = [k.decode() for k in _keys(body)]
        assert listed == expected, (query, body[:400])
    for _, _, stored in [*keys, ("", "", "big.bin")]:
        code, body = curl("-X", "DELETE", f"{bucket}/{stored}".replace(" ", "%20"))
        assert code == 204, (stored, body)
    assert curl("-X", "DELETE", bucket)[0] == 204
    code, body = curl(signet_s3 + "/")
    assert code == 200 and b"curl-bucket" not in body


def _keys(xml: bytes) -> list[bytes]:
    return [part.split(b"</Key>")[0] for part in xml.split(b"<Key>")[1:]]


ADMIN_TOKEN = secret("moto-admin-client-token-1a2b3c4d")
READER_TOKEN = secret("moto-reader-client-token-5e6f7a8b")


def _dynamodb_via(url: str, token: str) -> Any:
    client = boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name=REGION,
        config=Config(signature_version=botocore.UNSIGNED, retries={"max_attempts": 1}),
    )

    def add_token(request: Any, **_: Any) -> None:
        request.headers["X-Signet-Token"] = token

    client.meta.events.register("before-send", add_token)
    return client


def test_dynamodb_operations_rule_through_signet(moto: Moto, signet_process: Any) -> None:
    """X-Amz-Target names the operation: a reader limited to Query cannot PutItem or DeleteTable."""
    route = {
        "name": "dynamodb",
        "prefix": "/dynamodb",
        "upstream": moto.endpoint,
        "client_amz_headers": ["x-amz-target"],
        "auth": {
            "scheme": "aws-sigv4",
            "region": REGION,
            "service": "dynamodb",
            "access_key_id": moto.access_key_id,
            "secret_access_key": "${MOTO_SECRET}",
        },
    }
    clients = [
        {"name": "admin", "token": "${ADMIN}"},
        {"name": "reader", "token": "${READER}",
         "allow": [{"route": "dynamodb", "operations": ["dynamodb:Query", "dynamodb:DescribeTable"]}]},
    ]
    env = {"MOTO_SECRET": moto.secret_access_key, "ADMIN": ADMIN_TOKEN, "READER": READER_TOKEN}
    p = signet_process(config_text([route], clients=clients), env=env)
    url = str(p.proxy_url) + "/dynamodb"
    admin, reader = _dynamodb_via(url, ADMIN_TOKEN), _dynamodb_via(url, READER_TOKEN)
    admin.create_table(
        TableName="orders",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    admin.put_item(TableName="orders", Item={"id": {"S": "a+b (1)/é"}, "n": {"N": "1"}})
    query = {"TableName": "orders", "KeyConditionExpression": "id = :v",
             "ExpressionAttributeValues": {":v": {"S": "a+b (1)/é"}}}
    assert reader.query(**query)["Count"] == 1
    assert reader.describe_table(TableName="orders")["Table"]["TableName"] == "orders"
    for call in (
        lambda: reader.put_item(TableName="orders", Item={"id": {"S": "x"}}),
        lambda: reader.delete_table(TableName="orders"),
    ):
        with pytest.raises(ClientError) as info:
            call()
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert info.value.response["ResponseMetadata"]["HTTPHeaders"]["x-signet-error"] == "forbidden"
    assert admin.scan(TableName="orders")["Count"] == 1  # nothing the reader tried reached moto
    admin.delete_table(TableName="orders")

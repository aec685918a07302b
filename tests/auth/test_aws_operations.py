"""The AWS operation classifier behind ``operations:`` rules, checked against botocore's own models.

botocore serialises each operation from the service's published model; the
request it would send is captured before it leaves (a ``before-send`` hook
that aborts) and Signet's classifier must name the same operation. The
hand-written cases cover what the SDK never sends: unknown and repeated
sub-resources, disagreeing ``Action`` sources, REST services.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore
import pytest
from botocore.config import Config

from proxy.auth.aws_operations import S3_OPERATIONS, classify, form_actions, is_form


class _Captured(Exception):
    pass


def _sent(service: str, operation: str, **params: Any) -> tuple[str, str, str, dict[str, str], bytes]:
    """(method, path, query, headers, body) of the request botocore builds for ``operation``."""
    client = boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        config=Config(signature_version=botocore.UNSIGNED, s3={"addressing_style": "path"}),
    )
    seen: dict[str, Any] = {}

    def capture(request: Any, **_: Any) -> None:
        seen["request"] = request
        raise _Captured

    client.meta.events.register("before-send", capture)
    with pytest.raises(_Captured):
        getattr(client, botocore.xform_name(operation))(**params)
    req = seen["request"]
    url = urlsplit(req.url)
    body = req.body if isinstance(req.body, bytes) else (req.body or b"")
    if not isinstance(body, bytes):
        body = body.read() if hasattr(body, "read") else str(body).encode()
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in req.headers.items()}
    return req.method, url.path, url.query, headers, body


B, K = {"Bucket": "bkt"}, {"Bucket": "bkt", "Key": "dir/k+(1).txt"}
UP = {**K, "UploadId": "u1"}
S3_CASES: list[tuple[str, dict[str, Any]]] = [
    ("ListBuckets", {}),
    ("CreateBucket", B),
    ("DeleteBucket", B),
    ("HeadBucket", B),
    ("ListObjects", B),
    ("ListObjectsV2", {**B, "Prefix": "reports/"}),
    ("ListObjectVersions", B),
    ("ListMultipartUploads", B),
    ("GetBucketLocation", B),
    ("GetBucketAcl", B),
    ("PutBucketAcl", {**B, "ACL": "private"}),
    ("GetBucketPolicy", B),
    ("PutBucketPolicy", {**B, "Policy": "{}"}),
    ("DeleteBucketPolicy", B),
    ("GetBucketTagging", B),
    ("DeleteBucketTagging", B),
    ("GetBucketVersioning", B),
    ("GetBucketCors", B),
    ("DeleteBucketCors", B),
    ("GetBucketLifecycleConfiguration", B),
    ("DeleteBucketLifecycle", B),
    ("GetBucketWebsite", B),
    ("DeleteBucketWebsite", B),
    ("GetBucketEncryption", B),
    ("GetPublicAccessBlock", B),
    ("GetObject", K),
    ("HeadObject", K),
    ("PutObject", {**K, "Body": b"x"}),
    ("CopyObject", {**K, "CopySource": "other/src"}),
    ("DeleteObject", K),
    ("GetObjectAcl", K),
    ("PutObjectAcl", {**K, "ACL": "private"}),
    ("GetObjectTagging", K),
    ("DeleteObjectTagging", K),
    ("CreateMultipartUpload", K),
    ("UploadPart", {**UP, "PartNumber": 1, "Body": b"x"}),
    ("UploadPartCopy", {**UP, "PartNumber": 1, "CopySource": "other/src"}),
    ("CompleteMultipartUpload", UP),
    ("AbortMultipartUpload", UP),
    ("ListParts", UP),
    ("RestoreObject", K),
    ("GetObjectAttributes", {**K, "ObjectAttributes": ["ETag"]}),
]


@pytest.mark.parametrize(("operation", "params"), S3_CASES, ids=[c[0] for c in S3_CASES])
def test_s3_operations_as_botocore_sends_them(operation: str, params: dict[str, Any]) -> None:
    assert operation in S3_OPERATIONS
    method, path, query, headers, _ = _sent("s3", operation, **params)
    assert classify("s3", method, path, query, headers) == f"s3:{operation}", (method, path, query)


def test_s3_delete_objects() -> None:
    method, path, query, headers, _ = _sent(
        "s3", "DeleteObjects", Bucket="bkt", Delete={"Objects": [{"Key": "a"}]}
    )
    assert classify("s3", method, path, query, headers) == "s3:DeleteObjects"


@pytest.mark.parametrize(
    ("service", "operation", "params"),
    [
        ("dynamodb", "Query", {"TableName": "t"}),
        ("dynamodb", "DeleteTable", {"TableName": "t"}),
        ("kinesis", "PutRecord", {"StreamName": "s", "Data": b"x", "PartitionKey": "p"}),
        ("sns", "Publish", {"TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": "m"}),
        ("sts", "GetCallerIdentity", {}),
        ("sqs", "SendMessage", {"QueueUrl": "http://127.0.0.1:9/1/q", "MessageBody": "m"}),
    ],
)
def test_json_and_query_apis_as_botocore_sends_them(service: str, operation: str, params: dict[str, Any]) -> None:
    method, path, query, headers, body = _sent(service, operation, **params)
    form = form_actions(body) if is_form(headers) else None
    assert classify(service, method, path, query, headers, form=form) == f"{service}:{operation}"


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        ("GET", "/bkt/k?torrent", {}),  # a sub-resource Signet does not know
        ("GET", "/bkt/k?acl&tagging", {}),  # two
        ("GET", "/bkt/k?versionId=1&versionId=2", {}),  # repeated
        ("POST", "/bkt/k", {}),  # browser-form upload: not classified
        ("PATCH", "/bkt/k", {}),
        ("GET", "/bkt/k", {"x-amz-copy-source": "a/b"}),
        ("PUT", "/bkt?uploads", {}),
        ("GET", "/?acl", {}),
        ("GET", "/bkt?list-type=3", {}),
        ("DELETE", "/bkt/k?uploads", {}),
    ],
)
def test_s3_requests_that_cannot_be_classified(method: str, target: str, headers: dict[str, str]) -> None:
    path, _, query = target.partition("?")
    assert classify("s3", method, path, query, headers) is None


def test_virtual_hosted_bucket_endpoint_reads_the_path_as_the_key() -> None:
    host = "my-bucket.s3.eu-west-1.amazonaws.com"
    assert classify("s3", "GET", "/reports/a.csv", "", {}, host=host) == "s3:GetObject"
    assert classify("s3", "GET", "/", "list-type=2", {}, host=host) == "s3:ListObjectsV2"
    assert classify("s3", "GET", "/reports/a.csv", "", {}, host="127.0.0.1") == "s3:GetObject"
    assert classify("s3", "GET", "/reports", "", {}, host="127.0.0.1") == "s3:ListObjects"
    for host in ("my.dotted.bucket.s3.eu-west-1.amazonaws.com", "b.s3-accelerate.amazonaws.com",
                 "b.s3.dualstack.us-east-1.amazonaws.com", "b.s3.cn-north-1.amazonaws.com.cn"):
        assert classify("s3", "DELETE", "/x", "", {}, host=host) == "s3:DeleteObject", host
    for host in ("s3.amazonaws.com", "s3.eu-west-1.amazonaws.com", "minio.internal"):
        assert classify("s3", "DELETE", "/x", "", {}, host=host) == "s3:DeleteBucket", host
    # an encoded separator in the bucket segment: bucket or key is the server's call, so none
    assert classify("s3", "DELETE", "/bkt%2Fkey", "", {}) is None


def test_api_operation_sources_must_agree() -> None:
    target = {"X-Amz-Target": "DynamoDB_20120810.Query"}
    assert classify("dynamodb", "POST", "/", "", target) == "dynamodb:Query"
    assert classify("dynamodb", "POST", "/", "Action=Scan", target) is None
    assert classify("sqs", "POST", "/", "Action=SendMessage", {}, form=["SendMessage"]) == "sqs:SendMessage"
    assert classify("sqs", "POST", "/", "Action=SendMessage", {}, form=["PurgeQueue"]) is None
    assert classify("sqs", "POST", "/", "Action=Send&Action=Send", {}) == "sqs:Send"  # the same one
    assert classify("sqs", "POST", "/", "Action=Send&Action=Purge", {}) is None
    assert classify("sqs", "POST", "/", "Action=lower", {}) is None
    assert classify("lambda", "POST", "/2015-03-31/functions/f/invocations", "", {}) is None
    assert form_actions(b"Version=1&Action=Send%4Dessage&x=%FF") == ["SendMessage"]
    assert classify("sqs", "GET", "/", "Action=SendMessage&action=DeleteQueue", {}) is None
    assert form_actions(b"ACTION=DeleteQueue") == ["DeleteQueue"]


def test_every_s3_name_signet_accepts_is_a_real_s3_operation() -> None:
    """A rule can only name operations S3 has (config validation uses this set)."""
    model = boto3.client("s3", region_name="us-east-1").meta.service_model
    assert set(S3_OPERATIONS) - set(model.operation_names) == set()

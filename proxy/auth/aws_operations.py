"""Which AWS operation a request is, for ``operations:`` in client allow rules.

A rule that names operations (``operations: [s3:GetObject, dynamodb:Query]``)
lets a client do exactly those, whatever path and method rules also allow. The
operation is read from the request the way the service reads it:

- **S3** (REST): the method, whether the path names a bucket and a key, the
  sub-resource in the query (``?acl``, ``?tagging``, ``?uploads``...) and
  ``x-amz-copy-source``. See :data:`S3_OPERATIONS` for every name supported.
- **JSON services** (DynamoDB, Kinesis, CloudWatch Logs...): ``X-Amz-Target``,
  ``DynamoDB_20120810.Query`` -> ``dynamodb:Query``.
- **Query services** (SQS, SNS, STS, IAM, EC2...): the ``Action`` parameter,
  in the query or in an ``application/x-www-form-urlencoded`` body.

Anything that cannot be classified with certainty (an unknown query
parameter on S3, two sub-resources, ``Action`` and ``X-Amz-Target`` that
disagree, a REST service other than S3) is None: a rule naming operations
then refuses it. Guessing would let a client reach an operation the rule
never named.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import unquote, unquote_plus

#: ``service:Operation`` as written in a rule
OPERATION = re.compile(r"^([a-z0-9][a-z0-9-]*):([A-Z][A-Za-z0-9]*)$")

# S3 sub-resources: a query parameter naming what of the bucket or object is addressed
_BUCKET_SUB = {
    "acl": "BucketAcl",
    "policy": "BucketPolicy",
    "tagging": "BucketTagging",
    "versioning": "BucketVersioning",
    "cors": "BucketCors",
    "lifecycle": "BucketLifecycleConfiguration",
    "website": "BucketWebsite",
    "notification": "BucketNotificationConfiguration",
    "encryption": "BucketEncryption",
    "replication": "BucketReplication",
    "logging": "BucketLogging",
    "publicAccessBlock": "PublicAccessBlock",
    "ownershipControls": "BucketOwnershipControls",
    "object-lock": "ObjectLockConfiguration",
    "accelerate": "BucketAccelerateConfiguration",
    "requestPayment": "BucketRequestPayment",
}
# the sub-resources S3 can DELETE (DeleteBucketPolicy, ..., DeletePublicAccessBlock)
_BUCKET_DELETABLE = frozenset(
    {"policy", "tagging", "cors", "lifecycle", "website", "encryption", "replication",
     "publicAccessBlock", "ownershipControls"}
)
_BUCKET_GET_ONLY = {
    "location": "GetBucketLocation",
    "versions": "ListObjectVersions",
    "uploads": "ListMultipartUploads",
}
_OBJECT_SUB = {
    "acl": "ObjectAcl",
    "tagging": "ObjectTagging",
    "retention": "ObjectRetention",
    "legal-hold": "ObjectLegalHold",
}
# parameters that never change the operation (listing and response options)
_S3_PLAIN_PARAMS = frozenset(
    {
        "prefix", "delimiter", "marker", "max-keys", "encoding-type", "continuation-token",
        "fetch-owner", "start-after", "key-marker", "version-id-marker", "upload-id-marker",
        "max-uploads", "max-parts", "part-number-marker", "versionId", "x-id",
        "response-content-type", "response-content-language", "response-expires",
        "response-cache-control", "response-content-disposition", "response-content-encoding",
        "select-type",
    }
)


def _s3_names() -> frozenset[str]:
    names = {
        "ListBuckets", "CreateBucket", "DeleteBucket", "HeadBucket", "ListObjects",
        "ListObjectsV2", "DeleteObjects", "GetObject", "HeadObject", "PutObject", "CopyObject",
        "DeleteObject", "CreateMultipartUpload", "UploadPart", "UploadPartCopy",
        "CompleteMultipartUpload", "AbortMultipartUpload", "ListParts", "GetObjectAttributes",
        "RestoreObject", "SelectObjectContent",
    }
    names.update(_BUCKET_GET_ONLY.values())
    for sub, suffix in _BUCKET_SUB.items():
        names.update({f"Get{suffix}", f"Put{suffix}"})
        if sub in _BUCKET_DELETABLE and sub != "lifecycle":
            names.add(f"Delete{suffix}")
    names.add("DeleteBucketLifecycle")
    for suffix in _OBJECT_SUB.values():
        names.update({f"Get{suffix}", f"Put{suffix}"})
    names.add("DeleteObjectTagging")
    return frozenset(names)


#: every S3 operation Signet can tell apart (Delete* variants of sub-resources included)
S3_OPERATIONS = _s3_names()


def _params(raw_query: str) -> list[tuple[str, str]]:
    out = []
    for part in raw_query.split("&"):
        if part:
            name, _, value = part.partition("=")
            out.append((unquote(name), unquote(value)))
    return out


_VIRTUAL_HOST = re.compile(r"^.+\.s3[.-]([a-z0-9-]+\.)*amazonaws\.com(\.cn)?$")


def _is_virtual_host(host: str) -> bool:
    """``bucket.s3.amazonaws.com``, ``my.bucket.s3.eu-west-1.amazonaws.com``,
    ``bucket.s3-accelerate.amazonaws.com``...: the bucket is in the host, the path is the key."""
    return _VIRTUAL_HOST.match(host.lower()) is not None


def s3_operation(
    method: str, path: str, query: str, headers: Mapping[str, str], host: str = ""
) -> str | None:
    """The S3 operation (without ``s3:``) of a REST request, or None when not certain.

    ``path`` is the raw upstream path; path-style (``/bucket/key``) unless
    ``host`` is a virtual-hosted bucket endpoint.
    """
    segments = path.split("/")[1:] if path.startswith("/") else path.split("/")
    if _is_virtual_host(host):
        bucket, key = "bucket", "/".join(segments)
    else:
        bucket = segments[0] if segments else ""
        key = "/".join(segments[1:])
        if "%" in bucket:
            return None  # no bucket name has one; %2F may split it into bucket and key upstream
    params = _params(query)
    names = [n for n, _ in params]
    if len(set(names)) != len(names):
        return None  # a repeated parameter: which one the service reads is not ours to guess
    known = set(_BUCKET_SUB) | set(_BUCKET_GET_ONLY) | set(_OBJECT_SUB)
    known |= {"uploadId", "partNumber", "uploads", "delete", "restore", "select", "attributes"}
    known.add("list-type")
    if any(n not in known and n not in _S3_PLAIN_PARAMS for n in names):
        return None
    subs = {n for n in names if n not in _S3_PLAIN_PARAMS and n != "list-type"}
    copy = any(k.lower() == "x-amz-copy-source" for k in headers)
    if not bucket:
        return "ListBuckets" if method == "GET" and not subs and not params else None
    if not key:
        return _s3_bucket_operation(method, subs, dict(params))
    return _s3_object_operation(method, subs, copy)


def _s3_bucket_operation(method: str, subs: set[str], params: dict[str, str]) -> str | None:
    if len(subs) > 1:
        return None
    sub = next(iter(subs), None)
    if sub is None:
        if method == "GET":
            list_type = params.get("list-type")
            if list_type is None:
                return "ListObjects"
            return "ListObjectsV2" if list_type == "2" else None
        return {"PUT": "CreateBucket", "DELETE": "DeleteBucket", "HEAD": "HeadBucket"}.get(method)
    if "list-type" in params:
        return None
    if sub in _BUCKET_GET_ONLY:
        return _BUCKET_GET_ONLY[sub] if method == "GET" else None
    if sub == "delete":
        return "DeleteObjects" if method == "POST" else None
    suffix = _BUCKET_SUB.get(sub)
    verb = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}.get(method)
    if suffix is None or verb is None or (verb == "Delete" and sub not in _BUCKET_DELETABLE):
        return None
    if sub == "lifecycle" and verb == "Delete":
        return "DeleteBucketLifecycle"  # S3's name: not ...LifecycleConfiguration
    return verb + suffix


_UPLOAD_ID = {"GET": "ListParts", "POST": "CompleteMultipartUpload", "DELETE": "AbortMultipartUpload"}
_OBJECT_POST = {
    "uploads": "CreateMultipartUpload",
    "restore": "RestoreObject",
    "select": "SelectObjectContent",
}


def _s3_object_operation(method: str, subs: set[str], copy: bool) -> str | None:
    if subs == {"uploadId", "partNumber"}:
        if method == "PUT":
            return "UploadPartCopy" if copy else "UploadPart"
        return None
    if copy and (method != "PUT" or subs):
        return None
    if len(subs) > 1:
        return None
    sub = next(iter(subs), None)
    if sub is None:
        if method == "PUT":
            return "CopyObject" if copy else "PutObject"
        return {"GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(method)
    if sub == "uploadId":
        return _UPLOAD_ID.get(method)
    if method == "POST":
        return _OBJECT_POST.get(sub)
    if sub == "attributes":
        return "GetObjectAttributes" if method == "GET" else None
    if sub == "tagging" and method == "DELETE":
        return "DeleteObjectTagging"
    suffix = _OBJECT_SUB.get(sub)
    verb = {"GET": "Get", "PUT": "Put"}.get(method)
    if suffix is None or verb is None:
        return None
    return verb + suffix


FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


def is_form(headers: Mapping[str, str]) -> bool:
    value = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    return value.split(";")[0].strip().lower() == FORM_CONTENT_TYPE


def form_actions(body: bytes) -> list[str]:
    """Every ``Action`` value of a form body (decoded as a form: ``+`` is a space)."""
    out = []
    for part in body.split(b"&"):
        name, _, value = part.partition(b"=")
        if unquote_plus(name.decode("latin-1")).lower() == "action":
            out.append(unquote_plus(value.decode("utf-8", "replace")))
    return out


def api_operation(
    query: str, headers: Mapping[str, str], form: list[str] | None = None
) -> str | None:
    """The operation of a JSON or Query API call (without the service prefix), or None.

    ``form`` holds the ``Action`` values of a form body once it was read
    (None: not read, or not a form). Every source that names an operation
    must name the same one.
    """
    found: set[str] = set()
    for name, value in headers.items():
        if name.lower() == "x-amz-target":
            found.add(value.strip().rpartition(".")[2])
    # any spelling of the name counts: which one a service reads is not ours to guess
    actions = [v for n, v in _params(query) if n.lower() == "action"] + list(form or ())
    found.update(actions)
    if len(found) != 1:
        return None
    name = found.pop()
    return name if re.fullmatch(r"[A-Z][A-Za-z0-9]*", name) else None


def needs_form(headers: Mapping[str, str]) -> bool:
    """True when a form body may name the operation too: decide once it is read.

    Even with ``Action`` in the query or an ``X-Amz-Target``, a form body's
    ``Action`` must agree: which one a service reads is not ours to guess.
    """
    return is_form(headers)


def classify(
    service: str,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    *,
    host: str = "",
    form: list[str] | None = None,
) -> str | None:
    """``service:Operation`` for a request to ``service``, or None when it cannot be told."""
    if service == "s3":
        op = s3_operation(method, path, query, headers, host)
    else:
        op = api_operation(query, headers, form)
    return f"{service}:{op}" if op else None

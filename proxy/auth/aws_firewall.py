"""The SigV4 credential firewall: what a client may make Signet sign on an ``aws-sigv4`` route.

SigV4 signs every ``x-amz-*`` header, and on S3 such a header can change the
operation: ``x-amz-copy-source`` turns a PUT into a CopyObject from any
bucket the key can read, ``x-amz-acl`` and ``x-amz-grant-*`` publish an
object, ``x-amz-website-redirect-location`` plants a redirect. A path and
method rule cannot see any of that, so a client's ``x-amz-*`` header is
signed and sent only when the route lists it in ``client_amz_headers``
(globs, case-insensitive; :data:`DEFAULT_CLIENT_AMZ_HEADERS` by default);
any other is ``403 forbidden`` naming the header, before a byte of the body
is read. The headers the scheme sets itself (:data:`SET_BY_SCHEME`) are
stripped from the client as always and never refused.

Rules may also name operations (``operations: [s3:GetObject]``): the request
is classified by :mod:`proxy.auth.aws_operations` and refused unless a rule
that allows its method and path also names its operation. The pipeline calls
:func:`check_request` once routing and admission are done, and
:func:`check_form_body` after a body is read, for Query APIs whose
``Action`` only a form body names.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from proxy.auth.aws_operations import classify, form_actions, needs_form
from proxy.errors import Forbidden

if TYPE_CHECKING:
    from proxy.admission import Admission
    from proxy.body import SignedBody
    from proxy.runtime import RouteRuntime

DEFAULT_CLIENT_AMZ_HEADERS: tuple[str, ...] = (
    "x-amz-meta-*",
    "x-amz-checksum-*",
    "x-amz-storage-class",
    "x-amz-tagging",
)
#: set by the scheme itself; a client's are stripped (never signed, never refused)
SET_BY_SCHEME = frozenset({"x-amz-date", "x-amz-security-token", "x-amz-content-sha256"})
_GLOB = re.compile(r"^x-amz-[a-z0-9!#$%&'*+.^_`|~-]*$")

#: form bodies larger than this are not parsed for ``Action`` (Query API calls are small)
MAX_FORM_BYTES = 1024 * 1024


def amz_glob_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a usable ``client_amz_headers`` glob, or None."""
    low = pattern.lower()
    if not _GLOB.match(low):
        return (
            "must be an x-amz-* header name, optionally with '*' "
            "(e.g. x-amz-meta-*, x-amz-target)"
        )
    if low in SET_BY_SCHEME:
        return f"{pattern} is set by the aws-sigv4 scheme itself (a client's is always stripped)"
    return None


@functools.lru_cache(maxsize=64)
def _compiled(patterns: tuple[str, ...]) -> re.Pattern[str]:
    parts = ("[^ ]*".join(re.escape(p) for p in pat.lower().split("*")) for pat in patterns)
    return re.compile("|".join(f"(?:{p})" for p in parts) or "(?!)")


def forbidden_amz_header(headers: Mapping[str, str], patterns: tuple[str, ...]) -> str | None:
    """The first client ``x-amz-*`` header outside ``patterns`` (as the client spelled it), or None.

    ``_`` counts as ``-`` (many servers merge the two spellings), and an
    ``x_amz_*`` spelling is never allowed: it would go upstream unsigned.
    """
    allowed = _compiled(patterns)
    for name in headers:
        low = name.lower()
        if low[:6] not in ("x-amz-", "x_amz_", "x-amz_", "x_amz-"):
            continue
        norm = low.replace("_", "-")
        if norm in SET_BY_SCHEME:
            continue
        if "_" in low or allowed.fullmatch(norm) is None:
            return name
    return None


def _sigv4(route: RouteRuntime, client: str | None) -> Any:
    from proxy.auth.aws_sigv4 import AwsSigV4

    scheme = route.scheme_for(client)
    return scheme if isinstance(scheme, AwsSigV4) else None


def check_request(
    admission: Admission,
    route: RouteRuntime,
    client: str | None,
    method: str,
    rest: str,
    query: str,
    headers: Mapping[str, str],
) -> None:
    """Refuse (403) a forbidden client ``x-amz-*`` header or an operation outside the rules."""
    scheme = _sigv4(route, client)
    if scheme is None:
        return
    name = forbidden_amz_header(headers, route.route.client_amz_headers)
    if name is not None:
        admission.denied(route.name, client or "-")
        raise Forbidden(
            f"header {name!r} may not be sent through route {route.name!r}: SigV4 would sign it "
            f"with the route's key; the route's client_amz_headers allow "
            f"{', '.join(route.route.client_amz_headers) or 'none'}",
            route=route.name,
        )
    if scheme.service != "s3" and needs_form(headers):
        return  # only the form body names the operation: check_form_body decides
    _check_operation(admission, route, client, scheme.service, method, rest, query, headers, None)


def check_form_body(
    admission: Admission,
    route: RouteRuntime,
    client: str | None,
    method: str,
    rest: str,
    query: str,
    headers: Mapping[str, str],
    body: SignedBody | None,
) -> None:
    """The operation check for a Query API call whose ``Action`` is in its form body."""
    scheme = _sigv4(route, client)
    if scheme is None or scheme.service == "s3" or not needs_form(headers):
        return
    form: list[str] | None = None
    if body is not None and not body.spooled and body.size <= MAX_FORM_BYTES:
        form = form_actions(body.data)
    _check_operation(admission, route, client, scheme.service, method, rest, query, headers, form)


def _check_operation(
    admission: Admission,
    route: RouteRuntime,
    client: str | None,
    service: str,
    method: str,
    rest: str,
    query: str,
    headers: Mapping[str, str],
    form: list[str] | None,
) -> None:
    if client is None:
        return
    policy = admission.policies.get(client)
    if policy is None or not policy.names_operations(route.name):
        return
    operation = classify(
        service,
        method,
        route.upstream_path(rest),
        query,
        headers,
        host=route.route.upstream.host or "",
        form=form,
    )
    why = policy.operation_denial(route.name, method, rest or "/", operation)
    if why is not None:
        admission.denied(route.name, client)
        raise Forbidden(why, route=route.name)

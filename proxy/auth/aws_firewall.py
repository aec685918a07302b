"""The SigV4 credential firewall: what a client may make Signet sign on an ``aws-sigv4`` route.

SigV4 signs every ``x-amz-*`` header, and on S3 such a header can change the
operation: ``x-amz-copy-source`` turns a PUT into a CopyObject from any
bucket the key can read, ``x-amz-acl`` and ``x-amz-grant-*`` publish an
object, ``x-amz-website-redirect-location`` plants a redirect. A path and
method rule cannot see any of that, so a client's ``x-amz-*`` header is
signed and sent only when the route lists it in ``client_amz_headers``
(globs, case-insensitive; see :mod:`proxy.auth.aws_headers`); any other is
``403 forbidden`` naming the header, before a byte of the body is read. The
headers the scheme sets itself are stripped from the client as always and
never refused.

Rules may also name operations (``operations: [s3:GetObject]``): the request
is classified by :mod:`proxy.auth.aws_operations` and refused unless a rule
that allows its method and path also names its operation. The pipeline calls
:func:`check_request` once the route and client are known, before
admission (a refused request takes no rate-limit slot), and
:func:`check_form_body` after a body is read, for Query APIs whose
``Action`` only a form body names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from proxy.auth.aws_headers import amz_header_refused, forbidden_amz_header
from proxy.auth.aws_operations import classify, form_actions, needs_form
from proxy.auth.aws_sigv4 import AwsSigV4
from proxy.errors import Forbidden

if TYPE_CHECKING:
    from proxy.admission import Admission
    from proxy.body import SignedBody
    from proxy.runtime import RouteRuntime

#: form bodies larger than this are not parsed for ``Action`` (Query API calls are small)
MAX_FORM_BYTES = 1024 * 1024


def _sigv4(route: RouteRuntime, client: str | None) -> AwsSigV4 | None:
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
    name = forbidden_amz_header(headers, route.route.client_amz_headers, route.stripped)
    if name is not None:
        admission.denied(route.name, client or "-")
        raise amz_header_refused(name, route.name, route.route.client_amz_headers)
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
    """The operation check for a Query API call whose ``Action`` may be in its form body.

    ``body`` is the body read whole, or None when it streams upstream unread
    (``payload: unsigned``): then nothing says what it names, and a rule that
    names operations refuses it.
    """
    scheme = _sigv4(route, client)
    if scheme is None or scheme.service == "s3" or not needs_form(headers):
        return
    readable = body is not None and not body.spooled and body.size <= MAX_FORM_BYTES
    form = form_actions(body.data) if body is not None and readable else None
    _check_operation(
        admission, route, client, scheme.service, method, rest, query, headers, form, readable
    )


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
    readable: bool = True,
) -> None:
    if client is None:
        return
    policy = admission.policies.get(client)
    if policy is None or not policy.names_operations(route.name):
        return
    operation = None if not readable else classify(
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

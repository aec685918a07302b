"""The request head, written in one piece in the client's own header spelling."""

from __future__ import annotations

from collections.abc import Iterable

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # an empty body still says Content-Length: 0


def request_head(
    method: str,
    target: str,
    host: str,
    headers: Iterable[tuple[str, str]],
    length: int | None,
    chunked: bool,
) -> bytes:
    """``METHOD target HTTP/1.1`` plus headers, framed by ``length`` or ``chunked``.

    Any ``Content-Length``/``Transfer-Encoding`` among ``headers`` is replaced
    by the framing of the body actually sent (the name keeps the client's
    spelling). A ``Host`` among ``headers`` wins over ``host``.
    """
    parts = [method, " ", target, " HTTP/1.1\r\n", ""]  # [4]: Host, first like curl
    length_name = "Content-Length"
    host_given = False
    for name, value in headers:
        lname = name.lower()
        if lname == "content-length":
            length_name = name
            continue
        if lname == "transfer-encoding":
            continue
        if lname == "host":
            host_given = True
        if "\n" in value or "\r" in value:
            raise ValueError(f"header {name!r} has a line break in its value")
        parts += (name, ": ", value, "\r\n")
    if not host_given:
        parts[4] = f"Host: {host}\r\n"
    if chunked:
        parts.append("Transfer-Encoding: chunked\r\n")
    elif length is not None and (length or method in _BODY_METHODS):
        parts += (length_name, ": ", str(length), "\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("utf-8", "surrogateescape")

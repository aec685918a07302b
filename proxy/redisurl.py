"""``state.redis`` URLs: is one usable, and how to name it in logs (never its password).

Kept apart from :mod:`proxy.state` so loading a config does not import the
Redis client.
"""

from __future__ import annotations

from yarl import URL

REDIS_SCHEMES = ("redis", "rediss", "unix")


def redis_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be used as ``state.redis``, or None. Never quotes the URL."""
    try:
        u = URL(url)
    except (ValueError, TypeError):
        return "not a valid URL"
    if u.scheme not in REDIS_SCHEMES:
        return "must be a redis://, rediss:// or unix:// URL"
    if u.scheme == "unix":
        if not u.path or u.path == "/":
            return "a unix:// URL needs the socket path (unix:///run/redis.sock)"
        return None
    if not u.host:
        return "must name a host (redis://HOST:6379/0)"
    try:
        u.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "bad port"
    db = u.path.strip("/")
    if db and not db.isdigit():
        return "the path must be a database number (redis://HOST:6379/0)"
    if u.raw_query_string or u.raw_fragment:
        return "must not have a query or fragment"
    return None


def describe(url: str) -> str:
    """``scheme://host:port/db`` for logs: never the user name or password."""
    try:
        u = URL(url)
    except (ValueError, TypeError):
        return "?"
    if u.scheme == "unix":
        return f"unix://{u.path}"
    port = f":{u.port}" if u.port else ""
    return f"{u.scheme}://{u.host}{port}{u.path if u.path != '/' else ''}"

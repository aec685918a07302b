"""Per-client allow rules: which methods and raw paths a client may use on a route.

Rules are compiled once per config load into one regular expression per rule.
``paths`` globs match the path exactly as the client sent it, after the
route's prefix (no decoding): ``*`` matches within one segment, ``**`` across
segments. ``%2F`` is three ordinary characters, never a segment boundary, so
``/files/*`` matches ``/files/a%2Fb``. A trailing ``/**`` also matches the
directory itself (``/deals/**`` matches ``/deals``), and ``/**/`` matches a
single ``/`` too (``/a/**/b`` matches ``/a/b``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.config import AllowRule, Client


def glob_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a usable path glob, or None."""
    if not pattern.startswith("/"):
        return "a path glob must start with '/' (it matches the path after the route's prefix)"
    if "?" in pattern or "#" in pattern:
        return "a path glob matches the path only: no '?' or '#'"
    for segment in pattern.split("/"):
        if "**" in segment and segment != "**":
            return "'**' must be a whole path segment (e.g. /a/**/b); use '*' within a segment"
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in pattern):
        return "a path glob must not contain spaces or control characters"
    return None


def compile_glob(pattern: str) -> str:
    """The regular expression (without anchors) for one path glob."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("/**", i) and (i + 3 == len(pattern) or pattern[i + 3] == "/"):
            # '/**' is optional as a whole: /deals/** matches /deals, /a/**/b matches /a/b
            out.append("(?:/.*)?")
            i += 3
            continue
        ch = pattern[i]
        out.append("[^/]*" if ch == "*" else re.escape(ch))
        i += 1
    return "".join(out)


@dataclass(frozen=True)
class CompiledRule:
    index: int  # position in the client's allow list (named in a denial)
    route: str
    methods: frozenset[str] | None
    paths: tuple[str, ...] | None
    regex: re.Pattern[str] | None  # None: every path
    operations: frozenset[str] | None = None  # AWS operations (proxy.auth.aws_firewall); None: any

    def allows(self, method: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return self.regex is None or self.regex.fullmatch(path) is not None

    def describe(self) -> str:
        methods = ",".join(sorted(self.methods)) if self.methods is not None else "any method"
        paths = " ".join(self.paths) if self.paths is not None else "any path"
        ops = f" operations {','.join(sorted(self.operations))}" if self.operations is not None else ""
        return f"allow[{self.index}]: {self.route} {methods} {paths}{ops}"


def compile_rule(index: int, rule: AllowRule) -> CompiledRule:
    regex = None
    if rule.paths is not None:
        regex = re.compile("|".join(f"(?:{compile_glob(p)})" for p in rule.paths))
    return CompiledRule(index, rule.route, rule.methods, rule.paths, regex, rule.operations)


class ClientPolicy:
    """One client's allow rules, grouped by route.

    A client without ``allow`` has no policy object at all: its ``routes``
    list (checked by the pipeline) is everything there is to check.
    """

    def __init__(self, client: str, rules: tuple[AllowRule, ...]) -> None:
        self.client = client
        self.rules = tuple(compile_rule(i, r) for i, r in enumerate(rules))
        self.by_route: dict[str, tuple[CompiledRule, ...]] = {}
        for rule in self.rules:
            self.by_route[rule.route] = (*self.by_route.get(rule.route, ()), rule)

    def denial(self, route: str, method: str, path: str) -> str | None:
        """None when some rule allows ``method path`` on ``route``; else the reason, naming the rules."""
        rules = self.by_route.get(route)
        if rules is None:
            return f"client {self.client!r} has no allow rule for route {route!r}"
        for rule in rules:
            if rule.allows(method, path):
                return None
        missed = "; ".join(r.describe() for r in rules)
        return f"client {self.client!r} may not {method} {_clip(path)} on route {route!r}: outside {missed}"


    def names_operations(self, route: str) -> bool:
        """True when some rule for ``route`` names AWS operations (then each request is classified)."""
        return any(r.operations is not None for r in self.by_route.get(route, ()))

    def operation_denial(self, route: str, method: str, path: str, operation: str | None) -> str | None:
        """Like :meth:`denial`, and the rule must also allow ``operation`` (None: unclassified)."""
        rules = self.by_route.get(route, ())
        for rule in rules:
            if rule.allows(method, path) and (
                rule.operations is None or (operation is not None and operation in rule.operations)
            ):
                return None
        what = operation or "an operation Signet cannot classify"
        missed = "; ".join(r.describe() for r in rules)
        return (
            f"client {self.client!r} may not {what} ({method} {_clip(path)}) on route {route!r}: "
            f"outside {missed}"
        )


def compile_policies(clients: tuple[Client, ...] | None) -> dict[str, ClientPolicy]:
    """Every client that has ``allow`` rules -> its compiled policy."""
    return {c.name: ClientPolicy(c.name, c.allow) for c in clients or () if c.allow is not None}


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."

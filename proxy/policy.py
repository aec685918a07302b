"""Per-client allow rules: which methods and raw paths a client may use on a route.

Rules are compiled once per config load. ``paths`` globs match the path as
the client sent it, after the route's prefix, one raw ``/``-separated segment
at a time:

- a literal segment matches the same raw text (no decoding: ``%41`` is not ``A``);
- a segment with ``*`` matches one segment that holds no separator in any
  spelling (:func:`proxy.spellings.has_separator`): ``/pub/*`` refuses
  ``/pub/x%2Fadmin``, ``x%5Cadmin``, ``x\\admin``, ``x%252F..``, full-width
  solidus U+FF0F (raw or ``%EF%BC%8F``), because the server behind the vendor
  may decode any of them into a new segment;
- ``**`` (a whole segment) matches any number of segments, encoded
  separators included: it already allows what they could reach. A trailing
  ``/**`` also matches the directory itself (``/deals/**`` matches
  ``/deals``), and ``/**/`` matches a single ``/`` too (``/a/**/b`` matches
  ``/a/b``).

A method rule also binds the method-override headers and ``_method`` query
parameters many frameworks honour (:func:`method_overrides`): every method a
request names must be allowed by the same rule. An allowed override is
forwarded as sent: the rule admitted that method.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from proxy.spellings import TooDeep, has_separator, views

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
        if "*" in segment and segment != "**" and has_separator(segment.replace("*", "")):
            return (
                f"segment {segment!r} can never match: '*' never matches a segment holding "
                "a separator in any spelling (%2F, \\, %5C, ...); use '**' to cross segments"
            )
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in pattern):
        return "a path glob must not contain spaces or control characters"
    return None


_ANY_SEGMENTS = None  # '**' in a compiled glob


@dataclass(frozen=True)
class PathGlob:
    """One compiled ``paths`` glob: per segment, literal text, a regex (``*``) or ``**``.

    ``plain`` is the whole glob as one regular expression (``*`` as ``[^/]*``):
    exact, and fast, for a path in which no separator can hide (ASCII, no
    ``%``, no ``\\``), which is nearly every request.
    """

    pattern: str
    parts: tuple[str | re.Pattern[str] | None, ...]
    plain: re.Pattern[str]

    @classmethod
    def compile(cls, pattern: str) -> PathGlob:
        parts: list[str | re.Pattern[str] | None] = []
        for segment in pattern.split("/"):
            if segment == "**":
                parts.append(_ANY_SEGMENTS)
            elif "*" in segment:
                parts.append(re.compile(".*".join(re.escape(p) for p in segment.split("*")), re.S))
            else:
                parts.append(segment)
        return cls(pattern, tuple(parts), re.compile(_plain_regex(pattern)))

    def matches(self, path: RawPath) -> bool:
        """Whether ``path`` matches, segment by segment (see the module docstring)."""
        if path.plain:
            return self.plain.fullmatch(path.text) is not None
        segments = path.segments
        n = len(segments)
        reachable = {0}  # segment positions the glob parts so far can end at
        for part in self.parts:
            if part is _ANY_SEGMENTS:
                reachable = set(range(min(reachable), n + 1))
            elif isinstance(part, str):
                reachable = {i + 1 for i in reachable if i < n and segments[i] == part}
            else:
                reachable = {
                    i + 1
                    for i in reachable
                    if i < n and part.fullmatch(segments[i]) and not path.separated(i)
                }
            if not reachable:
                return False
        return n in reachable


def _plain_regex(pattern: str) -> str:
    """The glob as one regular expression over a path with no hidden separator."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("/**", i) and (i + 3 == len(pattern) or pattern[i + 3] == "/"):
            out.append("(?:/.*)?")  # /deals/** matches /deals, /a/**/b matches /a/b
            i += 3
            continue
        ch = pattern[i]
        out.append("[^/]*" if ch == "*" else re.escape(ch))
        i += 1
    return "".join(out)


class RawPath:
    """A raw path split at ``/``, with each segment's hidden-separator test done at most once."""

    def __init__(self, path: str) -> None:
        self.text = path
        # no separator can hide in a path that is ASCII without '%' or '\\'
        self.plain = path.isascii() and "%" not in path and "\\" not in path
        self._separated: dict[int, bool] = {}

    @functools.cached_property
    def segments(self) -> list[str]:
        return self.text.split("/")

    def separated(self, index: int) -> bool:
        known = self._separated.get(index)
        if known is None:
            known = self._separated[index] = has_separator(self.segments[index])
        return known


def compile_glob(pattern: str) -> PathGlob:
    """The compiled form of one path glob (validated first with :func:`glob_problem`)."""
    return PathGlob.compile(pattern)


# ---------------------------------------------------------------- method overrides

# header names ASP.NET, Express method-override, OData, Symfony and others honour,
# compared as the header policy compares names: any case, '_' and '-' alike
OVERRIDE_HEADERS = frozenset({"x-http-method-override", "x-http-method", "x-method-override"})
_OVERRIDE_LENGTHS = frozenset(len(h) for h in OVERRIDE_HEADERS)
OVERRIDE_PARAM = "_method"  # Rails, Laravel, Express method-override, Symfony
_PARAM_SPELLING = str.maketrans({"-": "_", ".": "_", " ": "_", "[": "_"})


def method_overrides(headers: Iterable[tuple[str, str]], query: str) -> tuple[str, ...]:
    """Every method the request asks the upstream to use instead of its own, upper-case.

    From every occurrence of an override header (each comma-separated item)
    and of a ``_method`` query parameter, its name and value read in every
    spelling (:func:`proxy.spellings.views`: ``%5Fmethod``, ``%255Fmethod``;
    PHP also reads ``.method`` and ``[method`` as ``_method``). Reading too
    much only makes a rule stricter; reading too little would let a client past it.
    """
    found: list[str] = []
    for name, value in headers:
        if len(name) in _OVERRIDE_LENGTHS and name.lower().replace("_", "-") in OVERRIDE_HEADERS:
            found.extend(_methods_in(value))
    if query and ("method" in query.lower() or "%" in query or not query.isascii()):
        for pair in re.split("[&;]", query):
            name, _, value = pair.partition("=")
            if name and _names_override(name):
                for spelling in _spellings(value.replace("+", " ")):
                    found.extend(_methods_in(spelling))
    return tuple(dict.fromkeys(m for m in found if m))


def _names_override(name: str) -> bool:
    if name.isascii() and "%" not in name and "method" not in name.lower():
        return False
    return any(
        view.lstrip().lower().translate(_PARAM_SPELLING) == OVERRIDE_PARAM
        for view in _spellings(name.replace("+", " "))
    )


def _spellings(text: str) -> list[str]:
    try:
        return list(views(text))
    except TooDeep:
        return [text]  # refused by the target checks before any rule is applied


def _methods_in(value: str) -> list[str]:
    return [item.strip().upper() for item in value.split(",") if item.strip()]


# ---------------------------------------------------------------- rules


@dataclass(frozen=True)
class CompiledRule:
    index: int  # position in the client's allow list (named in a denial)
    route: str
    methods: frozenset[str] | None
    paths: tuple[str, ...] | None
    globs: tuple[PathGlob, ...] | None  # None: every path

    def allows(self, method: str, path: str | RawPath, overrides: Iterable[str] = ()) -> bool:
        """Whether ``method``, every override (:func:`method_overrides`) and ``path`` pass."""
        if self.methods is not None and (
            method not in self.methods or not self.methods.issuperset(overrides)
        ):
            return False
        if self.globs is None:
            return True
        raw = path if isinstance(path, RawPath) else RawPath(path)
        return any(g.matches(raw) for g in self.globs)

    def describe(self) -> str:
        methods = ",".join(sorted(self.methods)) if self.methods is not None else "any method"
        paths = " ".join(self.paths) if self.paths is not None else "any path"
        return f"allow[{self.index}]: {self.route} {methods} {paths}"


def compile_rule(index: int, rule: AllowRule) -> CompiledRule:
    globs = None
    if rule.paths is not None:
        globs = tuple(compile_glob(p) for p in rule.paths)
    return CompiledRule(index, rule.route, rule.methods, rule.paths, globs)


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

    def denial(
        self, route: str, method: str, path: str, overrides: tuple[str, ...] = ()
    ) -> str | None:
        """None when one rule allows ``method`` and every override on ``path``; else the reason.

        ``overrides`` come from :func:`method_overrides`. The reason names the
        rules missed (and the override, when there is one).
        """
        rules = self.by_route.get(route)
        if rules is None:
            return f"client {self.client!r} has no allow rule for route {route!r}"
        raw = RawPath(path)
        for rule in rules:
            if rule.allows(method, raw, overrides):
                return None
        missed = "; ".join(r.describe() for r in rules)
        asked = method
        if overrides:
            named = ", ".join(dict.fromkeys(_shown(m) for m in overrides))
            asked = f"{method} (overridden to {named} by a method-override header or _method parameter)"
        return f"client {self.client!r} may not {asked} {_clip(path)} on route {route!r}: outside {missed}"


def compile_policies(clients: tuple[Client, ...] | None) -> dict[str, ClientPolicy]:
    """Every client that has ``allow`` rules -> its compiled policy."""
    return {c.name: ClientPolicy(c.name, c.allow) for c in clients or () if c.allow is not None}


_METHOD_NAME = re.compile(r"[A-Z][A-Z0-9_-]{0,19}")


def _shown(method: str) -> str:
    """An override as the denial names it: a method name, never other text (it may come
    from the query, which no log line may carry)."""
    return method if _METHOD_NAME.fullmatch(method) else "(a value that is not a method name)"


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."

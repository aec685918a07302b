"""No file in proxy/ uses a private attribute of aiohttp, httptools or redis.

A private member (``_name``) can change in any release; the old listener
reached into 16 of aiohttp's and pinned it below 3.15. Four ways are caught,
by reading the source (ast), not by running it:

1. importing a private module or name (``from aiohttp.web_protocol import _ErrInfo``,
   ``import httptools._x``);
2. a private attribute on a name imported from those libraries (``web._x``,
   ``aiohttp.web.StreamResponse._prepare_headers``);
3. in a class that subclasses one of their classes, ``self._x`` where ``_x``
   is the base class's (an override or a read of its internals);
4. ``anything._x`` where ``_x`` is a private member of one of their public
   classes and proxy/ never defines ``_x`` itself.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

from tests.conftest import ROOT

LIBRARIES = ("aiohttp", "httptools", "redis")
_MODULES = (
    "aiohttp",
    "aiohttp.web",
    "aiohttp.web_protocol",
    "aiohttp.web_response",
    "aiohttp.client",
    "aiohttp.connector",
    "aiohttp.streams",
    "aiohttp.http_parser",
    "httptools",
    "redis",
    "redis.asyncio",
    "redis.asyncio.client",
    "redis.asyncio.connection",
)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _library_private_members() -> frozenset[str]:
    """Private names defined on the public classes of the three libraries."""
    names: set[str] = set()
    for module_name in _MODULES:
        module = importlib.import_module(module_name)
        for attr in dir(module):
            obj = getattr(module, attr, None)
            if inspect.isclass(obj) and not _is_private(attr):
                for klass in obj.__mro__:
                    if klass.__module__.split(".")[0] in LIBRARIES:
                        names.update(n for n in vars(klass) if _is_private(n))
                        names.update(n for n in getattr(klass, "__slots__", ()) if _is_private(n))
    return frozenset(names)


def _defined_in_proxy(trees: list[ast.Module]) -> frozenset[str]:
    """Every private name proxy/ defines itself (assigned attribute, def, class, slot)."""
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _is_private(node.value):
                names.add(node.value)  # __slots__ entries
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return frozenset(n for n in names if _is_private(n))


def _library_names(tree: ast.Module) -> dict[str, str]:
    """Local name -> dotted library path, for every import from the three libraries."""
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in LIBRARIES:
                    found[(alias.asname or alias.name).split(".")[0]] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in LIBRARIES:
            for alias in node.names:
                found[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return found


def violations(source: str, private: frozenset[str], own: frozenset[str]) -> list[str]:
    tree = ast.parse(source)
    problems: list[str] = []
    imported = _library_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                if module.split(".")[0] in LIBRARIES and any(_is_private(p) for p in module.split(".")):
                    problems.append(f"line {node.lineno}: private module {module}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in LIBRARIES:
                problems += [
                    f"line {node.lineno}: private name {a.name} from {node.module}"
                    for a in node.names
                    if _is_private(a.name)
                ]
        elif isinstance(node, ast.Attribute) and _is_private(node.attr):
            root: ast.expr = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in imported:
                problems.append(f"line {node.lineno}: {root.id}...{node.attr} (private, {imported[root.id]})")
            elif node.attr in private and node.attr not in own:
                problems.append(f"line {node.lineno}: .{node.attr} is a private member of {LIBRARIES}")
        elif isinstance(node, ast.ClassDef):
            bases = [_dotted(b, imported) for b in node.bases if _base_name(b) in imported]
            if bases:
                base_attrs = _base_attributes(bases[0])
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Attribute) and _is_private(inner.attr) and inner.attr in base_attrs:
                        problems.append(f"line {inner.lineno}: self.{inner.attr} belongs to {bases[0]}")
                    if isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef) and inner.name in base_attrs:
                        problems.append(f"line {inner.lineno}: overrides private {inner.name}")
                    if isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store) and inner.id in base_attrs:
                        problems.append(f"line {inner.lineno}: overrides private {inner.id}")
    return problems


def _base_name(node: ast.expr) -> str:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else ""


def _dotted(node: ast.expr, imported: dict[str, str]) -> str:
    """``web.StreamResponse`` -> ``aiohttp.web.StreamResponse``."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    assert isinstance(node, ast.Name)
    return ".".join([imported[node.id], *reversed(parts)])


def _base_attributes(dotted: str) -> frozenset[str]:
    module_name, _, attr = dotted.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except ImportError:  # a class reached through a module attribute (aiohttp.web.StreamResponse)
        head, _, mid = module_name.rpartition(".")
        try:
            obj = getattr(getattr(importlib.import_module(head), mid), attr)
        except (ImportError, AttributeError):
            return frozenset()
    except AttributeError:
        return frozenset()
    return frozenset(n for n in dir(obj) if _is_private(n)) if inspect.isclass(obj) else frozenset()


def _proxy_files() -> list[Path]:
    return sorted((ROOT / "proxy").rglob("*.py"))


def test_no_private_api_of_aiohttp_httptools_or_redis_in_proxy() -> None:
    files = _proxy_files()
    trees = [ast.parse(p.read_text()) for p in files]
    private, own = _library_private_members(), _defined_in_proxy(trees)
    found = {str(p.relative_to(ROOT)): violations(p.read_text(), private, own) for p in files}
    assert {k: v for k, v in found.items() if v} == {}


@pytest.mark.parametrize(
    "source",
    [
        "from aiohttp.web_protocol import RequestHandler, _ErrInfo\n",
        "import httptools._private\n",
        "from aiohttp import web\nclass R(web.StreamResponse):\n    _send_headers_immediately = False\n"
        "    async def _prepare_headers(self):\n        await super()._prepare_headers()\n",
        "from aiohttp.web_protocol import RequestHandler\nclass H(RequestHandler):\n"
        "    def f(self):\n        return self._messages\n",
        "import aiohttp\nx = aiohttp.web._internal_thing\n",
        "def f(request):\n    return request._payload_writer\n",
        "def f(pool):\n    return pool._available_connections\n",
    ],
)
def test_the_check_catches_each_kind(source: str) -> None:
    """The check fails on the kinds of use the old listener had (so it cannot pass vacuously)."""
    assert violations(source, _library_private_members(), frozenset()) != []

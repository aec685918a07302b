"""Write docs/reference.md from the pydantic config models (``python -m proxy.docgen``).

The reference is generated so it cannot drift from what the loader accepts:
every option of :class:`~proxy.config.SettingsModel` and of each auth
scheme's ``Options`` model, with its type, default, allowed values and the
field's ``description``. tests/docs/test_reference.py fails when a field has
no description or when the committed page differs from what this writes.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from proxy.auth import SCHEMES
from proxy.config import SettingsModel, parse_duration
from proxy.secret import Secret

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference.md"

_SCALARS: dict[Any, str] = {str: "string", bool: "boolean", int: "integer", float: "number", Secret: "string"}


@dataclass(frozen=True)
class Option:
    """One documented option: its dotted path (``routes[].timeout.read``) and field."""

    path: str
    name: str
    field: FieldInfo
    model: type[BaseModel] | None  # the nested model, when the option is a section of its own


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside ``M``, ``M | None`` or ``list[M]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def _is_list(annotation: Any) -> bool:
    if get_origin(annotation) is list:
        return True
    return any(_is_list(arg) for arg in get_args(annotation) if arg is not type(None))


def options(model: type[BaseModel] = SettingsModel, prefix: str = "") -> Iterator[Option]:
    """Every option of ``model`` and of the models nested in it, depth first."""
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        nested = _nested_model(field.annotation)
        yield Option(path, name, field, nested)
        if nested is not None:
            yield from options(nested, path + ("[]." if _is_list(field.annotation) else "."))


def scheme_options(scheme: str) -> Iterator[Option]:
    """The fields of one auth scheme's ``Options`` model (``scheme`` itself excluded)."""
    for name, field in SCHEMES[scheme].Options.model_fields.items():
        if name != "scheme":
            yield Option(name, name, field, None)


def type_name(annotation: Any) -> str:
    """A reader's name for a type: ``string``, ``list of string``, `` `a` | `b` ``."""
    origin = get_origin(annotation)
    args = get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is Annotated:
        if any(getattr(m, "func", None) is parse_duration for m in annotation.__metadata__):
            return "duration"
        # TextOrSecret is Annotated[Any, ...]: a string, kept secret when it came from a reference
        return "string" if args[0] is Any else type_name(args[0])
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (Union, types.UnionType):
        names = [type_name(a) for a in args if a is not type(None)]
        unique = list(dict.fromkeys(names))
        return " or ".join(unique)
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is dict:
        return f"mapping of {type_name(args[0])} to {type_name(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    if getattr(annotation, "__name__", "") == "Template":
        return "template"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _yaml(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value)


def default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    factory = field.default_factory
    value = factory() if factory is not None else field.default  # type: ignore[call-arg]
    if value is PydanticUndefined:
        return "**required**"
    if isinstance(value, BaseModel):
        return "see below"
    return f"`{_yaml(value)}`"


def constraints(field: FieldInfo) -> str:
    words = []
    for item in field.metadata:
        for attr, sign in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
            bound = getattr(item, attr, None)
            if bound is not None and isinstance(item, annotated_types.BaseMetadata):
                words.append(f"{sign} {_yaml(bound)}")
        if isinstance(item, annotated_types.MinLen) and item.min_length:
            unit = "item" if _is_list(field.annotation) else "character"
            words.append(f"at least {item.min_length} {unit}" + ("s" if item.min_length > 1 else ""))
    return ", ".join(words)


def _anchor(path: str) -> str:
    return path.replace("[]", "").replace(".", "-").replace("_", "-").lower()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(rows: list[Option], sections: dict[str, str]) -> list[str]:
    out = ["| option | type | default | description |", "|---|---|---|---|"]
    for opt in rows:
        kind = type_name(opt.field.annotation)
        if opt.model is not None and opt.path in sections:
            kind = f"[{kind}](#{sections[opt.path]})"
        elif opt.path.endswith(("auth", "auth_by_client")) and opt.path.startswith("routes"):
            per_client = " per client name" if opt.name == "auth_by_client" else ""
            kind = f"[auth block](#auth-schemes){per_client}"
        extra = constraints(opt.field)
        if extra:
            kind += f" ({extra})"
        desc = opt.field.description or ""
        out.append(f"| `{opt.name}` | {kind} | {default_text(opt.field)} | {_cell(desc)} |")
    return out


def render() -> str:
    """The whole reference page, in Markdown."""
    every = list(options())
    sections = {opt.path: _anchor(opt.path) for opt in every if opt.model is not None}
    lines = [
        "<!-- Generated by `python -m proxy.docgen` from the config models; do not edit by hand. -->",
        "# Configuration reference",
        "",
        "Every option Signet's config file accepts, generated from the models the loader",
        "validates with (`proxy/config.py`, `proxy/auth/*.py`), so it is always complete.",
        "Unknown keys are errors. Any string value may be a secret reference (`${NAME}`,",
        "`${file:/path}`, `${vault:MOUNT/PATH#FIELD}`); durations take seconds or a unit",
        "(`500ms`, `2s`, `1m`, `1h`). `path[]` is an item of a list. For what the options do",
        "together, see [Configuration](configuration.md); `config/signet.yaml` shows every one.",
        "",
        "## Top level",
        "",
        *_table([o for o in every if "." not in o.path], sections),
    ]
    for opt in every:
        if opt.model is None:
            continue
        prefix = opt.path + ("[]." if _is_list(opt.field.annotation) else ".")
        rows = [o for o in every if o.path.startswith(prefix) and "." not in o.path[len(prefix):]]
        title = opt.path + ("[]" if _is_list(opt.field.annotation) else "")
        lines += ["", f"## `{title}` {{#{sections[opt.path]}}}", "", _cell(opt.field.description or ""), ""]
        lines += _table(rows, sections)
    lines += [
        "",
        "## Auth schemes",
        "",
        "`routes[].auth` (and each entry of `routes[].auth_by_client`) is `scheme:` plus the fields",
        "of that scheme. See [Vendors](vendors.md), [Recipes](recipes.md) and [AWS](aws.md).",
    ]
    for scheme in sorted(SCHEMES):
        rows = list(scheme_options(scheme))
        doc = (SCHEMES[scheme].__doc__ or "").strip().split("\n\n", 1)[0].replace("\n", " ")
        lines += ["", f"### `scheme: {scheme}`", ""]
        if doc:
            lines += [doc, ""]
        lines += _table(rows, sections) if rows else ["No fields."]
    return "\n".join(lines) + "\n"


def undocumented() -> list[str]:
    """Options without a description (the test requires none)."""
    missing = [o.path for o in options() if not o.field.description]
    missing += [
        f"auth {scheme}.{o.name}"
        for scheme in SCHEMES
        for o in scheme_options(scheme)
        if not o.field.description
    ]
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proxy.docgen", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REFERENCE, help="default docs/reference.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run python -m proxy.docgen", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

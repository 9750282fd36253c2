"""Render the spec reference (docs/spec.md) from the models, so the docs cannot drift."""

from __future__ import annotations

import enum
import typing

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from plantstage.spec import models


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        parts = [_type_name(a) for a in args if a is not type(None)]
        return " \\| ".join(parts) + (" (optional)" if type(None) in args else "")
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"map {_type_name(args[0])} → {_type_name(args[1])}"
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in args)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " \\| ".join(f"`{m.value}`" for m in tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"[{tp.__name__}](#{tp.__name__.lower()})"
    return getattr(tp, "__name__", str(tp))


def _models_in_order(root: type[BaseModel]) -> list[type[BaseModel]]:
    """Every model reachable from ``root``, depth-first in field order."""
    seen: list[type[BaseModel]] = []

    def visit(tp) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp in seen:
                return
            seen.append(tp)
            for f in tp.model_fields.values():
                visit(f.annotation)
            return
        for arg in typing.get_args(tp):
            visit(arg)

    visit(root)
    return seen


def render() -> str:
    out = ["# Spec reference (`plantstage.yaml`)", "",
           "Generated from `src/plantstage/spec/models.py` by "
           "`python -m plantstage.spec.docs > docs/spec.md`; a test keeps it current.",
           "`plantstage schema` prints the same as JSON Schema.", ""]
    for m in _models_in_order(models.Spec):
        out += [f"## {m.__name__}", "", (m.__doc__ or "").strip(), "",
                "| field | type | default | description |", "|---|---|---|---|"]
        for name, f in m.model_fields.items():
            key = f.alias or name
            if f.is_required():
                default = "**required**"
            elif f.default_factory is not None:
                default = "empty"
            elif f.default is PydanticUndefined or f.default is None:
                default = "—"
            else:
                d = f.default.value if isinstance(f.default, enum.Enum) else f.default
                default = f"`{d}`"
            desc = (f.description or "").replace("|", "\\|")
            out.append(f"| `{key}` | {_type_name(f.annotation)} | {default} | {desc} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":  # pragma: no cover
    print(render())

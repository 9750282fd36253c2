"""Load ``plantstage.yaml`` into a :class:`Spec`, with errors that name file, line and field.

PyYAML's composed node tree carries a line for every key and value; we walk it once to map each
field path to its line, then validate the plain data with pydantic and translate the first
validation error into one :class:`SpecError` line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from plantstage.errors import SpecError
from plantstage.spec.models import Spec

SPEC_FILENAME = "plantstage.yaml"


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec plus where it came from."""

    spec: Spec
    path: Path
    text: str

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def resolve_spec_path(path: str | Path) -> Path:
    """Accept a spec file or a directory holding ``plantstage.yaml``."""
    p = Path(path)
    if p.is_dir():
        p = p / SPEC_FILENAME
    if not p.exists():
        raise SpecError(
            "spec file not found",
            where=str(p),
            hint=f"pass a {SPEC_FILENAME} or a directory that holds one",
        )
    return p


def _line_map(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict:
    """Map each field path (tuple of keys / indexes) to its 1-based line."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[path + (key,)] = key_node.start_mark.line + 1
            _line_map(value_node, path + (key,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, path + (i,), out)
    return out


def _check_duplicate_keys(node: yaml.Node, file: Path) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.value in seen:
                raise SpecError(
                    f"duplicate key '{key_node.value}' (first at line {seen[key_node.value]})",
                    where=f"{file}:{key_node.start_mark.line + 1}",
                    hint="each key may appear once in a mapping",
                )
            seen[key_node.value] = key_node.start_mark.line + 1
            _check_duplicate_keys(value_node, file)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicate_keys(item, file)


def _nearest_line(lines: dict, loc: tuple) -> int | None:
    loc = tuple(loc)
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get(())


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def parse_spec_text(text: str, file: Path) -> LoadedSpec:
    """Validate spec text; ``file`` is used for messages and relative paths."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(
            f"malformed YAML: {problem}",
            where=f"{file}{line}",
            hint="check indentation and quoting on that line",
        ) from None
    if root is None or not isinstance(root, yaml.MappingNode):
        raise SpecError(
            "the spec must be a YAML mapping (name, estate, environments, releases …)",
            where=f"{file}:1",
            hint="run `plantstage schema` to see the expected shape",
        )
    _check_duplicate_keys(root, file)
    lines = _line_map(root)
    data: Any = yaml.safe_load(text)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
            hint = "remove it or fix its spelling; `plantstage schema` lists the fields"
        elif err["type"] == "missing":
            msg = "required field is missing"
            hint = "add it; `plantstage schema` lists the fields"
        else:
            hint = "see docs/spec.md for this field"
        field = _field_path(loc) or "(root)"
        line = _nearest_line(lines, loc)
        more = len(exc.errors()) - 1
        if more:
            msg += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise SpecError(
            f"{field}: {msg}",
            where=f"{file}:{line}" if line else str(file),
            hint=hint,
        ) from None
    return LoadedSpec(spec=spec, path=file.resolve(), text=text)


def load_spec(path: str | Path) -> LoadedSpec:
    """Load and validate a spec file (or a directory holding ``plantstage.yaml``)."""
    file = resolve_spec_path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read spec: {exc}", where=str(file)) from None
    return parse_spec_text(text, file)


def json_schema() -> str:
    """The JSON Schema of the spec, as text."""
    return json.dumps(Spec.model_json_schema(by_alias=True), indent=2)

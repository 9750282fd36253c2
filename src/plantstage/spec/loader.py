"""Load ``plantstage.yaml`` into a :class:`Spec`, with errors that name file, line and field.

The YAML is composed once, with bounds: the file size, the nesting depth, the number of
aliases and the size of the document once every alias is expanded are limited, so a small
file cannot make plantstage walk or build a huge graph (an "alias bomb"). The composed node
tree carries a line for every key and value; it is walked once, each node once (an alias is
not walked again), to map field paths to lines and to refuse duplicate keys. The same nodes
are then constructed into plain data and validated with pydantic; every validation error
becomes one :class:`SpecError` line with ``file:line`` and the field path, and all of them
together are raised as :class:`SpecProblems`.

Every YAML or encoding error (bad UTF-8, control characters, unknown tags, a bad merge key,
an integer too long to convert …) is one line with ``file:line``.
"""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from plantstage.errors import SpecError, SpecProblems
from plantstage.spec.models import Spec

SPEC_FILENAME = "plantstage.yaml"

#: Largest spec file read, in bytes.
MAX_SPEC_BYTES = 1 << 20
#: Deepest nesting of mappings and lists.
MAX_DEPTH = 64
#: Most aliases (``*name``) in one spec.
MAX_ALIASES = 256
#: Most nodes of the document once every alias is expanded.
MAX_EXPANDED_NODES = 100_000
#: Most problems reported at once (``plantstage check`` prints them all up to this).
MAX_PROBLEMS = 1000


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec plus where it came from."""

    spec: Spec
    path: Path
    text: str
    lines: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def line_of(self, *path: Any) -> int | None:
        """1-based line of a field path (its nearest declared parent), or None."""
        return _nearest_line(self.lines, tuple(path))

    def where(self, *path: Any) -> str:
        """``file:line`` of a field path, for error messages."""
        line = self.line_of(*path)
        return f"{self.path}:{line}" if line else str(self.path)


def resolve_spec_path(path: str | Path) -> Path:
    """Accept a spec file or a directory holding ``plantstage.yaml``."""
    p = Path(path)
    try:
        if p.is_dir():
            p = p / SPEC_FILENAME
        exists = p.exists()
    except (OSError, ValueError) as exc:  # name too long, NUL byte …
        raise SpecError(f"cannot use this path: {exc}", where=str(p)[:200],
                        hint=f"pass a {SPEC_FILENAME} or a directory that holds one") from None
    if not exists:
        raise SpecError(
            "spec file not found",
            where=str(p),
            hint=f"pass a {SPEC_FILENAME} or a directory that holds one",
        )
    return p


# -- bounded YAML ------------------------------------------------------------------------

class _Limit(yaml.MarkedYAMLError):
    """A bound was exceeded while composing; carries the mark of the offending node."""


class _Bounds:
    """Limits on nesting and aliases while composing, and marked conversion errors."""

    _depth = 0
    _aliases = 0

    def compose_node(self, parent, index):  # noqa: ANN001, ANN201 - PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Limit(None, None, f"more than {MAX_ALIASES} aliases",
                             self.peek_event().start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Limit(None, None, f"nested deeper than {MAX_DEPTH} levels",
                             self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node, deep=False):  # noqa: ANN001, ANN201
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, OverflowError, ArithmeticError) as exc:
            text = " ".join(str(exc).split())[:160]
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this {node.tag.rsplit(':', 1)[-1]} value: {text}",
                node.start_mark) from None


class _BoundedLoader(_Bounds, yaml.SafeLoader):
    """PyYAML's pure-Python safe loader, bounded."""


class _ConstructOnly(_Bounds):
    """For libyaml's composer (C): only the marked conversion errors; :func:`_measure`
    enforces the nesting and alias bounds on the composed graph."""

    compose_node = None  # type: ignore[assignment]  # libyaml composes; never called


try:  # libyaml composes (C, several times faster); the graph is measured before any walk
    _FastBoundedLoader: type | None = type(
        "_FastBoundedLoader", (_ConstructOnly, yaml.CSafeLoader), {})
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _FastBoundedLoader = None


def _measure(root: yaml.Node, file: Path) -> int:
    """Check the composed graph before anything walks it: nesting depth and aliases counted
    as if every alias were expanded, alias uses, cycles and the expanded size. Each node is
    visited once; returns the expanded node count."""
    sizes: dict[int, tuple[int, int]] = {}  # id → (expanded nodes, expanded height)
    visiting: set[int] = set()
    aliases = 0

    def where(node: yaml.Node) -> str:
        return f"{file}:{node.start_mark.line + 1}"

    def measure(node: yaml.Node, depth: int) -> tuple[int, int]:
        nonlocal aliases
        key = id(node)
        if key in visiting:
            raise SpecError("an alias refers to a node that contains it (a cycle)",
                            where=where(node),
                            hint="use aliases only for finished, non-recursive values")
        if key in sizes:
            return sizes[key]
        if depth > MAX_DEPTH:
            raise SpecError(f"malformed YAML: nested deeper than {MAX_DEPTH} levels",
                            where=where(node), hint="keep the spec flat")
        visiting.add(key)
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        total, height = 1, 0
        for child in children:
            if id(child) in sizes:
                aliases += 1
                if aliases > MAX_ALIASES:
                    raise SpecError(f"malformed YAML: more than {MAX_ALIASES} aliases",
                                    where=where(node), hint="use fewer aliases")
            n, h = measure(child, depth + 1)
            total += n
            height = max(height, h)
            if total > MAX_EXPANDED_NODES:
                raise SpecError(
                    f"the document expands to more than {MAX_EXPANDED_NODES:,} values through "
                    "aliases", where=where(node),
                    hint="expand fewer aliases (is this an alias bomb?)")
            if depth + height > MAX_DEPTH:
                raise SpecError(f"malformed YAML: nested deeper than {MAX_DEPTH} levels once "
                                "its aliases are expanded", where=where(node),
                                hint="keep the spec flat")
        visiting.discard(key)
        sizes[key] = (total, height + 1)
        return sizes[key]

    return measure(root, 1)[0]


def _key_of(node: yaml.Node) -> Any:
    """A hashable path part for a mapping key node."""
    if isinstance(node, yaml.ScalarNode):
        return node.value
    return f"<{node.tag.rsplit(':', 1)[-1]} key>"


def _line_map(node: yaml.Node, path: tuple = (), out: dict | None = None,
              _seen: set | None = None) -> dict:
    """Map each field path (tuple of keys / indexes) to its 1-based line.

    Each node is walked once: an alias (a node met again) keeps the lines of its first place,
    and what lies under its later places maps to the alias's own line.
    """
    out = {} if out is None else out
    seen: set[int] = set() if _seen is None else _seen
    stack: list[tuple[yaml.Node, tuple]] = [(node, path)]
    while stack:
        n, p = stack.pop()
        out.setdefault(p, n.start_mark.line + 1)
        if id(n) in seen:
            continue
        seen.add(id(n))
        if isinstance(n, yaml.MappingNode):
            for key_node, value_node in n.value:
                key = _key_of(key_node)
                out.setdefault(p + (key,), key_node.start_mark.line + 1)
                stack.append((value_node, p + (key,)))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                stack.append((item, p + (i,)))
    return out


def _check_duplicate_keys(node: yaml.Node, file: Path) -> None:
    """Refuse a key given twice in one mapping; each node is checked once."""
    seen_nodes: set[int] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if id(n) in seen_nodes:
            continue
        seen_nodes.add(id(n))
        if isinstance(n, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, value_node in n.value:
                key = _key_of(key_node)
                if isinstance(key_node, yaml.ScalarNode) and key in seen and key != "<<":
                    raise SpecError(
                        f"duplicate key '{_show(key)}' (first at line {seen[key]})",
                        where=f"{file}:{key_node.start_mark.line + 1}",
                        hint="each key may appear once in a mapping",
                    )
                seen.setdefault(key, key_node.start_mark.line + 1)
                stack.append(value_node)
        elif isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)


def _yaml_error(exc: yaml.YAMLError, file: Path, text: str, *,
                byte_offsets: bool) -> SpecError:
    """One line for a YAML error, with the line it is on.

    A reader error carries an offset: into the UTF-8 bytes (libyaml) or the text (PyYAML).
    """
    line: int | None = None
    if isinstance(exc, yaml.reader.ReaderError):
        position = max(int(exc.position or 0), 0)
        if byte_offsets:
            line = text.encode("utf-8")[:position].count(b"\n") + 1
        else:
            line = text[:position].count("\n") + 1
        if isinstance(exc.character, str):
            code = ord(exc.character)
        else:
            code = exc.character
        problem = f"character #x{code:04x} is not allowed in YAML"
        hint = "remove the control character (or quote it as an escape in a string)"
    else:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or (str(exc).splitlines() or ["?"])[0]
        context = getattr(exc, "context", None)
        if context and isinstance(exc, yaml.constructor.ConstructorError):
            problem = f"{context}: {problem}"
        if str(problem).startswith("cannot read this"):
            problem = str(problem).split("; use sys.", 1)[0]
            hint = "fix the value, or quote it to make it a string"
        elif isinstance(exc, _Limit):
            hint = "keep the spec small and flat; aliases may not multiply it"
        elif isinstance(exc, yaml.constructor.ConstructorError):
            hint = "plantstage.yaml takes plain YAML: no custom tags; `<<` merges mappings only"
        else:
            hint = "check indentation and quoting on that line"
    problem = " ".join(str(problem).split())
    return SpecError(f"malformed YAML: {problem}", where=f"{file}:{line or 1}", hint=hint)


def _compose(text: str, file: Path) -> tuple[yaml.Node | None, Any]:
    """Compose and construct ``text`` within the bounds; return (root node, (data, lines))."""
    fast = _FastBoundedLoader is not None
    if fast:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: the pure-Python reader names the line
            fast = False
    try:
        loader = _FastBoundedLoader(text) if fast else _BoundedLoader(text)
    except yaml.YAMLError as exc:  # the pure-Python reader refuses control characters here
        raise _yaml_error(exc, file, text, byte_offsets=False) from None
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        _measure(root, file)
        lines = _line_map(root)
        _check_duplicate_keys(root, file)
        data = loader.construct_document(root)
        return root, (data, lines)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, file, text, byte_offsets=fast) from None
    except RecursionError:
        raise SpecError("malformed YAML: nested too deeply", where=f"{file}:1",
                        hint="keep the spec flat") from None
    finally:
        loader.dispose()


# -- validation errors -------------------------------------------------------------------

def _nearest_line(lines: dict, loc: tuple) -> int | None:
    loc = tuple(loc)
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get(())


def _show(text: Any, limit: int = 80) -> str:
    """A key or value as it may appear inside a one-line message."""
    text = str(text)
    if not text.isprintable():
        text = repr(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + _show(part)
    return out


_MESSAGE_PATH = re.compile(r"^([A-Za-z_][\w\-]*(?:\.[\w\-]+|\[\d+\])*): ")


def _path_in_message(msg: str) -> tuple | None:
    """``environments.staging.bindings.x: …`` → ('environments', 'staging', 'bindings', 'x')."""
    m = _MESSAGE_PATH.match(msg)
    if not m:
        return None
    parts: list[Any] = []
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", m.group(1)):
        parts.append(int(token[1:-1]) if token.startswith("[") else token)
    return tuple(parts)


def _problem(err: dict, lines: dict, file: Path) -> SpecError:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    msg = " ".join(str(err["msg"]).split())
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if msg.startswith("Assertion failed, "):
        msg = msg[len("Assertion failed, "):]
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
        hint = "remove it or fix its spelling; `plantstage schema` lists the fields"
    elif err["type"] == "missing":
        msg = "required field is missing"
        hint = "add it; `plantstage schema` lists the fields"
    else:
        hint = "see docs/spec.md for this field"
    line = _nearest_line(lines, loc)
    inner = _path_in_message(msg)
    if inner:
        # A model-level check names the field in its message: point at that field's line.
        full = loc + inner
        if full[: len(loc) + 1] in lines:
            line = _nearest_line(lines, full)
        elif inner[:1] in lines and not loc:
            line = _nearest_line(lines, inner)
        text = f"{_field_path(loc)}.{msg}" if loc else msg
    else:
        text = f"{_field_path(loc) or '(root)'}: {msg}"
    return SpecError(text, where=f"{file}:{line or 1}", hint=hint)


def load_yaml(text: str, file: str | Path) -> Any:
    """Any YAML document plantstage reads (a config file, a role map …), within the same
    bounds as a spec: size, nesting, aliases and expansion limited; every error is one
    :class:`SpecError` line with ``file:line``. Returns the plain data (None when empty)."""
    file = Path(file)
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(f"the file is {len(text):,} characters long", where=f"{file}:1",
                        hint=f"plantstage reads YAML files of at most {MAX_SPEC_BYTES:,} bytes")
    root, loaded = _compose(text, file)
    return None if root is None else loaded[0]


def parse_spec_text(text: str, file: Path) -> LoadedSpec:
    """Validate spec text; ``file`` is used for messages and relative paths.

    Raises :class:`SpecError` for a YAML problem and :class:`SpecProblems` (every validation
    problem, each with ``file:line`` and its field path) for an invalid spec.
    """
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(f"the spec is {len(text):,} characters long", where=f"{file}:1",
                        hint=f"a spec may be at most {MAX_SPEC_BYTES:,} bytes")
    root, loaded = _compose(text, file)
    if root is None or not isinstance(root, yaml.MappingNode):
        raise SpecError(
            "the spec must be a YAML mapping (name, estate, environments, releases …)",
            where=f"{file}:{root.start_mark.line + 1 if root is not None else 1}",
            hint="run `plantstage schema` to see the expected shape",
        )
    data, lines = loaded
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        problems: list = [_problem(e, lines, file) for e in errors[:MAX_PROBLEMS]]
        if len(errors) > MAX_PROBLEMS:
            problems.append(SpecError(f"{len(errors) - MAX_PROBLEMS} more problems not shown",
                                      where=f"{file}:1", hint="fix the ones above first"))
        raise SpecProblems(problems) from None
    except RecursionError:
        raise SpecError("the spec is nested too deeply to validate", where=f"{file}:1",
                        hint="keep the spec flat") from None
    except (TypeError, KeyError, AttributeError, IndexError, ArithmeticError) as exc:
        # A validator met a value of a type it did not expect (a plantstage bug): still one
        # line, at the field that holds the value when it can be found.
        loc = _locate_crash(data)
        text_ = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise SpecError(f"{_field_path(loc) or '(root)'}: {CRASH_MARK} ({text_})",
                        where=f"{file}:{_nearest_line(lines, loc) or 1}",
                        hint="a value has a type plantstage did not expect here; see "
                        "docs/spec.md, and please report this message") from None
    problems = _path_problems(spec, file, lines)
    if problems:
        raise SpecProblems(problems)
    return LoadedSpec(spec=spec, path=file.resolve(), text=text, lines=lines)


#: Marks a validator that failed with an unexpected exception (tests look for it).
CRASH_MARK = "cannot check this value"


def _locate_crash(data: Any) -> tuple:
    """The top-level field (and list index) whose validation raises something unexpected."""
    from typing import get_args, get_origin

    from pydantic import TypeAdapter

    if not isinstance(data, dict):
        return ()

    def crashes(annotation: Any, value: Any) -> bool:
        try:
            TypeAdapter(annotation).validate_python(value)
        except ValidationError:
            return False
        except Exception:  # noqa: BLE001 - looking for exactly these
            return True
        return False

    for name, info in Spec.model_fields.items():
        key = info.alias or name
        if key not in data or not crashes(info.annotation, data[key]):
            continue
        value = data[key]
        args = get_args(info.annotation)
        if get_origin(info.annotation) is list and args and isinstance(value, list):
            for i, item in enumerate(value):
                if crashes(args[0], item):
                    return (key, i)
        if get_origin(info.annotation) is dict and len(args) == 2 and isinstance(value, dict):
            for k, item in value.items():
                if crashes(args[1], item):
                    return (key, k)
        return (key,)
    return ()


def _named_paths(spec: Spec) -> Iterator[tuple[tuple, str, str]]:
    """(field path, path text, field name) of every file a spec names for plantstage to read."""
    for i, rel in enumerate(spec.releases):
        yield ("releases", i, "artifact", "path"), rel.artifact.path, "artifact.path"
        runtime = getattr(rel, "runtime", None)
        req = getattr(runtime, "requirements", None) if runtime is not None else None
        if isinstance(req, str):
            yield ("releases", i, "runtime", "requirements"), req, "runtime.requirements"
        for group, phases in (("steps", ("before", "upgrade", "after")),
                              ("rollback", ("before", "downgrade", "after"))):
            holder = getattr(rel, group, None)
            for phase in phases:
                for j, step in enumerate(getattr(holder, phase, None) or []):
                    if isinstance(getattr(step, "sql", None), str):
                        yield (("releases", i, group, phase, j, "sql"), step.sql,
                               f"{group}.{phase}[{j}].sql")
    parity = getattr(spec, "parity", None)
    for i, source in enumerate(getattr(parity, "config", None) or []):
        for env in ("production", "staging"):
            value = getattr(source, env, None)
            if isinstance(value, str):
                yield ("parity", "config", i, env), value, f"parity.config[{i}].{env}"
    roles = getattr(parity, "roles", None)
    for env in ("production", "staging"):
        value = getattr(roles, env, None) if roles is not None else None
        if isinstance(value, str):
            yield ("parity", "roles", env), value, f"parity.roles.{env}"


def _path_problems(spec: Spec, file: Path, lines: dict) -> list[SpecError]:
    """Paths outside the spec's folder (unless ``paths.allow_outside`` allows them)."""
    from plantstage.artifacts import confine
    from plantstage.errors import ArtifactError

    allow = list(getattr(getattr(spec, "paths", None), "allow_outside", []) or [])
    base = file.parent
    out: list[SpecError] = []
    for loc, value, what in _named_paths(spec):
        if "{" in value and not value.startswith(("{artifact}", "{spec_dir}")):
            continue  # filled in at run time (e.g. {run_dir}); checked where it is used
        try:
            confine(base, value, allow_outside=allow, where=str(file), what=what)
        except ArtifactError as exc:
            line = _nearest_line(lines, loc) or 1
            out.append(SpecError(f"{_field_path(loc)}: {exc.message}", where=f"{file}:{line}",
                                 hint=exc.hint))
    return out


def load_spec(path: str | Path) -> LoadedSpec:
    """Load and validate a spec file (or a directory holding ``plantstage.yaml``)."""
    file = resolve_spec_path(path)
    try:
        st = file.stat()
        if not stat.S_ISREG(st.st_mode):  # a pipe or a device would block or never end
            raise SpecError("the spec is not a regular file", where=str(file),
                            hint=f"pass a {SPEC_FILENAME} file or the folder that holds one")
        size = st.st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(f"the spec is {size:,} bytes", where=f"{file}:1",
                            hint=f"a spec may be at most {MAX_SPEC_BYTES:,} bytes")
        with file.open("rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"cannot read spec: {exc.strerror or exc}", where=str(file),
                        hint="check the path and its permissions") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(f"the spec is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                        f"{exc.start})", where=f"{file}:{line}",
                        hint="save the file as UTF-8") from None
    return parse_spec_text(text, file)


def json_schema() -> str:
    """The JSON Schema of the spec, as text."""
    return json.dumps(Spec.model_json_schema(by_alias=True), indent=2)

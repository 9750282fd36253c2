"""The plugin registry behind :mod:`plantstage.plugins` (docs/flows.md).

A spec names its plugins at the top level (``plugins: [myapp_plugin]``); each is imported with the
spec's folder first on ``sys.path``, so ``myapp_plugin.py`` beside ``plantstage.yaml`` is found
before an installed package of that name. Installed packages may also register through the
entry-point group ``plantstage.plugins`` (the entry point names a module, or a function returning
flows). Every function decorated with :func:`plantstage.api.flow` at a plugin module's top level is
registered under its name.

A plugin that does not import is one line naming ``plugins[i]`` at its spec line, the cause and,
for a syntax error or an exception raised while importing, the plugin's own file and line.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from plantstage.errors import SpecError
from plantstage.spec.loader import LoadedSpec
from plantstage.workload.context import FLOW_ATTR, FlowDef

ENTRY_POINT_GROUP = "plantstage.plugins"


@dataclass
class Registry:
    """What a spec's plugins registered: flows by name, and where each came from."""

    flows: dict[str, FlowDef] = field(default_factory=dict)
    #: flow name → "plugins[i] (module)" or "entry point NAME"
    origins: dict[str, str] = field(default_factory=dict)
    modules: list[str] = field(default_factory=list)

    def add(self, fd: FlowDef, origin: str, where: str) -> None:
        known = self.flows.get(fd.name)
        if known is not None and known.fn is not fd.fn:
            raise SpecError(f"flow '{fd.name}' is registered twice: by {self.origins[fd.name]} "
                            f"and by {origin}", where=where,
                            hint="give one of them another name")
        self.flows[fd.name] = fd
        self.origins[fd.name] = origin


_CACHE: dict[tuple[str, str], Registry] = {}


def _key(loaded: LoadedSpec) -> tuple[str, str]:
    return str(loaded.path), hashlib.sha256(loaded.text.encode()).hexdigest()


def flows_of(obj: Any) -> list[FlowDef]:
    """The flows a plugin module (or an iterable of functions/FlowDefs) defines."""
    if isinstance(obj, ModuleType):
        items: Iterable[Any] = vars(obj).values()
    elif callable(obj) and getattr(obj, FLOW_ATTR, None) is None:
        items = obj()  # an entry point naming a function that returns the flows
    elif isinstance(obj, Iterable):
        items = obj
    else:
        items = [obj]
    out = []
    for item in items:
        fd = item if isinstance(item, FlowDef) else getattr(item, FLOW_ATTR, None)
        if isinstance(fd, FlowDef) and fd not in out:
            out.append(fd)
    return out


def _spec_line(loaded: LoadedSpec, i: int) -> str:
    import yaml

    from plantstage.spec.loader import _line_map, _nearest_line

    try:
        lines = _line_map(yaml.compose(loaded.text, Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        lines = {}
    line = _nearest_line(lines, ("plugins", i)) if lines else None
    return f"{loaded.path}:{line}" if line else str(loaded.path)


def _origin_in(exc: BaseException, roots: list[Path]) -> str | None:
    """``file:line`` of the deepest traceback frame inside ``roots`` (the plugin's own code)."""
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        try:
            p = Path(frame.filename).resolve()
        except OSError:
            continue
        if any(p == r or r in p.parents for r in roots):
            found = f"{p}:{frame.lineno}"
    return found


def import_plugin(name: str, base_dir: Path, where: str, label: str) -> ModuleType:
    """Import plugin module ``name`` with ``base_dir`` first on ``sys.path``; SpecError if not."""
    base = str(base_dir)
    if base in sys.path:
        sys.path.remove(base)
    sys.path.insert(0, base)
    top = name.split(".", 1)[0]
    local = [base_dir / f"{top}.py", base_dir / top]
    loaded_mod = sys.modules.get(top)
    if loaded_mod is not None and any(p.exists() for p in local):
        # Another spec's plugin of the same name was imported first: import this folder's.
        file = getattr(loaded_mod, "__file__", None) or ""
        if not any(Path(file).resolve() == p.resolve() or
                   p.resolve() in Path(file).resolve().parents for p in local if p.exists()):
            for mod in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
                del sys.modules[mod]
    importlib.invalidate_caches()
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (exc.name == name or name.startswith(exc.name + ".")):
            raise SpecError(f"{label}: no plugin module '{name}'", where=where,
                            hint=f"put {top}.py beside the spec ({base_dir}) or install the "
                            "package that provides it") from None
        at = _origin_in(exc, [p.resolve() for p in local if p.exists()])
        raise SpecError(f"{label}: plugin '{name}' imports '{exc.name}', which is not "
                        f"installed{f' ({at})' if at else ''}", where=where,
                        hint=f"install {exc.name} into plantstage's environment") from None
    except SyntaxError as exc:
        at = f"{exc.filename}:{exc.lineno}" if exc.filename else "?"
        raise SpecError(f"{label}: plugin '{name}' has a syntax error at {at}: {exc.msg}",
                        where=where, hint="fix the plugin's code") from None
    except Exception as exc:  # any import-time failure of user code is a spec problem
        roots = [p.resolve() for p in local if p.exists()]
        at = _origin_in(exc, roots) if roots else None
        if at is None:
            tb = traceback.extract_tb(exc.__traceback__)
            at = f"{tb[-1].filename}:{tb[-1].lineno}" if tb else None
        raise SpecError(f"{label}: plugin '{name}' failed to import: {type(exc).__name__}: "
                        f"{exc}{f' ({at})' if at else ''}", where=where,
                        hint="fix the plugin's code") from None


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    try:
        return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception:  # noqa: BLE001 - broken distribution metadata: no entry-point plugins
        return []


def load_plugins(loaded: LoadedSpec) -> Registry:
    """Import the spec's plugins (and installed entry-point plugins) once; their flows.

    Idempotent per spec (path and text): a second call returns the same registry.
    """
    key = _key(loaded)
    reg = _CACHE.get(key)
    if reg is not None:
        return reg
    reg = Registry()
    for i, name in enumerate(loaded.spec.plugins):
        where = _spec_line(loaded, i)
        label = f"plugins[{i}]"
        module = import_plugin(name, loaded.base_dir, where, label)
        reg.modules.append(name)
        found = flows_of(module)
        if not found:
            raise SpecError(f"{label}: plugin '{name}' registers no flow", where=where,
                            hint="decorate its flows with @plantstage.api.flow(NAME)")
        for fd in found:
            reg.add(fd, f"{label} ({name})", where)
    for ep in _entry_points():
        where = f"entry point '{ep.name}' ({ep.value}) in group {ENTRY_POINT_GROUP}"
        try:
            obj = ep.load()
            found = flows_of(obj)
        except Exception as exc:  # noqa: BLE001 - an installed plugin's failure, named
            raise SpecError(f"installed plugin failed to load: {type(exc).__name__}: {exc}",
                            where=where, hint="fix or uninstall that package") from None
        reg.modules.append(ep.value)
        for fd in found:
            reg.add(fd, f"entry point '{ep.name}'", where)
    _CACHE[key] = reg
    return reg


__all__ = ["ENTRY_POINT_GROUP", "Registry", "flows_of", "import_plugin", "load_plugins"]

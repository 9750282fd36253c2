"""Resolve a spec's workload into lanes: one (tenant, flow) pair driven on its own schedule.

Also the check-time validation: unknown archetypes, flows no plugin registers and user flow
modules that do not import are reported here, before anything runs, as one line naming the spec
file and line.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from plantstage.errors import SpecError
from plantstage.spec.workload import Arrival, Workload, WorkloadFlow
from plantstage.workload.context import FLOW_ATTR, FlowDef

FlowFn = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Lane:
    tenant: str
    archetype: str
    flow: WorkloadFlow
    fn: FlowFn
    arrival: Arrival

    @property
    def label(self) -> str:
        return self.flow.label


class _Where:
    """Spec field path → ``file:line`` (lines found the way the spec loader finds them)."""

    def __init__(self, spec_path: Path | None, text: str | None):
        self.file = spec_path
        self.lines: dict = {}
        if text is not None:
            from plantstage.spec.loader import _line_map

            try:
                self.lines = _line_map(yaml.compose(text))
            except yaml.YAMLError:
                self.lines = {}

    def __call__(self, *path: Any) -> str:
        field = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in path)
        field = field.replace(".[", "[")
        loc = tuple(path)
        while loc and loc not in self.lines:
            loc = loc[:-1]
        line = self.lines.get(loc)
        if self.file is None:
            return field
        return f"{self.file}:{line}: {field}" if line else f"{self.file}: {field}"


def _one_argument(fn: Any) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return True
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in params if p.default is p.empty and p.kind in positional]
    return len(required) <= 1 and bool(params) and (
        params[0].kind in positional or params[0].kind is inspect.Parameter.VAR_POSITIONAL)


def resolve_flow(name: str, registry: Any, base_dir: Path | None, where: str) -> FlowDef:
    """The flow behind a name: one a plugin registered, or ``module:function``."""
    flows: dict[str, FlowDef] = getattr(registry, "flows", None) or {}
    if name in flows:
        return flows[name]
    if ":" not in name:
        known = ", ".join(sorted(flows)) or "none (the spec's plugins register none)"
        raise SpecError(f"no flow '{name}' is registered; registered: {known}", where=where,
                        hint="list the plugin that registers it under 'plugins:', or name "
                        "module:function (docs/flows.md)")
    module_name, _, func = name.partition(":")
    if base_dir is not None and str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))  # user flows live beside the spec, like a locustfile
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure of user code is a spec problem
        raise SpecError(f"flow module '{module_name}' failed to import: "
                        f"{type(exc).__name__}: {exc}", where=where,
                        hint="fix the module, or the name: it is imported from the spec's "
                        "folder") from None
    fn = getattr(module, func, None)
    if fn is None:
        raise SpecError(f"flow module '{module_name}' has no '{func}'", where=where,
                        hint="name an async function: module:function")
    if not inspect.iscoroutinefunction(fn):
        raise SpecError(f"flow '{name}' is not an async function", where=where,
                        hint="define it as async def f(ctx: FlowContext) (docs/flows.md)")
    if not _one_argument(fn):
        raise SpecError(f"flow '{name}' must take one argument, the FlowContext", where=where,
                        hint="async def f(ctx: FlowContext); the old (client, tenant, wf, rng, "
                        "ref) form is gone: ctx.http, ctx.tenant, ctx.params, ctx.rng, ctx.ref")
    registered = getattr(fn, FLOW_ATTR, None)
    label = name.rsplit(":", 1)[-1]
    if isinstance(registered, FlowDef):
        return FlowDef(label, fn, registered.description, registered.signals, module_name)
    return FlowDef(label, fn, (inspect.getdoc(fn) or "").split("\n\n")[0], {}, module_name)


def flow_defs(loaded: Any, registry: Any = None) -> dict[str, FlowDef]:
    """Label → FlowDef of every flow the spec's workload drives (check-time, for catalogues)."""
    if registry is None:
        from plantstage.workload.registry import load_plugins

        registry = load_plugins(loaded)
    wl: Workload = loaded.spec.workload
    where = _Where(loaded.path, loaded.text)
    out: dict[str, FlowDef] = {}
    for j, wf in enumerate(wl.flows):
        out.setdefault(wf.label, resolve_flow(wf.flow, registry, loaded.base_dir,
                                              where("workload", "flows", j, "flow")))
    for arch, a in wl.archetypes.items():
        for j, wf in enumerate(a.flows):
            out.setdefault(wf.label, resolve_flow(
                wf.flow, registry, loaded.base_dir,
                where("workload", "archetypes", arch, "flows", j, "flow")))
    return out


def tenant_data_where(loaded: Any) -> dict[str, str]:
    """``workload.tenant_data.NAME`` → ``file:line: field`` (for load errors)."""
    where = _Where(loaded.path, loaded.text)
    return {name: where("workload", "tenant_data", name)
            for name in loaded.spec.workload.tenant_data}


def build_lanes(loaded: Any, *, tenants: list[str] | None = None,
                registry: Any = None) -> list[Lane]:
    """Every (tenant, flow) the workload drives; raise SpecError on what cannot work.

    ``loaded`` is a :class:`plantstage.spec.loader.LoadedSpec`; its plugins are loaded (once).
    """
    if registry is None:
        from plantstage.workload.registry import load_plugins

        registry = load_plugins(loaded)
    spec = loaded.spec
    base_dir = loaded.base_dir
    wl: Workload = spec.workload
    where = _Where(loaded.path, loaded.text)
    known = wl.archetypes
    selected = tenants or wl.tenants or [t.code for t in spec.estate.tenants]
    by_code = {t.code: (i, t) for i, t in enumerate(spec.estate.tenants)}
    lanes: list[Lane] = []
    cache: dict[str, FlowFn] = {}

    def fn_for(wf: WorkloadFlow, *path: Any) -> FlowFn:
        if wf.flow not in cache:
            cache[wf.flow] = resolve_flow(wf.flow, registry, base_dir, where(*path)).fn
        return cache[wf.flow]

    for code in selected:
        if code not in by_code:
            raise SpecError(f"'{code}' is not an estate tenant", where=where("workload",
                            "tenants"), hint="estate.tenants lists the tenant codes")
        i, tenant = by_code[code]
        arch = tenant.archetype if wl.drives_archetypes and tenant.archetype else "all"
        if wl.drives_archetypes and tenant.archetype is not None:
            if arch not in known:
                raise SpecError(f"unknown archetype '{arch}'",
                                where=where("estate", "tenants", i, "archetype"),
                                hint=f"workload.archetypes defines: "
                                f"{', '.join(known) or 'none'}")
            for j, wf in enumerate(known[arch].flows):
                path = ("workload", "archetypes", arch, "flows", j, "flow")
                lanes.append(Lane(code, arch, wf, fn_for(wf, *path), wf.arrival or wl.arrival))
        for j, wf in enumerate(wl.flows):
            lanes.append(Lane(code, arch, wf, fn_for(wf, "workload", "flows", j, "flow"),
                              wf.arrival or wl.arrival))
    return lanes


def validate(loaded) -> list[Lane]:
    """Check-time validation of a loaded spec's workload (called by ``plantstage check``).

    Every declared flow must resolve, also in archetypes no tenant uses, and every tenant's
    archetype must exist; all problems are reported at once (:class:`SpecProblems`).
    """
    from plantstage.errors import SpecProblems
    from plantstage.workload.registry import load_plugins

    wl: Workload = loaded.spec.workload
    where = _Where(loaded.path, loaded.text)
    problems: list[SpecError] = []
    try:
        registry = load_plugins(loaded)
    except SpecError as exc:  # flows cannot resolve without their plugin: say why, once
        problems.append(exc)
        registry = None
    declared = [(wf, ("workload", "flows", j, "flow")) for j, wf in enumerate(wl.flows)]
    declared += [(wf, ("workload", "archetypes", arch, "flows", j, "flow"))
                 for arch, a in wl.archetypes.items() for j, wf in enumerate(a.flows)]
    seen: set[str] = set()
    for wf, path in declared:
        if wf.flow in seen or (registry is None and ":" not in wf.flow):
            continue
        seen.add(wf.flow)
        try:
            resolve_flow(wf.flow, registry, loaded.base_dir, where(*path))
        except SpecError as exc:
            problems.append(exc)
    if wl.drives_archetypes:
        for i, t in enumerate(loaded.spec.estate.tenants):
            if t.archetype is not None and t.archetype not in wl.archetypes:
                problems.append(SpecError(
                    f"unknown archetype '{t.archetype}'",
                    where=where("estate", "tenants", i, "archetype"),
                    hint=f"workload.archetypes defines: {', '.join(wl.archetypes) or 'none'}"))
    if problems:
        raise SpecProblems(problems) if len(problems) > 1 else problems[0]
    return build_lanes(loaded, registry=registry)

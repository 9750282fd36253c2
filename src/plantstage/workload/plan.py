"""Resolve a spec's workload into lanes: one (tenant, flow) pair driven on its own schedule.

Also the check-time validation: unknown archetypes and user flow modules that do not import are
reported here, before anything runs, as one line naming the spec file and line.
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
from plantstage.workload.archetypes import BUILTIN, archetypes
from plantstage.workload.flows import FLOWS

FlowFn = Callable[..., Awaitable[dict[str, Any] | None]]


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


def resolve_flow(name: str, base_dir: Path | None, where: str) -> FlowFn:
    """The coroutine function behind a flow name (built in, or ``module:function``)."""
    if name in FLOWS:
        return FLOWS[name]
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
                        hint="define it as async def f(client, tenant, wf, rng, ref)")
    return fn


def build_lanes(spec, *, base_dir: Path | None = None, spec_path: Path | None = None,
                text: str | None = None, tenants: list[str] | None = None) -> list[Lane]:
    """Every (tenant, flow) the workload drives; raise SpecError on what cannot work."""
    wl: Workload = spec.workload
    where = _Where(spec_path, text)
    known = archetypes(wl)
    selected = tenants or wl.tenants or [t.code for t in spec.estate.tenants]
    by_code = {t.code: (i, t) for i, t in enumerate(spec.estate.tenants)}
    lanes: list[Lane] = []
    cache: dict[str, FlowFn] = {}

    def fn_for(wf: WorkloadFlow, *path: Any) -> FlowFn:
        if wf.flow not in cache:
            cache[wf.flow] = resolve_flow(wf.flow, base_dir, where(*path))
        return cache[wf.flow]

    for code in selected:
        if code not in by_code:
            raise SpecError(f"'{code}' is not an estate tenant", where=where("workload",
                            "tenants"), hint="estate.tenants lists the tenant codes")
        i, tenant = by_code[code]
        if wl.drives_archetypes:
            arch = tenant.archetype
            if arch not in known:
                raise SpecError(f"unknown archetype '{arch}'",
                                where=where("estate", "tenants", i, "archetype"),
                                hint=f"built in: {', '.join(BUILTIN)}; or define it under "
                                "workload.archetypes")
            origin = ("workload", "archetypes", arch) if arch in wl.archetypes else None
            for j, wf in enumerate(known[arch].flows):
                path = (*origin, "flows", j, "flow") if origin else ("workload",)
                lanes.append(Lane(code, arch, wf, fn_for(wf, *path), wf.arrival or wl.arrival))
        for j, wf in enumerate(wl.flows):
            arch = tenant.archetype if wl.drives_archetypes else "all"
            lanes.append(Lane(code, arch, wf, fn_for(wf, "workload", "flows", j, "flow"),
                              wf.arrival or wl.arrival))
    return lanes


def validate(loaded) -> list[Lane]:
    """Check-time validation of a loaded spec's workload (called by ``plantstage check``)."""
    return build_lanes(loaded.spec, base_dir=loaded.base_dir, spec_path=loaded.path,
                       text=loaded.text)

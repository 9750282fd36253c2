"""Run one flow once (the smoke step's business-transaction checks, tests, a REPL).

The flow gets the same :class:`~plantstage.workload.context.FlowContext` as under load, in phase
``once``; what it recorded comes back as a flat dict instead of going into a signal store.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Mapping
from typing import Any

from plantstage.errors import SpecError
from plantstage.spec.workload import WorkloadFlow
from plantstage.workload.context import FlowContext, FlowError, LaneState, Tenant
from plantstage.workload.resources import RunResources

PHASE = "once"


def _tenant(loaded: Any, tenant: str | None) -> tuple[str, str | None]:
    spec = loaded.spec
    codes = {t.code: t.archetype for t in spec.estate.tenants}
    if tenant is None:
        chosen = (spec.workload.tenants or list(codes) or [None])[0]
        if chosen is None:
            raise SpecError("a flow needs a tenant and the estate declares none",
                            where=f"{loaded.path}: estate.tenants",
                            hint="declare estate.tenants, or name the tenant")
        return chosen, codes.get(chosen)
    return tenant, codes.get(tenant)


async def arun_flow_once(loaded: Any, flow: str, params: Mapping[str, Any] | None = None, *,
                         base_url: str, resources: RunResources | None = None,
                         tenant: str | None = None, timeout: float = 5.0,
                         request_timeout: float | None = None, seed: int | None = None,
                         where: str | None = None) -> dict[str, float]:
    """:func:`run_flow_once` inside a running event loop."""
    from plantstage.workload.engine import FlowStats, error_kind
    from plantstage.workload.http import HttpClient
    from plantstage.workload.plan import resolve_flow, tenant_data_where
    from plantstage.workload.registry import load_plugins
    from plantstage.workload.tenant_data import load_tenant_data

    registry = load_plugins(loaded)
    fd = resolve_flow(flow, registry, loaded.base_dir, where or f"{loaded.path}: flow '{flow}'")
    wf = WorkloadFlow(flow=flow, rate=1, timeout=timeout, params=dict(params or {}))
    code, archetype = _tenant(loaded, tenant)
    wl = loaded.spec.workload
    res = resources if resources is not None else RunResources()
    client = HttpClient(base_url, timeout=request_timeout or wl.request_timeout, connections=4)
    stats = FlowStats()
    try:
        data = await load_tenant_data(wl.tenant_data, code, client, res,
                                      tenant_data_where(loaded))
        rng = random.Random(f"{wl.seed if seed is None else seed}:{PHASE}:{flow}:{code}")
        state = LaneState(PHASE, wf.label, Tenant(code, archetype, data), archetype or "all",
                          wf.params, wf.timeout, rng, client, res, stats)
        ref = f"o{secrets.token_hex(3)}"
        t0 = time.perf_counter()
        try:
            extra = await fd.fn(FlowContext(state, ref))
        except FlowError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported by kind, like under load
            raise FlowError(error_kind(exc), f"{type(exc).__name__}: {exc}"[:300]) from exc
        seconds = time.perf_counter() - t0
        if extra:
            for k, v in extra.items():
                stats.extra[k] += v
    finally:
        await client.aclose()
        await res.aclose()
    stats.count = 1
    stats.histogram.record_value(max(1, int(seconds * 1e6)))
    out = {k: v for k, v in stats.summary(seconds).items()
           if k not in ("count", "rate", "errors", "dropped")}
    # One iteration: every percentile is the one value; keep the plain names.
    flat: dict[str, float] = {"ms": seconds * 1000}
    for k, v in out.items():
        if k.endswith(("p95_ms", "p99_ms", "max_ms")) or k in ("p50_ms",):
            continue
        flat[k.replace("p50_ms", "ms")] = float(v)
    return flat


def run_flow_once(loaded: Any, flow: str, params: Mapping[str, Any] | None = None, *,
                  base_url: str, resources: RunResources | None = None,
                  tenant: str | None = None, timeout: float = 5.0,
                  where: str | None = None) -> dict[str, float]:
    """Run the flow ``flow`` (a registered name or ``module:function``) once against
    ``base_url`` for ``tenant`` (default: the workload's / estate's first tenant).

    ``params`` become ``ctx.params``; ``resources`` (database, broker, twins) are closed when
    it returns (they reopen on next use). Returns what the flow recorded: ``ms`` (the whole
    iteration), ``step.<name>.ms``, ``e2e_ms``, and its counters and signals by name. Raises
    :class:`FlowError` when the flow fails (``kind``; ``detail`` holds e.g. the start of an
    unexpected HTTP body), :class:`SpecError` when the flow cannot be found or a tenant data
    source cannot be read. Must not be called from a running event loop (use
    :func:`arun_flow_once` there).
    """
    from plantstage.workload.engine import _loop_factory

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(arun_flow_once(loaded, flow, params, base_url=base_url,
                                         resources=resources, tenant=tenant, timeout=timeout,
                                         where=where))


__all__ = ["FlowError", "arun_flow_once", "run_flow_once"]

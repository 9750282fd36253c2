"""Tenant configuration parity: each tenant's settings, production against staging, and the
archetype coverage — which production tenants' configurations the rehearsal's workload drove
and which it did not.

Signals: ``tenant_config.drift`` (tenants whose settings differ, or that one side lacks),
``tenant_config.unexercised`` (production tenants the workload did not drive),
``tenant_config.tenants``.
"""

from __future__ import annotations

from typing import Any

from plantstage.rehearsal.steps import Step, StepFailed


def tenant_map(data: Any, key: str) -> dict[str, dict[str, Any]] | None:
    from plantstage.parity.collectors.config import flatten

    node = data
    for part in [p for p in key.split(".") if p]:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        return None
    return {str(t): flatten(v) if isinstance(v, dict) else {"value": v}
            for t, v in node.items()}


def compare(prod: dict[str, dict[str, Any]], stag: dict[str, dict[str, Any]],
            secret_keys: list[str]) -> dict[str, dict[str, Any]]:
    """Per tenant: the settings that differ (secret ones by sameness only), and which side
    lacks the tenant."""
    from plantstage.parity.collectors.config import is_secret

    out: dict[str, dict[str, Any]] = {}
    for t in sorted(set(prod) | set(stag)):
        if t not in stag or t not in prod:
            out[t] = {"status": "production only" if t not in stag else "staging only",
                      "differs": []}
            continue
        a, b = prod[t], stag[t]
        differs = []
        for k in sorted(set(a) | set(b)):
            if a.get(k, _MISSING) == b.get(k, _MISSING):
                continue
            if is_secret(k, secret_keys):
                differs.append({"setting": k, "production": "secret",
                                "staging": "secret (differs)"})
            else:
                differs.append({"setting": k, "production": a.get(k, "(absent)"),
                                "staging": b.get(k, "(absent)")})
        out[t] = {"status": "differs" if differs else "same", "differs": differs}
    return out


_MISSING = object()


def driven_tenants(spec) -> dict[str, str | None]:
    """Tenant → archetype for each tenant the workload drives (the workload's tenants, else
    every estate tenant; one with no flow of its archetype and no common flow is not driven)."""
    wl = spec.workload
    selected = wl.tenants or [t.code for t in spec.estate.tenants]
    arch = {t.code: t.archetype for t in spec.estate.tenants}
    out: dict[str, str | None] = {}
    for code in selected:
        a = arch.get(code)
        flows = list(wl.flows)
        if getattr(wl, "drives_archetypes", False) and a in wl.archetypes:
            flows += list(wl.archetypes[a].flows)
        if flows:
            out[code] = a
    return out


class TenantConfigParity(Step):
    """Each tenant's configuration, production against staging, and who the run exercised."""

    name = "tenant-config"
    title = "Tenant configuration parity and archetype coverage"

    def run(self, ctx) -> dict[str, Any]:
        from plantstage.parity.collectors.config import ConfigUnreadable, load_source
        from plantstage.security.rbac import resolve

        spec = ctx.spec.tenant_config
        if spec is None:
            return {"note": "no tenant configuration declared"}
        src = next((c for c in ctx.spec.parity.config if c.name == spec.source), None)
        if src is None:
            raise StepFailed(f"tenant_config.source: no parity.config entry '{spec.source}'")
        maps = {}
        for env, rel in (("production", ctx.current), ("staging", ctx.release)):
            path = resolve(getattr(src, env), ctx.spec_dir,
                           {"artifact": str(ctx.artifact_dir(rel))})
            try:
                data = load_source(path, src.format)
            except (ConfigUnreadable, OSError) as exc:
                raise StepFailed(f"tenant_config: {exc}") from None
            m = tenant_map(data, spec.key)
            if m is None:
                raise StepFailed(f"tenant_config: {path}: no '{spec.key}' map of tenants")
            maps[env] = m
        per = compare(maps["production"], maps["staging"], ctx.spec.parity.secrets)
        driven = driven_tenants(ctx.spec)
        archetypes = {t.code: t.archetype for t in ctx.spec.estate.tenants}
        rows = []
        for t in sorted(set(per) | set(maps["production"])):
            rows.append({"tenant": t, "archetype": archetypes.get(t),
                         "exercised": t in driven, **per.get(t, {"status": "same",
                                                                   "differs": []})})
        drift = sum(1 for r in rows if r["status"] != "same")
        unexercised = [r["tenant"] for r in rows if not r["exercised"]
                       and r["tenant"] in maps["production"]]
        covered = sorted({a for a in driven.values() if a})
        missing_arch = sorted({archetypes.get(t) for t in unexercised if archetypes.get(t)}
                              - set(covered))
        ctx.signal("tenant_config.drift", float(drift))
        ctx.signal("tenant_config.unexercised", float(len(unexercised)))
        ctx.signal("tenant_config.tenants", float(len(maps["production"])))
        results = {"source": spec.source, "tenants": rows, "drift": drift,
                   "unexercised": unexercised, "archetypes_exercised": covered,
                   "archetypes_not_exercised": missing_arch, "blocks": spec.blocks}
        ctx.sections["tenant_config"] = results
        return results

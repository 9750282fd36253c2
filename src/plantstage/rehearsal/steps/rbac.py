"""RBAC probes on the new version, and the permission diff between the two versions' maps.

Every role of the new version's role → permission map is tried on every permission the spec
maps to requests (``rbac.permissions``): a forbidden one must be refused (401/403), an allowed
one must not be. The diff shows what each role gains and loses; an unapproved gain is gated.
Signals: ``rbac.violations``, ``rbac.gained``, ``rbac.lost``, ``rbac.unenforced``,
``rbac.probes``. The built-in key gate ``rbac`` wants no violation and no unapproved gain.
"""

from __future__ import annotations

from typing import Any

from plantstage.rehearsal.steps import Step, StepFailed


def map_files(spec) -> tuple[str | list[str], str | list[str], str] | None:
    """(current paths, new paths, key) — from ``rbac.roles``, else ``parity.roles``."""
    if spec.rbac is not None and spec.rbac.roles is not None:
        r = spec.rbac.roles
        return r.current, r.new, r.key
    pr = spec.parity.roles
    if pr is None:
        return None
    return pr.production, pr.staging, pr.key


class RbacProbes(Step):
    """After the switch: each role may do what its map allows and nothing else."""

    name = "rbac"
    title = "RBAC probes and permission diff"

    def run(self, ctx) -> dict[str, Any]:
        from plantstage.rehearsal.steps.smoke import default_tenant
        from plantstage.security import rbac as sec

        spec = ctx.spec.rbac
        if spec is None:
            ctx.sections["rbac"] = {"note": "no rbac probes declared"}
            return {"note": "no rbac probes declared"}
        files = map_files(ctx.spec)
        if files is None:
            raise StepFailed("rbac: no role → permission map (rbac.roles or parity.roles)")
        cur_paths, new_paths, key = files
        try:
            cur_path, current = sec.read_map(cur_paths, key, ctx.spec_dir,
                                             ctx.artifact_dir(ctx.current))
            new_path, new = sec.read_map(new_paths, key, ctx.spec_dir,
                                         ctx.artifact_dir(ctx.release))
        except sec.MapUnreadable as exc:
            raise StepFailed(f"rbac: {exc}") from None
        d = sec.diff(current, new, spec.approved)
        tenant = spec.tenant or default_tenant(ctx.spec)
        probes = sec.probe(spec, new, ctx.router.url, tenant, ctx.spec_dir)
        violations = [p for p in probes if p.outcome in ("violation", "error")]
        unenforced = [p for p in probes if p.outcome == "unenforced"]
        per_role: dict[str, dict[str, int]] = {}
        for p in probes:
            row = per_role.setdefault(p.role, {"ok": 0, "violation": 0, "unenforced": 0,
                                               "error": 0})
            row[p.outcome] += 1
        ctx.signal("rbac.violations", float(len(violations)))
        ctx.signal("rbac.gained", float(len(d.gained)))
        ctx.signal("rbac.lost", float(len(d.lost)))
        ctx.signal("rbac.unenforced", float(len(unenforced)))
        ctx.signal("rbac.probes", float(len(probes)))
        lines = [f"{r} gains {p} (not approved)" for r, p in d.gained]
        lines += [f"{r} loses {p}" for r, p in d.lost]
        lines += [f"{r} gains {p} (approved: {why})" for r, p, why in d.approved]
        lines += [f"{p.role} {p.request} → {p.status}: {p.detail} ({p.permission})"
                  for p in violations]
        results = {
            "maps": {"current": _shown(cur_path, ctx), "new": _shown(new_path, ctx)},
            "tenant": tenant, "enforced": spec.enforced, "diff": d.as_dict(),
            "per_role": per_role, "probes": [p.as_dict() for p in probes],
            "violations": len(violations), "gained": len(d.gained), "lost": len(d.lost),
            "unenforced": len(unenforced), "lines": lines,
        }
        ctx.sections["rbac"] = results
        return results


def _shown(path, ctx) -> str:
    for base in (ctx.spec_dir, ctx.spec_dir.resolve()):
        try:
            return str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)

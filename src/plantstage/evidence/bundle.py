"""Assemble the evidence document of a run from what the run context recorded."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from plantstage import __version__
from plantstage.errors import PlantstageError


def fidelity_table(ctx) -> list[dict[str, Any]]:
    spec = ctx.spec
    rows = []
    for name, comp in spec.estate.components.items():
        prod = spec.environments["production"].bindings.get(name)
        stage = spec.environments["staging"].bindings.get(name)
        rows.append({
            "component": name, "kind": comp.kind.value, "tier": comp.tier,
            "production": prod.fidelity.value if prod else "—",
            "staging": stage.fidelity.value if stage else "not bound",
        })
    return rows


def write_evidence(ctx, steps: list[dict[str, Any]], *, status: str, verdict: str,
                   started: float, error: PlantstageError | None) -> dict[str, Any]:
    from plantstage.evidence.report import render_report

    ended = time.time()
    failing = [g.as_dict() for g in ctx.gate_results if g.outcome != "pass"]
    reasons = [f"step {s['name']} {s['status']}: {s['error']}" for s in steps
               if s["status"] in ("failed", "interrupted")]
    reasons += [f"gate {g['name']} {g['outcome']}: {g['cause'] or g['reason']}" for g in failing]
    if error is not None:
        reasons.insert(0, error.one_line())
    evidence = {
        "plantstage": __version__,
        "run_id": ctx.run_id,
        "spec": {"name": ctx.spec.name, "path": str(ctx.loaded.path),
                 "sha256": hashlib.sha256(ctx.loaded.text.encode()).hexdigest()},
        "release": {"name": ctx.release.name, "version": ctx.release.version,
                    "sha256": ctx.digests.get(ctx.release.name)},
        "current": {"name": ctx.current.name, "version": ctx.current.version,
                    "sha256": ctx.digests.get(ctx.current.name)},
        "status": status,
        "verdict": verdict,
        "reasons": reasons,
        "started_at": started,
        "ended_at": ended,
        "seconds": round(ended - started, 2),
        "fidelity": fidelity_table(ctx),
        "sections": ctx.sections,
        "steps": steps,
        "gates": [g.as_dict() for g in ctx.gate_results],
        "signals": dict(sorted(ctx.signals.items())),
    }
    (ctx.run_dir / "evidence.json").write_text(json.dumps(evidence, indent=2, default=str))
    (ctx.run_dir / "report.html").write_text(render_report(evidence))
    return evidence

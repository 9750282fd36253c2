"""Render ``report.html``: one self-contained page (no scripts, fonts or styles from elsewhere)."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

_env = Environment(loader=PackageLoader("plantstage", "evidence/templates"),
                   autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


def _workload_rows(evidence: dict[str, Any]) -> list[dict[str, Any]]:
    """Baseline vs candidate per flow and statistic, from the signals."""
    sig = evidence["signals"]
    rows = []
    flows = sorted({k.split(".")[2] for k in sig if k.startswith("workload.baseline.")
                    and k.count(".") == 3})
    for flow in flows:
        for stat in ("count", "rate", "errors", "p50_ms", "p95_ms", "p99_ms", "dropped"):
            b = sig.get(f"workload.baseline.{flow}.{stat}")
            c = sig.get(f"workload.candidate.{flow}.{stat}")
            if b is None and c is None:
                continue
            change = f"{(c / b - 1) * 100:+.0f}%" if b and c is not None else ""
            rows.append({"flow": flow, "stat": stat, "baseline": b, "candidate": c,
                         "change": change})
    return rows


def render_report(evidence: dict[str, Any]) -> str:
    return _env.get_template("report.html.j2").render(
        e=evidence, workload=_workload_rows(evidence))

"""Render ``report.html``: one self-contained page (no scripts, fonts or styles from elsewhere).

Data apart from presentation: the evidence dict is the data, charts are inline SVG drawn by
:mod:`plantstage.evidence.charts`, and the page is a Jinja template. Every value is escaped
(autoescape on for all templates): the evidence holds text from anyone who signs off, from the
spec and from the app; none of it may become markup.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader
from markupsafe import Markup

# Every template is HTML (``*.html.j2``): escape every value, whatever the file name. The only
# markup passed through is the SVG charts.py draws itself (every text in it escaped there).
_env = Environment(loader=PackageLoader("plantstage", "evidence/templates"),
                   autoescape=True, trim_blocks=True, lstrip_blocks=True)
_env.filters["when"] = lambda t: (datetime.fromtimestamp(float(t), UTC)
                                  .strftime("%Y-%m-%d %H:%M:%S UTC") if t else "—")


def _workload_rows(evidence: dict[str, Any]) -> list[dict[str, Any]]:
    """Current (baseline) vs new version per workload signal, from the run's signal store.

    ``evidence["signals"]`` is the store's values as the run recorded them; the comparison
    itself lives with the store (plantstage.signals.compare) so gates and reports agree.
    """
    from plantstage.signals import compare

    return [{"flow": r["subject"], "stat": r["stat"], "baseline": r["old"],
             "candidate": r["new"], "change": r["change"]}
            for r in compare(evidence["signals"], "workload.baseline.", "workload.candidate.")]


def _recovery(evidence: dict[str, Any]) -> list[tuple[str, float]]:
    s = evidence.get("signals", {})
    names = [("backup", "backup.seconds"), ("rollback / restore", "rollback.seconds"),
             ("restore", "restore.seconds"), ("rows lost in rollback", "rollback.rows_lost"),
             ("tables changed by rollback", "rollback.tables_changed")]
    return [(label, s[k]) for label, k in names if k in s]


def render_report(evidence: dict[str, Any],
                  series: dict[str, list[tuple[float, float]]] | None = None) -> str:
    from plantstage.evidence.charts import workload_charts

    charts = workload_charts(series or {}, evidence.get("sections") or {})
    for c in charts:
        c["svg"] = Markup(c["svg"])  # built from escaped parts in charts.py
    return _env.get_template("report.html.j2").render(
        e=evidence, workload=_workload_rows(evidence), charts=charts,
        recovery=_recovery(evidence))

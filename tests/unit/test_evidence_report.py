"""report.html escapes every value: text from the spec, from people who sign off and from the
app under test is shown as text, never as markup. Only the SVG charts.py draws is passed
through, and every text inside it is escaped there."""

from __future__ import annotations

import copy
import html
import re
from typing import Any

import pytest

from plantstage.evidence.charts import workload_charts
from plantstage.evidence.report import render_report

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
PAYLOADS = (SCRIPT, IMG)
RAW_MARKERS = ("<script", "<img", "onerror=alert(1)>")


def _evidence(x: str) -> dict[str, Any]:
    """A realistic evidence dict whose free-text fields all carry ``x``."""
    return {
        "plantstage": "0.1", "run_id": "r1", "status": "completed", "verdict": "PENDING",
        "seconds": 1.5, "started_at": 1.7e9, "ended_at": 1.7e9 + 2, "judged_at": 1.7e9 + 3,
        "judged_with": {"spec": "spec.yaml (as used)"},
        "spec": {"name": "plant", "path": "/x/plantstage.yaml", "sha256": "0" * 64},
        "release": {"name": "1.1.0", "version": "1.1.0", "sha256": "a" * 64,
                    "description": f"release description {x}"},
        "current": {"name": "1.0.0", "version": "1.0.0", "sha256": "b" * 64},
        "score": {"pct": 90.0, "result": "pass", "pass_pct": 80, "warning_pct": 60,
                  "vetoes": [f"veto {x}"]},
        "reasons": [f"reason {x}"],
        "run_reasons": [],
        "gates": [
            {"name": f"gate-name {x}", "outcome": "fail", "value": 2.0,
             "threshold": f"threshold {x}", "cause": f"gate cause {x}",
             "reason": f"gate reason {x}", "key": True, "weight": 1,
             "expression": f"value <= 1 {x}"},
            {"name": "ok", "outcome": "pass", "value": 0.5, "threshold": "≤ 1", "key": False},
        ],
        "signoffs": [{
            "role": f"operations {x}", "description": f"signoff role description {x}",
            "state": "pending", "quorum": 2, "when": f"release.risk == 'high' {x}",
            "approvals": [{"decision": "approve", "by": f"by {x}", "at": 1.7e9,
                           "reason": f"signoff reason {x}"}],
            "rejections": [{"decision": "reject", "by": f"rejector {x}", "at": 1.7e9,
                            "reason": f"rejection reason {x}"}],
        }],
        "waivers": [{"gate": f"waived gate {x}", "owner": f"owner {x}",
                     "reason": f"waiver reason {x}", "expires": "2999-12-31",
                     "state": "applied"}],
        "steps": [{"name": "migrate", "title": f"Migrate {x}", "status": "failed",
                   "seconds": 0.25, "error": f"step error {x}",
                   "results": {"out": f"result {x}"}}],
        "fidelity": [{"component": f"erp {x}", "kind": "service", "tier": 1,
                      "production": "real", "staging": f"simulated {x}"}],
        "signals": {"workload.baseline.f.p95_ms": 10.0, "workload.candidate.f.p95_ms": 12.0,
                    "rollback.seconds": 1.0},
        "sections": {
            "parity": {
                "between": ["production", f"staging {x}"], "blocking": 0, "seconds": 0.5,
                "counts": {"same": 1, "allowed": 1, "drift": 0, "unknown": 0},
                "layers": [{"name": f"config {x}", "status": "allowed",
                            "counts": {"allowed": 1},
                            "rows": [{"status": "allowed", "key": f"key {x}",
                                      "severity": f"minor {x}", "blocking": False,
                                      "production": f"prod value {x}",
                                      "staging": [f"list value {x}"],
                                      "reason": f"parity allowed reason {x}"}],
                            "notes": [f"parity note {x}"]}],
            },
            "refresh": {
                "source": f"prod {x}", "target": f"stage {x}", "rows": 10, "seconds": 1,
                "rows_per_s": 10, "schema": f"schema {x}", "subset": True, "key": f"key {x}",
                "leaks": {f"t.c {x}": 0}, "leak_values_checked": 5,
                "fk_violations": {f"fk {x}": 0},
                "signals": {"refresh.count_mismatches": 0, "refresh.unclassified": 0,
                            "refresh.masked_columns": 1},
                "coverage": [{"table": f"table {x}", "column": f"col {x}", "rule": f"rule {x}",
                              "status": "masked", "reason": f"coverage reason {x}"}],
                "tables": [{"table": f"table {x}", "source": 1, "planned": 1, "written": 1,
                            "in_target": 1, "masked_columns": [f"col {x}"]}],
                "notes": [f"refresh note {x}"],
            },
            "twins": {
                "broker": {"url": f"mqtt://h {x}", "kind": f"embedded {x}"},
                "twins": [{"component": f"wms {x}", "kind": f"http {x}",
                           "endpoints": {"http": f"http://h/{x}"}, "healthy": True,
                           "status": f"ok {x}", "state": {"received": f"3 {x}"},
                           "faults": [{"kind": f"latency {x}", "link": f"link {x}",
                                       "p": 0.5}], "seed": 7}],
                "fault_counts": {f"wms {x}": {f"latency {x}": 1}},
                "timeline": [{"t": 1.0, "at": 1.7e9, "twin": f"wms {x}",
                              "link": f"link {x}", "kind": f"outage {x}", "key": f"k {x}",
                              "detail": f"detail {x}"}],
            },
        },
    }


def _series() -> dict[str, list[tuple[float, float]]]:
    return {"workload.baseline.f.throughput": [(100.0, 5.0), (101.0, 6.0)],
            "workload.candidate.f.throughput": [(200.0, 4.0), (201.0, 5.0)]}


def _assert_only_escaped(page: str, payload: str) -> None:
    assert payload not in page
    for marker in RAW_MARKERS:
        assert marker not in page, marker
    assert _esc(payload) in page


def _esc(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


@pytest.mark.parametrize("payload", PAYLOADS)
def test_every_free_text_field_is_escaped(payload):
    page = render_report(_evidence(payload), series=_series())
    _assert_only_escaped(page, payload)
    esc = _esc(payload)
    # The fields the review named each show up as text, escaped.
    for label in ("parity allowed reason", "threshold", "gate cause", "gate-name",
                  "signoff role description", "by", "signoff reason", "waiver reason",
                  "step error", "release description", "parity note", "coverage reason"):
        assert f"{label} {esc}" in page, label
    # The page's structure is intact: one verdict banner, no element from the payload.
    assert page.count('id="verdict"') == 1
    assert "<img" not in page and "<script" not in page


def _inject(obj: Any, payload: str) -> Any:
    """Every string value (not keys) with the payload appended."""
    if isinstance(obj, dict):
        return {k: _inject(v, payload) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_inject(v, payload) for v in obj]
    if isinstance(obj, str):
        return obj + payload
    return obj


@pytest.mark.parametrize("payload", PAYLOADS)
def test_no_string_anywhere_in_the_evidence_becomes_markup(payload):
    ev = _inject(_evidence("plain"), payload)
    page = render_report(ev, series=_series())
    assert payload not in page
    for marker in RAW_MARKERS:
        assert marker not in page, marker


def test_svg_charts_are_the_only_markup_passed_through_and_escape_their_text():
    from plantstage.evidence import report

    assert report._env.autoescape is True  # every template, whatever its name
    timeline = [{"t": 0.5, "at": 100.5, "twin": SCRIPT, "kind": "outage", "detail": IMG}]
    charts = workload_charts(_series(), {"twins": {"timeline": timeline}})
    svg = charts[0]["svg"]
    assert SCRIPT not in svg and IMG not in svg and "<img" not in svg
    assert html.escape(SCRIPT) in svg or _esc(SCRIPT) in svg
    ev = _evidence("x")
    ev["sections"]["twins"]["timeline"] = timeline
    page = render_report(ev, series=_series())
    assert "<svg" in page and SCRIPT not in page and "<img" not in page
    # Templates use no |safe and build no Markup themselves.
    from pathlib import Path

    tdir = Path(report.__file__).parent / "templates"
    for t in tdir.glob("*.j2"):
        assert not re.search(r"\|\s*safe\b", t.read_text()), t.name


def test_section_names_cannot_reach_outside_the_templates():
    ev = copy.deepcopy(_evidence("x"))
    ev["sections"] = {"../../etc/passwd": {}, SCRIPT: {}}
    page = render_report(ev, series={})
    assert SCRIPT not in page and "root:" not in page

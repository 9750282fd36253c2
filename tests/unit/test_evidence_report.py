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


# -- phases side by side and the paired verdicts ----------------------------------------------

def _phased(x: str = "") -> dict[str, Any]:
    """Evidence of a run with the four load phases, a paired-latency gate that could not
    decide, a call-amplification count ratio that failed and a cost-ratio that passed."""
    x = x or "plain"
    ev = _evidence(x)
    ev["verdict"] = "INCONCLUSIVE"
    flow = f"import{x}"
    sig: dict[str, float] = {}
    for scope, (count, errors, p50, p95) in {
            "baseline": (120, 0, 41.234, 180.0), "paired.old": (300, 6, 38.0, 95.5),
            "paired.new": (300, 0, 40.5, 101.0), "candidate": (2400, 3, 44.0, 1234.5)}.items():
        p = f"workload.{scope}.{flow}."
        sig.update({p + "count": count, p + "errors": errors, p + "p50_ms": p50,
                    p + "p95_ms": p95, p + "p99_ms": p95 * 2})
        sig[f"workload.{scope}.iterations"] = float(count)
        sig[f"twins.wms.{scope}.requests.per_iteration"] = 0.5 if scope != "paired.new" else 4.0
        sig[f"twins.wms.{scope}.refused.per_iteration"] = 0.0  # zero everywhere: left out
    sig["cost.baseline.unmeasured"] = 1.0
    sig["cost.paired.unmeasured"] = 1.0
    sig["cost.candidate.unmeasured"] = 1.0
    sig["workload.baseline.archetype.a.import.count"] = 9.0  # per-archetype: not a flow
    ev["signals"] = sig
    ev["sections"]["cost"] = {"phases": {}, "unmeasured":
                              f"not measured: embedded SQLite hides round-trip cost{x}"}
    ev["gates"] = [
        {"name": f"import-latency{x}", "outcome": "inconclusive", "value": 1.9,
         "threshold": "new/old median ≤ 2×", "key": True, "weight": 1,
         "cause": "slower", "reason": "",
         "expression": f"Hodges–Lehmann ratio new/old of {flow}'s median latency in the "
                       "paired phase, 95% interval (Mann–Whitney)",
         "effect": 1.9, "interval": [1.41, 2.62],
         "decision": "new/old median ratio 1.90 [1.41, 2.62], threshold ≤ 2.0 → inconclusive: "
                     "the interval straddles the threshold; about 96 samples per version "
                     f"would resolve it (have 30) (n = 30 old, 31 new, in 6 + 6 blocks){x}"},
        {"name": "wms-calls", "outcome": "fail", "value": 8.0, "key": True, "weight": 1,
         "threshold": "wms requests per iteration ≤ 2× the old version's", "cause": "storm",
         "reason": "", "effect": 8.0, "interval": None,
         "expression": "(twins.wms.paired.new.requests / workload.paired.new.iterations) / "
                       "(twins.wms.paired.old.requests / workload.paired.old.iterations)",
         "decision": "new/old wms requests per iteration 8.00 (4 against 0.5), threshold ≤ 2 "
                     "→ fail"},
        {"name": "error-rate", "outcome": "pass", "value": 0.0, "threshold": "≤ 0.01",
         "key": True, "expression": 'value = signal("workload.candidate.error_rate")',
         "decision": ""},
    ]
    return ev


def _cells(page: str, table_id: str) -> list[list[str]]:
    m = re.search(rf'<table[^>]*id="{table_id}".*?</table>', page, re.S)
    assert m, table_id
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", m.group(0), re.S)
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
             for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r, re.S)] for r in rows]


def test_phases_side_by_side_per_flow():
    page = render_report(_phased(), series=_series())
    assert 'id="phases"' in page
    cells = _cells(page, "phases-1")
    assert cells[0] == ["", "baseline", "paired old", "paired new", "candidate"]
    assert cells[1] == ["iterations", "120", "300", "300", "2,400"]
    assert cells[2] == ["errors", "0", "6 (2.0 %)", "0", "3 (0.1 %)"]
    assert cells[3] == ["p50", "41.2 ms", "38 ms", "40.5 ms", "44 ms"]
    assert cells[4] == ["p95", "180 ms", "95.5 ms", "101 ms", "1,234 ms"]
    assert "<caption>importplain</caption>" in page  # the flow, not an archetype's
    assert 'id="phases-2"' not in page
    cost = _cells(page, "phases-cost")
    assert cost[1] == ["database cost"] + ["not measured"] * 4
    assert ["wms requests", "0.5", "0.5", "4", "0.5"] in cost
    assert not any(r[0] == "wms refused" for r in cost)  # zero in every phase
    assert "embedded SQLite hides round-trip cost" in page
    # a flow without errors anywhere: no row of zeros, the caption says so
    ev = _phased()
    for k in [k for k in ev["signals"] if k.endswith(".errors")]:
        ev["signals"][k] = 0.0
    for sc in ("baseline", "paired.old", "paired.new", "candidate"):  # the same everywhere
        ev["signals"][f"twins.wms.{sc}.messages.per_iteration"] = \
            ev["signals"][f"twins.wms.{sc}.requests.per_iteration"]
    quiet = render_report(ev, series=_series())
    assert [r[0] for r in _cells(quiet, "phases-1")] == ["", "iterations", "p50", "p95"]
    assert "no errors in any phase" in quiet
    assert ["wms messages = requests", "0.5", "0.5", "4", "0.5"] in _cells(quiet, "phases-cost")
    # the misleading baseline-vs-candidate table is gone; the charts stay, with a note
    assert 'id="workload"' not in page
    assert '<svg class="chart"' in page and 'href="#paired"' in page


def test_paired_verdicts_show_effect_interval_threshold_and_samples():
    page = render_report(_phased(), series=_series())
    section = page[page.index('<section id="paired">'):page.index('<section id="phases">')]
    cards = re.findall(r'<div class="paired-card" id="(paired-\d+)">(.*?)'
                       r'(?=<div class="paired-card"|</section>)', section, re.S)
    assert [a for a, _ in cards] == ["paired-1", "paired-2"]  # error-rate is not paired
    first, second = cards[0][1], cards[1][1]
    assert '<svg class="interval"' in first and 'data-decision="inconclusive"' in first
    assert '<rect class="bar"' in first and '<line class="threshold"' in first
    row = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
           for c in re.findall(r"<td[^>]*>(.*?)</td>", first, re.S)]
    assert row == ["1.90×", "1.41 – 2.62", "≤ 2.00×", "inconclusive",
                   "old 30, new 31 samples in 6 + 6 blocks"]
    assert "About 96 samples per version (there were 30) would settle it" in first
    # a count ratio: a dot, no interval bar; sample sizes are the iterations of each version
    assert '<rect class="bar"' not in second and '<circle class="effect"' in second
    assert "exact count" in second and "old 300, new 300 iterations" in second
    # gate rows link to their card; the verdict banner says what would settle it
    assert '<a class="gname" href="#paired-1">import-latencyplain</a>' in page
    assert '<a class="gname" href="#paired-2">wms-calls</a>' in page
    banner = page[page.index('id="verdict"'):page.index("<h2>Gates</h2>")]
    assert "would settle it" in banner
    assert ".INCONCLUSIVE { background: #6a3fa0" in page


@pytest.mark.parametrize("payload", PAYLOADS)
def test_phases_and_paired_free_text_stays_escaped(payload):
    page = render_report(_phased(payload), series=_series())
    assert payload not in page
    for marker in RAW_MARKERS:
        assert marker not in page, marker
    esc = _esc(payload)
    assert f"<caption>import{esc}</caption>" in page  # flow names come from signal keys
    assert f"import-latency{esc}" in page and f"6 blocks){esc}" in page
    svgs = re.findall(r'<svg class="interval".*?</svg>', page, re.S)
    assert svgs
    for svg in svgs:  # the paired cards' and the first screen's copies alike
        assert payload not in svg and "<img" not in svg and "<script" not in svg
    assert any("import-latency" + html.escape(payload) in svg for svg in svgs)


def test_interval_chart_places_threshold_and_interval():
    from plantstage.evidence.charts import interval_chart

    svg = interval_chart(1.2, 0.9, 1.6, 2.0, "pass", title='a "b" <c>')
    assert svg.startswith('<svg class="interval"') and 'data-decision="pass"' in svg
    assert "<c>" not in svg and "&lt;c&gt;" in svg
    x = {m[0]: float(m[1]) for m in re.findall(r'<(?:line|circle) class="(\w+)" c?x1?="([\d.]+)"',
                                                 svg)}
    bar = re.search(r'<rect class="bar" x="([\d.]+)" y="\d+" width="([\d.]+)"', svg)
    lo, width = float(bar[1]), float(bar[2])
    assert lo < x["effect"] < lo + width < x["threshold"]  # the whole interval under the line
    # no interval, infinite ratio, no threshold: still a well-formed chart
    for args in ((None, None, None, None, "inconclusive"),
                 (float("inf"), None, None, 2.0, "fail")):
        s = interval_chart(*args)
        assert s.endswith("</svg>") and "nan" not in s


# -- the first screen: verdict and why, the gates, what explains a failure ---------------------

def test_first_screen_verdict_why_gates_then_explaining_charts():
    ev = _phased()
    ev["signals"]["workload.baseline.f.rate"] = 2.5
    ev["gates"].append({"name": "throughput", "outcome": "pass", "value": 2.0, "key": False,
                        "threshold": "≥ baseline −50%", "weight": 2,
                        "expression": 'value = signal("workload.candidate.f.rate"); pass: '
                                      'value >= baseline("workload.candidate.f.rate") * 0.5'})
    series = {**_series(), "workload.baseline.f.p95_ms": [(100.0, 50.0), (101.0, 60.0)],
              "workload.candidate.f.p95_ms": [(200.0, 40.0), (201.0, 90.0)]}
    page = render_report(ev, series=series)
    # What a decision needs comes first; the detail after it.
    order = ['id="verdict"', 'id="gates"', 'id="explain"', 'id="load"', '<section id="paired">',
             '<section id="phases">', 'id="parity"', '<section id="twins">', 'id="steps"']
    at = [page.index(x) for x in order]
    assert at == sorted(at), dict(zip(order, at, strict=True))
    why = re.search(r'<span class="why" id="verdict-why">(.*?)</span>', page, re.S)[1]
    assert html.unescape(why) == "wms-calls fail: storm (+1 more)"
    cells = _cells(page, "gates")
    assert cells[0] == ["Gate", "Outcome", "Value", "Threshold", "Baseline", "Effect [interval]"]
    # what stops the release first (fail, inconclusive), each with its reason under it
    assert cells[1][:3] == ["wms-calls (key)", "fail", "8"]
    assert cells[1][5] == "8.00×" and cells[2] == ["", "storm"]
    assert cells[3][:2] == ["import-latencyplain (key)", "inconclusive"]
    assert cells[3][5] == "1.90× [1.41, 2.62]"
    assert cells[4] == ["", "could not decide: the interval straddles the threshold"]
    assert [c[0] for c in cells[5:]] == ["error-rate (key)", "throughput"]
    assert cells[6][4] == "2.5"  # baseline("workload.candidate.f.rate") = the baseline phase's
    # weights, full reasons and expressions stay, folded under the table
    details = _cells(page, "gate-reasons")
    assert ["throughput", "2"] == details[-1][:2]
    assert "Hodges–Lehmann ratio" in page and "(n = 30 old, 31 new" in page
    # the charts that explain it: each failed or inconclusive paired gate's interval, and the
    # latency chart for the latency gate — copies with their own ids
    explain = page[page.index('id="explain"'):page.index('id="load"')]
    ids = re.findall(r'<svg class="[^"]+" id="([^"]+)"', explain)
    assert ids == ["explain-paired-2-chart", "explain-paired-1-chart", "explain-chart-latency"]
    assert len(re.findall(r'id="(paired-\d-chart|chart-latency)"', page)) == 3  # originals


def test_a_go_report_explains_nothing_and_says_how_many_gates_passed():
    ev = _phased()
    ev["verdict"] = "GO"
    for g in ev["gates"]:
        g["outcome"] = "pass"
    ev["reasons"] = []
    page = render_report(ev, series=_series())
    assert 'id="explain"' not in page and 'class="why-row' not in page
    why = re.search(r'<span class="why" id="verdict-why">(.*?)</span>', page, re.S)[1]
    assert why == "3 of 3 gates passed"
    ev["gates"][0]["outcome"] = "n/a"  # recreate: a paired gate has nothing to judge
    page = render_report(ev, series=_series())
    why = re.search(r'<span class="why" id="verdict-why">(.*?)</span>', page, re.S)[1]
    assert why == "2 of 3 gates passed; 1 not applicable to this strategy"
    ev["gates"][0]["outcome"] = "pass"
    ev["verdict"], ev["signoffs"][0]["state"] = "PENDING", "pending"
    page = render_report(ev, series=_series())
    assert "Awaiting signoff from operations plain" in page
    # a step that failed, leaving the gates without data: the step, not the gates
    ev["verdict"], ev["gates"][0]["outcome"] = "NO-GO", "inconclusive"
    ev["run_reasons"] = ["step parity failed: blocking drift: config TZ (critical)"]
    page = render_report(ev, series=_series())
    why = re.search(r'<span class="why" id="verdict-why">(.*?)</span>', page, re.S)[1]
    assert why == "step parity failed: blocking drift: config TZ (critical)"


def test_long_tables_are_folded():
    ev = _evidence("x")
    ev["sections"]["twins"]["timeline"] *= 300
    page = render_report(ev, series=_series())
    folded = re.search(r'<details id="fault-timeline">.*?</details>', page, re.S)[0]
    assert "<table>" in folded and "<details id=\"fault-timeline\" open" not in page
    assert re.search(r'<details id="parity-rows"><summary>1 layers, 1 row not the same', page)
    ev["sections"]["parity"]["blocking"] = 1  # blocking drift: open, and ahead of the gates
    blocked = render_report(ev, series=_series())
    assert '<details id="parity-rows" open>' in blocked and blocked.count('id="parity"') == 1
    assert blocked.index('id="verdict">PENDING') < blocked.index('id="parity"') \
        < blocked.index("<h2>Gates</h2>")
    assert page.index("<h2>Gates</h2>") < page.index('id="parity"')  # otherwise after them
    steps = page[page.index("<h2>Steps</h2>"):page.index('<table id="steps">')]
    assert "<details open><summary>1 steps, 1 not passed" in steps  # a failed step: open


# -- the recovery timeline of the rollback drill ------------------------------------------------

def _drilled(results: dict[str, Any]) -> dict[str, Any]:
    ev = _evidence("x")
    ev["steps"].append({"name": "rollback-drill", "title": "Rollback drill", "status": "passed",
                        "seconds": 3.0, "results": {"method": "downgrade", **results}})
    return ev


TIMELINE = [{"event": "backup taken", "start": 0.0, "seconds": 1.5},
            {"event": "failure", "start": 2.0, "seconds": None},
            {"event": "restore", "start": 4.0, "seconds": 6.0},
            {"event": "reconciled", "start": 10.0}]


def test_recovery_timeline_draws_events_and_objectives():
    page = render_report(_drilled({
        "kind": "restore", "timeline": TIMELINE,
        "objectives": {"rto_seconds": 5.0, "rto_measured": 8.0, "rpo_target": 2,
                       "rpo_lost": 1, "lost_ids": ["A-1", "A-2"]}}), series=_series())
    svg = re.search(r'<svg class="chart recovery" id="recovery-timeline".*?</svg>', page, re.S)[0]
    assert 'data-events="4"' in svg and "Recovery timeline (restore)" in svg
    bars = dict(re.findall(r'<rect class="event" x="[\d.]+" y="\d+" width="([\d.]+)"[^>]*>'
                           r"<title>([^:]+):", svg)[i][::-1] for i in range(2))
    assert float(bars["restore"]) == pytest.approx(4 * float(bars["backup taken"]), rel=0.01)
    assert svg.count('<path class="event"') == 2  # no duration: a diamond
    # RTO measured from the failure, over its target: red; RPO within: green
    rto = re.search(r'<rect class="rto-measured" x="([\d.]+)"[^>]*width="([\d.]+)"[^>]*'
                    r'fill="([^"]+)"', svg)
    target = float(re.search(r'<line class="rto-target" x1="([\d.]+)"', svg)[1])
    assert rto[3] == "#b3261e" and float(rto[1]) < target < float(rto[1]) + float(rto[2])
    assert 'class="rpo-lost"' in svg and 'fill="#1b7f3b"' in svg.split('class="rpo-lost"')[1]
    assert "measured 8 s · target ≤ 5 s" in svg and "lost 1 · allowed ≤ 2 records" in svg
    assert "RTO 8 s measured against 5 s · RPO 1 lost against 2 allowed" in page
    assert "A-1, A-2" in page


def test_recovery_timeline_zooms_on_the_recovery_and_marks_a_far_target_off_scale():
    """A drill as the rollback step records it: the failure long after the backup, an RTO
    target fifty times the recovery. The axis starts shortly before the failure; the target is
    named, off scale, instead of squeezing the recovery into the left tenth."""
    from plantstage.evidence.charts import recovery_chart

    timeline = [{"event": "backup taken", "start": 0.0, "seconds": 1.3},
                {"event": "failure", "start": 29.15, "seconds": None},
                {"event": "decision", "start": 29.15, "seconds": 0.013},
                {"event": "switch", "start": 29.16, "seconds": 1.83},
                {"event": "downgrade", "start": 32.19, "seconds": 1.99},
                {"event": "serving", "start": 35.58, "seconds": None},
                {"event": "reconciled", "start": 35.58, "seconds": 0.12}]
    svg = recovery_chart(timeline, {"rto_seconds": 300.0, "rto_measured": 6.54,
                                    "rpo_target": 0, "rpo_lost": 0})
    assert "target ≤ 300 s (off scale →)" in svg and 'class="rto-target"' not in svg
    assert "seconds since the backup was taken (axis from 28 s)" in svg
    xs = {t: float(x) for x, t in re.findall(
        r'<rect class="event" x="([\d.]+)"[^>]*><title>([^:]+):', svg)}
    assert xs["backup taken"] == 130  # before the axis: at its left edge
    assert xs["downgrade"] - xs["switch"] > 100  # three seconds are wide enough to read
    rto = re.search(r'<rect class="rto-measured" x="([\d.]+)"[^>]*width="([\d.]+)"', svg)
    assert float(rto[1]) + float(rto[2]) <= RW_RIGHT
    assert "nan" not in svg and "inf" not in svg


RW_RIGHT = 660  # recovery_chart's right edge (680 wide, 20 padding)


@pytest.mark.parametrize("results", [
    {}, {"kind": "downgrade"}, {"timeline": []}, {"timeline": None, "objectives": None},
    {"timeline": [{"event": "restore"}], "objectives": {}},
    {"timeline": [{"start": "soon", "seconds": "x"}, {"event": "restore", "start": 1.0}]},
    {"objectives": {"rto_seconds": None, "rto_measured": 3.0}},
    {"objectives": {"rpo_target": 0, "rpo_lost": 0, "lost_ids": None}},
    {"timeline": [{"event": "replay", "start": float("nan"), "seconds": float("inf")}]},
])
def test_recovery_timeline_takes_every_key_as_optional(results):
    page = render_report(_drilled(results), series=_series())
    svg = re.search(r'<svg class="chart recovery".*?</svg>', page, re.S)
    if not results.get("timeline") and not results.get("objectives"):
        assert svg is None and 'id="recovery-objectives"' not in page
        assert 'id="recovery"' in page  # the signals' table still shows
    else:
        assert svg and "nan" not in svg[0] and "inf" not in svg[0]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_recovery_timeline_escapes_its_text(payload):
    timeline = [{**e, "event": e["event"] + payload} for e in TIMELINE]
    page = render_report(_drilled({"kind": f"restore{payload}", "timeline": timeline,
                                   "objectives": {"lost_ids": [f"id{payload}"]}}),
                         series=_series())
    _assert_only_escaped(page, payload)
    svg = re.search(r'<svg class="chart recovery".*?</svg>', page, re.S)[0]
    assert "restore" + html.escape(payload) in svg  # the kind, in the title

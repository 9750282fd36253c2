"""Render ``report.html``: one self-contained page (no scripts, fonts or styles from elsewhere).

Data apart from presentation: the evidence dict is the data, charts are inline SVG drawn by
:mod:`plantstage.evidence.charts`, and the page is a Jinja template. Every value is escaped
(autoescape on for all templates): the evidence holds text from anyone who signs off, from the
spec and from the app; none of it may become markup.
"""

from __future__ import annotations

import math
import re
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
_env.filters["num"] = lambda v, unit="": num(v, unit)


#: The load phases side by side: (signal scope, column heading, what ran in it).
PHASES = (
    ("baseline", "baseline", "old version, old schema"),
    ("paired.old", "paired old", "N-1: old version on the new schema"),
    ("paired.new", "paired new", "new version beside the old one"),
    ("candidate", "candidate", "new version alone"),
)
_SCOPES = "|".join(re.escape(sc) for sc, _, _ in PHASES)


def num(v: float | None, unit: str = "") -> str:
    """A readable number: thousands separated, small values to 2–3 significant digits."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if math.isinf(v):
        return "∞"
    a = abs(v)
    if v == 0 or float(v).is_integer() and a < 1e15:
        text = f"{v:,.0f}"
    elif a >= 100:
        text = f"{v:,.0f}"
    elif a >= 10:
        text = f"{v:.1f}"
    elif a >= 0.01:
        text = f"{v:.3g}"
    else:
        text = f"{v:.2g}"
    return f"{text} {unit}" if unit else text


def _phase_rows(evidence: dict[str, Any]) -> list[dict[str, Any]]:
    """Per flow, each phase's count, errors (and rate), p50 and p95 — None where the phase did
    not drive the flow. Flows sorted by name."""
    s = evidence.get("signals") or {}
    flows: set[str] = set()
    for sc, _, _ in PHASES:
        prefix = f"workload.{sc}."
        for k in s:
            if k.startswith(prefix) and k.endswith(".count"):
                flow = k[len(prefix):-len(".count")]
                if flow and not flow.startswith(("archetype.", "old.", "new.")):
                    flows.add(flow)
    out = []
    for flow in sorted(flows):
        cells = {}
        for sc, _, _ in PHASES:
            p = f"workload.{sc}.{flow}."
            count = s.get(p + "count")
            if count is None:
                cells[sc] = None
                continue
            errors = s.get(p + "errors") or 0.0
            cells[sc] = {"count": count, "errors": errors,
                         "error_rate": errors / count if count else None,
                         "p50": s.get(p + "p50_ms"), "p95": s.get(p + "p95_ms")}
        errors = any(c and c["errors"] for c in cells.values())
        out.append({"flow": flow, "phases": cells, "errors": errors})
    return out


def _phase_costs(evidence: dict[str, Any]) -> dict[str, Any]:
    """Cost and twin calls per iteration and phase (``cost.<phase>.*.per_iteration``,
    ``twins.<component>.<phase>.*.per_iteration``); rows zero in every phase are left out, and
    a phase whose cost was not measured says so."""
    s = evidence.get("signals") or {}
    rows: dict[tuple[str, str], dict[str, float]] = {}
    pat = re.compile(rf"^(cost|twins\.(?P<comp>.+?))\.(?P<sc>{_SCOPES})\.(?P<c>.+)"
                     r"\.per_iteration$")
    for k, v in s.items():
        m = pat.match(k)
        if m:
            what = f"{m['comp']} {m['c']}" if m["comp"] else f"database {m['c']}"
            rows.setdefault((("1" if m["comp"] else "0") + what, what), {})[m["sc"]] = v
    # Counters of one component that read the same in every phase (a twin's acks, deliveries
    # and messages often do) share one row.
    kept: list[dict[str, Any]] = []
    for (_, what), vals in sorted(rows.items()):
        if not any(vals.values()):
            continue
        comp, _, counter = what.partition(" ")
        same = next((r for r in kept if r["comp"] == comp and r["phases"] == vals), None)
        if same:
            same["label"] += f" = {counter}"
        else:
            kept.append({"comp": comp, "label": what, "phases": vals})
    unmeasured = {sc: True for sc, _, _ in PHASES
                  if s.get(f"cost.{sc}.unmeasured") or s.get(f"cost.{sc.split('.')[0]}.unmeasured")}
    why = ((evidence.get("sections") or {}).get("cost") or {}).get("unmeasured") or ""
    return {"rows": kept, "unmeasured": unmeasured, "why": why}


_KINDS = (("Hodges", "paired-latency"), ("cost.", "cost-ratio"),
          ("(twins.", "call-amplification"))


def _judged_kind(g: dict[str, Any]) -> str | None:
    """Which paired built-in judged a gate (None for any other gate). Native built-ins are the
    ones with a decision in words; what each shows says which one it is."""
    if g.get("use") in ("paired-latency", "cost-ratio", "call-amplification"):
        return g["use"]
    if not g.get("decision"):
        return None
    shown = g.get("expression") or ""
    return next((kind for prefix, kind in _KINDS if shown.startswith(prefix)), "paired")


def _settle(g: dict[str, Any], kind: str) -> str:
    """What would settle an inconclusive comparison, in one sentence."""
    text = g.get("decision") or g.get("reason") or ""
    m = re.search(r"about (\d+) samples per version would resolve it \(have (\d+)\)", text)
    if m:
        return (f"About {m[1]} samples per version (there were {m[2]}) would settle it: "
                "lengthen the paired phase or raise this flow's rate.")
    m = re.search(r"at least (\d+) (?:per version|of each) needed", text)
    if m:
        return (f"At least {m[1]} per version are needed: lengthen the paired phase or raise "
                "this flow's rate.")
    if "close to it" in text or "sits on" in text:
        return ("The effect sits at the threshold itself: many more samples would settle it "
                "only slowly; decide whether this much change is acceptable.")
    if kind == "paired-latency":
        return "A paired phase that drives this flow (with enough samples of both versions) "\
               "would settle it."
    return "Recording the counters of both phases would settle it."


def _paired_verdicts(evidence: dict[str, Any]) -> list[dict[str, Any]]:
    """Every gate judged by a paired or ratio built-in: effect, interval, threshold, decision,
    sample sizes, and an inline SVG of the interval against the threshold."""
    from plantstage.evidence.charts import interval_chart

    s = evidence.get("signals") or {}
    out = []
    for g in evidence.get("gates") or []:
        kind = _judged_kind(g)
        if kind is None:
            continue
        decision_text = g.get("decision") or g.get("reason") or ""
        decision = g.get("outcome") or "inconclusive"
        if decision not in ("pass", "fail", "inconclusive"):  # waived, warn: the judged one
            decision = next((d for d in ("pass", "fail", "inconclusive")
                             if decision_text.rstrip(")").endswith(d)
                             or f"→ {d}" in decision_text), "inconclusive")
        effect = g.get("effect")
        interval = g.get("interval") or [None, None]
        m = re.search(r"≤ ([0-9.]+) with the", decision_text) \
            or re.search(r"threshold ≤ ([0-9.]+)", decision_text) \
            or re.search(r"≤ ([0-9.]+)×", g.get("threshold") or "")
        limit = float(m[1]) if m else None
        floor = re.search(r"threshold ≤ ([0-9.]+) \(≤ [0-9.]+ with the ([0-9.]+) ms floor\)",
                          decision_text)
        n = None
        m = re.search(r"n = (\d+) old, (\d+) new(?:, in (\d+) \+ (\d+) blocks)?",
                      decision_text)
        if m:
            n = {"old": int(m[1]), "new": int(m[2]),
                 "unit": "samples", "blocks": (int(m[3]), int(m[4])) if m[3] else None}
        else:
            scopes = re.findall(rf"(?:cost|twins\.[^.]+|workload)\.({_SCOPES})\.",
                                g.get("expression") or "")
            scopes = list(dict.fromkeys(scopes))
            if len(scopes) == 2:
                iters = [s.get(f"workload.{sc}.iterations") for sc in scopes]
                heads = {sc: head for sc, head, _ in PHASES}
                n = {"new": iters[0], "old": iters[1], "unit": "iterations",
                     "scopes": [heads[sc] for sc in scopes], "blocks": None}
        anchor = f"paired-{len(out) + 1}"
        out.append({
            "gate": g.get("name", ""), "anchor": anchor, "kind": kind, "key": g.get("key"),
            "outcome": g.get("outcome"), "decision": decision, "text": decision_text,
            "effect": effect, "low": interval[0], "high": interval[1], "limit": limit,
            "threshold": g.get("threshold", ""), "n": n,
            "floor": f"{float(floor[1]):g}× raised by the {floor[2]} ms floor" if floor else "",
            "settle": _settle(g, kind) if decision == "inconclusive" else "",
            "svg": Markup(interval_chart(effect, interval[0], interval[1], limit, decision,
                                         title=str(g.get("name", "")),
                                         chart_id=anchor + "-chart")),
        })
    return out


def _recovery(evidence: dict[str, Any]) -> list[tuple[str, float]]:
    s = evidence.get("signals", {})
    names = [("backup", "backup.seconds"), ("rollback / restore", "rollback.seconds"),
             ("restore", "restore.seconds"), ("rows lost in rollback", "rollback.rows_lost"),
             ("values wiped by rollback", "rollback.values_lost"),
             ("columns gone after rollback", "rollback.columns_lost"),
             ("tables changed by rollback", "rollback.tables_changed")]
    return [(label, s[k]) for label, k in names if k in s]


def _drill(evidence: dict[str, Any]) -> dict[str, Any] | None:
    """The rollback drill's recovery timeline and objectives (docs/evidence.md): the
    ``rollback-drill`` step's ``kind``, ``timeline`` and ``objectives``, every key optional
    (older runs carry none, and then there is nothing to draw)."""
    from plantstage.evidence.charts import recovery_chart

    step = next((st for st in evidence.get("steps") or []
                 if isinstance(st, dict) and st.get("name") == "rollback-drill"), None)
    res = (step or {}).get("results")
    if not isinstance(res, dict):
        return None
    timeline = [e for e in res.get("timeline") or [] if isinstance(e, dict)]
    objectives = res.get("objectives") if isinstance(res.get("objectives"), dict) else {}
    if not timeline and not objectives:
        return None
    return {"kind": res.get("kind") or res.get("method"), "timeline": timeline,
            "objectives": objectives, "summary": _objectives_text(objectives),
            "lost_ids": [str(i) for i in objectives.get("lost_ids") or []],
            "svg": Markup(recovery_chart(timeline, objectives, kind=str(res.get("kind") or ""),
                                         chart_id="recovery-timeline"))}


def _objectives_text(o: dict[str, Any]) -> str:
    """"RTO 8 s measured against 5 s · RPO 1 lost against 2 allowed", of what was recorded."""
    def n(key: str, unit: str = "") -> str | None:
        v = o.get(key)
        return num(float(v), unit) if isinstance(v, int | float) else None

    parts = []
    for head, measured, target, words, tail in (
            ("RTO", n("rto_measured", "s"), n("rto_seconds", "s"), "measured", ""),
            ("RPO", n("rpo_lost"), n("rpo_target"), "lost", " allowed")):
        if measured and target:
            parts.append(f"{head} {measured} {words} against {target}{tail}")
        elif measured:
            parts.append(f"{head} {measured} {words}")
        elif target:
            parts.append(f"{head} target {target}")
    return " · ".join(parts)


#: The order the gates table lists outcomes in: what stops the release first.
_ORDER = {"fail": 0, "inconclusive": 1, "warn": 2, "waived": 3, "pass": 4}


def _baseline(g: dict[str, Any], signals: dict[str, Any]) -> float | None:
    """What the gate compares against, from the evidence's signals: ``baseline("x")`` is the
    baseline phase's ``x``; a per-iteration ratio ``(a / b) / (c / d)`` compares with ``c / d``;
    a simple gate's threshold names its baseline. None when the gate has none."""
    expr = g.get("expression") or ""
    m = re.search(r'baseline\("workload\.candidate\.([^"]+)"\)', expr)
    if m:
        return signals.get("workload.baseline." + m[1])
    m = re.fullmatch(r"\((\S+) / (\S+)\) / \((\S+) / (\S+)\)", expr.strip())
    if m and signals.get(m[4]):
        c = signals.get(m[3])
        return c / signals[m[4]] if c is not None else None
    m = re.search(r"\(baseline ([0-9.eE+-]+) ", g.get("threshold") or "")
    return float(m[1]) if m else None


def _short_inconclusive(reason: str) -> str:
    """Why a comparison could not decide, without its numbers (they are in the row): the words
    after "→ inconclusive:" up to the first clause, e.g. "the interval straddles the threshold"."""
    m = re.search(r"→ inconclusive:?\s*(.*)", reason)
    text = m[1] if m else reason
    text = re.split(r";| \(n = ", text, maxsplit=1)[0].strip()
    if not text and m:  # "new/old median ratio: too few samples …, threshold … → inconclusive"
        head = reason[:m.start()]
        text = head.split(":", 1)[1].rsplit(", threshold", 1)[0].strip() if ":" in head else ""
    return f"could not decide: {text}" if text else ""


def _gate_rows(evidence: dict[str, Any], paired_anchor: dict[str, str]) -> list[dict[str, Any]]:
    """The gates for the first screen: what stops the release first, then the rest in the
    spec's order; each with its value, threshold, baseline, effect and interval (the evidence's
    own fields) and, when it did not pass, why in a short line."""
    s = evidence.get("signals") or {}
    rows = []
    for i, g in enumerate(evidence.get("gates") or []):
        outcome = g.get("outcome") or ""
        if outcome == "inconclusive":
            why = _short_inconclusive(g.get("reason") or g.get("decision") or "") \
                or g.get("cause") or ""
        elif outcome != "pass":
            why = g.get("cause") or g.get("reason") or ""
        else:
            why = ""
        interval = g.get("interval") or None
        rows.append({"g": g, "order": (_ORDER.get(outcome, 2), i), "why": why,
                     "baseline": _baseline(g, s), "effect": g.get("effect"),
                     "low": interval[0] if interval else None,
                     "high": interval[1] if interval else None,
                     "anchor": paired_anchor.get(g.get("name", ""))})
    return sorted(rows, key=lambda r: r["order"])


def _why(evidence: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The verdict's reason in one line (the full reasons follow, folded)."""
    verdict = evidence.get("verdict")
    run = evidence.get("run_reasons") or []
    bad = [r for r in rows if r["g"].get("outcome") in ("fail", "inconclusive")]
    n = len(rows)
    # A failed gate says most; a step that failed comes before the gates it left without data.
    if verdict == "NO-GO" and run and not any(r["g"].get("outcome") == "fail" for r in bad):
        return str(run[0]) + (f" (+{len(run) - 1} more)" if len(run) > 1 else "")
    if verdict in ("NO-GO", "INCONCLUSIVE") and bad:
        first = bad[0]
        name = first["g"].get("name", "")
        what = first["why"] or first["g"].get("outcome", "")
        more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
        return f"{name} {first['g'].get('outcome')}: {what}{more}"
    if verdict == "PENDING":
        pending = [r.get("role", "") for r in evidence.get("signoffs") or []
                   if r.get("state") == "pending"]
        if pending:
            return "Awaiting signoff from " + ", ".join(pending)
    reasons = evidence.get("reasons") or run
    if verdict != "GO" and reasons:
        return str(reasons[0])
    passed = sum(1 for r in rows if r["g"].get("outcome") == "pass")
    na = sum(1 for r in rows if r["g"].get("outcome") == "n/a")
    rest = n - passed - na
    return f"{passed} of {n} gate{'s' if n != 1 else ''} passed" + \
        (f"; {na} not applicable to this strategy" if na else "") + \
        (f"; {rest} warned or waived" if rest else "")


#: Which load-over-time chart shows what a gate judges (by the signal names it reads).
_CHART_FOR = (("in_flight", "chart-queue"), ("_ms", "chart-latency"),
              ("latency", "chart-latency"), (".rate", "chart-throughput"),
              ("throughput", "chart-throughput"), ("error", "chart-throughput"))


def _explain(rows: list[dict[str, Any]], paired: list[dict[str, Any]],
             charts: list[dict[str, Any]], drill: dict[str, Any] | None
             ) -> list[dict[str, Any]]:
    """The few charts that explain a failure, for the first screen: a failed or inconclusive
    paired gate's interval, the load chart of a failed gate's signal, the recovery timeline of
    a failed recovery gate. Empty when every gate passed."""
    by_gate = {p["gate"]: p for p in paired}
    by_id = {c["id"]: c for c in charts}
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for r in rows:
        g = r["g"]
        if g.get("outcome") not in ("fail", "inconclusive"):
            continue
        name = g.get("name", "")
        text = f"{name} {g.get('expression') or ''} {g.get('cause') or ''}".lower()
        if name in by_gate:
            out.append({"gate": name, "outcome": g.get("outcome"), "svg": by_gate[name]["svg"],
                        "caption": by_gate[name]["text"], "kind": "interval"})
        cid = next((c for needle, c in _CHART_FOR if needle in text), None)
        if cid and cid in by_id and cid not in seen:
            seen.add(cid)
            out.append({"gate": name, "outcome": g.get("outcome"), "svg": by_id[cid]["svg"],
                        "caption": by_id[cid]["title"], "kind": "load"})
        if drill and "recovery" not in seen and any(
                w in text for w in ("rollback", "restore", "recovery", "rto", "rpo")):
            seen.add("recovery")
            out.append({"gate": name, "outcome": g.get("outcome"), "svg": drill["svg"],
                        "caption": "Recovery timeline", "kind": "recovery"})
    for x in out:  # a copy of a chart drawn further down: its own id
        x["svg"] = Markup(re.sub(r'^(<svg [^>]*?id=")', r"\1explain-", str(x["svg"]), count=1))
    return out[:4]


def render_report(evidence: dict[str, Any],
                  series: dict[str, list[tuple[float, float]]] | None = None) -> str:
    from plantstage.evidence.charts import workload_charts

    charts = workload_charts(series or {}, evidence.get("sections") or {})
    for c in charts:
        c["svg"] = Markup(c["svg"])  # built from escaped parts in charts.py
    paired = _paired_verdicts(evidence)
    paired_anchor = {p["gate"]: p["anchor"] for p in paired}
    rows = _gate_rows(evidence, paired_anchor)
    drill = _drill(evidence)
    return _env.get_template("report.html.j2").render(
        e=evidence, charts=charts, recovery=_recovery(evidence), phases=PHASES,
        phase_rows=_phase_rows(evidence), phase_costs=_phase_costs(evidence), paired=paired,
        paired_anchor=paired_anchor, gate_rows=rows, why=_why(evidence, rows), drill=drill,
        explain=_explain(rows, paired, charts, drill))

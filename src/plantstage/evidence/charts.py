"""Charts for the report: inline SVG drawn here, server-side.

Hand-written on purpose: a JavaScript chart library would need a CDN (the report must open
offline and load nothing) or be inlined at hundreds of kilobytes; a plotting library (matplotlib)
is a heavy dependency for three line charts. Plain SVG is small, prints, and needs no script —
the page's Content-Security-Policy forbids scripts anyway.

Each chart overlays the current version (baseline phase) and the new version (candidate phase)
on one time axis — seconds since each phase started — and draws the twins' fault timeline under
the plot, one lane per twin, in the colour of the phase it happened in (outages as bands).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from html import escape
from typing import Any

W, H = 680, 262
PAD_L, PAD_R, PAD_T = 56, 16, 14
COLORS = {"baseline": "#2f6db5", "candidate": "#d9730d"}
LABELS = {"baseline": "current", "candidate": "new"}

Series = Mapping[str, list[tuple[float, float]]]


def _phase_series(series: Series, phase: str, suffix: str, how: str) -> list[tuple[float, float]]:
    """Combine the flows' series of one phase per timestamp (sum or max)."""
    prefix = f"workload.{phase}."
    by_t: dict[float, list[float]] = defaultdict(list)
    for name, pts in series.items():
        if name.startswith(prefix) and name.endswith("." + suffix) \
                and name.count(".") == 3:  # workload.<phase>.<flow>.<stat>
            for t, v in pts:
                by_t[round(t, 1)].append(v)
        elif name == prefix + suffix:
            for t, v in pts:
                by_t[round(t, 1)].append(v)
    agg = sum if how == "sum" else max
    return sorted((t, float(agg(vs))) for t, vs in by_t.items())


def phase_windows(series: Series) -> dict[str, tuple[float, float]]:
    """When each phase ran: (first point − 1 s, last point) — points come once a second."""
    out = {}
    for phase in ("baseline", "candidate"):
        ts = [t for n, pts in series.items() if n.startswith(f"workload.{phase}.")
              for t, _ in pts]
        if ts:
            out[phase] = (min(ts) - 1.0, max(ts))
    return out


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    import math

    mag = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * mag:
            return m * mag
    return 10 * mag


def _nice_step(raw: float) -> float:
    """The smallest round step (1, 2, 2.5, 5 × 10^k) not under ``raw``."""
    import math

    if raw <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if raw <= m * mag)


def _ticks(y_max: float) -> int:
    """How many steps divide the axis into round numbers (5 → 5 steps of 1, not 4 of 1.25)."""
    import math

    for n in (4, 5, 2):
        step = y_max / n
        lead = step / 10 ** math.floor(math.log10(step))
        if any(abs(lead - m) < 1e-9 for m in (1, 2, 2.5, 5)):
            return n
    return 4


def _fmt(v: float) -> str:
    return f"{v:.0f}" if v >= 10 or float(v).is_integer() else f"{v:.2g}"


def line_chart(title: str, unit: str, lines: dict[str, list[tuple[float, float]]],
               windows: dict[str, tuple[float, float]],
               faults: list[dict[str, Any]] | None = None, chart_id: str = "") -> str:
    """One SVG: a line per phase (x = seconds into the phase), fault lanes underneath; a y axis
    titled with the unit, an x axis titled in seconds, and a legend of what each colour is."""
    faults = faults or []
    twins = sorted({f["twin"] for f in faults})
    lane_h = 12
    height = H + lane_h * len(twins)
    plot_h = H - PAD_T - 62
    xs = [t - windows[p][0] for p, pts in lines.items() for t, _ in pts if p in windows]
    xs += [f["x"] for f in faults]
    x_max = max([*xs, 1.0])
    y_max = _nice_max(max([v for pts in lines.values() for _, v in pts] + [0.0]))
    plot_w = W - PAD_L - PAD_R
    top = PAD_T + 16  # under the title and legend row

    def X(x):
        return PAD_L + plot_w * x / x_max

    def Y(v):
        return top + plot_h * (1 - v / y_max)

    n_points = sum(len(p) for p in lines.values())
    out = [f'<svg class="chart" id="{escape(chart_id)}" data-points="{n_points}" '
           f'data-faults="{len(faults)}" viewBox="0 0 {W} {height}" width="{W}" '
           f'height="{height}" role="img" xmlns="http://www.w3.org/2000/svg">',
           f"<title>{escape(title)} ({escape(unit)})</title>",
           f'<text x="{PAD_L}" y="{PAD_T}" class="ct">{escape(title)}</text>',
           f'<text transform="translate(12 {top + plot_h / 2:.0f}) rotate(-90)" '
           f'text-anchor="middle" class="ax">{escape(unit)}</text>']
    ticks = _ticks(y_max)
    for i in range(ticks + 1):  # grid and y labels
        v = y_max * i / ticks
        y = Y(v)
        out.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}" '
                   'stroke="#e4e6ee"/>')
        out.append(f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end" class="ax">'
                   f"{_fmt(v)}</text>")
    out.append(f'<line x1="{PAD_L}" x2="{PAD_L}" y1="{top}" y2="{top + plot_h}" '
               'stroke="#9aa0ad"/>')
    step = max(1, round(x_max / 8))
    x = 0
    while x <= x_max + 1e-9:
        out.append(f'<line x1="{X(x):.1f}" x2="{X(x):.1f}" y1="{top + plot_h}" '
                   f'y2="{top + plot_h + 4}" stroke="#9aa0ad"/>'
                   f'<text x="{X(x):.1f}" y="{top + plot_h + 15:.1f}" text-anchor="middle" '
                   f'class="ax">{x:g}</text>')
        x += step
    out.append(f'<text x="{PAD_L + plot_w / 2:.0f}" y="{top + plot_h + 29:.0f}" '
               'text-anchor="middle" class="ax">seconds since the phase started</text>')
    for phase, pts in lines.items():
        if phase not in windows or not pts:
            continue
        color = COLORS[phase]
        coords = " ".join(f"{X(t - windows[phase][0]):.1f},{Y(v):.1f}" for t, v in pts)
        if len(pts) > 1:
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                       f'points="{coords}"/>')
        for t, v in pts:
            out.append(f'<circle cx="{X(t - windows[phase][0]):.1f}" cy="{Y(v):.1f}" r="3" '
                       f'fill="{color}"><title>{LABELS[phase]}: {_fmt(v)} {escape(unit)} at '
                       f'{t - windows[phase][0]:.0f}s</title></circle>')
    lanes = top + plot_h + 38
    for i, twin in enumerate(twins):
        y = lanes + i * lane_h
        out.append(f'<rect x="{PAD_L}" y="{y + 1}" width="{plot_w}" height="{lane_h - 3}" '
                   'fill="#f1f2f6"/>'
                   f'<text x="{PAD_L - 6}" y="{y + 9}" text-anchor="end" class="ax">'
                   f"{escape(twin)}</text>")
        for f in (f for f in faults if f["twin"] == twin):
            color = "#b3261e" if f["kind"] == "outage" else COLORS[f["phase"]]
            out.append(f'<rect x="{X(f["x"]):.1f}" y="{y + 1}" width="2" height="{lane_h - 3}" '
                       f'fill="{color}" opacity=".75"><title>{escape(f["kind"])} on '
                       f'{escape(twin)} ({LABELS[f["phase"]]}, {f["x"]:.1f}s)'
                       f'{": " + escape(f["detail"]) if f.get("detail") else ""}</title></rect>')
    # legend, top right: what each colour is
    items = [(COLORS[p], f"{LABELS[p]} ({p} phase)", "line") for p in ("baseline", "candidate")
             if lines.get(p)]
    if faults:
        items.append(("#b3261e", "outage", "tick"))
    lx = W - PAD_R
    for color, label, shape in reversed(items):
        lx -= 20 + 6 * len(label)
        mark = (f'<rect x="{lx}" y="{PAD_T - 6}" width="14" height="3" fill="{color}"/>'
                if shape == "line" else
                f'<rect x="{lx + 5}" y="{PAD_T - 10}" width="3" height="10" fill="{color}"/>')
        out.append(f'<g class="legend">{mark}<text x="{lx + 18}" y="{PAD_T}" class="ax">'
                   f"{escape(label)}</text></g>")
    out.append("</svg>")
    return "".join(out)


def fault_points(timeline: list[dict[str, Any]], windows: dict[str, tuple[float, float]]
                 ) -> list[dict[str, Any]]:
    """Fault events placed on the phase they happened in (others are not during load)."""
    out = []
    for e in timeline:
        at = e.get("at")
        if at is None:
            continue
        for phase, (start, end) in windows.items():
            if start <= at <= end + 1.0:
                out.append({"twin": e.get("twin", "?"), "kind": e.get("kind", "?"),
                            "detail": e.get("detail", ""), "phase": phase, "x": at - start})
                break
    return out


def workload_charts(series: Series, sections: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The report's charts: throughput, latency and queue depth, current vs new, with faults."""
    windows = phase_windows(series)
    if not windows:
        return []
    timeline = (sections.get("twins") or {}).get("timeline") or []
    faults = fault_points(timeline, windows)
    specs = [
        ("throughput", "Throughput, all flows", "iterations/s", "throughput", "sum"),
        ("latency", "Latency, slowest flow p95", "ms", "p95_ms", "max"),
        ("queue", "Queue depth (iterations in flight)", "in flight", "in_flight", "max"),
    ]
    charts = []
    for cid, title, unit, suffix, how in specs:
        lines = {p: _phase_series(series, p, suffix, how) for p in windows}
        if not any(lines.values()):
            continue
        charts.append({"id": f"chart-{cid}", "title": title,
                       "points": sum(len(v) for v in lines.values()),
                       "svg": line_chart(title, unit, lines, windows, faults, f"chart-{cid}")})
    return charts


# -- the paired verdict: an effect, its interval and the threshold on one ratio axis ----------

#: Colours of a decision (the page's CSS uses the same ones for the words).
DECISION_COLORS = {"pass": "#1b7f3b", "fail": "#b3261e", "inconclusive": "#6a3fa0"}
IW, IH = 420, 76


def _ratio_label(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".") + "×" if x < 10 else f"{x:.0f}×"


def interval_chart(effect: float | None, low: float | None, high: float | None,
                   limit: float | None, decision: str, *, title: str = "",
                   chart_id: str = "") -> str:
    """One small SVG: the new/old ratio (dot), its interval (bar) and the threshold (line), on a
    logarithmic ratio axis (2× slower and 2× faster sit equally far from 1×).

    A ratio without an interval (a count ratio: deterministic, no sample) is the dot alone; a
    missing effect draws the threshold only. Every text is escaped here.
    """
    import math

    finite = [v for v in (effect, low, high, limit, 1.0)
              if v is not None and math.isfinite(v) and v > 0]
    lo_v, hi_v = min(finite) / 1.3, max(finite) * 1.3
    a, b = math.log(lo_v), math.log(hi_v)
    left, right, axis_y = 14, IW - 14, 40

    def X(v: float) -> float:
        if not math.isfinite(v):
            return right
        return left + (right - left) * (math.log(max(v, lo_v)) - a) / (b - a)

    color = DECISION_COLORS.get(decision, "#5a6270")
    label = f"{title}: " if title else ""
    if effect is not None:
        label += f"new/old {_ratio_label(effect) if math.isfinite(effect) else '∞'}"
    if low is not None and high is not None:
        label += f", interval {_ratio_label(low)} – {_ratio_label(high)}"
    if limit is not None:
        label += f", threshold ≤ {_ratio_label(limit)}"
    label += f" → {decision}"
    out = [f'<svg class="interval" id="{escape(chart_id)}" data-decision="{escape(decision)}" '
           f'viewBox="0 0 {IW} {IH}" width="{IW}" height="{IH}" role="img" '
           'xmlns="http://www.w3.org/2000/svg">', f"<title>{escape(label)}</title>",
           f'<line x1="{left}" x2="{right}" y1="{axis_y}" y2="{axis_y}" stroke="#c9ccd6"/>']
    # ticks at round ratios inside the axis
    last_x = -100.0
    for t in (0.1, 0.2, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 2, 3, 4, 5, 10, 20, 50, 100):
        if lo_v < t < hi_v and X(t) - last_x >= 34:
            x = last_x = X(t)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{axis_y}" y2="{axis_y + 4}" '
                       'stroke="#9aa0ad"/>'
                       f'<text x="{x:.1f}" y="{axis_y + 15}" text-anchor="middle" class="ax">'
                       f"{escape(_ratio_label(t))}</text>")
    x1 = X(1.0)  # no change
    out.append(f'<line x1="{x1:.1f}" x2="{x1:.1f}" y1="10" y2="{axis_y}" stroke="#9aa0ad" '
               'stroke-dasharray="2 2"/>')
    if limit is not None and math.isfinite(limit):
        xl = X(limit)
        tx, anchor = (xl - 4, "end") if xl > IW - 100 else (xl + 4, "start")
        out.append(f'<line class="threshold" x1="{xl:.1f}" x2="{xl:.1f}" y1="6" '
                   f'y2="{axis_y}" stroke="#1d2430" stroke-width="2"/>'
                   f'<text x="{tx:.1f}" y="13" text-anchor="{anchor}" class="ax">threshold '
                   f"{escape(_ratio_label(limit))}</text>")
    if low is not None and high is not None:
        xa, xb = X(low), X(high)
        out.append(f'<rect class="bar" x="{xa:.1f}" y="21" width="{max(xb - xa, 2):.1f}" '
                   f'height="10" rx="3" fill="{color}" opacity=".35"/>'
                   f'<line x1="{xa:.1f}" x2="{xa:.1f}" y1="19" y2="33" stroke="{color}" '
                   f'stroke-width="2"/><line x1="{xb:.1f}" x2="{xb:.1f}" y1="19" y2="33" '
                   f'stroke="{color}" stroke-width="2"/>')
    if effect is not None:
        xe = X(effect)
        out.append(f'<circle class="effect" cx="{xe:.1f}" cy="26" r="5" fill="{color}"/>')
    out.append(f'<text x="{IW / 2:.0f}" y="{IH - 3}" text-anchor="middle" class="ax">new/old '
               "ratio, log scale (dashed: 1× = no change; bar: interval; dot: estimate)</text>")
    out.append("</svg>")
    return "".join(out)



# -- the rollback drill: when each recovery step ran, against the objectives ------------------

RW = 680
_EVENT_COLORS = {"failure": "#b3261e", "decision": "#8a5a00", "backup taken": "#2f6db5",
                 "switch": "#2f6db5", "restore": "#d9730d", "downgrade": "#d9730d",
                 "replay": "#6a3fa0", "serving": "#1b7f3b", "reconciled": "#1b7f3b"}


def recovery_chart(timeline: list[dict[str, Any]], objectives: Mapping[str, Any] | None = None,
                   *, kind: str = "", chart_id: str = "recovery-timeline") -> str:
    """A small bar timeline of a recovery: one lane per event (a bar for its duration, a
    diamond when it has none) on seconds since the backup, then the RTO (target against
    measured, from the failure) and the RPO (transactions lost against those allowed) as bars.
    Every key is optional; numbers that are not numbers are left out. Every text escaped."""
    import math

    def fnum(v: Any) -> float | None:
        try:
            f = float(v)
        except (TypeError, ValueError):
            return None
        return f if math.isfinite(f) else None

    o = dict(objectives or {})
    events = []
    for e in timeline:
        start = fnum(e.get("start"))
        if start is None:
            continue
        events.append((str(e.get("event", "?")), start, fnum(e.get("seconds"))))
    failure = next((st for ev, st, _ in events if ev == "failure"), 0.0)
    rto, rto_m = fnum(o.get("rto_seconds")), fnum(o.get("rto_measured"))
    rpo, rpo_lost = fnum(o.get("rpo_target")), fnum(o.get("rpo_lost"))
    # The axis spans the events and the measured RTO. A target far beyond them is drawn at the
    # right edge as "off scale" rather than squeezing the recovery into a corner; when the
    # failure came long after the backup, the axis starts shortly before the failure (the
    # earlier events sit at the left edge, their times in their titles).
    ends = [st + (d or 0) for _, st, d in events]
    ends += [failure + rto_m] if rto_m is not None else []
    x_end = max([*ends, 1.0])
    if rto is not None and failure + rto <= 1.5 * x_end:
        x_end = max(x_end, failure + rto)
    x0 = 0.0
    if failure > 0.5 * x_end:
        x0 = max(0.0, failure - 0.15 * (x_end - failure))
    step = _nice_step((x_end - x0) / 5)
    x0 = math.floor(x0 / step) * step
    x_end = math.ceil(x_end / step) * step
    left, right, lane = 130, RW - 20, 18
    rows = len(events) + (1 if rto is not None or rto_m is not None else 0) \
        + (1 if rpo is not None or rpo_lost is not None else 0)
    axis_y = 22 + lane * len(events)
    obj_h = lane + 12  # an objective's bar, and its words under it
    height = axis_y + 34 + obj_h * (rows - len(events)) + 4

    def X(x: float) -> float:
        return left + (right - left) * (min(max(x0, x), x_end) - x0) / (x_end - x0)

    title = "Recovery timeline" + (f" ({kind})" if kind else "")
    out = [f'<svg class="chart recovery" id="{escape(chart_id)}" data-events="{len(events)}" '
           f'viewBox="0 0 {RW} {height}" width="{RW}" height="{height}" role="img" '
           'xmlns="http://www.w3.org/2000/svg">', f"<title>{escape(title)}</title>",
           f'<text x="8" y="13" class="ct">{escape(title)}</text>']
    for i, (ev, st, d) in enumerate(events):
        y = 22 + i * lane
        color = _EVENT_COLORS.get(ev, "#5a6270")
        out.append(f'<text x="{left - 6}" y="{y + 11}" text-anchor="end" class="ax">'
                   f"{escape(ev)}</text>")
        tip = f"{ev}: at {st:g} s" + (f", {d:g} s" if d is not None else "")
        if d:
            out.append(f'<rect class="event" x="{X(st):.1f}" y="{y + 3}" '
                       f'width="{max(X(st + d) - X(st), 2):.1f}" height="{lane - 6}" rx="2" '
                       f'fill="{color}"><title>{escape(tip)}</title></rect>'
                       f'<text x="{X(st + d) + 4:.1f}" y="{y + 11}" class="ax">{d:g} s</text>')
        else:
            cx = X(st)
            out.append(f'<path class="event" d="M{cx:.1f} {y + 3} l5 6 l-5 6 l-5 -6 z" '
                       f'fill="{color}"><title>{escape(tip)}</title></path>')
    # the time axis, seconds since the backup
    out.append(f'<line x1="{left}" x2="{right}" y1="{axis_y}" y2="{axis_y}" stroke="#9aa0ad"/>')
    t = x0
    while t <= x_end + 1e-9:
        out.append(f'<line x1="{X(t):.1f}" x2="{X(t):.1f}" y1="{axis_y}" y2="{axis_y + 4}" '
                   f'stroke="#9aa0ad"/><text x="{X(t):.1f}" y="{axis_y + 15}" '
                   f'text-anchor="middle" class="ax">{_fmt(t)}</text>')
        t += step
    out.append(f'<text x="{(left + right) / 2:.0f}" y="{axis_y + 28}" text-anchor="middle" '
               'class="ax">seconds since the backup was taken'
               f'{f" (axis from {_fmt(x0)} s)" if x0 else ""}</text>')
    y = axis_y + 34
    if rto is not None or rto_m is not None:
        over = rto is not None and rto_m is not None and rto_m > rto
        out.append(f'<text x="{left - 6}" y="{y + 11}" text-anchor="end" class="ax">RTO</text>')
        if rto_m is not None:
            out.append(f'<rect class="rto-measured" x="{X(failure):.1f}" y="{y + 3}" '
                       f'width="{max(X(failure + rto_m) - X(failure), 2):.1f}" '
                       f'height="{lane - 6}" fill="{"#b3261e" if over else "#1b7f3b"}">'
                       f"<title>measured {rto_m:g} s</title></rect>")
        off_scale = rto is not None and failure + rto > x_end
        if rto is not None and not off_scale:
            xt = X(failure + rto)
            out.append(f'<line class="rto-target" x1="{xt:.1f}" x2="{xt:.1f}" y1="{y}" '
                       f'y2="{y + lane}" stroke="#1d2430" stroke-width="2"/>')
        label = " · ".join(p for p in (
            f"measured {rto_m:g} s" if rto_m is not None else "",
            f"target ≤ {rto:g} s" + (" (off scale →)" if off_scale else "")
            if rto is not None else "") if p)
        out.append(f'<text x="{left}" y="{y + lane + 9}" class="ax">{escape(label)}</text>')
        y += obj_h
    if rpo is not None or rpo_lost is not None:
        scale = max(rpo or 0, rpo_lost or 0, 1)
        over = rpo is not None and rpo_lost is not None and rpo_lost > rpo
        out.append(f'<text x="{left - 6}" y="{y + 11}" text-anchor="end" class="ax">RPO</text>')
        width = (right - left) * 0.6
        if rpo_lost is not None:
            out.append(f'<rect class="rpo-lost" x="{left}" y="{y + 3}" '
                       f'width="{max(width * rpo_lost / scale, 2):.1f}" height="{lane - 6}" '
                       f'fill="{"#b3261e" if over else "#1b7f3b"}"><title>lost {rpo_lost:g}'
                       "</title></rect>")
        if rpo is not None:
            xt = left + width * rpo / scale
            out.append(f'<line class="rpo-target" x1="{xt:.1f}" x2="{xt:.1f}" y1="{y}" '
                       f'y2="{y + lane}" stroke="#1d2430" stroke-width="2"/>')
        label = " · ".join(p for p in (
            f"lost {rpo_lost:g}" if rpo_lost is not None else "",
            f"allowed ≤ {rpo:g}" if rpo is not None else "") if p) + " records"
        out.append(f'<text x="{left}" y="{y + lane + 9}" class="ax">{escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)

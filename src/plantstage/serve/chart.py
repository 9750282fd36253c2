"""The trend chart: one signal across runs, as server-rendered SVG.

Hand-written for the same reasons as the report's charts (:mod:`plantstage.evidence.charts`):
no script may run under the page's Content-Security-Policy, nothing may be fetched, and a
plotting library is a heavy dependency for one line chart. The x axis is the run order (oldest
left), labelled with the run's date; the y axis starts at zero and carries the signal's unit.
Points are coloured by verdict; the latest GO run is ringed and labelled.
"""

from __future__ import annotations

from html import escape
from typing import Any

W, H = 760, 320
PAD_L, PAD_R, PAD_T, PAD_B = 70, 50, 30, 70
VERDICT_COLORS = {"GO": "#1b7f3b", "NO-GO": "#b3261e", "PENDING": "#b7791f",
                  "INCONCLUSIVE": "#b7791f"}
OTHER = "#666666"
LINE = "#2f6db5"


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    step = 10 ** len(str(int(v))) / 10 if v >= 1 else 1.0
    if v < 1:
        step = 0.1
        while step / 10 >= v:
            step /= 10
    for m in (1, 2, 2.5, 5, 10):
        if m * step >= v:
            return m * step
    return 10 * step


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def trend_svg(signal: str, unit: str, points: list[dict[str, Any]]) -> str:
    """``points``: oldest first, each ``{"label", "value", "verdict", "key"}`` (value may be
    None: the run did not record the signal; it is left out of the line)."""
    vals = [p["value"] for p in points if p["value"] is not None]
    lo = min(0.0, min(vals)) if vals else 0.0
    hi = _nice_max(max(vals)) if vals and max(vals) > 0 else 1.0
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    n = len(points)

    def x(i: int) -> float:
        return PAD_L + (pw / 2 if n == 1 else pw * i / (n - 1))

    def y(v: float) -> float:
        return PAD_T + ph - (v - lo) / (hi - lo) * ph

    last_go = max((i for i, p in enumerate(points) if p["verdict"] == "GO"
                   and p["value"] is not None), default=None)
    title = f"{signal} ({unit})"
    out = [f'<svg class="trend" id="trend" xmlns="http://www.w3.org/2000/svg" '
           f'viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
           f'data-points="{len(vals)}" aria-label="{escape(title)} across {n} runs">',
           f'<title>{escape(title)} across {n} runs</title>']
    for k in range(5):  # y grid and tick labels
        v = lo + (hi - lo) * k / 4
        yy = y(v)
        out.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{yy:.1f}" y2="{yy:.1f}" '
                   f'stroke="#dddddd"/>')
        out.append(f'<text x="{PAD_L - 6}" y="{yy + 4:.1f}" text-anchor="end" '
                   f'font-size="11">{_fmt(v)}</text>')
    out.append(f'<line x1="{PAD_L}" x2="{PAD_L}" y1="{PAD_T}" y2="{PAD_T + ph}" stroke="#333"/>')
    out.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{PAD_T + ph}" y2="{PAD_T + ph}" '
               f'stroke="#333"/>')
    out.append(f'<text x="14" y="{PAD_T + ph / 2:.0f}" font-size="12" text-anchor="middle" '
               f'transform="rotate(-90 14 {PAD_T + ph / 2:.0f})">{escape(unit)}</text>')
    out.append(f'<text x="{PAD_L + pw / 2:.0f}" y="{PAD_T + ph + 34}" font-size="12" '
               f'text-anchor="middle">run (oldest → newest)</text>')
    for i, p in enumerate(points):  # x tick labels: the run's date
        out.append(f'<text x="{x(i):.1f}" y="{PAD_T + ph + 16}" font-size="10" '
                   f'text-anchor="middle">{escape(p["label"])}</text>')
    line = [f"{x(i):.1f},{y(p['value']):.1f}" for i, p in enumerate(points)
            if p["value"] is not None]
    if len(line) > 1:
        out.append(f'<polyline fill="none" stroke="{LINE}" stroke-width="2" '
                   f'points="{" ".join(line)}"/>')
    for i, p in enumerate(points):
        if p["value"] is None:
            continue
        color = VERDICT_COLORS.get(p["verdict"] or "", OTHER)
        out.append(f'<circle class="point" cx="{x(i):.1f}" cy="{y(p["value"]):.1f}" r="5" '
                   f'fill="{color}" data-run="{escape(p["key"])}" '
                   f'data-verdict="{escape(p["verdict"] or "none")}">'
                   f'<title>{escape(p["key"])}: {_fmt(p["value"])} {escape(unit)} '
                   f'({escape(p["verdict"] or "no verdict")})</title></circle>')
    if last_go is not None:
        p = points[last_go]
        cx, cy = x(last_go), y(p["value"])
        out.append(f'<circle id="last-go" cx="{cx:.1f}" cy="{cy:.1f}" r="10" fill="none" '
                   f'stroke="{VERDICT_COLORS["GO"]}" stroke-width="2" '
                   f'data-run="{escape(p["key"])}"/>')
        out.append(f'<text x="{cx:.1f}" y="{cy - 14:.1f}" font-size="11" text-anchor="middle" '
                   f'fill="{VERDICT_COLORS["GO"]}">last GO</text>')
    # Legend: what the point colours and the ring mean.
    lx, ly = PAD_L, H - 14
    items = [("GO", VERDICT_COLORS["GO"]), ("NO-GO", VERDICT_COLORS["NO-GO"]),
             ("PENDING / INCONCLUSIVE", VERDICT_COLORS["PENDING"]), ("no verdict", OTHER)]
    for label, color in items:
        out.append(f'<circle cx="{lx + 5}" cy="{ly}" r="5" fill="{color}"/>')
        out.append(f'<text x="{lx + 14}" y="{ly + 4}" font-size="11">{escape(label)}</text>')
        lx += 24 + 7 * len(label)
    out.append(f'<circle cx="{lx + 8}" cy="{ly}" r="8" fill="none" '
               f'stroke="{VERDICT_COLORS["GO"]}" stroke-width="2"/>')
    out.append(f'<text x="{lx + 22}" y="{ly + 4}" font-size="11">last GO</text>')
    out.append("</svg>")
    return "\n".join(out)

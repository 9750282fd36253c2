"""Print a parity report with Rich: one block per layer (same / allowed / drift / unknown)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from plantstage.parity._model import LAYERS, ParityReport

_STYLE = {"same": "green", "allowed": "cyan", "drift": "red", "unknown": "yellow",
          "not compared": "dim"}


def _val(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, list):
        return ", ".join(map(str, v)) or "[]"
    s = str(v)
    return s if len(s) <= 48 else s[:45] + "…"


def table(report: ParityReport, *, show_same: bool = False) -> Table:
    a, b = report.between
    t = Table(title=f"Parity {a} ↔ {b}", title_justify="left", show_lines=False,
              header_style="bold")
    for col in ("layer", "status", "key", "sev", a, b, "why"):
        t.add_column(col, overflow="fold")
    for layer in LAYERS:
        c = report.counts(layer)
        status = report.layers[layer]["status"]
        summary = " · ".join(f"{n} {s}" for s, n in c.items() if n)
        t.add_row(Text(layer, style="bold"), Text(status, style=_STYLE[status]),
                  Text(summary or "nothing to compare", style="dim"), "", "", "", "",
                  end_section=False)
        for f in report.findings:
            if f.layer != layer or (f.status == "same" and not show_same):
                continue
            sev = Text(f.severity or "", style="bold red" if f.blocking else "")
            shown = f.status + (" (blocks)" if f.blocking and f.status == "unknown" else "")
            t.add_row("", Text(shown, style=_STYLE[f.status]), f.key, sev,
                      _val(f.production), _val(f.staging), f.reason)
        for note in report.layers[layer]["notes"]:
            t.add_row("", Text("note", style="dim"), Text(note, style="dim"), "", "", "", "")
        t.add_section()
    return t


def print_report(report: ParityReport, console: Console, *, show_same: bool = False) -> None:
    console.print(table(report, show_same=show_same))
    c = report.counts()
    line = Text.assemble(
        (f" {report.outcome.upper()} ", "bold white on red" if report.exit_code else
         "bold white on green"),
        f"  {c['same']} same · {c['allowed']} allowed · {c['drift']} drift "
        f"({sum(f.status == 'drift' for f in report.blocking)} blocking) · {c['unknown']} "
        f"unknown ({sum(f.status == 'unknown' for f in report.blocking)} blocking) · "
        f"{report.seconds:.2f} s")
    console.print(line)

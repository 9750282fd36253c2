"""CLI of release rings (``plantstage rings``; registered on the main Typer app).

``plantstage rehearse --ring NAME`` is the rehearse command's option; the verb is
:mod:`plantstage.rings`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from plantstage.cli_support import console, name_param, path_param

#: This module's commands; plantstage.cli registers them on the main app.
app = typer.Typer()


@app.command()
def rings(
    path: Annotated[Path, typer.Argument(help="Spec file or folder.", callback=path_param)]
    = Path("."),
    release: Annotated[str | None, typer.Option(
        help="Release to show (default: the first release that is not current).",
        callback=name_param)] = None,
    runs: Annotated[list[Path] | None, typer.Option(
        help="Another folder of run folders to look in (besides .plantstage/runs beside the "
        "spec); repeatable.", callback=lambda v: [path_param(p) for p in v or []])] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
):
    """Show each release ring's state for a release: entered (its GO run verifies), may
    enter (the previous ring's verified GO unlocks it), or blocked, with the run that
    unlocks it. Exit 0; 2 on bad input."""
    from plantstage.rings import status

    rel, states = status(path, release=release, runs=runs)
    if as_json:
        sys.stdout.write(json.dumps({"release": rel.name, "sha256": rel.artifact.sha256,
                                     "rings": [s.as_dict() for s in states]}, indent=2) + "\n")
        return
    console.print(f"Rings for release [bold]{rel.name}[/] (sha256 {rel.artifact.sha256[:12]}…)",
                  highlight=False)
    table = Table(show_edge=False, pad_edge=False)
    for col in ("ring", "tenants", "state", "why / unlocked by"):
        table.add_column(col, overflow="fold")
    style = {"entered": "green", "may-enter": "cyan", "blocked": "red"}
    for s in states:
        why = s.reason
        if s.unlocked_by and s.state != "blocked":
            why = f"{why}\n{s.unlocked_by}"
        table.add_row(s.name, ", ".join(s.tenants), f"[{style[s.state]}]{s.state}[/]", why)
    console.print(table)
    may = [s.name for s in states if s.state == "may-enter"]
    console.print(f"May enter: {', '.join(may) if may else 'none'}", highlight=False)

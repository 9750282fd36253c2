"""CLI verbs of plantstage.data (registered on the main Typer app)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from plantstage.cli_support import console, env_or_url_param, path_param
from plantstage.errors import EXIT_USAGE

#: This module's commands; plantstage.cli registers them on the main app.
app = typer.Typer()


@app.command()
def refresh(
    path: Annotated[Path, typer.Argument(help="Spec file or folder.", callback=path_param)]
    = Path("."),
    from_: Annotated[str, typer.Option(
        "--from", help="Source: an environment of the spec or a database URL (read-only).",
        callback=env_or_url_param)]
    = "production",
    to: Annotated[str, typer.Option(
        "--to", help="Target: an environment of the spec or a database URL (rebuilt).",
        callback=env_or_url_param)]
    = "staging",
    allow_unclassified: Annotated[bool, typer.Option(
        help="Go on when columns are unclassified or new: tokenize sensitive-looking ones, "
        "keep the rest.")] = False,
    plan: Annotated[bool, typer.Option(
        "--plan", help="Only classify production's columns: print the full coverage and a "
        "rules block for every column that needs one; write nothing.")] = False,
):
    """Refresh staging from production: subset, mask in transit, bulk load, verify.

    Exit 0 = refreshed and verified; 2 = bad input, unreachable database, or the verification
    found a leak, a broken foreign key or a row-count mismatch.
    """
    from plantstage.data import refresh as _refresh

    if plan:
        _print_plan(path, from_)
        return
    tasks: dict[str, int] = {}
    with Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as bar:
        def progress(table: str, done: int, total: int) -> None:
            if table not in tasks:
                tasks[table] = bar.add_task(table, total=max(total, 1))
            bar.update(tasks[table], completed=done if total else 1)

        result = _refresh(path, source=from_, target=to, allow_unclassified=allow_unclassified,
                          progress=progress, echo=console.print)
    cov = Table(title="Masking coverage", show_lines=False)
    for h in ("table", "column", "rule", "status"):
        cov.add_column(h)
    for c in result.coverage:
        if c["status"] not in ("not-sensitive", "kept-by-wildcard"):
            cov.add_row(c["table"], c["column"], c["rule"], c["status"])
    console.print(cov)
    d = result.as_dict()
    rate = f"{d['rows_per_s']:,} rows/s" if d["rows_per_s"] else ""
    console.print(f"{result.rows:,} rows → {result.target} in {d['seconds']} s {rate}")
    console.print(f"leak scan: {sum(result.leaks.values())} of {result.leak_values:,} sensitive "
                  f"values found · foreign-key violations: "
                  f"{sum(result.fk_violations.values())} · row-count mismatches: "
                  f"{result.count_mismatches}")
    if result.leaks:
        console.print("leaks: " + "; ".join(
            f"{where} ({n}" + (f": {', '.join(result.leak_rows[where])}"
                               if result.leak_rows.get(where) else "") + ")"
            for where, n in sorted(result.leaks.items())), markup=False)
    for note in result.notes:  # e.g. a sequence whose value production's role may not read
        if note.startswith("warning: "):
            console.print(note, markup=False)
    if not result.ok:
        console.print("[red]verification failed: the target is marked 'failed'[/]")
        raise typer.Exit(EXIT_USAGE)
    console.print("[green]✔[/] refreshed and verified")


def _print_plan(path: Path, source: str) -> None:
    from plantstage.data.verbs import refresh_plan

    plans, block = refresh_plan(path, source=source)
    cov = Table(title="Masking coverage (plan)", show_lines=False)
    for h in ("table", "column", "rule", "status", "why"):
        cov.add_column(h)
    for p in plans:
        row = p.as_row()
        cov.add_row(row["table"], row["column"], row["rule"] if not p.failing else "—",
                    row["status"], row["reason"])
    console.print(cov)
    failing = sum(1 for p in plans if p.failing)
    console.print(f"{len(plans)} columns: {failing} need a rule")
    if block:
        console.print("Suggested rules (check each, then paste into the spec):")
        console.print(block, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)

"""CLI verbs of plantstage.parity (registered on the main Typer app)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from plantstage.cli_support import (
    console,
    db_url_param,
    out_dir_param,
    path_param,
    seconds_param,
)

#: This module's commands; plantstage.cli registers them on the main app.
app = typer.Typer()


@app.command()
def parity(
    path: Annotated[Path, typer.Argument(help="Spec file or folder.", callback=path_param)]
    = Path("."),
    between: Annotated[tuple[str, str], typer.Option(
        help="The two environments to compare.")] = ("production", "staging"),
    staging_db: Annotated[str | None, typer.Option(
        help="Read staging's database from this URL (default: its binding, or the schema "
             "the current release's migrations build).", callback=db_url_param)] = None,
    out: Annotated[Path | None, typer.Option(
        help="Folder for parity.json (default .plantstage/parity beside the spec).",
        callback=out_dir_param)] = None,
    broker_window: Annotated[float | None, typer.Option(
        min=0.1, max=60,
        help="Seconds to listen on each broker for topics in use (default: "
             "parity.broker.window).", callback=seconds_param)] = None,
    show_same: Annotated[bool, typer.Option("--all", help="Also list what is the same.")]
    = False,
    release: Annotated[str | None, typer.Option(
        help="The release staging runs ({artifact} in staging's config paths; default: the "
             "spec's current release).")] = None,
):
    """Compare production and staging layer by layer. Exit 0 = nothing blocks,
    1 = blocking drift or a blocking unknown (a layer that could not be read),
    2 = nothing could be compared / bad input."""
    from plantstage.parity import parity as _parity
    from plantstage.parity._render import print_report

    with console.status("parity: collecting …") as status:
        report, written = _parity(
            path, between=between, staging_db=staging_db, out=out, broker_window=broker_window,
            progress=lambda layer: status.update(f"parity: {layer} …"), release=release)
    print_report(report, console, show_same=show_same)
    console.print(f"  parity.json: {written}")
    # sys.exit, not typer.Exit: plantstage.cli.main runs Typer with standalone_mode=False,
    # which turns typer.Exit into a return value that main() does not pass on.
    sys.exit(report.exit_code)

"""The ``plantstage`` command: a thin Typer shell over :mod:`plantstage.verbs`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from plantstage import __version__, verbs
from plantstage.errors import PlantstageError
from plantstage.rehearsal.runner import RunOutcome

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Release rehearsals for manufacturing software: GO / NO-GO with evidence.")
console = Console()
err = Console(stderr=True)
_state = {"debug": False}

_ICONS = {"passed": ("✔", "green"), "failed": ("✘", "red"), "skipped": ("–", "yellow"),
          "interrupted": ("■", "yellow"), "running": ("…", "cyan"), "planned": ("·", "dim")}


class RichListener:
    """Live step list for a rehearsal."""

    def __init__(self, live: Live):
        self.live = live
        self.rows: dict[int, list] = {}
        self.fraction: float | None = None

    def _render(self) -> Table:
        t = Table(box=None, show_header=False, pad_edge=False)
        for seq in sorted(self.rows):
            title, status, seconds, error = self.rows[seq]
            icon, color = _ICONS.get(status, ("?", "white"))
            extra = ""
            if status == "running" and self.fraction is not None:
                extra = f" {self.fraction * 100:3.0f}%"
            line = Text.assemble((f" {icon} ", color), (title, "bold" if status == "running"
                                                          else ""), (extra, "cyan"))
            if seconds is not None:
                line.append(f"  {seconds:.1f} s", style="dim")
            if error and status != "passed":
                line.append(f"  {error}", style=color)
            t.add_row(line)
        return t

    def step_started(self, seq, step):
        self.fraction = None
        self.rows[seq] = [step.title or step.name, "running", None, None]
        self.live.update(self._render())

    def step_ended(self, seq, step, status, seconds, error):
        self.rows[seq] = [step.title or step.name, status, seconds, error]
        self.live.update(self._render())

    def progress(self, fraction):
        self.fraction = fraction
        self.live.update(self._render())


def _fail(exc: PlantstageError) -> None:
    err.print(Text(f"error: {exc.one_line()}", style="red"), soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def _summary(outcome: RunOutcome) -> None:
    e = outcome.evidence
    style = {"GO": "bold white on green", "PENDING": "bold black on yellow"}.get(
        outcome.verdict, "bold white on red")
    console.print()
    console.print(Text(f" {outcome.verdict} ", style=style),
                  f"{e['spec']['name']} {e['current']['name']} → {e['release']['name']}"
                  f" in {e['seconds']:.1f} s ({outcome.status})")
    for r in e["reasons"]:
        console.print(f"  • {r}", soft_wrap=True)
    console.print(f"  evidence: {outcome.run_dir / 'evidence.json'}")
    console.print(f"  report:   {outcome.run_dir / 'report.html'}")


def _run_with_live(fn, **kwargs) -> RunOutcome:
    with Live(console=console, refresh_per_second=8, transient=False) as live:
        return fn(listener=RichListener(live), **kwargs)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"plantstage {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[bool, typer.Option(
        "--version", help="Print the version.", is_eager=True, callback=_print_version)] = False,
):
    _state["debug"] = debug


@app.command()
def schema():
    """Print the JSON Schema of plantstage.yaml."""
    sys.stdout.write(verbs.schema() + "\n")


@app.command()
def check(path: Annotated[Path, typer.Argument(help="Spec file or folder.")] = Path(".")):
    """Validate a spec: exit 0 if it is valid, 2 with file:line and field if not."""
    loaded = verbs.check(path)
    s = loaded.spec
    console.print(f"[green]✔[/] {loaded.path}: {len(s.estate.components)} components, "
                  f"{len(s.releases)} releases, {len(s.gates)} gates")


@app.command()
def digest(path: Annotated[Path, typer.Argument(help="Artifact file or directory.")]):
    """Print the SHA-256 digest of a release artifact, as artifact.sha256 expects it."""
    from plantstage.artifacts import digest as _digest

    console.print(_digest(path))


@app.command()
def rehearse(
    path: Annotated[Path, typer.Argument(help="Spec file or folder.")] = Path("."),
    release: Annotated[str | None, typer.Option(help="Release to rehearse.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder for the evidence.")] = None,
    staging_db: Annotated[str | None, typer.Option(
        help="Staging database server URL; the run gets its own database there.")] = None,
    keep_staging: Annotated[bool, typer.Option(help="Keep the run's staging database.")] = False,
):
    """Rehearse a release end to end. Exit 0 = GO, 1 = NO-GO, 2 = could not run."""
    outcome = _run_with_live(verbs.rehearse, path=path, release=release, out=out,
                             staging_db=staging_db, keep_staging=keep_staging)
    _finish(outcome)


@app.command()
def demo(
    out: Annotated[Path | None, typer.Option(help="Run folder for the evidence.")] = None,
    release: Annotated[str | None, typer.Option(
        help="Release of the example to rehearse (default: its first new release).")] = None,
    staging_db: Annotated[str | None, typer.Option(help="Staging database server URL.")]
    = None,
):
    """Rehearse the bundled example (examples/sample-plant) on the embedded default."""
    outcome = _run_with_live(verbs.demo, out=out, release=release, staging_db=staging_db,
                             echo=console.print)
    _finish(outcome)


def _finish(outcome: RunOutcome) -> None:
    if outcome.status == "could-not-run" and outcome.error is not None:
        err.print(Text(f"error: {outcome.error.one_line()}", style="red"), soft_wrap=True)
        err.print(f"  (run folder: {outcome.run_dir})")
        raise typer.Exit(outcome.exit_code)
    _summary(outcome)
    raise typer.Exit(outcome.exit_code)


# Verbs that live with their feature register themselves on ``app``.
from plantstage.data import cli as _data_cli  # noqa: E402,F401
from plantstage.gates import cli as _gates_cli  # noqa: E402,F401
from plantstage.parity import cli as _parity_cli  # noqa: E402,F401
from plantstage.twins import cli as _twins_cli  # noqa: E402,F401
from plantstage.workload import cli as _workload_cli  # noqa: E402,F401


def main() -> None:
    """Entry point: translate expected errors into one line and an exit code.

    Click runs in standalone mode, so usage errors (an unknown option, a missing argument)
    print click's short message and exit 2, and ``typer.Exit`` codes pass through.
    """
    debug = "--debug" in sys.argv
    try:
        app(standalone_mode=True)
    except PlantstageError as exc:
        if debug:
            raise
        err.print(Text(f"error: {exc.one_line()}", style="red"), soft_wrap=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()

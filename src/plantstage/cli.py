"""The ``plantstage`` command: a thin Typer shell over :mod:`plantstage.verbs`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from plantstage import __version__, verbs
from plantstage.cli_support import (
    console,
    db_url_param,
    err,
    name_param,
    out_dir_param,
    path_param,
    print_error,
)
from plantstage.errors import EXIT_INTERRUPTED, EXIT_USAGE, PlantstageError, SpecProblems
from plantstage.rehearsal.runner import RunOutcome

try:  # Typer ships its own copy of click; its exceptions are the ones raised.
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older Typer uses click itself
    from click import exceptions as click_errors

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Release rehearsals for manufacturing software: GO / NO-GO with evidence.")
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


def _summary(outcome: RunOutcome) -> None:
    e = outcome.evidence
    style = {"GO": "bold white on green", "PENDING": "bold black on yellow",
             "INCONCLUSIVE": "bold black on yellow"}.get(
        outcome.verdict, "bold white on red")
    console.print()
    console.print(Text(f" {outcome.verdict} ", style=style),
                  f"{e['spec']['name']} {e['current']['name']} → {e['release']['name']}"
                  f" in {e['seconds']:.1f} s ({outcome.status})")
    for r in e["reasons"]:
        console.print(f"  • {r}", soft_wrap=True)
    console.print(f"  evidence: {outcome.run_dir / 'evidence.json'}")
    console.print(f"  report:   {outcome.run_dir / 'report.html'}")


class PlainListener:
    """Piped output (a CI log, tee): one line per step as it ends, printed at once — a live
    display would only be drawn when the run is over."""

    def step_started(self, seq, step):
        pass

    def step_ended(self, seq, step, status, seconds, error):
        icon, color = _ICONS.get(status, ("?", "white"))
        line = Text.assemble((f" {icon} ", color), step.title or step.name,
                             (f"  {seconds:.1f} s", "dim"))
        if error and status != "passed":
            line.append(f"  {error}", style=color)
        console.print(line, soft_wrap=True)

    def progress(self, fraction):
        pass


def _run_with_live(fn, **kwargs) -> RunOutcome:
    if not console.is_terminal:
        return fn(listener=PlainListener(), **kwargs)
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


SpecPath = Annotated[Path, typer.Argument(help="Spec file or folder.", callback=path_param)]
OutDir = Annotated[Path | None, typer.Option(help="Run folder for the evidence.",
                                             callback=out_dir_param)]


@app.command()
def check(path: SpecPath = Path(".")):
    """Validate a spec: exit 0 if it is valid; 2 with every problem, one line each, if not."""
    try:
        loaded = verbs.check(path)
    except SpecProblems as exc:
        for problem in exc.problems:
            print_error(problem.one_line())
        raise typer.Exit(exc.exit_code) from None
    s = loaded.spec
    console.print(f"[green]✔[/] {loaded.path}: {len(s.estate.components)} components, "
                  f"{len(s.releases)} releases, {len(s.gates)} gates", soft_wrap=True)
    catalogue = verbs.signal_catalogue(loaded)
    console.print(f"Signals a rehearsal of this spec records ({len(catalogue)}; gates may "
                  "name these):")
    for name, meaning in catalogue:
        console.print(f"  {name}  — {meaning}", markup=False, highlight=False, soft_wrap=True)


@app.command()
def digest(path: Annotated[Path, typer.Argument(help="Artifact file or directory.",
                                                callback=path_param)]):
    """Print the SHA-256 digest of a release artifact, as artifact.sha256 expects it."""
    from plantstage.artifacts import digest as _digest

    console.print(_digest(path))


@app.command()
def rehearse(
    path: SpecPath = Path("."),
    release: Annotated[str | None, typer.Option(help="Release to rehearse.",
                                                callback=name_param)] = None,
    out: OutDir = None,
    staging_db: Annotated[str | None, typer.Option(
        help="Staging database server URL; the run gets its own database there.",
        callback=db_url_param)] = None,
    keep_staging: Annotated[bool, typer.Option(help="Keep the run's staging database.")] = False,
    ring: Annotated[str | None, typer.Option(
        help="Rehearse one release ring's tenants (spec 'rings:'); refused unless the previous "
        "ring has a verified GO for the same artifact.", callback=name_param)] = None,
):
    """Rehearse a release end to end.

    Exit 0 = GO, 1 = NO-GO, 2 = could not run, 3 = PENDING (signoffs missing),
    5 = INCONCLUSIVE (a key gate could not decide), 130 = interrupted.
    """
    outcome = _run_with_live(verbs.rehearse, path=path, release=release, out=out,
                             staging_db=staging_db, keep_staging=keep_staging, ring=ring)
    _finish(outcome)


@app.command()
def demo(
    out: OutDir = None,
    release: Annotated[str | None, typer.Option(
        help="Release of the example to rehearse (default: its first new release).",
        callback=name_param)] = None,
    staging_db: Annotated[str | None, typer.Option(help="Staging database server URL.",
                                                   callback=db_url_param)] = None,
):
    """Rehearse the bundled example (examples/sample-plant) on the embedded default."""
    outcome = _run_with_live(verbs.demo, out=out, release=release, staging_db=staging_db,
                             echo=console.print)
    _finish(outcome)


def _finish(outcome: RunOutcome) -> None:
    if outcome.status == "could-not-run" and outcome.error is not None:
        print_error(outcome.error.one_line())
        err.print(f"  (run folder: {outcome.run_dir})", highlight=False)
        raise typer.Exit(outcome.exit_code)
    _summary(outcome)
    raise typer.Exit(outcome.exit_code)


def _register_feature_commands() -> None:
    """Feature CLI modules declare their commands on their own Typer; they join the app here.

    They import :mod:`plantstage.cli_support`, never this module, so there is no import circle.
    """
    from plantstage import rings_cli
    from plantstage.data import cli as data_cli
    from plantstage.evidence import cli as evidence_cli
    from plantstage.parity import cli as parity_cli
    from plantstage.serve import cli as serve_cli
    from plantstage.twins import cli as twins_cli
    from plantstage.workload import cli as workload_cli

    for module in (data_cli, evidence_cli, parity_cli, twins_cli, workload_cli, rings_cli,
                   serve_cli):
        app.registered_commands.extend(module.app.registered_commands)


_register_feature_commands()


def _usage_line(exc: click_errors.ClickException) -> str:
    """click's message as one line, with a hint naming the command's help."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "plantstage"
    if "(hint:" in message:
        return message
    return f"{message} (hint: see `{where} --help`)"


#: SQLite's words for a file system that is full or read-only (the ledger, the signal store).
_STORAGE_WORDS = ("disk is full", "readonly database", "unable to open database file",
                  "disk I/O error")


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return the exit code; expected errors print one line.

    Usage errors (an unknown option, a bad value) name the option; a :class:`PlantstageError`
    prints its one line; an operating-system error (a read-only or full disk, a name too long)
    names the file. Anything else is a plantstage bug: one line, or the traceback with
    ``--debug``.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args
    _state["debug"] = debug
    try:
        rc = app(args=args, prog_name="plantstage", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:
        console.print(exc.ctx.get_help() if exc.ctx is not None else "", highlight=False)
        return EXIT_USAGE
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print_error("interrupted")
        return EXIT_INTERRUPTED
    except click_errors.ClickException as exc:
        print_error(_usage_line(exc))
        return EXIT_USAGE
    except PlantstageError as exc:
        if debug:
            raise
        print_error(exc.one_line())
        return exc.exit_code
    except KeyboardInterrupt:
        print_error("interrupted")
        return EXIT_INTERRUPTED
    except OSError as exc:
        if debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print_error(f"{where}{exc.strerror or exc} (hint: check the path, its permissions and "
                    "the free space)")
        return EXIT_USAGE
    except Exception as exc:
        if debug:
            raise
        text = " ".join(str(exc).split())[:300]
        if any(word in text for word in _STORAGE_WORDS):  # SQLite on a full/read-only disk
            print_error(f"{text} (hint: free some space, or choose a writable --out on "
                        "another disk)")
            return EXIT_USAGE
        print_error(f"internal error: {type(exc).__name__}: {text} (hint: rerun with --debug "
                    "for the traceback and report it)")
        return EXIT_USAGE
    return rc if isinstance(rc, int) else 0


def main() -> None:
    """Entry point of the ``plantstage`` command."""
    sys.exit(run())


if __name__ == "__main__":  # pragma: no cover
    main()

"""CLI verbs of plantstage.workload (registered on the main Typer app): load, signals."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table

from plantstage.cli_support import (
    console,
    db_url_param,
    http_url_param,
    mqtt_url_param,
    out_dir_param,
    path_param,
    positive_param,
    seconds_param,
)
from plantstage.workload.verbs import export_signals
from plantstage.workload.verbs import load as load_verb

#: This module's commands; plantstage.cli registers them on the main app.
app = typer.Typer()


def _table(snap: dict[str, Any]) -> Table:
    queues = snap.get("queues") or {}
    depth = "".join(f" · {name} {queues[key]:.0f}" for key, name in
                    (("broker.queue_depth", "broker queue"), ("twins.mes.backlog", "MES backlog"))
                    if key in queues)
    t = Table(title=f"{snap['phase']}: {snap['elapsed']:.1f} / {snap['duration']:.0f} s · "
              f"{snap['in_flight']} in flight{depth}", title_justify="left")
    for col in ("flow", "iterations", "per s", "errors", "dropped", "p50 ms", "p95 ms",
                "p99 ms"):
        t.add_column(col, justify="left" if col == "flow" else "right")
    for flow, s in sorted(snap["flows"].items()):
        t.add_row(flow, f"{s['count']:.0f}", f"{s['rate']:.1f}",
                  f"[red]{s['errors']:.0f}[/]" if s["errors"] else "0",
                  f"[yellow]{s['dropped']:.0f}[/]" if s["dropped"] else "0",
                  *(f"{s[k]:.1f}" if k in s else "—" for k in ("p50_ms", "p95_ms", "p99_ms")))
    return t


def _number(v: float | None, unit: str) -> str:
    if v is None:
        return "—"
    text = f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}"
    return f"{text} {unit}".rstrip()


def _monitors(rows: list[dict[str, Any]]) -> Table:
    """Business transaction monitors: latest value, the phase's max, failed samples, tenants."""
    t = Table(title="monitors", title_justify="left")
    for col in ("monitor", "latest", "max", "errors", "per tenant"):
        t.add_column(col, justify="left" if col in ("monitor", "per tenant") else "right")
    for r in rows:
        tenants = " · ".join(f"{k} {_number(v, '')}" for k, v in sorted(r["tenants"].items()))
        t.add_row(r["name"], _number(r["value"], r["unit"]), _number(r["max"], r["unit"]),
                  f"[red]{r['errors']}[/]" if r["errors"] else "0", tenants)
    return t


def _view(snap: dict[str, Any]) -> RenderableType:
    """The live view: the flows, and the monitors' latest values when the spec has some."""
    if snap.get("monitors"):
        return Group(_table(snap), _monitors(snap["monitors"]))
    return _table(snap)


@app.command()
def load(
    path: Annotated[Path, typer.Argument(help="Spec file or folder.", callback=path_param)]
    = Path("."),
    target: Annotated[str | None, typer.Option(
        help="Base URL of the running app (default: the staging service's url).",
        callback=http_url_param)] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds (default: the spec's).",
                                                    callback=seconds_param)]
    = None,
    rate: Annotated[float | None, typer.Option(
        help="Total iterations started per second (scales every flow).",
        callback=positive_param)] = None,
    tenant: Annotated[list[str] | None, typer.Option(help="Drive only this tenant "
                                                     "(repeatable).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Folder for signals.sqlite, signals.csv and signals.om.txt.",
        callback=out_dir_param)] = None,
    metrics_port: Annotated[int | None, typer.Option(
        help="Serve the signals for Prometheus on this port while running.",
        min=1, max=65535)] = None,
    database_url: Annotated[str | None, typer.Option(
        help="The app's database, for wait-until-visible steps (opened read-only).",
        callback=db_url_param)] = None,
    mqtt: Annotated[str | None, typer.Option(help="MQTT broker URL for MQTT steps.",
                                              callback=mqtt_url_param)] = None,
):
    """Drive the spec's workload against a running app with a live view.

    Exit 0 = every iteration succeeded, 1 = errors or dropped iterations, 2 = could not run.
    """
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        def tick(snap: dict[str, Any]) -> None:
            live.update(_view(snap))

        outcome = load_verb(path, target=target, duration=duration, rate=rate, tenants=tenant,
                            out=out, metrics_port=metrics_port, database_url=database_url,
                            mqtt_url=mqtt, on_tick=tick)
    s = outcome.result.signals()
    kinds = {k.rsplit(".", 1)[-1]: int(v) for k, v in s.items() if ".errors." in k}
    if kinds:
        console.print("errors by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    if outcome.monitors_skipped:
        console.print(f"monitors not sampled: {outcome.monitors_skipped} (give --database-url)")
    for name, m in outcome.monitors.items():
        if "error" in m:
            console.print(f"[yellow]monitor {name}: {m.get('errors', 0):.0f} failed samples, "
                          f"first: {m['error']}[/]")
    if outcome.out is not None:
        console.print(f"signals: {outcome.out / 'signals.csv'}, {outcome.out / 'signals.om.txt'}")
    raise typer.Exit(outcome.exit_code)


@app.command()
def signals(
    run: Annotated[Path, typer.Argument(help="Run folder (or its signals.sqlite).",
                                        callback=path_param)],
    format: Annotated[str, typer.Option("--format", help="openmetrics or csv.")]
    = "openmetrics",
):
    """Export a recorded run's signals as OpenMetrics text or CSV (to stdout)."""
    sys.stdout.write(export_signals(run, format))

"""CLI verbs of plantstage.twins (registered on the main Typer app)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from plantstage.cli_support import (
    console,
    mqtt_url_param,
    out_file_param,
    path_param,
    seconds_param,
    source_url_param,
)

#: This module's commands; plantstage.cli registers them on the main app.
app = typer.Typer()


@app.command()
def twins(
    path: Annotated[Path, typer.Argument(help="Spec file or folder.", callback=path_param)]
    = Path("."),
    broker: Annotated[str | None, typer.Option(
        help="MQTT broker URL (default: $PLANTSTAGE_MQTT_URL, else an embedded broker).",
        callback=mqtt_url_param)]
    = None,
    only: Annotated[list[str] | None, typer.Option(
        help="Only this component's twin (repeatable).")] = None,
    duration: Annotated[float | None, typer.Option(
        help="Stop after this many seconds (default: until Ctrl-C).",
        callback=seconds_param)] = None,
):
    """Run the twins the staging bindings declare, standalone, and print where each listens.
    Exit 0 = stopped cleanly, 1 = a twin failed, 2 = bad input (unknown kind, port in use …)."""
    from plantstage.twins.verbs import run_twins

    def started(ts) -> None:  # noqa: ANN001
        t = Table(title="twins", box=None)
        for col in ("component", "kind", "protocol", "where"):
            t.add_column(col)
        if ts.broker is not None:
            t.add_row("(broker)", ts.broker.kind, "mqtt", ts.broker.url)
        for name, twin in ts.twins.items():
            for proto, url in twin.endpoints().items():
                t.add_row(name, twin.kind, proto, url)
        console.print(t)
        console.print("running — Ctrl-C stops", style="dim")

    ts = run_twins(path, broker=broker, only=only, duration=duration, on_started=started)
    summary = Table(title="when stopped", box=None)
    for col in ("component", "state", "faults injected"):
        summary.add_column(col)
    counts = ts.log.counts()
    for name, twin in ts.twins.items():
        summary.add_row(name, ", ".join(f"{k}={v}" for k, v in twin.state().items()),
                        ", ".join(f"{k}={v}" for k, v in counts.get(name, {}).items()) or "—")
    console.print(summary)
    failures = ts.failures()
    for name, why in failures.items():
        console.print(f"twin {name} failed: {why}", style="red")
    raise typer.Exit(1 if failures else 0)


@app.command()
def record(
    source: Annotated[str, typer.Argument(help="mqtt://HOST:PORT or http://HOST:PORT",
                                          callback=source_url_param)],
    out: Annotated[Path, typer.Option(help="Capture file to write (JSON lines).",
                                      callback=out_file_param)],
    topic: Annotated[list[str] | None, typer.Option(
        help="MQTT topic filter to record (repeatable; default '#').")] = None,
    listen: Annotated[int, typer.Option(help="HTTP: port of the recording proxy.",
                                        min=0, max=65535)] = 0,
    duration: Annotated[float | None, typer.Option(help="Stop after seconds.",
                                                    callback=seconds_param)] = None,
    count: Annotated[int | None, typer.Option(help="MQTT: stop after this many.", min=1)]
    = None,
):
    """Record real traffic for a replay twin: MQTT by subscribing, HTTP through a proxy."""
    from plantstage.twins.verbs import record as _record

    n = _record(source, out, topics=topic, listen=listen, duration=duration, count=count,
                on_ready=lambda where: console.print(f"recording {source} via {where}"))
    console.print(f"{n} records → {out}")

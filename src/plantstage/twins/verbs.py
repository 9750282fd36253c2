"""Library verbs behind ``plantstage twins`` and ``plantstage record``."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from plantstage.errors import PlantstageError
from plantstage.spec.loader import load_spec
from plantstage.twins import TwinSet, plan_twins, start_twins
from plantstage.twins.faults import FaultLog


def run_twins(path: str | Path, *, broker: str | None = None, only: list[str] | None = None,
              duration: float | None = None,
              on_started: Callable[[TwinSet], None] | None = None) -> TwinSet:
    """Start the twins a spec's staging bindings declare, standalone, until ``duration``
    elapses or SIGINT/SIGTERM; return the (stopped) set for its state and fault timeline."""
    loaded = load_spec(path)
    planned = plan_twins(loaded)
    if only:
        unknown = sorted(set(only) - {p.component for p in planned})
        if unknown:
            raise PlantstageError(f"no twin for component '{unknown[0]}'",
                                  where=f"{loaded.path} (environments.staging.bindings)",
                                  hint="components with twins: " +
                                       (", ".join(p.component for p in planned) or "none"))
        planned = [p for p in planned if p.component in only]
    if not planned:
        raise PlantstageError("no staging binding declares a twin", where=str(loaded.path),
                              hint="add twin: {kind: …} to a simulated external component")
    ts = start_twins(loaded, planned, broker_url=broker, log=FaultLog(t0=time.time()))
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGTERM,):
            previous[s] = signal.signal(s, lambda *_: stop.set())
    try:
        if on_started is not None:
            on_started(ts)
        deadline = None if duration is None else time.monotonic() + duration
        while not stop.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            stop.wait(0.2 if left is None else min(0.2, left))
            if ts.failures():
                break
    except KeyboardInterrupt:
        pass
    finally:
        ts.stop()
        for s, h in previous.items():
            signal.signal(s, h)
    return ts


def record(source: str, out: Path, *, topics: list[str] | None = None, listen: int = 0,
           duration: float | None = None, count: int | None = None,
           on_ready: Callable[[str], None] | None = None) -> int:
    """Record real traffic to ``out``: MQTT topics by subscribing (``mqtt://…``), HTTP through
    a recording proxy in front of ``http://…`` on ``127.0.0.1:listen``. Returns records."""
    from plantstage.twins.record import record_http, record_mqtt

    if source.startswith(("mqtt://", "tcp://")):
        ready = threading.Event()
        if on_ready is not None:
            threading.Thread(target=lambda: ready.wait(10) and on_ready(source),
                             daemon=True).start()
        return record_mqtt(source, topics or ["#"], out, duration=duration, count=count,
                           ready=ready)
    if source.startswith(("http://", "https://")):
        return record_http(source, out, listen, duration=duration,
                           on_ready=(lambda port: on_ready(f"http://127.0.0.1:{port}"))
                           if on_ready else None)
    raise PlantstageError(f"cannot record from {source!r}", where=source,
                          hint="give mqtt://HOST:PORT or http://HOST:PORT")

"""An open-model load engine: iterations start on a schedule, not when the last one ended.

Latency is measured from each iteration's *intended* start, so a stalled server shows up in the
percentiles instead of silently slowing the clients (coordinated omission). Iterations that
cannot start because the concurrency limit is reached are counted as dropped, never hidden
(as k6's arrival-rate executors do). Latencies go into HdrHistogram (microseconds, 3
significant digits). A phase always ends at its duration plus at most ``grace`` seconds:
iterations still running then are cancelled and counted as ``unfinished`` errors.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

import httpx
from hdrh.histogram import HdrHistogram

from plantstage.errors import PlantstageError
from plantstage.spec.workload import Workload
from plantstage.workload.arrivals import expected_iterations, schedule
from plantstage.workload.flows import FLOWS, FlowError, TenantData, load_tenant_data
from plantstage.workload.http import HttpClient
from plantstage.workload.plan import Lane, resolve_flow
from plantstage.workload.steps import Iteration, RunResources, _set

_STATS = ("count", "rate", "errors", "dropped", "p50_ms", "p95_ms", "p99_ms", "max_ms")


def _histogram() -> HdrHistogram:
    return HdrHistogram(1, 3_600_000_000, 3)  # 1 µs … 1 h


def _us(seconds: float) -> int:
    return max(1, min(3_600_000_000, int(seconds * 1e6)))


def _percentiles(h: HdrHistogram, prefix: str = "") -> dict[str, float]:
    if not h.get_total_count():
        return {}
    # One pass over the counts for all three (hdrh walks them in Python per percentile).
    v = h.get_percentile_to_value_dict([50, 95, 99])
    return {f"{prefix}p50_ms": v[50] / 1000, f"{prefix}p95_ms": v[95] / 1000,
            f"{prefix}p99_ms": v[99] / 1000, f"{prefix}max_ms": h.get_max_value() / 1000}


@dataclass
class FlowStats:
    """What one flow (of one archetype, or all of them merged) did in a phase."""

    histogram: HdrHistogram = field(default_factory=_histogram)
    count: int = 0
    errors: Counter = field(default_factory=Counter)
    dropped: int = 0
    extra: Counter = field(default_factory=Counter)
    steps: dict[str, HdrHistogram] = field(default_factory=dict)
    e2e: HdrHistogram | None = None

    def record_step(self, name: str, seconds: float) -> None:
        h = self.steps.get(name)
        if h is None:
            h = self.steps[name] = _histogram()
        h.record_value(_us(seconds))

    def record_e2e(self, seconds: float) -> None:
        if self.e2e is None:
            self.e2e = _histogram()
        self.e2e.record_value(_us(seconds))

    def merge(self, other: FlowStats) -> None:
        self.histogram.add(other.histogram)
        self.count += other.count
        self.errors.update(other.errors)
        self.dropped += other.dropped
        self.extra.update(other.extra)
        for name, h in other.steps.items():
            self.steps.setdefault(name, _histogram()).add(h)
        if other.e2e is not None:
            if self.e2e is None:
                self.e2e = _histogram()
            self.e2e.add(other.e2e)

    def summary(self, seconds: float) -> dict[str, float]:
        out: dict[str, float] = {
            "count": self.count,
            "errors": sum(self.errors.values()),
            "dropped": self.dropped,
            "rate": self.count / seconds if seconds else 0.0,
        }
        out.update(_percentiles(self.histogram))
        if self.e2e is not None:
            out.update(_percentiles(self.e2e, "e2e_"))
        for name, h in sorted(self.steps.items()):
            out.update(_percentiles(h, f"step.{name}."))
        out.update({k: float(v) for k, v in self.extra.items()})
        return out


@dataclass
class _Window:
    """Per-second counters for the time series (reset on every sample)."""

    count: int = 0
    errors: int = 0
    histogram: HdrHistogram = field(default_factory=_histogram)


@dataclass
class PhaseResult:
    name: str
    seconds: float
    #: (archetype, flow label) → stats
    lanes: dict[tuple[str, str], FlowStats]
    target: str = ""
    _signals: dict[str, float] | None = field(default=None, repr=False)

    @cached_property
    def flows(self) -> dict[str, FlowStats]:
        """Per flow label, merged over archetypes and tenants."""
        out: dict[str, FlowStats] = {}
        for (_arch, label), st in sorted(self.lanes.items()):
            out.setdefault(label, FlowStats()).merge(st)
        return out

    @property
    def archetypes(self) -> list[str]:
        return sorted({a for a, _ in self.lanes})

    def signals(self) -> dict[str, float]:
        """Flat signal names.

        ``workload.<phase>.<flow>.<stat>`` (merged over tenants), with ``.step.<step>.<stat>``
        and ``e2e_*`` where the flow has them; ``workload.<phase>.archetype.<a>.<flow>.<stat>``
        per archetype; phase totals, ``errors.<kind>`` and ``business.<counter>``.
        """
        if self._signals is not None:
            return dict(self._signals)
        p = f"workload.{self.name}"
        out: dict[str, float] = {}
        total = errors = dropped = 0
        kinds: Counter = Counter()
        business: Counter = Counter()
        for flow, st in self.flows.items():
            for k, v in st.summary(self.seconds).items():
                out[f"{p}.{flow}.{k}"] = float(v)
            total += st.count
            errors += sum(st.errors.values())
            dropped += st.dropped
            kinds.update(st.errors)
            business.update(st.extra)
        per_arch: Counter = Counter()
        for (arch, label), st in self.lanes.items():
            per_arch[arch] += st.count
            summary = st.summary(self.seconds)
            for k in ("count", "errors", "dropped", "rate", "p95_ms", "p99_ms"):
                v = summary.get(k)
                if v is not None:
                    out[f"{p}.archetype.{arch}.{label}.{k}"] = float(v)
        for arch, n in per_arch.items():
            out[f"{p}.archetype.{arch}.iterations"] = float(n)
        out[f"{p}.archetypes"] = float(len(per_arch))
        out[f"{p}.iterations"] = float(total)
        out[f"{p}.errors"] = float(errors)
        out[f"{p}.dropped"] = float(dropped)
        out[f"{p}.error_rate"] = errors / total if total else 0.0
        out[f"{p}.seconds"] = self.seconds
        for kind, n in kinds.items():
            out[f"{p}.errors.{kind}"] = float(n)
        for counter, n in business.items():
            out[f"{p}.business.{counter}"] = float(n)
        self._signals = out
        return dict(out)

    def error_kinds(self) -> dict[str, dict[str, int]]:
        return {f: dict(s.errors) for f, s in self.flows.items() if s.errors}


def error_kind(exc: BaseException) -> str:
    """A short, stable name for what went wrong, so errors are counted by kind."""
    import aiohttp

    if isinstance(exc, FlowError):
        return exc.kind
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ("connection_refused" if isinstance(exc.os_error, ConnectionRefusedError)
                else "connect_error")
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, aiohttp.ServerDisconnectedError | httpx.RemoteProtocolError):
        return "disconnected"
    if isinstance(exc, httpx.ConnectError):
        return "connection_refused"
    if isinstance(exc, aiohttp.ClientError | httpx.HTTPError):
        return type(exc).__name__
    return f"exception_{type(exc).__name__}"  # a bug in a user flow: counted, never fatal


async def preflight(base_url: str, timeout: float = 3.0) -> None:
    """Refuse to start against a target that does not accept connections."""
    u = urlsplit(base_url)
    host, port = u.hostname or "127.0.0.1", u.port or (443 if u.scheme == "https" else 80)
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except OSError as exc:  # TimeoutError is an OSError
        why = "timed out" if isinstance(exc, TimeoutError) else (
            exc.strerror or str(exc)).lower()
        raise PlantstageError(f"the workload target does not accept connections ({why})",
                              where=base_url, hint="start the app, or give --target URL") from None
    writer.close()


def lanes_for(workload: Workload, tenants: list[str]) -> list[Lane]:
    """Lanes of a workload's plain ``flows`` for ``tenants`` (no archetypes, built-ins only)."""
    return [Lane(t, "all", wf, resolve_flow(wf.flow, None, f"workload.flows[{j}]"),
                 wf.arrival or workload.arrival)
            for t in tenants for j, wf in enumerate(workload.flows)]


Tick = Callable[[dict[str, Any]], None]


async def _run(base_url: str, workload: Workload, lanes: list[Lane], phase: str,
               duration: float, progress=None, *, store=None, resources: RunResources | None = None,
               on_tick: Tick | None = None, rate: float | None = None) -> PhaseResult:
    await preflight(base_url)
    scale = 1.0
    if rate is not None:
        base = sum(expected_iterations(ln.arrival, ln.flow.rate, 1.0) for ln in lanes)
        scale = rate / base if base else 1.0
    resources = resources or RunResources()
    token = secrets.token_hex(2)  # refs stay unique when a standalone run is repeated
    client = HttpClient(base_url, timeout=workload.request_timeout,
                        connections=workload.concurrency)
    try:
        data: dict[str, TenantData] = {}
        needs_data = any(ln.fn in FLOWS.values() for ln in lanes)
        for t in sorted({ln.tenant for ln in lanes}):
            try:
                data[t] = await load_tenant_data(client, t) if needs_data else TenantData(t)
            except FlowError as exc:
                raise PlantstageError(f"cannot read tenant '{t}' master data ({exc.kind})",
                                      where=f"{base_url}/api/{t}",
                                      hint="is this the app the workload is for?") from None
            except Exception as exc:
                raise PlantstageError(f"cannot read tenant '{t}' master data: "
                                      f"{error_kind(exc)}", where=base_url) from None
        stats = {(ln.archetype, ln.label): FlowStats() for ln in lanes}
        windows = {ln.label: _Window() for ln in lanes}
        inflight: set[asyncio.Task] = set()
        loop_start = time.perf_counter()
        start = loop_start + 0.05  # a moment for every dispatcher to be ready
        end = start + duration

        async def iteration(lane: Lane, st: FlowStats, win: _Window, rng: random.Random,
                            intended: float, ref: str) -> None:
            _set(Iteration(phase, lane.label, lane.tenant, lane.archetype, resources,
                           st.record_step, st.record_e2e))
            failed = None
            try:
                extra = await lane.fn(client, data[lane.tenant], lane.flow, rng, ref)
                for k, v in (extra or {}).items():
                    st.extra[k] += v
            except asyncio.CancelledError:
                failed = "unfinished"
            except Exception as exc:  # noqa: BLE001 - every failure is counted by kind
                failed = error_kind(exc)
            latency = _us(time.perf_counter() - intended)
            st.count += 1
            st.histogram.record_value(latency)
            win.count += 1
            win.histogram.record_value(latency)
            if failed is not None:
                st.errors[failed] += 1
                win.errors += 1

        async def dispatch(index: int, lane: Lane) -> None:
            st, win = stats[(lane.archetype, lane.label)], windows[lane.label]
            rng = random.Random(f"{workload.seed}:{phase}:{index}")
            prefix = f"{phase[:1]}{token}-{index}-"
            for k, offset in enumerate(schedule(lane.arrival, lane.flow.rate * scale,
                                                duration, rng)):
                intended = start + offset
                delay = intended - time.perf_counter()
                # Yield even when behind schedule, so started iterations get to run.
                await asyncio.sleep(delay if delay > 0 else 0)
                if len(inflight) >= workload.concurrency:
                    st.dropped += 1
                    continue
                task = asyncio.create_task(iteration(lane, st, win, rng, intended,
                                                     f"{prefix}{k}"))
                inflight.add(task)
                task.add_done_callback(inflight.discard)

        def snapshot() -> dict[str, Any]:
            now = time.perf_counter()
            merged: dict[str, FlowStats] = {}
            for (_a, label), st in stats.items():
                merged.setdefault(label, FlowStats()).merge(st)
            return {"phase": phase, "elapsed": max(0.0, now - start), "duration": duration,
                    "in_flight": len(inflight),
                    "flows": {k: v.summary(max(1e-9, now - start)) for k, v in merged.items()}}

        async def ticker() -> None:
            last = time.perf_counter()
            n = 0
            while True:
                await asyncio.sleep(0.5)
                n += 1
                now = time.perf_counter()
                if progress is not None:
                    progress(min(1.0, max(0.0, (now - start) / duration)))
                if on_tick is not None:
                    on_tick(snapshot())
                if store is not None and n % 2 == 0:
                    dt = now - last
                    last = now
                    points = {f"workload.{phase}.in_flight": float(len(inflight))}
                    for label, win in windows.items():
                        p = f"workload.{phase}.{label}"
                        points[f"{p}.throughput"] = win.count / dt
                        points[f"{p}.errors_per_s"] = win.errors / dt
                        if win.count:
                            points[f"{p}.p95_ms"] = _percentiles(win.histogram)["p95_ms"]
                        windows[label] = _Window()
                    store.points(points)

        tick = asyncio.create_task(ticker())
        try:
            await asyncio.gather(*(dispatch(i, ln) for i, ln in enumerate(lanes)))
            await asyncio.sleep(max(0.0, end - time.perf_counter()))
            if inflight:
                _done, pending = await asyncio.wait(set(inflight), timeout=workload.grace)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending, timeout=1.0)
        finally:
            tick.cancel()
            for task in list(inflight):
                task.cancel()
        seconds = time.perf_counter() - start
        if on_tick is not None:
            on_tick(snapshot())
    finally:
        await client.aclose()
        await resources.aclose()
    result = PhaseResult(phase, seconds, stats, base_url)
    if store is not None:
        store.set_many(result.signals())
    return result


def run_phase(base_url: str, workload: Workload, tenants: list[str], phase: str,
              duration: float | None = None, progress=None, *, lanes: list[Lane] | None = None,
              store=None, database_url: str | None = None, mqtt_url: str | None = None,
              twins: dict[str, str] | None = None, on_tick: Tick | None = None,
              rate: float | None = None) -> PhaseResult:
    """Drive the workload against ``base_url`` for one phase; return its stats.

    ``lanes`` (from :func:`plantstage.workload.plan.build_lanes`) carry the archetype mixes;
    without them the workload's plain ``flows`` run for each of ``tenants``. ``store`` receives
    the time series while the phase runs and the phase's signals at its end. ``rate`` scales
    every lane so that the iterations started per second total ``rate``.
    """
    lanes = lanes if lanes is not None else lanes_for(workload, tenants)
    resources = RunResources(database_url=database_url, mqtt_url=mqtt_url, twins=twins or {})
    return asyncio.run(_run(base_url, workload, lanes, phase,
                            duration if duration is not None else workload.duration, progress,
                            store=store, resources=resources, on_tick=on_tick, rate=rate))


def describe(result: PhaseResult) -> dict[str, Any]:
    """A compact summary for the step's results in the ledger and report."""
    return {
        "seconds": round(result.seconds, 2),
        "archetypes": result.archetypes,
        "flows": {f: {k: round(v, 2) for k, v in s.summary(result.seconds).items()
                      if k in _STATS or k.startswith("e2e_")}
                  for f, s in result.flows.items()},
        "errors": result.error_kinds(),
    }

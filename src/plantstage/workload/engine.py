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
import os
import random
import secrets
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from time import perf_counter
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from hdrh.histogram import HdrHistogram

from plantstage import telemetry
from plantstage.errors import Interrupted, PlantstageError
from plantstage.spec.workload import Arrival, Workload
from plantstage.workload.arrivals import expected_iterations, schedule
from plantstage.workload.context import FlowContext, FlowError, LaneState, Tenant
from plantstage.workload.http import HttpClient, ServerDisconnected
from plantstage.workload.http import ProtocolError as HttpProtocolError
from plantstage.workload.plan import Lane, resolve_flow
from plantstage.workload.queues import QueueProbe, QueueTrack
from plantstage.workload.resources import RunResources
from plantstage.workload.tenant_data import load_tenant_data

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
    #: ctx.signal() levels: the highest value recorded
    gauges: dict[str, float] = field(default_factory=dict)
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
        for name, v in other.gauges.items():
            if name not in self.gauges or v > self.gauges[name]:
                self.gauges[name] = v
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
        out.update(self.gauges)
        return out


class _Window:
    """Per-second counters for the time series (reset on every sample).

    Latencies are kept as a plain list (one append per iteration, the cheapest record there is)
    and turned into the window's p95 once a second; the phase's HdrHistogram gets every value.
    """

    __slots__ = ("count", "errors", "latencies")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.latencies: list[int] = []

    def reset(self) -> None:
        # Reset in place: running iterations hold a reference to this window.
        self.count = 0
        self.errors = 0
        self.latencies = []

    def p95_ms(self) -> float:
        lat = sorted(self.latencies)
        return lat[min(len(lat) - 1, int(len(lat) * 0.95))] / 1000


@dataclass
class PhaseResult:
    name: str
    seconds: float
    #: (archetype, flow label) → stats
    lanes: dict[tuple[str, str], FlowStats]
    target: str = ""
    #: Queue-depth summaries (``workload.<phase>.queue_depth.max`` …), see workload/queues.py.
    queues: dict[str, float] = field(default_factory=dict)
    #: The paired phase: one result per version (``old``, ``new``), named ``<phase>.<version>``.
    versions: dict[str, PhaseResult] = field(default_factory=dict)
    #: The paired phase: the version of each block, in order, and a block's length.
    blocks: list[str] = field(default_factory=list)
    block_seconds: float = 0.0
    #: Counter deltas of the meters (``cost.<phase>.<counter>`` …).
    counters: dict[str, float] = field(default_factory=dict)
    #: Which version a single-target phase drove (``old`` or ``new``; its samples' version).
    version: str = ""
    _signals: dict[str, float] | None = field(default=None, repr=False)

    @property
    def iterations(self) -> int:
        if self.versions:
            return sum(r.iterations for r in self.versions.values())
        return sum(st.count for st in self.lanes.values())

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
        if self.versions:
            self._signals = self._paired_signals()
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
        out.update(self.queues)
        out.update(self.counters)
        self._signals = out
        return dict(out)

    def _paired_signals(self) -> dict[str, float]:
        """Each version's signals (``workload.<phase>.old.<flow>.<stat>`` …) and the phase's
        totals (``workload.<phase>.iterations``, ``.errors``, ``.blocks`` …)."""
        p = f"workload.{self.name}"
        out: dict[str, float] = {}
        for r in self.versions.values():
            out.update(r.signals())
        total = sum(r.iterations for r in self.versions.values())
        errors = sum(sum(st.errors.values()) for r in self.versions.values()
                     for st in r.lanes.values())
        dropped = sum(st.dropped for r in self.versions.values() for st in r.lanes.values())
        out[f"{p}.iterations"] = float(total)
        out[f"{p}.errors"] = float(errors)
        out[f"{p}.dropped"] = float(dropped)
        out[f"{p}.error_rate"] = errors / total if total else 0.0
        out[f"{p}.seconds"] = self.seconds
        out[f"{p}.blocks"] = float(len(self.blocks))
        out[f"{p}.block_s"] = self.block_seconds
        for v in self.versions:
            out[f"{p}.{v}.blocks"] = float(self.blocks.count(v))
        out.update(self.queues)
        out.update(self.counters)
        return out

    def error_kinds(self) -> dict[str, dict[str, int]]:
        if self.versions:
            return {f"{v}.{f}": e for v, r in self.versions.items()
                    for f, e in r.error_kinds().items()}
        return {f: dict(s.errors) for f, s in self.flows.items() if s.errors}


def error_kind(exc: BaseException) -> str:
    """A short, stable name for what went wrong, so errors are counted by kind."""
    import aiohttp

    if isinstance(exc, FlowError):
        return exc.kind
    if isinstance(exc, ConnectionRefusedError):
        return "connection_refused"
    if isinstance(exc, ServerDisconnected):
        return "disconnected"
    if isinstance(exc, HttpProtocolError):
        return "bad_http_response"
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
    if isinstance(exc, OSError):
        return "connect_error"
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
    """Lanes of a workload's plain ``flows`` for ``tenants`` (``module:function`` flows only;
    :func:`plantstage.workload.plan.build_lanes` resolves a spec's plugins and archetypes)."""
    return [Lane(t, "all", wf, resolve_flow(wf.flow, None, None, f"workload.flows[{j}]").fn,
                 wf.arrival or workload.arrival)
            for t in tenants for j, wf in enumerate(workload.flows)]


Tick = Callable[[dict[str, Any]], None]


class CounterProbe(Protocol):
    """Monotonic counters of something the workload makes work (database statements, rows
    read, calls to a twin …), read at phase start and end and at every block boundary of the
    paired phase; their differences are attributed to the phase, or to the block's version."""

    def read(self) -> dict[str, float]: ...


def cost_signal(scope: str, counter: str) -> str:
    """``cost.<scope>.<counter>``: scope is a phase, or ``paired.old`` / ``paired.new``."""
    return f"cost.{scope}.{counter}"


@dataclass
class Meter:
    """A counter probe and how its deltas are named: ``name(scope, counter) → signal``.

    With ``per_iteration``, each delta also gets ``<signal>.per_iteration`` (the delta over the
    iterations of the phase, or of the version in the paired phase).
    """

    probe: CounterProbe
    name: Callable[[str, str], str] = cost_signal
    per_iteration: bool = True

    def read(self) -> dict[str, float] | None:
        """The counters now, or None when the probe could not be read (never fatal)."""
        try:
            return {k: float(v) for k, v in self.probe.read().items()}
        except Exception:  # noqa: BLE001 - a probe that fails loses its signals, not the run
            return None


def _delta(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, float]:
    if before is None or after is None:
        return {}
    return {k: max(0.0, v - before[k]) for k, v in after.items() if k in before}


_GOLDEN = 0.6180339887498949  # lane staggering: well spread fractions for any lane count


def paired_offsets(arrival: Arrival, rate: float, warmup: float, pairs: int, block: float,
                   shift: float, rng: random.Random) -> list[tuple[float, int]]:
    """One lane's iterations in the paired phase: ``(offset from the phase start, block)``,
    block -1 for the warm-up, in time order.

    The arrival model is drawn over ``pairs`` blocks' worth of time; every arrival at ``r``
    seconds into pair ``p`` becomes two iterations, at ``r`` into block ``2p`` and at ``r`` into
    block ``2p + 1`` — so the two versions get the very same arrivals (count and spacing) in
    every pair, whatever the model (poisson draws, shift patterns).
    """
    out = [(o, -1) for o in schedule(arrival, rate, warmup, rng)] if warmup > 0 else []
    span = pairs * block
    for v in schedule(arrival, rate, span, rng):
        v += shift
        if v >= span:
            break
        p = min(pairs - 1, int((v + 1e-9) // block))
        r = max(0.0, v - p * block)
        out.append((warmup + 2 * p * block + r, 2 * p))
        out.append((warmup + (2 * p + 1) * block + r, 2 * p + 1))
    out.sort()
    return out


def block_order(blocks: int, seed: int | str) -> list[str]:
    """Which version each block of the paired phase goes to.

    Balanced: every consecutive pair of blocks holds one ``old`` and one ``new`` block, and
    every group of four is counterbalanced (``a b b a``), so a flow that starts once every two
    blocks also meets both versions equally often. Seeded: which version leads each group of
    four is drawn from ``seed``.
    """
    rng = random.Random(f"{seed}:paired:blocks")
    out: list[str] = []
    for _ in range((blocks + 3) // 4):
        a, b = ("old", "new") if rng.random() < 0.5 else ("new", "old")
        out.extend((a, b, b, a))
    return out[:blocks]


@dataclass(frozen=True)
class Paired:
    """The paired phase's two targets and its blocks."""

    old_url: str
    new_url: str
    block: float = 1.0
    #: Seconds of traffic before the first block, to both versions, not measured: the new
    #: version has had no traffic yet (cold caches, connection pools), the old one has.
    warmup: float = 0.0


Hook = Callable[[], None]


async def _run(base_url: str, workload: Workload, lanes: list[Lane], phase: str,
               duration: float, progress=None, *, store=None, resources: RunResources | None = None,
               on_tick: Tick | None = None, rate: float | None = None,
               queues: QueueProbe | None = None,
               data_where: dict[str, str] | None = None, version: str = "old",
               paired: Paired | None = None, meters: list[Meter] | None = None,
               on_start: Hook | None = None, on_end: Hook | None = None,
               trace: telemetry.PhaseTrace | None = None) -> PhaseResult:
    targets = ({"old": paired.old_url, "new": paired.new_url} if paired is not None
               else {version: base_url})
    for url in dict.fromkeys(targets.values()):
        await preflight(url)
    scale = 1.0
    if rate is not None:
        base = sum(expected_iterations(ln.arrival, ln.flow.rate, 1.0) for ln in lanes)
        scale = rate / base if base else 1.0
    resources = resources or RunResources()
    meters = meters or []
    token = secrets.token_hex(2)  # refs stay unique when a standalone run is repeated
    clients = {v: HttpClient(url, timeout=workload.request_timeout,
                             connections=workload.concurrency,
                             on_exchange=getattr(resources.twin_set, "traffic", None))
               for v, url in targets.items()}
    # Paired: every iteration's block decides its version; one schedule for both.
    block_s = paired.block if paired is not None else duration
    lead = paired.warmup if paired is not None else 0.0
    # Paired: whole pairs of blocks (the duration rounds to an even number of blocks).
    n_blocks = 2 * max(1, round(duration / (2 * block_s))) if paired is not None else 1
    if paired is not None:
        duration = n_blocks * block_s
    order = block_order(n_blocks, workload.seed) if paired is not None else [version]
    data_client = clients["new"] if paired is not None else clients[version]
    try:
        # Tenant master data (workload.tenant_data): once per tenant per phase.
        data: dict[str, dict[str, list[Any]]] = {}
        for t in sorted({ln.tenant for ln in lanes}):
            data[t] = await load_tenant_data(workload.tenant_data, t, data_client, resources,
                                             data_where)
        track: QueueTrack | None = None
        last_queues: dict[str, float] = {}
        if queues is not None:
            await queues.start()
            last_queues = await queues.sample()
            track = QueueTrack(last_queues)
            if store is not None and last_queues:
                store.points(last_queues)
        stats = {v: {(ln.archetype, ln.label): FlowStats() for ln in lanes} for v in targets}
        # Raw samples per (version, flow): (block, t, ms, ok, tenant).
        rows: dict[tuple[str, str], list[tuple[int, float, float, bool, str]]] = {
            (v, ln.label): [] for v in targets for ln in lanes}
        windows = {ln.label: _Window() for ln in lanes}
        inflight: set[asyncio.Task] = set()
        # Meters: read now (one phase), or at every block boundary from the first (paired).
        reads: list[list[dict[str, float] | None]] = \
            [[m.read() for m in meters]] if paired is None else []
        if on_start is not None:
            on_start()
        loop_start = time.perf_counter()
        start = loop_start + 0.05  # a moment for every dispatcher to be ready
        end = start + lead + duration

        # The hot path: everything per lane is bound once (LaneState), so an iteration costs
        # one task, one two-slot FlowContext, one flow call, one clock read and two
        # appends/records (see docs/workload.md).
        async def iteration(fn, state: LaneState, st: FlowStats, win: _Window,
                            intended: float, ref: str, out: list, block: int,
                            offset: float, stratum: str) -> None:
            failed = None
            if trace is not None:  # OpenTelemetry on (docs/telemetry.md)
                version = order[block] if block >= 0 else "warmup"
                span = trace.start(state, version, ref, intended)
            try:
                extra = await fn(FlowContext(state, ref))
                if extra:  # a flow may also return {counter: n}
                    for k, v in extra.items():
                        st.extra[k] += v
            except asyncio.CancelledError:
                failed = "unfinished"
            except Exception as exc:  # noqa: BLE001 - every failure is counted by kind
                failed = error_kind(exc)
            latency = _us(perf_counter() - intended)
            st.count += 1
            st.histogram.record_value(latency)
            win.count += 1
            win.latencies.append(latency)
            out.append((block, offset, latency / 1000, failed is None, stratum))
            if failed is not None:
                st.errors[failed] += 1
                win.errors += 1
            if trace is not None:
                trace.end(span, state, version, ref, intended, latency / 1e6, failed)

        async def dispatch(index: int, lane: Lane) -> None:
            label = lane.label
            win = windows[label]
            rng = random.Random(f"{workload.seed}:{phase}:{index}")
            prefix = f"{phase[:1]}{token}-{index}-"
            tenant = Tenant(lane.tenant, None if lane.archetype == "all" else lane.archetype,
                            data[lane.tenant])
            # One state per version; they share the lane's generator, so the same draws
            # happen in the same order whichever version an iteration goes to.
            per_version = {
                v: (LaneState(phase, label, tenant, lane.archetype, lane.flow.params,
                              lane.flow.timeout, rng, clients[v], resources,
                              stats[v][(lane.archetype, label)]),
                    stats[v][(lane.archetype, label)], rows[(v, label)])
                for v in targets}
            fn, limit = lane.fn, workload.concurrency
            create_task, add = asyncio.create_task, inflight.add
            # Warm-up iterations alternate between the versions and are not kept.
            warm = {v: (LaneState(phase, label, tenant, lane.archetype, lane.flow.params,
                                  lane.flow.timeout, rng, clients[v], resources, FlowStats()),
                        FlowStats(), []) for v in targets} if lead > 0 else {}
            warm_win = _Window()
            rate_l = lane.flow.rate * scale
            if paired is not None:
                # Paired: lanes are staggered (a fixed, lane-specific fraction of one gap, at
                # most a block), so independent tenants do not all start on the same instant
                # and queue behind each other — self-made contention that would swamp the
                # comparison.
                shift = ((index * _GOLDEN) % 1.0) * min(1.0 / rate_l, block_s) if rate_l else 0
                items: Any = paired_offsets(lane.arrival, rate_l, lead, n_blocks // 2, block_s,
                                            shift, rng)
            else:
                items = ((o, 0) for o in schedule(lane.arrival, rate_l, duration, rng))
            n_warm = 0
            for k, (offset, block) in enumerate(items):
                intended = start + offset
                delay = intended - perf_counter()
                # Yield even when behind schedule, so started iterations get to run.
                await asyncio.sleep(delay if delay > 0 else 0)
                t = offset - lead
                if block < 0:  # warm-up: alternately to each version, not kept
                    state, st, out = warm["new" if n_warm % 2 == 0 else "old"]
                    w, n_warm = warm_win, n_warm + 1
                else:
                    state, st, out = per_version[order[block]]
                    w = win
                if len(inflight) >= limit:
                    st.dropped += 1
                    continue
                task = create_task(iteration(fn, state, st, w, intended, f"{prefix}{k}",
                                             out, block, t, lane.tenant))
                add(task)
                task.add_done_callback(inflight.discard)

        async def boundaries() -> None:
            """Read the meters at every block boundary (in a thread: probes may query)."""
            for k in range(n_blocks):
                at = start + lead + k * block_s
                await asyncio.sleep(max(0.0, at - time.perf_counter()))
                reads.append(await asyncio.to_thread(lambda: [m.read() for m in meters]))

        def snapshot() -> dict[str, Any]:
            now = time.perf_counter()
            merged: dict[str, FlowStats] = {}
            for per in stats.values():
                for (_a, label), st in per.items():
                    merged.setdefault(label, FlowStats()).merge(st)
            return {"phase": phase, "elapsed": max(0.0, now - start), "duration": duration,
                    "in_flight": len(inflight), "queues": dict(last_queues),
                    "flows": {k: v.summary(max(1e-9, now - start)) for k, v in merged.items()}}

        async def ticker() -> None:
            nonlocal last_queues
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
                if track is not None and n % 2 == 0:
                    last_queues = await queues.sample()
                    track.add(last_queues)
                if store is not None and n % 2 == 0:
                    dt = now - last
                    last = now
                    points = {f"workload.{phase}.in_flight": float(len(inflight)),
                              **last_queues}
                    for label, win in windows.items():
                        p = f"workload.{phase}.{label}"
                        points[f"{p}.throughput"] = win.count / dt
                        points[f"{p}.errors_per_s"] = win.errors / dt
                        if win.latencies:
                            points[f"{p}.p95_ms"] = win.p95_ms()
                        win.reset()
                    store.points(points)
                    if run_telemetry is not None:  # live points as OTLP metrics
                        run_telemetry.points(points)

        run_telemetry = telemetry.current()
        tick = asyncio.create_task(ticker())
        bounds = asyncio.create_task(boundaries()) if paired is not None and meters else None
        try:
            await asyncio.gather(*(dispatch(i, ln) for i, ln in enumerate(lanes)))
            await asyncio.sleep(max(0.0, end - time.perf_counter()))
            if bounds is not None:
                await bounds
                reads.append(await asyncio.to_thread(lambda: [m.read() for m in meters]))
            if inflight:
                _done, pending = await asyncio.wait(set(inflight), timeout=workload.grace)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending, timeout=1.0)
        finally:
            tick.cancel()
            if bounds is not None:
                bounds.cancel()
            for task in list(inflight):
                task.cancel()
        seconds = time.perf_counter() - start - lead
        if on_end is not None:
            on_end()
        if track is not None:
            last_queues = await _settle_queues(queues, track, workload.queue_settle, store)
        final = await asyncio.to_thread(lambda: [m.read() for m in meters]) if meters else []
        if on_tick is not None:
            on_tick(snapshot())
    finally:
        for c in clients.values():
            await c.aclose()
        await resources.aclose()
        if queues is not None:
            await queues.aclose()
    results = {v: PhaseResult(f"{phase}.{v}" if paired is not None else phase, seconds,
                              stats[v], targets[v]) for v in targets}
    first = reads[0] if reads else [None] * len(meters)
    counters = _meter_signals(meters, phase, first, final, reads, order, results,
                              paired is not None)
    queue_signals = track.signals(phase) if track is not None else {}
    if paired is None:
        result = results[version]
        result.queues = queue_signals
        result.counters = counters
        result.version = version
    else:
        result = PhaseResult(phase, seconds, {}, base_url, queues=queue_signals,
                             versions=results, blocks=order, block_seconds=block_s)
        result.counters = counters
    if store is not None:
        store.set_many(result.signals())
        for (v, label), samples in rows.items():
            store.add_samples(phase, v, label, samples)
    return result


def _meter_signals(meters: list[Meter], phase: str, first: list, final: list,
                   reads: list[list], order: list[str], results: dict[str, PhaseResult],
                   paired: bool) -> dict[str, float]:
    """Counter deltas per phase (and per version from the block boundaries when paired)."""
    out: dict[str, float] = {}
    total = sum(r.iterations for r in results.values())
    for i, m in enumerate(meters):
        for counter, d in _delta(first[i], final[i] if final else None).items():
            name = m.name(phase, counter)
            out[name] = d
            if m.per_iteration:
                out[f"{name}.per_iteration"] = d / total if total else 0.0
        if not paired:
            continue
        per: dict[str, dict[str, float]] = {v: {} for v in results}
        for k in range(min(len(order), len(reads) - 1)):
            for counter, d in _delta(reads[k][i], reads[k + 1][i]).items():
                per[order[k]][counter] = per[order[k]].get(counter, 0.0) + d
        for v, deltas in per.items():
            n = results[v].iterations
            for counter, d in deltas.items():
                name = m.name(f"{phase}.{v}", counter)
                out[name] = d
                if m.per_iteration:
                    out[f"{name}.per_iteration"] = d / n if n else 0.0
    return out


async def _settle_queues(queues: QueueProbe, track: QueueTrack, settle: float,
                         store) -> dict[str, float]:
    """After the load: wait (at most ``settle`` s) for the queues to drain to their level before.

    ``.end`` is the last depth read; ``.drain_s`` how long draining took (``settle`` when they
    did not drain, with ``queue_drained`` 0).
    """
    t0 = time.perf_counter()
    while True:
        q = await queues.sample()
        track.add(q)
        if store is not None and q:
            store.points(q)
        drained = track.drained(q)
        if drained or time.perf_counter() - t0 >= settle:
            break
        await asyncio.sleep(0.1)
    track.end = q
    track.drain_s = round(min(settle, time.perf_counter() - t0), 3) if drained else settle
    track.drained_ok = drained
    return q


def _loop_factory():
    """uvloop's event loop where it is installed (it is a dependency; absent on Windows)."""
    if os.environ.get("PLANTSTAGE_NO_UVLOOP"):
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_phase(base_url: str, workload: Workload, tenants: list[str], phase: str,
              duration: float | None = None, progress=None, *, lanes: list[Lane] | None = None,
              store=None, database_url: str | None = None, mqtt_url: str | None = None,
              twin_set: Any = None, on_tick: Tick | None = None,
              rate: float | None = None, queues: QueueProbe | None = None,
              data_where: dict[str, str] | None = None, version: str = "old",
              paired: Paired | None = None, meters: list[Meter] | None = None,
              on_start: Hook | None = None, on_end: Hook | None = None) -> PhaseResult:
    """Drive the workload against ``base_url`` for one phase; return its stats.

    ``lanes`` (from :func:`plantstage.workload.plan.build_lanes`) carry the archetype mixes;
    without them the workload's plain ``flows`` run for each of ``tenants``. ``store`` receives
    the time series while the phase runs and the phase's signals at its end. ``rate`` scales
    every lane so that the iterations started per second total ``rate``. ``queues`` samples the
    broker's and twins' queue depths every second (``broker.queue_depth`` …) and summarises them
    per phase (``workload.<phase>.queue_depth.{before,max,end}``); without it, and with
    ``mqtt_url``, the broker's ``$SYS`` tree is read. ``twin_set`` is the rehearsal's running
    twins (``ctx.twin(component)`` in flows); ``data_where`` names each
    ``workload.tenant_data`` source's spec line for load errors.

    ``version`` (``old`` or ``new``) labels the raw samples kept in ``store``
    (:meth:`SignalStore.add_samples`). ``paired`` makes this the paired phase: every lane keeps
    one arrival schedule, and each iteration goes to the old or the new target by the block
    (``paired.block`` seconds) its intended start falls in (:func:`block_order`); signals are
    per version (``workload.<phase>.old.<flow>.<stat>``, ``….new.…``), samples carry their
    block. ``meters`` are read at phase start and end (and at every block boundary when
    paired); their deltas become signals (``cost.<phase>.<counter>``, per version
    ``cost.<phase>.<version>.<counter>``, each also ``.per_iteration``). ``on_start`` runs just
    before the first iteration is scheduled, ``on_end`` once the load has stopped (the twins'
    fault timeline uses them for phase-relative fault windows).
    """
    lanes = lanes if lanes is not None else lanes_for(workload, tenants)
    resources = RunResources(database_url=database_url, mqtt_url=mqtt_url, twin_set=twin_set)
    if queues is None and mqtt_url is not None:
        queues = QueueProbe(mqtt_url=mqtt_url)
    received: list[int] = []

    async def main() -> PhaseResult:
        # A Python-level signal handler that raises is swallowed inside uvloop's callbacks, so
        # SIGTERM is routed through the loop: it cancels the phase, which then cleans up and
        # surfaces as Interrupted to the rehearsal (which records it and stops everything).
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def on_signal(signum: int) -> None:
            received.append(signum)
            if task is not None:
                task.cancel()

        if threading.current_thread() is threading.main_thread():
            loop.add_signal_handler(signal.SIGTERM, on_signal, signal.SIGTERM)
        return await _run(base_url, workload, lanes, phase,
                          duration if duration is not None else workload.duration, progress,
                          store=store, resources=resources, on_tick=on_tick, rate=rate,
                          queues=queues, data_where=data_where, version=version,
                          paired=paired, meters=meters, on_start=on_start, on_end=on_end,
                          trace=trace)

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if in_main else None
    tel = telemetry.current()
    trace: telemetry.PhaseTrace | None = None
    try:
        if tel is None:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                return runner.run(main())
        # The phase's span is current while its loop runs (asyncio copies the context).
        with tel.phase(phase, _phase_attributes(lanes, version, paired, base_url)) as trace, \
                asyncio.Runner(loop_factory=_loop_factory()) as runner:
            result = runner.run(main())
            if trace is not None:
                trace.ended({"plantstage.iterations": result.iterations,
                             "plantstage.errors": _errors(result),
                             "plantstage.seconds": round(result.seconds, 3)})
            return result
    except asyncio.CancelledError:
        if received:
            raise Interrupted(f"interrupted by {signal.Signals(received[0]).name}",
                              where=f"workload phase {phase}") from None
        raise
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def _errors(result: PhaseResult) -> int:
    parts = result.versions.values() if result.versions else [result]
    return sum(sum(st.errors.values()) for r in parts for st in r.flows.values())


def _phase_attributes(lanes: list[Lane], version: str, paired: Paired | None,
                      base_url: str) -> dict[str, Any]:
    """A phase span's attributes: what it drove, for whom."""
    return {"plantstage.version": "old+new" if paired is not None else version,
            "plantstage.paired": paired is not None, "plantstage.target": base_url,
            "plantstage.flows": sorted({ln.label for ln in lanes}),
            "plantstage.tenants": sorted({ln.tenant for ln in lanes}),
            "plantstage.archetypes": sorted({ln.archetype for ln in lanes})}


def describe(result: PhaseResult) -> dict[str, Any]:
    """A compact summary for the step's results in the ledger and report."""
    if result.versions:
        return {
            "seconds": round(result.seconds, 2),
            "blocks": "".join(v[0] for v in result.blocks),  # e.g. "onnoon": old/new per block
            "block_s": result.block_seconds,
            "versions": {v: {k: val for k, val in describe(r).items() if k != "seconds"}
                         for v, r in result.versions.items()},
            **({"queues": {k.split(".", 2)[2]: v for k, v in result.queues.items()}}
               if result.queues else {}),
            **({"counters": {k: round(v, 3) for k, v in result.counters.items()}}
               if result.counters else {}),
        }
    return {
        "seconds": round(result.seconds, 2),
        "archetypes": result.archetypes,
        "flows": {f: {k: round(v, 2) for k, v in s.summary(result.seconds).items()
                      if k in _STATS or k.startswith("e2e_")}
                  for f, s in result.flows.items()},
        "errors": result.error_kinds(),
        **({"queues": {k.split(".", 2)[2]: v for k, v in result.queues.items()}}
           if result.queues else {}),
        **({"counters": {k: round(v, 3) for k, v in result.counters.items()}}
           if result.counters else {}),
    }

"""An open-model load engine: iterations start on a schedule, not when the last one ended.

Latency is measured from each iteration's *intended* start, so a stalled server shows up in the
percentiles instead of silently slowing the clients (coordinated omission). Iterations that
cannot start because the concurrency limit is reached are counted as dropped, never hidden.
Latencies go into HdrHistogram (microseconds, 3 significant digits).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from hdrh.histogram import HdrHistogram

from plantstage.spec.models import Workload
from plantstage.workload.flows import FLOWS, FlowError, TenantData, load_tenant_data


def _histogram() -> HdrHistogram:
    return HdrHistogram(1, 120_000_000, 3)  # 1 µs … 120 s


@dataclass
class FlowStats:
    histogram: HdrHistogram = field(default_factory=_histogram)
    count: int = 0
    errors: Counter = field(default_factory=Counter)
    dropped: int = 0
    extra: Counter = field(default_factory=Counter)

    def summary(self, seconds: float) -> dict[str, float]:
        h = self.histogram
        out = {
            "count": self.count,
            "errors": sum(self.errors.values()),
            "dropped": self.dropped,
            "rate": self.count / seconds if seconds else 0.0,
        }
        if h.get_total_count():
            out.update({
                "p50_ms": h.get_value_at_percentile(50) / 1000,
                "p95_ms": h.get_value_at_percentile(95) / 1000,
                "p99_ms": h.get_value_at_percentile(99) / 1000,
                "max_ms": h.get_max_value() / 1000,
            })
        out.update({k: float(v) for k, v in self.extra.items()})
        return out


@dataclass
class PhaseResult:
    name: str
    seconds: float
    flows: dict[str, FlowStats]

    def signals(self) -> dict[str, float]:
        """Flat signal names: ``workload.<phase>.<flow>.<stat>`` and phase totals."""
        out: dict[str, float] = {}
        total = errors = 0
        for flow, st in self.flows.items():
            for k, v in st.summary(self.seconds).items():
                out[f"workload.{self.name}.{flow}.{k}"] = float(v)
            total += st.count
            errors += sum(st.errors.values())
        out[f"workload.{self.name}.iterations"] = float(total)
        out[f"workload.{self.name}.errors"] = float(errors)
        out[f"workload.{self.name}.error_rate"] = errors / total if total else 0.0
        return out

    def error_kinds(self) -> dict[str, dict[str, int]]:
        return {f: dict(s.errors) for f, s in self.flows.items() if s.errors}


async def _run(base_url: str, workload: Workload, tenants: list[str], phase: str,
               duration: float, progress=None) -> PhaseResult:
    rng = random.Random(f"{workload.seed}:{phase}")
    limits = httpx.Limits(max_connections=workload.concurrency,
                          max_keepalive_connections=workload.concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, limits=limits) as client:
        data: dict[str, TenantData] = {}
        for t in tenants:
            data[t] = await load_tenant_data(client, t)
        stats = {wf.flow.value: FlowStats() for wf in workload.flows}
        inflight: set[asyncio.Task] = set()
        start = time.perf_counter()
        end = start + duration

        async def iteration(wf, intended: float, seq: int) -> None:
            st = stats[wf.flow.value]
            tenant = data[tenants[seq % len(tenants)]]
            try:
                extra = await FLOWS[wf.flow.value](client, tenant, wf, rng, f"{phase}-{seq}")
                for k, v in (extra or {}).items():
                    st.extra[k] += v
            except FlowError as exc:
                st.errors[exc.kind] += 1
            except httpx.TimeoutException:
                st.errors["timeout"] += 1
            except httpx.HTTPError as exc:
                st.errors[type(exc).__name__] += 1
            finally:
                st.count += 1
                st.histogram.record_value(max(1, int((time.perf_counter() - intended) * 1e6)))

        async def dispatch(wf, index: int) -> None:
            interval = 1.0 / wf.rate
            k = 0
            while True:
                intended = start + k * interval
                if intended >= end:
                    return
                delay = intended - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if len(inflight) >= workload.concurrency:
                    stats[wf.flow.value].dropped += 1
                else:
                    task = asyncio.create_task(iteration(wf, intended, k * 131 + index))
                    inflight.add(task)
                    task.add_done_callback(inflight.discard)
                k += 1

        async def ticker() -> None:
            while progress is not None and time.perf_counter() < end:
                await asyncio.sleep(0.5)
                progress(min(1.0, (time.perf_counter() - start) / duration))

        tick = asyncio.create_task(ticker())
        await asyncio.gather(*(dispatch(wf, i) for i, wf in enumerate(workload.flows)))
        # A run always ends at its duration: iterations still running get a short grace
        # period, then are cancelled and counted as timeouts.
        if inflight:
            done, pending = await asyncio.wait(set(inflight), timeout=10.0)
            for task in pending:
                task.cancel()
        tick.cancel()
        seconds = time.perf_counter() - start
    return PhaseResult(phase, seconds, stats)


def run_phase(base_url: str, workload: Workload, tenants: list[str], phase: str,
              duration: float | None = None, progress=None) -> PhaseResult:
    """Drive the workload's flows against ``base_url`` for one phase; return its stats."""
    return asyncio.run(_run(base_url, workload, tenants, phase,
                            duration if duration is not None else workload.duration, progress))


def describe(result: PhaseResult) -> dict[str, Any]:
    return {
        "seconds": round(result.seconds, 2),
        "flows": {f: {k: round(v, 2) for k, v in s.summary(result.seconds).items()}
                  for f, s in result.flows.items()},
        "errors": result.error_kinds(),
    }

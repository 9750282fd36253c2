"""Exporters of the signal store: OpenMetrics text, CSV, and a Prometheus endpoint during a run.

Signal names are dotted and may hold dashes (``workload.baseline.goods-receipt.p95_ms``),
which Prometheus metric names cannot. Rather than mangle them, every value is one sample of the
gauge family ``plantstage_signal`` with the exact name in the ``signal`` label, and every
time-series point a timestamped sample of ``plantstage_series`` — lossless and queryable
(``plantstage_signal{signal=~"workload.candidate.*p95_ms"}``).

While a load phase runs, the endpoint also serves each business transaction monitor's latest
value as the gauge ``plantstage_monitor{monitor, phase, unit, tenant}`` (tenant empty for the
monitor's own value; docs/monitors.md), read from the sources added with
:meth:`MetricsServer.watch`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest as _openmetrics

from plantstage.errors import PlantstageError
from plantstage.signals.store import SignalStore


class GaugeSource(Protocol):
    """Something with live values to serve: ``(labels, value)`` pairs read on each scrape
    (plantstage.workload.monitors.MonitorSampler)."""

    def gauges(self) -> list[tuple[dict[str, str], float]]: ...


MONITOR_LABELS = ("monitor", "phase", "unit", "tenant")


class _StoreCollector:
    """A prometheus_client collector that reads the store on every scrape."""

    def __init__(self, store: SignalStore, with_series: bool):
        self.store = store
        self.with_series = with_series
        self.sources: list[GaugeSource] = []

    def collect(self) -> Iterator[Metric]:
        values = GaugeMetricFamily("plantstage_signal", "A value recorded by a plantstage run.",
                                   labels=["signal"])
        for name, v in self.store.values().items():
            values.add_metric([name], v)
        yield values
        if self.with_series:
            series = GaugeMetricFamily("plantstage_series",
                                       "A time series recorded by a plantstage run.",
                                       labels=["signal"])
            for name, points in self.store.series().items():
                for t, v in points:
                    series.add_metric([name], v, timestamp=t)
            yield series
        if self.sources:
            monitors = GaugeMetricFamily(
                "plantstage_monitor", "The latest value of a business transaction monitor.",
                labels=list(MONITOR_LABELS))
            for source in list(self.sources):
                for labels, v in source.gauges():
                    monitors.add_metric([labels.get(k, "") for k in MONITOR_LABELS], v)
            yield monitors


def _registry(store: SignalStore, with_series: bool,
              collector: _StoreCollector | None = None) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector or _StoreCollector(store, with_series))
    return reg


def to_openmetrics(store: SignalStore) -> str:
    """OpenMetrics text of every value and time-series point (ends with ``# EOF``)."""
    return _openmetrics(_registry(store, with_series=True)).decode()


def to_csv(store: SignalStore) -> str:
    """CSV ``kind,name,t,value``: values (t empty) then time-series points."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["kind", "name", "t", "value"])
    for name, v in store.values().items():
        w.writerow(["value", name, "", repr(v)])
    for name, points in store.series().items():
        for t, v in points:
            w.writerow(["series", name, f"{t:.3f}", repr(v)])
    return buf.getvalue()


class MetricsServer:
    """The store served for Prometheus scrapes at ``http://HOST:PORT/metrics`` during a run."""

    def __init__(self, store: SignalStore, port: int, host: str = "127.0.0.1"):
        self._collector = _StoreCollector(store, with_series=False)
        try:
            self._server, self._thread = start_http_server(
                port, addr=host, registry=_registry(store, False, self._collector))
        except OSError as exc:
            raise PlantstageError(f"cannot serve metrics: {exc.strerror or exc}",
                                  where=f"{host}:{port}",
                                  hint="choose a free port (workload.metrics_port)") from None
        self.port = self._server.server_address[1]
        self.url = f"http://{host}:{self.port}/metrics"

    def watch(self, source: GaugeSource) -> None:
        """Also serve ``source``'s live values (``plantstage_monitor``) until :meth:`unwatch`."""
        self._collector.sources.append(source)

    def unwatch(self, source: GaugeSource) -> None:
        if source in self._collector.sources:
            self._collector.sources.remove(source)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

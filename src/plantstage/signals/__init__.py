"""The run's signal store and its exporters (OpenMetrics, CSV, Prometheus endpoint)."""

from plantstage.signals.compare import compare
from plantstage.signals.export import MetricsServer, to_csv, to_openmetrics
from plantstage.signals.store import SignalStore

__all__ = ["MetricsServer", "SignalStore", "compare", "to_csv", "to_openmetrics"]

"""OpenTelemetry for rehearsals: one trace per rehearsal, its signals as OTLP metrics.

Everything OpenTelemetry lives here; the runner, the workload engine and the process starter
only call the small hooks below. Telemetry is on when the standard variables say where to send
it (``OTEL_EXPORTER_OTLP_ENDPOINT``, or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` /
``…_METRICS_ENDPOINT``), or when a caller hands an exporter to :func:`export_to` (tests, an
embedding program). Otherwise :func:`start_run` returns an inert :class:`RunTelemetry`: no
provider, no exporter, no span, and the engine's per-iteration hook is skipped entirely.

The providers are per run, never installed as OpenTelemetry's global ones: plantstage is
also used as a library, and a host program's own providers must stay its own. The run's
telemetry is found through a context variable (:func:`current`), which asyncio copies into
the workload engine's tasks. See docs/telemetry.md.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from plantstage.errors import PlantstageError

if TYPE_CHECKING:  # the SDK is imported only when telemetry is on
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = ["ITERATIONS_ENV", "PhaseTrace", "RunTelemetry", "current", "enabled", "export_to",
           "process_env", "start_run"]

#: At most this many flow iterations per second and phase become spans, and as many failed
#: ones besides; 0 records none. A span costs ≈ 21 µs of the engine's CPU to create and end,
#: ≈ 83 µs once encoded and sent over OTLP/gRPC — about what an iteration itself costs at full
#: speed (≈ 80 µs) — so iterations are sampled rather than the load slowed (measured with
#: traces only: docs/telemetry.md, "Overhead").
ITERATIONS_ENV = "PLANTSTAGE_OTEL_ITERATIONS_PER_S"
DEFAULT_ITERATIONS_PER_S = 20.0

_TRACE_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_METRIC_ENDPOINTS = ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROTOCOLS = ("grpc", "http/protobuf")
#: At most this long, in all, to deliver the last spans and metrics as the run ends.
FLUSH_SECONDS = 5.0
SCOPE = "plantstage"
log = logging.getLogger("plantstage")

_CURRENT: ContextVar[RunTelemetry | None] = ContextVar("plantstage_telemetry", default=None)
#: The ``traceparent`` header value for the running flow iteration's HTTP requests (set in the
#: iteration's own asyncio task when it is sampled; read by the workload's HTTP client).
TRACEPARENT: ContextVar[str | None] = ContextVar("plantstage_traceparent", default=None)
_EXPORT_TO: ContextVar[tuple[Any, Any] | None] = ContextVar("plantstage_export_to", default=None)


def _env_on(names: tuple[str, ...], env: Mapping[str, str]) -> bool:
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(env.get(n, "").strip() for n in names)


def enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces or metrics over OTLP."""
    env = os.environ if env is None else env
    return _env_on(_TRACE_ENDPOINTS, env) or _env_on(_METRIC_ENDPOINTS, env)


def current() -> RunTelemetry | None:
    """The running rehearsal's telemetry when it records anything, else None."""
    return _CURRENT.get()


@contextmanager
def export_to(span_exporter: SpanExporter | None,
              metric_reader: MetricReader | None = None) -> Iterator[None]:
    """Rehearsals started inside this block send their spans to ``span_exporter`` (through a
    simple, synchronous processor) and their metrics to ``metric_reader``, whatever the
    environment says; e.g. the SDK's ``InMemorySpanExporter`` in tests."""
    token = _EXPORT_TO.set((span_exporter, metric_reader))
    try:
        yield
    finally:
        _EXPORT_TO.reset(token)


def _protocol(signal: str) -> str:
    """``OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL``, else ``OTEL_EXPORTER_OTLP_PROTOCOL``, else grpc
    (the Python SDK's default for its ``otlp`` exporter)."""
    var = f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL"
    name = var if os.environ.get(var, "").strip() else "OTEL_EXPORTER_OTLP_PROTOCOL"
    value = os.environ.get(name, "").strip() or "grpc"
    if value not in _PROTOCOLS:
        raise PlantstageError(f"{value!r} is not an OTLP protocol plantstage can send",
                              where=name, hint="grpc or http/protobuf (unset: grpc)")
    return value


_COMPRESSIONS = ("gzip", "deflate", "none")


def _check_settings(signal: str) -> None:
    """The timeout and compression variables the exporters read, checked here so that a bad
    one is bad input naming the variable: the gRPC exporters raise a bare ValueError for a
    timeout that is no number, and the HTTP ones silently use their default instead."""
    for kind in ("TIMEOUT", "COMPRESSION"):
        for name in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_{kind}", f"OTEL_EXPORTER_OTLP_{kind}"):
            raw = os.environ.get(name, "").strip()
            if not raw:
                continue
            if kind == "TIMEOUT":
                try:
                    ok = float(raw) >= 0
                except ValueError:
                    ok = False
                if not ok:
                    raise PlantstageError(f"{raw!r} is not a timeout", where=name,
                                          hint="milliseconds, a number ≥ 0 (default 10000)")
            elif raw.lower() not in _COMPRESSIONS:
                raise PlantstageError(f"{raw!r} is not an OTLP compression", where=name,
                                      hint=" or ".join(_COMPRESSIONS))
            break  # the signal's own variable wins over the general one


def _built(signal: str, build: Any) -> Any:
    """``build()``, with anything the exporter raises as bad input naming its settings."""
    _check_settings(signal)
    try:
        return build()
    except Exception as exc:  # noqa: BLE001 - any exporter failure is a bad setting here
        raise PlantstageError(
            f"cannot set up the OTLP {signal} exporter: {type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ''}",
            where=f"OTEL_EXPORTER_OTLP_{signal.upper()}_* / OTEL_EXPORTER_OTLP_*",
            hint="check the OTLP variables (docs/telemetry.md)") from None


def _span_exporter() -> SpanExporter:
    # The exporters read their endpoint, headers, timeout, TLS and compression from the
    # standard OTEL_EXPORTER_OTLP_* variables themselves.
    if _protocol("traces") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return _built("traces", OTLPSpanExporter)


def _metric_reader() -> MetricReader:
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    if _protocol("metrics") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    # Every 10 s unless OTEL_METRIC_EXPORT_INTERVAL says otherwise (the SDK's 60 s default is
    # longer than a whole demo rehearsal); the run's end forces a last export.
    interval = None if os.environ.get("OTEL_METRIC_EXPORT_INTERVAL") else 10_000
    return PeriodicExportingMetricReader(_built("metrics", OTLPMetricExporter),
                                         export_interval_millis=interval)


def _iterations_per_s() -> float:
    raw = os.environ.get(ITERATIONS_ENV, "").strip()
    if not raw:
        return DEFAULT_ITERATIONS_PER_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise PlantstageError(f"{raw!r} is not a number ≥ 0",
                              where=ITERATIONS_ENV, hint="iteration spans per second and "
                              f"phase (default {DEFAULT_ITERATIONS_PER_S:g}; 0: none)")
    return value


def start_run(run_id: str, *, spec: str, release: Any, current: Any,
              plan: list[str] | None = None) -> RunTelemetry:
    """The telemetry of one rehearsal: its root span started, its providers ready.

    Inert (nothing recorded) unless the environment names an OTLP endpoint or
    :func:`export_to` is in force. A bad ``OTEL_EXPORTER_OTLP_PROTOCOL``, ``…_TIMEOUT``,
    ``…_COMPRESSION`` (or anything else an exporter refuses) or
    ``PLANTSTAGE_OTEL_ITERATIONS_PER_S`` is bad input (exit 2), reported before anything runs.
    """
    override = _EXPORT_TO.get()
    traces = override is not None and override[0] is not None or \
        override is None and _env_on(_TRACE_ENDPOINTS, os.environ)
    metrics = override is not None and override[1] is not None or \
        override is None and _env_on(_METRIC_ENDPOINTS, os.environ)
    if not (traces or metrics):
        return RunTelemetry(run_id)
    per_s = _iterations_per_s()
    from opentelemetry.sdk.resources import Resource

    from plantstage._version import __version__

    attrs: dict[str, Any] = {"service.version": __version__, "plantstage.run_id": run_id}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attrs["service.name"] = "plantstage"
    resource = Resource.create(attrs)  # + OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME
    tracer_provider = meter_provider = None
    if traces:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        # Not shut down at exit by the SDK: the run's end does it, within FLUSH_SECONDS.
        tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        if override is not None:
            tracer_provider.add_span_processor(SimpleSpanProcessor(override[0]))
        else:
            tracer_provider.add_span_processor(BatchSpanProcessor(_span_exporter()))
    if metrics:
        from opentelemetry.sdk.metrics import MeterProvider

        try:
            reader = override[1] if override is not None else _metric_reader()
        except BaseException:
            if tracer_provider is not None:  # its batch thread and exporter go too
                tracer_provider.shutdown()
            raise
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader],
                                       shutdown_on_exit=False)
    tel = RunTelemetry(run_id, tracer_provider, meter_provider, per_s)
    tel._begin(spec=spec, release=release, current=current, plan=plan or [])
    return tel


def _wall_ns(t: float) -> int:
    """A perf_counter time as the wall-clock nanoseconds spans are stamped with."""
    return time.time_ns() - int((time.perf_counter() - t) * 1e9)


def _status(span: Any, error: str | None) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR, error or "failed"))


class RunTelemetry:
    """One rehearsal's trace (root span, step spans) and metrics. Inert without providers:
    every method then returns at once."""

    def __init__(self, run_id: str, tracer_provider: Any = None, meter_provider: Any = None,
                 iterations_per_s: float = DEFAULT_ITERATIONS_PER_S):
        self.run_id = run_id
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.iterations_per_s = iterations_per_s
        self.tracer = tracer_provider.get_tracer(SCOPE) if tracer_provider else None
        #: The latest value of each signal and live load point, read by the metrics reader.
        self.values: dict[str, float] = {}
        self.release: dict[str, str] = {}
        self._root: Any = None
        self._token: Any = None
        self._step: tuple[Any, Any] | None = None
        self._ended = False

    @property
    def active(self) -> bool:
        return self.tracer_provider is not None or self.meter_provider is not None

    def _begin(self, *, spec: str, release: Any, current: Any, plan: list[str]) -> None:
        self.release = {"name": str(release.name), "version": str(release.version),
                        "current": str(current.version)}
        if self.meter_provider is not None:
            from opentelemetry.metrics import Observation

            def observe(_options: Any) -> list[Observation]:
                return [Observation(v, {"signal": k, "plantstage.run_id": self.run_id})
                        for k, v in list(self.values.items())]

            meter = self.meter_provider.get_meter(SCOPE)
            meter.create_observable_gauge(
                "plantstage.signal", [observe],
                description="A rehearsal signal or live load point, named by its 'signal' "
                            "attribute (the names gates use: plantstage check lists them)")
        if self.tracer is not None:
            from opentelemetry import context, trace

            self._root = self.tracer.start_span("rehearsal", attributes={
                "plantstage.run_id": self.run_id, "plantstage.spec": spec,
                "plantstage.release.name": self.release["name"],
                "plantstage.release.version": self.release["version"],
                "plantstage.current.version": self.release["current"],
                "plantstage.plan": plan})
            self._ctx_token = context.attach(trace.set_span_in_context(self._root))
        self._token = _CURRENT.set(self)

    # -- steps -----------------------------------------------------------------------------
    def step_started(self, seq: int, name: str, title: str = "") -> None:
        """A step span, current until :meth:`step_ended` (app processes and the workload's
        phases started inside the step become its children)."""
        if self.tracer is None:
            return
        from opentelemetry import context, trace

        span = self.tracer.start_span(name, attributes={
            "plantstage.step": name, "plantstage.step.seq": seq, "plantstage.step.title": title})
        self._step = (span, context.attach(trace.set_span_in_context(span)))

    def step_ended(self, name: str, status: str, error: str | None = None,
                   seq: int | None = None) -> None:
        """End the current step's span; a step that never started (skipped) gets an empty one."""
        if self.tracer is None:
            return
        from opentelemetry import context

        if self._step is None:
            span = self.tracer.start_span(name, attributes={"plantstage.step": name})
            if seq is not None:
                span.set_attribute("plantstage.step.seq", seq)
        else:
            span, token = self._step
            self._step = None
            context.detach(token)
        span.set_attribute("plantstage.step.status", status)
        if error:
            span.set_attribute("plantstage.step.error", error)
        if status in ("failed", "interrupted"):
            _status(span, error or status)
        span.end()

    # -- workload phases ---------------------------------------------------------------------
    @contextmanager
    def phase(self, phase: str, attributes: dict[str, Any]) -> Iterator[PhaseTrace | None]:
        """A workload phase's span, current while the phase runs; yields the iteration hook
        (None when no trace is recorded)."""
        if self.tracer is None:
            yield None
            return
        from opentelemetry import trace

        with self.tracer.start_as_current_span(
                f"phase {phase}", attributes={"plantstage.phase": phase, **attributes},
                record_exception=False, set_status_on_exception=True) as span:
            yield PhaseTrace(self, phase, span, trace.set_span_in_context(span))

    def points(self, values: Mapping[str, float]) -> None:
        """Live load points (throughput, p95, in flight …) for the next metrics export."""
        if self.meter_provider is not None:
            self.values.update(values)

    # -- the end -------------------------------------------------------------------------------
    def finish(self, status: str, verdict: str, signals: Mapping[str, float] | None = None,
               error: str | None = None) -> None:
        """Close the trace with the run's outcome, export the final signals, flush, shut down.
        Called once on every way a rehearsal ends (completed, could not run, interrupted)."""
        if self._ended or not self.active:
            return
        self._ended = True
        try:
            if self._step is not None:  # the run ended inside a step (interrupted)
                self.step_ended(self._step[0].name, "interrupted", error or status)
            if signals:
                self.values.update({k: float(v) for k, v in signals.items()})
            if self._root is not None:
                from opentelemetry import context

                self._root.set_attributes({"plantstage.status": status,
                                           "plantstage.verdict": verdict})
                if status != "completed":
                    _status(self._root, error or status)
                self._root.end()
                context.detach(self._ctx_token)
        finally:
            _CURRENT.reset(self._token)
            self._flush()

    def _flush(self) -> None:
        """Deliver what is left, waiting at most :data:`FLUSH_SECONDS`: against an unreachable
        endpoint the SDK's exporters retry for their whole timeout (10 s per signal) and its
        flush does not stop them sooner, so the flush runs in a daemon thread and the rehearsal
        ends without it (what was not sent by then is dropped, with a warning)."""
        providers = [p for p in (self.tracer_provider, self.meter_provider) if p is not None]

        def flush() -> None:
            for p in providers:
                p.force_flush(int(FLUSH_SECONDS * 1000))
            for p in providers:
                p.shutdown()

        worker = threading.Thread(target=flush, name="plantstage-telemetry-flush", daemon=True)
        worker.start()
        worker.join(FLUSH_SECONDS)
        if worker.is_alive():
            log.warning("telemetry: the OTLP endpoint took more than %.0f s; the run's last "
                        "spans and metrics may be lost", FLUSH_SECONDS)


@dataclass
class PhaseTrace:
    """The workload engine's per-iteration hook for one phase."""

    run: RunTelemetry
    phase: str
    span: Any
    parent: Any  # the phase span's context: iterations are its children
    recorded: int = 0
    #: perf_counter times before which the next passed / failed iteration is not recorded.
    next_ok: float = 0.0
    next_failed: float = 0.0

    def _gap(self) -> float | None:
        per_s = self.run.iterations_per_s
        return 1.0 / per_s if per_s > 0 else None

    def _span(self, state: Any, version: str, ref: str, intended: float) -> Any:
        self.recorded += 1
        return self.run.tracer.start_span(
            f"iteration {state.flow}", context=self.parent, start_time=_wall_ns(intended),
            attributes={"plantstage.phase": self.phase, "plantstage.flow": state.flow,
                        "plantstage.tenant": state.tenant.code,
                        "plantstage.archetype": state.archetype,
                        "plantstage.version": version, "plantstage.ref": ref})

    def start(self, state: Any, version: str, ref: str, intended: float) -> Any:
        """An iteration (of lane ``state``, due at ``intended`` on the perf_counter clock) is
        starting: the first after each sampling gap becomes a span now, and its HTTP requests
        carry a ``traceparent`` naming it (so an instrumented app's request spans are its
        children). Returns the span, or None (not sampled)."""
        now = time.perf_counter()
        if now < self.next_ok:
            return None
        gap = self._gap()
        if gap is None:
            self.next_ok = self.next_failed = float("inf")
            return None
        self.next_ok = now + gap
        span = self._span(state, version, ref, intended)
        c = span.get_span_context()
        # Formatted here rather than through the propagator: the W3C header is fixed and this
        # runs inside the load; the asyncio task's own context keeps it to this iteration.
        TRACEPARENT.set(f"00-{c.trace_id:032x}-{c.span_id:016x}-{c.trace_flags:02x}")
        return span

    def end(self, span: Any, state: Any, version: str, ref: str, intended: float,
            seconds: float, failed: str | None) -> None:
        """The iteration ended after ``seconds`` (from ``intended``), ``failed`` with an error
        kind or None. A failed iteration that was not sampled at its start is recorded now,
        after the fact, at most one per sampling gap too (a failing app cannot flood the
        trace)."""
        if span is None:
            if failed is None:
                return
            now = time.perf_counter()
            gap = self._gap()
            if gap is None or now < self.next_failed:
                return
            self.next_failed = now + gap
            span = self._span(state, version, ref, intended)
        if failed is not None:
            span.set_attribute("plantstage.error", failed)
            _status(span, failed)
        span.end(end_time=_wall_ns(intended + seconds))

    def ended(self, attributes: dict[str, Any]) -> None:
        self.span.set_attributes({**attributes, "plantstage.iterations.recorded": self.recorded,
                                  "plantstage.iterations.per_s": self.run.iterations_per_s})


def process_env(name: str) -> dict[str, str]:
    """What an app process started now needs to join the rehearsal's trace: ``TRACEPARENT``
    (and ``TRACESTATE``) of the current span, the OpenTelemetry environment-carrier convention;
    ``OTEL_SERVICE_NAME`` (the component, from ``name`` = ``component@version (colour)``);
    ``OTEL_RESOURCE_ATTRIBUTES`` (the user's, then the version, run id and process); and the
    ``OTEL_EXPORTER_*`` settings plantstage itself was given. Empty when the run records
    nothing."""
    tel = current()
    if tel is None or not tel.active:
        return {}
    out = {k: v for k, v in os.environ.items() if k.startswith("OTEL_EXPORTER_")}
    if tel.tracer is not None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier)
        out.update({k.upper(): v for k, v in carrier.items()})
    component, _, rest = name.partition("@")
    version = rest.split(" (", 1)[0] if rest else ""
    out["OTEL_SERVICE_NAME"] = component or name
    attrs = [("plantstage.run_id", tel.run_id), ("plantstage.process", name)]
    if version:
        attrs.insert(0, ("service.version", version))
    mine = ",".join(f"{k}={quote(v, safe='')}" for k, v in attrs)
    user = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "").strip().strip(",")
    out["OTEL_RESOURCE_ATTRIBUTES"] = f"{user},{mine}" if user else mine
    return out

"""OpenTelemetry: the spans and metrics of a rehearsal, caught by the SDK's in-memory exporter
and reader (the OTLP delivery itself is tested in tests/integration/test_telemetry_otlp.py)."""

from __future__ import annotations

import contextvars
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from plantstage import telemetry
from plantstage.errors import PlantstageError
from plantstage.rehearsal.processes import ManagedProcess, free_port
from plantstage.rehearsal.runner import run_rehearsal
from plantstage.rehearsal.steps import Step, StepFailed
from plantstage.spec.loader import load_spec
from plantstage.spec.workload import Workload, WorkloadFlow
from plantstage.workload.engine import run_phase
from plantstage.workload.plan import Lane
from tests.conftest import EXAMPLE
from tests.unit.test_workload_engine import broken_flow, server  # noqa: F401 - fixture


class Passes(Step):
    name, title = "passes", "A step that passes"

    def run(self, ctx):
        ctx.signal("thing.measured", 42.0)
        return {"ok": True}


class Fails(Step):
    name, title = "fails", "A step that finds a problem"

    def run(self, ctx):
        raise StepFailed("the widget count is off by 3")


class NotAfterFailure(Step):
    name = "skipped-one"

    def run(self, ctx):  # pragma: no cover - skipped after `fails`
        return {}


class StartsApp(Step):
    """Starts a real child process the way a rehearsal starts an app version; the child writes
    the environment it was given to a file."""

    name = "starts-app"
    after_failure = True

    def run(self, ctx):
        out = ctx.run_dir / "child-env.json"
        code = ("import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))")
        proc = ManagedProcess("plant-app@1.1.0 (green)", [sys.executable, "-c", code, str(out)],
                              cwd=ctx.run_dir, env={"APP_SETTING": "1"}, port=free_port(),
                              health_path="/health", log_path=ctx.run_dir / "logs" / "app.log")
        proc.start()
        proc.proc.wait(30)
        proc.stop()
        return {}


@pytest.fixture
def spans_of_a_rehearsal(tmp_path, monkeypatch):
    monkeypatch.setenv("PLANTSTAGE_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-team=plant-it")
    loaded = load_spec(EXAMPLE)
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    with telemetry.export_to(exporter, reader):
        outcome = run_rehearsal(loaded, loaded.spec.release("1.1.0"),
                                loaded.spec.release("1.0.0"), tmp_path / "run",
                                plan=[Passes(), Fails(), NotAfterFailure(), StartsApp()])
    assert telemetry.current() is None  # the run's telemetry does not outlive it
    return outcome, exporter.get_finished_spans(), reader.get_metrics_data()


def test_a_rehearsal_is_one_trace_with_a_span_per_step(spans_of_a_rehearsal):
    outcome, spans, _ = spans_of_a_rehearsal
    by_name = {s.name: s for s in spans}
    assert set(by_name) == {"rehearsal", "passes", "fails", "skipped-one", "starts-app"}
    assert len({s.context.trace_id for s in spans}) == 1
    root = by_name["rehearsal"]
    assert root.parent is None
    assert root.attributes["plantstage.run_id"] == outcome.run_id
    assert root.attributes["plantstage.release.version"] == "1.1.0"
    assert root.attributes["plantstage.current.version"] == "1.0.0"
    assert root.attributes["plantstage.spec"].endswith("plantstage.yaml")
    assert root.attributes["plantstage.verdict"] == outcome.verdict == "NO-GO"
    assert root.attributes["plantstage.status"] == "completed"
    for name in ("passes", "fails", "skipped-one", "starts-app"):
        assert by_name[name].parent.span_id == root.context.span_id
    assert by_name["passes"].status.status_code == StatusCode.UNSET
    failed = by_name["fails"]
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.status.description == "the widget count is off by 3"
    assert failed.attributes["plantstage.step.status"] == "failed"
    assert by_name["skipped-one"].attributes["plantstage.step.status"] == "skipped"


def test_an_app_process_gets_the_trace_context_and_otel_environment(spans_of_a_rehearsal):
    outcome, spans, _ = spans_of_a_rehearsal
    env = json.loads((outcome.run_dir / "child-env.json").read_text())
    step = next(s for s in spans if s.name == "starts-app")
    version, trace_id, parent_id, flags = env["TRACEPARENT"].split("-")
    assert version == "00" and int(flags, 16) & 1  # sampled
    assert int(trace_id, 16) == step.context.trace_id
    assert int(parent_id, 16) == step.context.span_id  # the step that started it
    assert env["OTEL_SERVICE_NAME"] == "plant-app"
    attrs = dict(kv.split("=", 1) for kv in env["OTEL_RESOURCE_ATTRIBUTES"].split(","))
    assert attrs["service.version"] == "1.1.0"
    assert attrs["plantstage.run_id"] == outcome.run_id
    assert attrs["plantstage.process"] == "plant-app%401.1.0%20%28green%29"
    assert env["OTEL_EXPORTER_OTLP_HEADERS"] == "x-team=plant-it"
    assert env["APP_SETTING"] == "1"  # the binding's own env is kept


def test_the_run_signals_are_exported_as_metrics(spans_of_a_rehearsal):
    outcome, _, data = spans_of_a_rehearsal
    points = {p.attributes["signal"]: p for rm in data.resource_metrics
              for sm in rm.scope_metrics for m in sm.metrics if m.name == "plantstage.signal"
              for p in m.data.data_points}
    assert points["thing.measured"].value == 42.0
    assert points["thing.measured"].attributes["plantstage.run_id"] == outcome.run_id


def test_without_an_endpoint_nothing_is_recorded(tmp_path, monkeypatch):
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    loaded = load_spec(EXAMPLE)
    tel = telemetry.start_run("r1", spec="s", release=loaded.spec.release("1.1.0"),
                              current=loaded.spec.release("1.0.0"))
    assert not tel.active and tel.tracer is None and telemetry.current() is None
    assert telemetry.process_env("app@1 (green)") == {}
    tel.step_started(0, "x")
    tel.step_ended("x", "failed", "why")
    tel.finish("completed", "GO", {"a": 1.0})
    assert not telemetry.enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317",
                                  "OTEL_SDK_DISABLED": "true"})
    assert telemetry.enabled({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x:4318/v1/traces"})


@pytest.mark.parametrize("var,value,where", [
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "OTEL_EXPORTER_OTLP_PROTOCOL"),
    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
    ("PLANTSTAGE_OTEL_ITERATIONS_PER_S", "lots", "PLANTSTAGE_OTEL_ITERATIONS_PER_S"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "abc", "OTEL_EXPORTER_OTLP_TIMEOUT"),
    ("OTEL_EXPORTER_OTLP_COMPRESSION", "zip", "OTEL_EXPORTER_OTLP_COMPRESSION"),
    ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "-1", "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT"),
])
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_bad_settings_are_bad_input_naming_the_variable(monkeypatch, var, value, where,
                                                        protocol):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    if var != "OTEL_EXPORTER_OTLP_PROTOCOL":
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv(var, value)
    loaded = load_spec(EXAMPLE)
    with pytest.raises(PlantstageError) as err:
        telemetry.start_run("r1", spec="s", release=loaded.spec.release("1.1.0"),
                            current=loaded.spec.release("1.0.0"))
    assert err.value.where == where and err.value.exit_code == 2
    assert telemetry.current() is None


def test_a_metrics_exporter_that_fails_shuts_the_trace_provider_down(monkeypatch):
    """Traces are set up, then the metrics exporter refuses its settings: bad input naming the
    variable, and the trace provider already built (its batch thread) is shut down."""
    from opentelemetry.sdk.trace import TracerProvider

    shut: list[object] = []
    real = TracerProvider.shutdown
    monkeypatch.setattr(TracerProvider, "shutdown",
                        lambda self: (shut.append(self), real(self))[1])
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "zip")
    loaded = load_spec(EXAMPLE)
    with pytest.raises(PlantstageError) as err:
        telemetry.start_run("r1", spec="s", release=loaded.spec.release("1.1.0"),
                            current=loaded.spec.release("1.0.0"))
    assert err.value.where == "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION"
    assert len(shut) == 1 and telemetry.current() is None


def test_a_run_that_breaks_after_the_trace_started_still_ends_it(tmp_path):
    """An error outside any step (here: the run folder cannot be made, a file is in its
    place) still closes the run's trace, as could-not-run."""
    loaded = load_spec(EXAMPLE)
    blocked = tmp_path / "run"
    blocked.write_text("a file where the run folder goes")
    exporter = InMemorySpanExporter()
    with telemetry.export_to(exporter), pytest.raises(FileExistsError):
        run_rehearsal(loaded, loaded.spec.release("1.1.0"), loaded.spec.release("1.0.0"),
                      blocked, plan=[Passes()])
    assert telemetry.current() is None
    (root,) = exporter.get_finished_spans()
    assert root.attributes["plantstage.status"] == "could-not-run"
    assert root.status.status_code == StatusCode.ERROR
    assert root.status.description == "internal error: FileExistsError"


def test_the_protocol_picks_the_sdk_exporter(monkeypatch):
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", raising=False)
    assert isinstance(telemetry._span_exporter(), Grpc)  # the Python SDK's default
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    assert isinstance(telemetry._span_exporter(), Http)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")  # per signal wins
    assert isinstance(telemetry._span_exporter(), Grpc)


async def _ok_flow(ctx) -> None:
    r = await ctx.http.get("/ok")
    ctx.expect(r, 200)


def _phase_spans(server, monkeypatch, lanes, per_s: str, duration: float = 1.0):  # noqa: F811
    monkeypatch.setenv(telemetry.ITERATIONS_ENV, per_s)
    loaded = load_spec(EXAMPLE)
    exporter = InMemorySpanExporter()
    with telemetry.export_to(exporter):
        tel = telemetry.start_run("r1", spec="s", release=loaded.spec.release("1.1.0"),
                                  current=loaded.spec.release("1.0.0"))
        tel.step_started(0, "baseline-load")
        result = run_phase(server, Workload(duration=duration, concurrency=16, grace=2.0), [],
                           "baseline", lanes=lanes)
        tel.step_ended("baseline-load", "passed")
        tel.finish("completed", "GO")
    return result, exporter.get_finished_spans()


def _lane(fn, tenant: str, archetype: str, rate: float) -> Lane:
    wf = WorkloadFlow(flow=f"test_telemetry:{fn.__name__}", rate=rate)
    return Lane(tenant, archetype, wf, fn, wf.arrival or Workload().arrival)


def test_a_workload_phase_is_a_span_with_its_iterations(server, monkeypatch):  # noqa: F811
    lanes = [_lane(_ok_flow, "t1", "arch-a", 40), _lane(broken_flow, "t2", "arch-b", 10)]
    result, spans = _phase_spans(server, monkeypatch, lanes, "100000")
    step = next(s for s in spans if s.name == "baseline-load")
    phase = next(s for s in spans if s.name == "phase baseline")
    assert phase.parent.span_id == step.context.span_id
    assert phase.attributes["plantstage.phase"] == "baseline"
    assert phase.attributes["plantstage.iterations"] == result.iterations
    assert list(phase.attributes["plantstage.tenants"]) == ["t1", "t2"]
    its = [s for s in spans if s.name.startswith("iteration ")]
    assert len(its) == result.iterations == phase.attributes["plantstage.iterations.recorded"]
    assert all(s.parent.span_id == phase.context.span_id for s in its)
    ok = [s for s in its if s.attributes["plantstage.tenant"] == "t1"]
    bad = [s for s in its if s.attributes["plantstage.tenant"] == "t2"]
    assert ok and bad
    assert {s.attributes["plantstage.archetype"] for s in ok} == {"arch-a"}
    assert {s.attributes["plantstage.phase"] for s in its} == {"baseline"}
    assert {s.attributes["plantstage.version"] for s in its} == {"old"}
    assert all(s.status.status_code == StatusCode.UNSET for s in ok)
    assert all(s.status.status_code == StatusCode.ERROR for s in bad)
    assert {s.attributes["plantstage.error"] for s in bad} == {"exception_ValueError"}
    assert all(phase.start_time <= s.start_time <= s.end_time <= phase.end_time for s in its)


def test_iteration_spans_are_sampled_per_second(server, monkeypatch):  # noqa: F811
    lanes = [_lane(_ok_flow, "t1", "arch-a", 200)]
    result, spans = _phase_spans(server, monkeypatch, lanes, "5", duration=1.0)
    its = [s for s in spans if s.name.startswith("iteration ")]
    assert result.iterations > 50
    # ≤ 5 a second over the phase as long as it lasted (its span's own duration, whatever
    # the machine's load made of it), plus the first iteration of a partial second.
    phase = next(s for s in spans if s.name == "phase baseline")
    seconds = (phase.end_time - phase.start_time) / 1e9
    assert 1 <= len(its) <= 5 * seconds + 1
    assert phase.attributes["plantstage.iterations.recorded"] == len(its)


def test_sampling_keeps_the_first_iteration_of_each_gap_and_failures():
    """Not a timing threshold: between its gaps the hook records nothing, except a failure."""
    from types import SimpleNamespace as NS

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    tel = telemetry.RunTelemetry("r", tp, None, 1.0)
    lane = NS(flow="f", tenant=NS(code="t"), archetype="a")

    def iteration(ph, failed):  # in a context of its own, as the engine's asyncio task is
        t = time.perf_counter()
        ph.end(ph.start(lane, "old", "ref", t), lane, "old", "ref", t, 0.0, failed)

    with tel.phase("p", {}) as ph:
        for _ in range(1000):
            contextvars.copy_context().run(iteration, ph, None)
        contextvars.copy_context().run(iteration, ph, "timeout")
    assert telemetry.TRACEPARENT.get() is None
    spans = [s for s in exporter.get_finished_spans() if s.name == "iteration f"]
    assert len(spans) == 2  # the first passed one, and the failed one
    assert spans[1].attributes["plantstage.error"] == "timeout"


class _RecordsTraceparent(BaseHTTPRequestHandler):
    seen: list[str | None] = []

    def do_GET(self):  # noqa: N802
        _RecordsTraceparent.seen.append(self.headers.get("traceparent"))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def test_a_sampled_iteration_s_requests_carry_its_traceparent(monkeypatch):
    """An instrumented app's request spans become children of the iteration that made them."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _RecordsTraceparent)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        lanes = [_lane(_ok_flow, "t1", "arch-a", 30)]
        result, spans = _phase_spans(f"http://127.0.0.1:{srv.server_port}", monkeypatch,
                                     lanes, "4")
    finally:
        srv.shutdown()
    its = {s.context.span_id: s for s in spans if s.name.startswith("iteration ")}
    sent = [h for h in _RecordsTraceparent.seen if h is not None]
    assert its and len(sent) == len(its) < result.iterations  # sampled ones only
    for header in sent:
        _v, trace_id, span_id, _flags = header.split("-")
        span = its[int(span_id, 16)]
        assert int(trace_id, 16) == span.context.trace_id


def test_an_unreachable_endpoint_does_not_hold_up_the_end_of_a_run(monkeypatch, caplog):
    """The SDK's exporters retry for their whole timeout; the run ends after FLUSH_SECONDS
    with a warning instead (nothing listens on port 9, the discard port)."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "30")
    loaded = load_spec(EXAMPLE)
    tel = telemetry.start_run("r1", spec="s", release=loaded.spec.release("1.1.0"),
                              current=loaded.spec.release("1.0.0"))
    tel.step_started(0, "x")
    tel.step_ended("x", "passed")
    tel.finish("completed", "GO", {"a": 1.0})
    assert telemetry.current() is None
    assert "the OTLP endpoint took more than" in caplog.text

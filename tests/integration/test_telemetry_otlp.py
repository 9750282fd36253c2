"""A rehearsal with OTEL_EXPORTER_OTLP_ENDPOINT set delivers its trace and metrics over OTLP to
a real receiver.

No OpenTelemetry Collector binary is packaged where this project installs from (PyPI, Debian,
npm; checked: Debian has only the Go SDK sources, PyPI and npm no collector), so the receiver
is a real OTLP endpoint built here on the official protobuf definitions
(``opentelemetry-proto``): a gRPC server with the ``TraceService`` and ``MetricsService``
servicers (grpcio), and for OTLP/HTTP a plain HTTP server on ``/v1/traces``. Both decode the
``Export…ServiceRequest`` exactly as a Collector does; the test reads the decoded spans.
"""

from __future__ import annotations

import shutil
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
import yaml
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from plantstage.evidence.ledger import read_run
from tests.conftest import EXAMPLE, run_cli


class _Receiver(trace_service_pb2_grpc.TraceServiceServicer,
                metrics_service_pb2_grpc.MetricsServiceServicer):
    """An OTLP/gRPC endpoint that keeps every request it is sent."""

    def __init__(self) -> None:
        self.traces: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.metrics: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self.lock = threading.Lock()

    def Export(self, request, context):  # noqa: N802 - the gRPC method's name
        with self.lock:
            if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
                self.traces.append(request)
                return trace_service_pb2.ExportTraceServiceResponse()
            self.metrics.append(request)
            return metrics_service_pb2.ExportMetricsServiceResponse()

    def spans(self) -> list[tuple[dict, object]]:
        """(resource attributes, span) for every span received."""
        out = []
        for req in self.traces:
            for rs in req.resource_spans:
                res = {a.key: a.value.string_value for a in rs.resource.attributes}
                out.extend((res, s) for ss in rs.scope_spans for s in ss.spans)
        return out


@pytest.fixture
def otlp_grpc():
    receiver = _Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"http://127.0.0.1:{port}", receiver
    server.stop(grace=None)


def _attrs(span) -> dict:
    out = {}
    for a in span.attributes:
        v = a.value
        out[a.key] = (v.string_value if v.HasField("string_value") else
                      v.int_value if v.HasField("int_value") else
                      v.bool_value if v.HasField("bool_value") else
                      [x.string_value for x in v.array_value.values])
    return out


@pytest.fixture(scope="module")
def short_plant(tmp_path_factory) -> Path:
    """The sample plant with the shortest workload phases and a tenth of its production."""
    dest = tmp_path_factory.mktemp("otlp") / "sample-plant"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".plantstage", "__pycache__"))
    spec_path = dest / "plantstage.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    wl = spec.setdefault("workload", {})
    wl.update(duration=1.0, grace=0.5, queue_settle=0)
    wl["paired"] = {**(wl.get("paired") or {}), "duration": 1.0, "block": 0.5, "warmup": 0}
    for binding in spec["environments"]["production"]["bindings"].values():
        gen = binding.get("generate") if isinstance(binding, dict) else None
        if gen and any(str(a).endswith("generate.py") for a in gen):
            binding["generate"] = [*gen, "--scale", "0.1"]
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    from plantstage.spec.loader import load_spec
    from plantstage.verbs import prepare_production

    prepare_production(load_spec(dest), echo=lambda *_: None)
    return dest


@pytest.mark.slow
def test_a_rehearsal_delivers_its_trace_to_an_otlp_receiver(short_plant, tmp_path, otlp_grpc):
    endpoint, receiver = otlp_grpc
    out = tmp_path / "run"
    r = run_cli("rehearse", str(short_plant), "--release", "1.1.0", "--out", str(out),
                env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                     "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_SERVICE_NAME": "rehearsals"})
    assert r.returncode in (0, 1, 3, 5), r.stdout[-3000:] + r.stderr[-3000:]
    _assert_one_trace_per_rehearsal(receiver, out, "rehearsals", "1.1.0")


@pytest.mark.slow
def test_the_mixing_plant_s_rehearsal_too(tmp_path, otlp_grpc):
    """The second example (Flask, plain SQL, its own venv per release), configured with the
    per-signal endpoint variables: the same trace shape, nothing app-specific in it."""
    from tests.examples.mixing_plant import EXAMPLE as MIXING

    endpoint, receiver = otlp_grpc
    out = tmp_path / "run"
    r = run_cli("rehearse", str(MIXING), "--release", "2.1.0", "--out", str(out),
                env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint,
                     "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": endpoint,
                     "PYTHONDONTWRITEBYTECODE": "1"}, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    _assert_one_trace_per_rehearsal(receiver, out, "plantstage", "2.1.0")


def _assert_one_trace_per_rehearsal(receiver: _Receiver, out: Path, service: str,
                                    version: str) -> None:
    ledger = read_run(out / "ledger.sqlite")
    steps = [s["name"] for s in ledger["steps"]]

    spans = receiver.spans()  # flushed before the CLI exited: nothing to wait for
    assert spans, "no span reached the receiver"
    assert len({s.trace_id for _, s in spans}) == 1  # the whole rehearsal is one trace
    roots = [s for _, s in spans if not s.parent_span_id]
    assert [s.name for s in roots] == ["rehearsal"]
    root = roots[0]
    ra = _attrs(root)
    assert ra["plantstage.run_id"] == ledger["run"]["run_id"]
    assert ra["plantstage.release.version"] == version
    assert ra["plantstage.verdict"] == ledger["run"]["verdict"]
    assert {res["service.name"] for res, _ in spans} == {service}

    by_id = {s.span_id: s for _, s in spans}
    step_spans = {s.name: s for s in by_id.values() if s.parent_span_id == root.span_id}
    assert set(step_spans) == set(steps)  # a span per step
    for name, status in ((s["name"], s["status"]) for s in ledger["steps"]):
        assert _attrs(step_spans[name])["plantstage.step.status"] == status
        assert (step_spans[name].status.code == 2) == (status in ("failed", "interrupted"))

    phases = {s.name: s for s in by_id.values() if s.name.startswith("phase ")}
    assert {"phase baseline", "phase paired", "phase candidate"} <= set(phases)  # per phase
    assert by_id[phases["phase baseline"].parent_span_id].name == "baseline-load"
    assert by_id[phases["phase paired"].parent_span_id].name == "paired-load"
    iterations = [s for s in by_id.values() if s.name.startswith("iteration ")]
    assert iterations
    for it in iterations:
        a = _attrs(it)
        assert by_id[it.parent_span_id].name == f"phase {a['plantstage.phase']}"
        assert a["plantstage.tenant"] and a["plantstage.archetype"] and a["plantstage.flow"]

    # The run's signals arrived as the plantstage.signal gauge, one point per signal.
    names = {p_attr.value.string_value
             for req in receiver.metrics for rm in req.resource_metrics
             for sm in rm.scope_metrics for m in sm.metrics if m.name == "plantstage.signal"
             for p in m.gauge.data_points for p_attr in p.attributes if p_attr.key == "signal"}
    assert "workload.baseline.iterations" in names


@pytest.mark.slow
def test_an_interrupted_rehearsal_still_delivers_its_trace(short_plant, tmp_path, otlp_grpc):
    """SIGTERM inside the baseline load (the runner's documented test hook): exit 130, and the
    trace so far arrives, the interrupted step and phase marked as errors."""
    from plantstage.rehearsal.runner import TEST_INTERRUPT_ENV

    endpoint, receiver = otlp_grpc
    out = tmp_path / "run"
    r = run_cli("rehearse", str(short_plant), "--release", "1.1.0", "--out", str(out),
                env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                     TEST_INTERRUPT_ENV: "baseline-load:2000"})
    assert r.returncode == 130, r.stdout[-3000:] + r.stderr[-3000:]
    spans = {s.name: s for _, s in receiver.spans()}
    root = spans["rehearsal"]
    assert _attrs(root)["plantstage.status"] == "interrupted"
    assert _attrs(root)["plantstage.verdict"] == "NO-GO" and root.status.code == 2
    step = spans["baseline-load"]
    assert _attrs(step)["plantstage.step.status"] == "interrupted" and step.status.code == 2
    assert "paired-load" not in spans  # not run: no span
    assert len({s.trace_id for s in spans.values()}) == 1


def test_a_bad_protocol_is_bad_input_before_anything_runs(production_db, tmp_path):
    out = tmp_path / "run"
    r = run_cli("rehearse", str(EXAMPLE), "--release", "1.1.0", "--out", str(out),
                env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
                     "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' is not an OTLP protocol plantstage "
        "can send (hint: grpc or http/protobuf (unset: grpc))"]
    assert not out.exists()


class _HttpReceiver(BaseHTTPRequestHandler):
    received: list[trace_service_pb2.ExportTraceServiceRequest] = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/traces":
            assert self.headers["Content-Type"] == "application/x-protobuf"
            req = trace_service_pb2.ExportTraceServiceRequest()
            req.ParseFromString(body)
            _HttpReceiver.received.append(req)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_http_protobuf_is_honoured(monkeypatch):
    """OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf: the same spans over OTLP/HTTP."""
    from plantstage import telemetry
    from plantstage.spec.loader import load_spec

    srv = ThreadingHTTPServer(("127.0.0.1", 0), _HttpReceiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{srv.server_port}")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", raising=False)
        loaded = load_spec(EXAMPLE)
        tel = telemetry.start_run("r-http", spec="s", release=loaded.spec.release("1.1.0"),
                                  current=loaded.spec.release("1.0.0"))
        tel.step_started(0, "provision")
        tel.step_ended("provision", "failed", "port in use")
        tel.finish("could-not-run", "NO-GO", {"x": 1.0}, "provision: port in use")
    finally:
        srv.shutdown()
    spans = [s for req in _HttpReceiver.received for rs in req.resource_spans
             for ss in rs.scope_spans for s in ss.spans]
    assert sorted(s.name for s in spans) == ["provision", "rehearsal"]
    root = next(s for s in spans if s.name == "rehearsal")
    assert root.status.code == 2 and root.status.message == "provision: port in use"
    assert _attrs(root)["plantstage.status"] == "could-not-run"

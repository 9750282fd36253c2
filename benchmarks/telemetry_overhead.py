"""What OpenTelemetry costs the workload engine, per iteration (docs/telemetry.md, "Overhead").

The same open-model phase (a fixed rate, so every run does the same work) against the fast
local endpoint of workload_vs_locust.py, four ways: telemetry off (no endpoint), on without
iteration spans (the fixed cost: providers, exporter, step and phase spans, the final flush), on
with the default iteration sampling, and on with every iteration a span. Spans go through the SDK's
BatchSpanProcessor and OTLP/gRPC exporter to a real receiver in its own process, so encoding and
sending are counted. CPU seconds of the load generator's process during the phase, over the
iterations it completed.

    .venv/bin/python benchmarks/telemetry_overhead.py [--seconds 5] [--rate 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from workload_vs_locust import _port, _server  # noqa: E402

RECEIVER = textwrap.dedent("""
    import sys, time
    from concurrent import futures
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
    class R(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            return trace_service_pb2.ExportTraceServiceResponse()
    s = grpc.server(futures.ThreadPoolExecutor(2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(R(), s)
    s.add_insecure_port("127.0.0.1:" + sys.argv[1])
    s.start()
    s.wait_for_termination()
""")

PHASE = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, {bench!r})
    from types import SimpleNamespace as NS
    from workload_vs_locust import get_ok
    from plantstage import telemetry
    from plantstage.spec.workload import Workload, WorkloadFlow
    from plantstage.workload.engine import run_phase
    from plantstage.workload.plan import Lane
    wl = Workload(duration={seconds}, concurrency=256, grace=2)
    wf = WorkloadFlow(flow="workload_vs_locust:get_ok", rate={rate})
    rel = NS(name="b", version="1")
    tel = telemetry.start_run("bench", spec="bench", release=rel, current=rel)
    tel.step_started(0, "load")
    cpu0 = time.process_time()
    res = run_phase({url!r}, wl, [], "bench", lanes=[Lane("t", "bench", wf, get_ok,
                    wl.arrival)])
    tel.step_ended("load", "passed")
    tel.finish("completed", "GO")  # flushes: the export's CPU is counted
    cpu = time.process_time() - cpu0
    s = res.signals()
    print(json.dumps({{"iterations": s["workload.bench.iterations"], "cpu": cpu,
                      "dropped": s["workload.bench.get_ok.dropped"]}}))
""")


def run(url: str, seconds: float, rate: float, env: dict[str, str]) -> dict:
    code = PHASE.format(bench=str(Path(__file__).parent), seconds=seconds, rate=rate, url=url)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**clean, **env}).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rate", type=float, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    server, url = _server("fast")
    port = _port()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    time.sleep(1.0)
    on = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{port}"}
    ways = {"off": {}, "on, no iteration span": {**on, "PLANTSTAGE_OTEL_ITERATIONS_PER_S": "0"},
            "sampled (default)": on,
            "every iteration": {**on, "PLANTSTAGE_OTEL_ITERATIONS_PER_S": "1000000"}}
    try:
        print(f"{args.rate:.0f} iterations/s for {args.seconds:g} s, best of {args.repeat}")
        base = None
        for name, env in ways.items():
            best = min((run(url, args.seconds, args.rate, env) for _ in range(args.repeat)),
                       key=lambda d: d["cpu"] / max(1, d["iterations"]))
            us = best["cpu"] / max(1, best["iterations"]) * 1e6
            base = us if base is None else base
            print(f"  {name:22s}: {us:6.1f} µs CPU per iteration, {best['cpu']:.2f} CPU s "
                  f"({best['iterations']:.0f} iterations, {best['dropped']:.0f} dropped), "
                  f"+{us - base:5.1f} µs vs off")
    finally:
        for p in (server, receiver):
            p.terminate()
            p.wait()


if __name__ == "__main__":
    main()

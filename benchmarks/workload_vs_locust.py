"""plantstage's workload engine vs Locust (FastHttpUser), against the same local HTTP endpoint.

1. Throughput: each tool drives the endpoint as hard as it can for the same time; requests per
   second of *load-generator CPU time* (requests/s per core) and the ratio.
2. Latency truth: the endpoint stalls for 1 s every 10 s; plantstage's p99 (open model, latency
   from the intended start) next to Locust's (closed loop: users wait, the stall hides).

    .venv/bin/python benchmarks/workload_vs_locust.py [--seconds 10]

Locust comes with the ``dev`` extra. The throughput endpoint is a minimal keep-alive HTTP/1.1
server on uvloop in its own process (a fixed answer per request, so it is not the bottleneck);
the stalling endpoint is an aiohttp server in its own process. "Per core" divides completed
requests by the CPU seconds of the load generator's process (the machine has other work on it).
plantstage's phase-only figure (CPU seconds of the run, without interpreter start and imports)
is what the "5,000 HTTP steps/s on one core" goal is checked against.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

SERVER = textwrap.dedent("""
    import asyncio, sys, time
    from aiohttp import web
    stall = sys.argv[2] == "stall"
    t0 = time.monotonic()
    async def ok(request):
        if stall:
            phase = (time.monotonic() - t0) % 10.0
            if phase >= 9.0:           # the last second of every 10 s: stalled
                await asyncio.sleep(10.0 - phase)
        return web.Response(body=b'{"ok":true}', content_type="application/json")
    app = web.Application()
    app.router.add_get("/ok", ok)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
""")

#: The throughput endpoint: answers every request (pipelined or not) with one fixed response.
FAST_SERVER = textwrap.dedent("""
    import asyncio, sys
    import uvloop
    BODY = b'{"ok":true}'
    RESP = (b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: "
            + str(len(BODY)).encode() + b"\\r\\n\\r\\n" + BODY)
    class Endpoint(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.buf = transport, b""
        def data_received(self, data):
            self.buf += data
            n = self.buf.count(b"\\r\\n\\r\\n")
            if n:
                self.buf = self.buf[self.buf.rfind(b"\\r\\n\\r\\n") + 4:]
                self.transport.write(RESP * n)
    async def main():
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(Endpoint, "127.0.0.1", int(sys.argv[1]), backlog=1024)
        await srv.serve_forever()
    uvloop.run(main())
""")

LOCUSTFILE = textwrap.dedent("""
    import os
    from locust import constant, constant_throughput
    from locust.contrib.fasthttp import FastHttpUser
    from locust import task
    PACE = float(os.environ.get("PACE", "0"))
    class U(FastHttpUser):
        wait_time = constant_throughput(PACE) if PACE else constant(0)
        @task
        def ok(self):
            self.client.get("/ok")
""")


async def get_ok(ctx):
    """The plantstage user flow: one GET, like the Locust task."""
    r = await ctx.http.get("/ok")
    if r.status_code != 200:
        from plantstage.api import FlowError

        raise FlowError(f"http_{r.status_code}")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(mode: str) -> tuple[subprocess.Popen, str]:
    port = _port()
    code = FAST_SERVER if mode == "fast" else SERVER
    p = subprocess.Popen([sys.executable, "-c", code, str(port), mode])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return p, f"http://127.0.0.1:{port}"


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_plantstage(url: str, seconds: float, rate: float, concurrency: int) -> dict:
    """In a subprocess, so its CPU time is measured the same way as Locust's."""
    code = textwrap.dedent(f"""
        import json, sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from workload_vs_locust import get_ok
        from plantstage.spec.workload import Workload, WorkloadFlow
        from plantstage.workload.engine import run_phase
        from plantstage.workload.plan import Lane
        wl = Workload(duration={seconds}, concurrency={concurrency}, grace=2)
        wf = WorkloadFlow(flow="workload_vs_locust:get_ok", rate={rate})
        cpu0 = time.process_time()
        res = run_phase({url!r}, wl, [], "bench", lanes=[Lane("t", "bench", wf, get_ok,
                        wl.arrival)])
        phase_cpu = time.process_time() - cpu0
        s = res.signals()
        d = {{k.split(".")[-1]: v for k, v in s.items() if k.startswith("workload.bench.get_ok.")}}
        d["phase_cpu"], d["seconds"] = phase_cpu, s["workload.bench.seconds"]
        print(json.dumps(d))
    """)
    before = _children_cpu()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    cpu = _children_cpu() - before
    import json

    d = json.loads(out.strip().splitlines()[-1])
    ok = d["count"] - d["errors"]
    return {"requests": ok, "rps": ok / d["seconds"], "cpu": cpu, "per_core": ok / cpu,
            "phase_cpu": d["phase_cpu"], "per_core_phase": ok / d["phase_cpu"],
            "p95_ms": d.get("p95_ms"), "p99_ms": d.get("p99_ms"), "dropped": d["dropped"],
            "errors": d["errors"]}


def run_locust(url: str, seconds: float, users: int, pace: float = 0) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        lf = Path(tmp) / "locustfile.py"
        lf.write_text(LOCUSTFILE)
        before = _children_cpu()
        subprocess.run([sys.executable, "-m", "locust", "-f", str(lf), "--headless", "-u",
                        str(users), "-r", str(users), "-t", f"{int(seconds)}s", "--host", url,
                        "--csv", str(Path(tmp) / "r"), "--only-summary", "--loglevel", "ERROR"],
                       capture_output=True, text=True, env={**os.environ, "PACE": str(pace)})
        cpu = _children_cpu() - before
        with open(Path(tmp) / "r_stats.csv") as f:
            row = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    n = int(row["Request Count"]) - int(row["Failure Count"])
    return {"requests": n, "rps": n / seconds, "cpu": cpu, "per_core": n / cpu,
            "p95_ms": float(row["95%"]), "p99_ms": float(row["99%"]),
            "errors": int(row["Failure Count"])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    print(f"CPU cores: {os.cpu_count()}; each tool runs alone against the same endpoint.\n")

    server, url = _server("fast")
    try:
        # Open model: ask for more than one core can do; completed requests are what counts.
        ps = run_plantstage(url, args.seconds, rate=12000, concurrency=64)
        lc = run_locust(url, args.seconds, users=64)
    finally:
        server.terminate()
        server.wait()
    print("1. Throughput (requests/s per core = completed requests / CPU seconds of the tool)")
    print(f"   plantstage : {ps['rps']:8.0f} req/s wall, {ps['per_core']:8.0f} req/s per core "
          f"({ps['requests']} requests, {ps['cpu']:.1f} CPU s, {ps['dropped']:.0f} dropped at the "
          "concurrency limit)")
    print(f"   locust     : {lc['rps']:8.0f} req/s wall, {lc['per_core']:8.0f} req/s per core "
          f"({lc['requests']} requests, {lc['cpu']:.1f} CPU s)")
    print(f"   ratio plantstage/locust per core: {ps['per_core'] / lc['per_core']:.2f}")
    print(f"   plantstage during the phase only: {ps['per_core_phase']:8.0f} HTTP steps per CPU "
          f"second ({ps['phase_cpu']:.1f} CPU s; goal: at least 5,000 on one core)\n")

    seconds = max(args.seconds, 20)
    server, url = _server("stall")
    try:
        ps = run_plantstage(url, seconds, rate=200, concurrency=1000)
        lc = run_locust(url, seconds, users=20, pace=10)  # 20 users × 10/s = 200 req/s
    finally:
        server.terminate()
        server.wait()
    print(f"2. Latency truth: 200 req/s for {seconds:.0f} s; the endpoint stalls 1 s every 10 s "
          "(10% of the time)")
    print("   (truth: a request arriving at a random moment waits out the stall 10% of the time,"
          " 0.5 s on average, so p95 ≈ 500 ms and p99 ≈ 900 ms)")
    print(f"   plantstage p95 {ps['p95_ms']:7.1f} ms, p99 {ps['p99_ms']:7.1f} ms "
          f"({ps['requests']:.0f} requests)")
    print(f"   locust     p95 {lc['p95_ms']:7.1f} ms, p99 {lc['p99_ms']:7.1f} ms "
          f"({lc['requests']} requests; closed loop: users wait out the stall instead of "
          "sending, so it is under-sampled)")


if __name__ == "__main__":
    main()

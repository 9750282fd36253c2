"""The engine against a real local HTTP server (threads), with user flows."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from plantstage.api import FlowContext
from plantstage.errors import PlantstageError
from plantstage.signals import SignalStore
from plantstage.spec.workload import Workload
from plantstage.workload.engine import run_phase
from plantstage.workload.plan import Lane


class _Handler(BaseHTTPRequestHandler):
    stall_until = 0.0

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/stall"):
            time.sleep(max(0.0, _Handler.stall_until - time.time()))
        if self.path.startswith("/hang"):
            time.sleep(5)
        code = 500 if self.path.startswith("/fail") else 200
        body = b'{"ok": true}'
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


async def ok_flow(ctx: FlowContext) -> None:
    async with ctx.step("get"):
        r = await ctx.http.get(ctx.params.get("path", "/ok"))
    ctx.expect(r, 200)
    n = {"polls": 0}

    async def third_time():
        n["polls"] += 1
        return n["polls"] >= 3

    await ctx.wait_until(third_time, name="effect", timeout=2, interval=0.001)
    ctx.record_e2e(0.25)
    ctx.count("things_done")
    ctx.signal("level", 3 if ctx.ref.endswith("-1") else 1)
    assert ctx.tenant.code == "t1" and ctx.tenant.archetype == "arch-a"
    assert ctx.phase == "test" and ctx.flow == "x"


async def broken_flow(ctx: FlowContext) -> None:
    raise ValueError("a bug in a user flow")


async def legacy_return_flow(ctx: FlowContext) -> dict:
    return {"returned": 2}


def _lanes(fn, workload, **flow):
    from plantstage.spec.workload import WorkloadFlow

    wf = WorkloadFlow(flow="test_workload_engine:x", **flow)
    return [Lane("t1", "arch-a", wf, fn, wf.arrival or workload.arrival)]


def _run(server, fn, *, duration=1.0, concurrency=16, grace=2.0, store=None, **flow):
    wl = Workload(duration=duration, concurrency=concurrency, grace=grace)
    return run_phase(server, wl, [], "test", lanes=_lanes(fn, wl, **flow), store=store)


def test_counts_steps_e2e_and_business_counters(server):
    store = SignalStore()
    res = _run(server, ok_flow, rate=20, store=store)
    s = res.signals()
    assert s["workload.test.x.count"] == 20
    assert s["workload.test.x.errors"] == 0
    assert s["workload.test.x.things_done"] == 20
    assert s["workload.test.x.level"] == 3  # a gauge keeps the highest value
    assert s["workload.test.business.things_done"] == 20
    assert "workload.test.x.step.get.p95_ms" in s
    assert "workload.test.x.step.wait-effect.p95_ms" in s
    assert s["workload.test.x.e2e_p50_ms"] == pytest.approx(250, rel=0.01)
    assert s["workload.test.archetype.arch-a.iterations"] == 20
    assert store.values() == s  # the store holds exactly the phase's signals
    assert any(k.endswith(".throughput") for k in store.series())


def test_errors_are_counted_by_kind(server):
    s = _run(server, ok_flow, rate=10, params={"path": "/fail"}).signals()
    assert s["workload.test.errors.http_500"] == 10
    assert s["workload.test.error_rate"] == 1.0
    s = _run(server, broken_flow, rate=10).signals()
    assert s["workload.test.errors.exception_ValueError"] == 10
    s = _run(server, legacy_return_flow, rate=5).signals()
    assert s["workload.test.x.returned"] == 10


def test_latency_counts_from_the_intended_start(server):
    """A stalled server shows in the percentiles (no coordinated omission)."""
    _Handler.stall_until = time.time() + 0.8
    s = _run(server, ok_flow, rate=20, params={"path": "/stall"}).signals()
    # The iteration meant to start at t=0 waited for the whole stall; later ones less, but
    # every iteration scheduled during the stall waited until it ended.
    assert s["workload.test.x.max_ms"] >= 700
    assert s["workload.test.x.p50_ms"] >= 200
    assert s["workload.test.x.count"] == 20


def test_concurrency_limit_drops_and_counts(server):
    s = _run(server, ok_flow, rate=40, concurrency=2, grace=6,
             params={"path": "/hang"}).signals()
    assert s["workload.test.x.dropped"] >= 30
    assert s["workload.test.x.count"] + s["workload.test.x.dropped"] == 40


def test_a_run_ends_even_when_the_server_hangs(server):
    res = _run(server, ok_flow, rate=5, duration=0.5, grace=0.2, params={"path": "/hang"})
    s = res.signals()
    assert s["workload.test.errors.unfinished"] == s["workload.test.x.count"] > 0
    assert res.seconds < 5  # the handler hangs 5 s; the run did not wait for it


def test_a_refusing_target_is_one_clear_error():
    with pytest.raises(PlantstageError, match="does not accept connections"):
        _run("http://127.0.0.1:1", ok_flow, rate=1)


def test_rate_scales_the_lanes(server):
    wl = Workload(duration=1.0)
    res = run_phase(server, wl, [], "test", lanes=_lanes(ok_flow, wl, rate=1), rate=30)
    assert res.signals()["workload.test.x.count"] == 30




def test_time_series_keep_counting_after_the_first_window(server):
    # Iterations hold the window they were started with; resetting it must not orphan them.
    store = SignalStore()
    _run(server, ok_flow, rate=20, duration=3.5, store=store)
    thr = [v for _t, v in store.series("workload.test.x.throughput")["workload.test.x.throughput"]]
    assert len(thr) >= 3
    assert all(v > 0 for v in thr[1:3]), thr
    p95 = store.series("workload.test.x.p95_ms")["workload.test.x.p95_ms"]
    assert len(p95) >= 3

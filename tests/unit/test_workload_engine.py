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


# -- the paired phase: two targets, alternating blocks -----------------------------------------

def _counting_server(fail: bool = False):
    """A server that counts the requests it answered (500 for every one when ``fail``)."""

    class Handler(BaseHTTPRequestHandler):
        hits = 0

        def do_GET(self):  # noqa: N802
            type(self).hits += 1
            body = b"{}"
            self.send_response(500 if fail else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, Handler, f"http://127.0.0.1:{srv.server_address[1]}"


@pytest.fixture()
def two_versions():
    made = [_counting_server(), _counting_server()]
    yield made
    for srv, _h, _u in made:
        srv.shutdown()


async def get_flow(ctx: FlowContext) -> None:
    ctx.expect(await ctx.http.get("/ok"), 200)


class _Hits:
    """A counter probe: requests both servers answered so far (monotonic)."""

    def __init__(self, *handlers):
        self.handlers = handlers
        self.reads = 0

    def read(self) -> dict[str, float]:
        self.reads += 1
        return {"hits": float(sum(h.hits for h in self.handlers))}


def _paired(old_url, new_url, *, duration=2.0, block=0.25, rate=20, store=None, meters=None,
            warmup=0.0):
    from plantstage.workload.engine import Paired

    wl = Workload(duration=duration, grace=2.0, queue_settle=0)
    return run_phase(new_url, wl, [], "paired", lanes=_lanes(get_flow, wl, rate=rate),
                     store=store, paired=Paired(old_url, new_url, block, warmup),
                     meters=meters)


def test_block_order_is_balanced_and_seeded():
    from plantstage.workload.engine import block_order

    for seed in range(20):
        order = block_order(12, seed)
        assert len(order) == 12
        for k in range(0, 12, 2):  # every pair holds one block of each version
            assert sorted(order[k:k + 2]) == ["new", "old"]
        # …and a flow starting every other block meets both versions equally often
        assert order[0::2].count("old") == order[1::2].count("old") == 3
        assert order == block_order(12, seed)  # the same seed, the same order
    assert len({tuple(block_order(10, s)) for s in range(20)}) > 1
    odd = block_order(7, 3)
    assert len(odd) == 7 and abs(odd.count("old") - odd.count("new")) == 1


def test_paired_phase_splits_one_schedule_between_both_targets(two_versions, tmp_path):
    from plantstage.workload.engine import block_order

    (_s1, old_h, old_url), (_s2, new_h, new_url) = two_versions
    store = SignalStore(tmp_path / "signals.sqlite")
    res = _paired(old_url, new_url, store=store)
    s = res.signals()
    order = block_order(8, Workload().seed)
    assert res.blocks == order
    # Constant arrival at 20/s, 0.25 s blocks: five iterations per block, each version its four.
    assert s["workload.paired.old.x.count"] == 20 == old_h.hits
    assert s["workload.paired.new.x.count"] == 20 == new_h.hits
    assert s["workload.paired.iterations"] == 40
    assert s["workload.paired.old.error_rate"] == s["workload.paired.new.error_rate"] == 0
    assert s["workload.paired.blocks"] == 8 and s["workload.paired.old.blocks"] == 4
    assert "workload.paired.new.x.p50_ms" in s
    # Raw samples: each in a block of its own version, with its latency and outcome.
    for version in ("old", "new"):
        rows = store.samples("paired", "x", version)
        assert len(rows) == 20
        assert all(order[block] == version and ok and ms > 0 and tenant == "t1"
                   for block, _t, ms, ok, tenant in rows)  # the stratum: the lane's tenant
        assert all(block * 0.25 - 1e-6 <= t < (block + 1) * 0.25
                   for block, t, _ms, _ok, _tenant in rows)
    store.close()
    again = SignalStore.open(tmp_path / "signals.sqlite")  # re-judged from the recording
    assert again.samples("paired", "x", "old") == store.samples("paired", "x",
                                                                       "old")
    assert again.sample_keys() == [("paired", "new", "x"), ("paired", "old", "x")]


def test_the_old_versions_errors_are_its_own():
    made = [_counting_server(fail=True), _counting_server()]
    try:
        (_s1, _h1, old_url), (_s2, _h2, new_url) = made
        s = _paired(old_url, new_url, duration=1.0).signals()
        assert s["workload.paired.old.error_rate"] == 1.0
        assert s["workload.paired.old.errors.http_500"] == s["workload.paired.old.x.count"]
        assert s["workload.paired.new.error_rate"] == 0.0
        assert 0 < s["workload.paired.error_rate"] < 1
    finally:
        for srv, _h, _u in made:
            srv.shutdown()


def test_meters_are_read_per_block_and_attributed_to_its_version(two_versions):
    from plantstage.workload.engine import Meter

    (_s1, old_h, old_url), (_s2, new_h, new_url) = two_versions
    probe = _Hits(old_h, new_h)
    s = _paired(old_url, new_url, meters=[Meter(probe)]).signals()
    assert probe.reads == 8 + 2  # phase start, 7 inner block boundaries, load end, after it
    assert s["cost.paired.hits"] == 40
    assert s["cost.paired.hits.per_iteration"] == 1.0
    assert s["cost.paired.old.hits"] + s["cost.paired.new.hits"] == 40
    assert s["cost.paired.old.hits"] > 0 and s["cost.paired.new.hits"] > 0
    assert "cost.paired.old.hits.per_iteration" in s


def test_a_single_phase_keeps_samples_and_meter_deltas(server):
    from plantstage.workload.engine import Meter

    class Calls:
        n = 0

        def read(self):
            Calls.n += 3
            return {"calls": float(Calls.n)}

    store = SignalStore()
    wl = Workload(duration=1.0, grace=2.0)
    res = run_phase(server, wl, [], "candidate", lanes=_lanes(get_flow, wl, rate=10),
                    store=store, version="new",
                    meters=[Meter(Calls(), lambda sc, c: f"x.{sc}.{c}")])
    s = res.signals()
    assert s["x.candidate.calls"] == 3  # read at the start and at the end
    assert s["x.candidate.calls.per_iteration"] == pytest.approx(0.3)
    rows = store.samples("candidate", "x", "new")
    assert len(rows) == 10 and {b for b, *_ in rows} == {0} and rows[0][4] == "t1"
    assert store.samples("candidate", "x", "old") == []


def test_a_failing_probe_costs_its_signals_not_the_phase(server):
    from plantstage.workload.engine import Meter

    class Broken:
        def read(self):
            raise RuntimeError("no stats view")

    wl = Workload(duration=0.5, grace=1.0)
    s = run_phase(server, wl, [], "baseline", lanes=_lanes(get_flow, wl, rate=10),
                  meters=[Meter(Broken())]).signals()
    assert s["workload.baseline.x.count"] == 5
    assert not any(k.startswith("cost.") for k in s)


def test_warmup_traffic_reaches_both_versions_and_is_not_measured(two_versions, tmp_path):
    (_s1, old_h, old_url), (_s2, new_h, new_url) = two_versions
    store = SignalStore()
    s = _paired(old_url, new_url, duration=1.0, warmup=0.5, store=store).signals()
    # 0.5 s of warm-up at 20/s: ten iterations, five to each version, none counted.
    assert old_h.hits == new_h.hits == 15
    assert s["workload.paired.old.x.count"] == s["workload.paired.new.x.count"] == 10
    rows = store.samples("paired", "x", "old") + store.samples("paired", "x", "new")
    assert len(rows) == 20 and min(r[1] for r in rows) == pytest.approx(0.0)


def test_every_pair_of_blocks_gives_both_versions_the_same_arrivals():
    """Poisson draws and shift patterns too: the arrivals of a pair are mirrored, so each
    version gets the same count at the same offsets into its block."""
    import random

    from plantstage.spec.workload import Arrival
    from plantstage.workload.engine import paired_offsets

    for arrival in (Arrival(model="poisson"),
                    Arrival(model="shift", pattern=[{"seconds": 2, "factor": 0.5},
                                                    {"seconds": 1, "factor": 2}])):
        items = paired_offsets(arrival, 3.0, 1.0, 7, 1.0, 0.3, random.Random(5))
        assert items == sorted(items)
        warm = [o for o, b in items if b < 0]
        assert warm and all(o < 1.0 for o in warm)
        by_block: dict[int, list[float]] = {}
        for o, b in items:
            if b >= 0:
                assert 1.0 + b <= o + 1e-9 < 1.0 + b + 1  # inside its block
                by_block.setdefault(b, []).append(round(o - 1.0 - b, 9))
        for p in range(7):
            assert by_block.get(2 * p, []) == by_block.get(2 * p + 1, [])


def test_a_paired_duration_rounds_to_whole_pairs(two_versions):
    (_s1, _h1, old_url), (_s2, _h2, new_url) = two_versions
    res = _paired(old_url, new_url, duration=1.1, block=0.25, rate=8)
    assert len(res.blocks) == 4  # 1.1 s of 0.25 s blocks → two whole pairs
    s = res.signals()
    assert s["workload.paired.old.x.count"] == s["workload.paired.new.x.count"]

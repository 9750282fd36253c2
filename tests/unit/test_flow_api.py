"""The FlowContext: tenant master data, the staging database, twins, errors (real HTTP, SQLite)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from plantstage import api
from plantstage.errors import PlantstageError
from plantstage.spec.loader import load_spec


class _App(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        routes = {
            "/t/north/items": [{"code": "A", "meta": {"kg": 1}}, {"code": "B", "meta": {"kg": 2}}],
            "/t/north/wrapped": {"data": {"rows": [{"id": 7}, {"id": 8}]}},
            "/t/north/object": {"not": "a list"},
        }
        body = routes.get(self.path)
        code = 200 if body is not None else 404
        data = json.dumps(body if body is not None else {"detail": "no such page"}).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def app():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _App)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


FLOWS = '''
from plantstage.api import FlowContext, FlowError


async def show_data(ctx: FlowContext) -> None:
    for name, values in ctx.tenant.data.items():
        ctx.count(f"n_{name}", len(values))
    assert ctx.tenant.data.get("codes", ["A"])[0] == "A"
    assert ctx.phase == "once" and ctx.params.get("p") in (None, 1)


async def db_flow(ctx: FlowContext) -> None:
    rows = await ctx.db.query("SELECT qty FROM stock WHERE tenant = :t", t=ctx.tenant.code)
    ctx.signal("qty", rows[0][0])
    await ctx.db.wait_until("SELECT COUNT(*) FROM stock", lambda r: r[0][0] >= 1, name="rows")


async def db_timeout(ctx: FlowContext) -> None:
    await ctx.db.wait_until("SELECT COUNT(*) FROM stock", lambda r: r[0][0] > 99,
                            name="never", timeout=0.05)


async def twin_flow(ctx: FlowContext) -> None:
    mes = ctx.twin("mes-line")
    ack = await mes.publish(ctx.tenant.code, {"qty": "2.750"})
    ctx.count("acked", int(ack["status"] == "posted"))
    ctx.count("same_loop", int(ack["loop_is_twin_loop"]))
    ctx.count("has_url", int(mes.url == "http://twin.invalid:1"))
    assert not ctx.has_twin("wms")
    ctx.twin("wms")
'''


def _project(tmp: Path, tenant_data: dict, db: str | None = None) -> Path:
    spec = {
        "version": 1, "name": "t",
        "estate": {"components": {"app": {"kind": "service", "tier": 1}},
                   "tenants": [{"code": "north"}]},
        "environments": {"production": {"bindings": {"app": {"url": "http://prod.invalid"}}},
                         "staging": {"bindings": {"app": {"url": "http://127.0.0.1:1"}}}},
        "current": "1",
        "releases": [{"name": "1", "version": "1",
                      "artifact": {"path": ".", "sha256": "0" * 64}}],
        "workload": {"tenant_data": tenant_data},
    }
    (tmp / "plantstage.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (tmp / "apiflows.py").write_text(FLOWS)
    return tmp


def _db(tmp: Path) -> str:
    path = tmp / "stage.sqlite"
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE stock (tenant TEXT, item TEXT, qty REAL)")
        c.executemany("INSERT INTO stock VALUES (?, ?, ?)", [("north", "A", 2.75),
                                                              ("north", "B", 1.0)])
    return f"sqlite:///{path}"


def test_tenant_data_from_http_and_sql(app, tmp_path):
    url = _db(tmp_path)
    loaded = load_spec(_project(tmp_path, {
        "codes": {"http": "/t/{tenant}/items", "field": "code"},
        "kgs": {"http": "/t/{tenant}/items", "field": "meta.kg"},
        "ids": {"http": "/t/{tenant}/wrapped", "items": "data.rows", "field": "id"},
        "items": {"sql": "SELECT item FROM stock WHERE tenant = :tenant"},
        "rows": {"sql": "SELECT item, qty FROM stock WHERE tenant = :tenant"},
    }))
    out = api.run_flow_once(loaded, "apiflows:show_data", base_url=app,
                            resources=api.RunResources(database_url=url))
    assert {k: v for k, v in out.items() if k.startswith("n_")} == {
        "n_codes": 2, "n_kgs": 2, "n_ids": 2, "n_items": 2, "n_rows": 2}


@pytest.mark.parametrize("source,message", [
    ({"http": "/t/{tenant}/missing"},
     "workload.tenant_data.x (tenant 'north'): GET /t/north/missing answered HTTP 404: "
     '{"detail": "no such page"}'),
    ({"http": "/t/{tenant}/object"}, "answered a dict, not a list"),
    ({"http": "/t/{tenant}/items", "field": "nope"}, "element 0 has no field 'nope'"),
    ({"sql": "SELECT code FROM nowhere WHERE t = :tenant"}, "the SQL source needs the staging "
     "database"),
])
def test_tenant_data_errors_name_the_source(app, tmp_path, source, message):
    loaded = load_spec(_project(tmp_path, {"x": source}))
    with pytest.raises(PlantstageError) as e:
        api.run_flow_once(loaded, "apiflows:show_data", base_url=app)
    assert message in e.value.message
    assert e.value.where.startswith(f"{loaded.path}:")
    assert e.value.where.endswith("workload.tenant_data.x")


def test_a_bad_query_names_the_source(app, tmp_path):
    loaded = load_spec(_project(tmp_path, {"x": {"sql": "SELECT code FROM nowhere"}}))
    with pytest.raises(PlantstageError, match="workload.tenant_data.x .* the query failed"):
        api.run_flow_once(loaded, "apiflows:show_data", base_url=app,
                          resources=api.RunResources(database_url=_db(tmp_path)))


def test_tenant_data_source_needs_exactly_one_kind(tmp_path):
    with pytest.raises(PlantstageError, match="exactly one of 'http' or 'sql'"):
        load_spec(_project(tmp_path, {"x": {"field": "code"}}))


def test_the_database_is_read_only_and_waits(app, tmp_path):
    url = _db(tmp_path)
    loaded = load_spec(_project(tmp_path, {}))
    out = api.run_flow_once(loaded, "apiflows:db_flow", base_url=app,
                            resources=api.RunResources(database_url=url))
    assert out["qty"] == 2.75 and "step.wait-rows.ms" in out
    with pytest.raises(api.FlowError) as e:
        api.run_flow_once(loaded, "apiflows:db_timeout", base_url=app,
                          resources=api.RunResources(database_url=url))
    assert e.value.kind == "timeout_never"
    with pytest.raises(api.FlowError) as e:
        api.run_flow_once(loaded, "apiflows:db_flow", base_url=app)
    assert e.value.kind == "no_database"


class _Runtime:
    """A twin's own event loop in a thread, as plantstage's twin runtime has."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class _FakeMes:
    def __init__(self, runtime):
        self.runtime = runtime

    def endpoints(self):
        return {"http": "http://twin.invalid:1"}

    async def publish(self, tenant, values, *, key=None):
        await asyncio.sleep(0)
        return {"status": "posted",
                "loop_is_twin_loop": asyncio.get_running_loop() is self.runtime.loop}


class _TwinSet:
    def __init__(self, twins):
        self.twins = twins


def test_twins_by_component_on_their_own_loop(app, tmp_path):
    rt = _Runtime()
    try:
        loaded = load_spec(_project(tmp_path, {}))
        res = api.RunResources(twin_set=_TwinSet({"mes-line": _FakeMes(rt)}))
        with pytest.raises(api.FlowError) as e:
            api.run_flow_once(loaded, "apiflows:twin_flow", base_url=app, resources=res)
        assert e.value.kind == "no_twin_wms"  # after the MES part succeeded (below)
    finally:
        rt.stop()


def test_twin_flow_counts(app, tmp_path):
    rt = _Runtime()
    try:
        (tmp_path / "twinonly.py").write_text(FLOWS.replace('    ctx.twin("wms")\n', ""))
        loaded = load_spec(_project(tmp_path, {}))
        res = api.RunResources(twin_set=_TwinSet({"mes-line": _FakeMes(rt)}))
        out = api.run_flow_once(loaded, "twinonly:twin_flow", base_url=app, resources=res)
        assert (out["acked"], out["same_loop"], out["has_url"]) == (1, 1, 1)
    finally:
        rt.stop()


def test_expect_and_flow_errors():
    class R:
        status_code = 409
        content = b'{"detail": "duplicate"}' + b"x" * 500

        def json(self):
            return json.loads(self.content)

    ctx = api.FlowContext.__new__(api.FlowContext)
    with pytest.raises(api.FlowError) as e:
        ctx.expect(R(), 200)
    assert e.value.kind == "http_409" and len(e.value.detail) == 200
    R.status_code = 200
    R.content = b'{"ok": 1}'
    assert ctx.expect(R(), (200, 201)) == {"ok": 1}


def test_flow_decorator_checks_its_input():
    with pytest.raises(ValueError, match="letters, digits"):
        api.flow("has.dot")

    def not_async(ctx):
        pass

    with pytest.raises(TypeError, match="must be an async function"):
        api.flow("x")(not_async)

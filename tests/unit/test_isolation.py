"""Tenant isolation probes against a tiny real HTTP app (stdlib server on a free port)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import pytest
from pydantic import ValidationError

from plantstage.rehearsal.steps.isolation import (
    Ownership,
    is_empty,
    run_probes,
    scan,
    walk,
)
from plantstage.spec.isolation import IsolationRequest, IsolationSpec, Marker

ORDERS = {"north": [{"number": "N-001", "tenant_id": 1}, {"number": "N-002", "tenant_id": 1}],
          "south": [{"number": "S-001", "tenant_id": 2}]}


def _app(leaky_list: bool, leaky_object: bool):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _send(self, status: int, body) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            parts = [unquote(p) for p in urlsplit(self.path).path.strip("/").split("/")]
            if len(parts) >= 2 and parts[0] in ORDERS and parts[1] == "orders":
                tenant = parts[0]
                if len(parts) == 2:
                    rows = [o for t in ORDERS.values() for o in t] if leaky_list \
                        else ORDERS[tenant]
                    return self._send(200, {"items": rows})
                for owner, rows in ORDERS.items():
                    for o in rows:
                        if o["number"] == parts[2] and (owner == tenant or leaky_object):
                            return self._send(200, o)
                return self._send(404, {"detail": "not found"})
            return self._send(404, {"detail": "no route"})

    return Handler


@pytest.fixture
def serve():
    servers = []

    def start(leaky_list=False, leaky_object=False) -> str:
        srv = ThreadingHTTPServer(("127.0.0.1", 0), _app(leaky_list, leaky_object))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _spec() -> IsolationSpec:
    return IsolationSpec.model_validate({
        "markers": [{"sql": "SELECT 1"}],
        "requests": [{"name": "orders", "path": "/{tenant}/orders",
                      "object_path": "/{tenant}/orders/{id}", "object_ids": "SELECT 1"}]})


def _own() -> Ownership:
    own = Ownership(codes={"north", "south"}, keys={"1": "north", "2": "south"},
                    tenant_fields={"tenant_id"})
    for tenant, rows in ORDERS.items():
        for o in rows:
            own.add(tenant, o["number"], numbers=False, min_length=3)
    return own


IDS = {"orders": {"north": ["N-001", "N-002"], "south": ["S-001"]}}


def test_a_clean_app_passes(serve):
    out = run_probes(serve(), _spec(), ["north", "south"], _own(), IDS)
    assert (out["leaks"], out["object_leaks"], out["unchecked"]) == (0, 0, 0)
    assert out["requests"] == 2 and out["objects"] == 3  # north asks 1 of south's, south 2
    assert all(c["http"] == 200 for c in out["controls"])  # each tenant reads its own


def test_a_list_without_tenant_filter_leaks_with_field_and_example(serve):
    out = run_probes(serve(leaky_list=True), _spec(), ["north", "south"], _own(), IDS)
    assert out["leaks"] == 2 and out["object_leaks"] == 0
    first = out["leaking"][0]
    assert first["tenant"] == "north" and first["tenants"] == ["south"]
    assert first["example"]["field"] == "$.items[2].number"
    assert first["example"]["value"] == "S-001"
    assert "GET /north/orders as north" in first["detail"]


def test_an_object_lookup_without_tenant_check_is_an_object_leak(serve):
    out = run_probes(serve(leaky_object=True), _spec(), ["north"], _own(), IDS)
    assert out["leaks"] == 0 and out["object_leaks"] == 1
    leak = out["object_leaking"][0]
    assert (leak["tenant"], leak["owner"], leak["id"], leak["http"]) == \
        ("north", "south", "S-001", 200)


def test_no_answer_is_unchecked_never_clean(serve):
    spec = IsolationSpec.model_validate({"requests": [{"path": "/{tenant}/nothing"}]})
    out = run_probes(serve(), spec, ["north"], _own(), {})
    assert out["unchecked"] == 1 and out["checked"] == 0 and out["leaks"] == 0


def test_scan_tenant_fields_codes_and_markers():
    own = _own()
    doc = {"a": [{"tenant_id": 2}, {"note": "south"}, {"ref": "N-001"}, {"qty": 2}]}
    found = scan(doc, "north", own)
    assert [(f["field"], f["why"]) for f in found] == [
        ("$.a[0].tenant_id", "tenant field 'tenant_id'"), ("$.a[1].note", "a tenant code")]
    assert scan(doc, "south", own)[0]["field"] == "$.a[2].ref"  # north's marker
    assert list(walk({"t": ["x"]})) == [("$.t[0]", "t", "x")]


@pytest.mark.parametrize("text,empty", [("", True), ("[]", True), ("{}", True),
                                        ("null", True), ('{"a": 1}', False), ("x", False)])
def test_empty_answers(text, empty):
    assert is_empty(text) is empty


def test_spec_shape_errors():
    with pytest.raises(ValidationError, match="must name the tenant"):
        IsolationRequest.model_validate({"path": "/orders"})
    with pytest.raises(ValidationError, match="together"):
        IsolationRequest.model_validate({"path": "/{tenant}/o", "object_path": "/{tenant}/{id}"})
    with pytest.raises(ValidationError, match=r"\{id\}"):
        IsolationRequest.model_validate({"path": "/{tenant}/o", "object_path": "/{tenant}/x",
                                         "object_ids": "SELECT 1"})
    with pytest.raises(ValidationError, match="unknown placeholder"):
        IsolationRequest.model_validate({"path": "/{tenant}/{oops}"})
    with pytest.raises(ValidationError, match="'sql', or 'table'"):
        Marker.model_validate({"column": "x"})
    assert Marker.model_validate({"table": "orders", "column": "number"}).query() == \
        "SELECT tenant_id, number FROM orders"
    with pytest.raises(ValidationError):
        Marker.model_validate({"table": "orders; DROP TABLE x", "column": "number"})


# -- rings: the spec's rules and the scoped spec (the CLI path is tests/integration/test_rings) --
def _sample(rings: list[dict] | None = None):
    import yaml

    from plantstage.spec.models import Spec
    from tests.conftest import EXAMPLE

    data = yaml.safe_load((EXAMPLE / "plantstage.yaml").read_text())
    if rings is not None:
        data["rings"] = rings
    return Spec.model_validate(data)


@pytest.mark.parametrize("rings,problem", [
    ([{"name": "a", "tenants": ["nobody"]}], "'nobody' is not an estate tenant"),
    ([{"name": "a", "tenants": "*"}, {"name": "b", "tenants": ["acme-discrete"]}],
     "only on the last ring"),
    ([{"name": "a", "tenants": ["acme-discrete"], "entry": "verdict == 'GO'"}],
     "the first ring has no previous ring"),
    ([{"name": "a", "tenants": ["acme-discrete"]}, {"name": "a", "tenants": "*"}],
     "used twice"),
    ([{"name": "a", "tenants": ["acme-discrete"]},
      {"name": "b", "tenants": ["acme-discrete"]}], "already in ring 'a'"),
    ([{"name": "a", "tenants": ["acme-discrete"]},
      {"name": "b", "tenants": "*", "entry": "verdict =="}], "rings[1].entry"),
])
def test_ring_rules(rings, problem):
    with pytest.raises(ValidationError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        _sample(rings)


def test_ring_tenants_are_cumulative_and_the_scope_drives_only_them():
    from dataclasses import dataclass
    from pathlib import Path

    from plantstage.rings import ring_tenants, scoped

    spec = _sample([{"name": "one", "tenants": ["delta-integrated"]},
                    {"name": "two", "tenants": ["acme-discrete"]},
                    {"name": "all", "tenants": "*"}])
    assert ring_tenants(spec, "one") == ["delta-integrated"]
    assert ring_tenants(spec, "two") == ["acme-discrete", "delta-integrated"]  # estate order
    assert len(ring_tenants(spec, "all")) == 4

    @dataclass
    class Loaded:
        spec: object
        path: Path = Path("plantstage.yaml")

    two = scoped(Loaded(spec), "two").spec
    assert two.workload.tenants == ["acme-discrete", "delta-integrated"]
    assert spec.workload.tenants != two.workload.tenants  # the original is untouched
    assert len(two.estate.tenants) == 4  # every tenant is still 'another tenant'


def test_entry_sees_the_previous_runs_evidence(tmp_path):
    import json as _json

    from plantstage.rings import RingRun, check_entry

    ev = {"verdict": "GO", "release": {"name": "1.1.0", "sha256": "ab"},
          "signals": {"isolation.leaks": 0.0}, "score": {"pct": 96.0},
          "gates": [{"name": "tenant-isolation", "outcome": "pass"}]}
    (tmp_path / "evidence.json").write_text(_json.dumps(ev))
    run = RingRun(tmp_path, "pilot", "GO", "ab", "1.1.0", 0.0)
    assert check_entry('verdict == "GO" && signal("isolation.leaks") == 0.0', run) is None
    assert check_entry('gates.outcomes["tenant-isolation"] == "pass" && gates.score > 95.0 '
                       '&& ring == "pilot" && release.name == "1.1.0"', run) is None
    assert "not met" in check_entry('signal("isolation.leaks") > 0.0', run)
    assert "no data" in check_entry('signal("nothing.here") == 0.0', run)


def test_markers_keys_and_ids_from_a_real_database(tmp_path):
    import sqlalchemy as sa

    from plantstage.rehearsal.steps.isolation import object_ids, read_ownership

    eng = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with eng.begin() as c:
        c.execute(sa.text("CREATE TABLE tenants (id INTEGER, code TEXT)"))
        c.execute(sa.text("CREATE TABLE orders (id INTEGER, tenant_id INTEGER, number TEXT)"))
        c.execute(sa.text("INSERT INTO tenants VALUES (1, 'north'), (2, 'south')"))
        c.execute(sa.text("INSERT INTO orders VALUES (1, 1, 'N-001'), (2, 2, 'S-001'), "
                          "(3, 9, 'X-001'), (4, 2, 'S2')"))
    iso = IsolationSpec.model_validate({
        "tenant_keys": "SELECT code, id FROM tenants",
        "markers": [{"table": "orders", "column": "number"}],
        "requests": [{"path": "/{tenant_key}/orders", "object_path": "/{tenant}/orders/{id}",
                      "object_ids": "SELECT o.number FROM orders o JOIN tenants t "
                                    "ON t.id = o.tenant_id WHERE t.code = :tenant ORDER BY o.id"}]})
    with eng.connect() as conn:
        own, notes = read_ownership(conn, iso, ["north", "south"])
        assert own.keys == {"1": "north", "2": "south"}
        assert own.strings == {"N-001": {"north"}, "S-001": {"south"}}  # 'S2' is too short
        assert notes and "1 row(s) name no known tenant" in notes[0]
        assert object_ids(conn, iso.requests[0], "south", "2", 5) == ["S-001", "S2"]
    eng.dispose()

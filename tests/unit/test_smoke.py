"""Smoke checks declared in the spec: models, decimal-aware matching, HTTP and SQL checks."""

from __future__ import annotations

import json
from decimal import Decimal
from types import SimpleNamespace

import httpx
import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from plantstage.rehearsal.steps.smoke import (
    CheckFailed,
    Smoke,
    as_decimal,
    matches,
    run_http,
    run_sql,
    substitute,
)
from plantstage.spec.smoke import HealthProbe, SmokeCheck, dotted, health_probe

NAMES = {"release.name": "2.0.0", "release.version": "2.0.0", "current.name": "1.0.0",
         "current.version": "1.0.0", "tenant": "t1", "ref": "smoke-abc"}
BASE = "http://app.test"


def check(**kw) -> SmokeCheck:
    return SmokeCheck.model_validate({"name": "c", **kw})


def transport(status: int, body: str | bytes, content_type: str = "application/json",
              seen: list | None = None) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, content=body if isinstance(body, bytes) else body.encode(),
                              headers={"content-type": content_type})

    return httpx.MockTransport(handler)


# -- models ---------------------------------------------------------------------------------
def test_a_check_is_exactly_one_kind():
    with pytest.raises(ValidationError, match="exactly one of 'http', 'sql' or 'flow'"):
        check(http={"path": "/x"}, sql="SELECT 1", expect={"rows": 1})
    with pytest.raises(ValidationError, match="exactly one of 'http', 'sql' or 'flow'"):
        check()


def test_sql_check_expects_rows_or_value_and_http_no_rows():
    with pytest.raises(ValidationError, match="exactly one of 'rows' or 'value'"):
        check(sql="SELECT 1")
    with pytest.raises(ValidationError, match="not rows/value"):
        check(http={"path": "/x"}, expect={"rows": 0})
    with pytest.raises(ValidationError, match="no 'expect'"):
        check(flow="f", expect={"status": 200})


def test_unknown_placeholder_is_refused_at_load():
    with pytest.raises(ValidationError, match=r"unknown placeholder '\{relase.version\}'"):
        check(http={"path": "/v/{relase.version}"})


def test_bad_approx_is_refused_at_load():
    with pytest.raises(ValidationError):
        check(http={"path": "/x"}, expect={"json": {"a": {"approx": "three"}}})


# -- values ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("actual", "expected", "ok"), [
    (Decimal("3.000"), 3, True),
    ("3.000", 3, True),
    (3, Decimal("3"), True),
    (Decimal("2.75"), 2.75, True),        # YAML float → its shortest repr, no binary noise
    (Decimal("2.7500001"), 2.75, False),
    (True, 1, False),                       # a bool is not a number
    ("1.1.0", "1.1.0", True),
    (Decimal("1.10"), "1.1", True),        # a numeric string compares as a decimal
    ("ok", "ok ", False),
    ({"a": Decimal("1.0"), "b": 2}, {"a": 1}, True),
    ([1, 2], [1, 2], True),
    ([1, 2], [1], False),
    (None, None, True),
])
def test_matches_is_decimal_aware(actual, expected, ok):
    assert matches(actual, expected)[0] is ok


def test_approx_uses_the_tolerance():
    assert matches(Decimal("2.7504"), {"approx": "2.75", "tolerance": "0.001"})[0]
    ok, how = matches(Decimal("2.752"), {"approx": 2.75, "tolerance": 0.001})
    assert not ok and "by 0.002" in how and "tolerance 0.001" in how
    assert not matches("n/a", {"approx": 1})[0]


def test_as_decimal_never_goes_through_float_noise():
    assert as_decimal(0.1) == Decimal("0.1")
    assert as_decimal("NaN") is None and as_decimal(None) is None


def test_substitute_and_dotted_paths():
    assert substitute({"v": "{release.version}", "l": ["{tenant}", 3]}, NAMES) == \
        {"v": "2.0.0", "l": ["t1", 3]}
    doc = {"items": [{"qty": Decimal("2.750")}], "a.b": 1}
    assert dotted(doc, "items.0.qty") == (True, Decimal("2.750"))
    assert dotted(doc, "items.-1.qty")[0]
    assert dotted(doc, "items.3.qty") == (False, None)
    assert dotted(doc, "nope") == (False, None)


# -- HTTP checks ----------------------------------------------------------------------------
def test_http_check_passes_with_decimal_fields_and_placeholders():
    seen: list[httpx.Request] = []
    c = check(http={"method": "post", "path": "/t/{tenant}/receipts",
                    "json": {"ref": "{ref}", "kg": "2.750"}, "headers": {"X-T": "{tenant}"}},
              expect={"status": [200, 201],
                      "json": {"booked.kg": {"approx": 2.75, "tolerance": 0.0005},
                               "version": "{release.version}", "lines": 1}})
    body = '{"booked": {"kg": 2.7500}, "version": "2.0.0", "lines": 1}'
    detail = run_http(c, BASE, NAMES, transport(201, body, seen=seen))
    assert "POST http://app.test/t/t1/receipts → HTTP 201" in detail
    sent = seen[0]
    assert json.loads(sent.content) == {"ref": "smoke-abc", "kg": "2.750"}
    assert sent.headers["X-T"] == "t1"


def test_http_failure_names_request_status_and_body_start():
    page = "<html><body>" + "Not Found " * 60 + "</body></html>"
    c = check(http={"path": "/t/{tenant}/stock"}, expect={"json": {"qty": 3}})
    with pytest.raises(CheckFailed) as exc:
        run_http(c, BASE, NAMES, transport(404, page, "text/html"))
    msg = str(exc.value)
    assert msg.startswith("GET http://app.test/t/t1/stock answered HTTP 404 (expected 200): ")
    assert "<html><body>Not Found" in msg
    assert len(msg.split(": ", 1)[1]) <= 201  # the first 200 characters and an ellipsis


def test_a_body_that_is_not_json_is_a_clear_failure():
    c = check(http={"path": "/status"}, expect={"json": {"version": "2.0.0"}})
    with pytest.raises(CheckFailed) as exc:
        run_http(c, BASE, NAMES, transport(200, "all good", "text/plain"))
    assert "GET http://app.test/status answered HTTP 200 with a body that is not JSON: " \
           "all good" in str(exc.value)
    assert "JSONDecodeError" not in str(exc.value)


def test_wrong_field_and_missing_field():
    c = check(http={"path": "/s"}, expect={"json": {"stock.qty": 3}})
    with pytest.raises(CheckFailed, match=r"field stock.qty: 2 ≠ 3"):
        run_http(c, BASE, NAMES, transport(200, '{"stock": {"qty": 2}}'))
    with pytest.raises(CheckFailed, match="without field stock.qty"):
        run_http(c, BASE, NAMES, transport(200, '{"stock": {}}'))


def test_no_answer_is_a_failure_naming_the_request():
    def refuse(request):
        raise httpx.ConnectError("refused", request=request)

    c = check(http={"path": "/s"})
    with pytest.raises(CheckFailed, match=r"GET http://app.test/s: no answer \(ConnectError"):
        run_http(c, BASE, NAMES, httpx.MockTransport(refuse))


# -- SQL checks -----------------------------------------------------------------------------
@pytest.fixture
def engine(tmp_path):
    eng = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with eng.begin() as conn:
        conn.execute(sa.text("CREATE TABLE stock (tenant TEXT, item TEXT, kg NUMERIC)"))
        conn.execute(sa.text("INSERT INTO stock VALUES ('t1', 'A', '2.750'), ('t1', 'B', '-1'),"
                             " ('t2', 'A', '5')"))
    yield eng
    eng.dispose()


def test_sql_rows_and_value_with_binds(engine):
    rows = check(sql="SELECT * FROM stock WHERE tenant = :tenant AND kg < 0",
                 expect={"rows": 1})
    assert run_sql(rows, engine, NAMES) == "1 row(s)"
    value = check(sql="SELECT SUM(kg) FROM stock WHERE tenant = :tenant",
                  expect={"value": {"approx": 1.75, "tolerance": 0.0001}})
    assert run_sql(value, engine, NAMES).startswith("value ")
    with pytest.raises(CheckFailed, match=r"returned 2 row\(s\), expected 0: \('t1'"):
        run_sql(check(sql="SELECT * FROM stock WHERE tenant = :tenant", expect={"rows": 0}),
                engine, NAMES)


def test_sql_error_is_one_line(engine):
    with pytest.raises(CheckFailed, match="query failed: .*no such table"):
        run_sql(check(sql="SELECT * FROM missing", expect={"rows": 0}), engine, NAMES)


# -- the step -------------------------------------------------------------------------------
def test_no_declared_checks_is_said_not_passed():
    ctx = SimpleNamespace(spec=SimpleNamespace(smoke=[]), sections={})
    out = Smoke().run(ctx)
    assert out == {"checks": [], "note": "no smoke checks declared"}
    assert ctx.sections["smoke"]["note"] == "no smoke checks declared"


# -- health probes ---------------------------------------------------------------------------
def test_health_string_form_is_a_path_without_version():
    p = health_probe("/up")
    assert (p.method, p.path, p.status, p.version) == ("GET", "/up", 200, "none")
    assert p.read_version({}, "anything")[0] is None


def test_health_version_from_json_header_or_regex():
    j = HealthProbe.model_validate({"version": {"json": "build.version"}})
    assert j.read_version({}, '{"build": {"version": "2.0.0"}}') == ("2.0.0", "")
    assert j.read_version({}, "<html>")[1] == "body is not JSON"
    h = HealthProbe.model_validate({"method": "post", "path": "/rpc",
                                    "json": {"method": "version"}, "status": [200, 204],
                                    "version": {"header": "X-App-Version"}})
    assert h.method == "POST" and h.healthy_status(204)
    assert h.read_version(httpx.Headers({"x-app-version": "3.1"}), "") == ("3.1", "")
    r = HealthProbe.model_validate({"version": {"regex": r"server ([\d.]+) up"}})
    assert r.read_version({}, "server 17.0.4 up") == ("17.0.4", "")
    with pytest.raises(ValidationError, match="exactly one of 'json', 'header', 'regex', 'file' "
                       "or 'command'"):
        HealthProbe.model_validate({"version": {"json": "v", "header": "X"}})
    with pytest.raises(ValidationError, match="regex does not compile"):
        HealthProbe.model_validate({"version": {"regex": "("}})


def test_command_probe_and_version_command_are_checked_at_load():
    c = HealthProbe.model_validate({"command": ["check", "{port}"], "timeout": 3,
                                    "version": {"regex": r"build (\S+)"}})
    assert c.kind == "command" and not c.version_in_answer
    assert c.read_version({}, "ok\nbuild 2.4.1\n") == ("2.4.1", "")
    assert c.expanded(lambda a: a.replace("{port}", "81")).command == ["check", "81"]
    v = HealthProbe.model_validate({"path": "/up", "version": {
        "command": ["{python}", "-c", "print(1)"], "regex": r"(\d+)"}})
    assert v.kind == "http" and not v.version_in_answer and v.version.from_release
    assert v.expanded(str.upper).version.command[0] == "{PYTHON}"
    assert v.version.from_text("Tool 17.0\n") == ("17", "")
    plain = HealthProbe.model_validate({"tcp": True, "version": {"command": ["v"]}})
    assert plain.version.from_text("\n 3.0.1 \nmore") == ("3.0.1", "")
    for bad, match in (({"command": ["x"], "path": "/h"}, "sends no HTTP request: drop path"),
                       ({"command": ["x"], "tcp": True}, "not both"),
                       ({"command": ["x"], "version": {"header": "X"}}, "has no headers"),
                       ({"tcp": True, "version": {"json": "v"}}, "TCP probe reads no answer"),
                       ({"command": []}, "at least 1"),
                       ({"version": {"file": "V", "regex": "x"}}, "exactly one")):
        with pytest.raises(ValidationError, match=match):
            HealthProbe.model_validate(bad)


def test_a_jsonrpc_error_object_is_unhealthy_whatever_the_status():
    rpc = HealthProbe.model_validate({
        "method": "post", "path": "/rpc", "version": {"json": "result.version"},
        "json": {"jsonrpc": "2.0", "method": "status", "id": 1}})
    assert rpc.is_jsonrpc
    ok = '{"jsonrpc": "2.0", "id": 1, "result": {"version": "16.0"}}'
    assert rpc.judge(200, {}, ok) == (True, "16.0", "")
    err = '{"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "no method"}}'
    assert rpc.judge(200, {}, err) == (False, None, "JSON-RPC error -32601: no method")
    assert rpc.judge(200, {}, "<html>")[2] == "the answer is not JSON-RPC (not JSON)"
    assert rpc.judge(200, {}, '{"ok": 1}')[2] == "the answer is not JSON-RPC (no result or error)"
    assert rpc.judge(500, {}, ok) == (False, None, "HTTP 500")
    # Not JSON-RPC: an "error" member is the app's business, not the probe's.
    plain = HealthProbe.model_validate({"method": "post", "json": {"q": 1}})
    assert not plain.is_jsonrpc and plain.judge(200, {}, '{"error": "x"}')[0]


class _App:
    """A real HTTP server on a free port: GET /status → JSON, anything else → an HTML 404."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class H(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if self.path == "/status":
                    body, status, ctype = b'{"version": "2.0.0", "kg": 2.750}', 200, "json"
                else:
                    body, status, ctype = b"<h1>Not Found</h1>", 404, "html"
                self.send_response(status)
                self.send_header("Content-Type", f"text/{ctype}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_the_step_runs_every_check_and_fails_with_the_first(engine):
    app = _App()
    try:
        spec = SimpleNamespace(
            smoke=[check(http={"path": "/status"},
                         expect={"json": {"version": "{release.version}",
                                          "kg": {"approx": 2.75, "tolerance": 0}}}),
                   SmokeCheck(name="stock", sql="SELECT * FROM stock WHERE kg < 0",
                              expect={"rows": 0}),
                   SmokeCheck(name="orders", http={"path": "/t/{tenant}/orders"})],
            workload=SimpleNamespace(tenants=[]),
            estate=SimpleNamespace(tenants=[SimpleNamespace(code="t9")]))
        rel = SimpleNamespace(name="2.0.0", version="2.0.0")
        ctx = SimpleNamespace(spec=spec, sections={}, release=rel, current=rel,
                              router=SimpleNamespace(url=app.url),
                              staging_db=SimpleNamespace(readonly_engine=lambda: engine),
                              database_component=lambda: "db")
        with pytest.raises(Exception) as exc:
            Smoke().run(ctx)
    finally:
        app.close()
    reason = exc.value.reason
    assert reason.startswith("smoke check stock failed: query returned 1 row(s), expected 0")
    assert reason.endswith("(and 1 more failed)")
    checks = {c["name"]: c for c in exc.value.results["checks"]}
    assert checks["c"]["status"] == "passed"
    assert checks["orders"]["detail"] == (f"GET {app.url}/t/t9/orders answered HTTP 404 "
                                          "(expected 200): <h1>Not Found</h1>")
    assert ctx.sections["smoke"]["failed"] == 2


def test_check_names_a_smoke_flow_that_does_not_exist(tmp_path):
    from plantstage.errors import SpecProblems
    from plantstage.rehearsal.steps.smoke import validate
    from plantstage.spec.loader import load_spec

    (tmp_path / "myflows.py").write_text(
        "from plantstage.api import flow\n\n@flow('ping')\nasync def ping(ctx):\n    pass\n")
    (tmp_path / "rel").mkdir()
    (tmp_path / "plantstage.yaml").write_text(f"""version: 1
name: t
estate:
  components: {{app: {{kind: service, tier: 1}}, db: {{kind: database, tier: 1}}}}
  tenants: [{{code: t1}}]
environments:
  production: {{bindings: {{db: {{url: "sqlite:///p.sqlite"}}}}}}
  staging: {{bindings: {{app: {{command: [run]}}}}}}
current: "1"
releases:
  - {{name: "1", version: "1", artifact: {{path: rel, sha256: "{'0' * 64}"}}}}
plugins: [myflows]
smoke:
  - {{name: ok, flow: ping}}
  - {{name: typo, flow: pnig}}
""")
    loaded = load_spec(tmp_path)
    with pytest.raises(SpecProblems) as exc:
        validate(loaded)
    [problem] = exc.value.problems
    assert problem.where.startswith(f"{tmp_path / 'plantstage.yaml'}:15: smoke[1].flow")
    assert "no flow 'pnig'" in problem.message

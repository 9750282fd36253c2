"""docs/flows.md's complete example runs: its plugin and spec, against a small real HTTP app."""

from __future__ import annotations

import json
import re
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from plantstage.api import FlowError, run_flow_once
from plantstage.spec.loader import load_spec
from plantstage.workload.verbs import load

DOC = Path(__file__).resolve().parents[2] / "docs" / "flows.md"

BASE_SPEC = {
    "version": 1, "name": "receiving",
    "estate": {"components": {"app": {"kind": "service", "tier": 1}},
               "tenants": [{"code": "north"}, {"code": "south"}]},
    "environments": {"production": {"bindings": {"app": {"url": "http://prod.invalid"}}},
                     "staging": {"bindings": {"app": {"url": "http://127.0.0.1:1"}}}},
    "current": "1",
    "releases": [{"name": "1", "version": "1", "artifact": {"path": ".", "sha256": "0" * 64}}],
}


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)


class _App(BaseHTTPRequestHandler):
    """The receiving app of the doc: items, receipts (decimal kg), stock per item."""

    stock: dict[tuple[str, str], Decimal] = {}
    lock = threading.Lock()

    def _send(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        parts = self.path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "t" and parts[2] == "items":
            return self._send(200, [{"code": "BOLT-M8"}, {"code": "NUT-M8"}])
        if len(parts) == 4 and parts[0] == "t" and parts[2] == "stock":
            with self.lock:
                qty = self.stock.get((parts[1], parts[3]), Decimal("0"))
            return self._send(200, {"item": parts[3], "qty": str(qty)})
        return self._send(404, {"detail": "not found"})

    def do_POST(self):  # noqa: N802
        parts = self.path.strip("/").split("/")
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if len(parts) == 3 and parts[0] == "t" and parts[2] == "receipts":
            with self.lock:
                key = (parts[1], body["item"])
                self.stock[key] = self.stock.get(key, Decimal("0")) + Decimal(body["qty"])
            return self._send(201, {"receipt": body["ref"]})
        return self._send(404, {"detail": "not found"})

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def app():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _App)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    plugin = next(b for b in _blocks("python") if b.startswith("# receiving_plugin.py"))
    fragment = next(b for b in _blocks("yaml") if "plugins: [receiving_plugin]" in b)
    (tmp_path / "receiving_plugin.py").write_text(plugin)
    spec = {**BASE_SPEC, **yaml.safe_load(fragment)}
    (tmp_path / "plantstage.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return tmp_path


def test_the_docs_example_runs_once(app, project):
    out = run_flow_once(load_spec(project), "goods-receipt", {"qty": "1.25"}, base_url=app,
                        tenant="north")
    assert out["receipts"] == 1 and out["kg_received"] == 1.25
    assert {"ms", "step.read-stock.ms", "step.post-receipt.ms",
            "step.wait-in-stock.ms"} <= set(out)


def test_the_docs_example_under_load(app, project):
    outcome = load(project, target=app, duration=1)
    s = outcome.result.signals()
    assert outcome.exit_code == 0, {k: v for k, v in s.items() if "errors" in k}
    assert s["workload.load.goods-receipt.count"] == 10  # 5/s × 1 s × 2 tenants
    assert s["workload.load.goods-receipt.receipts"] == 10
    assert s["workload.load.goods-receipt.kg_received"] == 25.0
    assert s["workload.load.business.receipts"] == 10
    assert "workload.load.goods-receipt.step.wait-in-stock.p95_ms" in s


def test_a_failing_expectation_is_a_flow_error_with_the_body(app, project):
    # Whole elements instead of their codes: the stock path the flow builds is not valid.
    spec = yaml.safe_load((project / "plantstage.yaml").read_text())
    spec["workload"]["tenant_data"]["items"] = {"http": "/t/{tenant}/items"}  # whole elements
    (project / "plantstage.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(FlowError) as e:
        run_flow_once(load_spec(project), "goods-receipt", {}, base_url=app, tenant="north")
    assert e.value.kind == "http_400" and e.value.detail  # the start of the body, for the smoke

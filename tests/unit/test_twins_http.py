"""WMS and supplier-portal twins through a real HTTP client, with faults and callbacks."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from plantstage.spec.twins import TwinSpec
from plantstage.twins.base import TwinEnv, TwinRuntime
from plantstage.twins.faults import FaultLog
from plantstage.twins.supplier import SupplierPortalTwin
from plantstage.twins.wms import WmsTwin


class App:
    """A tiny HTTP app receiving the twins' callbacks."""

    def __init__(self):
        got = self.got = []

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                got.append((self.path, self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(202)
                self.end_headers()

            def log_message(self, *_a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def _start(cls, app_url=None, **kw):
    spec = TwinSpec(kind=cls.kind, **kw)
    rt = TwinRuntime()
    log = FaultLog()
    twin = cls(cls.kind, spec, TwinEnv(log=log, app_url=lambda: app_url))
    rt.start(twin)
    return rt, twin, log


def _wait(pred, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not pred():
        time.sleep(0.02)
    return pred()


def test_wms_movements_stock_and_callbacks():
    app = App()
    rt, wms, _ = _start(WmsTwin, app.url, settings={"putaway_s": 0.05})
    try:
        base = wms.endpoints()["http"]
        with httpx.Client(base_url=base) as c:
            r = c.post("/movements", json={"tenant": "acme", "ref": "m1", "item_code": "FG-1",
                                           "qty": 5})
            assert r.status_code == 201
            again = c.post("/movements", json={"tenant": "acme", "ref": "m1",
                                               "item_code": "FG-1", "qty": 5})
            assert again.status_code == 200 and again.json()["duplicate"] is True
            assert c.post("/movements", json={"tenant": "acme"}).status_code == 422
            assert _wait(lambda: app.got)
            stock = c.get("/stock", params={"tenant": "acme"}).json()
            assert sum(stock["FG-1"].values()) == 5 and "RCV-01" not in stock["FG-1"]
        path, body = app.got[0]
        assert path == "/api/acme/wms/events" and b'"put-away"' in body
        assert wms.stats["duplicate_refs"] == 1
    finally:
        rt.stop()
        app.close()


def test_wms_outage_answers_503_then_recovers():
    rt, wms, log = _start(WmsTwin, faults={"seed": 1, "rules": [
        {"kind": "outage", "start": 0, "duration": 2.0}]})
    try:
        base = wms.endpoints()["http"]
        body = {"tenant": "a", "ref": "x", "item_code": "I", "qty": 1}
        assert httpx.post(base + "/movements", json=body).status_code == 503
        assert httpx.get(base + "/health").status_code == 200  # health is never faulted
        # wait for the window to end on the twin's own clock (a loaded machine may be slow)
        assert _wait(lambda: wms.faults.outage_left("http") == 0, 10)
        assert httpx.post(base + "/movements", json=body).status_code == 201
        assert [e.kind for e in log.events()] == ["outage"]
    finally:
        rt.stop()


def test_wms_latency_and_corrupt_bodies():
    rt, wms, log = _start(WmsTwin, faults={"seed": 1, "rules": [
        {"kind": "latency", "ms": 150}, {"kind": "corrupt", "p": 1.0}]})
    try:
        t0 = time.perf_counter()
        r = httpx.get(wms.endpoints()["http"] + "/stock")
        assert time.perf_counter() - t0 >= 0.15
        with pytest.raises(ValueError):
            r.json()
        assert {e.kind for e in log.events()} == {"latency", "corrupt"}
    finally:
        rt.stop()


def test_supplier_portal_acknowledges_then_ships():
    app = App()
    rt, sp, _ = _start(SupplierPortalTwin, app.url,
                       settings={"lead_time_s": 0.1, "callbacks": True})
    try:
        base = sp.endpoints()["http"]
        r = httpx.post(base + "/purchase-orders", json={
            "tenant": "acme", "po_number": "PO-1", "lines": [{"item_code": "RM-1", "qty": 10}]})
        assert r.status_code == 202 and r.json()["status"] == "acknowledged"
        assert _wait(lambda: httpx.get(base + "/purchase-orders/PO-1").json()["status"]
                     == "shipped")
        (asn,) = httpx.get(base + "/asns", params={"tenant": "acme"}).json()
        assert asn["lines"] == [{"item_code": "RM-1", "qty": 10}]
        assert _wait(lambda: app.got) and app.got[0][0] == "/api/acme/asns"
    finally:
        rt.stop()
        app.close()

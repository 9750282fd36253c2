"""WMS and supplier-portal twins through a real HTTP client, with faults and callbacks."""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal
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


#: A WMS the way the sample plant's outbox talks to it (whole pieces, flat fields).
WMS = {"quantities": {"qty": {"unit": "EA", "decimals": 0, "encoding": "number"}},
       "routes": {"book": {"path": "/movements"}, "list": {"method": "GET", "path": "/movements"},
                  "stock": {"method": "GET", "path": "/stock"}},
       "fields": {"item": "item_code"},
       "callback": {"url": "{app}/hooks/{tenant}/wms",
                    "body": {"movement": "{id}", "ref": "{ref}", "status": "{status}",
                             "qty": "{qty}"}}}

#: Another WMS: tenant in the path, nested decimal kg with its unit, no callback.
WMS_KG = {"quantities": {"qty": {"unit": "kg", "decimals": 3}},
          "routes": {"book": {"method": "PUT", "path": "/v2/{tenant}/moves"},
                     "stock": {"method": "GET", "path": "/v2/{tenant}/stock"}},
          "fields": {"ref": "moveId", "item": "material", "qty": "quantity.value",
                     "unit": "quantity.uom"}}

SUPPLIER = {"quantities": {"qty": {"unit": "EA", "decimals": 0, "encoding": "number"}},
            "routes": {"order": {"path": "/purchase-orders"},
                       "order_status": {"method": "GET", "path": "/purchase-orders/{order}"},
                       "asns": {"method": "GET", "path": "/asns"}},
            "fields": {"order": "po_number", "item": "item_code"},
            "callback": {"url": "{app}/hooks/{tenant}/asns"}}


def _start(cls, app_url=None, contract=None, **kw):
    contract = contract or {"wms": WMS, "supplier-portal": SUPPLIER}[cls.kind]
    spec = TwinSpec(kind=cls.kind, contract=contract, **kw)
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
        assert path == "/hooks/acme/wms" and json.loads(body) == {
            "movement": 1, "ref": "m1", "status": "put-away", "qty": 5}
        assert wms.stats["duplicate_refs"] == 1
        assert [b["ref"] for b in wms.received("acme")] == ["m1", "m1"]
        assert wms.received("other") == []
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
        assert asn["po_number"] == "PO-1" and asn["asn"].startswith("ASN-")
        assert _wait(lambda: app.got) and app.got[0][0] == "/hooks/acme/asns"
        assert json.loads(app.got[0][1])["lines"] == [{"item_code": "RM-1", "qty": 10}]
    finally:
        rt.stop()
        app.close()


def test_wms_declared_route_keeps_decimal_kg_exact():
    rt, wms, _ = _start(WmsTwin, contract=WMS_KG, settings={"putaway_s": 0.05})
    try:
        base = wms.url
        # a JSON number 2.75 and a decimal string "1.5": both exact, written with 3 decimals
        r = httpx.put(base + "/v2/mix-1/moves", content=b'{"moveId": "a", "material": "RM-7",'
                      b' "quantity": {"value": 2.75, "uom": "kg"}}')
        assert r.status_code == 201, r.text
        r = httpx.put(base + "/v2/mix-1/moves", json={"moveId": "b", "material": "RM-7",
                                                      "quantity": {"value": "1.5", "uom": "kg"}})
        assert r.status_code == 201
        too_fine = httpx.put(base + "/v2/mix-1/moves", json={
            "moveId": "c", "material": "RM-7", "quantity": {"value": "0.0001", "uom": "kg"}})
        assert too_fine.status_code == 422 and "more than 3 decimal" in too_fine.json()["error"]
        wrong_unit = httpx.put(base + "/v2/mix-1/moves", json={
            "moveId": "d", "material": "RM-7", "quantity": {"value": "1", "uom": "lb"}})
        assert wrong_unit.status_code == 422 and "kg" in wrong_unit.json()["error"]
        missing = httpx.put(base + "/v2/mix-1/moves", json={"moveId": "e"})
        assert missing.status_code == 422
        assert "material, quantity.value" in missing.json()["error"]
        assert httpx.post(base + "/movements", json={}).status_code == 404  # not declared
        assert _wait(lambda: sum(wms.stock.get(("mix-1", "RM-7", loc), 0)
                                 for loc in wms.locations[1:]) == Decimal("4.250"))
        stock = httpx.get(base + "/v2/mix-1/stock").json()
        assert sum(Decimal(v) for v in stock["RM-7"].values()) == Decimal("4.250")
        assert all(len(v.split(".")[1]) == 3 for v in stock["RM-7"].values())
        got = wms.received("mix-1")
        assert [g["quantity"]["value"] for g in got] == [Decimal("2.75"), "1.5"]
        assert wms.counters()["refused"] == 3 and wms.counters()["movements"] == 2
    finally:
        rt.stop()


def test_http_twins_need_their_routes():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="a wms twin needs a contract"):
        TwinSpec(kind="wms")
    with pytest.raises(ValidationError, match="needs contract.quantities.qty"):
        TwinSpec(kind="wms", contract={"routes": {"book": {"path": "/m"}}})
    with pytest.raises(ValidationError, match="route path starts with /"):
        TwinSpec(kind="wms", contract={**WMS, "routes": {"book": {"path": "m"}}})
    with pytest.raises(ValidationError, match="contract.fields.sku: unknown role"):
        TwinSpec(kind="supplier-portal", contract={**SUPPLIER, "fields": {"sku": "s"}})

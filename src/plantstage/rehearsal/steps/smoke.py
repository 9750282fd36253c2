from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx

from plantstage.rehearsal.steps import Step, StepFailed


class Smoke(Step):
    """After the switch: the new version answers, and a business transaction posts correctly."""

    name = "smoke"
    title = "Smoke and business-transaction checks"

    def run(self, ctx):
        checks: dict[str, str] = {}
        with httpx.Client(base_url=ctx.router.url, timeout=15) as c:
            h = c.get("/health")
            version = h.json().get("version") if h.status_code == 200 else None
            checks["health"] = f"HTTP {h.status_code}, version {version}"
            if h.status_code != 200 or version != ctx.release.version:
                raise StepFailed(f"traffic does not reach {ctx.release.version}: "
                                 f"{checks['health']}", {"checks": checks})
            tenants = c.get("/api/tenants").json()
            if not tenants:
                raise StepFailed("the app lists no tenants", {"checks": checks})
            tenant = tenants[0]["code"]
            wos = c.get(f"/api/{tenant}/work-orders", params={"status": "released", "limit": 1})
            wo = (wos.json() or [None])[0] if wos.status_code == 200 else None
            if wo is None:
                raise StepFailed(f"no released work order for {tenant}", {"checks": checks})
            item = wo["item_code"]
            before = c.get(f"/api/{tenant}/on-hand/{item}").json()["qty"]
            msg = {"message_id": f"smoke-{uuid.uuid4()}", "work_order": wo["number"],
                   "good_qty": 3, "scrap_qty": 0,
                   "sent_at": datetime.now(UTC).isoformat(), "lot": None}
            r = c.post(f"/api/{tenant}/confirmations", json=msg)
            after = c.get(f"/api/{tenant}/on-hand/{item}").json()["qty"]
            checks["confirmation"] = f"HTTP {r.status_code}, on-hand {before} → {after}"
            if r.status_code != 200 or after - before != 3:
                raise StepFailed(f"a production confirmation of 3 × {item} moved on-hand "
                                 f"by {after - before}", {"checks": checks})
            cust = c.get(f"/api/{tenant}/customers", params={"limit": 1}).json()[0]["code"]
            imp = c.post(f"/api/{tenant}/sales-orders/import", json={"orders": [{
                "external_ref": f"smoke-{uuid.uuid4()}", "customer_code": cust,
                "lines": [{"item_code": item, "qty": 1, "unit_price": 10.0}]}]})
            checks["import"] = f"HTTP {imp.status_code}"
            if imp.status_code != 200 or imp.json().get("imported") != 1:
                raise StepFailed("a one-line sales order did not import", {"checks": checks})
        return {"checks": checks}

"""HTTP API."""

import uuid
from collections.abc import Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from . import VERSION, integrations
from .db import make_engine, upsert, writer
from .models import (
    BomLine,
    Customer,
    InventoryLedger,
    Item,
    Lot,
    OnHand,
    ProductionConfirmation,
    SalesOrder,
    SalesOrderLine,
    Tenant,
    WorkOrder,
)

Limit = Annotated[int, Query(ge=1, le=1000)]
Code = Annotated[str, Field(min_length=1, max_length=64)]


class WorkOrderIn(BaseModel):
    item_code: Code
    qty: int = Field(gt=0)


class ConfirmationIn(BaseModel):
    message_id: Code
    work_order: Code
    good_qty: int = Field(ge=0)
    scrap_qty: int = Field(default=0, ge=0)
    sent_at: datetime
    lot: Code | None = None


class AdjustmentIn(BaseModel):
    item_code: Code
    qty: int
    reason: str = Field(min_length=1, max_length=200)


class OrderLineIn(BaseModel):
    item_code: Code
    qty: int = Field(gt=0)
    unit_price: Decimal = Field(ge=0, max_digits=12, decimal_places=2)


class OrderIn(BaseModel):
    external_ref: Code
    customer_code: Code
    lines: list[OrderLineIn] = Field(min_length=1)


class ImportIn(BaseModel):
    orders: list[OrderIn] = Field(max_length=500)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def naive_utc(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def tenant_id(s: Session, code: str) -> int:
    tid = s.scalar(select(Tenant.id).where(Tenant.code == code))
    if tid is None:
        raise HTTPException(404, f"unknown tenant: {code}")
    return tid


def item_by_code(s: Session, tid: int, code: str, status: int = 422) -> Item:
    item = s.scalar(select(Item).where(Item.tenant_id == tid, Item.code == code))
    if item is None:
        raise HTTPException(status, f"unknown item_code: {code}")
    return item


def bump_on_hand(s: Session, tid: int, deltas: dict[int, int]) -> None:
    s.flush()
    for item_id in sorted(deltas):  # fixed lock order
        stmt = upsert(s, OnHand).values(tenant_id=tid, item_id=item_id, qty=deltas[item_id])
        s.execute(stmt.on_conflict_do_update(
            index_elements=[OnHand.tenant_id, OnHand.item_id],
            set_={"qty": OnHand.qty + stmt.excluded.qty},
        ))


def availability(s: Session, tid: int, item_ids: set[int]) -> dict[int, int]:
    """on hand minus what open sales orders already reserved, per item."""
    stock = dict(s.execute(select(OnHand.item_id, OnHand.qty).where(
        OnHand.tenant_id == tid, OnHand.item_id.in_(item_ids))).tuples().all())
    reserved = dict(s.execute(
        select(SalesOrderLine.item_id, func.sum(SalesOrderLine.reserved_qty))
        .join(SalesOrder, SalesOrder.id == SalesOrderLine.order_id)
        .where(SalesOrder.tenant_id == tid, SalesOrder.status == "open",
               SalesOrderLine.item_id.in_(item_ids))
        .group_by(SalesOrderLine.item_id)).tuples().all())
    return {i: stock.get(i, 0) - int(reserved.get(i) or 0) for i in item_ids}


def ensure_lot(s: Session, tid: int, item_id: int, code: str, now: datetime) -> int:
    stmt = upsert(s, Lot).values(tenant_id=tid, item_id=item_id, code=code, created_at=now)
    s.execute(stmt.on_conflict_do_nothing(index_elements=[Lot.tenant_id, Lot.code]))
    return s.scalar(select(Lot.id).where(Lot.tenant_id == tid, Lot.code == code))  # type: ignore[return-value]


def post_confirmation(s: Session, tid: int, body: ConfirmationIn) -> str:
    wo = s.scalar(select(WorkOrder).where(
        WorkOrder.tenant_id == tid, WorkOrder.number == body.work_order))
    if wo is None:
        raise HTTPException(422, f"unknown work_order: {body.work_order}")
    sent_at = naive_utc(body.sent_at)
    lot_code = body.lot or f"{wo.number}-{sent_at:%Y%m%d}"
    if s.scalar(select(ProductionConfirmation.id).where(
            ProductionConfirmation.message_id == body.message_id)) is not None:
        return "duplicate"
    now = utcnow()
    s.add(ProductionConfirmation(
        tenant_id=tid, message_id=body.message_id, work_order_id=wo.id, good_qty=body.good_qty,
        scrap_qty=body.scrap_qty, sent_at=sent_at, posted_at=now, lot_code=lot_code))
    s.flush()  # the unique message_id stops a concurrent redelivery here
    lot_id = ensure_lot(s, tid, wo.item_id, lot_code, now)
    entries = [InventoryLedger(tenant_id=tid, item_id=wo.item_id, qty=body.good_qty, lot_id=lot_id,
                               source="confirmation", ref=body.message_id, created_at=now)]
    bom = s.execute(select(BomLine.component_item_id, BomLine.qty_per).where(
        BomLine.tenant_id == tid, BomLine.parent_item_id == wo.item_id)).tuples()
    for component_id, qty_per in bom:
        entries.append(InventoryLedger(
            tenant_id=tid, item_id=component_id, qty=-qty_per * (body.good_qty + body.scrap_qty),
            source="consumption", ref=body.message_id, created_at=now))
    s.add_all(entries)
    deltas: dict[int, int] = {}
    for e in entries:
        deltas[e.item_id] = deltas.get(e.item_id, 0) + e.qty
    bump_on_hand(s, tid, deltas)
    wo.qty_done += body.good_qty
    return "posted"


def import_orders(s: Session, tid: int, body: ImportIn) -> dict[str, int]:
    """Set-based import: a constant number of queries per batch."""
    cust_codes = {o.customer_code for o in body.orders}
    item_codes = {ln.item_code for o in body.orders for ln in o.lines}
    customers = dict(s.execute(select(Customer.code, Customer.id).where(
        Customer.tenant_id == tid, Customer.code.in_(cust_codes))).tuples().all())
    items = dict(s.execute(select(Item.code, Item.id).where(
        Item.tenant_id == tid, Item.code.in_(item_codes))).tuples().all())
    if missing := sorted(cust_codes - customers.keys()):
        raise HTTPException(422, f"unknown customer_code: {', '.join(missing)}")
    if missing := sorted(item_codes - items.keys()):
        raise HTTPException(422, f"unknown item_code: {', '.join(missing)}")
    seen = set(s.scalars(select(SalesOrder.external_ref).where(
        SalesOrder.tenant_id == tid,
        SalesOrder.external_ref.in_({o.external_ref for o in body.orders}))))
    new = []
    for o in body.orders:
        if o.external_ref not in seen:
            seen.add(o.external_ref)
            new.append(o)
    if not new:
        return {"imported": 0, "lines": 0}
    available = availability(s, tid, set(items.values()))
    now = utcnow()
    order_ids = s.scalars(
        insert(SalesOrder).returning(SalesOrder.id, sort_by_parameter_order=True),
        [{"tenant_id": tid, "external_ref": o.external_ref, "status": "open",
          "customer_id": customers[o.customer_code], "created_at": now} for o in new]).all()
    lines = []
    for order_id, o in zip(order_ids, new, strict=True):
        for ln in o.lines:
            item_id = items[ln.item_code]
            reserved = max(0, min(ln.qty, available[item_id]))
            available[item_id] -= reserved
            lines.append({"order_id": order_id, "item_id": item_id, "qty": ln.qty,
                          "unit_price": ln.unit_price, "reserved_qty": reserved})
    s.execute(insert(SalesOrderLine), lines)
    return {"imported": len(new), "lines": len(lines)}


def confirm_message(sessions: sessionmaker, tenant: str, body: ConfirmationIn,
                    wms: integrations.WmsOutbox | None = None) -> str:
    """Post one production confirmation, idempotently; HTTP and MQTT both come here."""
    with sessions() as s:
        tid = tenant_id(s, tenant)
        try:
            status = post_confirmation(s, tid, body)
            s.commit()
        except IntegrityError:
            s.rollback()
            if s.scalar(select(ProductionConfirmation.id).where(
                    ProductionConfirmation.message_id == body.message_id)) is None:
                raise
            status = "duplicate"
        if status == "posted" and wms is not None:
            item = s.scalar(select(Item.code).join(WorkOrder, WorkOrder.item_id == Item.id)
                            .where(WorkOrder.tenant_id == tid,
                                   WorkOrder.number == body.work_order))
            wms.send({"tenant": tenant, "ref": body.message_id, "item_code": item,
                      "qty": body.good_qty, "kind": "receipt"})
    return status


def create_app(url: str | None = None) -> FastAPI:
    engine = make_engine(url)
    read_sessions = sessionmaker(engine, expire_on_commit=False)
    write_sessions = sessionmaker(writer(engine), expire_on_commit=False)
    wiring: dict = {}

    def handle_mqtt(tenant: str, message: dict) -> str:
        try:
            body = ConfirmationIn.model_validate(message)
            return confirm_message(write_sessions, tenant, body, wiring.get("wms"))
        except HTTPException as exc:  # unknown tenant / work order
            raise ValueError(exc.detail) from None

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        consumer, wms = integrations.from_environment(handle_mqtt)
        wiring.update(consumer=consumer, wms=wms)
        for part in (wms, consumer):
            if part is not None:
                part.start()
        try:
            yield
        finally:
            for part in (consumer, wms):
                if part is not None:
                    part.stop()

    app = FastAPI(title="sampleplant", version=VERSION, lifespan=lifespan)
    app.state.engine = engine

    def read_db() -> Iterator[Session]:
        with read_sessions() as s:
            yield s

    def write_db() -> Iterator[Session]:
        with write_sessions() as s:
            yield s

    Read = Annotated[Session, Depends(read_db)]
    Write = Annotated[Session, Depends(write_db)]

    @app.get("/health")
    def health() -> JSONResponse:
        try:
            with engine.connect() as conn:
                schema = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "version": VERSION,
                                 "error": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok", "version": VERSION, "schema": schema})

    @app.get("/api/tenants")
    def tenants(s: Read) -> list[dict]:
        return [{"code": t.code, "name": t.name, "archetype": t.archetype}
                for t in s.scalars(select(Tenant).order_by(Tenant.code))]

    @app.get("/api/{tenant}/items")
    def items(tenant: str, s: Read, kind: Literal["finished", "component", "raw"] | None = None,
              limit: Limit = 100) -> list[dict]:
        q = select(Item).where(Item.tenant_id == tenant_id(s, tenant))
        q = q.order_by(Item.code).limit(limit)
        if kind:
            q = q.where(Item.kind == kind)
        return [{"code": i.code, "name": i.name, "kind": i.kind, "unit_cost": float(i.unit_cost),
                 "unit_price": float(i.unit_price)} for i in s.scalars(q)]

    @app.get("/api/{tenant}/customers")
    def customers(tenant: str, s: Read, limit: Limit = 100) -> list[dict]:
        q = select(Customer).where(Customer.tenant_id == tenant_id(s, tenant))
        return [{"code": c.code, "name": c.name, "email": c.email, "phone": c.phone}
                for c in s.scalars(q.order_by(Customer.code).limit(limit))]

    @app.get("/api/{tenant}/work-orders")
    def work_orders(tenant: str, s: Read, status: Literal["released", "closed"] | None = None,
                    limit: Limit = 100) -> list[dict]:
        q = (select(WorkOrder, Item.code).join(Item, Item.id == WorkOrder.item_id)
             .where(WorkOrder.tenant_id == tenant_id(s, tenant)))
        if status:
            q = q.where(WorkOrder.status == status)
        rows = s.execute(q.order_by(WorkOrder.id.desc()).limit(limit)).tuples()
        return [{"number": w.number, "item_code": code, "qty": w.qty, "qty_done": w.qty_done,
                 "status": w.status} for w, code in rows]

    @app.post("/api/{tenant}/work-orders", status_code=201)
    def create_work_order(tenant: str, body: WorkOrderIn, s: Write) -> dict:
        tid = tenant_id(s, tenant)
        item = item_by_code(s, tid, body.item_code)
        number = f"WO-{utcnow():%y%m}-{uuid.uuid4().hex[:6].upper()}"
        s.add(WorkOrder(tenant_id=tid, number=number, item_id=item.id, qty=body.qty, qty_done=0,
                        status="released", created_at=utcnow()))
        s.commit()
        return {"number": number}

    @app.post("/api/{tenant}/confirmations")
    def confirm(tenant: str, body: ConfirmationIn) -> dict:
        status = confirm_message(write_sessions, tenant, body, wiring.get("wms"))
        return {"status": status, "message_id": body.message_id}

    @app.post("/api/{tenant}/wms/events", status_code=202)
    def wms_event(tenant: str, event: dict) -> dict:
        """Callbacks from the WMS (put-away done …); counted, nothing to post."""
        events = app.state.wms_events = getattr(app.state, "wms_events", 0) + 1
        return {"received": events}

    @app.get("/integrations")
    def integration_stats() -> dict:
        return {name: dict(part.stats) for name, part in wiring.items() if part is not None}

    @app.post("/api/{tenant}/inventory/adjustments", status_code=201)
    def adjust(tenant: str, body: AdjustmentIn, s: Write) -> dict:
        tid = tenant_id(s, tenant)
        item = item_by_code(s, tid, body.item_code)
        entry = InventoryLedger(tenant_id=tid, item_id=item.id, qty=body.qty, source="adjustment",
                                ref=body.reason[:64], created_at=utcnow())
        s.add(entry)
        bump_on_hand(s, tid, {item.id: body.qty})
        s.commit()
        return {"ledger_id": entry.id}

    @app.post("/api/{tenant}/sales-orders/import")
    def import_sales_orders(tenant: str, body: ImportIn, s: Write) -> dict:
        result = import_orders(s, tenant_id(s, tenant), body)
        s.commit()
        return result

    @app.get("/api/{tenant}/on-hand/{item_code}")
    def on_hand(tenant: str, item_code: str, s: Read) -> dict:
        tid = tenant_id(s, tenant)
        item = item_by_code(s, tid, item_code, status=404)
        qty = s.scalar(select(OnHand.qty).where(OnHand.tenant_id == tid, OnHand.item_id == item.id))
        return {"item_code": item.code, "qty": qty or 0}

    return app

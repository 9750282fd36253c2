"""The HTTP API (Flask, WSGI)."""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask, Response, jsonify, request

from . import VERSION, migrate
from .db import Database, connect, grams_to_kg, pct_text, quantity
from .plant import Rejected, adjust, genealogy, where_used


def create_app(database_url: str, integrations: Any = None) -> Flask:
    app = Flask("mixingplant")
    local = threading.local()

    def db() -> Database:
        conn = getattr(local, "db", None)
        if conn is None:
            conn = local.db = connect(database_url)
        return conn

    def problem(status: int, message: str) -> tuple[Response, int]:
        return jsonify({"error": message}), status

    def known_site(site: str) -> bool:
        return db().one("SELECT 1 FROM sites WHERE code = ?", (site,)) is not None

    @app.get("/status")
    def status() -> Response:
        try:
            schema = migrate.current(db())
        except Exception as exc:  # the database is down: say so, do not crash
            local.db = None
            return Response(f"mixingplant {VERSION} database unavailable: {exc}\n", 503,
                            mimetype="text/plain")
        body = f"mixingplant {VERSION} schema {schema or 'none'}\n"
        resp = Response(body, 200, mimetype="text/plain")
        resp.headers["X-Mixingplant-Version"] = VERSION
        return resp

    @app.get("/api/sites")
    def sites() -> Response:
        rows = db().all("SELECT code, name, country FROM sites ORDER BY code")
        return jsonify([{"code": c, "name": n, "country": k} for c, n, k in rows])

    @app.get("/api/sites/<site>/materials")
    def materials(site: str) -> Any:
        if not known_site(site):
            return problem(404, f"unknown site {site}")
        kind = request.args.get("kind")
        limit = min(int(request.args.get("limit", 500)), 5000)
        sql = "SELECT code, name, kind FROM materials WHERE site = ?"
        params: list[Any] = [site]
        if kind:
            sql += " AND kind = ?"
            params.append(kind)
        rows = db().all(sql + " ORDER BY code LIMIT ?", (*params, limit))
        return jsonify([{"code": c, "name": n, "kind": k} for c, n, k in rows])

    @app.get("/api/sites/<site>/recipes")
    def recipes(site: str) -> Any:
        if not known_site(site):
            return problem(404, f"unknown site {site}")
        status_filter = request.args.get("status", "active")
        heads = db().all("SELECT id, code, revision, material, status FROM recipes "
                         "WHERE site = ? AND status = ? ORDER BY code, revision",
                         (site, status_filter))
        out = []
        for rid, code, rev, material, st in heads:
            lines = db().all("SELECT material, pct_milli FROM recipe_lines WHERE recipe_id = ? "
                             "ORDER BY line_no", (rid,))
            out.append({"id": rid, "code": code, "revision": rev, "material": material,
                        "status": st,
                        "lines": [{"material": m, "percent": pct_text(p)} for m, p in lines]})
        return jsonify(out)

    @app.get("/api/sites/<site>/stock/<material>")
    def stock(site: str, material: str) -> Any:
        row = db().one("SELECT qty_g FROM stock WHERE site = ? AND material = ?",
                       (site, material))
        if row is None:
            if db().one("SELECT 1 FROM materials WHERE site = ? AND code = ?",
                        (site, material)) is None:
                return problem(404, f"unknown material {material} at {site}")
            row = (0,)
        return jsonify({"site": site, "material": material, "quantity": quantity(row[0])})

    @app.get("/api/sites/<site>/batches/<batch_id>")
    def batch(site: str, batch_id: str) -> Any:
        row = db().one("SELECT batch_id, recipe_id, material, qty_g, completed_at, recorded_at "
                       "FROM batches WHERE site = ? AND batch_id = ?", (site, batch_id))
        if row is None:
            return problem(404, f"no batch {batch_id} at {site}")
        bid, recipe_id, material, qty_g, completed, recorded = row
        consumed = db().all("SELECT material, qty_g FROM material_ledger "
                            "WHERE ref = ? AND kind = 'consume' ORDER BY material", (bid,))
        return jsonify({"batchId": bid, "site": site, "recipe": recipe_id, "material": material,
                        "quantity": quantity(qty_g), "completedAt": completed,
                        "recordedAt": recorded,
                        "consumed": [{"material": m, "quantity": quantity(-g)}
                                     for m, g in consumed]})

    @app.get("/api/sites/<site>/batches/<batch_id>/genealogy")
    def batch_genealogy(site: str, batch_id: str) -> Any:
        inputs = genealogy(db(), site, batch_id)
        if inputs is None:
            return problem(404, f"no batch {batch_id} at {site}")
        return jsonify({"batchId": batch_id, "lot": batch_id,
                        "inputs": [{"material": i["material"], "lot": i["lot"],
                                    "quantity": quantity(i["grams"])} for i in inputs]})

    @app.get("/api/sites/<site>/lots/<lot>/where-used")
    def lot_where_used(site: str, lot: str) -> Any:
        return jsonify({"lot": lot, "batches": where_used(db(), site, lot)})

    @app.post("/api/sites/<site>/adjustments")
    def adjustments(site: str) -> Any:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or "material" not in body or "quantity" not in body:
            return problem(400, "expected {material, quantity: {value, uom}, reason}")
        try:
            entry, grams = adjust(db(), site, str(body["material"]), body["quantity"],
                                  str(body.get("reason", "")))
        except Rejected as exc:
            return problem(422, str(exc))
        return jsonify({"entryId": entry, "material": body["material"],
                        "quantity": {"value": grams_to_kg(grams), "uom": "kg"}}), 201

    @app.get("/api/integrations")
    def integration_stats() -> Any:
        return jsonify(integrations.stats() if integrations is not None else {})

    return app

"""Tenant isolation probes on the new version (``isolation:`` in the spec; docs/isolation.md).

After the smoke checks, as each probed tenant A in turn:

* every declared tenant-scoped request is asked as A, and its JSON answer is walked to every
  value: another tenant's code anywhere, another tenant's code or key in a ``tenant_field``, or
  a marker value only other tenants own, is a **leak** — listed with the request, the field
  path and one example;
* for each request with ``object_path``, A asks for ids that belong to each other tenant B
  (from the staging database, ``object_ids``); anything but a refusal (``refused``, 403/404 by
  default) or an empty answer is an **object leak**. A's own first id is asked too, as a
  control: when A cannot read its own object either, the probe says it proves little.

Signals: ``isolation.leaks`` (answers holding another tenant's data), ``isolation.leaked_values``,
``isolation.object_leaks`` (foreign ids served), ``isolation.requests``, ``isolation.unchecked``
(requests whose answer could not be read). The judge adds the key gate ``tenant-isolation``.
No answer is never a pass: when no request could be checked, no leak signal is recorded and
the gate is inconclusive. Staging data is only read, never changed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from plantstage.rehearsal.steps import Step, StepFailed
from plantstage.spec.isolation import IsolationRequest, IsolationSpec

_BODY_CHARS = 200


def text_of(value: Any) -> str:
    """A scalar as text, the same whether it came from JSON or a database column."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if hasattr(value, "normalize") and hasattr(value, "as_tuple"):  # Decimal
        value = format(value.normalize(), "f")
    return str(value)


@dataclass
class Ownership:
    """Who owns which value: tenant codes, their keys, and the markers read from staging."""

    codes: set[str]
    keys: dict[str, str] = field(default_factory=dict)          # key text → tenant code
    strings: dict[str, set[str]] = field(default_factory=dict)  # marker text → owners
    numbers: dict[str, set[str]] = field(default_factory=dict)  # numeric markers → owners
    tenant_fields: set[str] = field(default_factory=set)

    def code_of(self, tenant: Any) -> str | None:
        t = text_of(tenant)
        return t if t in self.codes else self.keys.get(t)

    def add(self, tenant: Any, value: Any, *, numbers: bool, min_length: int) -> bool:
        """Record that ``tenant`` (code or key) owns ``value``; False if the tenant is unknown."""
        code = self.code_of(tenant)
        if code is None or value is None:
            return code is not None
        text = text_of(value)
        if len(text) < min_length:
            return True
        self.strings.setdefault(text, set()).add(code)
        if numbers:
            self.numbers.setdefault(text, set()).add(code)
        return True

    def owners(self, name: str | None, value: Any) -> tuple[set[str], str]:
        """(tenants the value belongs to, why) for one JSON scalar under field ``name``."""
        if value is None or isinstance(value, bool):
            return set(), ""
        text = text_of(value)
        if name in self.tenant_fields:
            code = self.code_of(text)
            if code is not None:
                return {code}, f"tenant field '{name}'"
        if isinstance(value, str):
            if text in self.codes:
                return {text}, "a tenant code"
            if text in self.strings:
                return self.strings[text], "a marker value"
        elif text in self.numbers:
            return self.numbers[text], "a marker value"
        return set(), ""


def walk(doc: Any, path: str = "$", name: str | None = None
         ) -> Iterator[tuple[str, str | None, Any]]:
    """Every scalar of a JSON document as (field path, field name, value); a list's items
    keep the field name of the list."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from walk(v, f"{path}.{k}", str(k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from walk(v, f"{path}[{i}]", name)
    else:
        yield path, name, doc


def scan(doc: Any, tenant: str, own: Ownership) -> list[dict[str, Any]]:
    """Values in ``doc`` that belong to other tenants only (not to ``tenant``)."""
    found = []
    for path, name, value in walk(doc):
        owners, why = own.owners(name, value)
        if owners and tenant not in owners:
            found.append({"field": path, "value": text_of(value)[:80],
                          "owner": sorted(owners)[0], "why": why})
    return found


def _expand(text: str, names: dict[str, str]) -> str:
    for k, v in names.items():
        text = text.replace("{" + k + "}", v)
    return text


def _names(tenant: str, key: str | None, **extra: str) -> dict[str, str]:
    names = {"tenant": quote(tenant, safe=""), "tenant_key": quote(key or tenant, safe="")}
    names.update({k: quote(v, safe="") for k, v in extra.items()})
    return names


def _body_start(text: str) -> str:
    text = " ".join(text.split())
    return (text[:_BODY_CHARS] + ("…" if len(text) > _BODY_CHARS else "")) if text else "(empty)"


def is_empty(text: str) -> bool:
    """An answer with nothing in it: no body, or JSON null, "", [] or {}."""
    if not text.strip():
        return True
    try:
        doc = json.loads(text)
    except ValueError:
        return False
    return doc in (None, "", [], {})


def probe_request(client: httpx.Client, base_url: str, req: IsolationRequest, tenant: str,
                  key: str | None, own: Ownership) -> dict[str, Any]:
    """Ask ``req`` as ``tenant``; the result names every foreign value found (or why the
    answer could not be checked)."""
    names = _names(tenant, key)
    path = _expand(req.path, names)
    headers = {k: _expand(v, {"tenant": tenant, "tenant_key": key or tenant})
               for k, v in req.headers.items()}
    what = f"{req.method} {path}"
    rec: dict[str, Any] = {"request": req.label, "tenant": tenant, "url": what}
    try:
        r = client.request(req.method, base_url.rstrip("/") + path, headers=headers or None)
    except httpx.HTTPError as exc:
        return {**rec, "status": "unchecked", "detail": f"no answer ({type(exc).__name__})"}
    rec["http"] = r.status_code
    if not 200 <= r.status_code < 300:
        return {**rec, "status": "unchecked",
                "detail": f"HTTP {r.status_code}: {_body_start(r.text)}"}
    try:
        doc = r.json()
    except ValueError:
        return {**rec, "status": "unchecked",
                "detail": f"not JSON: {_body_start(r.text)}"}
    leaks = scan(doc, tenant, own)
    rec["values"] = sum(1 for _ in walk(doc))
    if leaks:
        rec.update(status="leak", leaked=len(leaks),
                   tenants=sorted({x["owner"] for x in leaks}), example=leaks[0],
                   detail=f"{what} as {tenant} holds {len(leaks)} value(s) of "
                   f"{', '.join(sorted({x['owner'] for x in leaks}))}: {leaks[0]['field']} = "
                   f"{leaks[0]['value']!r} ({leaks[0]['why']} of {leaks[0]['owner']})")
    else:
        rec["status"] = "clean"
    return rec


def probe_object(client: httpx.Client, base_url: str, req: IsolationRequest, tenant: str,
                 key: str | None, object_id: Any, owner: str,
                 refused: list[int]) -> dict[str, Any]:
    """Ask, as ``tenant``, for an object ``owner`` owns: refused or empty, or a leak."""
    assert req.object_path is not None
    path = _expand(req.object_path, _names(tenant, key, id=text_of(object_id)))
    headers = {k: _expand(v, {"tenant": tenant, "tenant_key": key or tenant})
               for k, v in req.headers.items()}
    rec: dict[str, Any] = {"request": req.label, "tenant": tenant, "owner": owner,
                           "id": text_of(object_id), "url": f"{req.method} {path}"}
    try:
        r = client.request(req.method, base_url.rstrip("/") + path, headers=headers or None)
    except httpx.HTTPError as exc:
        return {**rec, "status": "unchecked", "detail": f"no answer ({type(exc).__name__})"}
    rec["http"] = r.status_code
    if r.status_code in refused:
        return {**rec, "status": "refused"}
    if 200 <= r.status_code < 300 and is_empty(r.text):
        return {**rec, "status": "empty"}
    return {**rec, "status": "leak",
            "detail": f"{req.method} {path} as {tenant} for {owner}'s id {text_of(object_id)!r} "
            f"answered HTTP {r.status_code} (not refused): {_body_start(r.text)}"}


def probe_control(client: httpx.Client, base_url: str, req: IsolationRequest, tenant: str,
                  key: str | None, object_id: Any) -> int | None:
    """The status the app gives ``tenant`` for its own object (None: no answer)."""
    assert req.object_path is not None
    path = _expand(req.object_path, _names(tenant, key, id=text_of(object_id)))
    try:
        return client.request(req.method, base_url.rstrip("/") + path).status_code
    except httpx.HTTPError:
        return None


def read_ownership(conn, iso: IsolationSpec, codes: list[str]) -> tuple[Ownership, list[str]]:
    """Tenant keys and marker values from the staging database (read-only)."""
    import sqlalchemy as sa

    own = Ownership(codes=set(codes), tenant_fields=set(iso.tenant_field))
    notes: list[str] = []
    if iso.tenant_keys:
        for row in conn.execute(sa.text(iso.tenant_keys)).fetchall():
            if len(row) >= 2 and text_of(row[0]) in own.codes:
                own.keys[text_of(row[1])] = text_of(row[0])
    for m in iso.markers:
        unknown = 0
        for row in conn.execute(sa.text(m.query())).fetchall():
            if len(row) < 2:
                raise ValueError(f"marker {m.label}: the query must return (tenant, value)")
            if not own.add(row[0], row[1], numbers=m.numbers, min_length=m.min_length):
                unknown += 1
        if unknown:
            notes.append(f"marker {m.label}: {unknown} row(s) name no known tenant (codes or "
                         "tenant_keys) and were left out")
    return own, notes


def object_ids(conn, req: IsolationRequest, tenant: str, key: str | None,
               limit: int) -> list[Any]:
    """The first ``limit`` ids ``req.object_ids`` gives for ``tenant``."""
    import sqlalchemy as sa

    stmt = sa.text(req.object_ids or "")
    binds = {"tenant": tenant, "tenant_key": key if key is not None else tenant}
    wanted = {k: v for k, v in binds.items() if k in stmt._bindparams}  # noqa: SLF001
    rows = conn.execute(stmt, wanted).fetchmany(limit)
    return [r[0] for r in rows if r and r[0] is not None]


def probed_tenants(spec) -> list[str]:
    """Who the probe asks as: isolation.tenants, else the workload's, else every tenant."""
    iso = spec.isolation
    if iso is not None and iso.tenants:
        return list(iso.tenants)
    return list(getattr(spec.workload, "tenants", None) or []) or \
        [t.code for t in spec.estate.tenants]


def run_probes(base_url: str, iso: IsolationSpec, tenants: list[str], own: Ownership,
               ids: dict[str, dict[str, list[Any]]],
               transport: httpx.BaseTransport | None = None) -> dict[str, Any]:
    """Every probe, as every tenant in ``tenants``; ``ids[request][tenant]`` are the ids
    each tenant owns (every estate tenant, not only the probed ones)."""
    key_of = {code: k for k, code in own.keys.items()}
    answers: list[dict[str, Any]] = []
    objects: list[dict[str, Any]] = []
    controls: list[dict[str, Any]] = []
    with httpx.Client(timeout=iso.timeout, transport=transport) as client:
        for a in tenants:
            key = key_of.get(a)
            for req in iso.requests:
                answers.append(probe_request(client, base_url, req, a, key, own))
                if req.object_path is None:
                    continue
                mine = ids.get(req.label, {}).get(a) or []
                if mine:
                    st = probe_control(client, base_url, req, a, key, mine[0])
                    controls.append({"request": req.label, "tenant": a, "id": text_of(mine[0]),
                                     "http": st})
                for b, theirs in sorted(ids.get(req.label, {}).items()):
                    if b == a:
                        continue
                    for oid in theirs[:iso.per_tenant]:
                        objects.append(probe_object(client, base_url, req, a, key, oid, b,
                                                    iso.refused))
    return summarise(answers, objects, controls, iso.listed)


def summarise(answers: list[dict[str, Any]], objects: list[dict[str, Any]],
              controls: list[dict[str, Any]], listed: int = 20) -> dict[str, Any]:
    leaks = [r for r in answers if r["status"] == "leak"]
    obj_leaks = [r for r in objects if r["status"] == "leak"]
    unchecked = [r for r in answers + objects if r["status"] == "unchecked"]
    weak = [c for c in controls if c["http"] is None or not 200 <= c["http"] < 300]
    per_tenant: dict[str, dict[str, int]] = {}
    for r in answers:
        t = per_tenant.setdefault(r["tenant"], {"requests": 0, "leaks": 0, "objects": 0,
                                                "object_leaks": 0, "unchecked": 0})
        t["requests"] += 1
        t["leaks"] += r["status"] == "leak"
        t["unchecked"] += r["status"] == "unchecked"
    for r in objects:
        t = per_tenant.setdefault(r["tenant"], {"requests": 0, "leaks": 0, "objects": 0,
                                                "object_leaks": 0, "unchecked": 0})
        t["objects"] += 1
        t["object_leaks"] += r["status"] == "leak"
        t["unchecked"] += r["status"] == "unchecked"
    notes = [f"control: {c['tenant']} asking for its own id {c['id']!r} on {c['request']} got "
             f"{'no answer' if c['http'] is None else 'HTTP ' + str(c['http'])}: a refusal of "
             "foreign ids proves little there" for c in weak[:5]]
    return {
        "requests": len(answers), "objects": len(objects),
        "leaks": len(leaks), "leaked_values": sum(r.get("leaked", 0) for r in leaks),
        "object_leaks": len(obj_leaks), "unchecked": len(unchecked),
        "checked": len(answers) + len(objects) - len(unchecked),
        "per_tenant": per_tenant,
        "leaking": [{k: r.get(k) for k in ("request", "tenant", "url", "tenants", "leaked",
                                           "example", "detail")} for r in leaks[:listed]],
        "object_leaking": [{k: r.get(k) for k in ("request", "tenant", "owner", "id", "url",
                                                  "http", "detail")}
                           for r in obj_leaks[:listed]],
        "unchecked_list": [{k: r.get(k) for k in ("request", "tenant", "url", "detail")}
                           for r in unchecked[:listed]],
        "controls": controls[:listed], "notes": notes,
    }


class Isolation(Step):
    """As each tenant: no other tenant's data in any answer, no foreign object served."""

    name = "isolation"
    title = "Tenant isolation probes"

    def run(self, ctx) -> dict[str, Any]:
        iso: IsolationSpec | None = getattr(ctx.spec, "isolation", None)
        if iso is None:
            return {"skipped": "no isolation probes declared"}
        if ctx.router is None:
            return {"skipped": "the new version is not running"}
        codes = [t.code for t in ctx.spec.estate.tenants]
        tenants = probed_tenants(ctx.spec)
        t0 = time.perf_counter()
        ids: dict[str, dict[str, list[Any]]] = {}
        notes: list[str] = []
        own = Ownership(codes=set(codes), tenant_fields=set(iso.tenant_field))
        if ctx.staging_db is not None:
            # Read-only: the probe observes the app's data, it never changes it.
            engine = ctx.staging_db.readonly_engine()
            what = "tenant_keys / markers"
            try:
                with engine.connect() as conn:
                    own, notes = read_ownership(conn, iso, codes)
                    key_of = {code: k for k, code in own.keys.items()}
                    for req in iso.requests:
                        if req.object_ids:
                            what = f"requests[{req.label}].object_ids"
                            ids[req.label] = {c: object_ids(conn, req, c, key_of.get(c),
                                                            iso.per_tenant) for c in codes}
            except Exception as exc:  # noqa: BLE001 - a bad declared query is the step's reason
                text = str(exc).strip()
                first = text.splitlines()[0] if text else type(exc).__name__
                raise StepFailed(f"isolation: the {what} query failed on staging: "
                                 f"{first[:200]}") from None
            finally:
                engine.dispose()
        elif iso.markers or any(r.object_ids for r in iso.requests):
            notes.append("no staging database: markers and object ids were not read")
        out = run_probes(ctx.router.url, iso, tenants, own, ids)
        out["tenants"] = tenants
        out["markers"] = len(own.strings)
        out["notes"] = notes + out["notes"]
        out["seconds"] = round(time.perf_counter() - t0, 3)
        ctx.signal("isolation.requests", out["requests"] + out["objects"])
        ctx.signal("isolation.unchecked", out["unchecked"])
        if out["checked"]:
            ctx.signal("isolation.leaks", out["leaks"])
            ctx.signal("isolation.leaked_values", out["leaked_values"])
            ctx.signal("isolation.object_leaks", out["object_leaks"])
        else:
            out["notes"].append("no answer could be checked: the isolation gate is "
                                "inconclusive")
        ctx.sections["isolation"] = out
        return {k: out[k] for k in ("requests", "objects", "leaks", "object_leaks",
                                    "unchecked", "leaking", "object_leaking", "notes")}

"""Smoke and business-transaction checks, as the spec declares them (``smoke:``).

plantstage knows no endpoint, table or flow of the app: every check comes from the spec —
an HTTP request with the expected status and JSON fields, a SQL assertion on the staging
database, or a plugin flow run once. Numbers are compared as decimals (JSON numbers are parsed
as :class:`~decimal.Decimal`, never floats), with a tolerance when the check gives one. A failure
names the request, the status and the start of the body; a body that is not JSON is a failed
check, not an internal error.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from plantstage.errors import PlantstageError
from plantstage.rehearsal.steps import Step, StepFailed
from plantstage.spec.smoke import Approx, SmokeCheck, dotted

_PH = re.compile(r"\{([a-z_]+(?:\.[a-z_]+)?)\}")
_BODY_CHARS = 200


class CheckFailed(Exception):
    """One smoke check did not hold; the message is its one-line reason."""


# -- values -------------------------------------------------------------------------------
def as_decimal(value: Any) -> Decimal | None:
    """A number (or a string holding one) as a Decimal; None for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))  # the shortest repr: 2.75 stays 2.75
    if isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            return None
        return d if d.is_finite() else None
    return None


def matches(actual: Any, expected: Any) -> tuple[bool, str]:
    """Compare one value decimal-aware; (ok, how it was compared) for the failure message."""
    if isinstance(expected, dict) and "approx" in expected:
        want = Approx.model_validate(expected)
        got = as_decimal(actual)
        if got is None:
            return False, f"{_show(actual)} is not a number (expected ≈ {want.approx})"
        diff = abs(got - want.approx)
        return diff <= want.tolerance, (f"{got} differs from {want.approx} by {diff} "
                                        f"(tolerance {want.tolerance})")
    if isinstance(expected, (int, float, Decimal)) and not isinstance(expected, bool):
        got = as_decimal(actual)
        want_d = as_decimal(expected)
        return got is not None and got == want_d, f"{_show(actual)} ≠ {want_d}"
    if isinstance(expected, str) and not isinstance(actual, str):
        got, want_d = as_decimal(actual), as_decimal(expected)
        if got is not None and want_d is not None:
            return got == want_d, f"{_show(actual)} ≠ {expected}"
        return False, f"{_show(actual)} ≠ {expected!r}"
    if isinstance(expected, dict) and isinstance(actual, dict):
        for k, v in expected.items():
            if k not in actual:
                return False, f"no field {k}"
            ok, how = matches(actual[k], v)
            if not ok:
                return False, f"{k}: {how}"
        return True, ""
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return False, f"{len(actual)} items, expected {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            ok, how = matches(a, e)
            if not ok:
                return False, f"[{i}]: {how}"
        return True, ""
    return actual == expected, f"{_show(actual)} ≠ {expected!r}"


def _show(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "…"


def substitute(value: Any, names: dict[str, str]) -> Any:
    """Replace ``{release.version}``, ``{tenant}`` … inside strings of a JSON-like value."""
    if isinstance(value, str):
        return _PH.sub(lambda m: names.get(m.group(1), m.group(0)), value)
    if isinstance(value, dict):
        return {substitute(k, names): substitute(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, names) for v in value]
    return value


def _body_start(text: str) -> str:
    text = " ".join(text.split())
    return text[:_BODY_CHARS] + ("…" if len(text) > _BODY_CHARS else "") if text else "(empty)"


# -- the three kinds of check ---------------------------------------------------------------
def run_http(check: SmokeCheck, base_url: str, names: dict[str, str],
             transport: httpx.BaseTransport | None = None) -> str:
    """Send the check's request; raise CheckFailed naming request, status and body start."""
    req = check.http
    assert req is not None
    path = substitute(req.path, names)
    what = f"{req.method} {base_url.rstrip('/')}{path}"
    body = substitute(req.json_body, names)
    headers = substitute(req.headers, names) or None
    try:
        with httpx.Client(timeout=check.timeout, transport=transport) as client:
            r = client.request(req.method, base_url.rstrip("/") + path, json=body,
                               headers=headers)
    except httpx.HTTPError as exc:
        raise CheckFailed(f"{what}: no answer ({type(exc).__name__}: {str(exc)[:120]})") \
            from None
    statuses = check.expect.status if check.expect.status is not None else 200
    allowed = statuses if isinstance(statuses, list) else [statuses]
    if r.status_code not in allowed:
        raise CheckFailed(f"{what} answered HTTP {r.status_code} (expected "
                          f"{' or '.join(map(str, allowed))}): {_body_start(r.text)}")
    if not check.expect.json_fields:
        return f"{what} → HTTP {r.status_code}"
    try:
        doc = json.loads(r.text, parse_float=Decimal)
    except ValueError:
        raise CheckFailed(f"{what} answered HTTP {r.status_code} with a body that is not JSON: "
                          f"{_body_start(r.text)}") from None
    for field, want in check.expect.json_fields.items():
        found, got = dotted(doc, field)
        if not found:
            raise CheckFailed(f"{what} answered HTTP {r.status_code} without field {field}: "
                              f"{_body_start(r.text)}")
        ok, how = matches(got, substitute(want, names))
        if not ok:
            raise CheckFailed(f"{what}: field {field}: {how}")
    shown = ", ".join(f"{f}={_show(dotted(doc, f)[1])}" for f in check.expect.json_fields)
    return f"{what} → HTTP {r.status_code}, {shown}"


def run_sql(check: SmokeCheck, engine, names: dict[str, str]) -> str:
    """Run the check's query (read-only) and compare rows or the first value."""
    import sqlalchemy as sa

    stmt = sa.text(check.sql or "")
    binds = {"tenant": names["tenant"], "release_version": names["release.version"],
             "release_name": names["release.name"], "ref": names["ref"],
             "current_version": names["current.version"], "current_name": names["current.name"]}
    wanted = {k: v for k, v in binds.items() if k in stmt._bindparams}  # noqa: SLF001
    try:
        with engine.connect() as conn:
            rows = conn.execute(stmt, wanted).fetchall()
    except Exception as exc:  # noqa: BLE001 - driver errors become the check's reason
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckFailed(f"query failed: {first[:200]}") from None
    e = check.expect
    if e.rows is not None:
        if len(rows) != e.rows:
            sample = "; ".join(str(tuple(r)) for r in rows[:3])
            raise CheckFailed(f"query returned {len(rows)} row(s), expected {e.rows}"
                              + (f": {sample[:_BODY_CHARS]}" if sample else ""))
        return f"{len(rows)} row(s)"
    if not rows:
        raise CheckFailed(f"query returned no row (expected value {_show(e.value)})")
    got = rows[0][0]
    ok, how = matches(got, substitute(e.value, names))
    if not ok:
        raise CheckFailed(f"query's first value: {how}")
    return f"value {_show(got)}"


def run_flow(ctx, check: SmokeCheck, tenant: str, names: dict[str, str],
             where: str | None = None) -> dict[str, float]:
    """Run a plugin flow once against the new version (FlowError → CheckFailed)."""
    from plantstage.workload.context import FlowError
    from plantstage.workload.once import run_flow_once
    from plantstage.workload.resources import RunResources

    resources = RunResources(
        database_url=ctx.staging_db.app_url() if ctx.staging_db is not None else None,
        mqtt_url=ctx.placeholders.get("mqtt_url"), twin_set=ctx.twin_set)
    params = substitute(check.params, names)
    try:
        return run_flow_once(ctx.loaded, check.flow, params, base_url=ctx.router.url,
                             resources=resources, tenant=tenant, timeout=check.timeout,
                             where=where)
    except FlowError as exc:
        raise CheckFailed(f"flow {check.flow} failed for {tenant}: {exc}"[:400]) from None
    except PlantstageError as exc:
        raise CheckFailed(f"flow {check.flow}: {exc.one_line()}") from None


def validate(loaded) -> None:
    """Every smoke check's flow resolves (a registered name or ``module:function``); raise
    SpecProblems naming each bad one at its file:line (``plantstage check``)."""
    from plantstage.errors import SpecError, SpecProblems

    flows = [(i, c.flow) for i, c in enumerate(loaded.spec.smoke) if c.flow is not None]
    if not flows:
        return
    from plantstage.workload.plan import resolve_flow
    from plantstage.workload.registry import load_plugins

    try:
        registry = load_plugins(loaded)
    except SpecError:
        return  # the workload's validation reports a plugin that does not import, once
    problems: list[PlantstageError] = []
    for i, name in flows:
        try:
            resolve_flow(name, registry, loaded.base_dir,
                         f"{loaded.where('smoke', i, 'flow')}: smoke[{i}].flow")
        except SpecError as exc:
            problems.append(exc)
    if problems:
        raise SpecProblems(problems)


def default_tenant(spec) -> str:
    """The tenant smoke checks use unless they name one: the first workload tenant, else the
    first estate tenant, else empty."""
    tenants = list(getattr(spec.workload, "tenants", None) or [])
    if tenants:
        return tenants[0]
    return spec.estate.tenants[0].code if spec.estate.tenants else ""


class Smoke(Step):
    """After the switch: the checks the spec declares hold on the new version."""

    name = "smoke"
    title = "Smoke and business-transaction checks"

    def run(self, ctx):
        declared: list[SmokeCheck] = ctx.spec.smoke
        if not declared:
            ctx.sections["smoke"] = {"checks": [], "note": "no smoke checks declared"}
            return {"checks": [], "note": "no smoke checks declared"}
        out: list[dict[str, Any]] = []
        for i, check in enumerate(declared):
            tenant = check.tenant or default_tenant(ctx.spec)
            names = {"release.name": ctx.release.name, "release.version": ctx.release.version,
                     "current.name": ctx.current.name, "current.version": ctx.current.version,
                     "tenant": tenant, "ref": f"smoke-{uuid.uuid4().hex[:12]}"}
            rec: dict[str, Any] = {"name": check.name, "kind": check.kind}
            t0 = time.perf_counter()
            try:
                if check.kind == "http":
                    rec["detail"] = run_http(check, ctx.router.url, names)
                elif check.kind == "sql":
                    if check.database not in (None, ctx.database_component()):
                        raise CheckFailed(f"database {check.database} is not bound in staging")
                    # Read-only: a smoke check observes the app's data, it never changes it.
                    engine = ctx.staging_db.readonly_engine()
                    try:
                        rec["detail"] = run_sql(check, engine, names)
                    finally:
                        engine.dispose()
                else:
                    where = ctx.loaded.where("smoke", i) if hasattr(ctx.loaded, "where") \
                        else None
                    signals = run_flow(ctx, check, tenant, names, where)
                    rec["detail"] = f"flow {check.flow} ran once for {tenant}"
                    rec["signals"] = {k: float(v) for k, v in (signals or {}).items()}
                rec["status"] = "passed"
            except CheckFailed as exc:
                rec.update(status="failed", detail=str(exc))
            rec["seconds"] = round(time.perf_counter() - t0, 3)
            out.append(rec)
        failed = [r for r in out if r["status"] == "failed"]
        results = {"checks": out, "passed": len(out) - len(failed), "failed": len(failed)}
        ctx.sections["smoke"] = results
        if failed:
            more = f" (and {len(failed) - 1} more failed)" if len(failed) > 1 else ""
            raise StepFailed(f"smoke check {failed[0]['name']} failed: "
                             f"{failed[0]['detail']}{more}", results)
        return results

"""Tenant master data declared in the spec (``workload.tenant_data``), loaded per tenant.

Each source is an HTTP GET on the version under test or a read query on the staging database;
the result is a list a flow reads as ``ctx.tenant.data[NAME]``. A source that cannot be read is
one error naming the source, the tenant, the request and the start of the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from plantstage.errors import PlantstageError
from plantstage.spec.workload import TenantDataSource
from plantstage.workload.resources import RunResources


def _dig(value: Any, path: str | None) -> Any:
    if not path:
        return value
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(part)
    return value


async def load_source(name: str, src: TenantDataSource, tenant: str, client: Any,
                      resources: RunResources, where: str | None = None) -> list[Any]:
    """One source's list for ``tenant``; :class:`PlantstageError` naming the source if not."""
    label = f"workload.tenant_data.{name} (tenant '{tenant}')"
    if src.http is not None:
        path = src.http.replace("{tenant}", tenant)
        try:
            r = await client.get(path)
        except Exception as exc:  # noqa: BLE001 - any transport failure, named with the URL
            raise PlantstageError(f"{label}: GET {path} failed: {type(exc).__name__}: {exc}",
                                  where=where, hint="is the app up, and is this its path?") \
                from None
        body = r.content[:200].decode("utf-8", "replace")
        if r.status_code != 200:
            raise PlantstageError(f"{label}: GET {path} answered HTTP {r.status_code}: {body}",
                                  where=where, hint="fix the path template ({tenant} is the "
                                  "tenant's code)")
        try:
            data = _dig(r.json(), src.items)
        except ValueError:
            raise PlantstageError(f"{label}: GET {path} did not answer JSON: {body}",
                                  where=where) from None
        except KeyError as exc:
            raise PlantstageError(f"{label}: GET {path}: no '{exc.args[0]}' in the answer "
                                  f"(items: {src.items}): {body}", where=where) from None
        if not isinstance(data, list):
            raise PlantstageError(f"{label}: GET {path} answered a {type(data).__name__}, not a "
                                  f"list: {body}", where=where,
                                  hint="name where the list is with 'items:'")
        if src.field is None:
            return data
        out = []
        for i, item in enumerate(data):
            try:
                out.append(_dig(item, src.field))
            except KeyError:
                raise PlantstageError(f"{label}: GET {path}: element {i} has no field "
                                      f"'{src.field}': {str(item)[:200]}", where=where,
                                      hint="fix 'field:'") from None
        return out
    engine = resources.engine()
    if engine is None:
        raise PlantstageError(f"{label}: the SQL source needs the staging database, and this run "
                              "has none", where=where,
                              hint="give --database-url, or load it over 'http:'")
    sql = src.sql or ""

    def run() -> list[Any]:
        import sqlalchemy as sa

        with engine.connect() as conn:
            res = conn.execute(sa.text(sql), {"tenant": tenant} if ":tenant" in sql else {})
            keys = list(res.keys())
            rows = res.fetchall()
        if len(keys) == 1:
            return [r[0] for r in rows]
        return [dict(zip(keys, r, strict=True)) for r in rows]

    try:
        return await asyncio.to_thread(run)
    except Exception as exc:  # noqa: BLE001 - a bad query or an unreachable database, named
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PlantstageError(f"{label}: the query failed: {type(exc).__name__}: {first[:200]}",
                              where=where, hint="fix the SQL (:tenant is the tenant's code)") \
            from None


async def load_tenant_data(sources: Mapping[str, TenantDataSource], tenant: str, client: Any,
                           resources: RunResources,
                           where: Mapping[str, str] | None = None) -> dict[str, list[Any]]:
    """Every declared source for ``tenant`` (name → list)."""
    out: dict[str, list[Any]] = {}
    for name, src in sources.items():
        out[name] = await load_source(name, src, tenant, client, resources,
                                      (where or {}).get(name))
    return out


__all__ = ["load_source", "load_tenant_data"]

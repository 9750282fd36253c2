"""Access: database roles and grants, the app's role → permission map, declared network rules.

Grants are read from the catalogue every role may read (PostgreSQL's ``pg_class.relacl``,
MariaDB's ``information_schema``), so a read-only production account sees all of them, and only
for the tables of the database compared — never the whole server's roles, which other
databases on the same server do not share with this one.
"""

from __future__ import annotations

import sqlalchemy as sa

from plantstage import engines
from plantstage.errors import PlantstageError
from plantstage.parity._environment import EnvView
from plantstage.parity._model import LayerFacts
from plantstage.parity.collectors.config import ConfigUnreadable, read_named
from plantstage.spec.models import ComponentKind

#: A scope both environments report with this prefix is not applicable, not unknown.
NOT_APPLICABLE = "n/a: "

_PG_GRANTS = sa.text("""
SELECT c.relname AS tbl, COALESCE(r.rolname, 'PUBLIC') AS grantee, a.privilege_type AS priv
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL aclexplode(COALESCE(c.relacl, acldefault('r', c.relowner))) a
LEFT JOIN pg_roles r ON r.oid = a.grantee
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm')
""")
_PG_ROLES = sa.text("""
SELECT rolname, rolsuper, rolcanlogin, rolcreatedb, rolcreaterole, rolbypassrls
FROM pg_roles WHERE rolname = ANY(:names)
""")
_MY_GRANTS = sa.text("""
SELECT TABLE_NAME AS tbl, GRANTEE AS grantee, PRIVILEGE_TYPE AS priv
FROM information_schema.TABLE_PRIVILEGES WHERE TABLE_SCHEMA = DATABASE()
UNION ALL
SELECT '*', GRANTEE, PRIVILEGE_TYPE
FROM information_schema.SCHEMA_PRIVILEGES WHERE TABLE_SCHEMA = DATABASE()
""")


def collect(view: EnvView) -> LayerFacts:
    out = LayerFacts("access")
    for name in view.spec.components_of(ComponentKind.database):
        if view.binding(name) is not None:
            _grants(view, out, name)
    _roles(view, out)
    _network(view, out)
    return out


def _grants(view: EnvView, out: LayerFacts, name: str) -> None:
    url, how = view.database_url(name)
    if url is None:
        out.fail(f"grant.{name}:", name, how)
        return
    try:
        engine = engines.connect_production(url)
    except PlantstageError as exc:
        out.fail(f"grant.{name}:", name, exc.one_line())
        return
    try:
        dialect = engine.dialect.name
        if dialect == "sqlite":
            for scope in (f"grant.{name}:", f"role.{name}:"):
                out.fail(scope, name, NOT_APPLICABLE + "SQLite has no roles or grants")
            return
        with engine.connect() as conn:
            rows = conn.execute(_PG_GRANTS if dialect == "postgresql" else _MY_GRANTS).all()
            grants: dict[tuple[str, str], set[str]] = {}
            for tbl, grantee, priv in rows:
                if engines.is_bookkeeping(tbl):
                    continue
                grants.setdefault((grantee, tbl), set()).add(priv)
            for (grantee, tbl), privs in sorted(grants.items()):
                out.add(f"grant.{name}:{grantee}.{tbl}", ", ".join(sorted(privs)), name,
                        f"{dialect} catalogue")
            if dialect == "postgresql":
                names = sorted({g for g, _ in grants if g != "PUBLIC"})
                for r in conn.execute(_PG_ROLES, {"names": names}).mappings():
                    attrs = [k[3:] for k in ("rolsuper", "rolcanlogin", "rolcreatedb",
                                             "rolcreaterole", "rolbypassrls") if r[k]]
                    out.add(f"role.{name}:{r['rolname']}", ", ".join(attrs) or "plain", name,
                            "pg_roles")
    except Exception as exc:  # noqa: BLE001 - no read access is a reason, not a crash
        out.fail(f"grant.{name}:", name, f"cannot read grants: {str(exc).splitlines()[0][:160]}")
    finally:
        engine.dispose()


def _roles(view: EnvView, out: LayerFacts) -> None:
    rm = view.spec.parity.roles
    if rm is None:
        out.notes.append("the spec points at no role → permission map (parity.roles)")
        return
    try:
        path, data = read_named(view, getattr(rm, view.name))
    except ConfigUnreadable as exc:
        out.fail("permissions.", rm.component, str(exc))
        return
    node = data
    for part in rm.key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        out.fail("permissions.", rm.component, f"{path}: no '{rm.key}' mapping of roles")
        return
    for role, perms in node.items():
        perms = perms if isinstance(perms, list) else [perms]
        out.add(f"permissions.{role}", sorted(str(p) for p in perms), rm.component, path.name)


def _network(view: EnvView, out: LayerFacts) -> None:
    rules = view.spec.parity.network.get(view.name)
    if rules is None:
        out.fail("net.", None, NOT_APPLICABLE + f"the spec declares no network rules for "
                                                f"{view.name} (parity.network)")
        return
    for r in rules:
        value = r.protocol + (f":{r.port}" if r.port else "")
        out.add(f"net.{r.from_}->{r.to}", value, r.from_, f"parity.network.{view.name}")

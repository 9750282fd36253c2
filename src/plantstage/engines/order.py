"""Tables in foreign-key order, without SQLAlchemy's warning when foreign keys form a cycle.

``MetaData.sorted_tables`` warns ("Cannot correctly sort tables; there are unresolvable
cycles …") every time it is read on a schema whose tables reference each other, as ERP schemas
often do (a partner's company, a company's partner) — once per pass of the refresh. The order
is the same here (SQLAlchemy's own sort, the keys of a cycle set aside); the cycle is said once,
where it matters, by :func:`fk_cycles`.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.schema import sort_tables_and_constraints


def _sorted(md: sa.MetaData) -> list[tuple[sa.Table | None, list]]:
    return sort_tables_and_constraints(sorted(md.tables.values(), key=lambda t: t.key))


def sorted_tables(md: sa.MetaData) -> list[sa.Table]:
    """``md.sorted_tables`` (parents first) without the cycle warning."""
    return [t for t, _ in _sorted(md) if t is not None]


def fk_cycles(md: sa.MetaData) -> list[str]:
    """The foreign keys that close a cycle, as ``table.column → table`` (empty without one)."""
    out = []
    for table, fkcs in _sorted(md):
        if table is None:
            for fkc in fkcs:
                cols = ", ".join(c.name for c in fkc.columns)
                out.append(f"{fkc.table.name}.{cols} → {fkc.referred_table.name}")
    return sorted(out)

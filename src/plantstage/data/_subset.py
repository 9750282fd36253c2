"""Referentially complete subsets of production.

Seeds come from the spec (tenants, a date window); then, until nothing changes:

* every row a kept row references (declared foreign keys and the spec's ``relations``) is kept
  — this is what makes the subset complete, including self-referencing BOMs and cycles;
* a row of a table with no filter of its own is kept when every parent it references is kept
  (order lines follow their orders, supplier prices follow their suppliers).

Only key and filter columns are read (streamed); the kept keys are held in memory, so a subset
costs memory in proportion to the rows it keeps, never to their width.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa

from plantstage.spec.masking import Subset


@dataclass
class Ref:
    child: str
    child_cols: tuple[str, ...]
    parent: str
    parent_cols: tuple[str, ...]
    declared: bool


@dataclass
class SubsetPlan:
    """Kept row identities per table (``None``: every row)."""

    keep: dict[str, set[tuple] | None] = field(default_factory=dict)
    identity: dict[str, tuple[str, ...]] = field(default_factory=dict)
    iterations: int = 0

    def count(self, table: str) -> int | None:
        k = self.keep.get(table)
        return None if k is None else len(k)


def references(md: sa.MetaData, tables: list[str], subset: Subset | None) -> list[Ref]:
    refs = []
    for t in tables:
        for fkc in md.tables[t].foreign_key_constraints:
            parent = fkc.referred_table.name
            if parent in tables:
                refs.append(Ref(t, tuple(c.name for c in fkc.columns), parent,
                                tuple(e.column.name for e in fkc.elements), True))
    for r in (subset.relations if subset else []):
        ct, cc = r.from_.split(".")
        pt, pc = r.to.split(".")
        refs.append(Ref(ct, (cc,), pt, (pc,), False))
    return refs


def plan_subset(src: sa.Engine, md: sa.MetaData, tables: list[str], subset: Subset) -> SubsetPlan:
    refs = references(md, tables, subset)
    by_child: dict[str, list[Ref]] = defaultdict(list)
    referenced: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for r in refs:
        by_child[r.child].append(r)
        referenced[r.parent].add(r.parent_cols)

    plan = SubsetPlan()
    filters: dict[str, list] = defaultdict(list)
    with src.connect() as conn:
        tf = subset.tenants
        if tf is not None:
            tt = md.tables[tf.table]
            tpk = [c.name for c in tt.primary_key.columns]
            ids = {tuple(r) for r in conn.execute(
                sa.select(*[tt.c[c] for c in tpk]).where(tt.c[tf.key].in_(tf.codes)))}
            filters[tf.table].append(lambda row, ids=ids, cols=tuple(tpk):
                                     tuple(row[c] for c in cols) in ids)
            for r in refs:
                if r.declared and r.parent == tf.table and r.parent_cols == tuple(tpk) \
                        and r.child != tf.table:
                    filters[r.child].append(lambda row, ids=ids, cols=r.child_cols:
                                            tuple(row[c] for c in cols) in ids)
        w = subset.window
        if w is not None:
            for t, c in w.columns.items():
                def in_window(row, c=c, since=w.since, until=w.until) -> bool:
                    v = row[c]
                    if v is None:
                        return False
                    if isinstance(v, str):  # SQLite columns without a declared type
                        v = datetime.fromisoformat(v)
                    if isinstance(v, date) and not isinstance(v, datetime):
                        v = datetime(v.year, v.month, v.day)
                    return (since is None or v >= since) and (until is None or v < until)
                filters[t].append(in_window)

        light: dict[str, list[str]] = {}
        for t in tables:
            table = md.tables[t]
            pk = tuple(c.name for c in table.primary_key.columns)
            cols = set(pk)
            for r in by_child[t]:
                cols.update(r.child_cols)
            for pc in referenced[t]:
                cols.update(pc)
            if subset.window and t in subset.window.columns:
                cols.add(subset.window.columns[t])
            if tf is not None and t == tf.table:
                cols.add(tf.key)
            light[t] = sorted(cols) if cols else [c.name for c in table.columns]
            plan.identity[t] = pk or tuple(light[t])
            plan.keep[t] = set()

        dependent = {t for t in tables if t not in filters and any(r.declared
                                                                   for r in by_child[t])}
        everything = {t for t in tables if t not in filters and t not in dependent}

        def rows(t: str):
            table = md.tables[t]
            res = conn.execution_options(stream_results=True, yield_per=10_000).execute(
                sa.select(*[table.c[c] for c in light[t]]))
            for r in res:
                yield dict(zip(light[t], r, strict=True))

        # Values each parent must provide, and values kept rows provide (both only grow).
        needed: dict[tuple[str, tuple[str, ...]], set[tuple]] = defaultdict(set)
        kept_vals: dict[tuple[str, tuple[str, ...]], set[tuple]] = defaultdict(set)
        changed = True
        first = True
        while changed:
            changed = False
            plan.iterations += 1
            needs_before = sum(len(s) for s in needed.values())
            for t in tables:
                keep = plan.keep[t]
                ident = plan.identity[t]
                for row in rows(t):
                    key = tuple(row[c] for c in ident)
                    if key not in keep:
                        add = False
                        if first and t in everything:
                            add = True
                        elif first and t in filters:
                            add = all(f(row) for f in filters[t])
                        if not add:
                            add = any(tuple(row[c] for c in pc) in needed[(t, pc)]
                                      for pc in referenced[t] if needed.get((t, pc)))
                        if not add and t in dependent:
                            decl = [r for r in by_child[t] if r.declared]
                            add = all(
                                any(v is None for v in vals)
                                or vals in kept_vals[(r.parent, r.parent_cols)]
                                for r in decl
                                for vals in [tuple(row[c] for c in r.child_cols)])
                        if add:
                            keep.add(key)
                            changed = True
                    if key in keep:
                        for pc in referenced[t]:
                            kept_vals[(t, pc)].add(tuple(row[c] for c in pc))
                        for r in by_child[t]:
                            vals = tuple(row[c] for c in r.child_cols)
                            if all(v is not None for v in vals):
                                if vals not in kept_vals[(r.parent, r.parent_cols)]:
                                    needed[(r.parent, r.parent_cols)].add(vals)
            # A parent processed before its child has not seen this pass's needs: go again.
            # (Needs no row can meet — a dangling relation — stop growing, so this ends.)
            changed = changed or sum(len(s) for s in needed.values()) != needs_before
            first = False
            if plan.iterations > 100:  # pragma: no cover - a fixpoint always exists
                break
    return plan

"""Reference rows the migrations seed (``schema: migrations``).

A migration that inserts reference rows (units, countries, statuses) leaves them in the target
before the load; production holds the same rows, so loading them again breaks a unique key.
Each table says what to do (``refresh.seeded``): ``replace`` deletes the seeded rows and loads
production's, ``skip-identical`` loads production's rows except those the seed already holds
as they are, ``fail`` (the default) stops with the table and the row key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from plantstage.data._mask import RefreshError
from plantstage.data._subset import SubsetPlan
from plantstage.engines.errors import database_error
from plantstage.engines.order import sorted_tables
from plantstage.spec.masking import SeededRows


@dataclass
class Seeded:
    """What the seed left in the target: rows per table that stay (counted by verification)."""

    kept: dict[str, int] = field(default_factory=dict)
    replaced: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def notes(self) -> list[str]:
        out = [f"{t}: {n} seeded row(s) replaced by production's" for t, n in
               self.replaced.items()]
        out += [f"{t}: {n} seeded row(s) identical to production's, kept" for t, n in
                self.skipped.items() if n]
        return out


def _norm(v: Any) -> str:
    """Values compared across engines (1 = 1.0 = '1', dates as ISO text)."""
    if v is None:
        return "\x00"
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    s = str(v)
    try:
        from decimal import Decimal

        d = Decimal(s)
        return str(d.normalize()) if d.is_finite() else s
    except Exception:  # noqa: BLE001 - not a number
        return s.replace("T", " ") if len(s) >= 19 and s[10:11] == "T" else s


def _key_text(cols: list[str], key: tuple) -> str:
    return ", ".join(f"{c}={v!r}" for c, v in zip(cols, key, strict=True))


def reconcile(src: sa.Engine, src_md: sa.MetaData, dst: sa.Engine, dst_md: sa.MetaData,
              tables: list[str], policy: dict[str, SeededRows], where: str,
              subset: SubsetPlan | None) -> tuple[Seeded, SubsetPlan | None]:
    """Apply each table's policy to the rows the migrations left; return what stays and the
    subset plan with the skipped production rows taken out."""
    seeded = Seeded()
    with dst.connect() as d:
        present = {t: n for t in tables if t in dst_md.tables
                   if (n := d.execute(sa.select(sa.func.count()).select_from(
                       dst_md.tables[t])).scalar() or 0)}
    if not present:
        return seeded, subset
    order = [t.name for t in sorted_tables(dst_md) if t.name in present]
    replace = [t for t in order if policy.get(t) == SeededRows.replace]
    try:
        with dst.begin() as d:
            for t in reversed(replace):  # children first
                d.execute(dst_md.tables[t].delete())
                seeded.replaced[t] = present[t]
    except sa.exc.DBAPIError as exc:
        raise RefreshError(f"cannot delete the rows the migrations seeded into "
                           f"'{replace[0]}': {database_error(exc)}",
                           where=f"{where}: refresh.seeded",
                           hint="replace the tables that reference them too") from None
    for t in order:
        if t in seeded.replaced:
            continue
        how = policy.get(t, SeededRows.fail)
        stbl, dtbl = src_md.tables[t], dst_md.tables[t]
        cols = [c.name for c in stbl.columns if c.name in dtbl.c]
        ident = [c.name for c in stbl.primary_key.columns if c.name in dtbl.c] or cols
        with dst.connect() as d:
            mine = {tuple(r[:len(ident)]): r[len(ident):] for r in d.execute(
                sa.select(*[dtbl.c[c] for c in ident], *[dtbl.c[c] for c in cols]))}
        nkeys = {tuple(_norm(v) for v in k): k for k in mine}
        hits: dict[tuple, tuple] = {}  # production key → production row
        all_keys: set[tuple] = set()
        with src.connect() as s:
            res = s.execution_options(stream_results=True, yield_per=20_000).execute(
                sa.select(*[stbl.c[c] for c in ident], *[stbl.c[c] for c in cols]))
            for r in res:
                k = tuple(r[:len(ident)])
                all_keys.add(k)
                nk = tuple(_norm(v) for v in k)
                if nk in nkeys:
                    hits[k] = tuple(r[len(ident):])
        if how == SeededRows.fail:
            if hits:
                key = next(iter(hits))
                raise RefreshError(
                    f"the migrations seed rows into '{t}' that production holds too "
                    f"(row {_key_text(ident, key)}; {len(hits)} row(s) in all)",
                    where=f"{where}: refresh.seeded",
                    hint=f"declare refresh.seeded: {{{t}: replace}} (production's rows win) "
                    "or skip-identical")
            seeded.kept[t] = present[t]
            continue
        # skip-identical: a seeded row that production holds differently stops the refresh
        for k, prow in hits.items():
            srow = mine[nkeys[tuple(_norm(v) for v in k)]]
            diff = [c for c, a, b in zip(cols, prow, srow, strict=True) if _norm(a) != _norm(b)]
            if diff:
                raise RefreshError(
                    f"a row the migrations seed into '{t}' differs from production's (row "
                    f"{_key_text(ident, k)}: {', '.join(diff)})",
                    where=f"{where}: refresh.seeded",
                    hint=f"declare refresh.seeded: {{{t}: replace}} to load production's rows")
        seeded.kept[t] = present[t]
        seeded.skipped[t] = len(hits)
        if not hits:
            continue
        if subset is None:
            subset = SubsetPlan()
        keep = subset.keep.get(t)
        if keep is not None and tuple(subset.identity[t]) != tuple(ident):
            raise RefreshError(f"cannot both subset and skip seeded rows of '{t}'",
                               where=f"{where}: refresh.seeded",
                               hint=f"declare refresh.seeded: {{{t}: replace}}")
        base = keep if keep is not None else all_keys
        subset.keep[t] = base - set(hits)
        subset.identity[t] = tuple(ident)
    return seeded, subset

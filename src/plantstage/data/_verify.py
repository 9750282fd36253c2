"""Verification after the load: foreign keys (anti-joins) and the leak scan (every text
value of the target against production's sensitive values, and inside free text)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from plantstage.data import _pii
from plantstage.data._classify import ColumnPlan
from plantstage.data._copy import (
    LeakScanner,
    avoid_digests,
    blocks,
    select_sql,
)
from plantstage.data._marker import MARKER
from plantstage.data._mask import (
    norm_text,
)
from plantstage.data._plan import MIN_LEAK_LEN
from plantstage.data._pool import can_fork, forked
from plantstage.data._result import RefreshResult
from plantstage.engines.base import EngineAdapter
from plantstage.engines.order import sorted_tables
from plantstage.spec.masking import MaskKind


def verify_target(dst: sa.Engine, md: sa.MetaData, result: RefreshResult, avoid: set[int],
            target: EngineAdapter | None = None,
            before_fk: Callable[[], None] | None = None,
            plain: set[bytes] | None = None,
            after_fk: Callable[[], None] | None = None) -> None:
    """Foreign keys and the leak scan. On a server they run side by side: ``before_fk`` (the
    deferred indexes and constraints), the anti-joins and ``after_fk`` (the look inside text,
    mostly the database's filtering) are the database's work, the scan is ours (in worker
    processes where the target speaks COPY)."""
    if target is None or target.name == "sqlite":
        if before_fk is not None:
            before_fk()
        result.fk_violations.update(_check_foreign_keys(dst, md))
        if after_fk is not None:
            after_fk()
        _leak_scan(dst, md, result, avoid, target, plain=plain)
        return
    fk_result: dict[str, Any] = {}

    def database_side() -> None:
        try:
            if before_fk is not None:
                before_fk()
            fk_result["fks"] = _check_foreign_keys(dst, md)
            if after_fk is not None:
                after_fk()
        except BaseException as exc:  # re-raised in the caller
            fk_result["error"] = exc

    th = threading.Thread(target=database_side, name="refresh-fk", daemon=True)
    try:
        _leak_scan(dst, md, result, avoid, target, started=th.start, plain=plain)
    finally:
        if th.ident is not None:  # started (always, unless the scan failed first)
            th.join()
    if "error" in fk_result:
        raise fk_result["error"]
    result.fk_violations.update(fk_result["fks"])


def _check_foreign_keys(dst: sa.Engine, md: sa.MetaData) -> dict[str, int]:
    """One anti-join per declared foreign key: children whose parent is missing."""
    out: dict[str, int] = {}
    with dst.connect() as conn:
        for table in sorted_tables(md):
            for fkc in table.foreign_key_constraints:
                parent = fkc.referred_table
                pairs = [(c, e.column) for c, e in zip(fkc.columns, fkc.elements, strict=True)]
                child = table.alias("c")
                par = parent.alias("p")
                cond = sa.and_(*[par.c[pc.name] == child.c[cc.name] for cc, pc in pairs])
                q = sa.select(sa.func.count()).select_from(child).where(
                    sa.and_(*[child.c[cc.name].is_not(None) for cc, _ in pairs]),
                    ~sa.exists().where(cond))
                n = conn.execute(q).scalar() or 0
                if n:
                    name = f"{table.name}({', '.join(c.name for c, _ in pairs)}) → {parent.name}"
                    out[name] = n
    return out


def _text_columns(md: sa.MetaData) -> list[tuple[str, list[str]]]:
    return [(t.name, cols) for t in sorted_tables(md) if t.name != MARKER
            if (cols := [c.name for c in t.columns if isinstance(c.type, sa.String | sa.Text)])]


def _scan_table(dst: sa.Engine, table: sa.Table, cols: list[str], avoid: set[int],
                target: EngineAdapter | None, digests: set[bytes] | None = None,
                plain: set[bytes] | None = None) -> list[int]:
    """Hits per column of one staging table."""
    with dst.connect() as conn:
        copy = target is not None and target.supports_copy
        enc = target.copy_encoding(conn) if copy else "utf-8"
        scan = LeakScanner(avoid, len(cols), enc, MIN_LEAK_LEN, digests, plain)
        q = sa.select(*[table.c[c] for c in cols])
        if copy:
            for block in blocks(target.copy_out(conn, select_sql(q, dst))):
                scan.scan_block(block)
        else:
            res = conn.execution_options(stream_results=True, yield_per=20_000).execute(q)
            for part in res.partitions(20_000):
                scan.scan_rows(part)
    return scan.hits


def _child_scan(st: dict, job: tuple[str, list[str]]) -> tuple[str, list[str], list[int]]:
    t, cols = job
    plain = st.get("plain")
    digests = st.get("digests")
    if digests is None and plain is None:
        digests = st["digests"] = avoid_digests(st["avoid"])
    return t, cols, _scan_table(st["dst"], st["md"].tables[t], cols, st["avoid"], st["target"],
                                digests, plain)


def _leak_scan(dst: sa.Engine, md: sa.MetaData, result: RefreshResult, avoid: set[int],
               target: EngineAdapter | None,
               started: Callable[[], None] | None = None,
               plain: set[bytes] | None = None) -> None:
    """Every text value in the target against every sensitive production value."""
    jobs = _text_columns(md) if avoid else []
    if jobs and target is not None and target.supports_copy and can_fork():
        state = {"target": target, "md": md, "avoid": avoid, "plain": plain,
                 "inherited": [dst]}
        found = list(forked(state, _child_scan, jobs, started=started))
    else:
        if started is not None:
            started()
        digests = avoid_digests(avoid) if plain is None else None
        found = [(t, cols, _scan_table(dst, md.tables[t], cols, avoid, target, digests, plain))
                 for t, cols in jobs]
    for t, cols, hits in sorted(found):
        for c, n in zip(cols, hits, strict=True):
            if n:
                result.leaks[f"{t}.{c}"] = n


def inside_text_columns(plans: list[ColumnPlan], md: sa.MetaData) -> dict[str, list[str]]:
    """Columns the leak scan also looks inside: text copied unchanged, and scrubbed text."""
    out: dict[str, list[str]] = {}
    for p in plans:
        table = md.tables.get(p.table)
        if table is None or p.column not in table.c:
            continue
        if not isinstance(table.c[p.column].type, sa.String) or p.reason == "key":
            continue
        scrubbed = p.rule is not None and p.rule.rule == MaskKind.scrub
        kept = p.status in ("kept", "kept-by-wildcard", "not-sensitive")
        if scrubbed or (kept and p.column not in table.primary_key.columns):
            out.setdefault(p.table, []).append(p.column)
    return out


def pattern_checked(plans: list[ColumnPlan]) -> set[tuple[str, str]]:
    """Text copied unchanged whose every value the finder reads too (the coverage check saw a
    sample): personal data found there is a leak, unless the rule says ``reviewed``."""
    return {(p.table, p.column) for p in plans
            if p.status in ("kept", "kept-by-wildcard", "not-sensitive") and p.reason != "key"
            and not (p.rule is not None and p.rule.reviewed)}


def _leaks_inside(v: str, plain: set[bytes], patterns: bool) -> bool:
    if any(f.encode() in plain for f in _pii.fragments(v)):
        return True
    return patterns and bool(_pii.find(v))


def scan_inside_text(dst: sa.Engine, md: sa.MetaData, columns: dict[str, list[str]],
                     plain: set[bytes], leaks: dict[str, int],
                     patterns: set[tuple[str, str]] = frozenset()) -> None:
    """Production's sensitive values (and what ``scrub`` found) inside staging's text: a
    customer's e-mail address in a kept note is a leak the whole-value scan cannot see.

    Only values with a space or an ``@`` can hold one (a run of words, an address, a phone
    number written with spaces); the database picks those, so code-like columns cost a scan
    and no Python. In the ``patterns`` columns (kept text) personal data the finder finds
    anywhere is a leak too: the coverage check read a sample, this reads every value."""
    if not plain and not patterns:
        return
    with dst.connect() as conn:
        for t, cols in columns.items():
            table = md.tables[t]
            cs = [table.c[c] for c in cols]
            # an enum column has no LIKE on PostgreSQL: its labels as text
            txt = [sa.cast(c, sa.Text) if isinstance(c.type, sa.Enum) else c for c in cs]
            cond = sa.or_(*[sa.or_(c.like("% %"), c.like("%@%")) for c in txt])
            res = conn.execution_options(stream_results=True, yield_per=5000).execute(
                sa.select(*cs).where(cond))
            hits = [0] * len(cols)
            pat = [(t, c) in patterns for c in cols]
            for row in res:
                for i, v in enumerate(row):
                    if not isinstance(v, str) or norm_text(v).encode() in plain:
                        continue  # a whole sensitive value: the value scan counted it
                    if _leaks_inside(v, plain, pat[i]):
                        hits[i] += 1
            for c, n in zip(cols, hits, strict=True):
                if n:
                    key = f"{t}.{c}"
                    leaks[key] = leaks.get(key, 0) + n


#: Row keys named per leaking column (enough to find the rows; the values are never shown).
LEAK_ROWS = 5


def leak_rows(dst: sa.Engine, md: sa.MetaData, result: RefreshResult,
              plain: set[bytes] | None, patterns: set[tuple[str, str]] = frozenset()) -> None:
    """The keys of a few rows behind each leak (``result.leak_rows``), read again by the
    driver: leaks are rare, so only the columns that leaked are read twice."""
    if not result.leaks:
        return
    plain = plain or set()
    with dst.connect() as conn:
        for where in sorted(result.leaks):
            t, c = where.split(".", 1)
            table = md.tables.get(t)
            if table is None or c not in table.c:
                continue
            pk = list(table.primary_key.columns)
            res = conn.execution_options(stream_results=True, yield_per=5000).execute(
                sa.select(table.c[c], *pk).where(table.c[c].is_not(None)))
            keys: list[str] = []
            for row in res:
                v = row[0]
                whole = len(n := norm_text(v)) >= MIN_LEAK_LEN and n.encode() in plain
                if whole or (isinstance(v, str) and _leaks_inside(v, plain, (t, c) in patterns)):
                    keys.append(", ".join(f"{k.name}={x}" for k, x in zip(pk, row[1:],
                                                                           strict=True))
                                or f"row {len(keys) + 1}")
                    if len(keys) >= LEAK_ROWS:
                        break
            result.leak_rows[where] = keys

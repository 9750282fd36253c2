"""Every table of the refresh: in order, in threads or in worker processes, and which
path each takes."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from plantstage import engines
from plantstage.data._classify import ColumnPlan
from plantstage.data._mask import Keyed, RefreshError
from plantstage.data._pipeline import copy_table_copy, copy_table_rows
from plantstage.data._plan import text_masked
from plantstage.data._pool import WORKERS, can_fork, forked, url_of
from plantstage.data._result import Progress
from plantstage.data._subset import SubsetPlan
from plantstage.engines.base import EngineAdapter
from plantstage.engines.errors import database_error, is_database_error


@contextmanager
def _naming(table: str, target: EngineAdapter) -> Iterator[None]:
    """A database error while loading ``table`` as one line naming the table and the cause."""
    try:
        yield
    except Exception as exc:
        if not is_database_error(exc):
            raise
        raise RefreshError(f"loading table '{table}' failed: {database_error(exc)}",
                           where=target.label, hint="a row the target already holds (seeded "
                           "by the migrations? see refresh.seeded), or a constraint production "
                           "does not have") from None


#: Use COPY text between engines that speak it (False: the driver row path, for comparison).
USE_COPY = True


def load_tables(jobs: list[sa.Table], src: sa.Engine, src_md: sa.MetaData, dst: sa.Engine,
                 source: EngineAdapter, target: EngineAdapter, keyed: Keyed,
                 by_table: dict[str, list[ColumnPlan]], avoid: set[int], shared: dict,
                 subset: SubsetPlan | None, batch: int, progress: Progress | None, *,
                 parallel: bool = True) -> dict[str, dict[str, Any]]:
    """Copy every table; two at a time where the target takes concurrent loads.

    Determinism across runs needs one thing kept in order: the text rules' collision
    re-draws, which are shared per domain through ``shared``. Tables with a text rule therefore
    go one after the other, in foreign-key order, in one lane; every other table (keep, noise,
    shift: pure functions of key and value) is a job of its own. SQLite takes one writer at a
    time, so there everything runs in order.
    """
    use_copy = USE_COPY and source.supports_copy and target.supports_copy

    def one(table: sa.Table) -> dict[str, Any]:
        plans = by_table.get(table.name, [])
        fn = copy_table_copy if use_copy else copy_table_rows
        with _naming(table.name, target):
            return fn(src, src_md.tables[table.name], dst, table, source, target, keyed,
                      plans, avoid, shared, subset, batch, progress)

    if not parallel or target.name == "sqlite" or WORKERS < 2:
        return {t.name: one(t) for t in jobs}
    lane = [t for t in jobs if any(text_masked(p) for p in by_table.get(t.name, []))]
    rest = [t for t in jobs if t not in lane]
    sizes = _estimated_rows(src, [t.name for t in rest], source)
    rest.sort(key=lambda t: -sizes.get(t.name, 0))  # the longest first: no long tail
    groups = ([[t.name for t in lane]] if lane else []) + [[t.name] for t in rest]
    if use_copy and can_fork():
        # Masking is Python work: in threads it shares one interpreter lock, so on a server
        # target the tables go to forked worker processes instead (they inherit the plan,
        # the maskers' inputs and the leak-scan digests, and open connections of their own).
        state = {"source_url": url_of(src), "target": target, "src_md": src_md,
                 "dst_md": jobs[0].metadata, "keyed": keyed, "by_table": by_table,
                 "avoid": avoid, "shared": shared, "subset": subset, "batch": batch,
                 "inherited": [src, dst]}
        out: dict[str, dict[str, Any]] = {}
        for part in forked(state, _child_load, groups, progress):
            out.update(part)
        return out
    out = {}
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="refresh") as pool:
        jobs_by = {t.name: t for t in jobs}
        futures = [pool.submit(lambda g=g: {n: one(jobs_by[n]) for n in g}) for g in groups]
        try:
            for f in as_completed(futures):
                out.update(f.result())
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return out


def _child_load(st: dict, names: list[str]) -> dict[str, dict[str, Any]]:
    q = st.get("queue")

    def progress(t: str, done: int, total: int) -> None:
        if q is not None:
            q.put((t, done, total))

    out = {}
    for n in names:
        table = st["dst_md"].tables[n]
        with _naming(n, st["target"]):
            out[n] = copy_table_copy(
                st["src"], st["src_md"].tables[n], st["dst"], table,
                engines.adapter_for(st["source_url"]), st["target"], st["keyed"],
                st["by_table"].get(n, []), st["avoid"], st["shared"], st["subset"], st["batch"],
                progress)
    return out


def _estimated_rows(src: sa.Engine, tables: list[str], source: EngineAdapter) -> dict[str, int]:
    """Rough row counts (planner statistics on PostgreSQL), only to order the work."""
    if source.name != "postgresql" or not tables:
        return {}
    # The file size, not reltuples: a freshly loaded table has no statistics yet.
    q = sa.text("SELECT relname, pg_relation_size(oid) FROM pg_class WHERE relkind = 'r' "
                "AND relname IN :names").bindparams(sa.bindparam("names", expanding=True))
    with src.connect() as c:
        return {r[0]: int(r[1]) for r in c.execute(q, {"names": tables})}

"""The refresh itself: plan, create, stream-mask-load, verify.

Nothing is written before everything that can be checked has been: the rules against
production's schema, the key, the coverage of every column, and that the target is not the
source. Rows then go source → mask → target in batches; an unmasked value never reaches the
target. The target carries a ``plantstage_refresh`` marker that says ``incomplete`` until the
verification (row counts, foreign keys, leak scan) has passed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from plantstage import engines
from plantstage.data._classify import ColumnPlan, classify
from plantstage.data._load import load_tables
from plantstage.data._marker import MARKER, marker_table, now
from plantstage.data._mask import (
    Keyed,
    RefreshError,
)
from plantstage.data._objects import ObjectCarrier
from plantstage.data._plan import check_spec_against, refusal, sensitive_hashes
from plantstage.data._result import Progress, RefreshResult
from plantstage.data._schema import create_tables_deferred, target_metadata
from plantstage.data._seeded import Seeded, reconcile
from plantstage.data._subset import SubsetPlan, plan_subset
from plantstage.data._verify import (
    inside_text_columns,
    leak_rows,
    pattern_checked,
    scan_inside_text,
    verify_target,
)
from plantstage.engines.base import EngineAdapter
from plantstage.engines.order import fk_cycles, sorted_tables
from plantstage.spec.masking import MaskKind, MaskRule, RefreshSpec, SchemaSource


def refresh_database(
    source_url: str, target: EngineAdapter, spec: RefreshSpec, *, key: bytes, key_source: str,
    where: str = "plantstage.yaml", create_schema: Callable[[], None] | None = None,
    allow_unclassified: bool = False, progress: Progress | None = None,
) -> RefreshResult:
    """Refresh ``target`` (rebuilt from scratch) from the production database at ``source_url``.

    ``create_schema`` creates the tables when ``spec.schema`` is ``migrations``. Raises
    :class:`RefreshError` before writing anything when the inputs are wrong, and after the load
    when the verification fails (the target then stays marked ``failed``).
    """
    t0 = time.perf_counter()
    if engines.same_database(source_url, target.app_url()):
        raise RefreshError("the target is the production database", where=target.label,
                           hint="refresh into a staging database, never into production")
    source = engines.adapter_for(source_url)
    src = engines.connect_production(source_url)
    try:
        engines.ping(src, source.label)
        src_md = sa.MetaData()
        src_md.reflect(src)
        check_spec_against(spec, src_md, where)
        tables = [t.name for t in sorted_tables(src_md)
                  if not engines.is_bookkeeping(t.name, t)]
        keyed = Keyed(key)
        plans = classify(src, src_md, spec.table_rules(tables), tables)
        failing = [p for p in plans if p.failing]
        if failing and not allow_unclassified:
            raise refusal(failing)
        for p in failing:  # allowed through: the safe default is to tokenize (scrub) it
            if p.status == "unclassified" and p.free_text_pii:
                p.rule = MaskRule(rule=MaskKind.scrub)
                p.status, p.reason = "masked", f"{p.reason}; scrubbed"
            elif p.status == "unclassified":
                p.rule = MaskRule(rule=MaskKind.token)
                p.status, p.reason = "masked", f"unclassified ({p.reason}); tokenized"
            else:
                p.status, p.reason = "kept", "schema drift allowed by --allow-unclassified"
        result = RefreshResult(source.label, target.label, key_source,
                               coverage=[p.as_row() for p in plans],
                               schema=str(spec.schema_from))
        cycle = fk_cycles(src_md)
        if cycle:  # said once here, not by SQLAlchemy at every sort
            result.notes.append(f"foreign keys in a cycle ({', '.join(cycle)}): tables are "
                                "copied in an order that sets them aside; every foreign key is "
                                "checked after the load")
        by_table: dict[str, list[ColumnPlan]] = {}
        for p in plans:
            by_table.setdefault(p.table, []).append(p)

        avoid, plain = sensitive_hashes(src, src_md, plans, source)
        result.leak_values = len(avoid)
        subset: SubsetPlan | None = None
        if spec.subset is not None:
            subset = plan_subset(src, src_md, tables, spec.subset)
            result.subset = True

        # -- from here on the target is written -------------------------------------------
        target.create()
        dst = target.engine()
        try:
            marker = marker_table()
            marker.create(dst)
            with dst.begin() as c:
                c.execute(marker.insert().values(id=1, status="incomplete",
                                                 source=source.label, started_at=now()))
            same_engine = source.name == target.name
            carrier: ObjectCarrier | None = None
            copy_bookkeeping = spec.schema_from == SchemaSource.source
            if spec.schema_from == SchemaSource.migrations:
                if create_schema is None:
                    raise RefreshError("the spec asks for the schema from migrations, but none "
                                       "can run here", where=f"{where}: refresh.schema",
                                       hint="declare the current release's upgrade migration")
                create_schema()
                dst_md = sa.MetaData()
                dst_md.reflect(dst)
            else:
                # Sequences, views, functions, triggers, enums, extensions: see _objects.
                carrier = ObjectCarrier(source, target, src, dst, result.notes)
                if carrier.create_schema():  # the engine's own tool made the tables
                    dst_md = sa.MetaData()
                    dst_md.reflect(dst)
                    deferred = []
                else:
                    wanted = tables + [t for t, tbl in src_md.tables.items()
                                       if engines.is_bookkeeping(t, tbl) and t != MARKER]
                    dst_md = target_metadata(src_md, wanted, dst.dialect, same_engine,
                                             notes=result.notes)
                    deferred = create_tables_deferred(dst, dst_md)
            missing = [t for t in tables if t not in dst_md.tables]
            if missing:
                raise RefreshError(f"the target schema has no table '{missing[0]}'",
                                   where=target.label, hint="do the migrations create it?")
            shared: dict[str, dict[bytes, Any]] = {}
            if spec.schema_from == SchemaSource.migrations:
                deferred = []
            jobs = [table for table in sorted_tables(dst_md)
                    if table.name != MARKER and table.name in src_md.tables
                    and (copy_bookkeeping or not engines.is_bookkeeping(table.name, table))]
            seeded = Seeded()
            if spec.schema_from == SchemaSource.migrations:
                # Rows the migrations seeded: replaced, skipped where identical, or refused.
                seeded, subset = reconcile(src, src_md, dst, dst_md, [j.name for j in jobs],
                                           spec.seeded, where, subset)
                result.notes += seeded.notes()
            # Tables in parallel only into bare tables: a schema made by the migrations has
            # its foreign keys already, so parents must be loaded before children.
            infos = load_tables(jobs, src, src_md, dst, source, target, keyed, by_table, avoid,
                                 shared, subset, spec.batch, progress,
                                 parallel=spec.schema_from == SchemaSource.source)
            for table in jobs:
                t = table.name
                dropped = [c.name for c in src_md.tables[t].columns if c.name not in table.c]
                if dropped:
                    result.notes.append(f"{t}: target has no column(s) {', '.join(dropped)}")
                if seeded.kept.get(t):
                    infos[t]["seeded"] = seeded.kept[t]
                result.tables.append(infos[t])
            def finish_schema() -> None:
                # Indexes and foreign keys after the rows, as pg_restore does; on a server
                # this runs while the leak scan reads the (already complete) rows.
                with dst.begin() as c:
                    for ddl in deferred:
                        c.execute(ddl)
                target.after_bulk_load(dst, dst_md)
                if carrier is not None:
                    carrier.after_load()
                    if carrier.made_tables:  # keys and constraints came with post-data
                        dst_md.reflect(dst, extend_existing=True)

            inside: dict[str, int] = {}  # merged after: the scans run side by side

            patterns = pattern_checked(plans)

            def look_inside() -> None:
                scan_inside_text(dst, dst_md, inside_text_columns(plans, dst_md), plain, inside,
                                 patterns)

            verify_target(dst, dst_md, result, avoid, target, before_fk=finish_schema,
                          plain=plain, after_fk=look_inside)
            for k, n in inside.items():
                result.leaks[k] = result.leaks.get(k, 0) + n
            leak_rows(dst, dst_md, result, plain, patterns)
            result.seconds = time.perf_counter() - t0
            status = "complete" if result.ok else "failed"
            with dst.begin() as c:
                c.execute(marker.update().where(marker.c.id == 1).values(
                    status=status, finished_at=now(),
                    summary=json.dumps(result.signals())))
        finally:
            dst.dispose()
    finally:
        src.dispose()
    return result

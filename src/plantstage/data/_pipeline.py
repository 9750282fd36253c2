"""One table, source → mask → target: the COPY pipeline (PostgreSQL to PostgreSQL) and
the driver row path (any engine to any engine), each reading ahead in a thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from plantstage.data._classify import ColumnPlan
from plantstage.data._copy import (
    CopyMasker,
    blocks,
    line_blocks,
    row_blocks,
    select_sql,
    shift_in_query,
)
from plantstage.data._mask import (
    ColumnMasker,
    Keyed,
    RowMasker,
)
from plantstage.data._plan import build_maskers
from plantstage.data._result import Progress
from plantstage.data._subset import SubsetPlan
from plantstage.engines.base import EngineAdapter
from plantstage.spec.masking import MaskKind


def copy_table_rows(src: sa.Engine, src_tbl: sa.Table, dst: sa.Engine, table: sa.Table,
                source: EngineAdapter, target: EngineAdapter, keyed: Keyed,
                plans: list[ColumnPlan], avoid: set[int], shared: dict,
                subset: SubsetPlan | None, batch: int,
                progress: Progress | None) -> dict[str, Any]:
    """Row by row through the drivers: any engine to any engine."""
    t = table.name
    cols = [c.name for c in table.columns if c.name in src_tbl.c]
    maskers = build_maskers(table, cols, keyed, plans, avoid, shared)
    pk = [c.name for c in src_tbl.primary_key.columns]
    masker = RowMasker(cols, maskers, pk)
    keep = subset.keep.get(t) if subset is not None else None
    ident_idx = [cols.index(c) for c in subset.identity[t]] if keep is not None else []
    with src.connect() as s:
        total = s.execute(sa.select(sa.func.count()).select_from(src_tbl)).scalar() or 0
        planned = len(keep) if keep is not None else total
        written = 0
        if progress:
            progress(t, 0, planned)
        res = s.execution_options(stream_results=True, yield_per=batch).execute(
            sa.select(*[src_tbl.c[c] for c in cols]))

        def produce() -> Iterator[list[tuple]]:
            for part in res.partitions(batch):
                if keep is not None:
                    part = [r for r in part if tuple(r[i] for i in ident_idx) in keep]
                rows = [masker(r) for r in part]
                if rows:
                    yield rows

        # Reading + masking runs in a thread while the previous batch is written: both sides
        # mostly wait on their database, so overlapping them nearly halves the wall time.
        # The queue holds at most two batches, so memory stays flat whatever the table size.
        with dst.connect() as d:
            for rows in _pipelined(produce(), depth=2):
                with d.begin():
                    target.bulk_load(d, table, cols, rows)
                written += len(rows)
                if progress:
                    progress(t, written, planned)
    return _table_info(dst, table, total, planned, written, maskers)


def _table_info(dst: sa.Engine, table: sa.Table, total: int, planned: int, written: int,
                maskers: dict[str, ColumnMasker]) -> dict[str, Any]:
    with dst.connect() as d:
        in_target = d.execute(sa.select(sa.func.count()).select_from(table)).scalar()
    return {"table": table.name, "source": total, "planned": planned, "written": written,
            "in_target": in_target, "masked_columns": sorted(c for c, m in maskers.items()
                                                             if m.kind != MaskKind.keep)}


def copy_table_copy(src: sa.Engine, src_tbl: sa.Table, dst: sa.Engine, table: sa.Table,
                     source: EngineAdapter, target: EngineAdapter, keyed: Keyed,
                     plans: list[ColumnPlan], avoid: set[int], shared: dict,
                     subset: SubsetPlan | None, batch: int,
                     progress: Progress | None) -> dict[str, Any]:
    """COPY out → mask in COPY text → COPY in (PostgreSQL to PostgreSQL).

    A table with nothing to mask and no subset filter streams as raw bytes; otherwise only
    the masked (and key) columns become Python values, column by column over a block. The
    same maskers as the row path run, so the values written are the same.
    """
    from psycopg.adapt import Transformer

    t = table.name
    cols = [c.name for c in table.columns if c.name in src_tbl.c]
    maskers = build_maskers(table, cols, keyed, plans, avoid, shared)
    pk = [c.name for c in src_tbl.primary_key.columns]
    keep = subset.keep.get(t) if subset is not None else None
    q = sa.select(*[src_tbl.c[c] for c in cols])
    # One snapshot for the count, the shift plan and the rows: production is live.
    with src.connect().execution_options(isolation_level="REPEATABLE READ") as s, \
            dst.connect() as d:
        enc = source.copy_encoding(s)
        if enc != target.copy_encoding(d):  # COPY text is bytes in each side's encoding
            return copy_table_rows(src, src_tbl, dst, table, source, target, keyed, plans, avoid,
                               shared, subset, batch, progress)
        total = s.execute(sa.select(sa.func.count()).select_from(src_tbl)).scalar() or 0
        planned = len(keep) if keep is not None else total
        oids = [c[1] for c in s.execute(q.limit(0)).cursor.description]
        shifted = shift_in_query(s, src_tbl, maskers, dict(zip(cols, oids, strict=True)))
        if shifted:
            q = sa.select(*[shifted.get(c, src_tbl.c[c]) for c in cols])
        masker = CopyMasker(cols, maskers, pk, oids, Transformer(s.connection.dbapi_connection),
                            enc, keep=keep, ident=list(subset.identity[t]) if keep else None,
                            in_query=shifted)
        written = 0
        if progress:
            progress(t, 0, planned)
        chunks = source.copy_out(s, select_sql(q, src))

        def produce() -> Iterator[bytes]:
            if masker.passthrough:
                yield from blocks(chunks)
                return
            if masker.keep is None:  # rows need not be objects: see CopyMasker.mask_block
                for block in row_blocks(chunks, batch):
                    yield masker.mask_block(block)
                return
            for lines in line_blocks(chunks, batch):
                out = masker.mask_lines(lines)
                if out:
                    out.append(b"")
                    yield b"\n".join(out)

        with d.begin(), target.copy_in(d, table, cols) as write:
            for block in _pipelined(produce(), depth=4):
                write(block)
                written += block.count(b"\n")  # COPY text escapes newlines inside values
                if progress:
                    progress(t, written, planned)
    return _table_info(dst, table, total, planned, written, maskers)


def _pipelined(source: Iterator[Any], depth: int) -> Iterator[Any]:
    """Iterate ``source`` in a worker thread, ``depth`` items ahead; re-raise its errors."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work() -> None:
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)

    th = threading.Thread(target=work, name="refresh-reader", daemon=True)
    th.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        th.join()

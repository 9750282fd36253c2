"""The refresh itself: plan, create, stream-mask-load, verify.

Nothing is written before everything that can be checked has been: the rules against
production's schema, the key, the coverage of every column, and that the target is not the
source. Rows then go source → mask → target in batches; an unmasked value never reaches the
target. The target carries a ``plantstage_refresh`` marker that says ``incomplete`` until the
verification (row counts, foreign keys, leak scan) has passed.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import multiprocessing.util
import os
import queue
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from plantstage import engines
from plantstage.data import _pii
from plantstage.data._classify import ColumnPlan, classify
from plantstage.data._copy import (
    CopyMasker,
    LeakScanner,
    avoid_digests,
    blocks,
    line_blocks,
    row_blocks,
    shift_in_query,
    unescape,
)
from plantstage.data._mask import (
    ColumnMasker,
    Keyed,
    RefreshError,
    RowMasker,
    norm_text,
)
from plantstage.data._subset import SubsetPlan, plan_subset
from plantstage.engines.base import EngineAdapter
from plantstage.errors import PlantstageError, SpecError
from plantstage.spec.masking import KeyRef, MaskKind, MaskRule, RefreshSpec, SchemaSource

MARKER = "plantstage_refresh"
#: Source values shorter than this identify nobody and are left out of the leak scan.
MIN_LEAK_LEN = 3
Progress = Callable[[str, int, int], None]
#: Tables loaded at once on a server target (the benchmark machine has two cores).
WORKERS = 2
#: Use COPY text between engines that speak it (False: the driver row path, for comparison).
USE_COPY = True


@dataclass
class RefreshResult:
    """What a refresh did and what its verification found (the evidence)."""

    source: str
    target: str
    key_source: str
    coverage: list[dict[str, Any]] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)
    leaks: dict[str, int] = field(default_factory=dict)
    leak_values: int = 0
    fk_violations: dict[str, int] = field(default_factory=dict)
    subset: bool = False
    seconds: float = 0.0
    schema: str = "source"
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(t["written"] for t in self.tables)

    @property
    def unclassified(self) -> int:
        return sum(1 for c in self.coverage if c["status"] in ("unclassified", "drift"))

    @property
    def count_mismatches(self) -> int:
        return sum(1 for t in self.tables if t["written"] != t["planned"]
                   or t["in_target"] != t["written"])

    @property
    def ok(self) -> bool:
        return not self.leaks and not self.fk_violations and not self.count_mismatches

    def signals(self) -> dict[str, float]:
        masked = sum(1 for c in self.coverage if c["status"] == "masked")
        return {"refresh.leaks": sum(self.leaks.values()),
                "refresh.unclassified": self.unclassified,
                "refresh.fk_violations": sum(self.fk_violations.values()),
                "refresh.count_mismatches": self.count_mismatches,
                "refresh.rows": self.rows, "refresh.masked_columns": masked,
                "refresh.seconds": round(self.seconds, 3)}

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "key": self.key_source,
                "schema": self.schema, "subset": self.subset, "rows": self.rows,
                "seconds": round(self.seconds, 2),
                "rows_per_s": round(self.rows / self.seconds) if self.seconds else None,
                "coverage": self.coverage, "tables": self.tables,
                "leak_values_checked": self.leak_values, "leaks": self.leaks,
                "fk_violations": self.fk_violations, "notes": self.notes,
                "signals": self.signals(), "ok": self.ok}


# -- the key -------------------------------------------------------------------------------
def resolve_key(ref: KeyRef, spec_dir: Path) -> tuple[bytes, str]:
    """The key and a description of where it came from (never the key itself)."""
    if ref.env and os.environ.get(ref.env):
        return os.environ[ref.env].strip().encode(), f"environment variable {ref.env}"
    if ref.file:
        p = (spec_dir / ref.file).resolve()
        if p.exists():
            text = p.read_text().strip()
            if text:
                return text.encode(), f"file {p}"
        if ref.create:
            p.parent.mkdir(parents=True, exist_ok=True)
            key = secrets.token_hex(32)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(key + "\n")
            return key.encode(), (f"file {p} (generated now: a new key for this checkout; keep "
                                  "it out of version control)")
    sources = " or ".join(x for x in (ref.env and f"${ref.env}", ref.file) if x)
    raise RefreshError("no masking key", where="refresh.key",
                       hint=f"put a key (e.g. `openssl rand -hex 32`) in {sources}")


# -- schema checks -------------------------------------------------------------------------
def _check_spec_against(spec: RefreshSpec, md: sa.MetaData, where: str) -> None:
    def need(table: str, column: str | None, path: str) -> None:
        if table not in md.tables:
            raise SpecError(f"no table '{table}' in production", where=f"{where}: {path}",
                            hint="fix the name or drop the rule")
        if column is not None and column != "*" and column not in md.tables[table].c:
            raise SpecError(f"no column '{table}.{column}' in production",
                            where=f"{where}: {path}", hint="fix the name or drop the rule")

    for t, cols in spec.rules.items():
        for c, r in cols.items():
            need(t, c, f"refresh.rules.{t}.{c}")
            if r.by:
                need(t, r.by, f"refresh.rules.{t}.{c}.by")
    s = spec.subset
    if s is not None:
        if s.tenants:
            need(s.tenants.table, s.tenants.key, "refresh.subset.tenants")
        if s.window:
            for t, c in s.window.columns.items():
                need(t, c, f"refresh.subset.window.columns.{t}")
        for i, r in enumerate(s.relations):
            for end in (r.from_, r.to):
                t, c = end.split(".")
                need(t, c, f"refresh.subset.relations[{i}]")


def _target_metadata(src_md: sa.MetaData, tables: list[str], dialect: sa.Dialect,
                     same_engine: bool) -> sa.MetaData:
    """Production's tables as the target engine can create them."""
    md = sa.MetaData()
    for t in src_md.sorted_tables:
        if t.name in tables:
            t.to_metadata(md)
    for table in md.tables.values():
        for col in table.columns:
            if not same_engine:
                # Another engine: its own spelling of the generic type (SQLite's DATETIME is
                # no PostgreSQL type, PostgreSQL's JSONB no SQLite one).
                try:
                    col.type = col.type.as_generic()
                except NotImplementedError:
                    pass
            try:
                col.type.compile(dialect=dialect)
            except Exception:
                col.type = sa.Text() if isinstance(col.type, sa.String) else col.type
            default = col.server_default
            if default is not None and (not same_engine or "nextval" in str(
                    getattr(default, "arg", ""))):
                col.server_default = None  # sequences and functions do not travel
    return md


def _create_tables_deferred(dst: sa.Engine, md: sa.MetaData) -> list:
    """Create the tables bare; return the index and foreign-key DDL to run after the load.

    Loading into unindexed, unconstrained tables and building indexes once afterwards is what
    makes pg_restore fast; a per-row index update and foreign-key lookup costs several times
    the COPY itself. SQLite cannot add a foreign key later (and does not check them while
    loading anyway), so it gets its tables whole.
    """
    if dst.dialect.name == "sqlite":
        md.create_all(dst)
        return []
    later: list = []
    with dst.begin() as c:
        for table in md.sorted_tables:
            fks = [fk for fk in table.constraints if isinstance(fk, sa.ForeignKeyConstraint)]
            c.execute(sa.schema.CreateTable(table, include_foreign_key_constraints=[]))
            later += [sa.schema.CreateIndex(ix) for ix in table.indexes]
            later += [sa.schema.AddConstraint(fk) for fk in fks]
    # Indexes first: a foreign key is checked faster against an indexed parent.
    return sorted(later, key=lambda d: isinstance(d, sa.schema.AddConstraint))


def _marker_table() -> sa.Table:
    return sa.Table(MARKER, sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("status", sa.String(16), nullable=False),
                    sa.Column("source", sa.String(300)), sa.Column("started_at", sa.String(40)),
                    sa.Column("finished_at", sa.String(40)), sa.Column("summary", sa.Text))


def refresh_state(url: str) -> str | None:
    """``complete``, ``incomplete``, ``failed`` — or None when the database holds no refresh."""
    eng = engines.adapter_for(url).engine()
    try:
        if MARKER not in sa.inspect(eng).get_table_names():
            return None
        with eng.connect() as c:
            return c.execute(sa.text(f"SELECT status FROM {MARKER} WHERE id = 1")).scalar()
    finally:
        eng.dispose()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- the refresh ---------------------------------------------------------------------------
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
        _check_spec_against(spec, src_md, where)
        tables = [t.name for t in src_md.sorted_tables
                  if t.name not in engines.MIGRATION_BOOKKEEPING]
        keyed = Keyed(key)
        plans = classify(src, src_md, spec.rules, tables)
        failing = [p for p in plans if p.failing]
        if failing and not allow_unclassified:
            raise _refusal(failing)
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
        by_table: dict[str, list[ColumnPlan]] = {}
        for p in plans:
            by_table.setdefault(p.table, []).append(p)

        avoid, plain = _sensitive_hashes(src, src_md, plans, source)
        result.leak_values = len(avoid)
        subset: SubsetPlan | None = None
        if spec.subset is not None:
            subset = plan_subset(src, src_md, tables, spec.subset)
            result.subset = True

        # -- from here on the target is written -------------------------------------------
        target.create()
        dst = target.engine()
        try:
            marker = _marker_table()
            marker.create(dst)
            with dst.begin() as c:
                c.execute(marker.insert().values(id=1, status="incomplete",
                                                 source=source.label, started_at=_now()))
            same_engine = source.name == target.name
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
                wanted = tables + [t for t in src_md.tables
                                   if t in engines.MIGRATION_BOOKKEEPING and t != MARKER]
                dst_md = _target_metadata(src_md, wanted, dst.dialect, same_engine)
                deferred = _create_tables_deferred(dst, dst_md)
            missing = [t for t in tables if t not in dst_md.tables]
            if missing:
                raise RefreshError(f"the target schema has no table '{missing[0]}'",
                                   where=target.label, hint="do the migrations create it?")
            shared: dict[str, dict[bytes, Any]] = {}
            if spec.schema_from == SchemaSource.migrations:
                deferred = []
            jobs = [table for table in dst_md.sorted_tables
                    if table.name != MARKER and table.name in src_md.tables
                    and (copy_bookkeeping or table.name not in engines.MIGRATION_BOOKKEEPING)]
            # Tables in parallel only into bare tables: a schema made by the migrations has
            # its foreign keys already, so parents must be loaded before children.
            infos = _load_tables(jobs, src, src_md, dst, source, target, keyed, by_table, avoid,
                                 shared, subset, spec.batch, progress,
                                 parallel=spec.schema_from == SchemaSource.source)
            for table in jobs:
                t = table.name
                dropped = [c.name for c in src_md.tables[t].columns if c.name not in table.c]
                if dropped:
                    result.notes.append(f"{t}: target has no column(s) {', '.join(dropped)}")
                result.tables.append(infos[t])
            def finish_schema() -> None:
                # Indexes and foreign keys after the rows, as pg_restore does; on a server
                # this runs while the leak scan reads the (already complete) rows.
                with dst.begin() as c:
                    for ddl in deferred:
                        c.execute(ddl)
                target.after_bulk_load(dst, dst_md)

            _verify(dst, dst_md, result, avoid, target, before_fk=finish_schema, plain=plain)
            _scan_inside_text(dst, dst_md, _inside_text_columns(plans, dst_md), plain, result)
            result.seconds = time.perf_counter() - t0
            status = "complete" if result.ok else "failed"
            with dst.begin() as c:
                c.execute(marker.update().where(marker.c.id == 1).values(
                    status=status, finished_at=_now(),
                    summary=json.dumps(result.signals())))
        finally:
            dst.dispose()
    finally:
        src.dispose()
    return result


def _refusal(failing: list[ColumnPlan]) -> RefreshError:
    """One line naming the column(s) that stop the refresh, what was found, the rule to write."""
    def what(p: ColumnPlan) -> str:
        if p.status == "drift":
            return "appeared since the rules were written (schema drift)"
        if p.free_text_pii and p.reason.startswith("is ruled keep"):
            return p.reason
        return f"is unclassified and {p.reason}"

    p = failing[0]
    if p.free_text_pii:
        hint = (f"rule it: refresh.rules.{p.table}.{p.column}: scrub (masks what is found "
                "inside the text), or null; {rule: keep, reviewed: true} if it is not "
                "personal data")
    else:
        hint = (f"add a rule under refresh.rules.{p.table} (keep, if it is not sensitive) or "
                "pass --allow-unclassified")
    if len(failing) == 1:
        return RefreshError(f"column {what(p)}", where=f"{p.table}.{p.column}", hint=hint)
    listed = "; ".join(f"{q.table}.{q.column} {what(q)}" for q in failing)
    return RefreshError(f"{len(failing)} columns need a rule: {listed}", where="refresh.rules",
                        hint="add the rules (plantstage refresh --plan prints a block to paste)"
                        " or pass --allow-unclassified")


def _text_masked(p: ColumnPlan) -> bool:
    return p.rule is not None and p.rule.rule not in (MaskKind.keep, MaskKind.noise,
                                                       MaskKind.shift)


def _sensitive_hashes(src: sa.Engine, md: sa.MetaData, plans: list[ColumnPlan],
                      source: EngineAdapter | None = None) -> tuple[set[int], set[bytes]]:
    """Digests of every production value of a masked text column (one streaming pass), and
    those values' normalized text (UTF-8).

    The maskers never emit one of these (by digest), and the leak scan looks for them (by
    text: a set lookup in C per field instead of a hash call in Python) in the target. The
    text stays in this process and its forked workers; it is never written anywhere."""
    out: set[int] = set()
    plain: set[bytes] = set()
    cols: dict[str, list[str]] = {}
    scrubbed: dict[str, list[str]] = {}
    for p in plans:
        if p.rule is not None and p.rule.rule == MaskKind.scrub:
            scrubbed.setdefault(p.table, []).append(p.column)
        elif _text_masked(p):
            cols.setdefault(p.table, []).append(p.column)

    def add(v: Any) -> None:
        if v is not None and len(t := norm_text(v)) >= MIN_LEAK_LEN:
            b = t.encode()
            plain.add(b)
            out.add(int.from_bytes(hashlib.blake2b(b, digest_size=8).digest(), "big"))

    with src.connect() as conn:
        # A scrubbed text keeps what is not personal: what it must not keep is what the
        # finder finds in it (the whole text would be a "leak" wherever it held nothing).
        for t, cs in scrubbed.items():
            tbl = md.tables[t]
            res = conn.execution_options(stream_results=True, yield_per=20_000).execute(
                sa.select(*[tbl.c[c] for c in cs]))
            for row in res:
                for v in row:
                    if isinstance(v, str):
                        for f in _pii.find(v):
                            add(f.text)
        for t, cs in cols.items():
            tbl = md.tables[t]
            q = sa.select(*[tbl.c[c] for c in cs])
            # COPY text is the value's text exactly for string columns; others go through the
            # driver so that they are hashed in the form the maskers compare.
            if (source is not None and source.supports_copy
                    and all(isinstance(tbl.c[c].type, sa.String) for c in cs)):
                enc = source.copy_encoding(conn)
                for block in blocks(source.copy_out(conn, _sql(q, src))):
                    # every field, flat (a NULL is \N); the distinct ones of a block once each
                    for f in set(block[:-1].replace(b"\t", b"\n").split(b"\n")):
                        if f != b"\\N":
                            add(unescape(f).decode(enc))
                continue
            res = conn.execution_options(stream_results=True, yield_per=20_000).execute(q)
            for row in res:
                for v in row:
                    add(v)
    return out, plain


def _sql(q: sa.Select, engine: sa.Engine) -> str:
    return str(q.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))


def _unique_columns(table: sa.Table) -> set[str]:
    unique_cols = {c.name for c in table.primary_key.columns if len(table.primary_key) == 1}
    for uc in table.constraints:
        if isinstance(uc, sa.UniqueConstraint) and len(uc.columns) == 1:
            unique_cols.update(c.name for c in uc.columns)
    for ix in table.indexes:
        if ix.unique and len(ix.columns) == 1:
            unique_cols.update(c.name for c in ix.columns)
    return unique_cols


def _maskers(table: sa.Table, cols: list[str], keyed: Keyed, plans: list[ColumnPlan],
             avoid: set[int], shared: dict) -> dict[str, ColumnMasker]:
    unique_cols = _unique_columns(table)
    maskers: dict[str, ColumnMasker] = {}
    for p in plans:
        if p.rule is None or p.column not in cols:
            continue
        col = table.c[p.column]
        length = getattr(col.type, "length", None)
        maskers[p.column] = ColumnMasker(
            keyed, f"{table.name}.{p.column}", p.rule, unique=p.column in unique_cols,
            max_length=length if isinstance(length, int) else None, avoid=avoid,
            overrides=shared)
    return maskers


def _load_tables(jobs: list[sa.Table], src: sa.Engine, src_md: sa.MetaData, dst: sa.Engine,
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
        fn = _copy_table_copy if use_copy else _copy_table
        return fn(src, src_md.tables[table.name], dst, table, source, target, keyed, plans,
                  avoid, shared, subset, batch, progress)

    if not parallel or target.name == "sqlite" or WORKERS < 2:
        return {t.name: one(t) for t in jobs}
    lane = [t for t in jobs if any(_text_masked(p) for p in by_table.get(t.name, []))]
    rest = [t for t in jobs if t not in lane]
    sizes = _estimated_rows(src, [t.name for t in rest], source)
    rest.sort(key=lambda t: -sizes.get(t.name, 0))  # the longest first: no long tail
    groups = ([[t.name for t in lane]] if lane else []) + [[t.name] for t in rest]
    if use_copy and _can_fork():
        # Masking is Python work: in threads it shares one interpreter lock, so on a server
        # target the tables go to forked worker processes instead (they inherit the plan,
        # the maskers' inputs and the leak-scan digests, and open connections of their own).
        state = {"source_url": _url_of(src), "target": target, "src_md": src_md,
                 "dst_md": jobs[0].metadata, "keyed": keyed, "by_table": by_table,
                 "avoid": avoid, "shared": shared, "subset": subset, "batch": batch,
                 "inherited": [src, dst]}
        out: dict[str, dict[str, Any]] = {}
        for part in _forked(state, _child_load, groups, progress):
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


# -- worker processes ----------------------------------------------------------------------
#: What a forked worker inherits (set in the parent just before the fork).
_FORK_STATE: dict[str, Any] = {}


def _can_fork() -> bool:
    return WORKERS > 1 and "fork" in multiprocessing.get_all_start_methods()


def _url_of(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _child_init() -> None:
    st = _FORK_STATE
    st.pop("inherited", None)  # closed before the fork; never used here
    if "source_url" in st:
        st["src"] = engines.connect_production(st["source_url"])
    st["dst"] = st["target"].engine()
    # Close the sessions when the worker exits (it leaves through os._exit, which skips
    # atexit; multiprocessing runs its own finalizers first).
    for name in ("src", "dst"):
        if name in st:
            multiprocessing.util.Finalize(None, st[name].dispose, exitpriority=10)


def _child_run(fn: Callable[[dict, Any], Any], arg: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(_FORK_STATE, arg)
    except PlantstageError as exc:  # errors travel as data: exceptions with keywords
        return "error", (exc.message, exc.where, exc.hint)  # do not unpickle reliably
    except BaseException as exc:  # noqa: BLE001 - reported in the parent
        return "error", (f"{type(exc).__name__}: {exc}", None, None)


def _child_load(st: dict, names: list[str]) -> dict[str, dict[str, Any]]:
    q = st.get("queue")

    def progress(t: str, done: int, total: int) -> None:
        if q is not None:
            q.put((t, done, total))

    out = {}
    for n in names:
        table = st["dst_md"].tables[n]
        out[n] = _copy_table_copy(st["src"], st["src_md"].tables[n], st["dst"], table,
                                  engines.adapter_for(st["source_url"]), st["target"],
                                  st["keyed"], st["by_table"].get(n, []), st["avoid"],
                                  st["shared"], st["subset"], st["batch"], progress)
    return out


def _forked(state: dict[str, Any], fn: Callable[[dict, Any], Any], args: list[Any],
            progress: Progress | None = None,
            started: Callable[[], None] | None = None) -> Iterator[Any]:
    """``fn(state, arg)`` for every arg in forked worker processes; results as they come.

    ``started`` runs in the parent once the workers exist (a thread started before the fork
    could hold a connection the children would inherit)."""
    if not args:
        if started is not None:
            started()
        return
    ctx = multiprocessing.get_context("fork")
    for e in state.get("inherited", []):
        # No pooled connection may cross the fork: a child finishing it would hang up the
        # parent's session on the shared socket. The parent reconnects when it needs to.
        e.dispose()
    queue_ = ctx.Queue() if progress is not None else None
    _FORK_STATE.clear()
    _FORK_STATE.update(state, queue=queue_)
    drain = None
    try:
        with ProcessPoolExecutor(max_workers=min(WORKERS, len(args)), mp_context=ctx,
                                 initializer=_child_init) as pool:
            futures = [pool.submit(_child_run, fn, a) for a in args]
            if queue_ is not None:
                def pump() -> None:
                    while (item := queue_.get()) is not None:
                        progress(*item)

                drain = threading.Thread(target=pump, name="refresh-progress", daemon=True)
                drain.start()
            if started is not None:
                started()
            try:
                for f in as_completed(futures):
                    status, value = f.result()
                    if status == "error":
                        msg, where, hint = value
                        raise RefreshError(msg, where=where, hint=hint)
                    yield value
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    finally:
        if queue_ is not None:
            queue_.put(None)
            if drain is not None:
                drain.join(timeout=5)
            queue_.close()
        _FORK_STATE.clear()


def _estimated_rows(src: sa.Engine, tables: list[str], source: EngineAdapter) -> dict[str, int]:
    """Rough row counts (planner statistics on PostgreSQL), only to order the work."""
    if source.name != "postgresql" or not tables:
        return {}
    # The file size, not reltuples: a freshly loaded table has no statistics yet.
    q = sa.text("SELECT relname, pg_relation_size(oid) FROM pg_class WHERE relkind = 'r' "
                "AND relname IN :names").bindparams(sa.bindparam("names", expanding=True))
    with src.connect() as c:
        return {r[0]: int(r[1]) for r in c.execute(q, {"names": tables})}


def _copy_table(src: sa.Engine, src_tbl: sa.Table, dst: sa.Engine, table: sa.Table,
                source: EngineAdapter, target: EngineAdapter, keyed: Keyed,
                plans: list[ColumnPlan], avoid: set[int], shared: dict,
                subset: SubsetPlan | None, batch: int,
                progress: Progress | None) -> dict[str, Any]:
    """Row by row through the drivers: any engine to any engine."""
    t = table.name
    cols = [c.name for c in table.columns if c.name in src_tbl.c]
    maskers = _maskers(table, cols, keyed, plans, avoid, shared)
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


def _copy_table_copy(src: sa.Engine, src_tbl: sa.Table, dst: sa.Engine, table: sa.Table,
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
    maskers = _maskers(table, cols, keyed, plans, avoid, shared)
    pk = [c.name for c in src_tbl.primary_key.columns]
    keep = subset.keep.get(t) if subset is not None else None
    q = sa.select(*[src_tbl.c[c] for c in cols])
    # One snapshot for the count, the shift plan and the rows: production is live.
    with src.connect().execution_options(isolation_level="REPEATABLE READ") as s, \
            dst.connect() as d:
        enc = source.copy_encoding(s)
        if enc != target.copy_encoding(d):  # COPY text is bytes in each side's encoding
            return _copy_table(src, src_tbl, dst, table, source, target, keyed, plans, avoid,
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
        chunks = source.copy_out(s, _sql(q, src))

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


def _verify(dst: sa.Engine, md: sa.MetaData, result: RefreshResult, avoid: set[int],
            target: EngineAdapter | None = None,
            before_fk: Callable[[], None] | None = None,
            plain: set[bytes] | None = None) -> None:
    """Foreign keys and the leak scan. On a server they run side by side: ``before_fk`` (the
    deferred indexes and constraints) and the anti-joins are the database's work, the scan is
    ours (in worker processes where the target speaks COPY)."""
    if target is None or target.name == "sqlite":
        if before_fk is not None:
            before_fk()
        result.fk_violations.update(_check_foreign_keys(dst, md))
        _leak_scan(dst, md, result, avoid, target, plain=plain)
        return
    fk_result: dict[str, Any] = {}

    def database_side() -> None:
        try:
            if before_fk is not None:
                before_fk()
            fk_result["fks"] = _check_foreign_keys(dst, md)
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
        for table in md.sorted_tables:
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
    return [(t.name, cols) for t in md.sorted_tables if t.name != MARKER
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
            for block in blocks(target.copy_out(conn, _sql(q, dst))):
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
    if jobs and target is not None and target.supports_copy and _can_fork():
        state = {"target": target, "md": md, "avoid": avoid, "plain": plain,
                 "inherited": [dst]}
        found = list(_forked(state, _child_scan, jobs, started=started))
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


def _inside_text_columns(plans: list[ColumnPlan], md: sa.MetaData) -> dict[str, list[str]]:
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


def _scan_inside_text(dst: sa.Engine, md: sa.MetaData, columns: dict[str, list[str]],
                      plain: set[bytes], result: RefreshResult) -> None:
    """Production's sensitive values (and what ``scrub`` found) inside staging's text: a
    customer's e-mail address in a kept note is a leak the whole-value scan cannot see.

    Only values with a space or an ``@`` can hold one (a run of words, an address, a phone
    number written with spaces); the database picks those, so code-like columns cost a scan
    and no Python."""
    if not plain:
        return
    with dst.connect() as conn:
        for t, cols in columns.items():
            table = md.tables[t]
            cs = [table.c[c] for c in cols]
            cond = sa.or_(*[sa.or_(c.like("% %"), c.like("%@%")) for c in cs])
            res = conn.execution_options(stream_results=True, yield_per=5000).execute(
                sa.select(*cs).where(cond))
            hits = [0] * len(cols)
            for row in res:
                for i, v in enumerate(row):
                    if not isinstance(v, str) or norm_text(v).encode() in plain:
                        continue  # a whole sensitive value: the value scan counted it
                    if any(f.encode() in plain for f in _pii.fragments(v)):
                        hits[i] += 1
            for c, n in zip(cols, hits, strict=True):
                if n:
                    key = f"{t}.{c}"
                    result.leaks[key] = result.leaks.get(key, 0) + n


# -- the verb's plumbing -------------------------------------------------------------------
_PLACEHOLDER = re.compile(r"\{([a-z_]+)(?::([A-Za-z0-9._-]+))?\}")


def expand(text: str, values: dict[str, str]) -> str:
    def repl(m: re.Match) -> str:
        k = m.group(1) if not m.group(2) else f"{m.group(1)}:{m.group(2)}"
        if k not in values:
            raise SpecError(f"unknown placeholder '{{{k}}}'", where=text,
                            hint="known here: " + ", ".join(sorted(values)))
        return values[k]

    return _PLACEHOLDER.sub(repl, text)


def run_upgrade(command: list[str], cwd: Path, env: dict[str, str], where: str) -> None:
    proc = subprocess.run(command, cwd=cwd, env={**os.environ, **env}, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise RefreshError(f"the schema migration failed (exit {proc.returncode}): {last[0]}",
                           where=where)


def python() -> str:
    return sys.executable

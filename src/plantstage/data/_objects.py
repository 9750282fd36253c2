"""Everything besides tables and rows that the app needs in staging: sequences with their
current values, views, functions, triggers, enum types, extensions.

PostgreSQL → PostgreSQL takes the schema from PostgreSQL's own tool, as ``pg_restore`` does
a whole database: ``pg_dump --schema-only`` of production (pg_dump only reads), its
``pre-data`` section (types, extensions, functions, sequences, tables, views) restored into the
empty target, the masked rows loaded, then its ``post-data`` section (indexes, constraints,
**triggers**). Triggers are created after the load, not disabled during it: the rows are
production's, already shaped by those triggers, and firing them again would apply their
effects twice (an audit row, a running total, a number drawn) as well as slow every row.
Sequence values are data (``--schema-only`` leaves them at their start): each is set to what
production would hand out next — an owned sequence never below its column's largest value.

Any other same-engine refresh (SQLite, MariaDB, PostgreSQL without a usable pg_dump) creates
the objects from the catalogue's own DDL after the load; between engines only sequences travel
(where the target has them), and everything that could not is named in the refresh's notes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import sqlalchemy as sa

from plantstage.data._marker import MARKER
from plantstage.engines.base import EngineAdapter
from plantstage.engines.objects import KINDS, DbObject, read_objects
from plantstage.errors import EngineError

_LIST = 8  # names listed in a note before "and N more"


def _names(objs: list[DbObject]) -> str:
    names = [o.name for o in objs]
    more = f" and {len(names) - _LIST} more" if len(names) > _LIST else ""
    return ", ".join(names[:_LIST]) + more


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(exc).__name__])[0][:200]


class ObjectCarrier:
    """Carries production's objects to the target around the table load.

    :meth:`create_schema` runs before the tables are made (True when it made them itself, by
    the engine's tool); :meth:`after_load` runs after the rows, indexes and foreign keys.
    """

    def __init__(self, source: EngineAdapter, target: EngineAdapter, src: sa.Engine,
                 dst: sa.Engine, notes: list[str]):
        self.source, self.target, self.src, self.dst, self.notes = source, target, src, dst, notes
        with src.connect() as c:
            self.objects = read_objects(c)
        self.same = source.name == target.name
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._dump: Path | None = None
        self._created: set[str] = set()

    @property
    def made_tables(self) -> bool:
        """True when the engine's tool made the tables (and, after the load, their keys)."""
        return self._dump is not None

    def of(self, kind: str) -> list[DbObject]:
        return [o for o in self.objects if o.kind == kind]

    # -- before the tables ------------------------------------------------------------------
    def create_schema(self) -> bool:
        if self.same and hasattr(self.source, "schema_dump"):
            self._tmp = tempfile.TemporaryDirectory(prefix="plantstage-schema-")
            try:
                self._dump = self.source.schema_dump(Path(self._tmp.name) / "schema.pgdump",
                                                     exclude=[MARKER])
            except EngineError as exc:
                self.notes.append(f"schema from reflection, not pg_dump: {exc.one_line()}")
                self._dump = None
            if self._dump is not None:
                self.target.restore_section(self._dump, "pre-data")
                return True
        if self.same:
            for kind in ("extension", "enum"):
                for o in self.of(kind):
                    self._run(o, o.ddl)
        self._sequences_by_ddl()
        return False

    def _sequences_by_ddl(self) -> None:
        seqs = [o for o in self.of("sequence") if not o.detail.get("owned_by")]
        dialect = self.dst.dialect.name
        if not seqs:
            return
        if "sequence" not in KINDS.get(dialect, ()):
            self.notes.append(f"{dialect} has no sequences: {len(seqs)} standalone sequence(s) "
                              f"not carried ({_names(seqs)})")
            return
        prep = self.dst.dialect.identifier_preparer
        for o in seqs:
            inc, nxt = o.detail["increment"], o.detail["next"]
            if nxt is None:  # production's value could not be read: the start value it is
                start = o.detail.get("start")
                low = f" MINVALUE {start}" if start is not None and start < 1 else ""
                if self._run(o, f"CREATE SEQUENCE {prep.quote(o.detail['sequence'])} "
                                f"INCREMENT BY {inc}{low}"
                                + (f" START WITH {start}" if start is not None else "")):
                    self._unreadable(o, "left at its start value (it has no owning column)")
                continue
            low = f" MINVALUE {nxt}" if nxt < 1 else ""
            high = f" MAXVALUE {nxt}" if inc < 0 and nxt > -1 else ""
            self._run(o, f"CREATE SEQUENCE {prep.quote(o.detail['sequence'])} "
                         f"INCREMENT BY {inc}{low}{high} START WITH {nxt}")

    def _unreadable(self, o: DbObject, what: str) -> None:
        """One warning line per sequence whose value production's role may not read."""
        d = o.detail
        name = f"{d.get('schema')}.{d['sequence']}" if d.get("schema") else d["sequence"]
        role = self.src.url.username or "the refresh's role"
        self.notes.append(f"warning: sequence {name}: its value cannot be read (no SELECT on it "
                          f"for {role}); {what} (hint: GRANT SELECT ON SEQUENCE {name} TO "
                          f"{role})")

    def _run(self, o: DbObject, ddl: str | None) -> bool:
        if not ddl:
            self.notes.append(f"{o.kind} {o.name}: its definition cannot be read; not carried")
            return False
        try:
            with self.dst.begin() as c:
                c.exec_driver_sql(ddl.replace("%", "%%") if self._percent() else ddl)
        except Exception as exc:  # noqa: BLE001 - named in the notes, the refresh goes on
            self.notes.append(f"{o.kind} {o.name}: not carried ({_first_line(exc)})")
            return False
        self._created.add(o.key)
        return True

    def _percent(self) -> bool:
        return self.dst.dialect.paramstyle in ("format", "pyformat")

    # -- after the rows -----------------------------------------------------------------------
    def after_load(self) -> None:
        try:
            if self._dump is not None:
                self.target.restore_section(self._dump, "post-data")
                self._set_sequences()
                self._refresh_matviews()
                self._summary("pg_dump --schema-only; triggers created after the load")
            elif self.same:
                for kind in ("function", "view", "trigger"):
                    self._create_in_order(self.of(kind))
                self._summary("the catalogue's definitions, created after the load")
            else:
                carried = {"sequence"} & set(KINDS.get(self.dst.dialect.name, ()))
                left = [o for o in self.objects if o.kind not in carried
                        and not (o.kind == "sequence" and o.detail.get("owned_by"))
                        and o.kind != "extension"]
                for kind in ("view", "function", "trigger", "enum"):
                    objs = [o for o in left if o.kind == kind]
                    if objs:
                        self.notes.append(
                            f"{len(objs)} {kind}(s) not carried from {self.source.name} to "
                            f"{self.target.name} (engine SQL): {_names(objs)}")
                self._summary("sequences only, between engines")
                exts = self.of("extension")
                if exts and self.dst.dialect.name != "postgresql":
                    self.notes.append(f"{len(exts)} extension(s) not carried: {_names(exts)}")
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()

    def _create_in_order(self, objs: list[DbObject]) -> None:
        # A view may read another view: retry what failed while each round creates something.
        pending = list(objs)
        while pending:
            failed = []
            for o in pending:
                try:
                    with self.dst.begin() as c:
                        c.exec_driver_sql(o.ddl.replace("%", "%%") if self._percent() else o.ddl)
                    self._created.add(o.key)
                except Exception as exc:  # noqa: BLE001 - retried, then named in the notes
                    failed.append((o, exc))
            if len(failed) == len(pending):
                for o, exc in failed:
                    self.notes.append(f"{o.kind} {o.name}: not carried ({_first_line(exc)})"
                                      if o.ddl else
                                      f"{o.kind} {o.name}: its definition cannot be read; "
                                      f"not carried")
                return
            pending = [o for o, _ in failed]

    def _set_sequences(self) -> None:
        """Every sequence to what production hands out next; an owned one never below its
        column's largest value (a subset never holds more than production)."""
        prep = self.dst.dialect.identifier_preparer
        with self.dst.begin() as c:
            for o in self.of("sequence"):
                d = o.detail
                nxt = d["next"]
                owned = d.get("owned_by")
                top = None
                if owned and d["increment"] > 0:
                    table, col = owned.rsplit(".", 1)
                    top = c.execute(sa.text(
                        f"SELECT MAX({prep.quote(col)}) FROM "
                        f"{prep.quote(d['schema'])}.{prep.quote(table)}")).scalar()
                if nxt is None:
                    # Production's value could not be read: the owning column's largest value
                    # says where it must at least be; without one, the start value stays.
                    if top is None:
                        why = f"its column {owned} is empty" if owned else \
                            "it has no owning column"
                        self._unreadable(o, f"left at its start value ({why})")
                        self._created.add(o.key)
                        continue
                    nxt = int(top) + d["increment"]
                    self._unreadable(o, f"set from MAX({owned}) = {top}: next value {nxt}")
                elif top is not None:
                    nxt = max(nxt, int(top) + d["increment"])
                name = f"{prep.quote(d['schema'])}.{prep.quote(d['sequence'])}"
                c.execute(sa.text("SELECT setval(CAST(:s AS regclass), :v, false)"),
                          {"s": name, "v": nxt})
                self._created.add(o.key)
        for o in self.objects:
            if o.kind != "sequence":
                self._created.add(o.key)

    def _refresh_matviews(self) -> None:
        for o in self.of("view"):
            if o.value.startswith("materialized:"):
                try:
                    with self.dst.begin() as c:
                        c.exec_driver_sql(f"REFRESH MATERIALIZED VIEW {o.name}")
                except Exception as exc:  # noqa: BLE001
                    self.notes.append(f"materialized view {o.name}: not refreshed "
                                      f"({_first_line(exc)})")

    def _summary(self, how: str) -> None:
        counts = {}
        for o in self.objects:
            if o.key in self._created:
                counts[o.kind] = counts.get(o.kind, 0) + 1
        if counts:
            parts = ", ".join(f"{n} {k}(s)" for k, n in counts.items())
            self.notes.append(f"objects carried ({how}): {parts}")

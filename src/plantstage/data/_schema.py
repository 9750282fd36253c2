"""The target's tables: production's schema as the target engine can create them, created
bare with their indexes and foreign keys kept for after the load."""

from __future__ import annotations

import sqlalchemy as sa


def target_metadata(src_md: sa.MetaData, tables: list[str], dialect: sa.Dialect,
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


def create_tables_deferred(dst: sa.Engine, md: sa.MetaData) -> list:
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

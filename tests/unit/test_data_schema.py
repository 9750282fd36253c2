"""Column defaults in another engine's SQL (the refresh's schema: source between engines)."""

import pytest
import sqlalchemy as sa

from plantstage.data._schema import portable_default

TEXT, FLAG = sa.Column("s", sa.String(20)), sa.Column("b", sa.Boolean)
WHEN, DAY = sa.Column("t", sa.DateTime), sa.Column("d", sa.Date)


@pytest.mark.parametrize("source, col, postgresql, other", [
    ("'open'", TEXT, "'open'", "'open'"),
    ("'open'::character varying", TEXT, "'open'", "'open'"),  # PostgreSQL's cast
    ("''::character varying", TEXT, "''", "''"),
    ("'it''s'", TEXT, "'it''s'", "'it''s'"),
    ("(1.5)", TEXT, "1.5", "1.5"),
    ("'{}'::jsonb", TEXT, "'{}'", "'{}'"),
    ("1", FLAG, "true", "1"),
    ("false", FLAG, "false", "0"),
    ("CURRENT_TIMESTAMP", WHEN, "CURRENT_TIMESTAMP", "CURRENT_TIMESTAMP"),
    ("(datetime('now'))", WHEN, "CURRENT_TIMESTAMP", "CURRENT_TIMESTAMP"),  # SQLite
    ("now()", WHEN, "CURRENT_TIMESTAMP", "CURRENT_TIMESTAMP"),  # PostgreSQL
    ("current_timestamp()", WHEN, "CURRENT_TIMESTAMP", "CURRENT_TIMESTAMP"),  # MariaDB
    ("CURRENT_DATE", DAY, "CURRENT_DATE", "CURRENT_DATE"),
    ("nextval('jobs_id_seq'::regclass)", TEXT, None, None),
    ("gen_random_uuid()", TEXT, None, None),
    ("NULL", TEXT, None, None),
])
def test_portable_default(source, col, postgresql, other):
    assert portable_default(source, col, "postgresql") == postgresql
    assert portable_default(source, col, "sqlite") == other
    assert portable_default(source, col, "mysql") == other

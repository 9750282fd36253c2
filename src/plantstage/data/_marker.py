"""The target's completion marker: ``incomplete`` from the first write until the
verification has passed (``complete``) or not (``failed``)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from plantstage import engines

MARKER = "plantstage_refresh"


def marker_table() -> sa.Table:
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


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")

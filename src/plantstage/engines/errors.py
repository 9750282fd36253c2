"""Errors the databases raise, as one line a user can act on."""

from __future__ import annotations

import sqlalchemy as sa


def is_database_error(exc: BaseException) -> bool:
    """An error the database raised (through SQLAlchemy or straight from the driver)."""
    if isinstance(exc, sa.exc.DBAPIError):
        return True
    return type(exc).__module__.split(".")[0] in ("psycopg", "pymysql", "sqlite3")


def database_error(exc: BaseException) -> str:
    """The database's message, and its DETAIL line (PostgreSQL names the key there)."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    detail = [ln.strip() for ln in text[1:] if ln.strip().startswith("DETAIL:")]
    return "; ".join([text[0].strip()] + detail) if text else type(orig).__name__

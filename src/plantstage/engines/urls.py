"""Pieces of a database URL for the placeholders ``{db:NAME.part}`` (rehearsal and parity)."""

from __future__ import annotations


def db_url_part(url: str, part: str) -> str:
    """One piece of a database URL: ``""`` → the URL as given; ``url`` → without the
    ``+driver`` suffix (``postgresql://…``, as libpq, Go and Node drivers read it); ``host``,
    ``port``, ``name``, ``user``, ``password``; ``path`` → a SQLite file; ``jdbc`` →
    ``jdbc:postgresql://host:port/name`` (user and password go apart)."""
    import sqlalchemy as sa

    if not part:
        return url
    u = sa.engine.make_url(url)
    backend = u.get_backend_name()
    if part == "url":
        return u.set(drivername=backend).render_as_string(hide_password=False)
    if part == "jdbc":
        if backend == "sqlite":
            return f"jdbc:sqlite:{u.database or ''}"
        host = f"{u.host or '127.0.0.1'}" + (f":{u.port}" if u.port else "")
        return f"jdbc:{backend}://{host}/{u.database or ''}"
    value = {"host": u.host, "port": u.port, "name": u.database, "user": u.username,
             "password": u.password, "path": u.database if backend == "sqlite" else None}[part]
    return "" if value is None else str(value)

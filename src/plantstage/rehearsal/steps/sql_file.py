"""Run a SQL file on a database, statement by statement, as a release step.

Run as ``python -m plantstage.rehearsal.steps.sql_file FILE`` with the database URL in the
``PLANTSTAGE_SQL_URL`` environment variable (never on the command line, which is logged).
Each statement runs in autocommit mode, so a file may hold its own ``BEGIN`` / ``COMMIT``
and statements that refuse a transaction block. It prints each statement's first line, the
rows a query returns (the first 20) and, on an error, the statement's line and the driver's
exception as the last line (what :func:`plantstage.commands.reason_line` reports); exit 1.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

URL_ENV = "PLANTSTAGE_SQL_URL"
_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def split_statements(text: str) -> list[tuple[int, str]]:
    """(line number, statement) of each statement in ``text``, split at semicolons outside
    quotes ('…', "…", `…`), comments (-- …, /* … */) and PostgreSQL dollar quotes ($$…$$).
    Empty statements (comments only) are left out."""
    out: list[tuple[int, str]] = []
    i, n = 0, len(text)
    has_code = False
    first_code = -1

    def flush(end: int) -> None:
        nonlocal has_code, first_code
        stmt = text[first_code:end].strip() if has_code else ""
        if stmt:
            out.append((text.count("\n", 0, first_code) + 1, stmt))
        has_code, first_code = False, -1

    while i < n:
        ch = text[i]
        if ch == "-" and text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        if ch == "/" and text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            continue
        if ch == ";":
            flush(i)
            i += 1
            continue
        if not ch.isspace() and not has_code:
            has_code, first_code = True, i
        if ch in "'\"`":
            j = i + 1
            while j < n:
                if text[j] == ch:
                    if j + 1 < n and text[j + 1] == ch:  # a doubled quote inside
                        j += 2
                        continue
                    break
                if text[j] == "\\" and ch != '"' and j + 1 < n:
                    j += 2
                    continue
                j += 1
            i = j + 1
            continue
        if ch == "$":
            m = _DOLLAR.match(text, i)
            if m:
                j = text.find(m.group(0), m.end())
                i = n if j < 0 else j + len(m.group(0))
                continue
        i += 1
    flush(n)
    return out


def _first_line(stmt: str) -> str:
    line = stmt.splitlines()[0] if stmt else ""
    return line[:160] + (" …" if len(line) > 160 or "\n" in stmt else "")


def _exception_line(exc: BaseException) -> tuple[str, list[str]]:
    orig = getattr(exc, "orig", None) or exc
    kind = type(orig)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
    return f"{name}: {lines[0] if lines else ''}", lines[1:]


def run_file(path: Path, url: str, out=sys.stdout) -> int:
    """Run every statement of the SQL file at ``path`` on ``url``; 0 when all ran, else 1."""
    import sqlalchemy as sa

    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {path}: {exc}", file=out)
        return 1
    statements = split_statements(text)
    print(f"{path.name}: {len(statements)} statement(s)", file=out, flush=True)
    from plantstage.engines import normalize_url

    engine = sa.create_engine(normalize_url(url), isolation_level="AUTOCOMMIT")
    try:
        raw = engine.raw_connection()
    except sa.exc.SQLAlchemyError as exc:
        first, rest = _exception_line(exc)
        print("\n".join(rest), file=out)
        print(f"error: cannot connect: {first}", file=out)
        engine.dispose()
        return 1
    try:
        cur = raw.cursor()
        for k, (line, stmt) in enumerate(statements, 1):
            print(f"-- [{k}] line {line}: {_first_line(stmt)}", file=out, flush=True)
            try:
                cur.execute(stmt)
            except Exception as exc:  # the driver's error: that is the step's finding
                first, rest = _exception_line(exc)
                for ln in rest:
                    print(f"   {ln}", file=out)
                print(f"statement {k} (line {line}) failed", file=out)
                print(first, file=out, flush=True)
                return 1
            if cur.description:
                cols = [d[0] for d in cur.description]
                rows = cur.fetchmany(21)
                print("   " + " | ".join(map(str, cols)), file=out)
                for r in rows[:20]:
                    print("   " + " | ".join("NULL" if v is None else str(v) for v in r),
                          file=out)
                if len(rows) > 20:
                    print("   … more rows", file=out)
                cur.fetchall()
            elif getattr(cur, "rowcount", -1) not in (-1, None):
                print(f"   {cur.rowcount} row(s)", file=out)
        print(f"ok: {len(statements)} statement(s)", file=out, flush=True)
        return 0
    finally:
        raw.close()
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    url = os.environ.get(URL_ENV)
    if len(args) != 1 or not url:
        print(f"usage: {URL_ENV}=URL python -m plantstage.rehearsal.steps.sql_file FILE",
              file=sys.stderr)
        return 2
    return run_file(Path(args[0]), url)


if __name__ == "__main__":
    sys.exit(main())

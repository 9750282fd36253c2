"""Planning, before anything is written: the rules against production's schema, the columns
that stop the refresh, the maskers of each table and the sensitive values the maskers avoid and
the leak scan looks for."""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa

from plantstage.data import _pii
from plantstage.data._classify import ColumnPlan
from plantstage.data._copy import (
    blocks,
    select_sql,
    unescape,
)
from plantstage.data._mask import (
    ColumnMasker,
    Keyed,
    RefreshError,
    norm_text,
)
from plantstage.engines.base import EngineAdapter
from plantstage.engines.order import sorted_tables
from plantstage.errors import SpecError
from plantstage.spec.masking import MaskKind, RefreshSpec, is_pattern

#: Source values shorter than this identify nobody and are left out of the leak scan.
MIN_LEAK_LEN = 3


def check_spec_against(spec: RefreshSpec, md: sa.MetaData, where: str) -> None:
    def need(table: str, column: str | None, path: str) -> None:
        if table not in md.tables:
            raise SpecError(f"no table '{table}' in production", where=f"{where}: {path}",
                            hint="fix the name or drop the rule")
        if column is not None and column != "*" and column not in md.tables[table].c:
            raise SpecError(f"no column '{table}.{column}' in production",
                            where=f"{where}: {path}", hint="fix the name or drop the rule")

    for t, cols in spec.rules.items():
        if is_pattern(t):
            # a pattern rules every table it matches: it must match one, and its columns
            # are checked in each table where the table has them
            matched = [m for m, r in spec.table_rules(list(md.tables)).items() if r is cols]
            if not matched:
                raise SpecError(f"no table in production matches '{t}'",
                                where=f"{where}: refresh.rules.{t}",
                                hint="fix the pattern or drop the rule")
            continue
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


def refusal(failing: list[ColumnPlan]) -> RefreshError:
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


def text_masked(p: ColumnPlan) -> bool:
    return p.rule is not None and p.rule.rule not in (MaskKind.keep, MaskKind.noise,
                                                       MaskKind.shift)


def sensitive_hashes(src: sa.Engine, md: sa.MetaData, plans: list[ColumnPlan],
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
        elif text_masked(p):
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
                for block in blocks(source.copy_out(conn, select_sql(q, src))):
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


def _unique_columns(table: sa.Table) -> set[str]:
    unique_cols = {c.name for c in table.primary_key.columns if len(table.primary_key) == 1}
    for uc in table.constraints:
        if isinstance(uc, sa.UniqueConstraint) and len(uc.columns) == 1:
            unique_cols.update(c.name for c in uc.columns)
    for ix in table.indexes:
        if ix.unique and len(ix.columns) == 1:
            unique_cols.update(c.name for c in ix.columns)
    return unique_cols


def build_maskers(table: sa.Table, cols: list[str], keyed: Keyed, plans: list[ColumnPlan],
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


def coverage(source_url: str, spec: RefreshSpec, where: str) -> list[ColumnPlan]:
    """Every column of production classified against the rules (``refresh --plan``): reads
    the schema and samples text columns, writes nothing anywhere."""
    from plantstage import engines
    from plantstage.data._classify import classify

    source = engines.adapter_for(source_url)
    src = engines.connect_production(source_url)
    try:
        engines.ping(src, source.label)
        md = sa.MetaData()
        md.reflect(src)
        check_spec_against(spec, md, where)
        tables = [t.name for t in sorted_tables(md)
                  if not engines.is_bookkeeping(t.name, t)]
        return classify(src, md, spec.table_rules(tables), tables)
    finally:
        src.dispose()


_BY_NAME = [  # (name pattern, rule to suggest) — first match wins
    (r"e_?mail", "email"), (r"phone|tel|telephone|mobile|fax", "phone"),
    (r"first_?name|given_?name|firstname", "first_name"),
    (r"last_?name|surname|family_?name|lastname", "last_name"),
    (r"company|firm|vendor_name|customer_name|supplier_name", "company"),
    (r"address|addr|street", "address"), (r"city|town", "city"),
    (r"iban|bic|account|acct", "digits"),
    (r"password|passwd|secret|token|hash", "null"),
    (r"birth|dob|born", "{rule: shift, max_days: 365}"),
    (r"price|cost|salary|wage|credit|income|revenue|margin|bonus",
     "{rule: noise, tolerance: 0.05}"),
    (r"name|contact|person", "person"),
]


def suggest(p: ColumnPlan) -> str:
    """The rule ``refresh --plan`` suggests for a column that needs one."""
    import re

    if p.status == "drift":
        return "keep"
    if p.free_text_pii:
        return "scrub"
    if "e-mail" in p.reason:
        return "email"
    if "phone" in p.reason:
        return "phone"
    for pat, rule in _BY_NAME:
        if re.search(rf"(^|_)({pat})(_|$)", p.column, re.I):
            return rule
    return "token"


def suggested_rules(plans: list[ColumnPlan], spec: RefreshSpec) -> str:
    """A ``refresh.rules`` block (YAML) with a rule for every column that needs one."""
    failing: dict[str, list[ColumnPlan]] = {}
    for p in plans:
        if p.failing:
            failing.setdefault(p.table, []).append(p)
    if not failing:
        return ""
    ruled = spec.table_rules(list(failing))
    lines = ["refresh:", "  rules:"]
    for t, ps in failing.items():
        note = "  # add to the table's rules" if t in ruled else ""
        lines.append(f"    {t}:{note}")
        for p in ps:
            why = "new since the rules were written" if p.status == "drift" else p.reason
            lines.append(f"      {p.column}: {suggest(p)}  # {why}")
        if t not in ruled:  # a table ruled column by column must rule every column
            lines.append('      "*": keep  # its other columns: no sensitive name or values')
    return "\n".join(lines)

"""Coverage: classify every column of production as masked, explicitly kept, or unclassified.

An unclassified column that looks sensitive by name or by content fails the refresh; so does a
column that is missing from a table the rules describe column by column (schema drift: it
appeared in production after the rules were written), unless ``--allow-unclassified``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa

from plantstage.data import _pii
from plantstage.spec.masking import MaskKind, MaskRule

_SENSITIVE_NAME = re.compile(
    r"(^|_)(name|names|first|last|surname|email|e_?mail|mail|phone|tel|telephone|mobile|fax|"
    r"address|addr|street|city|zip|postal|postcode|price|cost|costs|salary|wage|wages|iban|bic|"
    r"account|contact|ssn|tax|vat|birth|dob|passport|password|secret|token|credit|ip)(_|$)",
    re.I)
#: Names that say money whatever the type (a price is sensitive as a number too); the other
#: sensitive names only count on text columns: an integer foreign key named ``account`` or
#: ``tax`` is a reference, not personal data.
_MONEY_NAME = re.compile(r"(^|_)(price|prices|cost|costs|salary|wage|wages|credit|income|"
                         r"revenue|margin|bonus)(_|$)", re.I)
_DATE_NAME = re.compile(r"(^|_)(birth|birthday|dob|born)(_|$)", re.I)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_PHONE = re.compile(r"^\+?[\d\s().\-/x]{7,}$")

#: How many values of a text column copied unchanged the content check looks at.
SAMPLE_ROWS = 500


@dataclass
class ColumnPlan:
    table: str
    column: str
    rule: MaskRule | None  # None: copied unchanged
    status: str  # masked | kept | kept-by-wildcard | not-sensitive | unclassified | drift
    reason: str = ""
    #: personal data found inside the column's text (the reason says what): the hint is
    #: ``scrub``, and ``--allow-unclassified`` scrubs rather than tokenizes
    free_text_pii: bool = False
    #: the column's type holds free text (the leak scan looks inside its values)
    free_text: bool = False

    @property
    def failing(self) -> bool:
        return self.status in ("unclassified", "drift")

    def as_row(self) -> dict:
        rule = self.rule.rule.value if self.rule is not None else "keep"
        return {"table": self.table, "column": self.column, "rule": rule,
                "status": self.status, "reason": self.reason}


def sensitive_by_name(column: str, col: sa.Column | None = None, key: bool = False) -> bool:
    """The name looks sensitive for a column of this type (any type when ``col`` is None)."""
    if col is None or isinstance(col.type, sa.String):
        return bool(_SENSITIVE_NAME.search(column))
    if isinstance(col.type, sa.Date | sa.DateTime):
        return bool(_DATE_NAME.search(column))
    if key or isinstance(col.type, sa.Boolean):
        return False
    return bool(_MONEY_NAME.search(column))


def sensitive_by_content(values: list) -> str | None:
    """What the sampled values look like, if they look like personal data."""
    texts = [str(v).strip() for v in values if isinstance(v, str) and v.strip()]
    if not texts:
        return None
    if sum(bool(_EMAIL.match(t)) for t in texts) * 2 >= len(texts):
        return "values look like e-mail addresses"
    phones = [t for t in texts if _PHONE.match(t) and sum(c.isdigit() for c in t) >= 7
              and any(c in t for c in " ()-./+")]
    if len(phones) * 2 >= len(texts):
        return "values look like phone numbers"
    return None


def _sample(conn: sa.Connection, col: sa.Column) -> list:
    return conn.execute(sa.select(col).where(col.is_not(None)).limit(SAMPLE_ROWS)
                        ).scalars().all()


def classify(src: sa.Engine, md: sa.MetaData, rules: dict[str, dict[str, MaskRule]],
             tables: list[str]) -> list[ColumnPlan]:
    """One :class:`ColumnPlan` per column of ``tables`` (production's, bookkeeping left out)."""
    out: list[ColumnPlan] = []
    with src.connect() as conn:
        for t in tables:
            table = md.tables[t]
            trules = rules.get(t)
            keys = {c.name for c in table.primary_key.columns}
            keys |= {fk.parent.name for fk in table.foreign_keys}
            for col in table.columns:
                c = col.name
                free = _pii.is_free_text(col) and c not in keys

                if trules is not None and c in trules:
                    r = trules[c]
                    if r.rule == MaskKind.keep and free and not r.reviewed:
                        values = _sample(conn, table.c[c])
                        if found := _pii.describe(_pii.found_in(values), len(values)):
                            out.append(ColumnPlan(
                                t, c, None, "unclassified", f"is ruled keep but its text "
                                f"holds personal data ({found})", True, free))
                            continue
                    status = "kept" if r.rule == MaskKind.keep else "masked"
                    out.append(ColumnPlan(t, c, r, status, "rule", free_text=free))
                    continue
                why, pii = None, False
                if sensitive_by_name(c, col, c in keys):
                    why = "name looks sensitive"
                elif isinstance(col.type, sa.String) and c not in keys:
                    values = _sample(conn, table.c[c])
                    why = sensitive_by_content(values)
                    if why is None and (found := _pii.describe(_pii.found_in(values),
                                                               len(values))):
                        why, pii = f"its text holds personal data ({found})", True
                star = trules.get("*") if trules is not None else None
                if why:
                    out.append(ColumnPlan(t, c, None, "unclassified", why, pii, free))
                elif star is not None:
                    status = "kept-by-wildcard" if star.rule == MaskKind.keep else "masked"
                    out.append(ColumnPlan(t, c, star if status == "masked" else None, status,
                                          "'*' rule", free_text=free))
                elif trules is not None:
                    out.append(ColumnPlan(t, c, None, "drift",
                                          "not in the table's rules (new since they were "
                                          "written?)"))
                else:
                    out.append(ColumnPlan(t, c, None, "not-sensitive",
                                          "key" if c in keys else "no sensitive name or values",
                                          free_text=free))
    return out

"""Spec models for the production → staging data refresh (masking and subsetting).

The masking key is never in the spec: ``refresh.key`` names where it is (an environment
variable and/or a file). Rules are written per table and column; a column a rule does not name
is *unclassified* — kept only if it does not look sensitive (see ``plantstage refresh``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class MaskKind(StrEnum):
    """What a rule does to a column's values."""

    keep = "keep"  #: copy unchanged (an explicit decision, recorded in the coverage table)
    null = "null"  #: write NULL
    fixed = "fixed"  #: write ``value``
    token = "token"  #: keyed, format-keeping token (digits→digits, letters→letters)
    digits = "digits"  #: keyed: replace digits only, keep every other character (phones, IBANs)
    person = "person"  #: realistic full name, picked by the keyed hash
    first_name = "first_name"
    last_name = "last_name"
    company = "company"  #: realistic company name
    email = "email"  #: realistic address on a reserved ``.example`` domain
    phone = "phone"  #: realistic phone number, same layout as the source value
    address = "address"  #: realistic street address
    city = "city"
    noise = "noise"  #: numbers: keyed multiplicative noise within ``tolerance``
    shift = "shift"  #: dates: keyed shift, the same for every row with the same ``by`` value
    #: free text: e-mail addresses, phone numbers, IBANs and person names found inside the
    #: text become keyed fakes (the same as the ``email``/``phone``/``person`` rules give);
    #: the rest of the text is kept
    scrub = "scrub"


class MaskRule(_Model):
    """How one column is masked. ``rule: NAME`` may be written as just ``NAME``."""

    rule: MaskKind
    value: Any = Field(None, description="fixed: the value written to every row.")
    tolerance: float = Field(
        0.05, gt=0, lt=1,
        description="noise: largest relative change of a value (0.05 = ±5 %). Every value stays "
        "within it, so every total of non-negative values does too.")
    max_days: int = Field(
        30, ge=1, le=3650, description="shift: largest shift in days (never 0).")
    by: str | None = Field(
        None, description="shift: column whose value picks the shift, e.g. tenant_id, so every "
        "event of one tenant moves together and their order is kept across tables. Default: "
        "one shift for the whole refresh.")
    domain: str | None = Field(
        None, description="token/fakes: values in the same domain map alike across tables "
        "(default: the rule's name), so joins on masked columns still match.")
    unique: bool | None = Field(
        None, description="Force distinct outputs for distinct inputs (default: true for "
        "primary-key and unique columns).")
    reviewed: bool = Field(
        False, description="keep: copy a free-text column unchanged even though the content "
        "check finds e-mail addresses, phone numbers, IBANs or person names in it (they were "
        "reviewed and are not personal data, or may be copied).")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"rule": v}
        return v

    @model_validator(mode="after")
    def _fields_fit(self) -> MaskRule:
        if self.rule == MaskKind.fixed and self.value is None:
            raise ValueError("rule 'fixed' needs a 'value' (use rule 'null' for NULL)")
        if self.by is not None and self.rule != MaskKind.shift:
            raise ValueError("'by' only applies to rule 'shift'")
        if self.reviewed and self.rule != MaskKind.keep:
            raise ValueError("'reviewed' only applies to rule 'keep'")
        return self


class KeyRef(_Model):
    """Where the masking key is. The environment variable wins over the file."""

    env: str | None = Field(None, description="Environment variable holding the key.")
    file: str | None = Field(None, description="File holding the key (relative to the spec).")
    create: bool = Field(
        False, description="With 'file': generate a random key into it when neither source has "
        "one (per checkout; the file must stay out of version control).")

    @model_validator(mode="after")
    def _some_source(self) -> KeyRef:
        if self.env is None and self.file is None:
            raise ValueError("give 'env', 'file' or both")
        if self.create and self.file is None:
            raise ValueError("'create' needs a 'file' to write the key to")
        return self


class Relation(_Model):
    """A reference the database does not declare as a foreign key (``table.column``)."""

    from_: str = Field(alias="from", pattern=r"^[^.\s]+\.[^.\s]+$",
                       description="Referencing column, table.column.")
    to: str = Field(pattern=r"^[^.\s]+\.[^.\s]+$", description="Referenced column, table.column.")


class TenantFilter(_Model):
    """Which tenants to keep, and how they are found."""

    table: str = Field("tenants", description="The tenant table.")
    key: str = Field("code", description="Column of the tenant table the codes are matched on.")
    codes: list[str] = Field(min_length=1, description="Tenant codes to keep.")


class Window(_Model):
    """A date window: rows of the named tables whose date column falls outside are left out
    (unless a kept row needs them)."""

    since: datetime | None = None
    until: datetime | None = None
    columns: dict[str, str] = Field(
        min_length=1, description="Table → its date column the window applies to.")

    @model_validator(mode="after")
    def _bounds(self) -> Window:
        if self.since is None and self.until is None:
            raise ValueError("give 'since', 'until' or both")
        if self.since and self.until and self.since >= self.until:
            raise ValueError("'since' must be before 'until'")
        return self


class Subset(_Model):
    """Keep part of production. Everything a kept row references is kept too (foreign keys and
    ``relations``), so the result is referentially complete."""

    tenants: TenantFilter | None = None
    window: Window | None = None
    relations: list[Relation] = Field(
        default_factory=list, description="References the schema does not declare.")


class SchemaSource(StrEnum):
    source = "source"  #: reflect production's tables and create them on the target
    migrations = "migrations"  #: run the current release's upgrade migration on the target


def is_pattern(table: str) -> bool:
    """A rules key that names tables by a pattern (``ir_*``, ``log_?``, ``[ab]_x``)."""
    return any(ch in table for ch in "*?[")


class SeededRows(StrEnum):
    """What to do with rows a table already holds when ``schema: migrations`` seeded them."""

    replace = "replace"  #: delete the seeded rows; production's rows are loaded
    skip_identical = "skip-identical"  #: load production's rows except those the seed holds
    #: as they are (same key, same values); a seeded row that differs stops the refresh
    fail = "fail"  #: stop the refresh when production holds a row with a seeded row's key


class RefreshSpec(_Model):
    """How staging data is refreshed from production: masking rules and subsetting."""

    key: KeyRef = Field(
        default_factory=lambda: KeyRef(env="PLANTSTAGE_MASKING_KEY"),
        description="Where the masking key is (never the key itself).")
    database: str | None = Field(
        None, description="Database component to refresh (default: the one bound in staging).")
    schema_from: SchemaSource = Field(
        SchemaSource.source, alias="schema",
        description="Create the target's tables from production's schema or by the current "
        "release's migrations.")
    rules: dict[str, dict[str, MaskRule]] = Field(
        default_factory=dict,
        description="table → column → rule. Column '*' gives the rule for every other column "
        "of the table that does not look sensitive (usually keep). A table may be a pattern "
        "(`ir_*`) and may be ruled whole (`ir_*: keep` is `ir_*: {'*': keep}`); a table's own "
        "entry wins over patterns, tried in the order written.")
    subset: Subset | None = None
    seeded: dict[str, SeededRows] = Field(
        default_factory=dict,
        description="schema: migrations — table → what to do with the reference rows the "
        "migrations seed into it (replace, skip-identical, fail). A table not named here "
        "fails when production holds a row with a seeded row's key.")
    batch: int = Field(5000, ge=100, le=200_000, description="Rows per bulk-load batch.")

    @field_validator("rules", mode="before")
    @classmethod
    def _table_shorthand(cls, v: Any) -> Any:
        # ``ir_*: keep`` (a rule for a whole table or pattern) is ``ir_*: {"*": keep}``
        if isinstance(v, dict):
            return {t: {"*": r} if isinstance(r, str) or (isinstance(r, dict) and "rule" in r)
                    else r for t, r in v.items()}
        return v

    def table_rules(self, tables: list[str]) -> dict[str, dict[str, MaskRule]]:
        """Each table's rules: its own entry, else the first pattern (``ir_*``) that matches
        it, in the order the spec writes them."""
        from fnmatch import fnmatchcase

        patterns = [(k, v) for k, v in self.rules.items() if is_pattern(k)]
        out: dict[str, dict[str, MaskRule]] = {}
        for t in tables:
            if t in self.rules:
                out[t] = self.rules[t]
                continue
            for pat, rules in patterns:
                if fnmatchcase(t, pat):
                    out[t] = rules
                    break
        return out

    @field_validator("rules")
    @classmethod
    def _star_keeps(cls, v: dict[str, dict[str, MaskRule]]) -> dict[str, dict[str, MaskRule]]:
        for table, cols in v.items():
            star = cols.get("*")
            if star is not None and star.rule not in (MaskKind.keep, MaskKind.null):
                raise ValueError(f"{table}.*: the wildcard may only 'keep' or 'null'")
        return v

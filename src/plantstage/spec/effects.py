"""Spec model of exactly-once effects across systems (``effects:``).

An effect pairs what a twin saw with what reached the staging database: every id the twin saw
acknowledged (or sent, or received) must be in the database exactly once. The ``effects`` step
(plantstage.rehearsal.steps.effects) compares the two after the candidate phase; each declared
effect gets a key gate (zero lost, zero duplicated) unless a spec gate already judges its
signals.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class EffectWhat(StrEnum):
    """Which of the twin's messages must have an effect."""

    acked = "acked"
    sent = "sent"
    received = "received"


#: Twin kinds that can say each ``what`` (a MES line publishes and is acknowledged; a WMS
#: receives what the app books).
KINDS: dict[EffectWhat, tuple[str, ...]] = {
    EffectWhat.acked: ("mes-line",),
    EffectWhat.sent: ("mes-line",),
    EffectWhat.received: ("wms",),
}


class Effect(_Model):
    """What a twin saw against a query on staging: ids lost (not in the database), duplicated."""

    name: Annotated[str, Field(pattern=_NAME, description="Identifier: letters, digits, _ -")]
    twin: str = Field(description="The estate component whose twin saw the messages.")
    what: EffectWhat = Field(
        description="acked: messages a MES line twin published that the app acknowledged as "
        "accepted (the ack mode decides: the app's status, the broker's PUBACK, or every "
        "message sent); sent: every message it published that reached the broker; received: "
        "what the app sent to a WMS twin's book route.")
    id: str = Field(
        description="Dotted path of the id in each message (the payload the MES twin "
        "published, the body the app posted to the WMS twin), e.g. msg_id or "
        "header.ref; `id` alone falls back to the twin's own message id.")
    sql: str = Field(
        description="A SELECT on staging whose first column is the id, one row per effect in "
        "the database (so a duplicate is two rows). With `:tenant` in it, it runs once per "
        "tenant the twin saw, and ids are compared per tenant.")
    database: str | None = Field(
        None, description="The database component to query (default: the staging database "
        "of the rehearsal).")
    settle: float = Field(
        2.0, ge=0, le=60, description="Seconds to re-query while ids are still missing (an "
        "app may commit just after it acknowledged) before they count as lost.")
    key: bool = Field(True, description="Whether the built-in gate is a key gate.")
    description: str = ""

    @field_validator("sql")
    @classmethod
    def _a_query(cls, v: str) -> str:
        if not re.match(r"^\s*(select|with)\b", v, re.I):
            raise ValueError("must be a SELECT (or WITH … SELECT) returning the ids")
        return v


#: How many lost or duplicated ids the evidence lists per effect.
LISTED = 50


def effect_signals(name: str) -> dict[str, str]:
    """The signals the effects step records for one effect, and what they mean."""
    p = f"effects.{name}"
    return {f"{p}.seen": "distinct ids the twin saw",
            f"{p}.lost": "ids the twin saw that the database does not hold",
            f"{p}.duplicated": "ids the twin saw that the database holds more than once",
            f"{p}.unseen": "ids the query returned that the twin never saw (information)"}


def effect_gates(spec, covered: set[str]) -> list:
    """A key gate per declared effect whose signals no gate of the spec judges already:
    ``effect-<name>`` passes when no id was lost and none duplicated."""
    from plantstage.spec.gates import Gate

    out = []
    for e in getattr(spec, "effects", None) or []:
        lost, dup = f"effects.{e.name}.lost", f"effects.{e.name}.duplicated"
        if lost in covered or dup in covered:
            continue
        what = {"acked": "acknowledged", "sent": "sent", "received": "received"}[e.what.value]
        out.append(Gate(
            name=f"effect-{e.name}", key=e.key,
            value=f'signal("{lost}") + signal("{dup}")',
            pass_=f'signal("{lost}") == 0.0 && signal("{dup}") == 0.0',
            threshold="0 lost, 0 duplicated",
            cause=e.description or f"effect '{e.name}': messages the {e.twin} twin "
            f"{what} were lost or duplicated in the database"))
    return out


def check_effects(spec) -> None:
    """Cross-references (raised as ValueError from the Spec's validator): unique names, a
    twin of a kind that can say ``what`` bound in staging, a database component."""
    comps = spec.estate.components
    staging = spec.environments.get("staging")
    names: set[str] = set()
    for i, e in enumerate(getattr(spec, "effects", None) or []):
        if e.name in names:
            raise ValueError(f"effects[{i}].name: '{e.name}' is used twice")
        names.add(e.name)
        b = staging.bindings.get(e.twin) if staging is not None else None
        if e.twin not in comps:
            raise ValueError(f"effects[{i}].twin: '{e.twin}' is not an estate component")
        if b is None or b.twin is None:
            raise ValueError(f"effects[{i}].twin: '{e.twin}' has no twin in staging "
                             "(environments.staging.bindings.<component>.twin)")
        kinds = KINDS[e.what]
        if b.twin.kind not in kinds:
            raise ValueError(f"effects[{i}].what: a {b.twin.kind} twin cannot say "
                             f"'{e.what.value}' (a {' or '.join(kinds)} twin can)")
        if e.database is not None and (e.database not in comps or
                                       comps[e.database].kind != "database"):
            raise ValueError(f"effects[{i}].database: '{e.database}' is not a database")

"""Spec models of the readiness decision: gates, scoring, required signoffs, release risk.

A gate is written in one of three forms:

* **simple** (the original form, still valid): ``signal`` with ``max`` / ``min``, or with
  ``baseline`` + ``max_increase_pct``;
* **CEL**: ``pass`` (and optionally ``warn`` and ``value``) as CEL expressions over the run's
  signals — ``signal("reconcile.ledger.mismatches") == 0.0``;
* **built-in**: ``use: order-throughput`` (the manufacturing gate library, docs/gates.md) with
  ``params``.

Expressions are parsed when the spec is loaded, so a typo fails ``plantstage check`` with the
gate's name and the position in the expression; which signals an expression names is checked
against the spec's signal catalogue by :func:`plantstage.gates.validate`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
Name = Annotated[str, Field(pattern=_NAME, description="Identifier: letters, digits, . _ -")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Risk(StrEnum):
    """How risky the spec's authors judge a release (signoff conditions can use it)."""

    low = "low"
    normal = "normal"
    high = "high"


def _parse_or_raise(gate: str, field: str, text: str) -> None:
    from plantstage.gates.cel import CelSyntaxError, compile_expr

    try:
        compile_expr(text)
    except CelSyntaxError as exc:
        raise ValueError(f"gate '{gate}': {field} does not parse at {exc.position}: "
                         f"{exc.problem}") from None


class Gate(_Model):
    """A judgement over the run's signals. Missing data → ``inconclusive`` (never pass).

    Give ``signal`` (simple form), ``pass`` (CEL) or ``use`` (built-in library gate).
    """

    name: Name
    # -- simple form -------------------------------------------------------------------
    signal: str | None = Field(None, description="Simple form: signal name, e.g. "
                               "reconcile.ledger.mismatches")
    max: float | None = Field(None, description="Simple form: fail when the signal is above.")
    min: float | None = Field(None, description="Simple form: fail when the signal is below.")
    baseline: str | None = Field(None, description="Simple form: signal to compare against.")
    max_increase_pct: float | None = Field(
        None, description="With baseline: fail when signal > baseline × (1 + pct/100)."
    )
    min_absolute_increase: float = Field(
        0.0, description="With baseline: ignore increases smaller than this (noise floor)."
    )
    # -- CEL form ----------------------------------------------------------------------
    value: str | None = Field(
        None, description="CEL: the number the gate reports (available to pass/warn as "
        "`value`), e.g. signal(\"workload.candidate.error_rate\").")
    pass_: str | None = Field(
        None, alias="pass", description="CEL: true when the gate passes.")
    warn: str | None = Field(
        None, description="CEL: when 'pass' is false, true makes the outcome 'warn' instead "
        "of 'fail'.")
    # -- library form ------------------------------------------------------------------
    use: str | None = Field(None, description="A built-in gate by name (docs/gates.md).")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="Parameters of the built-in gate.")
    # -- all forms ---------------------------------------------------------------------
    weight: float = Field(1.0, ge=0, description="Share of the total score.")
    key: bool = Field(
        True, description="A key gate vetoes: failing is NO-GO whatever the score; "
        "inconclusive (no data, or an interval that cannot decide) makes the run INCONCLUSIVE "
        "(exit 5), never GO. Default true (Keptn's default is false; a correctness gate "
        "that silently scores out is worse than writing key: false). Only non-key gates "
        "can be waived.")
    min_samples: int = Field(
        1, ge=1, description="Fewest samples a workload statistic or time series needs; "
        "fewer is 'inconclusive'.")
    threshold: str | None = Field(None, description="Threshold in words for the report "
                                  "(default: derived from the gate).")
    cause: str = Field("", description="What a failure means, in words for the report.")

    @model_validator(mode="after")
    def _one_form(self) -> Gate:
        forms = [f for f, v in (("signal", self.signal), ("pass", self.pass_), ("use", self.use))
                 if v is not None]
        if len(forms) != 1:
            raise ValueError(f"gate '{self.name}': give exactly one of 'signal' (simple form), "
                             f"'pass' (CEL) or 'use' (built-in); found {forms or 'none'}")
        if self.signal is not None:
            if self.max is None and self.min is None and self.max_increase_pct is None:
                raise ValueError(
                    "a gate needs 'max', 'min' or 'baseline' with 'max_increase_pct'")
            if (self.baseline is None) != (self.max_increase_pct is None):
                raise ValueError("'baseline' and 'max_increase_pct' go together")
        else:
            extra = [f for f in ("max", "min", "baseline", "max_increase_pct")
                     if getattr(self, f) is not None]
            if extra:
                raise ValueError(f"gate '{self.name}': {', '.join(extra)} belong to the simple "
                                 "form (with 'signal')")
        if self.use is not None:
            from plantstage.gates.library import expand_builtin

            expand_builtin(self)  # unknown name or bad params fail here, at check time
        for field, text in (("value", self.value), ("pass", self.pass_), ("warn", self.warn)):
            if text is not None:
                _parse_or_raise(self.name, field, text)
        return self


class Scoring(_Model):
    """The total score (Keptn's model): Σ weight × (1 pass, ½ warn, 0 fail) / Σ weight."""

    pass_pct: float = Field(90.0, alias="pass", ge=0, le=100,
                            description="Score at or above this: the gates pass.")
    warning_pct: float = Field(75.0, alias="warning", ge=0, le=100,
                               description="Score at or above this (below 'pass'): warning; "
                               "below it the gates fail (NO-GO).")

    @model_validator(mode="after")
    def _ordered(self) -> Scoring:
        if self.warning_pct > self.pass_pct:
            raise ValueError("scoring.warning must not be above scoring.pass")
        return self


class SignoffRole(_Model):
    """A role whose signoff a release needs, how many people, and when.

    ``when`` is CEL over the run (docs/gates.md lists the variables): e.g.
    ``gates.warned`` or ``reconcile.mismatches > 0`` or ``release.risk == "high"``.
    Without ``when`` the role is always required.
    """

    role: Name
    quorum: int = Field(1, ge=1, description="Approvals needed from distinct people.")
    when: str | None = Field(None, description="CEL condition; false → not required this run.")
    description: str = ""

    @model_validator(mode="after")
    def _parses(self) -> SignoffRole:
        if self.when is not None:
            from plantstage.gates.cel import CelSyntaxError, compile_expr

            try:
                compile_expr(self.when)
            except CelSyntaxError as exc:
                raise ValueError(f"signoff role '{self.role}': when does not parse at "
                                 f"{exc.position}: {exc.problem}") from None
        return self

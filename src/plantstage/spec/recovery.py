"""Spec model of recovery: objectives (RTO, RPO) per tier or component, the replay after a
restore, and how a release is rolled back (``rollback.kind``) — docs/recovery.md.

RTO is seconds from the failure until the app serves again *with its data recovered* (the
restore, the replay of what production received since the backup, and the exactly-once check
that finds every acknowledged effect back). RPO is counted in **acknowledged business effects
lost**: ids a twin saw the app acknowledge (the declared ``effects``) that are not in the
database after the recovery — a count, not seconds, because a plant loses confirmations, not
time. Tier 1 is 0.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RollbackKind(StrEnum):
    """How production would roll the release back (the rollback drill rehearses that one)."""

    downgrade = "downgrade"
    restore = "restore"
    code_only = "code-only"
    feature_flag = "feature-flag"


class FlagProviderKind(StrEnum):
    env = "env"
    file = "file"
    flagd = "flagd"


class FlagProvider(_Model):
    """Where the app reads a feature flag, so the drill can turn it off.

    * ``env``: an environment variable of the new version (``variable``), set to ``off``;
    * ``file``: a key (dotted, ``key``) in a JSON or YAML config ``file``, set to ``off``;
    * ``flagd``: a flag in an OpenFeature flagd flag file (``file``): its ``defaultVariant``
      becomes ``off`` (the name of a variant, default ``"off"``).

    ``file`` is relative to the spec and may use ``{run_dir}``; the drill writes the flipped
    copy where the app reads it, then restarts the new version (``restart``) and checks that it
    serves with the flag off.
    """

    provider: FlagProviderKind
    flag: str = Field(description="The flag's name (flagd: the key under 'flags').")
    variable: str | None = Field(None, description="env: the environment variable.")
    file: str | None = Field(None, description="file / flagd: the file the app reads.")
    key: str | None = Field(None, description="file: the dotted key of the flag in the file "
                            "(default: the flag's name).")
    off: Any = Field("off", description="The value (env, file) or the variant name (flagd) "
                     "that turns the feature off.")
    restart: bool = Field(True, description="Restart the new version after the flip (apps "
                          "that read flags only at start). false: the app re-reads the file.")

    @model_validator(mode="after")
    def _where(self) -> FlagProvider:
        if self.provider == FlagProviderKind.env and not self.variable:
            raise ValueError("an env flag provider needs 'variable'")
        if self.provider != FlagProviderKind.env and not self.file:
            raise ValueError(f"a {self.provider.value} flag provider needs 'file'")
        if self.provider == FlagProviderKind.env and not self.restart:
            raise ValueError("an environment variable is read at start: restart must be true")
        return self


class Objective(_Model):
    """One recovery objective: RTO in seconds, RPO in acknowledged business effects lost."""

    rto: float | None = Field(None, gt=0, description="Seconds from the failure until the app "
                              "serves again with its data recovered.")
    rpo: int | None = Field(None, ge=0, description="Acknowledged business effects (declared "
                            "effects' ids) that may be lost; 0 for tier 1.")


class Objectives(_Model):
    """Objectives per tier (1–4) and per component (a component's own wins over its tier's)."""

    tiers: dict[int, Objective] = Field(default_factory=dict)
    components: dict[str, Objective] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _tiers(self) -> Objectives:
        bad = [t for t in self.tiers if not 1 <= t <= 4]
        if bad:
            raise ValueError(f"tiers: {bad[0]} is not a tier (1–4)")
        return self


class Recovery(_Model):
    """Recovery objectives and the replay after a restore (docs/recovery.md)."""

    objectives: Objectives = Field(default_factory=Objectives)
    replay: bool = Field(True, description="After a restore, replay what production received "
                         "since the backup: the messages the twins published to the app and "
                         "the HTTP calls the app acknowledged. false: restore only (what was "
                         "written since the backup is lost, and listed).")
    settle: float = Field(60.0, gt=0, le=3600, description="Seconds the drill waits for the "
                          "replayed messages to reach the database before ids count as lost.")
    consumer_start: float = Field(
        2.0, ge=0, le=300, description="Seconds the restored version's message consumers get "
        "to subscribe after it answers its health probe, before messages are replayed (a "
        "message published before a consumer subscribes is lost, as in production).")
    flag: FlagProvider | None = Field(None, description="The feature-flag provider a "
                                      "feature-flag rollback turns off.")


def objective_for(spec, components: list[str]) -> Objective:
    """The strictest objective over ``components`` (each: its own, else its tier's)."""
    rec: Recovery | None = getattr(spec, "recovery", None)
    if rec is None:
        return Objective()
    rtos, rpos = [], []
    for name in components:
        comp = spec.estate.components.get(name)
        o = rec.objectives.components.get(name) or \
            (rec.objectives.tiers.get(comp.tier) if comp is not None else None)
        if o is None:
            continue
        if o.rto is not None:
            rtos.append(o.rto)
        if o.rpo is not None:
            rpos.append(o.rpo)
    return Objective(rto=min(rtos) if rtos else None, rpo=min(rpos) if rpos else None)


def recovered_components(spec) -> list[str]:
    """The components a rollback recovers: the staging app and its database."""
    out = []
    staging = spec.environments.get("staging")
    for name, comp in spec.estate.components.items():
        b = staging.bindings.get(name) if staging is not None else None
        if b is None:
            continue
        if comp.kind == "database" or (comp.kind == "service" and b.command):
            out.append(name)
    return out


RTO_SIGNAL = "recovery.rto_seconds"
RPO_SIGNAL = "recovery.rpo_lost"


def recovery_signals() -> dict[str, str]:
    """The signals the rollback drill records about recovery, and what they mean."""
    return {RTO_SIGNAL: "seconds from the failure until the app served again with its data "
                        "recovered (restore, replay, exactly-once check)",
            RPO_SIGNAL: "acknowledged business effects missing after the recovery",
            "recovery.duplicated": "acknowledged business effects present more than once "
                                   "after the recovery",
            "recovery.replayed_messages": "messages re-published to the app after a restore",
            "recovery.replayed_calls": "HTTP calls replayed to the app after a restore",
            "recovery.serving_seconds": "seconds from the failure until the app answered its "
                                        "health probe again",
            "recovery.replay_refused": "replayed calls and messages the app refused",
            "recovery.replay_failed": "replayed calls and messages that could not be sent",
            "recovery.replay_incomplete": "1 when the replay could not hold everything since "
                                          "the backup (recording over its limit, no broker, "
                                          "messages kept without bytes), else 0",
            "recovery.rows_missing_after_replay": "rows per table fewer after the replay than "
                                                  "just before the restore, summed"}


def recovery_gates(spec, covered: set[str]) -> list:
    """Key gates implied by declared objectives, unless a spec gate judges the signal:
    ``recovery-rto`` (recovery.rto_seconds ≤ RTO) and ``recovery-rpo`` (recovery.rpo_lost ≤
    RPO)."""
    from plantstage.spec.gates import Gate

    if getattr(spec, "recovery", None) is None:
        return []
    o = objective_for(spec, recovered_components(spec))
    out = []
    if o.rto is not None and RTO_SIGNAL not in covered:
        out.append(Gate(name="recovery-rto", use="recovery-rto", params={"rto_s": o.rto}))
    if o.rpo is not None and RPO_SIGNAL not in covered:
        out.append(Gate(name="recovery-rpo", use="recovery-rpo", params={"max_lost": o.rpo}))
    return out


def check_recovery(spec) -> None:
    """Cross-references (ValueError from the Spec's validator)."""
    rec: Recovery | None = getattr(spec, "recovery", None)
    if rec is not None:
        for name in rec.objectives.components:
            if name not in spec.estate.components:
                raise ValueError(f"recovery.objectives.components.{name}: not an estate "
                                 "component")
    for r in spec.releases:
        kind = r.rollback.kind
        if kind == RollbackKind.feature_flag and (rec is None or rec.flag is None):
            raise ValueError(f"releases.{r.name}.rollback.kind: feature-flag needs "
                             "recovery.flag (the flag provider)")
        if kind == RollbackKind.downgrade and not r.release_steps("rollback")["downgrade"]:
            raise ValueError(f"releases.{r.name}.rollback.kind: downgrade needs a downgrade "
                             "(migrations.downgrade or rollback.downgrade)")

"""Rehearsal steps, one module each. A plan is an ordered list of these, as data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from plantstage.rehearsal.context import RunContext


class StepFailed(Exception):
    """The rehearsal found a problem in this step (→ NO-GO), with results to keep."""

    def __init__(self, reason: str, results: dict[str, Any] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.results = results or {}


@dataclass
class Step:
    """One step of a rehearsal.

    ``setup`` steps prepare staging: an error there means the rehearsal could not run (exit 2).
    ``after_failure`` steps still run after an earlier step failed (rollback, reconciliation),
    because a failed release must still be rolled back and its damage measured.
    """

    name: ClassVar[str] = "step"
    title: ClassVar[str] = ""
    setup: ClassVar[bool] = False
    after_failure: ClassVar[bool] = False

    def run(self, ctx: RunContext) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError


def default_plan() -> list[Step]:
    """The rehearsal, in order.

    Baseline (the current version on its own schema), backup, migrate, deploy (the new version
    starts beside the old one), paired (old — N-1, on the migrated schema — and new take the same
    traffic in alternating blocks), switch (all traffic to the new version, the old one stopped,
    consumers included), smoke, candidate (the new version alone), effects (what the twins saw
    against the database), rollback drill, reconcile, twins check, gates.
    """
    from plantstage.rehearsal.steps.backup import Backup
    from plantstage.rehearsal.steps.deploy import Deploy
    from plantstage.rehearsal.steps.effects import Effects
    from plantstage.rehearsal.steps.gates import Gates
    from plantstage.rehearsal.steps.isolation import Isolation
    from plantstage.rehearsal.steps.load import BaselineLoad, CandidateLoad, PairedLoad
    from plantstage.rehearsal.steps.migrate import Migrate
    from plantstage.rehearsal.steps.parity import Parity
    from plantstage.rehearsal.steps.provision import Provision
    from plantstage.rehearsal.steps.rbac import RbacProbes
    from plantstage.rehearsal.steps.reconcile import Reconcile, ReconcileAfterLoad
    from plantstage.rehearsal.steps.rollback import RollbackDrill
    from plantstage.rehearsal.steps.secrets import AuditTrail, SecretsScan
    from plantstage.rehearsal.steps.smoke import Smoke
    from plantstage.rehearsal.steps.switch import Switch
    from plantstage.rehearsal.steps.tenant_config import TenantConfigParity
    from plantstage.rehearsal.steps.twins import StartTwins, TwinsCheck, TwinsReady
    from plantstage.rehearsal.steps.verify_artifacts import VerifyArtifacts

    # Twins start before provision: the app's environment names where they listen.
    return [Parity(), TenantConfigParity(), VerifyArtifacts(), StartTwins(), Provision(),
            TwinsReady(), BaselineLoad(), Backup(), Migrate(), Deploy(), PairedLoad(), Switch(),
            Smoke(), RbacProbes(), Isolation(), CandidateLoad(), ReconcileAfterLoad(), Effects(),
            AuditTrail(), RollbackDrill(), Reconcile(), TwinsCheck(), SecretsScan(), Gates()]

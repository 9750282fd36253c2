"""Typed models of ``plantstage.yaml`` (spec version 1).

Every model forbids unknown fields, so a typo is an error that names the field and its line.
The JSON Schema printed by ``plantstage schema`` is generated from these models, and so is the
spec reference in ``docs/spec.md``.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from plantstage.spec.effects import Effect, check_effects
from plantstage.spec.gates import Gate, Risk, Scoring, SignoffRole
from plantstage.spec.isolation import IsolationSpec, Ring, check_rings
from plantstage.spec.masking import RefreshSpec
from plantstage.spec.monitors import Monitors
from plantstage.spec.parity import ParitySpec
from plantstage.spec.rbac import Audit, Rbac, SecretsScan
from plantstage.spec.recovery import Recovery, RollbackKind, check_recovery
from plantstage.spec.smoke import HealthProbe, SmokeCheck
from plantstage.spec.tenant_config import TenantConfig
from plantstage.spec.twins import TwinSpec
from plantstage.spec.workload import Workload

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
Name = Annotated[str, Field(pattern=_NAME, description="Identifier: letters, digits, . _ -")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ComponentKind(StrEnum):
    service = "service"
    database = "database"
    broker = "broker"
    external = "external"


class Fidelity(StrEnum):
    real = "real"
    simulated = "simulated"
    mirrored = "mirrored"


class SecretRef(_Model):
    """A reference to a secret. The value itself never appears in the spec."""

    env: str | None = Field(None, description="Name of an environment variable holding it.")
    file: str | None = Field(None, description="Path of a file holding it (relative to the spec).")

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' or 'file'")
        return self


class Component(_Model):
    """One part of the production estate."""

    kind: ComponentKind
    tier: int = Field(ge=1, le=4, description="Criticality: 1 = plant-critical … 4 = low risk.")
    description: str = ""


class Edge(_Model):
    """Who talks to whom, over which protocol."""

    from_: Name = Field(alias="from")
    to: Name
    protocol: str = Field(description="e.g. http, sql, mqtt, opcua, amqp")


class Tenant(_Model):
    code: Name
    archetype: str | None = Field(
        None, description="Workload profile: the name of one of workload.archetypes (its mix "
        "of flows). Without one, the tenant gets only workload.flows.")


class Estate(_Model):
    """The production system as declared."""

    components: dict[Name, Component] = Field(min_length=1)
    edges: list[Edge] = Field(default_factory=list)
    tenants: list[Tenant] = Field(default_factory=list)


class Binding(_Model):
    """How one environment binds one component.

    ``{python}``, ``{port}``, ``{artifact}``, ``{run_dir}``, ``{spec_dir}`` and
    ``{db:COMPONENT}`` are substituted when the rehearsal runs.
    """

    fidelity: Fidelity = Fidelity.real
    url: str | None = Field(None, description="Where it is: database URL, HTTP base URL …")
    password: SecretRef | None = Field(None, description="Secret reference for the URL.")
    command: list[str] | None = Field(
        None, description="For a service: the command that runs one version of it."
    )
    cwd: str | None = Field(None, description="Working directory of the command.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment.")
    health: str | HealthProbe = Field(
        "/health", description="For a service: its health/version probe; a string is a path "
        "(GET, expect 200, version not read).")
    startup_timeout: float = Field(30.0, gt=0, description="Seconds to wait for health.")
    generate: list[str] | None = Field(
        None, description="Examples and trials only, on a production SQLite database: a command "
        "that creates the database file when it does not exist yet ({url} is its URL, {path} "
        "its file, {python} plantstage's interpreter, run in the spec's folder). plantstage "
        "runs it into a temporary file before anything reads production and never writes to "
        "an existing production database.")
    scale: int = Field(1, ge=0, description="Replicas / instances (scale may differ).")
    port: int | None = Field(
        None, ge=1, le=65535,
        description="For the staging app: the stable port clients use (the blue-green router "
        "listens there). Default: a free port.",
    )
    twin: TwinSpec | None = Field(
        None, description="For a simulated external component: the twin that plays it."
    )

    @field_validator("url")
    @classmethod
    def _no_inline_secret(cls, v: str | None) -> str | None:
        if v and re.match(r"^[a-z0-9+]+://[^/@:]+:[^/@]+@", v):
            raise ValueError(
                "the URL carries a password; put it in 'password: {env: NAME}' instead"
            )
        return v


class Environment(_Model):
    """A binding of the estate: which component is what, where."""

    bindings: dict[Name, Binding]


class Artifact(_Model):
    path: str = Field(description="File or directory, relative to the spec.")
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="Digest; `plantstage digest PATH` prints it. Mismatch refuses the release.",
    )


class PathRules(_Model):
    """Where the files a spec names may be."""

    allow_outside: list[str] = Field(
        default_factory=list,
        description="Folders outside the spec's folder that artifact, runtime and parity "
        "config paths may name (absolute, or relative to the spec). Without one, those paths "
        "must stay inside the spec's folder.")


class Migrations(_Model):
    upgrade: list[str] | None = Field(None, description="Command that migrates the schema up.")
    downgrade: list[str] | None = Field(None, description="Command that reverts this release.")
    reversible: bool = Field(
        True, description="If false, the rollback drill restores from the backup instead."
    )
    timeout: float = Field(
        3600.0, gt=0, description="Seconds each migration command may take; on a timeout "
        "its output so far is kept in its log (logs/upgrade-upgrade-migrations.log, "
        "logs/rollback-downgrade-migrations.log; docs/release-steps.md).")


class ReleaseStep(_Model):
    """One ordered release step: a command run in the release's folder (like a migration), or
    a SQL file run on the staging database. Each is timed, logged to its own file under
    ``logs/`` and shown in the report with its log's tail and its exception line."""

    name: Name | None = Field(
        None, description="Its name in logs and the report; default: the SQL file's stem, else "
        "PHASE-N (e.g. before-1).")
    command: list[str] | None = Field(
        None, description="A command, run in the release's folder with the app's staging "
        "environment ({python}, {artifact} … substituted).")
    sql: str | None = Field(
        None, description="A SQL file run statement by statement on the staging database "
        "(autocommit): relative to the spec, or {artifact}/… for a file in the release.")
    timeout: float = Field(3600.0, gt=0, description="Seconds it may take; on a timeout it is "
                           "stopped, its output so far kept in its log, and it fails.")
    description: str = ""

    @model_validator(mode="after")
    def _one_kind(self) -> ReleaseStep:
        if (self.command is None) == (self.sql is None):
            raise ValueError("give exactly one of 'command' or 'sql'")
        if self.command is not None and not self.command:
            raise ValueError("'command' is empty")
        return self


def _name_steps(phases: dict[str, list[ReleaseStep] | None]) -> None:
    seen: set[str] = set()
    for phase, steps in phases.items():
        for i, st in enumerate(steps or []):
            if st.name is None:
                stem = Path(st.sql).stem if st.sql else ""
                st.name = stem if re.match(_NAME, stem) else f"{phase}-{i + 1}"
            if st.name in seen:
                raise ValueError(f"{phase}[{i}].name: '{st.name}' is used twice; name the "
                                 "steps apart")
            seen.add(st.name)


class UpgradeSteps(_Model):
    """A release's ordered upgrade: ``before`` steps, the ``upgrade`` itself (default:
    ``migrations.upgrade`` as one step named ``migrations``), then ``after`` steps. A failing
    step stops the upgrade and the rehearsal is NO-GO with its exception line as the reason."""

    before: list[ReleaseStep] = Field(default_factory=list,
                                      description="Steps before the upgrade (vendor SQL …).")
    upgrade: list[ReleaseStep] | None = Field(
        None, description="The upgrade; instead of migrations.upgrade (give one of them).")
    after: list[ReleaseStep] = Field(default_factory=list,
                                     description="Steps after the upgrade.")

    @model_validator(mode="after")
    def _names(self) -> UpgradeSteps:
        _name_steps({"before": self.before, "upgrade": self.upgrade, "after": self.after})
        return self


class RollbackSteps(_Model):
    """The rollback drill's ordered steps: ``before``, the ``downgrade`` (default:
    ``migrations.downgrade``; with none, or ``reversible: false``, the backup is restored in
    its place), then ``after``."""

    before: list[ReleaseStep] = Field(default_factory=list,
                                      description="Steps before the downgrade or restore.")
    downgrade: list[ReleaseStep] | None = Field(
        None, description="The downgrade; instead of migrations.downgrade (give one of them).")
    after: list[ReleaseStep] = Field(default_factory=list,
                                     description="Steps after the downgrade or restore.")
    kind: RollbackKind | None = Field(
        None, description="How production would roll this release back, and so what the drill "
        "rehearses: downgrade, restore (from the backup, then replay), code-only (the old "
        "version on the expanded schema) or feature-flag (recovery.flag turned off). Default: "
        "downgrade when there is one and migrations.reversible, else restore "
        "(docs/recovery.md).")

    @model_validator(mode="after")
    def _names(self) -> RollbackSteps:
        _name_steps({"before": self.before, "downgrade": self.downgrade, "after": self.after})
        return self


class ReleaseRuntime(_Model):
    """The environment a release runs in. ``requirements``: a venv built once (with
    ``python``, else plantstage's interpreter, and pip), cached by the artifact's and the file's
    digests; ``{python}`` is then its interpreter. ``python`` alone: that interpreter.
    ``command``: the release's own launcher, used instead of the binding's command. Paths are
    relative to the spec; ``{artifact}`` names the release's folder. Without a runtime,
    ``{python}`` is plantstage's own interpreter."""

    requirements: str | None = Field(
        None, description="Requirements file installed into a cached venv (pip install -r).")
    python: str | None = Field(None, description="Interpreter: {python}, and the venv's base.")
    command: list[str] | None = Field(
        None, description="The release's own launcher (replaces the binding's command).")
    pip_args: list[str] = Field(default_factory=list,
                                description="Extra pip install arguments (e.g. an index).")
    build_timeout: float = Field(1800.0, gt=0, description="Seconds allowed for the build.")

    @model_validator(mode="after")
    def _something(self) -> ReleaseRuntime:
        if self.requirements is None and self.python is None and self.command is None:
            raise ValueError("give 'requirements', 'python' or 'command'")
        if self.command is not None and self.requirements is not None:
            raise ValueError("'command' is the release's own launcher; it takes no "
                             "'requirements' (use {python} in the binding's command instead)")
        return self


class Strategy(StrEnum):
    """How the new version replaces the old one (docs/strategies.md)."""

    #: The new version starts beside the old one; traffic moves at the switch.
    blue_green = "blue-green"
    #: Stop the world: the old version stops before the migration, the new one starts after.
    recreate = "recreate"
    #: Like blue-green, but the router moves new connections over in weighted steps.
    canary = "canary"


class Release(_Model):
    name: Name
    version: str
    artifact: Artifact
    migrations: Migrations = Field(default_factory=Migrations)
    steps: UpgradeSteps = Field(
        default_factory=UpgradeSteps, description="Ordered upgrade steps: before, upgrade, "
        "after (docs/release-steps.md); migrations.upgrade is the shorthand for one upgrade "
        "command.")
    rollback: RollbackSteps = Field(
        default_factory=RollbackSteps, description="Ordered rollback steps: before, "
        "downgrade, after; migrations.downgrade is the shorthand for one downgrade command.")
    strategy: Strategy = Field(
        Strategy.blue_green, description="blue-green (the old version serves while the new one "
        "migrates and starts beside it), recreate (stop the old version, migrate, start the "
        "new one: downtime) or canary (blue-green whose switch moves traffic in weighted "
        "steps); docs/strategies.md.")
    maintenance_window: float | None = Field(
        None, gt=0, description="recreate: the seconds of downtime the plant accepts. Declared, "
        "it implies two key gates: the measured downtime and the migration's duration "
        "projected to production's row counts must each fit in it (docs/strategies.md).")
    migration_tables: list[str] = Field(
        default_factory=list, description="The tables whose size the upgrade's duration scales "
        "with, for the projection to production (default: every table).")
    canary_steps: list[float] = Field(
        default_factory=list, description="canary: the share of new connections the router "
        "gives the new version at each step before it gets all of them, increasing, each "
        "between 0 and 1 (default [0.1, 0.5]).")
    canary_hold: float = Field(
        3.0, gt=0, description="canary: seconds each step is held while traffic through the "
        "router is probed.")
    runtime: ReleaseRuntime | None = Field(
        None, description="Its own environment: requirements (cached venv), python, or "
        "launcher command. Default: plantstage's interpreter for {python}.")
    description: str = ""
    risk: Risk = Field(Risk.normal, description="low, normal or high; signoff conditions "
                       "can require roles for high-risk releases (release.risk).")

    @model_validator(mode="after")
    def _steps_once(self) -> Release:
        if self.steps.upgrade is not None and self.migrations.upgrade is not None:
            raise ValueError("give the upgrade once: steps.upgrade or migrations.upgrade")
        if self.rollback.downgrade is not None and self.migrations.downgrade is not None:
            raise ValueError("give the downgrade once: rollback.downgrade or "
                             "migrations.downgrade")
        if self.canary_steps and self.strategy != Strategy.canary:
            raise ValueError("canary_steps: only a canary release moves traffic in steps; set "
                             "'strategy: canary' or leave them out")
        steps = self.canary_steps
        rising = all(b > a for a, b in zip(steps, steps[1:], strict=False))
        if any(not 0 < w < 1 for w in steps) or not rising:
            raise ValueError(f"canary_steps: {steps} must increase, each between 0 and 1 "
                             "(e.g. [0.1, 0.5]; the last step, all traffic, is implied)")
        if self.maintenance_window is not None and self.strategy != Strategy.recreate:
            raise ValueError("maintenance_window: only a recreate release has downtime to fit "
                             "in a window; set 'strategy: recreate' or leave the window out")
        return self

    def release_steps(self, group: Literal["upgrade", "rollback"]) -> dict[str, list[ReleaseStep]]:
        """The ordered steps of the upgrade (before, upgrade, after) or of the rollback
        (before, downgrade, after), the ``migrations`` shorthand included."""
        mig = self.migrations
        if group == "upgrade":
            main = self.steps.upgrade
            if main is None and mig.upgrade:
                main = [ReleaseStep(name="migrations", command=mig.upgrade, timeout=mig.timeout)]
            return {"before": self.steps.before, "upgrade": main or [], "after": self.steps.after}
        main = self.rollback.downgrade
        if main is None and mig.downgrade:
            main = [ReleaseStep(name="migrations", command=mig.downgrade, timeout=mig.timeout)]
        return {"before": self.rollback.before, "downgrade": main or [],
                "after": self.rollback.after}

    def rollback_kind(self) -> RollbackKind:
        """The rollback the drill rehearses: ``rollback.kind``, else downgrade when the
        release has one and is reversible, else restore."""
        if self.rollback.kind is not None:
            return self.rollback.kind
        if self.migrations.reversible and self.release_steps("rollback")["downgrade"]:
            return RollbackKind.downgrade
        return RollbackKind.restore


class ReconcileWhen(StrEnum):
    after_migrate = "after-migrate"
    after_load = "after-load"
    after_recovery = "after-recovery"


class ReconcileCheck(_Model):
    """A SQL query on staging that must return no rows; each row is one mismatch. With
    ``compare: before-after`` the query instead returns the data that must not change: it is
    run on the database as it was before the release (at the backup) and again at each
    ``when``, and each row added, removed or changed (by ``key``) is one mismatch."""

    name: Name
    database: Name = Field(description="The database component to query.")
    sql: str
    description: str = ""
    compare: Literal["before-after"] | None = Field(
        None, description="before-after: compare the query's rows before the release with "
        "its rows after (docs/release-steps.md).")
    key: list[str] = Field(
        default_factory=list, description="before-after: the columns that identify a row, so "
        "a row whose other columns differ is 'changed'; without a key, whole rows are compared "
        "(added / removed).")
    tolerance: float = Field(0.0, ge=0, description="before-after: numeric values that "
                             "differ by at most this much are equal.")
    when: list[ReconcileWhen] | None = Field(
        None, description="Where it runs: after-migrate, after-load (the candidate load), "
        "after-recovery (the rollback drill). Default: after-migrate for before-after, "
        "after-recovery otherwise.")

    @model_validator(mode="after")
    def _compare_fields(self) -> ReconcileCheck:
        if self.compare is None and (self.key or self.tolerance):
            raise ValueError("'key' and 'tolerance' need 'compare: before-after'")
        if self.when is not None and not self.when:
            raise ValueError("'when' is empty: leave it out, or name where the check runs")
        return self

    @property
    def points(self) -> list[str]:
        """Where the check runs (``when``, or its default)."""
        if self.when:
            return [str(w) for w in self.when]
        return ["after-migrate" if self.compare else "after-recovery"]


class EvidenceSettings(_Model):
    """How evidence bundles of this project are trusted (docs/evidence.md)."""

    trusted_keys: list[str] = Field(
        default_factory=list,
        description="Public keys `plantstage verify` trusts as signers of this project's runs: "
        "the path of a PEM public key (relative to the spec) or the base64 of the raw Ed25519 "
        "key (`plantstage keys init` prints both). Read from the project's spec, never from "
        "the copy inside a bundle.")


class Spec(_Model):
    """Root of ``plantstage.yaml``."""

    version: Literal[1] = 1
    name: Name
    estate: Estate
    environments: dict[Literal["production", "staging"], Environment]
    current: Name = Field(description="Name of the release production runs now.")
    releases: list[Release] = Field(min_length=1)
    paths: PathRules = Field(
        default_factory=PathRules, description="Folders outside the spec's folder that its "
        "paths may name.")
    plugins: list[Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*$")]] = Field(
        default_factory=list, description="Python modules that register flows with "
        "plantstage.api.flow (docs/flows.md), imported from the spec's folder first, then "
        "from installed packages; packages may also register through the entry-point group "
        "'plantstage.plugins'.")
    workload: Workload = Field(default_factory=Workload)
    reconcile: list[ReconcileCheck] = Field(default_factory=list)
    gates: list[Gate] = Field(default_factory=list)
    scoring: Scoring = Field(default_factory=Scoring,
                             description="Total gate score thresholds (docs/gates.md).")
    signoffs: list[SignoffRole] = Field(
        default_factory=list, description="Roles that must sign off, with a quorum and an "
        "optional CEL condition (docs/gates.md).")
    refresh: RefreshSpec | None = Field(
        None, description="Masking and subsetting for the production → staging refresh."
    )
    parity: ParitySpec = Field(
        default_factory=ParitySpec, description="Allowed differences and blocking drift."
    )
    evidence: EvidenceSettings = Field(
        default_factory=EvidenceSettings, description="Trusted signing keys for `verify`.")
    smoke: list[SmokeCheck] = Field(
        default_factory=list, description="Smoke and business-transaction checks run on the "
        "new version after the switch (HTTP, SQL or a flow; none declared: none run).")
    effects: list[Effect] = Field(
        default_factory=list, description="Exactly-once effects across systems: what a twin "
        "saw acknowledged, sent or received, reconciled with a query on staging (lost and "
        "duplicated ids; docs/effects.md).")
    monitors: Monitors = Field(
        default_factory=list, description="Business transaction monitors: read-only SQL on "
        "staging returning one number (a lag, a backlog's age, failed postings), sampled "
        "during every load phase as monitor.<phase>.<name>.<stat> signals (docs/monitors.md).")
    rbac: Rbac | None = Field(
        None, description="RBAC probes on the new version and the permission diff "
        "(docs/security.md).")
    secrets: SecretsScan | None = Field(
        None, description="Scan staging configs, app logs and evidence text for secrets "
        "(docs/security.md); a hit is NO-GO.")
    audit: Audit | None = Field(
        None, description="An audit trail that must hold an entry per privileged action "
        "(docs/security.md).")
    tenant_config: TenantConfig | None = Field(
        None, description="Per-tenant configuration compared production vs staging, with "
        "the archetype coverage (docs/security.md).")

    @model_validator(mode="after")
    def _smoke_references(self) -> Spec:
        comps = self.estate.components
        tenants = {t.code for t in self.estate.tenants}
        names: set[str] = set()
        for i, c in enumerate(self.smoke):
            if c.name in names:
                raise ValueError(f"smoke[{i}].name: '{c.name}' is used twice")
            names.add(c.name)
            if c.database is not None and (c.database not in comps or
                                           comps[c.database].kind != ComponentKind.database):
                raise ValueError(f"smoke[{i}].database: '{c.database}' is not a database")
            if c.tenant is not None and c.tenant not in tenants:
                raise ValueError(f"smoke[{i}].tenant: '{c.tenant}' is not an estate tenant")
        return self

    isolation: IsolationSpec | None = Field(
        None, description="Tenant isolation probes on the new version: tenant-scoped "
        "requests, the values each tenant owns, direct object references "
        "(docs/isolation.md).")
    rings: list[Ring] = Field(
        default_factory=list, description="Release rings in order (internal → pilot → "
        "general): `rehearse --ring NAME` rehearses one ring's tenants once the previous "
        "ring has a verified GO for the same artifact (docs/rings.md).")

    @model_validator(mode="after")
    def _ring_references(self) -> Spec:
        check_rings(self)
        return self

    @model_validator(mode="after")
    def _effect_references(self) -> Spec:
        check_effects(self)
        return self

    recovery: Recovery | None = Field(
        None, description="Recovery objectives (RTO, RPO) per tier or component, the replay "
        "after a restore, the feature-flag provider (docs/recovery.md).")

    @model_validator(mode="after")
    def _recovery_references(self) -> Spec:
        check_recovery(self)
        return self

    @model_validator(mode="after")
    def _references(self) -> Spec:
        comps = self.estate.components
        for env_name in ("production", "staging"):
            if env_name not in self.environments:
                raise ValueError(f"environments.{env_name} is required")
            for comp in self.environments[env_name].bindings:
                if comp not in comps:
                    raise ValueError(
                        f"environments.{env_name}.bindings.{comp}: no such estate component"
                    )
        for e in self.estate.edges:
            for end in (e.from_, e.to):
                if end not in comps:
                    raise ValueError(f"estate.edges: '{end}' is not an estate component")
        names = [r.name for r in self.releases]
        if self.current not in names:
            raise ValueError(f"current: '{self.current}' is not among releases {names}")
        tenants = {t.code for t in self.estate.tenants}
        for t in self.workload.tenants:
            if t not in tenants:
                raise ValueError(f"workload.tenants: '{t}' is not an estate tenant")
        for c in self.reconcile:
            if c.database not in comps or comps[c.database].kind != ComponentKind.database:
                raise ValueError(f"reconcile.{c.name}.database: '{c.database}' is not a database")
        return self

    # -- helpers used by the rehearsal -------------------------------------------------
    def release(self, name: str) -> Release:
        for r in self.releases:
            if r.name == name:
                return r
        raise KeyError(name)

    def components_of(self, kind: ComponentKind) -> list[str]:
        return [n for n, c in self.estate.components.items() if c.kind == kind]

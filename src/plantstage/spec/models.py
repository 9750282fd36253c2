"""Typed models of ``plantstage.yaml`` (spec version 1).

Every model forbids unknown fields, so a typo is an error that names the field and its line.
The JSON Schema printed by ``plantstage schema`` is generated from these models, and so is the
spec reference in ``docs/spec.md``.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from plantstage.spec.effects import Effect, check_effects
from plantstage.spec.gates import Gate, Risk, Scoring, SignoffRole
from plantstage.spec.masking import RefreshSpec
from plantstage.spec.parity import ParitySpec
from plantstage.spec.smoke import HealthProbe, SmokeCheck
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
        "its output so far is kept in logs/migrations.log.")


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
    blue_green = "blue-green"


class Release(_Model):
    name: Name
    version: str
    artifact: Artifact
    migrations: Migrations = Field(default_factory=Migrations)
    strategy: Strategy = Strategy.blue_green
    runtime: ReleaseRuntime | None = Field(
        None, description="Its own environment: requirements (cached venv), python, or "
        "launcher command. Default: plantstage's interpreter for {python}.")
    description: str = ""
    risk: Risk = Field(Risk.normal, description="low, normal or high; signoff conditions "
                       "can require roles for high-risk releases (release.risk).")


class ReconcileCheck(_Model):
    """A SQL query on staging that must return no rows; each row is one mismatch."""

    name: Name
    database: Name = Field(description="The database component to query.")
    sql: str
    description: str = ""


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

    @model_validator(mode="after")
    def _effect_references(self) -> Spec:
        check_effects(self)
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

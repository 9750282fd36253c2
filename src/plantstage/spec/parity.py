"""Spec models for parity: what may differ between production and staging, and what blocks.

Parity compares five layers of two environments — topology, versions, schema, config and
access. Anything that differs is *drift* with a severity taken from the component's tier,
unless an :class:`AllowedDifference` declares it (a scale-down, another hostname, a simulated
external system), in which case it is reported as *allowed*, apart from drift.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Severity(StrEnum):
    critical = "critical"
    high = "high"
    medium = "medium"
    low = "low"


class Layer(StrEnum):
    topology = "topology"
    versions = "versions"
    schema = "schema"
    config = "config"
    access = "access"


class AllowedDifference(_Model):
    """A difference staging may have from production; reported as ``allowed``, not drift.

    ``key`` and ``component`` are shell-style globs over the finding's key (as printed by
    ``plantstage parity``, e.g. ``erp.scale``, ``erp-settings:server.workers``,
    ``index.items(tenant_id)``) and its component.

    A key that cannot be read in one environment is ``unknown``, and unknown blocks the
    rehearsal like drift does, unless a rule with ``differ: unknown`` covers it (e.g. a
    production endpoint plantstage is not allowed to reach).
    """

    layer: Layer | Literal["*"] = Field("*", description="Layer it applies to, or `*`.")
    component: str = Field("*", description="Component glob.")
    key: str = Field("*", description="Finding key glob, e.g. `erp.scale`.")
    differ: Literal["any", "scale-down", "hostname", "simulated", "unknown"] = Field(
        "any",
        description="`any`: any difference (or missing on one side); `scale-down`: staging's "
        "number is at most production's; `hostname`: values differ only in host and port; "
        "`simulated`: staging's fidelity is `simulated` or `mirrored`; `unknown`: the key "
        "may be unreadable (reported as unknown, not blocking).",
    )
    reason: str = Field(description="Why this difference is fine, in words for the report.")


class ConfigSource(_Model):
    """One version-controlled configuration file, as each environment has it.

    Paths are relative to the spec. The format comes from the suffix (``.yaml``/``.yml``,
    ``.json``, ``.ini``/``.cfg``/``.conf``, ``.env``) unless ``format`` says otherwise.

    A path may start with ``{artifact}``: the release's own folder — in staging the release
    under test, in production the release running there (the spec's ``current``) — so a
    config file shipped inside the artifact is compared as each environment runs it.
    ``plantstage check`` verifies that every named file exists.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                      description="Prefix of this file's keys in findings.")
    component: str = Field(description="The estate component this file configures.")
    production: str = Field(description="Path of production's copy.")
    staging: str = Field(description="Path of staging's copy.")
    format: Literal["yaml", "json", "ini", "env"] | None = None
    integrations: str | None = Field(
        None,
        description="Dotted key whose children name the systems this component talks to "
        "(each child's `url` scheme or `protocol` is the edge's protocol); these are the "
        "component's *observed* edges in the topology layer.",
    )


class SchemaVersion(_Model):
    """How to read one database's migration head (schema version), for the versions layer.

    Either ``sql`` — a read-only query on that environment's database; the first column of
    every row, sorted and joined with commas, is the head — or ``command`` — a program whose
    last line of output is the head. A command gets ``{db}`` (the environment's database URL),
    ``{artifact}`` (the folder of the release whose migrations built that schema: the current
    release, in both environments), ``{python}`` and ``{spec_dir}``; it runs in that folder
    with ``DATABASE_URL`` set, and must only read (it is given production's database too).
    """

    component: str = Field(description="The database component (an estate component).")
    sql: str | None = Field(None, description="e.g. `SELECT max(version) FROM "
                            "schema_migrations` (or your tool's table).")
    command: list[str] | None = Field(
        None, min_length=1, description="e.g. `[\"{python}\", manage.py, showmigrations, "
        "--plan]` or `[flyway, info]`; its last output line is the head.")
    timeout: float = Field(60.0, gt=0, le=3600, description="Seconds the command may take.")

    @model_validator(mode="after")
    def _one_way(self) -> SchemaVersion:
        if (self.sql is None) == (self.command is None):
            raise ValueError("give exactly one of 'sql' or 'command'")
        return self


class RoleMap(_Model):
    """Where an environment keeps the app's role → permission map (YAML/JSON)."""

    component: str = Field(description="The service whose roles these are.")
    production: str
    staging: str
    key: str = Field("roles", description="Dotted key of the map `role: [permission, …]`.")


class NetworkRule(_Model):
    """A network path an environment's firewall allows."""

    from_: str = Field(alias="from")
    to: str
    protocol: str = Field(description="e.g. http, sql, mqtt, opcua")
    port: int | None = Field(None, ge=1, le=65535)


def _valid_filter(filter_: str) -> bool:
    """An MQTT topic filter: `+` a whole level, `#` only as the whole last level."""
    if not filter_:
        return False
    parts = filter_.split("/")
    for i, part in enumerate(parts):
        if "#" in part and (part != "#" or i != len(parts) - 1):
            return False
        if "+" in part and part != "+":
            return False
    return True


def _check_filters(v: list[str]) -> list[str]:
    # Checked here, not with the broker's own helper: spec/ imports no feature package.
    bad = [t for t in v if not _valid_filter(t)]
    if bad:
        raise ValueError(f"not MQTT topic filters: {bad} ('#' only as the last level, "
                         f"'+' and '#' as whole levels)")
    return v


class TopicRoute(_Model):
    """The MQTT topics one declared edge uses; a topic in use that no route maps is drift."""

    from_: str = Field(alias="from", description="The edge's `from` (an `estate.edges` entry "
                       "with protocol mqtt).")
    to: str = Field(description="The edge's `to`.")
    topics: list[str] = Field(
        min_length=1,
        description="MQTT topic filters (`+` one level, `#` the rest), e.g. "
        "`site/+/events`.",
    )

    @field_validator("topics")
    @classmethod
    def _filters(cls, v: list[str]) -> list[str]:
        return _check_filters(v)


class BrokerObservation(_Model):
    """Observe the topics in use on each environment's MQTT broker (subscribe only, never
    publish) and map them to declared edges."""

    production: str | None = Field(
        None, description="Production's broker, `mqtt://HOST[:PORT]` (default: the broker "
        "component production binds, if it has a url).")
    staging: str | None = Field(
        None, description="Staging's broker (default: the broker component staging binds). "
        "`{mqtt_url}` is the broker a rehearsal's twins step starts.")
    component: str | None = Field(
        None, description="Whose broker this is: undeclared topics are drift with this "
        "component's tier (default: the bound broker component, else the most critical end "
        "of a declared mqtt edge).")
    window: float = Field(1.5, gt=0, le=60,
                          description="Seconds to listen on each broker.")
    connect_timeout: float = Field(3.0, gt=0, description="Seconds to wait for the broker.")
    sys: bool = Field(True, description="Also subscribe to `$SYS/#`: the broker's version "
                      "(`$SYS/broker/version`) goes into the versions layer.")
    topics: list[TopicRoute] = Field(
        default_factory=list, description="Topic filters of each declared mqtt edge.")
    ignore: list[str] = Field(
        default_factory=list, description="Topic filters in use that are neither an edge nor "
        "drift (e.g. a bridge's heartbeat).")

    @field_validator("ignore")
    @classmethod
    def _ignore_filters(cls, v: list[str]) -> list[str]:
        return _check_filters(v)


_TIER_SEVERITY = {1: Severity.critical, 2: Severity.high, 3: Severity.medium, 4: Severity.low}


class ParitySpec(_Model):
    """Allowed differences between environments and which drift blocks a rehearsal."""

    blocks: list[Severity] = Field(
        default_factory=lambda: [Severity.critical, Severity.high],
        description="Drift of these severities blocks: `plantstage parity` exits 1 and the "
        "rehearsal is NO-GO before anything else runs.",
    )
    severity: dict[int, Severity] = Field(
        default_factory=lambda: dict(_TIER_SEVERITY),
        description="Severity of drift by the component's tier.",
    )
    allowed: list[AllowedDifference] = Field(default_factory=list)
    config: list[ConfigSource] = Field(
        default_factory=list, description="Configuration files compared key by key."
    )
    roles: RoleMap | None = Field(None, description="The app's role → permission map.")
    schema_version: list[SchemaVersion] = Field(
        default_factory=list, description="How to read each database's migration head "
        "(any migration tool); reported in the versions layer as `DB.migration_head`.")
    network: dict[Literal["production", "staging"], list[NetworkRule]] = Field(
        default_factory=dict, description="Network rules each environment declares."
    )
    secrets: list[str] = Field(
        default_factory=lambda: ["*password*", "*passwd*", "*secret*", "*token*",
                                 "*api_key*", "*apikey*", "*private_key*", "*credential*"],
        description="Key globs (case-insensitive) whose values are secrets: compared by "
        "digest, never printed.",
    )
    types: list[list[str]] = Field(
        default_factory=list,
        description="Column types that count as the same across engines, e.g. "
        "`[[jsonb, json, text]]` (names as parity prints them).",
    )
    broker: BrokerObservation | None = Field(
        None, description="Observe the MQTT topics in use on each environment's broker.")
    health_timeout: float = Field(
        3.0, gt=0, description="Seconds to wait for a service's health endpoint."
    )

    @field_validator("severity")
    @classmethod
    def _all_tiers(cls, v: dict[int, Severity]) -> dict[int, Severity]:
        missing = [t for t in (1, 2, 3, 4) if t not in v]
        if missing:
            raise ValueError(f"give a severity for every tier; missing {missing}")
        return v

    def severity_of_tier(self, tier: int) -> Severity:
        return self.severity.get(tier, Severity.medium)

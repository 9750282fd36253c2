"""Spec models for parity: what may differ between production and staging, and what blocks.

Parity compares five layers of two environments — topology, versions, schema, config and
access. Anything that differs is *drift* with a severity taken from the component's tier,
unless an :class:`AllowedDifference` declares it (a scale-down, another hostname, a simulated
external system), in which case it is reported as *allowed*, apart from drift.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


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
    """

    layer: Layer | Literal["*"] = Field("*", description="Layer it applies to, or `*`.")
    component: str = Field("*", description="Component glob.")
    key: str = Field("*", description="Finding key glob, e.g. `erp.scale`.")
    differ: Literal["any", "scale-down", "hostname", "simulated"] = Field(
        "any",
        description="`any`: any difference (or missing on one side); `scale-down`: staging's "
        "number is at most production's; `hostname`: values differ only in host and port; "
        "`simulated`: staging's fidelity is `simulated` or `mirrored`.",
    )
    reason: str = Field(description="Why this difference is fine, in words for the report.")


class ConfigSource(_Model):
    """One version-controlled configuration file, as each environment has it.

    Paths are relative to the spec. The format comes from the suffix (``.yaml``/``.yml``,
    ``.json``, ``.ini``/``.cfg``/``.conf``, ``.env``) unless ``format`` says otherwise.
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

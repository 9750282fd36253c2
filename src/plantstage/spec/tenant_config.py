"""Spec model of tenant configuration parity (``tenant_config:``): each tenant's own settings
compared production vs staging, and which production tenants' configurations the rehearsal
exercised (docs/security.md, "Tenant configuration parity")."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TenantConfig(BaseModel):
    """Where the per-tenant configuration is: a ``parity.config`` file whose ``key`` maps each
    tenant code to its settings (feature flags, units, posting modes …)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: str = Field(description="Name of a `parity.config` entry (its production and "
                        "staging files are compared).")
    key: str = Field("", description="Dotted key of the map `tenant: {setting: value}` in "
                     "that file (empty: the whole file).")
    blocks: bool = Field(
        False, description="true: a tenant whose settings differ between production and "
        "staging fails the built-in key gate `tenant-config` (signal tenant_config.drift).")

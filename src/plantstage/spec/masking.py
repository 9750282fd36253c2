"""Spec models for the production → staging data refresh (masking and subsetting)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class RefreshSpec(BaseModel):
    """How staging data is refreshed from production: masking rules and subsetting."""

    model_config = ConfigDict(extra="forbid")

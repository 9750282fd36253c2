"""Spec models for parity: what may differ between production and staging, and what blocks."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ParitySpec(BaseModel):
    """Allowed differences between environments and which drift blocks a rehearsal."""

    model_config = ConfigDict(extra="forbid")

"""Spec models for twins (simulated external systems) and the faults injected into them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class TwinSpec(BaseModel):
    """Which twin simulates a component in staging, its settings and its faults."""

    model_config = ConfigDict(extra="forbid")

"""Spec models for the workload: flows, rates, tenants (deepened by the workload engine)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

Name = str


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FlowKind(StrEnum):
    sales_order_import = "sales-order-import"
    production_confirmation = "production-confirmation"
    inventory_adjustment = "inventory-adjustment"


class WorkloadFlow(_Model):
    """One business flow driven at an open-model rate."""

    flow: FlowKind
    rate: float = Field(gt=0, description="Iterations started per second (open model).")
    orders: int = Field(10, ge=1, description="sales-order-import: orders per batch.")
    lines: int = Field(5, ge=1, description="sales-order-import: lines per order.")
    redeliver: float = Field(
        0.0, ge=0, le=1, description="production-confirmation: share of messages sent twice."
    )


class Workload(_Model):
    duration: float = Field(5.0, gt=0, description="Seconds per workload phase.")
    concurrency: int = Field(32, ge=1, description="Iterations in flight at most.")
    seed: int = 7
    tenants: list[Name] = Field(default_factory=list, description="Empty: every estate tenant.")
    flows: list[WorkloadFlow] = Field(default_factory=list)


__all__ = ["FlowKind", "Workload", "WorkloadFlow"]

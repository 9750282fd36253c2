"""Spec models for the workload: flows, arrival models, tenant archetypes.

A workload names *business flows* (built in, or your own ``module:function``), drives each at an
open-model rate shaped by an arrival model, and groups flows into *archetypes* — the workload
profile of a kind of tenant. Each estate tenant carries an ``archetype``; a rehearsal drives every
selected tenant with its archetype's mix, so each archetype present in the estate is covered.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Name = str

#: ``package.module:function`` — a user flow, importable from the spec's folder.
USER_FLOW = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FlowKind(StrEnum):
    """The built-in flows for the sample plant's API."""

    sales_order_import = "sales-order-import"
    production_confirmation = "production-confirmation"
    inventory_adjustment = "inventory-adjustment"
    work_order_to_stock = "work-order-to-stock"
    purchase_to_receipt = "purchase-to-receipt"
    mrp_run = "mrp-run"
    retry_storm = "retry-storm"


class ShiftPhase(_Model):
    """One part of a repeating shift pattern: ``seconds`` long at ``factor`` × the flow's rate."""

    seconds: float = Field(gt=0, description="Length of this part of the pattern.")
    factor: float = Field(ge=0, description="Multiplier of the flow's rate during it.")


class Arrival(_Model):
    """How iteration start times are laid out (open model: they never wait for the server).

    ``constant`` starts one every 1/rate seconds; ``poisson`` draws exponential gaps with the same
    mean (bursty, like independent shop-floor events); ``ramp`` goes linearly from ``start_rate``
    to the flow's rate over ``ramp_seconds`` and holds; ``shift`` cycles through ``pattern``
    (e.g. a quiet hand-over, then a rush at shift start).
    """

    model: Literal["constant", "poisson", "ramp", "shift"] = "constant"
    start_rate: float = Field(0.0, ge=0, description="ramp: iterations/s at the start.")
    ramp_seconds: float | None = Field(None, gt=0, description="ramp: seconds to full rate.")
    pattern: list[ShiftPhase] = Field(default_factory=list,
                                      description="shift: the repeating pattern.")
    random: bool = Field(False, description="ramp/shift: exponential gaps instead of even ones.")

    @model_validator(mode="after")
    def _complete(self) -> Arrival:
        if self.model == "ramp" and self.ramp_seconds is None:
            raise ValueError("a ramp needs 'ramp_seconds'")
        if self.model == "shift" and not self.pattern:
            raise ValueError("a shift arrival needs a 'pattern' of {seconds, factor}")
        if self.model == "shift" and not any(p.factor > 0 for p in self.pattern):
            raise ValueError("a shift pattern needs at least one part with factor > 0")
        return self


class WorkloadFlow(_Model):
    """One business flow driven at an open-model rate."""

    flow: str = Field(description="A built-in flow (see FlowKind) or a user flow "
                      "'module:function' importable from the spec's folder.")
    rate: float = Field(gt=0, description="Iterations started per second (open model), "
                        "per tenant.")
    arrival: Arrival | None = Field(None, description="Arrival model; default: the workload's.")
    orders: int = Field(10, ge=1, le=500, description="sales-order-import: orders per batch.")
    lines: int = Field(5, ge=1, description="sales-order-import, purchase-to-receipt: lines "
                       "per order.")
    redeliver: float = Field(
        0.0, ge=0, le=1, description="production-confirmation: share of messages sent twice."
    )
    burst: int = Field(5, ge=2, le=100, description="retry-storm: copies of one message sent "
                       "at once.")
    items: int = Field(10, ge=1, le=200, description="mrp-run: finished items planned per run.")
    timeout: float = Field(5.0, gt=0, description="Seconds a wait-until-visible step waits.")
    params: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Free parameters for user flows.")

    @field_validator("flow")
    @classmethod
    def _known_flow(cls, v: str) -> str:
        from plantstage.workload.flows import FLOWS  # flows registered by other modules too

        builtin = {k.value for k in FlowKind} | set(FLOWS)
        if v not in builtin and not USER_FLOW.match(v):
            raise ValueError(f"unknown flow '{v}'; built in: {', '.join(sorted(builtin))}, "
                             "or 'module:function' for your own")
        return v

    @property
    def label(self) -> str:
        """The name the flow's signals carry (a user flow: its function name)."""
        return self.flow.rsplit(":", 1)[-1].replace("_", "-") if ":" in self.flow else self.flow


class Archetype(_Model):
    """A tenant's workload profile: its mix of flows, rates and batch sizes."""

    description: str = ""
    flows: list[WorkloadFlow] = Field(min_length=1)


class Workload(_Model):
    duration: float = Field(5.0, gt=0, description="Seconds per workload phase.")
    concurrency: int = Field(32, ge=1, description="Iterations in flight at most; beyond it "
                             "iterations are dropped and counted.")
    seed: int = 7
    arrival: Arrival = Field(default_factory=Arrival, description="Default arrival model.")
    grace: float = Field(5.0, ge=0, description="Seconds in-flight iterations get after the "
                         "duration before they are cancelled (and counted as 'unfinished').")
    request_timeout: float = Field(10.0, gt=0, description="Seconds one HTTP request may take.")
    queue_settle: float = Field(
        2.0, ge=0, description="Seconds after each phase the broker and twin queues get to drain "
        "back to their depth before the phase ('queue_drain_s', 'queue_drained' signals).")
    tenants: list[Name] = Field(default_factory=list, description="Empty: every estate tenant.")
    flows: list[WorkloadFlow] = Field(
        default_factory=list, description="Flows driven for every selected tenant, in addition "
        "to its archetype's.")
    archetypes: dict[Name, Archetype] = Field(
        default_factory=dict, description="Archetype mixes; these override or add to the built-in "
        "high-volume-discrete, process, multi-plant and heavily-integrated.")
    use_archetypes: bool | None = Field(
        None, description="Drive each tenant with its archetype's mix. Default: yes when "
        "'archetypes' declares any (true: also with only the built-in ones).")
    metrics_port: int | None = Field(None, ge=0, le=65535, description="Serve the run's signals "
                                     "for Prometheus on this port while the workload runs.")


    @property
    def drives_archetypes(self) -> bool:
        return self.use_archetypes if self.use_archetypes is not None else bool(self.archetypes)


__all__ = ["Archetype", "Arrival", "FlowKind", "ShiftPhase", "Workload", "WorkloadFlow"]

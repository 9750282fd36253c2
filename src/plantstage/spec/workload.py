"""Spec models for the workload: flows, arrival models, tenant archetypes, tenant master data.

A workload names *business flows* (registered by a plugin with ``@flow``, or ``module:function``),
drives each at an open-model rate shaped by an arrival model, and groups flows into *archetypes* —
the workload profile of a kind of tenant. Each estate tenant may carry an ``archetype``; a
rehearsal drives every selected tenant with its archetype's mix, so each archetype present in the
estate is covered. plantstage ships no flow: every flow comes from the spec's plugins
(docs/flows.md).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Name = str

#: ``package.module:function`` — a user flow, importable from the spec's folder.
USER_FLOW = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
#: A flow name registered with ``@flow(NAME)`` (it becomes part of signal names: no dots).
FLOW_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


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

    flow: str = Field(description="A flow a plugin registered with @flow (its name), or "
                      "'module:function' importable from the spec's folder (docs/flows.md).")
    rate: float = Field(gt=0, description="Iterations started per second (open model), "
                        "per tenant.")
    arrival: Arrival | None = Field(None, description="Arrival model; default: the workload's.")
    timeout: float = Field(5.0, gt=0, description="Seconds a wait-until step waits by default "
                           "(ctx.timeout).")
    params: dict[str, Any] = Field(
        default_factory=dict, description="The flow's own parameters (ctx.params): batch sizes, "
        "shares, anything the flow documents.")

    @field_validator("flow")
    @classmethod
    def _flow_name(cls, v: str) -> str:
        if not FLOW_NAME.match(v) and not USER_FLOW.match(v):
            raise ValueError(f"'{v}' is neither a registered flow name (letters, digits, - _) "
                             "nor 'module:function'")
        return v

    @property
    def label(self) -> str:
        """The name the flow's signals carry: the registered name, or for ``module:function``
        the function's name exactly as written (``flows:confirm_http`` → ``confirm_http``)."""
        return self.flow.rsplit(":", 1)[-1]


class TenantDataSource(_Model):
    """Master data a tenant's flows draw from, loaded once per tenant per phase.

    ``http``: a GET on the version under test (``{tenant}`` is the tenant's code) answering a
    JSON list, or an object holding one at ``items`` (dotted path); ``field`` picks one field of
    each element (dotted path). ``sql``: a read query on the staging database with the bind
    parameter ``:tenant``; one column gives a list of values, several a list of mappings.
    """

    http: str | None = Field(None, description="Path (or URL) template, e.g. "
                             "'/tenants/{tenant}/customers'.")
    items: str | None = Field(None, description="http: where the list is in the answer "
                              "(dotted path); default: the answer itself.")
    field: str | None = Field(None, description="http: the field of each element to keep "
                              "(dotted path); default: the whole element.")
    sql: str | None = Field(None, description="Read query on the staging database; "
                            ":tenant is the tenant's code.")

    @model_validator(mode="after")
    def _one_source(self) -> TenantDataSource:
        if (self.http is None) == (self.sql is None):
            raise ValueError("give exactly one of 'http' or 'sql'")
        if self.sql is not None and (self.field is not None or self.items is not None):
            raise ValueError("'field' and 'items' go with 'http'; select the column in the SQL")
        return self


class Archetype(_Model):
    """A tenant's workload profile: its mix of flows, rates and batch sizes."""

    description: str = ""
    flows: list[WorkloadFlow] = Field(min_length=1)


class PairedLoad(_Model):
    """The paired phase: the old version (on the migrated schema) and the new one take the same
    traffic at the same time, in alternating blocks, so machine noise hits both alike."""

    enabled: bool = Field(True, description="Run the paired phase (old and new side by side).")
    duration: float | None = Field(
        None, gt=0, description="Seconds of the paired phase; default: twice 'workload.duration' "
        "(each version gets about one phase's worth of traffic).")
    block: float = Field(1.0, gt=0, description="Seconds per block; consecutive blocks go to "
                         "the two versions in a seeded, balanced order (one of each per pair).")
    warmup: float = Field(1.0, ge=0, description="Seconds of unmeasured traffic to both "
                          "versions first (the new one has had none yet).")


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
        default_factory=dict, description="Archetype mixes by name; an estate tenant's "
        "'archetype' names one of them.")
    use_archetypes: bool | None = Field(
        None, description="Drive each tenant with its archetype's mix. Default: yes when "
        "'archetypes' declares any.")
    tenant_data: dict[Name, TenantDataSource] = Field(
        default_factory=dict, description="Tenant master data flows read as "
        "ctx.tenant.data[NAME], loaded once per tenant per phase.")
    metrics_port: int | None = Field(None, ge=0, le=65535, description="Serve the run's signals "
                                     "for Prometheus on this port while the workload runs.")
    paired: PairedLoad = Field(default_factory=PairedLoad, description="The paired phase "
                               "(old and new versions in alternating blocks).")


    @property
    def drives_archetypes(self) -> bool:
        return self.use_archetypes if self.use_archetypes is not None else bool(self.archetypes)


__all__ = ["Archetype", "Arrival", "PairedLoad", "ShiftPhase", "TenantDataSource", "Workload",
           "WorkloadFlow"]

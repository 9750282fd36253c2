"""Spec models for twins (simulated external systems) and the faults injected into them.

A twin is declared on the staging binding of an ``external`` component whose fidelity is
``simulated``::

    mes-line:
      fidelity: simulated
      twin:
        kind: mes-line
        settings: {format: json, scrap_rate: 0.05}
        faults:
          seed: 11
          rules:
            - {kind: duplicate, p: 0.2}
            - {kind: outage, start: 2.0, duration: 1.0}
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TwinKind(StrEnum):
    """The built-in twins (one module each in ``plantstage.twins``)."""

    mes_line = "mes-line"
    wms = "wms"
    supplier_portal = "supplier-portal"
    plc_line = "plc-line"
    replay = "replay"


class FaultKind(StrEnum):
    latency = "latency"
    drop = "drop"
    duplicate = "duplicate"
    reorder = "reorder"
    corrupt = "corrupt"
    outage = "outage"
    slow_consumer = "slow-consumer"


class LatencyDistribution(StrEnum):
    fixed = "fixed"
    jitter = "jitter"
    lognormal = "lognormal"


class FaultRule(_Model):
    """One disturbance. Without ``start``/``duration`` it applies for the whole run."""

    kind: FaultKind
    link: str | None = Field(
        None, description="Only this link of the twin (e.g. confirmations, http); "
        "default: every link.")
    p: float = Field(1.0, ge=0, le=1, description="Share of messages it hits (per message).")
    ms: float = Field(0.0, ge=0, description="latency: fixed part / median in milliseconds.")
    jitter_ms: float = Field(0.0, ge=0, description="latency jitter: ± uniform milliseconds.")
    sigma: float = Field(0.5, gt=0, description="latency lognormal: shape (spread).")
    distribution: LatencyDistribution = LatencyDistribution.fixed
    start: float | None = Field(
        None, ge=0, description="Seconds after the twins started when it begins.")
    duration: float | None = Field(None, gt=0, description="How long it lasts, in seconds.")
    rate: float | None = Field(
        None, gt=0, description="slow-consumer: messages per second the twin takes at most.")
    window: int = Field(3, ge=2, le=100, description="reorder: messages shuffled together.")

    @model_validator(mode="after")
    def _fields_fit(self) -> FaultRule:
        if self.kind == FaultKind.outage and (self.start is None or self.duration is None):
            raise ValueError("an outage needs 'start' and 'duration' (seconds)")
        if self.kind == FaultKind.slow_consumer and self.rate is None:
            raise ValueError("slow-consumer needs 'rate' (messages per second)")
        if self.kind == FaultKind.latency and not (self.ms or self.jitter_ms):
            raise ValueError("latency needs 'ms' (and/or 'jitter_ms')")
        return self


class FaultPlanSpec(_Model):
    """Faults of one twin, on one seeded timeline (same seed → same fault timeline)."""

    seed: int = 0
    rules: list[FaultRule] = Field(default_factory=list)


class ReplaySpec(_Model):
    """Replay a recorded capture (``plantstage record``) instead of simulating."""

    file: str = Field(description="Capture file (JSON lines), relative to the spec.")
    speed: float = Field(1.0, gt=0, le=1000, description="Time scaling: 1 = as recorded, 10 = 10x.")
    loop: bool = Field(False, description="Start again at the end of the capture.")


class TwinSpec(_Model):
    """Which twin simulates a component in staging, its settings and its faults."""

    kind: TwinKind = Field(description="mes-line, wms, supplier-portal, plc-line or replay.")
    port: int = Field(0, ge=0, le=65535, description="Where an HTTP/OPC UA twin listens "
                      "(0 = a free port).")
    seed: int = Field(1, description="Seed of the twin's own simulation (scrap, lead times).")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Kind-specific settings; see docs/twins.md.")
    faults: FaultPlanSpec = Field(default_factory=FaultPlanSpec)
    replay: ReplaySpec | None = Field(None, description="For kind replay: the capture to play.")

    @model_validator(mode="after")
    def _replay_has_file(self) -> TwinSpec:
        if self.kind == TwinKind.replay and self.replay is None:
            raise ValueError("a replay twin needs 'replay: {file: CAPTURE}'")
        return self


__all__ = ["FaultKind", "FaultPlanSpec", "FaultRule", "LatencyDistribution", "ReplaySpec",
           "TwinKind", "TwinSpec"]

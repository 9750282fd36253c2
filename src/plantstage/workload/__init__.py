"""Workload: business flows driven at open-model rates, with latency recorded correctly."""

from plantstage.workload.engine import PhaseResult, run_phase

__all__ = ["PhaseResult", "run_phase"]

"""Gates: declarative judgements over a run's signals."""

from plantstage.gates.evaluate import GateResult, evaluate_gates, verdict

__all__ = ["GateResult", "evaluate_gates", "verdict"]

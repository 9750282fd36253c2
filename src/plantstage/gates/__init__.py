"""Gates: CEL judgements over a run's signals, the built-in library, scoring and signoffs."""

from plantstage.gates.evaluate import GateResult, Score, evaluate_gates, score, verdict
from plantstage.gates.judge import Judgement, effective_gates, judge

__all__ = ["GateResult", "Judgement", "Score", "effective_gates", "evaluate_gates", "judge",
           "score", "verdict"]

"""Baseline comparison: the same workload on the current and the new version, per signal."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Statistics shown first, in this order; others follow alphabetically.
_ORDER = ["count", "rate", "errors", "dropped", "p50_ms", "p95_ms", "p99_ms", "max_ms",
          "e2e_p95_ms"]


def _key(suffix: str) -> tuple:
    flow, _, stat = suffix.rpartition(".")
    rank = _ORDER.index(stat) if stat in _ORDER else len(_ORDER)
    return (flow.count("."), flow, rank, stat)


def compare(values: Mapping[str, float], old: str = "workload.baseline.",
            new: str = "workload.candidate.") -> list[dict[str, Any]]:
    """Rows ``{signal, subject, stat, old, new, change}`` for every signal under either prefix.

    ``subject`` is what the signal is about (a flow, ``flow.step.NAME``, an archetype's flow or
    the phase itself), ``change`` the relative change new vs old as text (empty when undefined).
    """
    suffixes = {k[len(old):] for k in values if k.startswith(old)}
    suffixes |= {k[len(new):] for k in values if k.startswith(new)}
    rows = []
    for suffix in sorted(suffixes, key=_key):
        a, b = values.get(old + suffix), values.get(new + suffix)
        subject, _, stat = suffix.rpartition(".")
        change = f"{(b / a - 1) * 100:+.0f}%" if a and b is not None else ""
        rows.append({"signal": suffix, "subject": subject or "(phase)", "stat": stat,
                     "old": a, "new": b, "change": change})
    return rows

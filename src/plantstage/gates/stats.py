"""A statistical judge for dense data: Mann–Whitney U with an effect-size bound (as Kayenta).

Hand-written on purpose: SciPy would add ~40 MB for one rank test; this is the textbook normal
approximation with the tie correction (exact for the sample sizes a rehearsal produces to well
within the decision's precision), plus Cliff's delta as the effect size so that a tiny but
"significant" shift on dense data does not fail a gate.
"""

from __future__ import annotations

import math


def _ranks(values: list[float]) -> tuple[list[float], float]:
    """Average ranks (1-based) and the tie term Σ(t³ − t)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    ties = 0.0
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        avg = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = avg
        t = j - i + 1
        ties += t ** 3 - t
        i = j + 1
    return ranks, ties


def mann_whitney(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """``(U_b, p_greater, delta)``: U of b, one-sided p that b tends to be larger than a,
    and Cliff's delta (−1 … 1; positive = b larger)."""
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        raise ValueError("Mann–Whitney needs samples on both sides")
    ranks, ties = _ranks(list(a) + list(b))
    r2 = sum(ranks[n1:])
    u2 = r2 - n2 * (n2 + 1) / 2
    mu = n1 * n2 / 2
    n = n1 + n2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        p = 0.5 if u2 == mu else (0.0 if u2 > mu else 1.0)
    else:
        z = (u2 - mu - 0.5) / math.sqrt(var)  # continuity correction, one-sided
        p = 0.5 * math.erfc(z / math.sqrt(2))
    delta = 2 * u2 / (n1 * n2) - 1
    return u2, p, delta


def mann_whitney_worse(a: list[float], b: list[float], alpha: float = 0.05,
                       min_effect: float = 0.2) -> bool:
    """True when ``b`` (candidate) is significantly *and* materially larger than ``a``."""
    _, p, delta = mann_whitney(a, b)
    return p < alpha and delta >= min_effect

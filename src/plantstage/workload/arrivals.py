"""Arrival models: when each iteration of an open-model flow is meant to start.

Every model is reduced to a piecewise-constant rate over the phase; iterations are laid out so
that each gap holds one unit of "intensity" (even gaps), or an exponentially distributed amount
(random gaps: a Poisson process with that time-varying rate). Hand-written because no library
offers open-model schedules over arbitrary rate shapes, and the schedule is the heart of
coordinated-omission-free measurement.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from plantstage.spec.workload import Arrival

#: A ramp is approximated by steps this long (fine enough for any phase of seconds).
_RAMP_SLICE = 0.05


def segments(arrival: Arrival, rate: float, duration: float) -> list[tuple[float, float, float]]:
    """``[(start, end, rate)]`` covering ``[0, duration)``."""
    if arrival.model in ("constant", "poisson"):
        return [(0.0, duration, rate)]
    out: list[tuple[float, float, float]] = []
    if arrival.model == "ramp":
        ramp = min(arrival.ramp_seconds or 0.0, duration)
        t = 0.0
        while t < ramp:
            end = min(t + _RAMP_SLICE, ramp)
            mid = (t + end) / 2
            out.append((t, end, arrival.start_rate + (rate - arrival.start_rate) * mid / ramp))
            t = end
        if ramp < duration:
            out.append((ramp, duration, rate))
        return out
    # shift: the pattern repeats until the phase ends
    t = 0.0
    while t < duration:
        for part in arrival.pattern:
            end = min(t + part.seconds, duration)
            out.append((t, end, rate * part.factor))
            t = end
            if t >= duration:
                break
    return out


def schedule(arrival: Arrival, rate: float, duration: float,
             rng: random.Random) -> Iterator[float]:
    """Intended start offsets (seconds from the phase start), increasing, all < duration."""
    randomized = arrival.model == "poisson" or arrival.random
    need = rng.expovariate(1.0) if randomized else 0.0  # first iteration starts at once
    for start, end, r in segments(arrival, rate, duration):
        t = start
        while r > 0:
            # The epsilon keeps float drift from adding an arrival at the very end of a segment
            # (it is carried into the next segment instead).
            if need < (end - t) * r - 1e-9:
                t += need / r
                yield t
                need = rng.expovariate(1.0) if randomized else 1.0
            else:
                need -= (end - t) * r
                break
        # r == 0: nothing starts in this segment; what is still needed carries over.


def expected_iterations(arrival: Arrival, rate: float, duration: float) -> float:
    """The mean number of iterations the schedule starts (the integral of the rate)."""
    return sum((e - s) * r for s, e, r in segments(arrival, rate, duration))

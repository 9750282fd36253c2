import random

import pytest

from plantstage.spec.workload import Arrival
from plantstage.workload.arrivals import expected_iterations, schedule, segments


def _times(arrival: Arrival, rate: float, duration: float, seed: int = 1) -> list[float]:
    return list(schedule(arrival, rate, duration, random.Random(seed)))


def test_constant_starts_evenly_from_time_zero():
    t = _times(Arrival(), 10, 2)
    assert len(t) == 20
    assert t[0] == 0.0
    assert t[1] == pytest.approx(0.1)
    assert all(b > a for a, b in zip(t, t[1:], strict=False))
    assert t[-1] < 2


def test_poisson_is_seeded_and_has_the_mean_rate():
    a = Arrival(model="poisson")
    first, again = _times(a, 50, 20, seed=3), _times(a, 50, 20, seed=3)
    assert first == again
    assert 800 < len(first) < 1200  # 1000 expected; 6 sigma is ±190
    gaps = {round(b - a, 6) for a, b in zip(first, first[1:], strict=False)}
    assert len(gaps) > 100  # not evenly spaced


def test_ramp_starts_slow_and_reaches_the_rate():
    a = Arrival(model="ramp", start_rate=0, ramp_seconds=4)
    t = _times(a, 20, 8)
    early = [x for x in t if x < 1]
    late = [x for x in t if 6 <= x < 7]
    assert len(early) < len(late) == 20
    assert len(t) == pytest.approx(expected_iterations(a, 20, 8), abs=1.5)


def test_shift_pattern_has_quiet_and_rush_parts():
    a = Arrival(model="shift", pattern=[{"seconds": 1, "factor": 0}, {"seconds": 1,
                                                                       "factor": 3}])
    t = _times(a, 10, 4)
    assert not [x for x in t if x < 1 or 2 <= x < 3]
    assert len([x for x in t if 1 <= x < 2]) == 30
    assert segments(a, 10, 4)[-1] == (3.0, 4.0, 30.0)


def test_arrival_validation():
    with pytest.raises(ValueError, match="ramp_seconds"):
        Arrival(model="ramp")
    with pytest.raises(ValueError, match="pattern"):
        Arrival(model="shift")

"""Shared settings of the fuzzers: derandomized, a fixed example count, a hang guard.

The counts are fixed so CI runs the same examples every time (``derandomize=True``); set
``PLANTSTAGE_FUZZ_SCALE=4`` to run four times as many locally.
"""

from __future__ import annotations

import contextlib
import os
import signal

from hypothesis import HealthCheck, settings

SCALE = float(os.environ.get("PLANTSTAGE_FUZZ_SCALE", "1"))

settings.register_profile(
    "plantstage-fuzz",
    derandomize=True,
    deadline=None,  # a hang is caught by hang_guard, not by a timing threshold
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much, HealthCheck.large_base_example],
)
FUZZ = settings.get_profile("plantstage-fuzz")


def examples(n: int) -> settings:
    """The profile with ``n`` examples (times PLANTSTAGE_FUZZ_SCALE)."""
    return settings(FUZZ, max_examples=max(1, int(n * SCALE)))


class Hang(Exception):
    """One example ran far longer than any input should take: a hang."""


@contextlib.contextmanager
def hang_guard(seconds: int = 30):
    """Fail the example (instead of the whole run hanging) if it takes ``seconds``."""

    def _raise(signum, frame):  # noqa: ANN001
        raise Hang(f"no answer after {seconds} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)

"""Runs for the ``plantstage serve`` tests: real rehearsals of the sample plant, made once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli

#: The releases rehearsed after the session's recorded demo run (GO): more GO runs of 1.1.0
#: and one defective release (NO-GO), so trends have five points and verdicts differ.
RELEASES = ["1.1.0", "1.1.0-dup-confirmations", "1.1.0", "1.1.0"]


@pytest.fixture(scope="session")
def served_runs(tmp_path_factory, recorded_run, signing_key_dir) -> Path:
    """A runs folder with five finished sample-plant rehearsals (~3 minutes, once a session).

    The first is the session's recorded demo run, copied unchanged (a real rehearsal, reused
    to save one); the others are rehearsed here, one after the other, into the same folder —
    as `.plantstage/runs` fills up over time. Copy a run before changing it.
    """
    runs = tmp_path_factory.mktemp("serve") / "runs"
    shutil.copytree(recorded_run, runs / "run-1")
    env = {"PLANTSTAGE_KEY_DIR": str(signing_key_dir)}
    for i, release in enumerate(RELEASES, start=2):
        r = run_cli("demo", "--release", release, "--out", str(runs / f"run-{i}"), env=env,
                    timeout=600)
        assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr[-2000:]
    return runs

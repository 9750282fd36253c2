"""Runs for the ``plantstage serve`` tests: real rehearsals of the sample plant, made once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

#: Five rehearsals: the good release (GO, or INCONCLUSIVE when a loaded machine makes its
#: latency gate undecidable) and one defective release whose key gate fails (always NO-GO),
#: so a trend has five points and the verdicts differ.
RELEASES = ["1.1.0", "1.1.0", "1.1.0-dup-confirmations", "1.1.0", "1.1.0"]


@pytest.fixture(scope="session")
def served_runs(tmp_path_factory, production_db, signing_key_dir) -> Path:
    """A runs folder with five finished sample-plant rehearsals (~40 s each on an idle
    machine), made once a session, one after the other into the same folder — as
    `.plantstage/runs` fills up over time. Copy a run before changing it."""
    runs = tmp_path_factory.mktemp("serve") / "runs"
    env = {"PLANTSTAGE_KEY_DIR": str(signing_key_dir)}
    for i, release in enumerate(RELEASES, start=1):
        r = run_cli("demo", "--release", release, "--out", str(runs / f"run-{i}"), env=env,
                    timeout=900)
        assert r.returncode in (0, 1, 5), r.stdout[-3000:] + r.stderr[-2000:]
    return runs


def verdicts(runs: Path) -> dict[str, str]:
    """Each run folder's verdict, from its evidence."""
    return {p.name: json.loads((p / "evidence.json").read_text())["verdict"]
            for p in sorted(runs.iterdir())}

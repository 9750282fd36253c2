"""SIGTERM inside every step of the default plan ends the run ``interrupted``: exit 130, never GO.

Each case runs ``plantstage rehearse`` as a real process on a small copy of the sample plant
(the shortest workload phases the spec allows, a tenth of the production data) with the
runner's documented test hook ``PLANTSTAGE_TEST_INTERRUPT=STEP:CALLS``: the process sends
itself SIGTERM after CALLS Python function calls inside STEP (or as STEP returns, if it makes
fewer). The signal is real and arrives wherever the step happens to be, so a step that catches
errors broadly (``except Exception``) would be caught swallowing it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from plantstage.evidence.ledger import read_run
from plantstage.rehearsal.runner import TEST_INTERRUPT_ENV
from plantstage.rehearsal.steps import default_plan
from tests.conftest import EXAMPLE, run_cli

pytestmark = pytest.mark.slow

STEPS = [s.name for s in default_plan()]
#: Deep enough to land inside the step's own work (collectors, the refresh, the workload's
#: event loop), small enough that a short step still gets the signal while it runs.
CALLS = 2000
#: Parity's collectors once caught every error (issue 10, finding 2): interrupt it inside the
#: ones that read databases and run commands too. Measured on the sample plant, its collectors
#: start after about 100 (topology — the CALLS above), 17,500 (versions: database, migration
#: build), 153,000 (schema), 205,000 (config) and 236,000 (access) calls.
CASES = [(step, CALLS) for step in STEPS] + [("parity", calls) for calls in (60_000, 160_000)]


@pytest.fixture(scope="module")
def small_plant(tmp_path_factory) -> Path:
    """A copy of the sample plant with the shortest workload phases and a small production."""
    dest = tmp_path_factory.mktemp("interrupts") / "sample-plant"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".plantstage", "__pycache__"))
    spec_path = dest / "plantstage.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    wl = spec.setdefault("workload", {})
    wl.update(duration=0.3, grace=0, queue_settle=0)
    from plantstage.spec.workload import Workload

    if "paired" in Workload.model_fields:  # the paired phase: two blocks, no warm-up
        wl["paired"] = {**(wl.get("paired") or {}), "duration": 0.6, "block": 0.3, "warmup": 0}
    for binding in spec["environments"]["production"]["bindings"].values():
        gen = binding.get("generate") if isinstance(binding, dict) else None
        if gen and any(str(a).endswith("generate.py") for a in gen):
            binding["generate"] = [*gen, "--scale", "0.1"]
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    from plantstage.spec.loader import load_spec
    from plantstage.verbs import prepare_production

    prepare_production(load_spec(dest), echo=lambda *_: None)
    return dest


def _orphans(run_dir: Path) -> list[str]:
    """Processes still alive that belong to this run (app versions, migrations, twins)."""
    alive = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            env = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if str(run_dir).encode() in cmd or str(run_dir).encode() in env:
            shown = cmd.replace(b"\0", b" ").decode(errors="replace")[:120]
            alive.append(f"{pid}: {shown}")
    return alive


@pytest.mark.parametrize("step,calls", CASES, ids=[f"{s}:{c}" for s, c in CASES])
def test_sigterm_inside_step_interrupts_the_run(small_plant, tmp_path, step, calls):
    out = tmp_path / "run"
    r = run_cli("rehearse", str(small_plant), "--release", "1.1.0", "--out", str(out),
                env={TEST_INTERRUPT_ENV: f"{step}:{calls}"})
    assert r.returncode == 130, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert " GO " not in r.stdout.replace("NO-GO", "")

    ledger = read_run(out / "ledger.sqlite")
    assert ledger["run"]["status"] == "interrupted"
    assert ledger["run"]["verdict"] != "GO"
    by_name = {s["name"]: s["status"] for s in ledger["steps"]}
    assert by_name[step] == "interrupted", ledger["steps"]
    seq = STEPS.index(step)
    assert [s["status"] for s in ledger["steps"][seq + 1:]] == ["not-run"] * (len(STEPS) - seq - 1)
    assert "running" not in by_name.values()

    ev = json.loads((out / "evidence.json").read_text())
    assert ev["status"] == "interrupted"
    assert ev["verdict"] != "GO"
    assert not _orphans(out), "processes outlived the interrupted run"

"""Release rings through the CLI on a copy of the sample plant: the general ring is refused
until the pilot ring's GO evidence exists and verifies; tampering with that evidence blocks
it again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import EXAMPLE, run_cli


def _plant(tmp_path: Path, production_db: Path) -> Path:
    """A copy of the sample plant with its own runs folder (and a copy of production)."""
    plant = tmp_path / "plant"
    plant.mkdir()
    for p in EXAMPLE.iterdir():
        if p.name == ".plantstage":
            continue
        if p.is_dir():
            shutil.copytree(p, plant / p.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(p, plant / p.name)
    (plant / ".plantstage").mkdir()
    shutil.copy2(production_db, plant / ".plantstage" / "production.sqlite")
    return plant


def _rings(plant: Path) -> dict[str, dict]:
    r = run_cli("rings", str(plant), "--release", "1.1.0", "--json")
    assert r.returncode == 0, r.stderr
    return {x["ring"]: x for x in json.loads(r.stdout)["rings"]}


def _refused(plant: Path, ring: str) -> str:
    r = run_cli("rehearse", str(plant), "--release", "1.1.0", "--ring", ring)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"may not enter ring '{ring}'" in lines[0], r.stderr
    return lines[0]


def test_general_waits_for_a_verified_pilot_go(tmp_path, production_db):
    plant = _plant(tmp_path, production_db)
    assert "no rehearsal of ring 'pilot'" in _refused(plant, "general")
    state = _rings(plant)
    assert state["pilot"]["state"] == "may-enter" and state["general"]["state"] == "blocked"

    r = run_cli("rehearse", str(plant), "--release", "1.1.0", "--ring", "pilot")
    assert r.returncode == 0, r.stdout + r.stderr
    (run,) = [p for p in (plant / ".plantstage" / "runs").iterdir() if p.is_dir()]
    ring = json.loads((run / "ring.json").read_text())
    assert ring["ring"] == "pilot"
    pilot = ["acme-discrete", "cobalt-multiplant", "delta-integrated"]
    assert ring["tenants"] == pilot
    ev = json.loads((run / "evidence.json").read_text())
    assert ev["verdict"] == "GO"
    # Scoped to the ring: its tenants' archetypes ran, the process tenant's did not; the
    # isolation probes asked as the ring's tenants and found nothing.
    assert ev["sections"]["isolation"]["tenants"] == pilot
    assert ev["signals"]["isolation.leaks"] == 0 and ev["signals"]["isolation.object_leaks"] == 0
    assert not any(k.startswith("workload.candidate.archetype.process.") for k in ev["signals"])
    assert any(k.startswith("workload.candidate.archetype.multi-plant.") for k in ev["signals"])

    state = _rings(plant)
    assert state["pilot"]["state"] == "entered"
    assert state["general"]["state"] == "may-enter"
    assert state["general"]["unlocked_by"] == str(run)

    # Edit the pilot's evidence after it was sealed: the general ring is blocked again.
    ev["signals"]["isolation.leaks"] = 0.0
    ev["verdict"] = "GO"
    ev["note"] = "edited"
    (run / "evidence.json").write_text(json.dumps(ev))
    state = _rings(plant)
    assert state["general"]["state"] == "blocked"
    assert "does not verify" in state["general"]["reason"]
    assert "evidence.json: edited after signing" in state["general"]["reason"]
    assert "edited after signing" in _refused(plant, "general")

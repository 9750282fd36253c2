"""A current release declared with ordered steps (before, upgrade, after) builds staging's
schema the same way the rehearsal migrates a release: at provisioning, in `plantstage refresh`
with ``schema: migrations``, and in parity's stand-in for a staging database not made yet.

The sample plant's current release gets a vendor-style ``before`` SQL step (it counts the
tables the migration makes: none yet) and an ``after`` one (they exist): each step's log shows
it ran, in order, on the database being built.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from tests.conftest import run_cli
from tests.integration.test_release_steps import _plant_copy, _write

COUNT = "SELECT COUNT(*) AS made FROM sqlite_master WHERE type = 'table' AND name = 'items';\n"


def _current_with_steps(tmp_path: Path) -> Path:
    spec_path, spec = _plant_copy(tmp_path)
    (tmp_path / "release-steps" / "count-items.sql").write_text(COUNT)
    cur = next(r for r in spec["releases"] if r["name"] == spec["current"])
    migrate = cur.pop("migrations")["upgrade"]
    cur["steps"] = {"before": [{"name": "vendor-pre", "sql": "release-steps/count-items.sql"}],
                    "upgrade": [{"name": "schema", "command": migrate, "timeout": 600}],
                    "after": [{"name": "vendor-post", "sql": "release-steps/count-items.sql"}]}
    _write(spec_path, spec)
    return spec_path


def _made(log: Path) -> str:
    """The count a step's SQL printed (the line after the column header)."""
    lines = log.read_text().splitlines()
    return lines[lines.index("   made") + 1].strip()


@pytest.mark.slow
def test_provisioning_runs_the_current_releases_ordered_steps(tmp_path, production_db):
    spec_path = _current_with_steps(tmp_path / "plant")
    out = tmp_path / "run"
    r = run_cli("rehearse", str(spec_path), "--release", "1.1.0", "--out", str(out))
    ev = json.loads((out / "evidence.json").read_text())
    prov = next(s for s in ev["steps"] if s["name"] == "provision")
    assert prov["status"] == "passed", prov
    assert [(s["phase"], s["name"]) for s in prov["results"]["schema_steps"]] == [
        ("before", "vendor-pre"), ("upgrade", "schema"), ("after", "vendor-post")]
    logs = out / "logs"
    assert _made(logs / "schema-before-vendor-pre.log") == "0"
    assert _made(logs / "schema-after-vendor-post.log") == "1"
    # Parity's stand-in for staging was built by the same steps.
    assert _made(out / "parity" / "staging" / "schema-after-vendor-post.log") == "1"
    # The rest of the run went through; the short workload of _plant_copy may leave a paired
    # latency gate without enough samples (INCONCLUSIVE), never NO-GO.
    assert r.returncode in (0, 5), r.stdout[-3000:] + r.stderr[-2000:]
    assert all(s["status"] == "passed" for s in ev["steps"]), ev["reasons"]


def test_refresh_schema_migrations_runs_the_ordered_steps(tmp_path, production_db):
    spec_path = _current_with_steps(tmp_path / "plant")
    target = tmp_path / "staging.sqlite"
    logs = tmp_path / "plant" / ".plantstage" / "refresh" / "logs"
    before = {p.name: p.stat().st_mtime for p in logs.glob("refresh-schema-*.log")} \
        if logs.is_dir() else {}
    r = run_cli("refresh", str(spec_path), "--to", f"sqlite:///{target}",
                env={"PLANTSTAGE_MASKING_KEY": "test-key-0123456789abcdef-0123456789"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    pre, post = logs / "refresh-schema-before-vendor-pre.log", \
        logs / "refresh-schema-after-vendor-post.log"
    assert pre.stat().st_mtime != before.get(pre.name) and _made(pre) == "0"
    assert _made(post) == "1"
    eng = sa.create_engine(f"sqlite:///{target}")
    with eng.connect() as c:
        assert c.execute(sa.text("SELECT COUNT(*) FROM items")).scalar() > 0
    eng.dispose()


def test_a_failing_before_step_stops_the_refresh_naming_the_step(tmp_path, production_db):
    spec_path = _current_with_steps(tmp_path / "plant")
    spec = yaml.safe_load(spec_path.read_text())
    cur = next(x for x in spec["releases"] if x["name"] == spec["current"])
    fail = ["sh", "-c", "echo 'ERROR: wrong edition' >&2; exit 3"]
    cur["steps"]["before"] = [{"name": "vendor-pre", "command": fail}]
    _write(spec_path, spec)
    r = run_cli("refresh", str(spec_path), "--to", f"sqlite:///{tmp_path / 's.sqlite'}",
                env={"PLANTSTAGE_MASKING_KEY": "test-key-0123456789abcdef-0123456789"})
    assert r.returncode == 2, r.stdout + r.stderr
    assert "releases.1.0.0.steps.before[0]: release 1.0.0's before step 'vendor-pre' failed " \
           "(exit 3): ERROR: wrong edition" in " ".join((r.stdout + r.stderr).split())

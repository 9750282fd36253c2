"""Whole rehearsals of the sample plant, run through the CLI as a user would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plantstage.evidence.ledger import read_run
from tests.conftest import EXAMPLE, PG_URL, ROOT, requires_postgres, run_cli, sample_plant_copy

pytestmark = pytest.mark.slow


def _evidence(out: Path) -> dict:
    return json.loads((out / "evidence.json").read_text())


def _children_alive(run_dir: Path) -> list[str]:
    """Processes still running whose command line points into this run (app versions)."""
    alive = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            env = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if "sampleplant" in cmd and str(run_dir).encode() in env:
            alive.append(pid)
    return alive


def test_demo_is_go(recorded_run):
    # `recorded_run` is the session's one `plantstage demo --out DIR` (it asserts exit 0).
    out = recorded_run
    ev = _evidence(out)
    assert ev["verdict"] == "GO"
    assert [s["status"] for s in ev["steps"]] == ["passed"] * len(ev["steps"])
    assert all(g["outcome"] == "pass" for g in ev["gates"])
    assert ev["signals"]["workload.candidate.production-confirmation.redelivered"] > 0
    html = (out / "report.html").read_text()
    assert 'id="verdict">GO' in html
    # Self-contained: nothing is loaded from elsewhere.
    assert "<script" not in html and "<link" not in html and 'src="' not in html
    assert read_run(out / "ledger.sqlite")["run"]["status"] == "completed"
    assert not _children_alive(out)


def test_demo_phases_old_paired_new(recorded_run):
    """Baseline on the old version, paired (old on the new schema + new, alternating blocks),
    switch (old stopped), candidate on the new version alone; each with its own signals."""
    from plantstage.signals import SignalStore

    ev = _evidence(recorded_run)
    names = [s["name"] for s in ev["steps"]]
    order = ["baseline-load", "backup", "migrate", "deploy", "paired-load", "switch", "smoke",
             "candidate-load", "rollback-drill"]
    assert [n for n in names if n in order] == order
    steps = {s["name"]: s["results"] for s in ev["steps"]}
    assert steps["deploy"]["old_still_running"] is True
    assert steps["switch"]["old_stopped"] is True
    assert steps["switch"]["through_router"] == "HTTP 200, version 1.1.0"
    paired = steps["paired-load"]
    n = len(paired["blocks"])  # whole pairs of blocks, one of each version per pair
    assert n >= 2 and n % 2 == 0 and paired["blocks"].count("o") == n // 2
    sig = ev["signals"]
    for version in ("old", "new"):
        assert sig[f"workload.paired.{version}.iterations"] > 0
        assert sig[f"workload.paired.{version}.error_rate"] == 0
        assert f"workload.paired.{version}.sales-order-import.p50_ms" in sig
        assert f"twins.wms.paired.{version}.movements" in sig
    assert sig["workload.paired.iterations"] == (sig["workload.paired.old.iterations"]
                                                 + sig["workload.paired.new.iterations"])
    for phase in ("baseline", "paired", "candidate"):  # twin counters per phase
        assert sig[f"twins.wms.{phase}.movements"] > 0
        assert f"twins.mes-line.{phase}.messages" in sig
    # The raw samples the judge reads, each in a block of its own version.
    store = SignalStore.open(recorded_run / "signals.sqlite")
    for version in ("old", "new"):
        rows = store.samples("paired", "sales-order-import", version)
        assert rows and all(paired["blocks"][r[0]] == version[0] for r in rows)
        assert {r[4] for r in rows} <= {"acme-discrete", "bluechem-process",
                                        "cobalt-multiplant", "delta-integrated"}
    assert store.samples("baseline", "sales-order-import", "old")
    assert store.samples("candidate", "sales-order-import", "new")
    # The twins' fault log knows when each load phase ran.
    phases = [p["phase"] for p in ev["sections"]["twins"]["phases"]]
    assert phases == ["baseline", "paired", "candidate"]
    gates = {g["name"]: g["outcome"] for g in ev["gates"]}
    assert gates["old-version-on-new-schema"] == "pass"


def _renaming_release(root: Path) -> str:
    """A release whose migration renames a column the old version still reads and writes
    (work_orders.qty_done → completed_qty): the new version maps it, the old one breaks."""
    import shutil

    from plantstage.artifacts import digest

    rel = root / "releases" / "1.1.0-breaks-n-minus-1"
    shutil.copytree(root / "releases" / "1.1.0", rel,
                    ignore=shutil.ignore_patterns("__pycache__"))
    models = rel / "sampleplant" / "models.py"
    text = models.read_text()
    assert "    qty_done: Mapped[int] = mapped_column(default=0)\n" in text
    models.write_text(text.replace(
        "    qty_done: Mapped[int] = mapped_column(default=0)\n",
        '    qty_done: Mapped[int] = mapped_column("completed_qty", default=0)\n'))
    (rel / "sampleplant" / "migrations" / "versions" / "0003_rename.py").write_text(
        '"""Rename work_orders.qty_done (not backward compatible)."""\n\n'
        "from alembic import op\n\n"
        'revision = "0003"\ndown_revision = "0002"\nbranch_labels = None\n'
        "depends_on = None\n\n\n"
        # A native rename (SQLite ≥ 3.25, PostgreSQL): no table copy under foreign keys.
        "def upgrade() -> None:\n"
        '    op.execute("ALTER TABLE work_orders RENAME COLUMN qty_done TO completed_qty")\n\n\n'
        "def downgrade() -> None:\n"
        '    op.execute("ALTER TABLE work_orders RENAME COLUMN completed_qty TO qty_done")\n')
    return digest(rel)


def test_a_column_rename_the_old_version_uses_is_no_go_in_the_paired_phase(tmp_path,
                                                                           production_db):
    import yaml

    spec_path = _example_copy(tmp_path)
    sha = _renaming_release(tmp_path)
    data = yaml.safe_load((EXAMPLE / "plantstage.yaml").read_text())
    data["releases"].append({
        "name": "1.1.0-breaks-n-minus-1", "version": "1.1.0",
        "description": "Defective — renames a column the old version still uses",
        "artifact": {"path": "releases/1.1.0-breaks-n-minus-1", "sha256": sha},
        "migrations": {"upgrade": ["{python}", "-m", "sampleplant", "migrate", "upgrade",
                                   "head"],
                       "downgrade": ["{python}", "-m", "sampleplant", "migrate", "downgrade",
                                     "0001"],
                       "reversible": True}})
    # The smoke check reads the migration head; this release's head is 0003.
    for check in data.get("smoke", []):
        if check.get("expect", {}).get("value") == "0002":
            check["expect"]["value"] = "0003"
    spec_path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "run"
    r = run_cli("rehearse", str(tmp_path), "--release", "1.1.0-breaks-n-minus-1",
                "--out", str(out))
    assert r.returncode == 1, r.stdout + r.stderr
    ev = _evidence(out)
    failing = {g["name"]: g for g in ev["gates"] if g["outcome"] == "fail"}
    assert "old-version-on-new-schema" in failing, ev["gates"]
    assert "the old version breaks on the new schema" in r.stdout
    sig = ev["signals"]
    assert sig["workload.paired.old.error_rate"] > 0.01
    assert sig["workload.paired.old.errors.http_500"] > 0
    # The new version copes over HTTP. (MQTT confirmations published during its blocks may
    # still meet the old consumer: both versions' consumers share the stream until the switch.)
    assert sig.get("workload.paired.new.errors.http_500", 0) == 0
    assert not _children_alive(out)


@pytest.mark.parametrize("release,gate,words", [
    ("1.1.0-dup-confirmations", "confirmations-posted-once", "duplicate postings"),
    ("1.1.0-slow-import", "import-latency", "import latency regressed"),
])
def test_defective_release_is_no_go(tmp_path, production_db, release, gate, words):
    out = tmp_path / release
    r = run_cli("rehearse", str(EXAMPLE), "--release", release, "--out", str(out))
    assert r.returncode == 1, r.stdout + r.stderr
    ev = _evidence(out)
    assert ev["verdict"] == "NO-GO"
    failing = {g["name"]: g for g in ev["gates"] if g["outcome"] == "fail"}
    assert gate in failing, ev["gates"]
    assert words in failing[gate]["cause"]
    assert words in r.stdout
    assert not _children_alive(out)


@requires_postgres
def test_rehearsal_on_postgresql(tmp_path, production_db):
    out = tmp_path / "pg"
    r = run_cli("rehearse", str(EXAMPLE), "--release", "1.1.0", "--out", str(out),
                "--staging-db", PG_URL)
    assert r.returncode == 0, r.stdout + r.stderr
    ev = _evidence(out)
    assert ev["verdict"] == "GO"
    prov = next(s for s in ev["steps"] if s["name"] == "provision")
    assert prov["results"]["staging"].startswith("postgresql")
    assert prov["results"]["rows_copied"] > 40000


def test_sigterm_midway_leaves_nothing_running(tmp_path, production_db):
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "plantstage", "rehearse", str(EXAMPLE),
                             "--release", "1.1.0", "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    # Wait until the baseline workload is running, i.e. an app process is up.
    while time.time() < deadline:
        if (out / "ledger.sqlite").exists():
            steps = read_run(out / "ledger.sqlite")["steps"]
            if any(s["name"] == "baseline-load" and s["status"] == "running" for s in steps):
                break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the rehearsal never reached the baseline workload")
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    assert proc.returncode == 130
    run = read_run(out / "ledger.sqlite")
    assert run["run"]["status"] == "interrupted"
    assert any(s["status"] == "interrupted" for s in run["steps"])
    assert _evidence(out)["verdict"] == "NO-GO"
    time.sleep(0.5)
    assert not _children_alive(out)


def test_wrong_artifact_digest_exit_2(tmp_path, production_db):
    spec = _example_copy(tmp_path)
    text = (EXAMPLE / "plantstage.yaml").read_text()
    import yaml

    data = yaml.safe_load(text)
    good = next(r for r in data["releases"] if r["name"] == "1.1.0")["artifact"]["sha256"]
    spec.write_text(text.replace(good, "f" * 64))
    r = run_cli("rehearse", str(spec), "--release", "1.1.0", "--out", str(tmp_path / "o"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "digest mismatch" in r.stderr and "Traceback" not in r.stderr


def test_unreachable_staging_database_exit_2(tmp_path, production_db):
    r = run_cli("rehearse", str(EXAMPLE), "--release", "1.1.0", "--out", str(tmp_path / "o"),
                "--staging-db", "postgresql://root@127.0.0.1:1/none")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "staging database" in r.stderr and "Traceback" not in r.stderr


def _example_copy(tmp_path: Path) -> Path:
    """A folder that looks like the sample plant, for a changed spec (tests/conftest.py)."""
    return sample_plant_copy(tmp_path)


def _spec_copy(tmp_path: Path, production_db: Path, replace: tuple[str, str]) -> Path:
    """The sample plant's spec with one change, in a copy of its folder (production_db: the
    fixture makes sure the production database the copy links to exists)."""
    spec = _example_copy(tmp_path)
    text = (EXAMPLE / "plantstage.yaml").read_text()
    assert replace[0] in text
    spec.write_text(text.replace(*replace))
    return spec


def test_app_failing_health_exit_2_nothing_left(tmp_path, production_db):
    spec = _spec_copy(tmp_path, production_db,
                      ('"-m", "sampleplant", "serve"', '"-m", "sampleplant", "no-such-verb"'))
    out = tmp_path / "o"
    r = run_cli("rehearse", str(spec), "--release", "1.1.0", "--out", str(out))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "health" in r.stderr or "exited" in r.stderr
    assert "Traceback" not in r.stderr
    assert not _children_alive(out)


def test_port_in_use_exit_2(tmp_path, production_db):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        spec = _spec_copy(tmp_path, production_db,
                          ("        startup_timeout: 30\n", f"        startup_timeout: 30\n"
                                                             f"        port: {port}\n"))
        r = run_cli("rehearse", str(spec), "--release", "1.1.0", "--out", str(tmp_path / "o"))
    finally:
        s.close()
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"port {port} is already in use" in r.stderr

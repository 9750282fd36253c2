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

from plantstage.rehearsal.ledger import read_run
from tests.conftest import EXAMPLE, PG_URL, ROOT, requires_postgres, run_cli

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


@pytest.mark.parametrize("release,gate,words", [
    ("1.1.0-dup-confirmations", "confirmations-posted-once", "duplicate postings"),
    ("1.1.0-irreversible", "rollback-keeps-data", "data lost on downgrade"),
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
    spec = tmp_path / "plantstage.yaml"
    text = (EXAMPLE / "plantstage.yaml").read_text()
    import yaml

    data = yaml.safe_load(text)
    good = next(r for r in data["releases"] if r["name"] == "1.1.0")["artifact"]["sha256"]
    text = text.replace(good, "f" * 64).replace("path: releases/", f"path: {EXAMPLE}/releases/")
    text = text.replace("sqlite:///.plantstage/production.sqlite", f"sqlite:///{production_db}")
    spec.write_text(text)
    r = run_cli("rehearse", str(spec), "--release", "1.1.0", "--out", str(tmp_path / "o"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "digest mismatch" in r.stderr and "Traceback" not in r.stderr


def test_unreachable_staging_database_exit_2(tmp_path, production_db):
    r = run_cli("rehearse", str(EXAMPLE), "--release", "1.1.0", "--out", str(tmp_path / "o"),
                "--staging-db", "postgresql://root@127.0.0.1:1/none")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "staging database" in r.stderr and "Traceback" not in r.stderr


def _spec_copy(tmp_path: Path, production_db: Path, replace: tuple[str, str]) -> Path:
    text = (EXAMPLE / "plantstage.yaml").read_text()
    text = text.replace("path: releases/", f"path: {EXAMPLE}/releases/")
    text = text.replace("sqlite:///.plantstage/production.sqlite", f"sqlite:///{production_db}")
    assert replace[0] in text
    text = text.replace(*replace)
    spec = tmp_path / "plantstage.yaml"
    spec.write_text(text)
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
                          ("        health: /health\n", f"        health: /health\n"
                                                        f"        port: {port}\n"))
        r = run_cli("rehearse", str(spec), "--release", "1.1.0", "--out", str(tmp_path / "o"))
    finally:
        s.close()
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"port {port} is already in use" in r.stderr

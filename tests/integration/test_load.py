"""`plantstage load` and `plantstage signals` as a user runs them, against the real sample plant."""

import os
import shutil
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import EXAMPLE, requires_mosquitto, run_cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def plant(production_db, tmp_path_factory):
    """The sample plant 1.1.0 as a real process on a copy of the production database."""
    db = tmp_path_factory.mktemp("plant") / "plant.sqlite"
    shutil.copy(production_db, db)
    url = f"sqlite:///{db}"
    cwd = EXAMPLE / "releases" / "1.1.0"
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run([sys.executable, "-m", "sampleplant", "migrate", "upgrade", "head"],
                   cwd=cwd, env=env, check=True, capture_output=True)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sampleplant", "serve", "--host",
                             "127.0.0.1", "--port", str(port)], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                if httpx.get(base + "/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base, url
    finally:
        proc.terminate()
        proc.wait(10)


def test_load_drives_every_archetype_and_exports_signals(plant, tmp_path):
    base, db_url = plant
    out = tmp_path / "run"
    # The MQTT flow needs the rehearsal's MES twin; here only the tenants without it run.
    r = run_cli("load", str(EXAMPLE), "--target", base, "--duration", "2",
                "--tenant", "bluechem-process", "--tenant", "cobalt-multiplant",
                "--database-url", db_url, "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "p95 ms" in r.stdout
    csv = (out / "signals.csv").read_text()
    assert "value,workload.load.archetype.process.iterations," in csv
    assert "value,workload.load.archetype.multi-plant.iterations," in csv
    assert "series,workload.load.inventory-adjustment.throughput," in csv
    assert "value,workload.load.purchase-to-receipt.e2e_p95_ms," in csv
    assert (out / "signals.om.txt").read_text().rstrip().endswith("# EOF")
    r = run_cli("signals", str(out), "--format", "csv")
    assert r.returncode == 0 and r.stdout == csv
    r = run_cli("signals", str(out), "--format", "openmetrics")
    assert 'plantstage_signal{signal="workload.load.errors"} 0.0' in r.stdout


@requires_mosquitto
def test_load_counts_errors_by_kind_and_exits_1(plant, tmp_path):
    base, _ = plant
    # Without the MES twin the MQTT flow fails: counted by kind, the run still ends.
    r = run_cli("load", str(EXAMPLE), "--target", base, "--duration", "1",
                "--tenant", "delta-integrated")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "no_twin_mes-line" in r.stdout


def test_refusing_target_is_one_line_and_exit_2():
    r = run_cli("load", str(EXAMPLE), "--target", "http://127.0.0.1:1", "--duration", "1")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1, r.stderr
    assert "does not accept connections" in r.stderr and "Traceback" not in r.stderr


def test_check_rejects_an_unknown_archetype(tmp_path):
    spec = (EXAMPLE / "plantstage.yaml").read_text().replace(
        "archetype: process}", "archetype: continuous}")
    (tmp_path / "plantstage.yaml").write_text(spec)
    r = run_cli("check", str(tmp_path))
    assert r.returncode == 2
    # Even with the plugins left behind (every problem is listed, each with its line):
    assert "plugins[0]: no plugin module 'sampleplant_plugin'" in r.stderr
    assert "unknown archetype 'continuous'" in r.stderr and "estate.tenants[1]" in r.stderr

"""A run killed with SIGKILL is marked `interrupted` when the next rehearsal starts."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys

import pytest

from tests.conftest import EXAMPLE, run_cli

pytestmark = pytest.mark.slow


def test_next_rehearsal_marks_a_killed_run_interrupted(tmp_path, production_db):
    project = tmp_path / "project"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".plantstage"))
    (project / ".plantstage").mkdir()
    shutil.copy(production_db, project / ".plantstage" / production_db.name)
    spec = project / "plantstage.yaml"
    text = spec.read_text()
    # The rehearsal stops at its first step (an artifact that does not match): fast, no load.
    digests = re.findall(r"sha256: ([0-9a-f]{64})", text)
    spec.write_text(text.replace(digests[1], "a" * 64))
    killed = project / ".plantstage" / "runs" / "killed"
    killed.mkdir(parents=True)
    code = ("import os, signal, pathlib\n"
            "from plantstage.evidence.ledger import Ledger\n"
            f"led = Ledger(pathlib.Path({str(killed / 'ledger.sqlite')!r}), 'killed-run')\n"
            "led.start_run('s', 'r'); led.step_started(0, 'provision')\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    assert subprocess.run([sys.executable, "-c", code]).returncode == -signal.SIGKILL
    r = run_cli("gate", str(killed))
    assert r.returncode == 2 and "interrupted and never finished" in r.stderr  # before a sweep
    keys = tmp_path / "keys"
    r = run_cli("rehearse", str(project), env={"PLANTSTAGE_KEY_DIR": str(keys)})
    out = r.stdout + r.stderr
    assert "Marked run killed-run interrupted" in out, out
    assert "made an Ed25519 evidence signing key" in out  # the first rehearsal makes one
    assert (keys / "signing-key.pem").is_file()
    marker = json.loads((killed / "interrupted.json").read_text())
    assert marker["status"] == "interrupted" and marker["finished"] is False
    assert marker["last_step"] == "provision"
    from plantstage.evidence.ledger import read_run

    assert read_run(killed / "ledger.sqlite")["run"]["status"] == "interrupted"
    r = run_cli("verify", str(killed))
    assert r.returncode == 1 and "interrupted and never finished" in r.stderr
    # A second start finds nothing more to mark.
    r = run_cli("rehearse", str(project), env={"PLANTSTAGE_KEY_DIR": str(keys)})
    assert "Marked run" not in r.stdout + r.stderr

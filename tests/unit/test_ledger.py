import os
import subprocess
import sys

from plantstage.rehearsal.ledger import Ledger, read_run


def test_steps_are_recorded_as_they_happen(tmp_path):
    led = Ledger(tmp_path / "ledger.sqlite", "r1")
    led.start_run("spec.yaml", "1.1.0")
    led.step_planned(0, "provision")
    led.step_started(0, "provision")
    run = read_run(tmp_path / "ledger.sqlite")
    assert run["steps"][0]["status"] == "running"
    led.step_ended(0, "passed", 1.5, {"rows": 3})
    led.end_run("completed", "GO")
    run = read_run(tmp_path / "ledger.sqlite")
    assert run["run"]["verdict"] == "GO" and run["steps"][0]["status"] == "passed"


def test_a_killed_run_reads_as_interrupted(tmp_path):
    code = (
        "from plantstage.rehearsal.ledger import Ledger\n"
        f"led = Ledger(__import__('pathlib').Path({str(tmp_path / 'l.sqlite')!r}), 'r2')\n"
        "led.start_run('s', 'r')\n"
        "led.step_started(0, 'migrate')\n"
        "import os; os._exit(9)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=False, env=dict(os.environ))
    run = read_run(tmp_path / "l.sqlite")
    assert run["run"]["status"] == "interrupted"

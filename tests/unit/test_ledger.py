import os
import subprocess
import sys

from plantstage.evidence.ledger import Ledger, read_run


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
        "from plantstage.evidence.ledger import Ledger\n"
        f"led = Ledger(__import__('pathlib').Path({str(tmp_path / 'l.sqlite')!r}), 'r2')\n"
        "led.start_run('s', 'r')\n"
        "led.step_started(0, 'migrate')\n"
        "import os; os._exit(9)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=False, env=dict(os.environ))
    run = read_run(tmp_path / "l.sqlite")
    assert run["run"]["status"] == "interrupted"


def _killed_run(folder, run_id="r3", step="migrate"):
    """A real run killed with SIGKILL mid-step: its ledger says `running`."""
    import signal

    folder.mkdir(parents=True)
    code = (
        "import os, signal, pathlib\n"
        "from plantstage.evidence.ledger import Ledger\n"
        f"led = Ledger(pathlib.Path({str(folder / 'ledger.sqlite')!r}), {run_id!r})\n"
        "led.start_run('s', 'r')\n"
        "led.step_planned(0, 'provision'); led.step_planned(1, 'migrate')\n"
        "led.step_planned(2, 'load')\n"
        "led.step_started(0, 'provision'); led.step_ended(0, 'passed', 0.1, {})\n"
        f"led.step_started(1, {step!r})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], check=False, env=dict(os.environ))
    assert p.returncode == -signal.SIGKILL
    return folder


def test_the_ledger_records_who_runs_it(tmp_path):
    from plantstage.evidence.ledger import process_identity, process_state

    led = Ledger(tmp_path / "ledger.sqlite", "r1")
    led.start_run("spec.yaml", "1.1.0")
    run = read_run(tmp_path / "ledger.sqlite")["run"]
    me = process_identity()
    assert (run["pid"], run["host"], run["boot_id"], run["proc_start"]) == (
        me["pid"], me["host"], me["boot_id"], me["proc_start"])
    assert run["status"] == "running" and process_state(run) == "alive"
    # The same pid with another start time is another process (pid reuse): gone.
    assert process_state({**run, "proc_start": "1"}) == "gone"
    assert process_state({**run, "boot_id": "another-boot"}) == "gone"
    assert process_state({**run, "host": "elsewhere.example"}) == "unknown"


def test_sweep_marks_a_killed_run_interrupted_and_leaves_others(tmp_path):
    import json

    from plantstage.evidence.ledger import MARKER, interrupted_note, sweep_stale_runs

    runs = tmp_path / "runs"
    killed = _killed_run(runs / "killed")
    live = runs / "live"
    led = Ledger(live / "ledger.sqlite", "live")  # this process: still running
    led.start_run("s", "r")
    done = runs / "done"
    led2 = Ledger(done / "ledger.sqlite", "done")
    led2.start_run("s", "r")
    led2.end_run("completed", "GO")
    led2.close()
    (runs / "not-a-run").mkdir()
    lines: list[str] = []
    assert sweep_stale_runs(runs, echo=lines.append) == [killed]
    assert len(lines) == 1 and "r3" in lines[0] and "interrupted" in lines[0]
    r = read_run(killed / "ledger.sqlite")
    assert r["run"]["status"] == "interrupted" and r["run"]["ended_at"] is not None
    assert r["run"]["verdict"] == "NO-GO"
    assert [s["status"] for s in r["steps"]] == ["passed", "interrupted", "not-run"]
    marker = json.loads((killed / MARKER).read_text())
    assert marker["finished"] is False and marker["last_step"] == "migrate"
    assert "never" in marker["note"]
    assert not (killed / "ledger.sqlite-wal").exists()  # folded back in
    note = interrupted_note(killed)
    assert note and "interrupted and never finished" in note and "migrate" in note
    assert interrupted_note(live) is None and interrupted_note(done) is None
    assert read_run(live / "ledger.sqlite")["run"]["status"] == "running"
    assert not (live / MARKER).exists() and not (done / MARKER).exists()
    assert sweep_stale_runs(runs) == []  # once is enough
    assert sweep_stale_runs(tmp_path / "no-such-folder") == []


def test_a_killed_run_is_named_by_gate_and_verify_before_any_sweep(tmp_path):
    import pytest

    from plantstage.evidence import verbs

    killed = _killed_run(tmp_path / "run")
    with pytest.raises(verbs.InterruptedRunError) as exc:
        verbs.gate(killed)
    assert "interrupted and never finished" in exc.value.one_line()
    assert "migrate" in exc.value.one_line()
    v = verbs.verify(killed)
    assert not v.ok and "interrupted and never finished" in v.problems[0]
    assert "never sealed" in v.problems[0]

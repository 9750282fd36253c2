"""Business transaction monitors as a user meets them: in a rehearsal's evidence per phase, live
in `plantstage load` and on its Prometheus endpoint (a real scrape), and a bad query as one line
naming its place — against the real sample plant."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import httpx

from tests.conftest import EXAMPLE, ROOT, run_cli, sample_plant_copy
from tests.integration.test_load import plant  # noqa: F401 - the sample plant as a process

MONITORS = ("confirmation-to-stock-lag", "posting-failures", "work-order-backlog-age")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_rehearsal_records_every_monitor_in_every_phase(recorded_run):
    ev = json.loads((recorded_run / "evidence.json").read_text())
    s = ev["signals"]
    for phase in ("baseline", "paired", "candidate"):
        for name in MONITORS:
            p = f"monitor.{phase}.{name}"
            assert s[f"{p}.samples"] >= 1, p
            assert s[f"{p}.errors"] == 0, p
            assert {f"{p}.last", f"{p}.max", f"{p}.min", f"{p}.mean"} <= s.keys(), p
        # Per tenant, for the query with :tenant (posting failures).
        assert f"monitor.{phase}.posting-failures.tenant.acme-discrete.max" in s
    assert s["monitor.candidate.posting-failures.max"] == 0
    gates = {g["name"]: g for g in ev["gates"]}
    for name in ("no-posting-failures-live", "work-order-backlog-age",
                 "confirmation-to-stock-lag"):
        assert gates[name]["outcome"] == "pass", gates[name]
    load = next(st for st in ev["steps"] if st["name"] == "candidate-load")
    assert load["results"]["monitors"]["work-order-backlog-age"]["unit"] == "s"


def test_load_shows_monitors_live_and_serves_them_as_gauges(plant, tmp_path):  # noqa: F811
    base, db_url = plant
    out = tmp_path / "run"
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "plantstage", "load", str(EXAMPLE), "--target", base,
         "--duration", "4", "--tenant", "bluechem-process", "--tenant", "cobalt-multiplant",
         "--database-url", db_url, "--out", str(out), "--metrics-port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "COLUMNS": "200"})
    scraped = ""
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.HTTPError:
                text = ""
            if 'tenant="cobalt-multiplant"' in text and \
                    'plantstage_monitor{monitor="work-order-backlog-age"' in text:
                scraped = text
                break
            time.sleep(0.2)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stdout + stderr
    assert ('plantstage_monitor{monitor="posting-failures",phase="load",tenant="",'
            'unit="count"} 0.0') in scraped
    assert 'plantstage_monitor{monitor="work-order-backlog-age",phase="load",tenant="",' \
        'unit="s"}' in scraped
    assert "monitors" in stdout and "work-order-backlog-age" in stdout  # the live table
    csv = (out / "signals.csv").read_text()
    for name in MONITORS:
        assert f"value,monitor.load.{name}.samples," in csv
    assert "value,monitor.load.posting-failures.tenant.bluechem-process.max,,0.0" in csv
    assert "series,monitor.load.work-order-backlog-age," in csv


def test_a_failing_monitor_query_is_one_line_naming_its_place(plant, tmp_path):  # noqa: F811
    base, db_url = plant
    spec = sample_plant_copy(tmp_path / "copy")
    text = (EXAMPLE / "plantstage.yaml").read_text()
    assert text.count("q.message_id = p.message_id") == 1
    spec.write_text(text.replace("q.message_id = p.message_id", "q.msg_id = p.message_id"))
    line = next(i for i, ln in enumerate(spec.read_text().splitlines(), 1)
                if "- name: posting-failures" in ln) + 5  # its query: (after a comment)
    r = run_cli("load", str(spec.parent), "--target", base, "--duration", "1",
                "--tenant", "bluechem-process", "--database-url", db_url)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert "monitor 'posting-failures': its query failed on staging" in r.stderr
    assert "msg_id" in r.stderr
    where = r.stderr.split(": monitor")[0]
    assert where.endswith(f"plantstage.yaml:{line}"), r.stderr


def test_a_rehearsal_whose_monitor_does_not_fit_the_app_could_not_run(tmp_path, production_db):
    """The queries are tried on the current version before the baseline: a typo there is the
    spec's, not the release's — exit 2 (could not run), never NO-GO."""
    spec = sample_plant_copy(tmp_path / "copy")
    text = (EXAMPLE / "plantstage.yaml").read_text()
    spec.write_text(text.replace("q.message_id = p.message_id", "q.msg_id = p.message_id"))
    r = run_cli("rehearse", str(spec.parent), "--release", "1.1.0",
                "--out", str(tmp_path / "run"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "monitor 'posting-failures': its query failed on staging" in r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    ev = json.loads((tmp_path / "run" / "evidence.json").read_text())
    assert ev["status"] == "could-not-run" and ev["verdict"] != "GO"

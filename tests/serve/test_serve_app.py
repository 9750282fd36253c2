"""`plantstage serve` pages over real sample-plant rehearsals, through Starlette's TestClient;
the trust model of signing off; one-line errors of the verb."""

from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from plantstage.serve.app import PAGE_CSP, REPORT_CSP, ServeConfig, _fmt_value, create_app
from tests.conftest import run_cli
from tests.serve.conftest import verdicts


def client(root: Path, **kw) -> TestClient:
    return TestClient(create_app(ServeConfig(root=root, **kw)), client=("127.0.0.1", 50000))


def evidence(run: Path) -> dict:
    return json.loads((run / "evidence.json").read_text())


# --- bad input: one line, exit 2 (no rehearsal needed) ------------------------------------

def test_no_runs_is_one_line_exit_2(tmp_path):
    r = run_cli("serve", str(tmp_path), "--port", "1")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no runs found" in lines[0] and "hint:" in lines[0], r.stderr


def test_bad_port_and_proxy_are_refused(tmp_path):
    r = run_cli("serve", str(tmp_path), "--port", "70000")
    assert r.returncode == 2 and "--port" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("serve", str(tmp_path), "--identity-header", "X-User", "--trusted-proxy", "proxy")
    assert r.returncode == 2 and "not an IP address" in r.stderr


# --- the pages over five real rehearsals -------------------------------------------------


@pytest.mark.slow
def test_port_in_use_is_one_line_exit_2(served_runs):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_cli("serve", str(served_runs), "--port", str(port))
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


@pytest.mark.slow
def test_runs_listed_newest_first_with_verdicts(served_runs):
    c = client(served_runs)
    r = c.get("/")
    assert r.status_code == 200
    assert r.headers["content-security-policy"] == PAGE_CSP
    html = r.text
    rows = re.findall(r'<tr class="run" data-run="([^"]+)" data-verdict="([^"]+)"', html)
    shown = verdicts(served_runs)
    assert dict(rows) == shown and len(rows) == 5
    assert "NO-GO" in shown.values()
    assert 'data-spec="sample-plant"' in html
    # newest first within a release
    started = {k: evidence(served_runs / k)["started_at"] for k in shown}
    go_rows = [k for k, _ in rows if evidence(served_runs / k)["release"]["name"] == "1.1.0"]
    assert go_rows == sorted(go_rows, key=started.get, reverse=True)
    # no external asset anywhere
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "<script" not in html


@pytest.mark.slow
def test_run_page_and_report_as_is(served_runs):
    c = client(served_runs)
    r = c.get("/runs/run-3")
    ev = evidence(served_runs / "run-3")
    assert r.status_code == 200 and ev["verdict"] in r.text
    for g in ev["gates"]:
        assert g["name"] in r.text
    assert 'href="/runs/run-3/report"' in r.text
    rep = c.get("/runs/run-3/report")
    assert rep.status_code == 200
    assert rep.content == (served_runs / "run-3" / "report.html").read_bytes()
    assert rep.headers["content-security-policy"] == REPORT_CSP
    assert c.get("/runs/nope").status_code == 404
    assert c.get("/runs/..%2f..%2fetc/report").status_code == 404


@pytest.mark.slow
def test_trend_over_five_runs_marks_last_go(served_runs):
    c = client(served_runs)
    signal = "workload.candidate.sales-order-import.p95_ms"
    r = c.get("/trends", params={"spec": "sample-plant", "signal": signal})
    assert r.status_code == 200
    svg = re.search(r'<svg class="trend".*?</svg>', r.text, re.S).group(0)
    assert 'data-points="5"' in svg
    assert ">ms</text>" in svg  # the axis names the unit
    assert "last GO</text>" in svg  # the legend says what the ring means
    runs = sorted(served_runs.iterdir(), key=lambda p: evidence(p)["started_at"])
    gos = [p.name for p in runs if evidence(p)["verdict"] == "GO"]
    if gos:
        assert re.search(rf'id="last-go"[^>]*data-run="{gos[-1]}"', svg)
    else:  # a loaded machine can leave every good run INCONCLUSIVE: then nothing is ringed
        assert 'id="last-go"' not in svg and "No GO run among these" in r.text
    # the values shown are the runs' own
    for p in runs:
        v = evidence(p)["signals"][signal]
        assert f'data-run="{p.name}"' in svg
        assert f'<td class="num">{_fmt_value(v)}</td>' in r.text
    # featured signals offered; an unknown signal is said so, not drawn
    assert '<optgroup label="latency p95">' in r.text
    r = c.get("/trends", params={"signal": "no.such.signal"})
    assert r.status_code == 200 and "recorded the signal" in r.text and "<svg" not in r.text


@pytest.mark.slow
def test_compare_two_runs(served_runs):
    c = client(served_runs)
    no_go = next(p.name for p in served_runs.iterdir() if evidence(p)["verdict"] == "NO-GO")
    r = c.get("/compare", params={"a": "run-1", "b": no_go, "q": "sales-order-import.p95_ms"})
    assert r.status_code == 200
    a, b = evidence(served_runs / "run-1"), evidence(served_runs / no_go)
    assert 'id="side-a"' in r.text and 'id="side-b"' in r.text
    failed = [g["name"] for g in b["gates"] if g["outcome"] == "fail"]
    assert failed and all(name in r.text for name in failed)
    assert re.search(r'<tr class="changed"><td>' + re.escape(failed[0]), r.text)
    name = "workload.candidate.sales-order-import.p95_ms"
    row = re.search(rf"<tr[^>]*><td>{re.escape(name)}</td>.*?</tr>", r.text).group(0)
    diff = b["signals"][name] - a["signals"][name]
    assert f'<td class="num">{_fmt_value(diff)}</td>' in row


@pytest.mark.slow
def test_read_only_without_identity_provider(served_runs):
    c = client(served_runs)
    for headers in ({}, {"X-User": "mallory", "X-Plantstage-Roles": "plant-it"}):
        r = c.post("/runs/run-1/signoff", data={"role": "plant-it", "decision": "approve",
                                                 "reason": "x"}, headers=headers)
        assert r.status_code == 403 and "read-only" in r.text and "hint:" in r.text
    assert "<form class=\"inline signoff\"" not in c.get("/signoffs").text


@pytest.fixture
def pending_run(served_runs, tmp_path, signing_key_dir, monkeypatch) -> Path:
    """A copy of a real GO run, re-judged with a spec that requires a release-board signoff
    (as `plantstage gate --spec` does): PENDING."""
    monkeypatch.setenv("PLANTSTAGE_KEY_DIR", str(signing_key_dir))
    runs = tmp_path / "runs"
    run = runs / "pending"
    go = next((k for k, v in verdicts(served_runs).items() if v == "GO"), None)
    if go is None:
        pytest.skip("no rehearsal came out GO (a loaded machine made them INCONCLUSIVE)")
    shutil.copytree(served_runs / go, run)
    text = (run / "spec.yaml").read_text()
    spec = tmp_path / "spec" / "plantstage.yaml"
    spec.parent.mkdir()
    spec.write_text(text.replace("signoffs:\n  - role: plant-it",
                                 "signoffs:\n  - role: release-board\n    quorum: 1\n"
                                 "  - role: plant-it"))
    r = run_cli("gate", str(run), "--spec", str(spec),
                env={"PLANTSTAGE_KEY_DIR": str(signing_key_dir)})
    assert r.returncode == 3, r.stdout + r.stderr
    return runs


@pytest.mark.slow
def test_signoff_through_trusted_proxy_only(pending_run):
    run = pending_run / "pending"
    page = client(pending_run).get("/signoffs")
    assert 'data-role="release-board"' in page.text
    ident = {"X-Auth-User": "ada@plant.example", "X-Plantstage-Roles": "release-board"}
    good = client(pending_run, identity_header="X-Auth-User")
    form_page = good.get("/runs/pending", headers=ident)
    token = re.search(r'name="token" value="([0-9a-f]+)"', form_page.text).group(1)
    form = {"token": token, "role": "release-board", "decision": "approve",
            "reason": "rehearsal evidence reviewed"}
    # from an address that is not the proxy, the header means nothing
    stranger = TestClient(good.app, client=("10.9.8.7", 4000))
    r = stranger.post("/runs/pending/signoff", data=form, headers=ident)
    assert r.status_code == 403 and "trusted proxy" in r.text
    # a role the identity does not hold
    r = good.post("/runs/pending/signoff", data={**form, "role": "plant-it"}, headers=ident)
    assert r.status_code == 403 and "does not hold role" in r.text
    # a forged form (no token from this server)
    r = good.post("/runs/pending/signoff", data={**form, "token": "0" * 64}, headers=ident)
    assert r.status_code == 403
    assert evidence(run)["verdict"] == "PENDING"  # nothing above changed anything
    r = good.post("/runs/pending/signoff", data=form, headers=ident, follow_redirects=False)
    assert r.status_code == 303, r.text
    ev = evidence(run)
    assert ev["verdict"] == "GO"
    board = next(s for s in ev["signoffs"] if s["role"] == "release-board")
    assert board["approvals"][0]["by"] == "ada@plant.example"
    # the same signoff function as the CLI: the bundle still verifies
    assert run_cli("verify", str(run)).returncode in (0, 4)
    assert "ada@plant.example" in good.get("/runs/pending", headers=ident).text


def test_loopback_server_answers_loopback_names_only(tmp_path):
    """Bound to 127.0.0.1, a page served under another name (DNS rebinding) gets nothing."""
    from plantstage.serve.cli import _allowed_hosts

    hosts = _allowed_hosts("127.0.0.1", None)
    c = TestClient(create_app(ServeConfig(root=tmp_path, allowed_hosts=hosts)),
                   base_url="http://127.0.0.1:8000")
    assert c.get("/").status_code == 200
    assert c.get("/", headers={"Host": "evil.example:8000"}).status_code == 400
    assert _allowed_hosts("0.0.0.0", None) is None
    assert "plant.example" in _allowed_hosts("0.0.0.0", ["plant.example"])


@pytest.mark.slow
def test_a_folder_of_projects_shows_each_estate(served_runs, tmp_path):
    """The app knows no app: a mixing-plant rehearsal (Flask, plain SQL) is listed beside the
    sample plant's (FastAPI, SQLAlchemy) when serve is pointed at a folder of projects."""
    import os
    import subprocess
    import sys

    from tests.examples.mixing_plant import EXAMPLE as MIXING

    projects = tmp_path / "projects"
    (projects / "sample" / ".plantstage").mkdir(parents=True)
    (projects / "sample" / ".plantstage" / "runs").symlink_to(served_runs)
    out = projects / "mixing" / ".plantstage" / "runs" / "m-1"
    r = subprocess.run([sys.executable, "-m", "plantstage", "rehearse", str(MIXING),
                        "--release", "2.1.0", "--out", str(out)], capture_output=True,
                       text=True, timeout=900,
                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "200"})
    assert r.returncode in (0, 5), r.stdout[-3000:] + r.stderr[-2000:]
    mixing = evidence(out)["spec"]["name"]
    c = client(projects)
    html = c.get("/").text
    assert 'data-spec="sample-plant"' in html and f'data-spec="{mixing}"' in html
    assert len(re.findall(r'<tr class="run"', html)) == 6
    signal = next(n for n in sorted(evidence(out)["signals"]) if n.endswith(".p95_ms"))
    t = c.get("/trends", params={"spec": mixing, "signal": signal}).text
    assert 'data-points="1"' in t and "m-1" in t
    cmp = c.get("/compare", params={"a": "run-1", "b": "m-1"}).text
    assert 'id="side-a"' in cmp and mixing in cmp


def test_a_run_still_going_is_listed_without_a_verdict(tmp_path):
    """A folder with only a ledger (the rehearsal has not ended) shows as running; the run
    page says so and offers no report."""
    from plantstage.evidence.ledger import Ledger

    ledger = Ledger(tmp_path / "runs" / "live" / "ledger.sqlite", "live")
    ledger.start_run("sample-plant", "1.1.0")
    ledger.step_started(1, "parity")
    try:
        c = client(tmp_path / "runs")
        html = c.get("/").text
        assert 'data-run="live" data-verdict="none"' in html and "still running" in html
        page = c.get("/runs/live")
        assert page.status_code == 200 and "no verdict" in page.text
        assert 'id="report-link"' not in page.text
        assert c.get("/runs/live/report").status_code == 404
    finally:
        ledger.close()


def test_units_and_featured_signals_follow_the_catalogue_names():
    from plantstage.serve.runs import FEATURED, unit_of

    assert unit_of("workload.candidate.mrp-run.p95_ms") == "ms"
    assert unit_of("rollback.seconds") == "s"
    assert unit_of("workload.candidate.mrp-run.rate") == "per s"
    assert unit_of("workload.candidate.error_rate") == "ratio"
    assert unit_of("cost.candidate.db_statements.per_iteration") == "per iteration"
    assert unit_of("reconcile.stock.mismatches") == "count"
    label = {name: next((lbl for lbl, rx in FEATURED if rx.search(name)), None) for name in (
        "workload.candidate.mrp-run.p95_ms", "workload.candidate.mrp-run.rate",
        "cost.candidate.db_statements.per_iteration", "rollback.seconds",
        "workload.baseline.mrp-run.p95_ms")}
    assert label == {"workload.candidate.mrp-run.p95_ms": "latency p95",
                     "workload.candidate.mrp-run.rate": "throughput",
                     "cost.candidate.db_statements.per_iteration": "statements per transaction",
                     "rollback.seconds": "restore / rollback time",
                     "workload.baseline.mrp-run.p95_ms": None}


def test_serve_stops_cleanly_on_sigterm(tmp_path):
    """A service manager stops `plantstage serve` with SIGTERM: it answers what is in flight
    and exits 0, as for Ctrl-C (uvicorn alone would end the process by the signal)."""
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    from plantstage.evidence.ledger import Ledger
    from tests.conftest import ROOT

    ledger = Ledger(tmp_path / "runs" / "live" / "ledger.sqlite", "live")
    ledger.start_run("sample-plant", "1.1.0")
    ledger.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "plantstage", "serve", str(tmp_path / "runs"),
                             "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

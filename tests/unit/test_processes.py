import socket
import sys

import pytest

from plantstage.errors import ProcessError
from plantstage.rehearsal.processes import ManagedProcess, free_port


def test_port_in_use_is_a_clear_error(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    p = ManagedProcess("app", [sys.executable, "-c", "pass"], cwd=None, env={}, port=port,
                       health_path="/health", log_path=tmp_path / "log")
    with pytest.raises(ProcessError) as exc:
        p.start()
    assert f"port {port}" in exc.value.message
    s.close()


def test_app_that_exits_fails_health_with_log_hint(tmp_path):
    p = ManagedProcess("app", [sys.executable, "-c", "import sys; sys.exit(3)"], cwd=None,
                       env={}, port=free_port(), health_path="/health",
                       log_path=tmp_path / "app.log")
    p.start()
    with pytest.raises(ProcessError) as exc:
        p.wait_healthy(5)
    assert "exited with code 3" in exc.value.message and "app.log" in exc.value.hint
    p.stop()


def test_stop_kills_the_process_group(tmp_path):
    p = ManagedProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"],
                       cwd=None, env={}, port=free_port(), health_path="/",
                       log_path=tmp_path / "log")
    p.start()
    assert p.alive()
    p.stop(grace=2)
    assert not p.alive()


_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class H(BaseHTTPRequestHandler):
    def _answer(self):
        status = int(sys.argv[2])
        self.send_response(status)
        self.send_header("X-App-Version", "4.2.0")
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"app 4.2.0 is " + (b"up" if status == 200 else b"down"))
    do_GET = do_POST = _answer
    def log_message(self, *a):
        pass

HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def _server(tmp_path, status: int, probe) -> ManagedProcess:
    port = free_port()
    return ManagedProcess("app", [sys.executable, "-c", _SERVER, str(port), str(status)],
                          cwd=None, env={}, port=port, health_path=probe,
                          log_path=tmp_path / "app.log")


def test_probe_reads_the_version_where_declared_not_from_json(tmp_path):
    from plantstage.spec.smoke import HealthProbe

    probe = HealthProbe.model_validate({"method": "POST", "path": "/status",
                                        "version": {"header": "X-App-Version"}})
    p = _server(tmp_path, 200, probe)
    p.start()
    try:
        answer = p.wait_healthy(10)
        assert answer["version"] == "4.2.0" and answer["status"] == 200
        assert p.health["version"] == "4.2.0"
    finally:
        p.stop()
    regex = HealthProbe.model_validate({"version": {"regex": r"app (\S+) is up"}})
    p = _server(tmp_path, 200, regex)
    p.start()
    try:
        assert p.wait_healthy(10)["version"] == "4.2.0"
    finally:
        p.stop()


def test_string_health_is_a_path_and_reads_no_version(tmp_path):
    p = _server(tmp_path, 200, "/health")
    p.start()
    try:
        answer = p.wait_healthy(10)
        assert answer["healthy"] and answer["version"] is None
    finally:
        p.stop()


def test_unhealthy_status_names_the_probe_and_the_status(tmp_path):
    p = _server(tmp_path, 503, "/ready")
    p.start()
    try:
        with pytest.raises(ProcessError) as exc:
            p.wait_healthy(1.5)
        assert "GET /ready: HTTP 503" in exc.value.message
    finally:
        p.stop()


def test_reason_is_the_line_that_names_the_error_not_a_caret():
    from plantstage.rehearsal.processes import reason_line

    pg = """Traceback (most recent call last):
  File "migrate.py", line 3, in <module>
psycopg.errors.UndefinedTable: relation "res_partner_bank" does not exist
LINE 1: UPDATE res_partner_bank SET active = true
               ^
[SQL: UPDATE res_partner_bank SET active = true]
(Background on this error at: https://sqlalche.me/e/20/f405)
"""
    assert reason_line(pg).startswith("psycopg.errors.UndefinedTable: relation")
    detail = 'ERROR:  could not create unique index "uq_recipe_code"\nDETAIL:  Key (code)=(A) ' \
             'is duplicated.\n'
    assert reason_line(detail).startswith("ERROR:  could not create unique index")
    assert reason_line("migrating 0002\ndone\n") == "done"
    assert reason_line("") == ""


def test_a_timed_out_command_keeps_its_output(tmp_path):
    from plantstage.rehearsal.processes import run_command

    log = tmp_path / "logs" / "migrations.log"
    code, reason = run_command(
        [sys.executable, "-u", "-c", "import time; print('applying 0003', flush=True); "
         "time.sleep(30)"], cwd=None, env={}, log_path=log, timeout=1)
    assert code == 124 and reason == "timed out after 1 s; last: applying 0003"
    text = log.read_text()
    assert "applying 0003" in text and "[timed out after 1 s]" in text


def test_a_failed_command_logs_everything_and_names_the_error(tmp_path):
    from plantstage.rehearsal.processes import run_command

    log = tmp_path / "m.log"
    code, reason = run_command(
        [sys.executable, "-c", "import sys; print('step 1'); "
         "sys.stderr.write('ValueError: bad row 17\\nDETAIL: more\\n'); sys.exit(3)"],
        cwd=None, env={}, log_path=log)
    assert (code, reason) == (3, "ValueError: bad row 17")
    assert "step 1" in log.read_text() and "[exit 3 after" in log.read_text()


def test_tcp_probe_and_version_from_a_file_in_the_release(tmp_path):
    from plantstage.spec.smoke import HealthProbe

    (tmp_path / "VERSION").write_text("5.0.1\n")
    probe = HealthProbe.model_validate({"tcp": True, "version": {"file": "VERSION"}})
    assert not probe.version_in_answer
    port = free_port()
    p = ManagedProcess("app", [sys.executable, "-c", _SERVER, str(port), "503"], cwd=tmp_path,
                       env={}, port=port, health_path=probe, log_path=tmp_path / "app.log")
    p.start()
    try:  # TCP: any listener is up, whatever HTTP would answer
        assert p.wait_healthy(10) == {"healthy": True, "status": "tcp", "version": "5.0.1",
                                      "why": ""}
    finally:
        p.stop()
    missing = HealthProbe.model_validate({"tcp": True, "version": {"file": "NOPE"}})
    assert missing.read_file_version(tmp_path)[1].startswith("cannot read")


_URL = "postgresql://app:s3cret-pw@127.0.0.1:5432/staging"  # a filled-in {db:app}


def test_a_url_password_in_a_command_is_never_logged_or_returned(tmp_path):
    from plantstage.rehearsal.processes import run_command

    log = tmp_path / "m.log"
    fails = [sys.executable, "-c", "import sys; print(sys.argv[1]); "
             "sys.exit('cannot connect to ' + sys.argv[1])", _URL]
    code, reason = run_command(fails, cwd=None, env={}, log_path=log)
    assert code == 1 and reason == "cannot connect to postgresql://app:***@127.0.0.1:5432/staging"
    assert "s3cret-pw" not in log.read_text() and "app:***@127.0.0.1" in log.read_text()
    # As written in the spec, when the caller has it: the placeholder, not its value.
    run_command(fails[:3] + ["ok"], cwd=None, env={}, log_path=log,
                shown=["{python}", "tool", "{db:app}"])
    assert "$ {python} tool {db:app}" in log.read_text()


def test_a_failed_command_probe_does_not_show_the_url_password(tmp_path):
    from plantstage.spec.smoke import HealthProbe

    probe = HealthProbe.model_validate(
        {"command": [sys.executable, "-c", "import sys; sys.exit(1)", _URL]})
    p = ManagedProcess("app", [sys.executable, "-c", "import time; time.sleep(60)"],
                       cwd=tmp_path, env={}, port=free_port(), health_path=probe,
                       log_path=tmp_path / "app.log")
    p.start()
    try:
        with pytest.raises(ProcessError) as exc:
            p.wait_healthy(1)
    finally:
        p.stop()
    assert "s3cret-pw" not in exc.value.one_line()
    assert "postgresql://app:***@127.0.0.1:5432/staging" in exc.value.message


def test_an_upgrade_step_shows_its_command_as_written(tmp_path):
    from types import SimpleNamespace

    from plantstage.upgrade_steps import UpgradeStepFailed, run_upgrade_steps

    step = SimpleNamespace(name="vendor", sql=None, timeout=60, command=[
        "{python}", "-c", "import sys; sys.exit(2)", "{db:app.password}"])
    release = SimpleNamespace(name="1.1", release_steps=lambda _: {"before": [step]})
    filled = {"{python}": sys.executable, "{db:app.password}": "s3cret-pw"}
    with pytest.raises(UpgradeStepFailed) as exc:
        run_upgrade_steps(release, db_url=_URL, artifact=tmp_path, spec_dir=tmp_path,
                          expand=lambda a: filled.get(a, a), env={}, log_dir=tmp_path / "logs")
    text = (tmp_path / "logs" / "schema-before-vendor.log").read_text()
    assert "$ {python} -c import sys; sys.exit(2) {db:app.password}" in text
    assert "s3cret-pw" not in text + exc.value.one_line()

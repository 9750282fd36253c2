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

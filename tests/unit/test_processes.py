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

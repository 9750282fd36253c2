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

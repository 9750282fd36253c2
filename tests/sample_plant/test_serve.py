from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
from conftest import RELEASES, migrate, run_cli, sp_env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_health_over_http(db_url: str) -> None:
    assert run_cli("1.1.0", db_url, "migrate", "upgrade", "head").returncode == 0
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sampleplant", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=RELEASES / "1.1.0", env=sp_env(db_url),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        assert r.status_code == 200
        assert r.json() == {"status": "ok", "version": "1.1.0", "schema": "0002"}
        tenants = httpx.get(f"http://127.0.0.1:{port}/api/tenants", timeout=5).json()
        assert len(tenants) == 4
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert not list(RELEASES.rglob("__pycache__"))


def test_health_503_when_database_unreachable(client_for) -> None:
    c = client_for("1.1.0", "postgresql://127.0.0.1:1/nowhere")
    r = c.get("/health")
    assert r.status_code == 503 and r.json()["status"] == "unavailable"


def test_migrate_cli(db_url: str) -> None:
    current = run_cli("1.0.0", db_url, "migrate", "current")
    assert current.returncode == 0 and current.stdout.strip() == "0001"
    up = run_cli("1.1.0", db_url, "migrate", "upgrade", "head")
    assert up.returncode == 0, up.stderr
    assert run_cli("1.1.0", db_url, "migrate", "current").stdout.strip() == "0002"
    down = run_cli("1.1.0", db_url, "migrate", "downgrade", "0001")
    assert down.returncode == 0 and migrate("1.0.0", db_url, "current") == "0001"
    bad = run_cli("1.1.0", db_url, "migrate", "downgrade", "nope")
    assert bad.returncode != 0
    assert len(bad.stderr.strip().splitlines()) == 1 and "error" in bad.stderr
    unreachable = run_cli("1.1.0", "postgresql://127.0.0.1:1/x", "migrate", "current")
    assert unreachable.returncode != 0 and len(unreachable.stderr.strip().splitlines()) == 1

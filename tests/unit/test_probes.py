"""Health probes of every kind against real processes: a command probe (with the app's
environment and placeholders), a version read by a command in the release's folder, JSON-RPC
over HTTP (an error object is unhealthy), and what a command probe checks through the router."""

from __future__ import annotations

import sys

import httpx
import pytest

from plantstage.errors import ProcessError
from plantstage.rehearsal.processes import ManagedProcess, free_port, probe
from plantstage.rehearsal.router import Router
from plantstage.spec.smoke import HealthProbe

# A small JSON-RPC 2.0 server (stdlib only): "status" answers the version, "broken" an error.
_JSONRPC = """
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class H(BaseHTTPRequestHandler):
    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if req.get("method") == "status":
            out = {"jsonrpc": "2.0", "id": req.get("id"), "result": {"version": "16.0.3"}}
        else:
            out = {"jsonrpc": "2.0", "id": req.get("id"),
                   "error": {"code": -32000, "message": "database is not ready"}}
        body = json.dumps(out).encode()
        self.send_response(200)  # JSON-RPC errors travel with HTTP 200
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""

# Asks the app over HTTP as an operator's check script would; prints what a version regex reads.
_CHECK = ("import os, sys, urllib.request; "
          "urllib.request.urlopen('http://127.0.0.1:' + sys.argv[1] + '/rpc', timeout=2, "
          "data=b'{\"jsonrpc\": \"2.0\", \"method\": \"status\", \"id\": 1}'); "
          "print('token', os.environ['APP_TOKEN']); print('build', os.environ['APP_BUILD'])")


def _rpc(method: str, **extra) -> HealthProbe:
    return HealthProbe.model_validate({
        "method": "POST", "path": "/rpc", "json": {"jsonrpc": "2.0", "method": method, "id": 7},
        "version": {"json": "result.version"}, **extra})


def _start(tmp_path, health, *, cwd=None, env=None) -> ManagedProcess:
    port = free_port()
    spec = HealthProbe.model_validate(health) if isinstance(health, dict) else health
    p = ManagedProcess("app", [sys.executable, "-c", _JSONRPC, str(port)], cwd=cwd,
                       env=env or {}, port=port, log_path=tmp_path / "app.log",
                       health_path=spec.expanded(lambda a: a.replace("{port}", str(port))))
    p.start()
    return p


def test_jsonrpc_probe_reads_the_version_from_result_and_an_error_is_unhealthy(tmp_path):
    p = _start(tmp_path, _rpc("status"))
    try:
        answer = p.wait_healthy(15)
        assert answer == {"healthy": True, "status": 200, "version": "16.0.3", "why": ""}
        with httpx.Client(timeout=2) as client:
            broken = probe(client, p.base_url, _rpc("broken"))
        assert broken["healthy"] is False and broken["status"] == 200
        assert broken["why"] == "JSON-RPC error -32000: database is not ready"
    finally:
        p.stop()
    p = _start(tmp_path, _rpc("broken"))
    try:
        with pytest.raises(ProcessError, match="POST /rpc: JSON-RPC error -32000"):
            p.wait_healthy(2)
    finally:
        p.stop()


def test_command_probe_runs_with_the_apps_environment_and_placeholders(tmp_path):
    env = {"APP_TOKEN": "s3cret", "APP_BUILD": "2.4.1"}
    health = {"command": [sys.executable, "-c", _CHECK, "{port}"],
              "version": {"regex": r"build (\S+)"}}
    p = _start(tmp_path, health, env=env)
    try:
        assert p.wait_healthy(15) == {"healthy": True, "status": "command",
                                      "version": "2.4.1", "why": ""}
    finally:
        p.stop()
    # Without the app's environment the same command fails: the probe really ran it.
    p = _start(tmp_path, health, env={"APP_BUILD": "2.4.1"})
    try:
        with pytest.raises(ProcessError, match=r"failed its health check \(command .*"
                                               r"command exit 1: KeyError: 'APP_TOKEN'"):
            p.wait_healthy(2)
    finally:
        p.stop()


def test_command_probe_that_hangs_is_unhealthy_after_its_timeout(tmp_path):
    p = _start(tmp_path, {"command": [sys.executable, "-c", "import time; time.sleep(30)"],
                          "timeout": 0.5})
    try:
        with pytest.raises(ProcessError, match="command timed out after 0.5 s"):
            p.wait_healthy(1.5)
    finally:
        p.stop()


def test_version_from_a_command_in_the_releases_folder(tmp_path):
    (tmp_path / "BUILD").write_text("build 9.1.2 (abc)\n")
    read = [sys.executable, "-c", "print(open('BUILD').read())"]
    p = _start(tmp_path, _rpc("status", version={"command": read, "regex": r"build (\S+)"}),
               cwd=tmp_path)
    try:
        assert p.wait_healthy(15)["version"] == "9.1.2"
        failing = _rpc("status", version={"command": [sys.executable, "-c", "exit(4)"]})
        with httpx.Client(timeout=2) as client:
            answer = probe(client, p.base_url, failing, process=p)
            assert answer["healthy"] and answer["version"] is None
            assert answer["why"] == "version command exit 4: no output"
            # Without a process (through the router) the version command is not run.
            assert probe(client, p.base_url, failing, folder=tmp_path)["why"] == \
                "read by a command in the release's folder at deploy"
    finally:
        p.stop()


def test_through_the_router_a_command_probe_checks_that_the_router_forwards(tmp_path):
    health = HealthProbe.model_validate({"command": [
        sys.executable, "-c", "import socket, sys; "
        "socket.create_connection(('127.0.0.1', int(sys.argv[1])), 2)", "{port}"]})
    p = _start(tmp_path, health)
    router = Router(free_port())
    router.start()
    try:
        p.wait_healthy(15)
        router.switch(p.port)
        with httpx.Client(timeout=2) as client:
            seen = probe(client, router.url, health)
            assert seen == {"healthy": True, "status": "tcp", "version": None,
                            "why": "read by the command probe at deploy"}
            p.stop()  # nothing behind the router: it accepts, then closes at once
            gone = probe(client, router.url, health)
        assert gone["healthy"] is False and gone["why"].startswith("connection closed at once")
    finally:
        p.stop()
        router.stop()

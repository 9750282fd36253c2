"""Real processes for each app version: start, health-check, log, and always stop.

Each process runs in its own session (process group) so that stopping it stops its children
too, and on Linux it is told to die with plantstage (PR_SET_PDEATHSIG), so even a SIGKILLed
rehearsal leaves no app running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from plantstage import telemetry
from plantstage.commands import (  # noqa: F401 - re-exported for the rehearsal's steps
    _die_with_parent,
    free_port,
    hide_passwords,
    port_in_use,
    reason_line,
    run_command,
)
from plantstage.errors import ProcessError
from plantstage.spec.smoke import HealthProbe, health_probe

_LIVE: set[ManagedProcess] = set()


class ManagedProcess:
    """One app version running as a real process on a local port."""

    def __init__(
        self,
        name: str,
        command: list[str],
        *,
        cwd: Path | None,
        env: dict[str, str],
        port: int,
        health_path: str | HealthProbe,
        log_path: Path,
    ):
        self.name = name
        self.command = command
        self.cwd = cwd
        self.env = env
        self.port = port
        #: How to ask this version whether it is up and which version it is.
        self.probe = health_probe(health_path)
        self.health_path = self.probe.path
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        #: The last healthy answer: {"status": code, "version": str | None, "why": …}.
        self.health: dict[str, Any] = {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if port_in_use(self.port):
            raise ProcessError(
                f"port {self.port} is already in use", where=self.name,
                hint="stop what listens there or choose another port",
            )
        # The rehearsal's trace context and OTEL_* environment (empty without telemetry); the
        # binding's own env still wins, e.g. a service name of its own.
        env = {**os.environ, **telemetry.process_env(self.name), **self.env,
               "PYTHONDONTWRITEBYTECODE": "1"}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                self.command, cwd=self.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        except OSError as exc:
            raise ProcessError(f"cannot start: {exc}", where=self.name,
                               hint="check the binding's command and cwd") from None
        finally:
            log.close()
        _LIVE.add(self)

    def wait_healthy(self, timeout: float) -> dict[str, Any]:
        """Poll the health probe until it answers healthy; return what it said.

        The answer is ``{"status": code, "version": str | None, "why": str}``; ``version`` is
        read where the probe declares it (JSON field, header, regex) and None otherwise.
        """
        deadline = time.monotonic() + timeout
        last = "no answer"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise ProcessError(
                        f"exited with code {self.proc.returncode} before it was healthy",
                        where=self.name, hint=f"see its log: {self.log_path}",
                    )
                try:
                    answer = probe(client, self.base_url, self.probe, folder=self.cwd,
                                   process=self)
                    if answer["healthy"]:
                        self.health = answer
                        return answer
                    last = answer["why"] or f"HTTP {answer['status']}"
                except (httpx.HTTPError, OSError) as exc:
                    last = type(exc).__name__
                time.sleep(0.1)
        raise ProcessError(
            f"failed its health check ({self._probe_name()}: {last}) "
            f"within {timeout:.0f} s",
            where=self.name, hint=f"see its log: {self.log_path}",
        )

    def _probe_name(self) -> str:
        if self.probe.tcp:
            return f"TCP port {self.port}"
        if self.probe.command is not None:
            return "command " + hide_passwords(" ".join(self.probe.command))[:120]
        return f"{self.probe.method} {self.probe.path}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        proc = self.proc
        _LIVE.discard(self)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)


def probe(client: httpx.Client, base_url: str, spec: HealthProbe, *,
          folder: Path | str | None = None, process: ManagedProcess | None = None
          ) -> dict[str, Any]:
    """Ask ``base_url`` once, as the probe says; never assumes a JSON body.

    Returns ``{"healthy": bool, "status": int | "tcp" | "command", "version": str | None,
    "why": str}``. ``folder`` is the release's folder (for ``version: {file: …}``).
    ``process`` is the process asked about: a command probe, and a version command, run only
    for a process (in its folder, with its environment, placeholders already filled in by
    :meth:`HealthProbe.expanded`). Without one — through the router — a command probe checks
    that ``base_url``'s port takes a connection and keeps it (the router closes it at once
    when nothing answers behind it), and a version command is not run. A refused connection
    or a timeout propagates (``httpx.HTTPError``, or ``OSError`` for a TCP check).
    """
    env = process.env if process is not None else None
    folder = folder if folder is not None else (process.cwd if process is not None else None)
    if spec.kind == "command" and process is not None:
        code, out, why = _run_probe_command(spec.command or [], folder, env or {}, spec.timeout)
        healthy, status, version = code == 0, "command", None
        if healthy:
            version, why = spec.read_version({}, out)
    elif spec.kind in ("tcp", "command"):
        u = httpx.URL(base_url)
        healthy, status, version, why = _tcp_kept(u.host, u.port or 80), "tcp", None, ""
        if not healthy:
            why = "connection closed at once (nothing answering behind the port)"
        elif spec.kind == "command":
            # The command runs beside a process, not through a port: deploy ran it on the
            # new process; here only the router's forwarding is checked.
            why = "read by the command probe at deploy"
    else:
        r = client.request(spec.method, base_url.rstrip("/") + spec.path, json=spec.json_body,
                           headers=spec.headers or None)
        status = r.status_code
        healthy, version, why = spec.judge(r.status_code, r.headers, r.text)
    src = spec.version
    if healthy and src != "none" and src.file is not None:
        version, why = spec.read_file_version(folder)
    elif healthy and src != "none" and src.command is not None:
        if process is None:
            version, why = None, "read by a command in the release's folder at deploy"
        else:
            code, out, why = _run_probe_command(src.command, folder, env or {}, spec.timeout)
            version, why = src.from_text(out) if code == 0 else (None, f"version {why}")
    return {"healthy": healthy, "status": status, "version": version, "why": why}


def _tcp_kept(host: str, port: int) -> bool:
    """True when ``host:port`` accepts a connection and does not close it at once.

    A listening app keeps an idle connection open (or speaks first); the router accepts every
    connection and closes it when the version behind it does not answer — so a bare connect
    would call a dead version behind the router healthy. ``OSError`` when refused."""
    with socket.create_connection((host, port), timeout=2.0) as sock:
        sock.settimeout(0.3)
        try:
            return sock.recv(1, socket.MSG_PEEK) != b""
        except TimeoutError:
            return True  # open and silent: an app waiting for its client
        except ConnectionError:
            return False


def _run_probe_command(command: list[str], cwd: Path | str | None, env: dict[str, str],
                       timeout: float) -> tuple[int, str, str]:
    """(exit code, stdout, why when it failed) of a probe's command, in its own session so a
    timeout ends its children too."""
    try:
        proc = subprocess.Popen(
            command, cwd=cwd or None, env={**os.environ, **env}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, errors="replace",
            start_new_session=True)
    except OSError as exc:
        return 127, "", f"command cannot start: {exc.strerror or exc}"
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        return 124, "", f"command timed out after {timeout:g} s"
    if proc.returncode != 0:
        return proc.returncode, out, f"command exit {proc.returncode}: " + (
            reason_line(err or out) or "no output")
    return 0, out, ""


def stop_all() -> None:
    """Stop every process this plantstage started and has not stopped yet."""
    for p in list(_LIVE):
        p.stop()


#: Lines that explain nothing on their own: PostgreSQL's caret and DETAIL/HINT lines, the SQL
#: and parameters SQLAlchemy echoes, its "Background on this error" link.

"""The twin framework: one event-loop thread hosts every twin of a run.

A :class:`Twin` has domain state, speaks its protocol on real sockets, takes its faults from a
:class:`~plantstage.twins.faults.FaultInjector` and reports health. :class:`TwinRuntime`
starts twins, health-checks them, notices when one crashes and always stops them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from plantstage.errors import PlantstageError
from plantstage.twins.faults import FaultInjector, FaultLog

log = logging.getLogger("plantstage.twins")


class TwinError(PlantstageError):
    """A twin could not be configured or started (bad settings, port in use, bad capture)."""


@dataclass
class TwinEnv:
    """What a twin may use from its surroundings."""

    broker_url: str | None = None
    base_dir: Path = Path(".")
    log: FaultLog = field(default_factory=FaultLog)
    #: Where the app under test answers (callbacks go there); read when a callback is due.
    app_url: Callable[[], str | None] = lambda: None
    peers: dict[str, Twin] = field(default_factory=dict)


class Twin:
    """Base of every twin kind. Subclasses implement ``_start``/``_stop`` (in the twin loop)."""

    kind: ClassVar[str] = "twin"
    #: Names of the links faults may target (``FaultRule.link``).
    links: ClassVar[tuple[str, ...]] = ()
    #: Starts slowly (seconds): gets its own loop and may finish starting in the background.
    slow_start: ClassVar[bool] = False

    def __init__(self, name: str, spec: Any, env: TwinEnv, *, where: str = ""):
        self.name = name
        self.spec = spec
        self.env = env
        self.where = where or name
        self.settings: dict[str, Any] = dict(spec.settings)
        self.faults = FaultInjector(name, spec.faults, env.log)
        self.failure: str | None = None
        self.runtime: TwinRuntime | None = None
        self.started_at: float | None = None
        self.messages = 0
        #: Counters of the twin's traffic (ints); :meth:`counters` snapshots them.
        self.stats: dict[str, int] = {}

    # -- settings helpers -----------------------------------------------------------------
    def setting(self, key: str, default: Any, kind: type | tuple[type, ...] | None = None) -> Any:
        value = self.settings.get(key, default)
        want = kind or type(default)
        if want is float:
            want = (int, float)
        if value is not None and not isinstance(value, want) or isinstance(value, bool) and \
                want in (int, (int, float)):
            raise TwinError(f"setting '{key}' must be {getattr(want, '__name__', want)}, "
                            f"got {value!r}", where=f"{self.where}.settings.{key}",
                            hint="see docs/twins.md for the settings of this twin kind")
        return value

    def check_settings(self, known: set[str], moved: dict[str, str] | None = None) -> None:
        """Refuse unknown settings; ``moved`` says where a former setting went now."""
        unknown = sorted(set(self.settings) - known)
        if unknown:
            now = (moved or {}).get(unknown[0])
            raise TwinError(f"unknown setting '{unknown[0]}' for a {self.kind} twin",
                            where=f"{self.where}.settings.{unknown[0]}",
                            hint=f"it is now {now} (docs/twins.md)" if now else
                            f"known: {', '.join(sorted(known))}")

    # -- interface ----------------------------------------------------------------------------
    async def _start(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    async def _stop(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def endpoints(self) -> dict[str, str]:
        """Where the twin listens or publishes, by protocol."""
        return {}

    @property
    def url(self) -> str:
        """The twin's primary endpoint (HTTP base URL, OPC UA endpoint or MQTT broker)."""
        eps = self.endpoints()
        for proto in ("http", "opcua", "mqtt"):
            if proto in eps:
                return eps[proto].split(" ", 1)[0]
        return ""

    def counters(self) -> dict[str, float]:
        """A snapshot of the twin's counters (cheap: a copy of one small dict)."""
        return {"messages": float(self.messages),
                **{k: float(v) for k, v in list(self.stats.items())}}

    def reset_counters(self) -> dict[str, float]:
        """Zero the counters (e.g. between workload phases); returns the last snapshot."""
        snap = self.counters()
        self.messages = 0
        for k in list(self.stats):
            self.stats[k] = 0
        return snap

    def state(self) -> dict[str, Any]:
        """A summary of the twin's domain state (for the report and ``/state``)."""
        return {}

    def signals(self) -> dict[str, float]:
        """The twin's signals for the run (``twins.<component>.<name>``): its counters."""
        return self.counters()

    def healthy(self) -> tuple[bool, str]:
        if self.failure:
            return False, self.failure
        return True, "ok"

    # -- helpers for subclasses -----------------------------------------------------------
    def spawn(self, coro: Coroutine, what: str) -> asyncio.Task:
        """A background task whose crash marks the twin failed (never silently lost)."""
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.name}:{what}")

        def done(t: asyncio.Task) -> None:
            if t.cancelled():
                return
            exc = t.exception()
            if exc is not None:
                self.fail(f"{what} crashed: {type(exc).__name__}: {exc}")
                log.debug("twin %s: %s", self.name,
                          "".join(traceback.format_exception(exc)))

        task.add_done_callback(done)
        return task

    def fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
            self.env.log.record(self.name, "-", "twin-failure", "-", reason)


class TwinRuntime:
    """An asyncio loop in a daemon thread; twins live and are driven there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.twins: dict[str, Twin] = {}
        self._thread = threading.Thread(target=self._run, name="plantstage-twins", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine, timeout: float | None = 30) -> Any:
        """Run a coroutine in the twin loop from another thread and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro: Coroutine):
        """Run a coroutine in the twin loop; return a concurrent future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def start(self, twin: Twin, timeout: float = 30) -> None:
        self.start_async(twin)
        self.wait_started(twin, timeout)

    def start_async(self, twin: Twin) -> None:
        """Begin starting ``twin``; :meth:`wait_started` waits for it."""
        twin.runtime = self
        self.twins[twin.name] = twin
        twin._starting = self.submit(twin._start())

    def wait_started(self, twin: Twin, timeout: float = 30) -> None:
        fut = getattr(twin, "_starting", None)
        if fut is None:
            return
        try:
            fut.result(timeout)
        except PlantstageError:
            raise
        except OSError as exc:
            raise TwinError(f"cannot listen: {exc.strerror or exc}", where=twin.where,
                            hint="the port is in use; choose another or use port: 0") from None
        except TimeoutError:
            raise TwinError(f"did not start within {timeout:.0f} s", where=twin.where,
                            hint="see the twin's settings (broker reachable?)") from None
        twin._starting = None
        twin.started_at = time.time()

    def health(self) -> dict[str, tuple[bool, str]]:
        return {n: t.healthy() for n, t in self.twins.items()}

    def stop(self) -> None:
        """Stop every twin (each best effort), then the loop. Safe to call twice."""
        if not self.loop.is_running():
            return
        for t in reversed(list(self.twins.values())):
            try:
                self.call(t._stop(), 10)
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                log.warning("twin %s did not stop cleanly: %s", t.name, exc)

        async def _cancel_rest() -> None:
            for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                task.cancel()

        try:
            self.call(_cancel_rest(), 5)
        except Exception:  # noqa: BLE001
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


async def serve_http(app: Any, port: int, name: str) -> tuple[Any, asyncio.Task, int]:
    """Serve an ASGI app with uvicorn inside the current loop; return (server, task, port)."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.setblocking(False)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]),
                                                  name=f"{name}:http")
    for _ in range(200):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return server, task, bound


async def stop_http(server: Any, task: asyncio.Task | None) -> None:
    if server is None:
        return
    server.should_exit = True
    if task is not None:
        try:
            await asyncio.wait_for(task, 5)
        except (TimeoutError, asyncio.CancelledError, Exception):  # noqa: BLE001
            task.cancel()

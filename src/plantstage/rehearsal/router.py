"""The blue-green traffic switch: a TCP proxy in front of the app versions.

Clients (the workload, smoke checks) always talk to the router's port; ``switch`` points new
connections at another version, exactly like a load balancer's target change. Connections that
are already open finish on the version they started on. ``split`` gives a share of new
connections to a second version (a canary's weight), the rest to the first.
"""

from __future__ import annotations

import asyncio
import threading

from plantstage.errors import ProcessError


class Router:
    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.host = host
        self.port = port
        self._target: tuple[str, int] | None = None
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="plantstage-router")
        self.switches: list[tuple[str, int]] = []
        #: (first, second, share of new connections to the second) while split, else None.
        self._split: tuple[tuple[str, int], tuple[str, int], float] | None = None
        self._owed = 0.0
        #: New connections forwarded, per target.
        self.connections: dict[tuple[str, int], int] = {}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, self.host, self.port), self._loop)
        try:
            self._server = fut.result(10)
        except OSError as exc:
            self._loop.call_soon_threadsafe(self._loop.stop)
            raise ProcessError(f"port {self.port} is already in use ({exc.strerror})",
                               where="environments.staging: app port",
                               hint="stop what listens there, or choose another port") from None

    def switch(self, port: int, host: str = "127.0.0.1") -> None:
        self._split = None
        self._target = (host, port)
        self.switches.append(self._target)

    def split(self, port: int, second_port: int, share: float, host: str = "127.0.0.1") -> None:
        """Give ``share`` (0 < share < 1) of new connections to ``second_port``, the rest to
        ``port``. Deterministic, not random: a running balance hands the second version a
        connection whenever its share is owed one, so any run of n connections holds
        n × share of them, rounded (no sampling noise in a rehearsal's numbers)."""
        if not 0 < share < 1:
            raise ValueError(f"share is between 0 and 1, not {share}")
        self._target = (host, port)
        self._owed = 0.0
        self._split = ((host, port), (host, second_port), share)
        self.switches.append((host, second_port))

    def _choose(self) -> tuple[str, int] | None:
        split = self._split
        if split is None:
            return self._target
        first, second, share = split
        self._owed += share  # runs on the router's one event-loop thread: no lock needed
        if self._owed >= 1.0 - 1e-9:
            self._owed -= 1.0
            return second
        return first

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - closing a broken socket
                pass

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target = self._choose()
        if target is None:
            writer.close()
            return
        self.connections[target] = self.connections.get(target, 0) + 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def stop(self) -> None:
        async def _close() -> None:
            if self._server is not None:
                self._server.close()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(_close(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

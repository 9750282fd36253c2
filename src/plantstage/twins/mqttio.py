"""Drive a paho-mqtt client from the twin's asyncio loop instead of paho's own thread.

Why: with ``loop_start()`` every ``publish`` from the twin loop wakes paho's network thread
through a socket pair and the two threads fight over the GIL and paho's mutexes; profiling the
MES twin showed that hand-off costing more than building and deciding the confirmation itself.
Registered on the twin loop (paho's documented external-loop callbacks, the same technique
aiomqtt uses), a publish only queues the packet; the loop writes whatever is queued when the
socket is writable, and callbacks (acks, work orders) run in the twin loop directly.

paho's automatic reconnect lives in its own thread, so :class:`LoopAdapter` reconnects itself
(with back-off) unless told not to (the Sparkplug edge node opens a new session instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt


class LoopAdapter:
    """Attach ``client`` to ``loop`` (call everything on the client from that loop)."""

    def __init__(self, client: mqtt.Client, loop: asyncio.AbstractEventLoop, *,
                 reconnect: bool = True, on_lost: Callable[[str], None] | None = None):
        self.client = client
        self.loop = loop
        self.reconnect = reconnect
        self.on_lost = on_lost
        self.closing = False
        self._sock: Any = None
        self._misc: asyncio.Task | None = None
        self._retry: asyncio.Task | None = None
        client.on_socket_open = self._opened
        client.on_socket_close = self._closed
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._no_write

    # -- paho's socket callbacks (called in the loop) ---------------------------------------
    def _opened(self, client: mqtt.Client, _u: Any, sock: Any) -> None:
        self._sock = sock
        self.loop.add_reader(sock, self._read)
        if sock is not None and hasattr(sock, "setsockopt"):
            # Many small PUBLISH packets: let the kernel send each as soon as it is written.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._misc is None or self._misc.done():
            self._misc = self.loop.create_task(self._housekeeping())

    def _closed(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self.loop.remove_reader(sock)
        self.loop.remove_writer(sock)
        self._sock = None
        if not self.closing:
            if self.on_lost is not None:
                self.on_lost("connection lost")
            if self.reconnect and (self._retry is None or self._retry.done()):
                self._retry = self.loop.create_task(self._reconnect())

    def _want_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self.loop.add_writer(sock, self._write)

    def _no_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self.loop.remove_writer(sock)

    def _read(self) -> None:
        self.client.loop_read()

    def _write(self) -> None:
        self.client.loop_write()

    async def _housekeeping(self) -> None:
        """Keep-alive pings and retries of unacknowledged messages (paho's loop_misc)."""
        while not self.closing:
            await asyncio.sleep(1.0)
            if self._sock is not None:
                self.client.loop_misc()

    async def _reconnect(self) -> None:
        delay = 0.1
        while not self.closing:
            await asyncio.sleep(delay)
            try:
                self.client.reconnect()
                return
            except OSError:
                delay = min(delay * 2, 2.0)

    # -- lifecycle ----------------------------------------------------------------------------
    def connect(self, host: str, port: int, keepalive: int = 30) -> None:
        """Connect (a short blocking call on a local broker); CONNACK arrives via the loop."""
        self.client.connect(host, port, keepalive=keepalive)

    async def flush(self, timeout: float = 2.0) -> None:
        """Wait until paho has written out everything queued (best effort)."""
        end = self.loop.time() + timeout
        while self._sock is not None and self.client.want_write() and self.loop.time() < end:
            await asyncio.sleep(0.005)

    def close(self) -> None:
        """Disconnect cleanly (DISCONNECT is sent: the broker does not publish the Will)."""
        self.closing = True
        for t in (self._retry, self._misc):
            if t is not None:
                t.cancel()
        if self._sock is not None:
            self.client.disconnect()
            # disconnect() only queued the packet: write it out now, then close.
            with contextlib.suppress(Exception):
                self.client.loop_write()
        if self._sock is not None:
            sock = self._sock
            self.loop.remove_reader(sock)
            self.loop.remove_writer(sock)
            self._sock = None

    def abort(self) -> None:
        """Drop the TCP connection without DISCONNECT, as a crash would (the Will fires)."""
        self.closing = True
        for t in (self._retry, self._misc):
            if t is not None:
                t.cancel()
        sock = self._sock
        if sock is not None:
            self.loop.remove_reader(sock)
            self.loop.remove_writer(sock)
            self._sock = None
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

"""PLC line twin: an OPC UA server (asyncua, real TCP transport) whose tags move as the MES
twin publishes — good and scrap counters, machine state, speed and a drifting temperature.

Address space (namespace ``urn:plantstage:plc``; tag names as ``contract.tags`` declares, these
are the defaults)::

    Objects/<line>/GoodCount (UInt32)  ScrapCount (UInt32)  State (String)
                   Temperature (Double)  Speed (Double, messages/min)

``contract.follows: {good: NAME, scrap: NAME}`` names the MES twin's values that move the
counters (a quantity with decimals makes its counter a Double); without it the counters move
only in standalone mode (``rate``).

Faults on link ``opcua``: latency delays an update, drop skips it, outage freezes the tags and
sets ``State`` to ``comm-loss`` for the window.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from decimal import Decimal
from typing import Any

from plantstage.commands import free_port
from plantstage.spec.twins import SETTINGS as KIND_SETTINGS
from plantstage.twins.base import Twin, TwinError

SETTINGS = KIND_SETTINGS["plc-line"]
#: Tag role → default OPC UA tag name.
TAGS = {"good": "GoodCount", "scrap": "ScrapCount", "state": "State",
        "temperature": "Temperature", "speed": "Speed"}


class PlcLineTwin(Twin):
    kind = "plc-line"
    links = ("opcua",)
    slow_start = True  # asyncua builds the standard address space: seconds of CPU

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.check_settings(SETTINGS)
        self.line = self.setting("line", "Line1", str)
        self.mes = self.setting("mes", None, str)
        self.tick_s = float(self.setting("tick_s", 0.5, float))
        self.rate = float(self.setting("rate", 0.0, float))
        self.base_temp = float(self.setting("temperature", 65.0, float))
        self.ns_uri = self.setting("namespace", "urn:plantstage:plc", str)
        c = self.spec.contract
        self.tags = {**TAGS, **(c.tags if c is not None else {})}
        self.follows: dict[str, str] = dict(c.follows) if c is not None else {}
        self.counter_types: dict[str, str] = {"good": "UInt32", "scrap": "UInt32"}
        self.rng = random.Random(f"{self.spec.seed}:{self.name}")
        self.good: Decimal | int = 0
        self.scrap: Decimal | int = 0
        self.temperature = self.base_temp
        self.state_value = "idle"
        self._recent: list[float] = []
        self.server: Any = None
        self.nodes: dict[str, Any] = {}
        self.port = self.spec.port or free_port()
        self.updates = 0
        self._ticker: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/plantstage/"

    async def _start(self) -> None:
        from asyncua import Server, ua

        for name in ("asyncua", "asyncua.server"):
            logging.getLogger(name).setLevel(logging.ERROR)
        self.ua = ua
        server = Server()
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name(f"plantstage {self.name}")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await server.register_namespace(self.ns_uri)
        line = await server.nodes.objects.add_object(idx, self.line)
        mes = self._find_mes()
        if mes is not None:
            for role, value_name in self.follows.items():
                q = mes.contract.quantities.get(value_name)
                if q is not None and q.decimals > 0:
                    self.counter_types[role] = "Double"
        V = ua.VariantType
        self.vtypes = {"good": V[self.counter_types["good"]],
                       "scrap": V[self.counter_types["scrap"]], "state": V.String,
                       "temperature": V.Double, "speed": V.Double}
        for role, value in (("good", 0), ("scrap", 0), ("state", "idle"),
                            ("temperature", self.base_temp), ("speed", 0.0)):
            vt = self.vtypes[role]
            v = float(value) if vt == V.Double else value
            self.nodes[role] = await line.add_variable(idx, self.tags[role], ua.Variant(v, vt))
        try:
            await server.start()
        except OSError as exc:
            raise TwinError(f"cannot listen on port {self.port}: {exc.strerror or exc}",
                            where=f"{self.where}.port",
                            hint="the port is in use; choose another or use port: 0") from None
        self.server = server
        if mes is not None and self.follows:
            mes.listeners.append(self._on_produced)
        self._ticker = self.spawn(self._tick(), "tags")

    def _find_mes(self) -> Any:
        from plantstage.twins.mes import MesLineTwin

        peers = self.env.peers
        if self.mes:
            peer = peers.get(self.mes)
            if not isinstance(peer, MesLineTwin):
                raise TwinError(f"'{self.mes}' is not an MES line twin of this run",
                                where=f"{self.where}.settings.mes",
                                hint="name the staging component simulated by kind mes-line")
            return peer
        return next((p for p in peers.values() if isinstance(p, MesLineTwin)), None)

    async def _stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if self.server is not None:
            s, self.server = self.server, None
            await s.stop()

    def endpoints(self) -> dict[str, str]:
        return {"opcua": self.url}

    def state(self) -> dict[str, Any]:
        return {"good": _plain(self.good), "scrap": _plain(self.scrap), "state": self.state_value,
                "temperature": round(self.temperature, 2), "updates": self.updates}

    def signals(self) -> dict[str, float]:
        return {"good": float(self.good), "scrap": float(self.scrap),
                "updates": float(self.updates)}

    # -- tag movement ---------------------------------------------------------------------------
    def _on_produced(self, _tenant: str, values: dict[str, Any]) -> None:
        """Called in the MES twin's loop: hand the update over to this twin's loop."""
        good, scrap = (_amount(values.get(self.follows.get(r, ""))) for r in ("good", "scrap"))
        if self.runtime is not None and self.runtime.loop.is_running():
            self.runtime.loop.call_soon_threadsafe(self._produced, good, scrap)

    def _produced(self, good: Decimal, scrap: Decimal) -> None:
        self.good += good
        self.scrap += scrap
        self._recent.append(time.monotonic())
        if self.server is not None:
            self.spawn(self._publish(f"produced-{self.good}"), "update")

    async def write(self, role: str, value: Any) -> None:
        """Write one tag (by role) the way a PLC scan would (the value server-side, no client)."""
        vt = self.vtypes[role]
        V = self.ua.VariantType
        if vt == V.Double:
            value = float(value)
        elif vt in (V.UInt32, V.Int32, V.UInt64, V.Int64):
            value = int(value)
        await self.server.write_attribute_value(self.nodes[role].nodeid,
                                                self.ua.DataValue(self.ua.Variant(value, vt)))
        self.updates += 1

    async def _publish(self, key: str) -> None:
        d = self.faults.decide("opcua", key)
        if d.outage:
            if self.state_value != "comm-loss":
                self.state_value = "comm-loss"
                await self.write("state", "comm-loss")
            return
        if d.delay:
            await asyncio.sleep(d.delay)
        if d.drop or self.server is None:
            return
        now = time.monotonic()
        self._recent = [t for t in self._recent if now - t < 60]
        self.state_value = "running" if self._recent and now - self._recent[-1] < 5 else "idle"
        await self.write("good", self.good)
        await self.write("scrap", self.scrap)
        await self.write("state", self.state_value)
        await self.write("speed", float(len(self._recent)))
        self.messages += 1

    async def _tick(self) -> None:
        n = 0
        while True:
            await asyncio.sleep(self.tick_s)
            n += 1
            if self.rate > 0:  # standalone: produce on its own
                for _ in range(max(1, int(self.rate * self.tick_s))):
                    good = 1 if self.rng.random() > 0.03 else 0
                    self.good += good
                    self.scrap += 1 - good
                    self._recent.append(time.monotonic())
            running = self.state_value == "running"
            drift = self.rng.gauss(0.15 if running else -0.1, 0.3)
            self.temperature = max(20.0, min(120.0, self.temperature + drift))
            if self.faults.outage_left("opcua") > 0:
                await self._publish(f"tick-{n}")
                continue
            await self.write("temperature", round(self.temperature, 2))
            await self._publish(f"tick-{n}")


def _amount(v: Any) -> Decimal:
    """A followed value as a number (a quantity's decimal; 0 when absent)."""
    if v is None:
        return Decimal(0)
    value = getattr(v, "value", v)
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return Decimal(0)


def _plain(v: Decimal | int) -> int | str:
    """A counter for the report: an int when whole, else its exact decimal text."""
    return int(v) if v == int(v) else format(v, "f")

"""PLC twin vs a bare asyncua server: OPC UA tag updates per second seen by a subscribing
client, same tags, same client, same run. Prints both and the ratio (goal: ≥ 50% of bare).

    .venv/bin/python benchmarks/twins_opcua.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time

from asyncua import Client, Server, ua

from plantstage.rehearsal.processes import free_port
from plantstage.spec.twins import TwinSpec
from plantstage.twins.base import TwinEnv, TwinRuntime
from plantstage.twins.plc import PlcLineTwin

logging.getLogger("asyncua").setLevel(logging.ERROR)
NS = "urn:plantstage:plc"


class Count:
    def __init__(self) -> None:
        self.n = 0

    def datachange_notification(self, _node, _val, _data) -> None:
        self.n += 1


async def watch(url: str, seconds: float) -> float:
    """Subscribe to GoodCount and ScrapCount; notifications per second over ``seconds``."""
    async with Client(url) as c:
        idx = await c.get_namespace_index(NS)
        nodes = [await c.nodes.objects.get_child([f"{idx}:Line1", f"{idx}:{t}"])
                 for t in ("GoodCount", "ScrapCount")]
        h = Count()
        sub = await c.create_subscription(10, h)
        await sub.subscribe_data_change(nodes, queuesize=1000)
        await asyncio.sleep(0.5)
        start = h.n
        await asyncio.sleep(seconds)
        return (h.n - start) / seconds


async def bare_server(port: int, stop: asyncio.Event) -> None:
    s = Server()
    await s.init()
    s.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bare/")
    s.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await s.register_namespace(NS)
    line = await s.nodes.objects.add_object(idx, "Line1")
    good = await line.add_variable(idx, "GoodCount", ua.Variant(0, ua.VariantType.UInt32))
    scrap = await line.add_variable(idx, "ScrapCount", ua.Variant(0, ua.VariantType.UInt32))
    async with s:
        n = 0
        while not stop.is_set():
            n += 1  # the same writes the twin does per produced confirmation
            await s.write_attribute_value(good.nodeid, ua.DataValue(
                ua.Variant(n * 5, ua.VariantType.UInt32)))
            await s.write_attribute_value(scrap.nodeid, ua.DataValue(
                ua.Variant(n // 20, ua.VariantType.UInt32)))
            await asyncio.sleep(0)


def run_bare(seconds: float) -> float:
    """The bare server runs in its own thread and loop, exactly like the twin does."""
    port = free_port()
    rt = TwinRuntime()
    stop = rt.call(_make_event())
    rt.submit(bare_server(port, stop))

    async def main() -> float:
        while True:  # wait until it listens
            try:
                _r, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            except OSError:
                await asyncio.sleep(0.2)
        return await watch(f"opc.tcp://127.0.0.1:{port}/bare/", seconds)

    try:
        return asyncio.run(main())
    finally:
        rt.loop.call_soon_threadsafe(stop.set)
        time.sleep(0.2)
        rt.stop()


async def _make_event() -> asyncio.Event:
    return asyncio.Event()


def run_twin(seconds: float) -> float:
    rt = TwinRuntime()
    plc = PlcLineTwin("plc", TwinSpec(kind="plc-line", settings={"tick_s": 0.5}), TwinEnv())
    rt.start(plc, timeout=120)

    async def produce(stop: asyncio.Event) -> None:
        while not stop.is_set():  # each "produced" event: fault decision + tag writes
            plc.good += 5
            plc.scrap += 0
            await plc._publish(f"p{plc.good}")
            await asyncio.sleep(0)

    async def drive() -> asyncio.Event:
        stop = asyncio.Event()
        plc.spawn(produce(stop), "bench")
        return stop

    stop = rt.call(drive())
    try:
        rate = asyncio.run(watch(plc.url, seconds))
    finally:
        rt.loop.call_soon_threadsafe(stop.set)
        time.sleep(0.1)
        rt.stop()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    a = ap.parse_args()
    bare = run_bare(a.seconds)
    twin = run_twin(a.seconds)
    print(f"bare asyncua server : {bare:10,.0f} tag updates/s seen by the client")
    print(f"PLC twin            : {twin:10,.0f} tag updates/s seen by the client")
    print(f"ratio twin / bare   : {twin / bare:10.2f}")


if __name__ == "__main__":
    main()

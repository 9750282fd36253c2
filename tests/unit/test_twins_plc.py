"""The PLC line twin seen by a real OPC UA client (asyncua) subscribing to its tags."""

from __future__ import annotations

import asyncio

from plantstage.brokers import open_broker
from plantstage.spec.twins import TwinSpec
from plantstage.twins.base import TwinEnv, TwinRuntime
from plantstage.twins.faults import FaultLog
from plantstage.twins.mes import MesLineTwin
from plantstage.twins.plc import PlcLineTwin


def test_plc_tags_move_as_the_mes_produces():
    from asyncua import Client

    broker = open_broker("embedded")
    log = FaultLog()
    env = TwinEnv(broker_url=broker.url, log=log)
    rt, rt2 = TwinRuntime(), TwinRuntime()
    contract = {"quantities": {"made": {"unit": "EA", "decimals": 0}},
                "publish": {"topic": "l/{tenant}/made", "payload": {"n": "{made}"}},
                "ack": {"mode": "none"}}
    mes = MesLineTwin("mes-line", TwinSpec(kind="mes-line", settings={"http": False},
                                           contract=contract), env)
    rt.start(mes)
    env.peers["mes-line"] = mes
    # tag names and the value the good counter follows are declared, not built in
    plc = PlcLineTwin("plc-line", TwinSpec(kind="plc-line", settings={"tick_s": 0.1}, contract={
        "tags": {"good": "PartsOut"}, "follows": {"good": "made"}}), env)
    rt2.start(plc, timeout=90)
    try:
        async def client_side():
            seen: list[int] = []

            class Handler:
                def datachange_notification(self, _node, val, _data):
                    seen.append(val)

            async with Client(plc.url) as c:
                idx = await c.get_namespace_index("urn:plantstage:plc")
                good = await c.nodes.objects.get_child([f"{idx}:Line1", f"{idx}:PartsOut"])
                state = await c.nodes.objects.get_child([f"{idx}:Line1", f"{idx}:State"])
                temp = await c.nodes.objects.get_child([f"{idx}:Line1", f"{idx}:Temperature"])
                sub = await c.create_subscription(50, Handler())
                await sub.subscribe_data_change(good)
                for i in range(3):
                    rt.call(mes.send("acme", {"made": 5}, key=f"r{i}", wait=False))
                for _ in range(100):
                    if seen and seen[-1] == 15:
                        break
                    await asyncio.sleep(0.05)
                return seen, await state.read_value(), await temp.read_value()

        seen, state, temp = asyncio.run(client_side())
        assert seen[-1] == 15
        assert state == "running"
        assert 20.0 <= temp <= 120.0
    finally:
        rt2.stop()
        rt.stop()
        broker.stop()

"""The sample plant consumes production confirmations from MQTT (MQTT_URL) through the same
idempotent code path as HTTP, acknowledges each message, and sends goods receipts to the WMS
(WMS_URL). Exercised with real processes, a real broker and real MQTT/HTTP clients."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import paho.mqtt.client as mqtt
import pytest
from conftest import RELEASES, ROOT, load_release, run_cli, sp_env
from helpers import TENANT, confirmation, ledger_rows, released_wo

from plantstage.brokers import open_broker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Wms:
    def __init__(self):
        got = self.got = []

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                got.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(201)
                self.end_headers()

            def log_message(self, *_a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _serve(release: str, db_url: str, env: dict) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sampleplant", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=RELEASES / release, env={**sp_env(db_url), **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc, port
        except httpx.TransportError:
            pass
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.1)


def _publish_and_collect_acks(broker, payloads: list[bytes], expect: int) -> list[dict]:
    acks: list[dict] = []
    ready = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_message = lambda _c, _u, m: acks.append(json.loads(m.payload))
    c.on_subscribe = lambda *_a: ready.set()
    c.connect(broker.host, broker.port)
    c.subscribe(f"plant/{TENANT}/confirmations/ack", qos=1)
    c.loop_start()
    assert ready.wait(5)
    # the app subscribes when it connects; give its consumer a moment after health
    deadline = time.monotonic() + 20
    sent = False
    while time.monotonic() < deadline and len(acks) < expect:
        if not sent:
            time.sleep(0.3)
            for p in payloads:
                c.publish(f"plant/{TENANT}/confirmations", p, qos=1)
            sent = True
        time.sleep(0.05)
    c.disconnect()
    c.loop_stop()
    return acks


@pytest.mark.parametrize("release, postings", [("1.1.0", 1), ("1.1.0-dup-confirmations", 2)])
def test_mqtt_confirmation_posts_through_the_idempotent_path(db_url, release, postings):
    assert run_cli(release, db_url, "migrate", "upgrade", "head").returncode == 0
    wo, item = released_wo(db_url)
    broker = open_broker("embedded")
    wms = Wms()
    proc, port = _serve(release, db_url, {"MQTT_URL": broker.url, "WMS_URL": wms.url})
    try:
        msg = json.dumps(confirmation(f"mq-{release}", wo, good=4, scrap=0)).encode()
        # the MES redelivers the identical message
        acks = _publish_and_collect_acks(broker, [msg, msg, b"{not json"], expect=2)
        assert sorted(a["status"] for a in acks) == \
            (["duplicate", "posted"] if postings == 1 else ["posted", "posted"])
        assert ledger_rows(db_url, f"mq-{release}") == postings
        deadline = time.monotonic() + 10
        while len(wms.got) < postings and time.monotonic() < deadline:
            time.sleep(0.05)
        assert wms.got[0] == {"tenant": TENANT, "ref": f"mq-{release}", "item_code": item,
                              "qty": 4, "kind": "receipt"}
        stats = httpx.get(f"http://127.0.0.1:{port}/integrations").json()
        assert stats["consumer"]["rejected"] == 1  # the malformed message, not acked
    finally:
        proc.terminate()
        proc.wait(10)
        broker.stop()
        wms.server.shutdown()
    assert not list(RELEASES.rglob("__pycache__"))


@pytest.mark.parametrize("release", ["1.1.0", "1.1.0-dup-confirmations"])
def test_the_mes_twin_speaks_the_contract_the_spec_declares(db_url, release):
    """The sample plant's declared contract, as the MES twin plays it, against the real app:
    acks come back on the declared topic; a redelivery is posted once — or twice by the
    defective release, which the twin's Delivery shows."""
    import asyncio

    from plantstage.spec.loader import load_spec
    from plantstage.twins.base import TwinEnv, TwinRuntime
    from plantstage.twins.faults import FaultLog
    from plantstage.twins.mes import MesLineTwin

    assert run_cli(release, db_url, "migrate", "upgrade", "head").returncode == 0
    wo, _item = released_wo(db_url)
    broker = open_broker("embedded")
    proc, _port = _serve(release, db_url, {"MQTT_URL": broker.url})
    twin_spec = load_spec(ROOT).spec.environments["staging"].bindings["mes-line"].twin
    twin_spec = twin_spec.model_copy(update={
        "settings": {"http": False, "ack_timeout": 2.0},
        "faults": type(twin_spec.faults)(seed=1, rules=[{"kind": "duplicate", "p": 1.0}])})
    rt = TwinRuntime()
    mes = MesLineTwin("mes-line", twin_spec, TwinEnv(broker_url=broker.url, log=FaultLog()))
    rt.start(mes)
    try:
        d = asyncio.run(mes.publish(TENANT, {"work_order": wo, "good_qty": 4},
                                    key=f"tw-{release}"))
        assert d.topic == f"plant/{TENANT}/confirmations" and d.id == f"tw-{release}"
        assert d.message["good_qty"] == 4 and d.message["lot"] is None
        assert d.accepted and d.deliveries >= 2
        if release == "1.1.0":
            assert set(d.acks) == {"posted", "duplicate"}
            assert ledger_rows(db_url, f"tw-{release}") == 1
        else:
            assert d.acks.count("posted") >= 2  # the redelivery was posted again
            assert ledger_rows(db_url, f"tw-{release}") >= 2
    finally:
        rt.stop()
        proc.terminate()
        proc.wait(10)
        broker.stop()


def test_b2mml_payload_is_understood():
    """The MES twin's B2MML, built from a contract in the sample plant's names, parses back."""
    from decimal import Decimal

    from plantstage.spec.twins import QuantitySpec
    from plantstage.twins.contract import quantity
    from plantstage.twins.mes import b2mml

    mod = load_release("1.1.0")
    ea = QuantitySpec(unit="EA", decimals=0)
    xml = b2mml({"id": "m1", "published": "2025-01-01T00:00:00Z", "request": "WO-1",
                 "segment": "L", "material": "FG", "lot": "L1",
                 "quantities": {"good": quantity(3, ea, "good_qty"),
                                "scrap": quantity(Decimal(1), ea, "scrap_qty")}})
    parsed = mod.integrations.parse_confirmation(xml)
    assert parsed == {"message_id": "m1", "work_order": "WO-1", "good_qty": 3, "scrap_qty": 1,
                      "lot": "L1", "sent_at": "2025-01-01T00:00:00Z"}


def test_without_mqtt_url_nothing_starts(client_for, db_url):
    assert run_cli("1.1.0", db_url, "migrate", "upgrade", "head").returncode == 0
    with client_for("1.1.0", db_url) as c:
        assert c.get("/integrations").json() == {}

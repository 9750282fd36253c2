"""The twins as a user meets them: `plantstage twins`, `plantstage record`, and a rehearsal
whose only confirmations come from the MES line twin over MQTT."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import EXAMPLE, ROOT, run_cli, sample_plant_copy


def _example_copy(tmp_path: Path) -> Path:
    """A folder that looks like the sample plant, for a changed spec (tests/conftest.py)."""
    return sample_plant_copy(tmp_path)


def _mqtt_only_spec(tmp_path: Path, duplicate_p: float) -> Path:
    """The sample plant's spec, driven only through the MES twin (no HTTP confirmations)."""
    spec = yaml.safe_load((EXAMPLE / "plantstage.yaml").read_text())
    spec["workload"] = {"duration": 3, "concurrency": 16, "seed": 7,
                        "tenants": ["acme-discrete"],
                        "tenant_data": spec["workload"].get("tenant_data", {}),
                        "flows": [{"flow": "mqtt-confirmation", "rate": 8}]}
    mes = spec["environments"]["staging"]["bindings"]["mes-line"]["twin"]
    mes["faults"] = {"seed": 5, "rules": [{"kind": "duplicate", "p": duplicate_p},
                                          {"kind": "outage", "start": 0.5, "duration": 0.5}]}
    spec["gates"] = [g for g in spec["gates"] if g["name"] in
                     ("confirmations-posted-once", "inventory-reconciles", "error-rate")]
    out = _example_copy(tmp_path)
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return out


@pytest.mark.slow
def test_dup_release_is_no_go_through_mes_redeliveries(tmp_path, production_db):
    spec = _mqtt_only_spec(tmp_path, duplicate_p=0.5)
    r = run_cli("rehearse", str(spec), "--release", "1.1.0-dup-confirmations",
                "--out", str(tmp_path / "run"), timeout=240)
    assert r.returncode == 1, r.stdout + r.stderr
    ev = json.loads((tmp_path / "run" / "evidence.json").read_text())
    gates = {g["name"]: g["outcome"] for g in ev["gates"]}
    assert gates.get("confirmations-posted-once") == "fail", ev["reasons"]
    sig = ev["signals"]
    # Only the MES twin sent confirmations, and it did redeliver identical messages.
    assert sig["twins.mes-line.faults.duplicate"] > 0
    assert sig["workload.candidate.mqtt-confirmation.confirmations_posted"] > 0
    assert "workload.candidate.production-confirmation.count" not in sig
    tw = ev["sections"]["twins"]
    kinds = {e["kind"] for e in tw["timeline"]}
    assert {"duplicate", "outage"} <= kinds
    assert all(e["t"] >= -60 for e in tw["timeline"])


def test_twins_standalone_prints_endpoints(tmp_path):
    r = run_cli("twins", str(EXAMPLE), "--duration", "0.5", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"mes-line .*mqtt://127\.0\.0\.1:\d+", r.stdout)
    assert re.search(r"wms .*http://127\.0\.0\.1:\d+", r.stdout)


def _spec_with(tmp_path: Path, mutate) -> Path:  # noqa: ANN001
    spec = yaml.safe_load((EXAMPLE / "plantstage.yaml").read_text())
    mutate(spec)
    out = _example_copy(tmp_path)
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return out


def test_unknown_twin_kind_is_one_line_exit_2(tmp_path):
    def bad(s):  # noqa: ANN001
        s["environments"]["staging"]["bindings"]["wms"]["twin"]["kind"] = "historian"
    r = run_cli("twins", str(_spec_with(tmp_path, bad)), "--duration", "0.1")
    assert r.returncode == 2
    assert "kind" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2


def test_fault_on_component_not_simulated_is_exit_2(tmp_path):
    def bad(s):  # noqa: ANN001
        s["environments"]["staging"]["bindings"]["wms"]["fidelity"] = "real"
    r = run_cli("twins", str(_spec_with(tmp_path, bad)), "--duration", "0.1")
    assert r.returncode == 2
    assert "not simulated" in r.stderr and "Traceback" not in r.stderr


def test_missing_contract_part_is_one_line_exit_2(tmp_path):
    def bad(s):  # noqa: ANN001
        del s["environments"]["staging"]["bindings"]["wms"]["twin"]["contract"]["routes"]["book"]
    r = run_cli("twins", str(_spec_with(tmp_path, bad)), "--duration", "0.1")
    assert r.returncode == 2
    assert "needs contract.routes.book" in r.stderr and "plantstage.yaml:" in r.stderr
    assert "Traceback" not in r.stderr


def test_standalone_mes_twin_publishes_the_declared_contract(tmp_path):
    """`plantstage twins` with the sample's contract: POST /publish sends the declared message."""
    import threading

    import httpx
    import paho.mqtt.client as mqtt

    from plantstage.brokers import open_broker

    b = open_broker("embedded")
    got: list[bytes] = []
    ready = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_message = lambda _c, _u, m: got.append(m.payload)
    c.on_subscribe = lambda *_a: ready.set()
    c.connect(b.host, b.port)
    c.subscribe("plant/+/confirmations", 1)
    c.loop_start()
    assert ready.wait(5)
    proc = subprocess.Popen([sys.executable, "-m", "plantstage", "twins", str(EXAMPLE),
                             "--only", "mes-line", "--broker", b.url, "--duration", "30"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            m = re.search(r"mes-line\s+mes-line\s+http\s+(http://127\.0\.0\.1:\d+)", line)
            url = m.group(1) if m else None
        assert url, proc.stderr.read()
        r = httpx.post(url + "/publish", json={"tenant": "t1", "key": "k1", "values": {
            "work_order": "WO-1", "good_qty": 3}}, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["status"] is None and r.json()["deliveries"] >= 1  # nobody acks here
        body = json.loads(got[0])
        assert (body["message_id"], body["work_order"], body["good_qty"], body["scrap_qty"]) == \
            ("k1", "WO-1", 3, 0)
    finally:
        proc.terminate()
        proc.wait(10)
        c.loop_stop()
        b.stop()


def test_port_in_use_is_exit_2(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]

        def bad(spec):  # noqa: ANN001
            spec["environments"]["staging"]["bindings"]["wms"]["twin"]["port"] = port
        r = run_cli("twins", str(_spec_with(tmp_path, bad)), "--only", "wms",
                    "--duration", "0.1")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "in use" in r.stderr and "Traceback" not in r.stderr


def test_malformed_capture_is_exit_2(tmp_path):
    cap = tmp_path / "bad.jsonl"
    cap.write_text('{"capture": 1, "protocol": "mqtt"}\n{"t": 0.1, "topic": "a"}\n')

    def replay(s):  # noqa: ANN001
        s["environments"]["staging"]["bindings"]["supplier-portal"]["twin"] = {
            "kind": "replay", "replay": {"file": str(cap)}}
    r = run_cli("twins", str(_spec_with(tmp_path, replay)), "--only", "supplier-portal",
                "--duration", "0.1")
    assert r.returncode == 2
    assert f"{cap}:2" in r.stderr and "payload_b64" in r.stderr


def test_record_mqtt_from_the_cli(tmp_path):
    from plantstage.brokers import open_broker

    b = open_broker("embedded")
    try:
        out = tmp_path / "cap.jsonl"
        proc = subprocess.Popen([sys.executable, "-m", "plantstage", "record", b.url,
                                 "--out", str(out), "--topic", "plant/#", "--count", "3"],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        import paho.mqtt.client as mqtt

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        c.connect(b.host, b.port)
        c.loop_start()
        deadline = time.monotonic() + 30
        i = 0
        while proc.poll() is None and time.monotonic() < deadline:
            c.publish("plant/acme/confirmations", f"m{i}", qos=1)
            i += 1
            time.sleep(0.1)
        c.loop_stop()
        assert proc.wait(10) == 0, proc.stderr.read()
        lines = out.read_text().splitlines()
        assert json.loads(lines[0])["protocol"] == "mqtt"
        assert len(lines) == 4
    finally:
        b.stop()
        shutil.rmtree(tmp_path / "none", ignore_errors=True)

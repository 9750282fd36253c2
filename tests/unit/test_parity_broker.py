"""Unit tests of plantstage.parity._broker and the broker part of the topology collector:
listening on a real (embedded) broker, mapping topics to declared edges, never publishing."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml

from plantstage.brokers import EmbeddedBroker
from plantstage.errors import SpecError
from plantstage.parity._broker import Observation, broker_config, observe
from plantstage.parity._compare import compare_layer
from plantstage.parity._environment import EnvView
from plantstage.parity._model import LayerFacts
from plantstage.parity.collectors import topology, versions
from plantstage.parity.verbs import check_references
from plantstage.spec.loader import load_spec
from plantstage.spec.parity import BrokerObservation, ParitySpec
from tests.conftest import EXAMPLE


@pytest.fixture
def broker():
    b = EmbeddedBroker().start()
    yield b
    b.stop()


def _publisher(b: EmbeddedBroker) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-publisher")
    c.connect(b.host, b.port)
    c.loop_start()
    return c


def test_observe_hears_live_and_retained_topics_and_publishes_nothing(broker):
    pub = _publisher(broker)
    try:
        pub.publish("plant/acme/status", b"up", qos=1, retain=True).wait_for_publish(5)
        sent = 1
        # Messages published while parity listens must be heard: keep publishing until the
        # observation ends.

        stop = threading.Event()

        def pump() -> None:
            nonlocal sent
            while not stop.is_set():
                pub.publish("plant/acme/confirmations", b"{}", qos=1).wait_for_publish(5)
                sent += 1
                stop.wait(0.05)

        t = threading.Thread(target=pump)
        t.start()
        try:
            obs = observe(broker.url, window=0.8)
        finally:
            stop.set()
            t.join()
    finally:
        pub.loop_stop()
        pub.disconnect()
    assert obs.error is None
    assert obs.topics["plant/acme/confirmations"] >= 1
    assert obs.topics["plant/acme/status"] == 1 and obs.retained == {"plant/acme/status"}
    assert obs.version is None  # the embedded broker has no $SYS tree
    # every message the broker ever received is one the test published (QoS 1, acknowledged)
    assert broker.messages_in == sent


def test_observe_unreachable_or_bad_url_is_an_error_not_an_empty_broker():
    from plantstage.rehearsal.processes import free_port

    obs = observe(f"mqtt://127.0.0.1:{free_port()}", window=0.2, connect_timeout=1)
    assert obs.error and "unreachable" in obs.error and obs.topics == {}
    assert "not an MQTT URL" in observe("http://127.0.0.1:1883", window=0.2).error


# -- mapping topics to edges --------------------------------------------------------------------
@pytest.fixture
def views(tmp_path: Path):
    """EnvViews of the sample plant (spec only; no database is opened by these tests)."""
    plant = tmp_path / "plant"
    shutil.copytree(EXAMPLE / "config", plant / "config")
    data = yaml.safe_load((EXAMPLE / "plantstage.yaml").read_text())
    for rel in data["releases"]:
        rel["artifact"]["path"] = str(EXAMPLE / rel["artifact"]["path"])
    data["paths"] = {"allow_outside": [str(EXAMPLE / "releases")]}
    data["parity"]["broker"]["ignore"] = ["bridge/#"]
    (plant / "plantstage.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    loaded = load_spec(plant)

    def make(name: str, obs: Observation) -> EnvView:
        v = EnvView(name, loaded, tmp_path / name)
        v.cache["broker-observation"] = obs
        return v

    return make


def _obs(**topics: int) -> Observation:
    return Observation("mqtt://b:1883", 1.5, topics={k.replace("__", "/"): v
                                                      for k, v in topics.items()})


TIERS = {"erp": 1, "mes-line": 1}


def test_topics_map_to_declared_edges_and_undeclared_topics_are_drift(views):
    prod = topology.collect(views("production", _obs(plant__acme__confirmations=5,
                                                     bridge__hb=2)))
    stage = topology.collect(views("staging", _obs(plant__acme__confirmations=3,
                                                   plant__acme__confirmations__ack=3,
                                                   plant__acme__recalls=1)))
    assert prod.facts["mqtt.mes-line->erp"].value == "mqtt"
    assert "mqtt.topic:bridge/hb" not in prod.facts  # ignored by parity.broker.ignore
    assert not any(k.startswith("mqtt.topic:") for k in prod.facts)
    found, _ = compare_layer("topology", prod, stage, ("production", "staging"),
                             ParitySpec(), TIERS)
    f = {x.key: x for x in found}
    assert f["mqtt.mes-line->erp"].status == "same"
    recall = f["mqtt.topic:plant/acme/recalls"]
    assert recall.status == "drift" and recall.severity == "critical" and recall.blocking
    assert "undeclared topic" in recall.reason and recall.component == "erp"


def test_declared_but_unseen_edge_is_unknown_never_same(views):
    prod = topology.collect(views("production", _obs(plant__acme__confirmations=5)))
    stage = topology.collect(views("staging", _obs()))
    f = {x.key: x for x in compare_layer("topology", prod, stage, ("production", "staging"),
                                         ParitySpec(), TIERS)[0]}
    edge = f["mqtt.mes-line->erp"]
    assert edge.status == "unknown" and "declared, not observed" in edge.reason
    assert edge.reason.startswith("staging:")


def test_unreachable_broker_makes_edges_and_version_unknown(views):
    down = Observation("mqtt://b:1883", 1.5, error="broker mqtt://b:1883 unreachable: refused")
    prod = views("production", _obs(plant__acme__confirmations=5))
    prod.cache["broker-observation"].sys["$SYS/broker/version"] = "mosquitto version 2.0.11"
    stage = views("staging", down)
    names = ("production", "staging")
    topo = {x.key: x for x in compare_layer("topology", topology.collect(prod),
                                            topology.collect(stage), names, ParitySpec(),
                                            TIERS)[0]}
    assert topo["mqtt.mes-line->erp"].status == "unknown"
    assert "unreachable" in topo["mqtt.mes-line->erp"].reason
    pv, sv = LayerFacts("versions"), LayerFacts("versions")
    versions._broker_version(prod, pv)  # the broker part only: no database is opened here
    versions._broker_version(stage, sv)
    assert pv.facts["mqtt-broker.version"].value == "mosquitto version 2.0.11"
    vers = {x.key: x for x in compare_layer("versions", pv, sv, names, ParitySpec(), TIERS)[0]}
    assert vers["mqtt-broker.version"].status == "unknown"


def test_window_override_and_url_resolution(views):
    v = views("staging", _obs())
    v.cache["broker-window"] = 0.3
    assert broker_config(v).window == 0.3
    assert v.spec.parity.broker.window == 1.5  # the loaded spec is not changed
    from plantstage.parity._broker import broker_url

    url, why = broker_url(v, v.spec.parity.broker)
    assert url is None and "{mqtt_url}" in why
    v.run_dir = None
    assert broker_url(views("production", _obs()), v.spec.parity.broker)[0] == \
        "mqtt://mqtt.plant.invalid:1883"


def test_routes_must_name_a_declared_mqtt_edge(views):
    v = views("production", _obs())
    v.loaded.spec.parity.broker.topics[0].to = "wms"  # erp->wms is http, not mqtt
    v.loaded.spec.parity.broker.topics[0].from_ = "erp"
    with pytest.raises(SpecError) as exc:
        check_references(v.loaded)
    assert "parity.broker.topics[0]" in exc.value.where and "mes-line->erp" in exc.value.hint


def test_route_filters_are_validated():
    with pytest.raises(ValueError, match="not MQTT topic filters"):
        BrokerObservation(topics=[{"from": "a", "to": "b", "topics": ["plant/#/x"]}])

"""Twin kinds, planning from the spec, and the rehearsal steps' twin-failure handling."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from plantstage.errors import SpecError
from plantstage.rehearsal.steps import StepFailed
from plantstage.rehearsal.steps import twins as steps
from plantstage.spec.loader import parse_spec_text
from plantstage.spec.twins import TwinKind
from plantstage.twins import KINDS, plan_twins, start_twins, twin_class
from plantstage.twins.base import TwinError
from tests.conftest import EXAMPLE


def _loaded(mutate=None):  # noqa: ANN001
    spec = yaml.safe_load((EXAMPLE / "plantstage.yaml").read_text())
    if mutate:
        mutate(spec)
    return parse_spec_text(yaml.safe_dump(spec, sort_keys=False), EXAMPLE / "plantstage.yaml")


def test_every_kind_has_a_module():
    assert set(KINDS) == {k.value for k in TwinKind}
    for kind in KINDS:
        assert twin_class(kind).kind == kind
    with pytest.raises(TwinError, match="unknown twin kind"):
        twin_class("historian")


def test_plan_from_the_sample_plant():
    planned = {p.component: p.spec.kind.value for p in plan_twins(_loaded())}
    assert planned["mes-line"] == "mes-line" and planned["wms"] == "wms"


@pytest.mark.parametrize("mutate, msg", [
    (lambda s: s["environments"]["staging"]["bindings"]["wms"].update(fidelity="real"),
     "not simulated"),
    (lambda s: s["environments"]["staging"]["bindings"]["erp-db"].update(
        twin=s["environments"]["staging"]["bindings"]["wms"]["twin"]),
     "only external components"),
    (lambda s: s["environments"]["staging"]["bindings"]["wms"]["twin"].pop("contract"),
     "a wms twin needs a contract"),
    (lambda s: s["environments"]["staging"]["bindings"]["wms"]["twin"]["contract"]["routes"]
     .pop("book"), "needs contract.routes.book"),
    (lambda s: s["environments"]["staging"]["bindings"]["wms"]["twin"]["contract"]["routes"]
     .update(ship={"path": "/ship"}), "contract.routes.ship: unknown role"),
    (lambda s: s["environments"]["staging"]["bindings"]["mes-line"]["twin"]["contract"]
     ["quantities"]["good_qty"].update(decimals=-1), "greater than or equal to 0"),
    (lambda s: s["environments"]["staging"]["bindings"]["wms"]["twin"]["faults"]["rules"]
     .append({"kind": "drop", "link": "mqtt"}), "no link 'mqtt'"),
])
def test_plan_rejects_bad_bindings(mutate, msg):
    with pytest.raises(SpecError, match=msg) as exc:
        plan_twins(_loaded(mutate))
    assert "plantstage.yaml" in exc.value.where
    assert "Traceback" not in str(exc.value)


def _ctx(loaded, run_id="r1"):
    return SimpleNamespace(loaded=loaded, run_id=run_id, router=None, sections={},
                           placeholders={}, cleanups=[], signals={}, twin_set=None,
                           signals_from=lambda d: None)


def test_steps_start_check_and_always_stop(monkeypatch):
    loaded = _loaded()
    ctx = _ctx(loaded)
    steps.StartTwins().run(ctx)
    try:
        assert ctx.placeholders["mqtt_url"].startswith("mqtt://127.0.0.1:")
        assert ctx.placeholders["twin:wms"].startswith("http://127.0.0.1:")
        steps.TwinsReady().run(ctx)
        assert steps.TwinsCheck().run(ctx)["failures"] == {}
        ts = ctx.twin_set
        # flows find each twin by component, with its primary endpoint and counters
        assert ts.twins["wms"].url == ctx.placeholders["twin:wms"]
        assert ts.twins["mes-line"].url == ctx.placeholders["mqtt_url"]
        assert ts.twins["supplier-portal"].counters()["purchase_orders"] == 0
        # a twin that crashes during the run is a twin failure, not the app's
        ts.twins["wms"].fail("callbacks crashed: RuntimeError: boom")
        with pytest.raises(StepFailed, match=r"twin failure \(not the app\): wms: callbacks"):
            steps.TwinsCheck().run(ctx)
        assert any(e["kind"] == "twin-failure" for e in ctx.sections["twins"]["timeline"])
    finally:
        for fn in reversed(ctx.cleanups):
            fn()
    assert ctx.twin_set is None


def test_start_twins_stops_what_started_on_error(tmp_path: Path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]

        def busy(spec):  # noqa: ANN001
            spec["environments"]["staging"]["bindings"]["supplier-portal"]["twin"]["port"] = port
        with pytest.raises(TwinError, match="in use"):
            start_twins(_loaded(busy))

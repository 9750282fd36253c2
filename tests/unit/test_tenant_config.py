"""Tenant configuration parity: per-tenant settings production vs staging, and coverage."""

from __future__ import annotations

import json
from types import SimpleNamespace

from plantstage.rehearsal.steps.tenant_config import TenantConfigParity, compare, tenant_map
from plantstage.spec.parity import ParitySpec
from plantstage.spec.tenant_config import TenantConfig
from plantstage.spec.workload import Workload


def test_compare_per_tenant_with_secrets_by_sameness_only():
    prod = tenant_map({"t": {"a": {"uom": "kg", "flags": {"lots": True}, "api_token": "p"},
                             "b": {"uom": "EA"}, "c": {"uom": "EA"}}}, "t")
    stag = tenant_map({"t": {"a": {"uom": "g", "flags": {"lots": True}, "api_token": "s"},
                             "b": {"uom": "EA"}, "d": {}}}, "t")
    out = compare(prod, stag, ["*token*"])
    assert out["b"] == {"status": "same", "differs": []}
    assert out["c"]["status"] == "production only" and out["d"]["status"] == "staging only"
    assert out["a"]["differs"] == [
        {"setting": "api_token", "production": "secret", "staging": "secret (differs)"},
        {"setting": "uom", "production": "kg", "staging": "g"}]
    assert tenant_map({"t": []}, "t") is None


def test_step_shows_drift_and_which_production_tenants_the_workload_drove(tmp_path):
    (tmp_path / "prod.json").write_text(json.dumps({"tenants": {
        "a": {"posting": "backflush"}, "b": {"posting": "manual"}, "c": {"posting": "manual"}}}))
    (tmp_path / "stag.json").write_text(json.dumps({"tenants": {
        "a": {"posting": "backflush"}, "b": {"posting": "auto"}, "c": {"posting": "manual"}}}))
    parity = ParitySpec.model_validate({"config": [
        {"name": "tenants", "component": "app", "production": "prod.json",
         "staging": "stag.json"}]})
    workload = Workload.model_validate({
        "tenants": ["a", "b"],
        "archetypes": {"discrete": {"flows": [{"flow": "x:y", "rate": 1}]},
                       "process": {"flows": [{"flow": "x:y", "rate": 1}]}}})
    spec = SimpleNamespace(
        tenant_config=TenantConfig(source="tenants", key="tenants"), parity=parity,
        workload=workload,
        estate=SimpleNamespace(tenants=[SimpleNamespace(code="a", archetype="discrete"),
                                        SimpleNamespace(code="b", archetype="discrete"),
                                        SimpleNamespace(code="c", archetype="process")]))
    ctx = SimpleNamespace(spec=spec, spec_dir=tmp_path, current=None, release=None,
                          artifact_dir=lambda r: tmp_path, signals={}, sections={})
    ctx.signal = lambda k, v: ctx.signals.__setitem__(k, v)
    out = TenantConfigParity().run(ctx)
    rows = {r["tenant"]: r for r in out["tenants"]}
    assert rows["b"]["differs"] == [{"setting": "posting", "production": "manual",
                                     "staging": "auto"}]
    assert rows["a"]["exercised"] and not rows["c"]["exercised"]
    assert out["unexercised"] == ["c"] and out["archetypes_not_exercised"] == ["process"]
    assert ctx.signals == {"tenant_config.drift": 1.0, "tenant_config.unexercised": 1.0,
                           "tenant_config.tenants": 3.0}

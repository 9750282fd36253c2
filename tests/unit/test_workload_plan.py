from functools import partial
from pathlib import Path

import pytest

from plantstage import verbs
from plantstage.errors import SpecError
from plantstage.spec.loader import load_spec
from plantstage.workload.plan import build_lanes, validate

# These specs carry no real release artifacts: validate the workload, not the digests.
check = partial(verbs.check, artifacts=False)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "sample-plant"

SPEC = """\
version: 1
name: t
estate:
  components:
    app: {kind: service, tier: 1}
  tenants:
    - {code: t1, archetype: ARCH}
environments:
  production: {bindings: {app: {url: "http://prod.invalid"}}}
  staging: {bindings: {app: {url: "http://127.0.0.1:1"}}}
current: "1"
releases:
  - {name: "1", version: "1", artifact: {path: ., sha256: "%s"}}
workload:
WORKLOAD
""" % ("0" * 64)


PROCESS = """\
  archetypes:
    process:
      flows:
        - {flow: 'myflows_arch:confirm', rate: 1}
        - {flow: 'myflows_arch:adjust', rate: 2, params: {qty: 3}}
"""
ARCH_MODULE = "async def confirm(ctx):\n    pass\n\n\nasync def adjust(ctx):\n    pass\n"


def _spec(tmp_path, arch="process", workload=PROCESS, module=None):
    (tmp_path / "plantstage.yaml").write_text(SPEC.replace("ARCH", arch)
                                              .replace("WORKLOAD\n", workload))
    if module is not None:
        (tmp_path / "myflows_mod.py").write_text(module)
    (tmp_path / "myflows_arch.py").write_text(ARCH_MODULE)
    return tmp_path


def test_the_sample_plant_covers_every_archetype():
    loaded = load_spec(EXAMPLE)
    lanes = validate(loaded)
    assert {ln.archetype for ln in lanes} == set(loaded.spec.workload.archetypes)
    assert {ln.tenant for ln in lanes} == {"acme-discrete", "bluechem-process",
                                           "cobalt-multiplant", "delta-integrated"}


def test_archetype_mix(tmp_path):
    loaded = load_spec(_spec(tmp_path))
    lanes = build_lanes(loaded)
    assert [(ln.label, dict(ln.flow.params)) for ln in lanes] == [("confirm", {}),
                                                                  ("adjust", {"qty": 3})]


def test_a_tenant_without_archetype_gets_the_plain_flows(tmp_path):
    wl = PROCESS + "  flows: [{flow: 'myflows_arch:confirm', rate: 1}]\n"
    (tmp_path / "plantstage.yaml").write_text(SPEC.replace(", archetype: ARCH", "")
                                              .replace("WORKLOAD\n", wl))
    (tmp_path / "myflows_arch.py").write_text(ARCH_MODULE)
    lanes = build_lanes(load_spec(tmp_path))
    assert [(ln.archetype, ln.label) for ln in lanes] == [("all", "confirm")]


def test_unknown_archetype_names_the_line(tmp_path):
    with pytest.raises(SpecError, match="unknown archetype 'lean'") as e:
        check(_spec(tmp_path, arch="lean"))
    assert e.value.where.endswith("plantstage.yaml:7: estate.tenants[0].archetype")


def test_unknown_flow_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="no flow 'teleport' is registered") as e:
        check(_spec(tmp_path, workload="  flows: [{flow: teleport, rate: 1}]\n"))
    assert e.value.where.endswith("plantstage.yaml:15: workload.flows[0].flow")
    assert "plugins:" in e.value.hint


def test_user_flow_that_fails_to_import(tmp_path):
    wl = "  flows:\n    - {flow: 'myflows_mod:go', rate: 1}\n"
    with pytest.raises(SpecError, match="failed to import: ZeroDivisionError") as e:
        check(_spec(tmp_path, workload=wl, module="x = 1 / 0\n"))
    assert ":16: workload.flows[0].flow" in e.value.where


def test_user_flow_must_be_async(tmp_path):
    wl = "  flows:\n    - {flow: 'myflows_mod2:go', rate: 1}\n"
    (tmp_path / "myflows_mod2.py").write_text("def go(*a):\n    pass\n")
    with pytest.raises(SpecError, match="not an async function"):
        check(_spec(tmp_path, workload=wl))


def test_user_flow_resolves_from_the_spec_folder(tmp_path):
    wl = ("  use_archetypes: false\n  flows:\n    - {flow: 'myflows_mod3:go', rate: 2, "
          "params: {path: /x}}\n")
    (tmp_path / "myflows_mod3.py").write_text("async def go(ctx):\n    return None\n")
    lanes = validate(check(_spec(tmp_path, workload=wl)))
    assert [(ln.tenant, ln.archetype, ln.label) for ln in lanes] == [("t1", "all", "go")]


def test_user_flow_label_is_the_function_name_as_written(tmp_path):
    wl = "  use_archetypes: false\n  flows:\n    - {flow: 'myflows_mod4:confirm_http', rate: 1}\n"
    (tmp_path / "myflows_mod4.py").write_text("async def confirm_http(ctx):\n    pass\n")
    lanes = validate(check(_spec(tmp_path, workload=wl)))
    assert [ln.label for ln in lanes] == ["confirm_http"]  # no silent renaming


def test_old_five_argument_flows_are_a_clear_error(tmp_path):
    wl = "  use_archetypes: false\n  flows:\n    - {flow: 'myflows_mod5:go', rate: 1}\n"
    (tmp_path / "myflows_mod5.py").write_text("async def go(client, t, wf, rng, ref):\n"
                                             "    pass\n")
    with pytest.raises(SpecError, match="must take one argument, the FlowContext") as e:
        check(_spec(tmp_path, workload=wl))
    assert "ctx.http" in e.value.hint


def test_app_fields_are_params_now(tmp_path):
    wl = "  flows: [{flow: 'myflows_arch:confirm', rate: 1, orders: 5}]\n"
    with pytest.raises(SpecError, match="unknown field") as e:
        check(_spec(tmp_path, workload=wl))
    assert "workload.flows[0].orders" in e.value.message

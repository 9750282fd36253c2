from functools import partial
from pathlib import Path

import pytest

from plantstage import verbs
from plantstage.errors import SpecError
from plantstage.spec.loader import load_spec
from plantstage.workload.archetypes import BUILTIN
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


def _spec(tmp_path, arch="process", workload="  use_archetypes: true\n", module=None):
    (tmp_path / "plantstage.yaml").write_text(SPEC.replace("ARCH", arch)
                                              .replace("WORKLOAD\n", workload))
    if module is not None:
        (tmp_path / "myflows_mod.py").write_text(module)
    return tmp_path


def test_the_sample_plant_covers_every_archetype():
    lanes = validate(load_spec(EXAMPLE))
    assert {ln.archetype for ln in lanes} == set(BUILTIN)
    assert {ln.tenant for ln in lanes} == {"acme-discrete", "bluechem-process",
                                           "cobalt-multiplant", "delta-integrated"}


def test_builtin_archetype_mix(tmp_path):
    loaded = load_spec(_spec(tmp_path))
    lanes = build_lanes(loaded.spec)
    assert [ln.label for ln in lanes] == [f.label for f in BUILTIN["process"].flows]


def test_unknown_archetype_names_the_line(tmp_path):
    with pytest.raises(SpecError, match="unknown archetype 'lean'") as e:
        check(_spec(tmp_path, arch="lean"))
    assert e.value.where.endswith("plantstage.yaml:7: estate.tenants[0].archetype")


def test_unknown_flow_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="unknown flow 'teleport'"):
        check(_spec(tmp_path, workload="  flows: [{flow: teleport, rate: 1}]\n"))


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
    (tmp_path / "myflows_mod3.py").write_text("async def go(client, t, wf, rng, ref):\n"
                                             "    return None\n")
    lanes = validate(check(_spec(tmp_path, workload=wl)))
    assert [(ln.tenant, ln.archetype, ln.label) for ln in lanes] == [("t1", "all", "go")]

"""Plugins: loading from the spec's folder and entry points, and one-line loading errors."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from plantstage import plugins
from plantstage.errors import SpecError
from plantstage.spec.loader import load_spec
from plantstage.workload.plan import build_lanes, validate

SPEC = """\
version: 1
name: t
estate:
  components:
    app: {kind: service, tier: 1}
  tenants:
    - {code: t1}
environments:
  production: {bindings: {app: {url: "http://prod.invalid"}}}
  staging: {bindings: {app: {url: "http://127.0.0.1:1"}}}
current: "1"
releases:
  - {name: "1", version: "1", artifact: {path: ., sha256: "%s"}}
plugins:
  - PLUGIN
workload:
  flows:
    - {flow: FLOW, rate: 1}
""" % ("0" * 64)

GOOD = '''
from plantstage.api import FlowContext, flow


@flow("receive", signals={"received": "goods received"})
async def receive(ctx: FlowContext) -> None:
    """Receive goods.

    More text."""
    ctx.count("received")
'''


def _project(tmp: Path, plugin: str, code: str | None, flow: str = "receive") -> Path:
    (tmp / "plantstage.yaml").write_text(SPEC.replace("PLUGIN", plugin).replace("FLOW", flow))
    if code is not None:
        (tmp / f"{plugin}.py").write_text(code)
    return tmp


def test_a_plugin_beside_the_spec_registers_its_flows(tmp_path):
    loaded = load_spec(_project(tmp_path, "plug_good", GOOD))
    reg = plugins.load_plugins(loaded)
    assert plugins.load_plugins(loaded) is reg  # idempotent per spec
    fd = reg.flows["receive"]
    assert fd.description == "Receive goods." and dict(fd.signals) == {"received":
                                                                        "goods received"}
    assert reg.origins["receive"] == "plugins[0] (plug_good)"
    lanes = build_lanes(loaded)
    assert [(ln.tenant, ln.label) for ln in lanes] == [("t1", "receive")]


def test_two_specs_with_a_plugin_of_the_same_name(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _project(a, "plug_same", GOOD)
    _project(b, "plug_same", GOOD.replace('"receive"', '"other"'), flow="other")
    assert set(plugins.load_plugins(load_spec(a)).flows) == {"receive"}
    assert set(plugins.load_plugins(load_spec(b)).flows) == {"other"}


@pytest.mark.parametrize("code,message,at_line", [
    (None, "plugins[0]: no plugin module 'plug_missing'", None),
    ("import not_installed_pkg_xyz\n",
     "plugins[0]: plugin 'plug_missing' imports 'not_installed_pkg_xyz', which is not installed",
     1),
    ("x = (\n", "plugins[0]: plugin 'plug_missing' has a syntax error at", 1),
    ("\n\nraise KeyError('boom')\n",
     "plugins[0]: plugin 'plug_missing' failed to import: KeyError: 'boom'", 3),
    ("X = 1\n", "plugins[0]: plugin 'plug_missing' registers no flow", None),
])
def test_loading_errors_name_the_spec_line_and_the_cause(tmp_path, code, message, at_line):
    name = f"plug_missing_{abs(hash((code or '', message))) % 10**6}"
    loaded = load_spec(_project(tmp_path, name, code))
    with pytest.raises(SpecError) as e:
        plugins.load_plugins(loaded)
    assert message.replace("plug_missing", name) in e.value.message
    assert e.value.where == f"{loaded.path}:15"  # the line of plugins[0]
    if at_line is not None:
        assert f"{tmp_path / name}.py:{at_line}" in e.value.message


def test_duplicate_flow_names_name_both_plugins(tmp_path):
    (tmp_path / "plantstage.yaml").write_text(
        SPEC.replace("  - PLUGIN", "  - plug_dup_a\n  - plug_dup_b").replace("FLOW", "receive"))
    (tmp_path / "plug_dup_a.py").write_text(GOOD)
    (tmp_path / "plug_dup_b.py").write_text(GOOD)
    with pytest.raises(SpecError, match=r"flow 'receive' is registered twice: by plugins\[0\] "
                       r"\(plug_dup_a\) and by plugins\[1\] \(plug_dup_b\)"):
        plugins.load_plugins(load_spec(tmp_path))


def test_an_unknown_flow_lists_the_registered_ones(tmp_path):
    with pytest.raises(SpecError, match="no flow 'nope' is registered; registered: receive"):
        validate(load_spec(_project(tmp_path, "plug_list", GOOD, flow="nope")))


def test_entry_point_plugins_register_too(tmp_path, monkeypatch):
    pkg = tmp_path / "site"
    pkg.mkdir()
    (pkg / "ep_plugin_mod.py").write_text(GOOD.replace('"receive"', '"ep-receive"'))
    monkeypatch.syspath_prepend(str(pkg))
    ep = importlib.metadata.EntryPoint(name="ep", value="ep_plugin_mod",
                                       group=plugins.ENTRY_POINT_GROUP)
    monkeypatch.setattr("plantstage.workload.registry._entry_points", lambda: [ep])
    proj = tmp_path / "proj"
    proj.mkdir()
    loaded = load_spec(_project(proj, "plug_ep_local", GOOD, flow="ep-receive"))
    reg = plugins.load_plugins(loaded)
    assert set(reg.flows) == {"receive", "ep-receive"}
    assert reg.origins["ep-receive"] == "entry point 'ep'"


def test_check_prints_one_line_and_exits_2(tmp_path):
    _project(tmp_path, "plug_cli_bad", "x = (\n")
    r = subprocess.run([sys.executable, "-m", "plantstage", "check", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr + r.stdout
    assert "plugins[0]: plugin 'plug_cli_bad' has a syntax error at" in r.stderr + r.stdout
    assert "plantstage.yaml:15: plugins[0]" in r.stderr + r.stdout

"""The mixing plant (Flask) rehearsed with a command health probe and its version read by a
command in the release's folder: the app's own CLI-free check script asks GET /status with the
app's environment, and `{python} -c "import mixingplant; print(mixingplant.VERSION)"` names the
version — no health endpoint or header involved (docs/bring-your-own-app.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.examples.mixing_plant import EXAMPLE

pytestmark = pytest.mark.slow

# Run by the probe with the app's environment: fails unless the app answers and its database
# URL is in the environment (so the probe really gets the app's staging environment).
CHECK = ("import os, sys, urllib.request; os.environ['DATABASE_URL']; "
         "r = urllib.request.urlopen('http://127.0.0.1:' + sys.argv[1] + '/status', timeout=2); "
         "print(r.read().decode())")


def _spec_copy(tmp_path: Path) -> Path:
    """The example's spec in tmp_path, its folders linked (releases, runtimes, production)."""
    (EXAMPLE / ".plantstage").mkdir(exist_ok=True)
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name in ("releases", ".plantstage", "mixingplant_plugin.py", "generate.py"):
        (tmp_path / name).symlink_to(EXAMPLE / name)
    spec = yaml.safe_load((EXAMPLE / "plantstage.yaml").read_text())
    app = spec["environments"]["staging"]["bindings"]["mixing-app"]
    app["health"] = {
        "command": ["{python}", "-c", CHECK, "{port}"], "timeout": 5,
        "version": {"command": ["{python}", "-c",
                                "import mixingplant; print(mixingplant.VERSION)"]}}
    spec["workload"]["duration"] = min(spec["workload"].get("duration", 5), 5)
    # The linked folders resolve into the example: allow them (the confinement rule).
    spec.setdefault("paths", {})["allow_outside"] = [str(EXAMPLE)]
    (tmp_path / "plantstage.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return tmp_path / "plantstage.yaml"


def test_command_probe_and_version_command_on_the_flask_app(tmp_path: Path) -> None:
    spec = _spec_copy(tmp_path / "spec")
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "plantstage", "rehearse", str(spec), "--release",
                        "2.1.0", "--out", str(out)], env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    steps = {s["name"]: s for s in json.loads((out / "evidence.json").read_text())["steps"]}
    assert steps["provision"]["results"]["current_version"] == "2.0.0"
    assert steps["deploy"]["results"]["version"] == "2.1.0"
    assert steps["switch"]["results"]["through_router"] == \
        "TCP connected, version read by a command in the release's folder at deploy"

"""Helpers shared by the mixing plant tests: releases, generated data, the app's CLI."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

sys.dont_write_bytecode = True  # never write __pycache__ into the release artifacts

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mixing-plant"
RELEASES = EXAMPLE / "releases"
GENERATE = EXAMPLE / "generate.py"


def load_release(name: str) -> ModuleType:
    """Import releases/<name>/mixingplant under its own alias (several versions per process)."""
    alias = "mixingplant_" + "".join(c if c.isalnum() else "_" for c in name)
    if alias not in sys.modules:
        pkg = RELEASES / name / "mixingplant"
        spec = importlib.util.spec_from_file_location(
            alias, pkg / "__init__.py", submodule_search_locations=[str(pkg)])
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[alias] = module
        spec.loader.exec_module(module)
        for sub in ("db", "migrate", "plant", "app", "integrations", "cli"):
            importlib.import_module(f"{alias}.{sub}")
    return sys.modules[alias]


def env_for(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MQTT_URL", "WMS_URL")}
    return {**env, "DATABASE_URL": url, "PYTHONDONTWRITEBYTECODE": "1"}


def app_cli(release: str, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m mixingplant ARGS`` in a release folder, as the operator runs it."""
    return subprocess.run([sys.executable, "-m", "mixingplant", *args], cwd=RELEASES / release,
                          env=env_for(url), capture_output=True, text=True, timeout=120)


def generate(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(GENERATE), "--url", f"sqlite:///{path}", *extra],
                          env=env_for(""), capture_output=True, text=True, timeout=120)

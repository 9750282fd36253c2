"""The layer rules in .importlinter hold: no import circle, nothing imports the CLI or the verbs
layer back, and spec/ imports no feature package (docs/architecture.md, "Layers")."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is a dev dependency: pip install -e '.[dev]'"
    # grimp reads the source tree; an editable install's import hook is not enough for it.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([exe, "--no-cache", "--config", str(ROOT / ".importlinter")], cwd=ROOT,
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout

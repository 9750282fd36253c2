"""The report in a real headless browser (Debian's chromium): it renders, the verdict is
visible, the charts have data, and the page requests nothing from anywhere."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
requires_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (.ci/run installs it: "
    "apt-get install -y chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--hide-scrollbars"]


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=90)


@requires_chromium
def test_report_renders_in_chromium(recorded_run, tmp_path):
    report = recorded_run / "report.html"
    html = report.read_text()
    # Nothing can leave the page: the CSP forbids every fetch, and there is nothing to fetch.
    assert "default-src 'none'" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "<script" not in html and "<link" not in html

    shot = tmp_path / "report.png"
    r = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2400",
                  "--virtual-time-budget=3000", report.as_uri())
    assert shot.exists() and shot.stat().st_size > 10_000, r.stderr[-2000:]
    # The verdict banner is at the top, in its colour: sample the first screen.
    from PIL import Image

    img = Image.open(shot).convert("RGB")
    w, _ = img.size
    greens = sum(1 for x in range(0, w, 4) for y in range(60, 260, 4)
                 if img.getpixel((x, y)) == (0x1B, 0x7F, 0x3B))
    assert greens > 200, "the GO banner is not visible in the screenshot"

    r = _chromium(tmp_path, "--dump-dom", "--virtual-time-budget=3000",
                  "--enable-logging=stderr", "--v=0", report.as_uri())
    dom = r.stdout
    assert 'id="verdict">GO' in dom
    points = {m.group(1): int(m.group(2)) for m in
              re.finditer(r'<svg class="chart" id="([^"]+)" data-points="(\d+)"', dom)}
    assert set(points) >= {"chart-throughput", "chart-latency", "chart-queue"}, points
    assert all(n > 0 for n in points.values()), points
    assert dom.count("<circle") >= sum(points.values())
    assert 'id="signoffs"' in dom and "not required this run" in dom
    assert 'id="fidelity"' in dom and "simulated" in dom
    # The phases side by side, and each paired verdict drawn as an interval against its
    # threshold, linked from its gate row.
    assert 'id="phases"' in dom and dom.count('<table class="phases"') >= 2
    assert "paired old" in dom and "candidate" in dom
    cards = re.findall(r'<div class="paired-card" id="(paired-\d+)"', dom)
    assert cards and dom.count('<svg class="interval"') == len(cards), cards
    assert all(f'href="#{c}"' in dom for c in cards)
    # Chromium logs any blocked or failed load; there must be none.
    assert "Refused to" not in r.stderr and "net::ERR" not in r.stderr, r.stderr[-2000:]


def test_markup_in_any_string_of_a_real_run_is_rendered_as_text(recorded_run):
    """Every string of a real run's evidence (sections, gates, steps …) carrying markup."""
    import json

    from plantstage.evidence.bundle import read_series
    from plantstage.evidence.report import render_report

    payload = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'

    def inject(obj):
        if isinstance(obj, dict):
            return {k: inject(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [inject(v) for v in obj]
        return obj + payload if isinstance(obj, str) else obj

    evidence = json.loads((recorded_run / "evidence.json").read_text())
    page = render_report(inject(evidence), series=read_series(recorded_run))
    assert "<script" not in page and "<img" not in page and payload not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") > 50
    assert page.count('<svg class="chart"') >= 3  # the charts plantstage draws still render
    assert page.count('<svg class="interval"') >= 1  # … and the paired verdicts' intervals

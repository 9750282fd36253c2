"""The report in a real headless browser (Debian's chromium, driven by Selenium through Debian's
chromium-driver): it renders, requests nothing from anywhere, and reads in 30 seconds — the
verdict and every gate row in the first screen of a laptop (1366×768), no table wider than the
page at laptop and desktop (1920×1080) widths, on a GO run, a NO-GO run (a sample defect) and a
run whose rollback drill recorded a recovery timeline. Screenshots are saved under tmp_path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import chromium_driver, requires_chromedriver, run_cli

pytestmark = pytest.mark.slow

SIZES = [(1366, 768), (1920, 1080)]
BANNER = {"GO": (0x1B, 0x7F, 0x3B), "NO-GO": (0xB3, 0x26, 0x1E)}


@pytest.fixture(scope="module")
def driver():
    d = chromium_driver()
    try:
        yield d
    finally:
        d.quit()


@pytest.fixture(scope="module")
def nogo_run(tmp_path_factory, production_db, signing_key_dir) -> Path:
    """A finished demo rehearsal of a defective release: the retry storm (NO-GO on the WMS
    calls per transaction, a count ratio: no machine noise can make it pass)."""
    out = tmp_path_factory.mktemp("nogo") / "run"
    r = run_cli("demo", "--release", "1.1.0-retry-storm", "--out", str(out),
                env={"PLANTSTAGE_KEY_DIR": str(signing_key_dir)})
    assert r.returncode == 1, r.stdout + r.stderr
    return out


def _drill_page(recorded_run: Path, dest: Path) -> Path:
    """The recorded run's report re-rendered with a rollback drill that recorded its recovery
    timeline and missed its RTO (the drill step's contract, docs/evidence.md)."""
    from plantstage.evidence.bundle import read_series
    from plantstage.evidence.report import render_report

    ev = json.loads((recorded_run / "evidence.json").read_text())
    step = next(s for s in ev["steps"] if s["name"] == "rollback-drill")
    step["results"].update({
        "kind": "restore",
        "timeline": [{"event": "backup taken", "start": 0.0, "seconds": 1.2},
                     {"event": "failure", "start": 14.0, "seconds": None},
                     {"event": "decision", "start": 14.0, "seconds": 3.0},
                     {"event": "restore", "start": 17.0, "seconds": 6.4},
                     {"event": "replay", "start": 23.4, "seconds": 2.1},
                     {"event": "reconciled", "start": 25.5}],
        "objectives": {"rto_seconds": 10.0, "rto_measured": 12.3, "rpo_target": 0,
                       "rpo_lost": 3, "lost_ids": ["C-1001", "C-1002", "C-1003"]}})
    gate = next(g for g in ev["gates"] if g["name"] == "restore-within-rto")
    gate.update(outcome="fail", value=12.3, threshold="≤ 10 s (RTO)")
    ev["verdict"] = "NO-GO"
    dest.mkdir(parents=True, exist_ok=True)
    page = dest / "report.html"
    page.write_text(render_report(ev, series=read_series(recorded_run)))
    return page


def _open(driver, page: Path, width: int, height: int) -> None:
    """Load the page with a viewport (innerWidth × innerHeight) of exactly width × height."""
    driver.set_window_size(width, height)
    driver.get(page.as_uri())
    iw, ih = driver.execute_script("return [innerWidth, innerHeight]")
    driver.set_window_size(2 * width - iw, 2 * height - ih)
    assert driver.execute_script("return [innerWidth, innerHeight]") == [width, height]


RECTS = """
const r = e => { const b = e.getBoundingClientRect();
                 return {top: b.top, bottom: b.bottom, left: b.left, right: b.right,
                         width: b.width, height: b.height}; };
return {
  verdict: r(document.getElementById('verdict')),
  why: document.getElementById('verdict-why').textContent,
  gateRows: [...document.querySelectorAll('#gates tr')].map(t => ({cls: t.className,
                                                                   text: t.textContent, ...r(t)})),
  tables: [...document.querySelectorAll('table')].filter(t => t.getClientRects().length)
            .map(t => ({id: t.id, ...r(t)})),
  explain: [...document.querySelectorAll('#explain svg')].map(s => ({id: s.id, ...r(s)})),
  svgs: [...document.querySelectorAll('svg')].filter(s => s.getClientRects().length)
          .map(s => ({id: s.id, ...r(s)})),
  scrollWidth: document.documentElement.scrollWidth,
  innerWidth: innerWidth, innerHeight: innerHeight,
};
"""


def _check_first_screen(driver, page: Path, verdict: str, shots: Path, name: str) -> dict:
    from PIL import Image

    out = {}
    for width, height in SIZES:
        _open(driver, page, width, height)
        m = driver.execute_script(RECTS)
        shot = shots / f"{name}-{width}x{height}.png"
        driver.save_screenshot(str(shot))
        out[width] = m
        # The page is never wider than the window: no table, chart or line sticks out.
        assert m["scrollWidth"] <= m["innerWidth"], (name, width, m["scrollWidth"])
        wide = [t for t in m["tables"] if t["right"] > m["innerWidth"] + 0.5]
        assert not wide, (name, width, wide)
        assert all(s["right"] <= m["innerWidth"] + 0.5 for s in m["svgs"]), (name, width)
        # The verdict, its reason and every gate row are in the first screen.
        if width == 1366:
            assert 0 <= m["verdict"]["top"] and m["verdict"]["bottom"] <= m["innerHeight"]
            assert m["why"].strip()
            assert len(m["gateRows"]) > 10  # the demo's gates and the header
            low = [g for g in m["gateRows"] if g["bottom"] > m["innerHeight"]]
            assert not low, (name, f"{len(low)} gate rows below the first screen")
        # … nor when every folded table is opened.
        driver.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
        opened = driver.execute_script(RECTS)
        assert next(t for t in opened["tables"] if t["id"] == "parity")["height"] > 0
        assert opened["scrollWidth"] <= opened["innerWidth"], (name, width, "opened")
        wide = [t for t in opened["tables"] if t["right"] > opened["innerWidth"] + 0.5]
        assert not wide, (name, width, "opened", wide)
        # The banner is in its colour in the screenshot, at the top.
        img = Image.open(shot).convert("RGB")
        top = int(m["verdict"]["top"]) + 4
        coloured = sum(1 for x in range(0, width, 4) for y in range(top, top + 30, 3)
                       if img.getpixel((x, y)) == BANNER[verdict])
        assert coloured > 200, f"the {verdict} banner is not visible in {shot.name}"
    return out


@requires_chromedriver
def test_report_renders_in_chromium_and_loads_nothing(driver, recorded_run):
    report = recorded_run / "report.html"
    html = report.read_text()
    # Nothing can leave the page: the CSP forbids every fetch, and there is nothing to fetch.
    assert "default-src 'none'" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "<script" not in html and "<link" not in html

    _open(driver, report, 1366, 768)
    dom = driver.page_source
    assert driver.find_element("id", "verdict").text.startswith("GO")
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
    paired = dom[dom.index('<section id="paired">'):dom.index('<section id="phases">')]
    cards = re.findall(r'<div class="paired-card" id="(paired-\d+)"', paired)
    assert cards and paired.count('<svg class="interval"') == len(cards), cards
    assert all(f'href="#{c}"' in dom for c in cards)
    # A GO run has nothing to explain; the long tables are folded.
    assert 'id="explain"' not in dom
    assert not driver.find_element("id", "fault-timeline").get_attribute("open")
    assert not driver.find_element("id", "parity").is_displayed()
    # Chromium logs any blocked or failed load; there must be none.
    logs = [entry["message"] for entry in driver.get_log("browser")]
    assert not [m for m in logs if "Refused to" in m or "net::ERR" in m], logs


@requires_chromedriver
def test_go_report_first_screen_at_laptop_and_desktop(driver, recorded_run, tmp_path):
    _check_first_screen(driver, recorded_run / "report.html", "GO", tmp_path, "go")


@requires_chromedriver
def test_nogo_report_shows_what_explains_the_failure(driver, nogo_run, tmp_path):
    m = _check_first_screen(driver, nogo_run / "report.html", "NO-GO", tmp_path, "nogo")
    assert m[1366]["why"].startswith("wms-calls-per-transaction fail: the new version calls")
    # The failed gate's ratio against its threshold: next to the gates on a desktop (in its
    # first screen), under them on a laptop; it fits the page.
    anchor = driver.find_element("css selector", "#gates a[href^='#paired-']")
    assert anchor.text == "wms-calls-per-transaction"
    chart = "explain-" + anchor.get_attribute("href").rpartition("#")[2] + "-chart"
    for width, _ in SIZES:
        explain = m[width]["explain"]
        assert explain and explain[0]["id"] == chart, explain
        assert all(0 < s["width"] and s["right"] <= width for s in explain)
    assert m[1920]["explain"][0]["bottom"] < m[1920]["innerHeight"]
    # The failing gate leads the table, its reason under it, the passing ones after.
    rows = m[1366]["gateRows"]
    assert rows[1]["cls"] == "row-fail" and rows[1]["text"].startswith("wms-calls")
    assert rows[2]["cls"] == "why-row row-fail" and "retry storm" in rows[2]["text"]
    assert "row-fail" not in {r["cls"] for r in rows[3:]}


@requires_chromedriver
def test_recovery_timeline_in_the_browser(driver, recorded_run, tmp_path):
    page = _drill_page(recorded_run, tmp_path / "drill")
    m = _check_first_screen(driver, page, "NO-GO", tmp_path, "drill")
    assert m[1366]["why"].startswith("restore-within-rto fail")
    for width, _ in SIZES:
        chart = [s for s in m[width]["explain"] if s["id"] == "explain-recovery-timeline"]
        assert chart and chart[0]["height"] > 60, m[width]["explain"]
    timeline = driver.find_element("id", "recovery-timeline")
    assert timeline.get_attribute("data-events") == "6"
    assert driver.find_element("id", "recovery-objectives").text.startswith(
        "restore · RTO 12.3 s measured against 10 s · RPO 3 lost against 0 allowed")


def test_markup_in_any_string_of_a_real_run_is_rendered_as_text(recorded_run):
    """Every string of a real run's evidence (sections, gates, steps …) carrying markup."""
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


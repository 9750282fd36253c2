"""`plantstage serve` in a real headless browser (Debian's chromium via chromium-driver): it lists
the sample plant's runs, shows a signal's trend over five rehearsals, and compares two runs."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, chromium_driver, requires_chromedriver

pytestmark = pytest.mark.slow

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(served_runs):
    """`plantstage serve RUNS` as a user starts it; yields its base URL."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "plantstage", "serve", str(served_runs),
                             "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ})
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(base + "/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"serve exited: {proc.stderr.read()}")
                time.sleep(0.1)
        else:
            pytest.fail("serve did not answer in 15 s")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def browser(tmp_path):
    driver = chromium_driver("--window-size=1366,900", f"--user-data-dir={tmp_path / 'profile'}")
    try:
        yield driver
    finally:
        driver.quit()


def _evidence(run: Path) -> dict:
    return json.loads((run / "evidence.json").read_text())


@requires_chromedriver
def test_runs_trend_and_compare_in_chromium(server, browser, served_runs, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 20)

    runs = {p.name: _evidence(p) for p in served_runs.iterdir()}

    # 1. The sample plant's runs, with their verdicts.
    browser.get(server + "/")
    section = browser.find_element(By.CSS_SELECTOR, 'section[data-spec="sample-plant"]')
    rows = section.find_elements(By.CSS_SELECTOR, "tr.run")
    assert len(rows) == 5
    shown = {r.get_attribute("data-run"): r.find_element(By.CSS_SELECTOR, ".verdict").text
             for r in rows}
    assert shown == {k: ev["verdict"] for k, ev in runs.items()}
    browser.save_screenshot(str(tmp_path / "runs.png"))

    # 2. A signal's trend over the five rehearsals, chosen in the page's form.
    browser.find_element(By.LINK_TEXT, "Trends").click()
    wait.until(ec.url_contains("/trends"))
    signal = "workload.candidate.sales-order-import.p95_ms"
    Select(browser.find_element(By.ID, "signal")).select_by_value(signal)
    browser.find_element(By.ID, "show").click()
    wait.until(ec.url_contains("signal="))
    chart = browser.find_element(By.ID, "trend")
    assert chart.get_attribute("data-points") == "5"
    assert chart.size["width"] > 300 and chart.size["height"] > 150  # drawn, not empty
    points = chart.find_elements(By.CSS_SELECTOR, "circle.point")
    assert len(points) == 5
    gos = sorted((k for k, ev in runs.items() if ev["verdict"] == "GO"),
                 key=lambda k: runs[k]["started_at"])
    if gos:  # (a loaded machine can leave every good run INCONCLUSIVE: nothing to ring)
        assert browser.find_element(By.ID, "last-go").get_attribute("data-run") == gos[-1]
    assert signal in browser.find_element(By.TAG_NAME, "h2").text
    browser.save_screenshot(str(tmp_path / "trend.png"))

    # 3. Two runs side by side: a GO and the NO-GO, gates and signals with their differences.
    no_go = next(k for k, ev in runs.items() if ev["verdict"] == "NO-GO")
    go = next(k for k, ev in runs.items() if ev["verdict"] != "NO-GO")
    browser.find_element(By.LINK_TEXT, "Compare").click()
    wait.until(ec.url_contains("/compare"))
    Select(browser.find_element(By.ID, "run-a")).select_by_value(go)
    Select(browser.find_element(By.ID, "run-b")).select_by_value(no_go)
    browser.find_element(By.ID, "compare").click()
    wait.until(ec.url_contains("a="))
    assert runs[go]["verdict"] in browser.find_element(By.ID, "side-a").text
    assert "NO-GO" in browser.find_element(By.ID, "side-b").text
    changed = browser.find_elements(By.CSS_SELECTOR, "table.compare-gates tr.changed")
    failed = {g["name"] for g in runs[no_go]["gates"] if g["outcome"] == "fail"}
    assert failed <= {r.find_element(By.TAG_NAME, "td").text for r in changed}
    assert len(browser.find_elements(By.CSS_SELECTOR, "#compare-signals tbody tr")) > 10
    browser.save_screenshot(str(tmp_path / "compare.png"))

    # 4. The run's report, served as it is, opens from the run's page.
    browser.get(f"{server}/runs/{no_go}")
    browser.find_element(By.ID, "report-link").click()
    wait.until(ec.url_contains("/report"))
    assert browser.find_element(By.ID, "verdict").text.split()[0] == "NO-GO"

    # Nothing was blocked or failed to load on any page (the CSP allows all the pages use).
    problems = [e for e in browser.get_log("browser")
                if e["level"] == "SEVERE" or "Content Security Policy" in e["message"]]
    assert not problems, problems
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)

"""The page in a real browser: Debian's headless Chromium driven by Selenium (system
chromedriver, no browser download) against a daemon over real Claude Code transcripts.
Screenshots land in the test's tmp dir (and in $CCOTEL_SCREENSHOTS when set)."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import free_port
from tests.oracle import ccusage_totals
from tests.test_live import start
from tests.test_web import get

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def site(real_claude_home, tmp_path_factory):
    state = tmp_path_factory.mktemp("web-browser-state")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCOTEL_")}
    env["CCOTEL_TRACES"] = "false"
    # Budgets the real sessions overrun (hour: red) and nearly reach (day: amber).
    spent = ccusage_totals(real_claude_home.config_dir)["totalCost"]
    env["CCOTEL_BUDGET_HOURLY_USD"] = str(spent * 0.5)
    env["CCOTEL_BUDGET_DAILY_USD"] = str(spent / 0.9)
    proc = start(real_claude_home.config_dir, state, port, env)
    try:
        yield port, real_claude_home
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def chromium(profile: Path) -> webdriver.Chrome:
    """Debian's headless Chromium through its chromedriver: no browser download, no network."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
    ):
        opts.add_argument(a)
    return webdriver.Chrome(options=opts, service=Service(DRIVER))


@pytest.fixture
def browser(tmp_path):
    assert Path(CHROMIUM).exists() and Path(DRIVER).exists(), (
        "run scripts/install-test-deps (apt chromium chromium-driver)"
    )
    d = chromium(tmp_path / "profile")
    try:
        yield d
    finally:
        d.quit()


def wait(d, seconds: float) -> WebDriverWait:
    """Waits that survive the page's auto-refresh replacing an element mid-check."""
    return WebDriverWait(d, seconds, ignored_exceptions=(StaleElementReferenceException,))


def ready(d) -> None:
    wait(d, 20).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))


def shot(d, tmp_path: Path, name: str) -> Path:
    p = tmp_path / f"{name}.png"
    assert d.save_screenshot(str(p)) and p.stat().st_size > 10_000
    out = os.environ.get("CCOTEL_SCREENSHOTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, Path(out) / p.name)
    return p


def scheme(d, dark: bool) -> None:
    d.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]},
    )


@pytest.mark.timeout(300)
def test_overview_then_session(site, browser, tmp_path):
    port, home = site
    d = browser
    want = ccusage_totals(home.config_dir)["totalCost"]
    d.get(f"http://127.0.0.1:{port}/")
    ready(d)
    month = float(d.find_element(By.CSS_SELECTOR, "#month .big").get_attribute("data-usd"))
    assert month == pytest.approx(want, rel=1e-6)
    rows = d.find_elements(By.CSS_SELECTOR, "#sessions tbody tr[data-id]")
    assert {r.get_attribute("data-id") for r in rows} == set(home.session_ids)
    shown = sum(
        float(r.find_element(By.CSS_SELECTOR, "td.cost").get_attribute("data-usd")) for r in rows
    )
    assert shown == pytest.approx(want, rel=1e-6)
    assert d.find_elements(By.CSS_SELECTOR, "#hourly svg rect"), "the hourly chart has bars"
    assert "files" in d.find_element(By.ID, "health").text
    assert d.find_elements(By.CSS_SELECTOR, "#hour .bar.bad"), "over the hourly budget: red"
    assert d.find_elements(By.CSS_SELECTOR, "#today .bar.warn"), "90% of the daily budget: amber"
    assert "90% of" in d.find_element(By.ID, "today").text
    assert d.find_elements(By.CSS_SELECTOR, "#hourly line.budget"), "the hourly budget line"
    shot(d, tmp_path, "overview-light")
    scheme(d, True)
    shot(d, tmp_path, "overview-dark")
    scheme(d, False)

    # Toggle the charts to projects; the legend names a project.
    d.find_element(By.CSS_SELECTOR, "#by button[data-by=project]").click()
    proj = get(port, "/api/sessions?limit=1")["sessions"][0]["project"]
    wait(d, 10).until(lambda d: proj in d.find_element(By.CSS_SELECTOR, "#hourly .legend").text)

    # Search by id, then click through to the Agent session.
    agent = home.run("agent").session_id
    box = d.find_element(By.ID, "q")
    box.send_keys(agent[:8])
    wait(d, 10).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#sessions tbody tr[data-id]")) == 1
    )
    d.find_element(By.CSS_SELECTOR, f"#sessions tr[data-id='{agent}'] a").click()
    wait(d, 20).until(lambda d: d.find_elements(By.ID, "waterfall"))
    assert d.find_element(By.CSS_SELECTOR, "#session-head h2").text == agent
    api = get(port, f"/api/sessions/{agent}")
    assert float(d.find_element(By.ID, "session-cost").get_attribute("data-usd")) == pytest.approx(
        api["cost_usd"], rel=1e-9
    )
    trs = d.find_elements(By.CSS_SELECTOR, "#waterfall tr")
    assert len(trs) == len(api["spans"])
    (sub,) = d.find_elements(By.CSS_SELECTOR, "#waterfall tr.agent")
    parent = d.find_element(
        By.CSS_SELECTOR, f"#waterfall tr[data-span='{sub.get_attribute('data-parent')}']"
    )
    assert "tool" in parent.get_attribute("class") and "Agent" in parent.text
    assert int(sub.get_attribute("data-depth")) == int(parent.get_attribute("data-depth")) + 1
    link = d.find_element(By.ID, "trace-link").get_attribute("href")
    assert agent.replace("-", "") in link
    shot(d, tmp_path, "session-agent-light")
    scheme(d, True)
    shot(d, tmp_path, "session-agent-dark")
    scheme(d, False)

    # The failing Bash is marked, at half a laptop screen.
    d.set_window_size(760, 900)
    d.get(f"http://127.0.0.1:{port}/#/session/{home.run('error').session_id}")
    ready(d)
    wait(d, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#waterfall tr"))
    (failed,) = d.find_elements(By.CSS_SELECTOR, "#waterfall tr.failed")
    assert "Bash" in failed.text and "failed" in failed.text
    assert d.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth + 1"
    ), "no horizontal scroll"
    shot(d, tmp_path, "session-error-narrow")

    # Back to the list; it refreshes itself (a new fetch, no reload).
    d.get(f"http://127.0.0.1:{port}/")
    ready(d)
    d.execute_script("window.__mark = 1; document.body.dataset.ready = ''")
    ready(d)
    assert d.execute_script("return window.__mark") == 1
    d.set_window_size(760, 900)
    shot(d, tmp_path, "overview-narrow")

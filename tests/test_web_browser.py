"""The page in a real browser: Debian's headless Chromium driven by Selenium (system
chromedriver, no browser download) against daemons over real Claude Code transcripts.
Screenshots land in the test's tmp dir (and in $CCOTEL_SCREENSHOTS when set).

No assertion reads the wall clock: budgets are set from what the daemon reports as the
trailing hour and 24 hours, and the month card is compared with the API."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shutil
import signal
import time
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
from tests.test_web import get, report, web_home  # noqa: F401 (a fixture)

pytestmark = pytest.mark.serial  # timing a busy machine would break: run alone

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCOTEL_", "OTEL_"))}
    return env | {"CCOTEL_TRACES": "false"} | extra


def stop(proc) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def site(web_home, tmp_path_factory):  # noqa: F811
    """A daemon with budgets the sessions overrun (hour: half its spend, red) and nearly reach
    (24 h: its spend is 90%, amber, so the line sits above the bars)."""
    home, wander = web_home
    state = tmp_path_factory.mktemp("web-browser-state")
    proc = start(home.config_dir, state, 0, clean_env())
    port = proc.port
    try:
        s = get(port, "/api/summary")
    finally:
        stop(proc)
    hour, day = s["this_hour_usd"], s["last_24h_usd"]
    assert hour > 0 and day > 0, "the sessions were made at the start of the suite, minutes ago"
    budgets = {
        "CCOTEL_BUDGET_HOURLY_USD": repr(hour * 0.5),
        "CCOTEL_BUDGET_DAILY_USD": repr(day / 0.9),
    }
    proc = start(home.config_dir, state, 0, clean_env(**budgets))
    try:
        yield proc.port, state, home, wander
    finally:
        stop(proc)


def chromium(profile: Path, *extra: str) -> webdriver.Chrome:
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
        *extra,
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


def read(d, fn, seconds: float = 30):
    """What ``fn(d)`` reads from the page, read again from the start when the page's
    refresh (every 5 s) replaced an element midway: on a loaded machine a read of several
    elements can straddle one, and an element found before it is stale after."""
    return wait(d, seconds).until(lambda d: (fn(d),))[0]


def attr(d, sel: str, name: str) -> str | None:
    return read(d, lambda d: d.find_element(By.CSS_SELECTOR, sel).get_attribute(name))


def text(d, sel: str) -> str:
    return read(d, lambda d: d.find_element(By.CSS_SELECTOR, sel).text)


def click(d, sel: str) -> None:
    read(d, lambda d: d.find_element(By.CSS_SELECTOR, sel).click() or True)


def ready(d) -> None:
    wait(d, 30).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))


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


def usd(el) -> float:
    return float(el.get_attribute("data-usd"))


def css(d, sel: str):
    return d.find_elements(By.CSS_SELECTOR, sel)


def check_axis(d, chart: str, budget: float) -> None:
    """Round ticks (1, 2, 2.5 or 5 times a power of ten); the axis holds the budget; the
    budget line is drawn at its value."""

    def axis(d):
        svg = css(d, f"{chart} svg")[0]
        lines = [x.get_attribute("data-usd") for x in css(d, f"{chart} line.budget")]
        return (float(svg.get_attribute("data-step")), float(svg.get_attribute("data-max")),
                [t.text for t in css(d, f"{chart} text.tick")], lines)  # fmt: skip

    step, top, ticks, lines = read(d, axis)
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(abs(mantissa - m) < 1e-9 for m in (1, 2, 2.5, 5)), step
    assert ticks and all(re.fullmatch(r"\$\d+(\.\d+)?", t) for t in ticks), ticks
    values = [float(t[1:]) for t in ticks]
    assert values[0] == 0 and all(
        abs(b - a - step) < step * 1e-6 for a, b in itertools.pairwise(values)
    )
    assert top >= budget and abs(values[-1] - top) < step * 1e-6
    (line,) = lines
    assert float(line) == pytest.approx(budget, rel=1e-9)


@pytest.mark.timeout(420)
def test_overview_then_sessions(site, browser, tmp_path):
    port, state, home, wander = site
    d = browser
    want = ccusage_totals(home.config_dir)["totalCost"]
    s = get(port, "/api/summary")
    d.get(f"http://127.0.0.1:{port}/")
    ready(d)
    assert float(attr(d, "#all-time", "data-usd")) == pytest.approx(want, rel=1e-6)
    assert float(attr(d, "#month .big", "data-usd")) == pytest.approx(
        get(port, "/api/summary")["this_month_usd"], rel=1e-9
    )
    rows = read(d, lambda d: [(r.get_attribute("data-id"), usd(r.find_element(By.CSS_SELECTOR, "td.cost")))
                              for r in css(d, "#sessions tbody tr[data-id]")])  # fmt: skip
    assert {i for i, _ in rows} == set(home.session_ids)
    assert sum(c for _, c in rows) == pytest.approx(want, rel=1e-6)
    assert css(d, "#hourly svg rect"), "the hourly chart has bars"
    health = text(d, "#health"), attr(d, "#health", "data-level")
    assert "files" in health[0] and health[1] == "muted", health
    assert css(d, "#hour .bar.bad"), "over the hourly budget: red"
    assert css(d, "#day .bar.warn"), "90% of the daily budget: amber"
    assert "90% of" in text(d, "#day")
    # Both budget lines are drawn: the hourly one under the spend, the daily one above every bar.
    check_axis(d, "#hourly", s["budgets"]["hourly_usd"])
    check_axis(d, "#daily", s["budgets"]["daily_usd"])
    line_y, bar_tops = read(d, lambda d: (float(css(d, "#daily line.budget")[0].get_attribute("y1")),
                                          [float(r.get_attribute("y")) for r in css(d, "#daily svg rect")]))  # fmt: skip
    assert bar_tops and line_y < min(bar_tops), "the daily budget line sits above the spend"
    shot(d, tmp_path, "overview-light")
    scheme(d, True)
    shot(d, tmp_path, "overview-dark")
    scheme(d, False)

    # Sort marks follow the sort: last activity by default, then cost down, then cost up.
    def marks():
        return {
            th.get_attribute("data-sort"): th.text
            for th in css(d, "#sessions th[data-sort]")
            if th.text.endswith(("▲", "▼"))
        }

    assert read(d, lambda d: marks()) == {"last": "last activity ▼"}
    assert not css(d, "#sessions th:first-child[data-sort]"), "the id column is not a sort"
    ends = read(d, lambda d: [float(r.get_attribute("data-end"))
                              for r in css(d, "#sessions tbody tr[data-id]")])  # fmt: skip
    assert ends == sorted(ends, reverse=True)
    click(d, "#sessions th[data-sort=cost]")
    wait(d, 10).until(lambda d: marks() == {"cost": "cost ▼"})
    wait(d, 10).until(
        lambda d: (c := [usd(x) for x in css(d, "#sessions td.cost")]) == sorted(c, reverse=True)
    )
    click(d, "#sessions th[data-sort=cost]")
    wait(d, 10).until(lambda d: marks() == {"cost": "cost ▲"})
    wait(d, 10).until(lambda d: (c := [usd(x) for x in css(d, "#sessions td.cost")]) == sorted(c))
    click(d, "#sessions th[data-sort=last]")
    wait(d, 10).until(lambda d: marks() == {"last": "last activity ▼"})

    # Toggle the charts to projects; the legend names a project.
    click(d, "#by button[data-by=project]")
    wait(d, 10).until(lambda d: "sub" in d.find_element(By.CSS_SELECTOR, "#daily .legend").text)

    # Search by id, then click through to the Agent session: the root row is the session.
    agent = home.run("agent").session_id
    read(d, lambda d: (q := d.find_element(By.ID, "q")).clear() or q.send_keys(agent[:8]) or True)
    wait(d, 10).until(lambda d: len(css(d, "#sessions tbody tr[data-id]")) == 1)
    click(d, f"#sessions tr[data-id='{agent}'] a")
    wait(d, 20).until(lambda d: css(d, "#waterfall"))
    assert text(d, "#session-head h2") == agent
    api = get(port, f"/api/sessions/{agent}")
    row = {r["session"]: r for r in report(state, "session")["rows"]}[agent]
    tokens = (
        row["input_tokens"]
        + row["output_tokens"]
        + row["cache_read_tokens"]
        + row["cache_write_tokens"]
    )
    assert int(attr(d, "#waterfall tr.session td.t", "data-tokens")) == tokens
    assert int(attr(d, "#session-tokens", "data-tokens")) == tokens
    assert float(attr(d, "#waterfall tr.session td.c", "data-usd")) == pytest.approx(
        row["cost_usd"], rel=1e-9
    )
    assert float(attr(d, "#session-cost", "data-usd")) == pytest.approx(row["cost_usd"], rel=1e-9)
    assert read(d, lambda d: len(css(d, "#waterfall tr"))) == len(api["spans"])

    def agent_rows(d):
        (sub,) = css(d, "#waterfall tr.agent")
        parent = d.find_element(
            By.CSS_SELECTOR, f"#waterfall tr[data-span='{sub.get_attribute('data-parent')}']"
        )
        return (parent.get_attribute("class"), parent.text, int(sub.get_attribute("data-depth")),
                int(parent.get_attribute("data-depth")))  # fmt: skip

    classes, parent_text, depth, parent_depth = read(d, agent_rows)
    assert "tool" in classes and "Agent" in parent_text
    assert depth == parent_depth + 1
    assert agent.replace("-", "") in attr(d, "#trace-link", "href")
    shot(d, tmp_path, "session-agent-light")
    scheme(d, True)
    shot(d, tmp_path, "session-agent-dark")
    scheme(d, False)

    # The resumed session: active time, not 20 days; both sittings readable; turns collapse.
    d.get(f"http://127.0.0.1:{port}/#/session/{wander}")
    ready(d)
    wait(d, 20).until(lambda d: css(d, "#waterfall tr.turn"))
    w = get(port, f"/api/sessions/{wander}")
    assert float(attr(d, "#session-active", "data-s")) == pytest.approx(w["active_s"], rel=1e-9)
    active = text(d, "#session-active")
    assert "20d" in active and "wall clock" in active, active
    turns = read(d, lambda d: [(t.get_attribute("data-span"),
                                t.find_element(By.CSS_SELECTOR, ".seg").get_attribute("style"))
                               for t in css(d, "#waterfall tr.turn")])  # fmt: skip
    assert len(turns) == 2
    for _, style in turns:  # on the session axis with the 20 days cut out, each turn is wide
        width = float(re.search(r"width:\s*([\d.]+)%", style).group(1))
        assert width > 20, width
    first = turns[0][0]
    kids = read(
        d, lambda d: [k.is_displayed() for k in css(d, f"#waterfall tr[data-parent='{first}']")]
    )
    assert kids and all(kids)
    shot(d, tmp_path, "session-resumed-expanded")
    read(d, lambda d: css(d, f"#waterfall tr[data-span='{first}'] button.fold")[0].click() or True)
    wait(d, 5).until(
        lambda d: not any(k.is_displayed() for k in css(d, f"#waterfall tr[data-parent='{first}']"))
    )
    assert read(d, lambda d: all(r.is_displayed() for r in css(d, "#waterfall tr.turn")))
    time.sleep(6)  # a refresh comes and goes: the turn stays collapsed
    assert not read(
        d, lambda d: any(k.is_displayed() for k in css(d, f"#waterfall tr[data-parent='{first}']"))
    )
    shot(d, tmp_path, "session-resumed-collapsed")
    read(d, lambda d: css(d, f"#waterfall tr[data-span='{first}'] button.fold")[0].click() or True)
    wait(d, 5).until(
        lambda d: all(k.is_displayed() for k in css(d, f"#waterfall tr[data-parent='{first}']"))
    )
    read(d, lambda d: d.find_element(By.ID, "wf-collapse").click() or True)
    wait(d, 5).until(lambda d: len([r for r in css(d, "#waterfall tr") if r.is_displayed()]) == 3)

    # The failing Bash is marked, at half a laptop screen.
    d.set_window_size(760, 900)
    d.get(f"http://127.0.0.1:{port}/#/session/{home.run('error').session_id}")
    ready(d)
    wait(d, 20).until(lambda d: css(d, "#waterfall tr"))
    failed = read(d, lambda d: [f.text for f in css(d, "#waterfall tr.failed")])
    assert len(failed) == 1 and "Bash" in failed[0] and "failed" in failed[0], failed
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
    shot(d, tmp_path, "overview-narrow")


def wait_for_traces(port: int, want: str, seconds: float = 90) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        t = get(port, "/api/summary")["health"]["traces"]
        if t["state"] == want:
            return t
        assert time.monotonic() < deadline, t
        time.sleep(0.5)


@pytest.mark.timeout(300)
def test_trace_export_states_in_the_header(web_home, browser, tmp_path):  # noqa: F811
    """Zero configuration (no collector anywhere): no red, it says spans wait. A collector the
    user configured that refuses: red, saying so."""
    home, _ = web_home
    d = browser
    env = clean_env(CCOTEL_TRACES="true", CCOTEL_OTLP_RETRY_MAX="1")
    proc = start(home.config_dir, tmp_path / "zero", 0, env)
    port = proc.port
    try:
        wait_for_traces(port, "waiting")
        d.get(f"http://127.0.0.1:{port}/")
        ready(d)
        level, said = read(d, lambda d: (attr(d, "#health", "data-level"), text(d, "#health")))
        assert level == "muted", said
        assert "no collector configured or reachable yet" in said
        assert not css(d, "#health.err")
        shot(d, tmp_path, "zero-config")
    finally:
        stop(proc)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    proc = start(home.config_dir, tmp_path / "failing", 0, env | {"CCOTEL_OTLP_ENDPOINT": dead})
    port = proc.port
    try:
        wait_for_traces(port, "failing")
        d.get(f"http://127.0.0.1:{port}/")
        ready(d)
        wait(d, 10).until(
            lambda d: d.find_element(By.ID, "health").get_attribute("data-level") == "err"
        )
        assert "traces: export failing" in text(d, "#health")
        shot(d, tmp_path, "configured-collector-failing")
    finally:
        stop(proc)


@pytest.mark.timeout(180)
def test_dns_rebinding_gets_nothing(web_home, tmp_path):  # noqa: F811
    """Chromium resolves an outside name to 127.0.0.1, as a rebinding attack makes it: the page
    and the API refuse that name; the same daemon serves localhost."""
    home, _ = web_home
    proc = start(home.config_dir, tmp_path / "s", 0, clean_env())
    port = proc.port
    d = chromium(tmp_path / "profile", "--host-resolver-rules=MAP rebind.example 127.0.0.1")
    try:
        d.get(f"http://rebind.example:{port}/")
        body = d.find_element(By.TAG_NAME, "body").text
        assert "not a name of this server" in body and not css(d, "#view"), body
        d.get(f"http://rebind.example:{port}/api/summary")
        assert "cost_usd" not in d.page_source
        shot_path = tmp_path / "rebinding.png"
        d.save_screenshot(str(shot_path))
        d.get(f"http://localhost:{port}/")
        ready(d)
        assert css(d, "#sessions tbody tr[data-id]")
        raw = d.execute_script(
            "return fetch('/api/summary').then(r => r.json()).then(j => JSON.stringify(j.all_time))"
        )
        assert json.loads(raw)["cost_usd"] > 0
    finally:
        d.quit()
        stop(proc)

"""The report in a real headless Chromium (the system's, driven by Playwright): no console errors,
no network, tables and images render, injected script never runs, the trace filters work.

Chromium: ``$REASONLAB_CHROMIUM``, else ``chromium`` / ``chromium-browser`` / ``google-chrome`` on
PATH (Debian: ``apt-get install chromium``). Without one the test skips, unless
``REASONLAB_REQUIRE_BROWSER=1`` (CI sets it), where it fails.
"""
import os
import shutil

import pytest

from reasonlab.report.build import ReportConfig, build_report

from report_helpers import make_runs

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str | None:
    path = os.environ.get("REASONLAB_CHROMIUM")
    if path:
        return path if os.path.exists(path) else None
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


def _need(thing, why: str):
    if thing is None:
        if os.environ.get("REASONLAB_REQUIRE_BROWSER"):
            pytest.fail(f"{why} (REASONLAB_REQUIRE_BROWSER is set)")
        pytest.skip(why)
    return thing


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    _need(sync_playwright, "playwright is not installed (pip install -e '.[dev]')")
    exe = _need(chromium_path(), "no Chromium found: apt-get install chromium, or set REASONLAB_CHROMIUM")
    root = tmp_path_factory.mktemp("runs")
    info = make_runs(root)
    path = build_report(ReportConfig(runs=[str(root)]))
    events = {"errors": [], "requests": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: events["errors"].append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: events["errors"].append(str(e)))
        page.on("request", lambda r: events["requests"].append(r.url))
        page.goto(f"file://{path}", wait_until="load")
        yield page, info, events, tmp_path_factory.mktemp("shots")
        browser.close()


def visible_samples(page) -> int:
    return page.evaluate("Array.from(document.querySelectorAll('#trace-list .sample'))"
                         ".filter(s => s.offsetParent !== null).length")


def test_page_loads_offline_without_errors_and_injected_script_never_runs(browser_page):
    page, _, events, _ = browser_page
    assert events["errors"] == []
    assert [u for u in events["requests"] if not u.startswith(("file:", "data:"))] == []
    assert page.evaluate("window.__xss") is None
    assert page.evaluate("document.querySelectorAll('script').length") == 1


def test_tables_charts_and_images_render(browser_page):
    page, info, _, _ = browser_page
    rows = page.evaluate("document.querySelectorAll('#overview table tbody tr').length")
    assert rows == 4
    tables = "Array.from(document.querySelectorAll('table.data')).filter(t => t.offsetHeight > 0).length"
    assert page.evaluate(tables) >= 8
    assert page.evaluate("document.querySelectorAll('svg.chart polyline').length") >= 5
    sizes = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
    assert len(sizes) == info["pngs"] and all(done and width > 0 for done, width in sizes)


def test_filters_change_the_visible_traces(browser_page):
    page, info, _, shots = browser_page
    counts = info["counts"]
    page.screenshot(path=str(shots / "main.png"))
    assert visible_samples(page) == counts["all"]
    assert page.inner_text("#trace-count") == f"showing {counts['all']} of {counts['all']} completions"
    for verdict in ("correct", "wrong", "none", "all"):
        page.click(f"button.filter[data-filter={verdict}]")
        assert visible_samples(page) == counts[verdict], verdict
        assert page.get_attribute(f"button.filter[data-filter={verdict}]", "aria-pressed") == "true"
    page.select_option("#trace-run", "rl")
    assert visible_samples(page) == info["per_run"]["rl"]
    page.click("button.filter[data-filter=correct]")
    shown = page.evaluate("Array.from(document.querySelectorAll('#trace-list .sample'))"
                          ".filter(s => s.offsetParent !== null).map(s => s.dataset.verdict)")
    assert shown and set(shown) == {"correct"}
    page.locator("#traces").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "traces.png"))
    assert (shots / "main.png").stat().st_size > 10_000 and (shots / "traces.png").stat().st_size > 10_000


def test_nav_opens_a_collapsed_section(browser_page):
    page, _, _, _ = browser_page
    page.click("button[data-toggle-all=close]")
    assert page.evaluate("document.getElementById('run-sw').open") is False
    page.click("nav.top a[href='#run-sw']")
    assert page.evaluate("document.getElementById('run-sw').open") is True

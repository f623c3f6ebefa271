"""The HTML report in headless Chromium, offline: the plots render from the inlined plotly.js.

Network is blocked (every request that is not a local file is aborted), so a report that reached
for a CDN would show no plots and fail here. Needs Debian's chromium (``make browser``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from steadycast.report import write_report
from tests.browser.conftest import ARGS, ARTIFACTS, CHROMIUM
from tests.observability_workspace import Observed


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def report(observed: Observed, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser-report")
    return write_report(observed.ws, observed.published, root / "report.html")


def test_report_plots_render_offline(browser: object, report: Path, observed: Observed) -> None:
    from playwright.sync_api import Browser, Route

    assert isinstance(browser, Browser)
    blocked: list[str] = []

    def only_files(route: Route) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context = browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        page = context.new_page()
        page.route("**/*", only_files)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(report.as_uri())
        page.wait_for_selector("#steadycast-worst-series svg.main-svg", timeout=15_000)
        graphs = page.locator("div.plotly-graph-div").count()
        svgs = page.locator("svg.main-svg").count()
        # Every figure draws two svg layers; a figure that failed to draw has none.
        assert graphs == 2
        assert svgs >= 2 * graphs
        assert page.locator("#steadycast-sample-series .scatterlayer .trace").count() > 0
        assert page.title() == f"steadycast run {observed.published} (meters)"
        assert errors == []
        assert blocked == []  # nothing even tried to reach the network
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
    finally:
        context.close()

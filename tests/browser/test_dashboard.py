"""The dashboard in headless Chromium against a real server: overview, series plot, incident
acknowledgement and a rollback with the token, all offline (plotly.js is served by the app).

Every request that does not go to the test server is aborted, so a page that reached for a CDN
would show no plot and fail here. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from steadycast.ops.incidents import get_incident, raise_incident
from steadycast.server import create_app
from steadycast.storage import releases
from tests.browser.conftest import ARTIFACTS
from tests.server_workspace import PIPELINE, TOKEN, Served, running, served_workspace


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    return served_workspace(tmp_path_factory.mktemp("dashboard") / "copy")


@pytest.fixture(scope="module")
def base_url(served: Served) -> Iterator[str]:
    with running(create_app(served.ws, token=TOKEN)) as url:
        yield url


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


def test_dashboard_overview_series_incident_and_rollback(
    page: Any, base_url: str, served: Served
) -> None:
    releases.make_current(served.ws.releases_dir, PIPELINE, served.second)
    incident, _ = raise_incident(
        served.ws.control_path,
        "check:flat_line:meters:m2",
        PIPELINE,
        "check",
        "warning",
        "flat_line failed for series 'm2' <b>not bold</b>",
        "flat for 30 h",
        None,
    )
    answers: list[str] = []

    def answer(dialog: Any) -> None:
        answers.append(dialog.message)
        dialog.accept(TOKEN if "API token" in dialog.message else "browser test")

    page.on("dialog", answer)

    # Overview: the pipeline, its last run and current release.
    page.goto(base_url + "/")
    row = page.locator('#pipelines-table tr[data-pipeline="meters"]')
    row.wait_for()
    assert row.locator("td.current").inner_text() == served.second
    assert "published" in row.inner_text()
    shot(page, "overview")

    # Series explorer: search a series and see its plot, model and why.
    page.click('#tabs button[data-tab="series"]')
    page.fill("#series-input", "m1")
    page.click("#series-search")
    page.locator("#series-plot svg.main-svg").first.wait_for()
    info = page.locator("#series-info").inner_text()
    assert "Model:" in info and "Why:" in info and "null" not in info
    assert "forecast" in page.locator("#series-plot").inner_text()
    shot(page, "series")

    # Incidents: acknowledge with the token (asked for once, kept in sessionStorage).
    page.click('#tabs button[data-tab="incidents"]')
    title = page.locator(f'#incidents-table tr[data-id="{incident.id}"]')
    title.wait_for()
    assert "<b>not bold</b>" in title.inner_text()  # text, never markup
    page.click(f'.ack-button[data-id="{incident.id}"]')
    page.wait_for_function(
        "id => [...document.querySelectorAll('#incidents-table tr')].some("
        "r => r.dataset.id === id && r.querySelector('.state').textContent.includes('acknowledged'))",
        arg=str(incident.id),
    )
    assert get_incident(served.ws.control_path, incident.id).acknowledged_by == "api:api-token"
    assert any("API token" in m for m in answers)
    shot(page, "incidents")

    # Releases: roll back to the first release.
    page.click('#tabs button[data-tab="releases"]')
    page.click(f'.rollback-button[data-release="{served.first}"]')
    page.wait_for_function(
        "want => document.querySelector('#current-release').textContent === want",
        arg=served.first,
    )
    assert releases.current_id(served.ws.releases_dir, PIPELINE) == served.first
    assert sum("API token" in m for m in answers) == 1  # the token was remembered
    shot(page, "releases")

    # Data quality and resource hogs render their tables.
    page.click('#tabs button[data-tab="quality"]')
    page.locator("#quarantine-table tbody tr").first.wait_for()
    page.click('#tabs button[data-tab="hogs"]')
    page.locator("#hogs-pipelines tbody tr").first.wait_for()
    shot(page, "hogs")

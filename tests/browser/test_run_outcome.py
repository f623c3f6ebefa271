"""The truth on the screens, in headless Chromium: a held run approved from the dashboard shows
"held, then approved by NAME: REASON" there and in its report; a rollback from the dashboard
shows "rolled back by NAME: REASON" on the run whose release it replaced, there and in its
report. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import steadycast
from steadycast.pipeline.levers import rollback
from steadycast.report import write_report
from steadycast.server import create_app
from tests.browser.conftest import ARTIFACTS
from tests.observability_workspace import Observed
from tests.server_workspace import TOKEN, running

ACTOR = "api:api-token"  # who the server names for its token


@pytest.fixture(scope="module")
def held(observed: Observed, tmp_path_factory: pytest.TempPathFactory) -> tuple[Observed, str]:
    """A copy whose last run is held: back on the first release, the doubled day jumps again."""
    copy = observed.copy(tmp_path_factory.mktemp("outcome-browser"))
    rollback(copy.ws, "meters", "start over", to=_release_of(copy, copy.first))
    result = steadycast.run_pipeline(copy.ws, "meters")
    assert result.status == "held", result.error
    return copy, result.run_id


def _release_of(observed: Observed, run_id: str) -> str:
    from steadycast.storage.runlog import get_run

    run = get_run(observed.ws.control_path, run_id)
    assert run is not None and run["release_id"]
    return str(run["release_id"])


def _row_says(page: Any, text: str) -> str:
    row = page.locator('#pipelines-table tr[data-pipeline="meters"]')
    page.wait_for_function(
        "want => (document.querySelector('#pipelines-table tr[data-pipeline=\"meters\"]')"
        " || {}).innerText?.includes(want)",
        arg=text,
    )
    return str(row.inner_text())


def _report_says(page: Any, observed: Observed, run_id: str, path: Path) -> str:
    page.goto(write_report(observed.ws, run_id, path).as_uri())
    return str(page.locator(".outcome").first.inner_text())


def test_approve_and_rollback_are_shown_on_the_dashboard_and_in_the_report(
    page: Any, held: tuple[Observed, str], tmp_path: Path
) -> None:
    observed, run_id = held
    page.on("dialog", lambda d: d.accept(TOKEN if "API token" in d.message else "checked by hand"))
    with running(create_app(observed.ws, token=TOKEN)) as url:
        page.goto(url + "/")
        page.click(f'.approve-button[data-run="{run_id}"]')
        text = _row_says(page, f"held, then approved by {ACTOR}: checked by hand")
        assert "gate held it: total_jump" in text
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-approved.png"), full_page=True)

        page.click('#tabs button[data-tab="releases"]')
        first_release = _release_of(observed, observed.first)
        page.click(f'.rollback-button[data-release="{first_release}"]')
        page.wait_for_function(
            "want => document.querySelector('#current-release').textContent === want",
            arg=first_release,
        )
        page.click('#tabs button[data-tab="overview"]')
        _row_says(page, f"then rolled back by {ACTOR}: checked by hand")
        page.screenshot(path=str(ARTIFACTS / "dashboard-rolled-back.png"), full_page=True)

    said = _report_says(page, observed, run_id, tmp_path / "approved.html")
    assert said.startswith(f"held, then approved by {ACTOR}: checked by hand, then rolled back by")
    assert "Held because:" in page.locator("p.error").inner_text()
    first = _report_says(page, observed, observed.first, tmp_path / "first.html")
    assert f"made current again, rolled back by {ACTOR}: checked by hand" in first

"""A pipeline file that does not load is shown as broken on the dashboard, with its error, in
headless Chromium against a real server (offline: requests elsewhere are aborted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from steadycast.server import create_app
from steadycast.workspace import Workspace
from tests.browser.conftest import ARTIFACTS
from tests.pipelines import pipeline_toml
from tests.server_workspace import running


def test_the_overview_shows_a_broken_pipeline_as_broken(tmp_path: Path, page: Any) -> None:
    ws = Workspace.init(tmp_path / "ws")
    (ws.pipelines_dir / "example.toml").unlink()
    (ws.pipelines_dir / "good.toml").write_text(pipeline_toml(), encoding="utf-8")
    (ws.pipelines_dir / "typo.toml").write_text(pipeline_toml(extra="[modles]\n"), encoding="utf-8")

    with running(create_app(ws)) as base:
        page.goto(base + "/")
        broken = page.locator('#pipelines-table tr[data-pipeline="typo"]')
        broken.wait_for(timeout=15_000)
        assert "broken" in (broken.get_attribute("class") or "")
        assert broken.locator(".badge.broken").inner_text() == "broken"
        assert "modles: unknown key" in broken.locator(".config-error").inner_text()
        # Its incident, opened by the server loading the file, is counted on the same row.
        assert broken.locator("td.num").last.inner_text() == "1"
        good = page.locator('#pipelines-table tr[data-pipeline="good"]')
        assert good.locator(".badge.broken").count() == 0
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-broken.png"), full_page=True)

"""The page an alert links to: ``GET /api/v1/runs/{run_id}/report`` serves the run's HTML
report, the same page ``steadycast report`` writes, and an unknown run is a 404 that says where
to look."""

from __future__ import annotations

import httpx

from steadycast.server import create_app
from tests.observability_workspace import Observed
from tests.server_workspace import running


def test_the_report_an_alert_links_to_is_served(observed: Observed) -> None:
    with running(create_app(observed.ws)) as base:
        page = httpx.get(f"{base}/api/v1/runs/{observed.held}/report", timeout=60)
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert observed.held in page.text and "<html" in page.text.lower()
        assert str(observed.ws.root) not in page.text  # an open read shows no paths
        missing = httpx.get(f"{base}/api/v1/runs/no-such-run/report", timeout=60)
        assert missing.status_code == 404 and "no-such-run" in missing.text

"""``GET /metrics`` of a real server: counters that never go back across approve and rollback,
the standard process metrics, and request metrics per route template; and the textfile the CLI
writes for a machine with no server."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import steadycast
from steadycast.server import create_app
from steadycast.storage import releases
from tests.conftest import run_cli
from tests.observability_workspace import Observed
from tests.server_workspace import TOKEN, running

AUTH = {"Authorization": f"Bearer {TOKEN}"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: httpx.Client) -> tuple[Samples, Samples]:
    """All samples, and those of counters and histograms (which must never decrease)."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    every: Samples = {}
    rising: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            every[key] = s.value
            if family.type in ("counter", "histogram") and not s.name.endswith("_created"):
                rising[key] = s.value
    return every, rising


def at(found: Samples, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def assert_never_lower(before: Samples, after: Samples, step: str) -> None:
    lower = {k: (v, after.get(k)) for k, v in before.items() if after.get(k, -1.0) < v}
    assert not lower, f"counters went down or vanished after {step}: {lower}"


@pytest.fixture
def client(observed: Observed, tmp_path: Path) -> Iterator[tuple[Observed, httpx.Client]]:
    mine = observed.copy(tmp_path)
    with (
        running(create_app(mine.ws, token=TOKEN)) as url,
        httpx.Client(base_url=url, timeout=30) as c,
    ):
        yield mine, c


def test_counters_never_decrease_across_approve_rollback_and_a_run(
    client: tuple[Observed, httpx.Client],
) -> None:
    """The observed runs (published, held, published, failed), then an approval of the held
    run, a rollback and one more real run, scraped between each step."""
    obs, c = client
    gate = "steadycast_gate_decisions_total"
    steps: list[tuple[str, Samples]] = []
    found, rising = scrape(c)
    steps.append(("the runs", rising))
    assert at(found, gate, pipeline="meters", decision="held") == 1
    assert at(found, gate, pipeline="meters", decision="published") == 2
    assert at(found, gate, pipeline="meters", decision="approved") == 0
    assert at(found, "steadycast_runs_total", pipeline="other", status="failed") == 1

    approved = c.post(f"/api/v1/runs/{obs.held}/approve", json={"reason": "checked"}, headers=AUTH)
    assert approved.status_code == 200, approved.text
    found, rising = scrape(c)
    steps.append(("approve", rising))
    # The held run is published now; that it was held is history, and stays counted.
    assert at(found, gate, pipeline="meters", decision="held") == 1
    assert at(found, gate, pipeline="meters", decision="approved") == 1
    assert at(found, gate, pipeline="meters", decision="published") == 2
    assert at(found, "steadycast_runs_total", pipeline="meters", status="held") == 1
    assert at(found, "steadycast_runs_total", pipeline="meters", status="published") == 2

    rolled = c.post(
        "/api/v1/pipelines/meters/rollback", json={"reason": "approved too soon"}, headers=AUTH
    )
    assert rolled.status_code == 200, rolled.text
    found, rising = scrape(c)
    steps.append(("rollback", rising))
    assert at(found, gate, pipeline="meters", decision="rolled_back") == 1
    assert at(found, gate, pipeline="meters", decision="approved") == 1

    result = steadycast.run_pipeline(obs.ws, "meters")
    found, rising = scrape(c)
    steps.append(("a run", rising))
    assert at(found, "steadycast_runs_started_total", pipeline="meters") == 4
    ended = sum(
        at(found, "steadycast_runs_total", pipeline="meters", status=s)
        for s in ("published", "held", "failed")
    )
    assert ended == 4, result.status
    for (_, before), (step, after) in pairwise(steps):
        assert_never_lower(before, after, step)


def test_process_and_request_metrics(client: tuple[Observed, httpx.Client]) -> None:
    obs, c = client
    current = releases.current_id(obs.ws.releases_dir, "meters")
    forecast = c.get("/api/v1/pipelines/meters/forecast")
    assert forecast.status_code == 200 and forecast.headers["X-Steadycast-Release"] == current
    assert c.get("/api/v1/pipelines/nope/forecast").status_code == 404
    assert c.get(f"/api/v1/runs/{obs.held}").status_code == 200
    assert c.post("/api/v1/pipelines/meters/rollback", json={"reason": "x"}).status_code == 401
    assert c.get("/no/such/page").status_code == 404
    found, _ = scrape(c)
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "process_open_fds",
    ):
        assert found[(name, ())] > 0, name
    assert any(name == "python_info" for name, _ in found)
    assert any(name == "python_gc_collections_total" for name, _ in found)

    requests = "steadycast_http_requests_total"
    route = "/api/v1/pipelines/{pipeline}/forecast"
    # The forecast fast path answers before routing, and is still counted under its template.
    assert at(found, requests, method="GET", route=route, status="200") >= 1
    assert at(found, requests, method="GET", route=route, status="404") == 1
    assert at(found, requests, method="GET", route="/api/v1/runs/{run_id}", status="200") == 1
    rollback = "/api/v1/pipelines/{pipeline}/rollback"
    assert at(found, requests, method="POST", route=rollback, status="401") == 1
    assert at(found, requests, method="GET", route="unmatched", status="404") == 1
    routes = {dict(labels).get("route") for name, labels in found if name == requests}
    assert not {r for r in routes if r and ("meters" in r or "nope" in r)}, routes
    hist = "steadycast_http_request_duration_seconds"
    count = at(found, f"{hist}_count", method="GET", route=route)
    assert count == at(found, f"{hist}_bucket", method="GET", route=route, le="+Inf") >= 2
    assert 0 < at(found, f"{hist}_sum", method="GET", route=route) < 60 * count


def test_the_cli_writes_a_textfile(observed: Observed, tmp_path: Path) -> None:
    ws = observed.copy(tmp_path).ws
    target = tmp_path / "textfile" / "steadycast.prom"
    target.parent.mkdir()
    done = run_cli("metrics", "--textfile", str(target), "-w", str(ws.root))
    assert done.returncode == 0, done.stderr
    assert str(target) in done.stdout
    found: Samples = {}
    for family in text_string_to_metric_families(target.read_text()):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert at(found, "steadycast_gate_decisions_total", pipeline="meters", decision="held") == 1
    assert at(found, "steadycast_runs_total", pipeline="other", status="failed") == 1
    assert [p.name for p in target.parent.iterdir()] == ["steadycast.prom"]


def test_a_textfile_in_a_missing_folder_is_a_usage_error(
    observed: Observed, tmp_path: Path
) -> None:
    target = tmp_path / "no-such-folder" / "steadycast.prom"
    done = run_cli("metrics", "--textfile", str(target), "-w", str(observed.ws.root))
    assert done.returncode == 2, done.stderr
    assert f"the folder {target.parent} does not exist" in done.stderr
    assert "Traceback" not in done.stderr and not target.parent.exists()

"""The API's routers as a whole, on small workspaces without a pipeline run: every read is
guarded when reads need the token, the OpenAPI document promises only what a route can answer,
the incident record is the store's, a rollback looks release ids up instead of following them
as paths, starting the server does not load the publishing or plotting code, and the API and
``steadycast status`` agree on each pipeline."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from steadycast.ops.incidents import Incident, acknowledge, raise_incident
from steadycast.server import create_app
from steadycast.storage import releases
from steadycast.workspace import Workspace
from tests.conftest import run_cli
from tests.server_workspace import running

TOKEN = "routes-token-91c2"  # a test secret, only ever sent to 127.0.0.1
PIPELINE_TOML = (
    '[source]\nid_column="a"\ntime_column="b"\nvalue_column="c"\n'
    '[series]\nfrequency="1h"\nhorizon=4\n'
)
# Reads that stay open whatever the settings: liveness, the dashboard page and its files.
OPEN_READS = {"/healthz", "/", "/static/plotly.min.js"}


def workspace(root: Path, *pipelines: str) -> Workspace:
    ws = Workspace.init(root)
    for name in pipelines:
        (ws.pipelines_dir / f"{name}.toml").write_text(PIPELINE_TOML)
    return ws


def publish(ws: Workspace, pipeline: str, run_id: str, value: float) -> str:
    ds = pd.date_range("2024-01-01", periods=4, freq="h")
    frame = pd.DataFrame({"unique_id": "s0", "ds": ds, "yhat": np.full(4, value), "model": "N"})
    release = releases.write_release(ws.releases_dir, pipeline, run_id, frame, {})
    releases.make_current(ws.releases_dir, pipeline, release.release_id)
    return release.release_id


def test_with_reads_closed_every_read_route_refuses_a_request_without_the_token(
    tmp_path: Path,
) -> None:
    ws = workspace(tmp_path / "ws", "p")
    ws.settings_file.write_text(
        ws.settings_file.read_text().replace("[server]", "[server]\nread_token_required = true", 1)
    )
    app = create_app(ws, token=TOKEN)
    reads = sorted(
        ctx.path
        for ctx in iter_route_contexts(app.routes)
        if isinstance(ctx.original_route, APIRoute)
        and ctx.original_route.include_in_schema
        and "GET" in (ctx.methods or ())
    )
    guarded = [p for p in reads if p not in OPEN_READS]
    assert "/api/v1/pipelines/{pipeline}/forecast" in guarded and "/metrics" in guarded
    with running(app) as url, httpx.Client(base_url=url) as client:
        for template in guarded:
            path = template.replace("{series_id:path}", "s0").replace("{pipeline}", "p")
            path = path.replace("{run_id}", "r1").replace("{incident_id}", "1")
            response = client.get(path)
            assert response.status_code == 401, (template, response.text)
            assert response.json()["error"] == "unauthorized"
        assert client.get("/healthz").status_code == 200


def test_the_openapi_document_promises_only_answers_a_route_can_give(tmp_path: Path) -> None:
    doc = create_app(workspace(tmp_path / "ws", "p"), token=TOKEN).openapi()
    approve = doc["paths"]["/api/v1/runs/{run_id}/approve"]["post"]["responses"]
    assert set(approve) == {"200", "400", "401", "403", "404", "422"}
    # The incident of the API is the incident of the store, field for field.
    incident = doc["components"]["schemas"]["IncidentModel"]
    fields = dataclasses.fields(Incident)
    assert list(incident["properties"]) == [f.name for f in fields]
    assert set(incident["required"]) == {f.name for f in fields if f.default is dataclasses.MISSING}


def test_a_rollback_target_is_looked_up_never_followed_as_a_path(tmp_path: Path) -> None:
    ws = workspace(tmp_path / "ws", "p", "q")
    publish(ws, "p", "run-p1", 1.0)
    current = publish(ws, "p", "run-p2", 2.0)
    other = publish(ws, "q", "run-q1", 9.0)
    done = run_cli(
        "rollback", "p", "--to", f"../q/{other}", "--reason", "probe", "-w", str(ws.root)
    )
    assert done.returncode != 0, done.stdout
    assert f"no release '../q/{other}' of pipeline 'p'" in done.stdout + done.stderr
    assert releases.current_id(ws.releases_dir, "p") == current
    with running(create_app(ws, token=TOKEN)) as url, httpx.Client(base_url=url) as client:
        response = client.post(
            "/api/v1/pipelines/p/rollback",
            json={"to": f"../q/{other}", "reason": "probe"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert response.status_code == 404, response.text
    assert "no release" in response.json()["detail"]
    assert releases.current_id(ws.releases_dir, "p") == current


def test_starting_the_server_loads_no_publishing_or_plotting_code(tmp_path: Path) -> None:
    ws = workspace(tmp_path / "ws", "p")
    script = (
        "import json, sys\n"
        "from steadycast.server import create_app\n"
        "from steadycast.workspace import Workspace\n"
        f"create_app(Workspace.open({str(ws.root)!r}))\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = set(json.loads(done.stdout))
    # Each is loaded by the first request that needs it (a forecast read loads pyarrow).
    heavy = {
        "pandas",
        "plotly",
        "pyarrow.parquet",
        "prometheus_client",
        "steadycast.pipeline.levers",
        "steadycast.pipeline.run",
        "statsforecast",
    }
    assert not heavy & loaded, sorted(heavy & loaded)


@pytest.mark.parametrize("state", ["open", "acknowledged", "resolved"])
def test_the_incident_list_filters_by_state(tmp_path: Path, state: str) -> None:
    """The list keeps its ``state`` query parameter beside the server's own state."""
    ws = workspace(tmp_path / "ws", "p")
    with running(create_app(ws, token=TOKEN)) as url, httpx.Client(base_url=url) as client:
        response = client.get("/api/v1/incidents", params={"state": state})
        assert response.status_code == 200, response.text
        assert response.json() == {"incidents": []}
        bad = client.get("/api/v1/incidents", params={"state": "closed"})
        assert bad.status_code == 400
        assert "not one of open, acknowledged, resolved" in bad.json()["detail"]


def test_the_api_and_steadycast_status_agree_on_each_pipeline(tmp_path: Path) -> None:
    ws = workspace(tmp_path / "ws", "p", "q")
    publish(ws, "p", "run-p1", 1.0)
    current = publish(ws, "p", "run-p2", 2.0)
    for name in ("a", "b"):
        raise_incident(
            ws.control_path, f"check:flat_line:p:{name}", "p", "check", "warning", "flat", "", None
        )
    acknowledge(ws.control_path, 1, actor="someone")
    done = run_cli("status", "--json", "-w", str(ws.root))
    assert done.returncode == 0, done.stderr
    cli = {s["pipeline"]: s for s in json.loads(done.stdout)["pipelines"]}
    with running(create_app(ws, token=TOKEN)) as url, httpx.Client(base_url=url) as client:
        api = {s["name"]: s for s in client.get("/api/v1/pipelines").json()["pipelines"]}
    assert set(api) == set(cli) >= {"p", "q"}
    assert api["p"]["current_release"] == cli["p"]["current_release"] == current
    assert api["q"]["current_release"] is cli["q"]["current_release"] is None
    assert (api["p"]["open_incidents"], api["p"]["acknowledged_incidents"]) == (1, 1)
    assert cli["p"]["open_incidents"] == 2 and cli["q"]["open_incidents"] == 0

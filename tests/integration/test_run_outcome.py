"""One incident per cause, and the truth on every screen: a held run opens one incident (its
gate rule named in it, not opened beside it), approve and rollback close it saying who and why,
and every screen (``runs``, ``status``, the API, the report) says "held, then approved by NAME:
REASON" and "rolled back by NAME: REASON". Driven through the real CLI, as a user runs it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from steadycast.ops.incidents import Incident, list_incidents
from steadycast.report import write_report
from steadycast.server import create_app
from steadycast.storage import releases
from steadycast.storage.control import current_actor
from steadycast.workspace import Workspace
from tests.conftest import run_cli
from tests.observability_workspace import CHECKS, PIPELINE, SERIES, fleet_csv, last_day_doubled
from tests.server_workspace import running

APPROVAL = "the jump is real: new meters on the feeder"
ROLLBACK = "back to the numbers planners signed off"


def cli(ws: Workspace, *args: str) -> Any:
    """``steadycast ARGS -w WS --json``, parsed; the exit code must be 0."""
    done = run_cli(*args, "-w", str(ws.root), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def outcomes(ws: Workspace) -> dict[str, str]:
    return {r["run_id"]: r["outcome"] for r in cli(ws, "runs", "meters")["runs"]}


def api(ws: Workspace, path: str) -> Any:
    """GET ``path`` from a real server over the workspace."""
    with running(create_app(ws)) as url:
        response = httpx.get(url + path, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def live(ws: Workspace) -> list[Incident]:
    return [i for i in list_incidents(ws.control_path, pipeline="meters") if i.state != "resolved"]


@dataclass(frozen=True)
class Story:
    """A pipeline published once (``first``), then held by its gate (``held``) and approved."""

    ws: Workspace
    first: str
    held: str
    held_doc: dict[str, Any]
    incidents_when_held: list[Incident]
    approved_release: str


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    root = tmp_path_factory.mktemp("outcome")
    ws = Workspace.init(root / "ws")
    (ws.pipelines_dir / "meters.toml").write_text(PIPELINE + "\n" + CHECKS)
    fleet = fleet_csv(root / "fleet.csv", SERIES, planted=True)
    assert run_cli("ingest", "meters", str(fleet), "-w", str(ws.root)).returncode == 0
    first = cli(ws, "run", "meters")
    # The last day doubled: the next forecasts' total jumps against the release (total_jump).
    correction = last_day_doubled(fleet, root / "correction.csv")
    assert run_cli("ingest", "meters", str(correction), "-w", str(ws.root)).returncode == 0
    held = run_cli("run", "meters", "-w", str(ws.root), "--json")
    assert held.returncode == 3, held.stdout + held.stderr
    held_doc = json.loads(held.stdout)
    when_held = live(ws)
    approved = cli(ws, "approve", held_doc["run_id"], "--reason", APPROVAL)
    return Story(
        ws, first["run_id"], held_doc["run_id"], held_doc, when_held, approved["release_id"]
    )


def test_a_held_run_opens_one_incident_for_its_cause(story: Story) -> None:
    held = [i for i in story.incidents_when_held if i.kind == "held"]
    assert len(held) == 1, story.incidents_when_held
    assert "total_jump" in held[0].title and "total_jump" in (held[0].detail or "")
    # The rule that held the run is named in the held incident, not opened beside it.
    assert not [i for i in story.incidents_when_held if i.kind == "gate"], story.incidents_when_held


def test_approve_closes_the_held_incident_saying_who_and_why(story: Story) -> None:
    who = current_actor()
    assert not [i for i in live(story.ws) if i.kind in ("held", "gate")], live(story.ws)
    held = next(
        i for i in list_incidents(story.ws.control_path, pipeline="meters") if i.kind == "held"
    )
    assert held.state == "resolved" and held.resolved_by == who and held.resolved_at
    assert held.resolution == f"run {story.held} approved by {who}: {APPROVAL}"
    listed = run_cli(
        "incidents", "--state", "resolved", "-w", str(story.ws.root), env={"COLUMNS": "250"}
    )
    assert f"{who}: run {story.held} approved by {who}: {APPROVAL}" in listed.stdout


def test_every_screen_says_held_then_approved_by_whom_and_why(story: Story) -> None:
    said = f"held, then approved by {current_actor()}: {APPROVAL}"
    assert outcomes(story.ws)[story.held] == said
    assert outcomes(story.ws)[story.first] == "published"
    status = cli(story.ws, "status", "meters")["pipelines"][0]
    assert status["last_run"]["outcome"] == said
    printed = run_cli("status", "meters", "-w", str(story.ws.root)).stdout
    assert said in " ".join(printed.split())

    run = api(story.ws, f"/api/v1/runs/{story.held}")
    assert run["outcome"] == said and run["status"] == "published"
    listed = api(story.ws, "/api/v1/pipelines")["pipelines"]
    summary = next(p for p in listed if p["name"] == "meters")
    assert summary["last_run"]["outcome"] == said
    html = write_report(story.ws, story.held, story.ws.root / "held.html").read_text()
    assert said in html.replace("&#x27;", "'").replace("&quot;", '"')
    assert "<b>Held because:</b>" in html


def test_structured_json_config_and_stage_detail(story: Story) -> None:
    config = story.held_doc["config"]
    assert isinstance(config, dict) and config["series"]["horizon"] == 12
    assert config["source"]["id_column"] == "meter_id"

    run = api(story.ws, f"/api/v1/runs/{story.held}")
    schema = api(story.ws, "/api/v1/openapi.json")["components"]["schemas"]
    gate = next(s for s in run["stages"] if s["name"] == "gate")
    assert gate["detail"] == {"passed": False}
    assert isinstance(run["detail"]["config"], dict)
    stage_detail = schema["StageDetail"]["properties"]["detail"]["anyOf"]
    assert {"type": "object", "additionalProperties": True} in stage_detail


def test_rollback_says_so_on_both_runs_and_closes_a_hold(story: Story) -> None:
    ws, who = story.ws, current_actor()
    cli(ws, "rollback", "meters", "--reason", ROLLBACK)
    first_release = releases.current_id(ws.releases_dir, "meters")
    said = outcomes(ws)
    assert said[story.held] == (
        f"held, then approved by {who}: {APPROVAL}, then rolled back by {who}: {ROLLBACK} "
        f"(release {first_release} made current)"
    )
    assert (
        said[story.first] == f"published, then made current again, rolled back by {who}: {ROLLBACK}"
    )

    # Against the first release again, the next run jumps again: held, one incident.
    again = run_cli("run", "meters", "-w", str(ws.root), "--json")
    assert again.returncode == 3, again.stdout + again.stderr
    held = [i for i in live(ws) if i.kind in ("held", "gate")]
    assert [i.kind for i in held] == ["held"], held
    cli(ws, "rollback", "meters", "--to", story.approved_release, "--reason", "serve the approved")
    closed = next(
        i for i in list_incidents(ws.control_path, pipeline="meters") if i.id == held[0].id
    )
    assert closed.state == "resolved" and closed.resolved_by == who
    assert closed.resolution == (
        f"rolled back by {who}: serve the approved (release {story.approved_release} is current)"
    )

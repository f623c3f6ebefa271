"""Starting work over HTTP, as a scheduler does: ingest a pipeline's configured source, start a
run (202 and a URL to poll), poll it to its end; a real uvicorn on 127.0.0.1, real child
processes, the token checked and the actor audited."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from steadycast.server import create_app
from steadycast.storage import releases, runlog
from steadycast.storage.control import audit_entries
from steadycast.workspace import Workspace
from tests.integration.test_run import PIPELINE, fleet_csv
from tests.server_workspace import TOKEN, running

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Workspace, httpx.Client]]:
    """A workspace whose pipeline ``meters`` reads ``incoming/*.csv``, served on 127.0.0.1."""
    ws = Workspace.init(tmp_path / "ws")
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    fleet_csv(incoming / "fleet.csv")
    source = f'[source]\npath = "{incoming}/*.csv"\n'
    (ws.pipelines_dir / "meters.toml").write_text(PIPELINE.replace("[source]\n", source, 1))
    (ws.pipelines_dir / "empty.toml").write_text(PIPELINE)
    with running(create_app(ws, token=TOKEN)) as url, httpx.Client(base_url=url) as client:
        yield ws, client


def poll(client: httpx.Client, url: str, timeout_s: float = 300.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        answer = client.get(url)
        assert answer.status_code == 200, answer.text
        doc: dict[str, Any] = answer.json()
        if doc["finished"]:
            return doc
        assert doc["status"] in ("starting", "running"), doc
        assert time.monotonic() < deadline, f"the run did not finish in {timeout_s} s: {doc}"
        time.sleep(0.5)


def test_writes_need_the_token_and_a_known_pipeline(
    served: tuple[Workspace, httpx.Client],
) -> None:
    _, client = served
    for path in ("/api/v1/pipelines/meters/ingest", "/api/v1/pipelines/meters/runs"):
        assert client.post(path).status_code == 401
        wrong = client.post(path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403
        unknown = client.post(path.replace("meters", "nosuch"), headers=AUTH)
        assert unknown.status_code == 404 and "nosuch" in unknown.json()["detail"]
    missing = client.get("/api/v1/pipelines/meters/runs/meters-20240101T000000Z-abcd")
    assert missing.status_code == 404
    documented = client.get("/api/v1/openapi.json").json()["paths"]
    assert {"post"} <= set(documented["/api/v1/pipelines/{pipeline}/ingest"])
    assert "409" in documented["/api/v1/pipelines/{pipeline}/runs"]["post"]["responses"]
    assert "202" in documented["/api/v1/pipelines/{pipeline}/runs"]["post"]["responses"]


def test_ingest_the_configured_source_then_run_then_skip(
    served: tuple[Workspace, httpx.Client],
) -> None:
    ws, client = served
    ingested = client.post("/api/v1/pipelines/meters/ingest", headers=AUTH)
    assert ingested.status_code == 200, ingested.text
    [batch] = ingested.json()["batches"]
    assert batch["status"] == "ingested" and batch["rows_stored"] > 0
    assert batch["file"].endswith("fleet.csv")
    again = client.post("/api/v1/pipelines/meters/ingest", headers=AUTH)
    assert [b["status"] for b in again.json()["batches"]] == ["skipped"]  # the ledger
    actors = {e["actor"] for e in audit_entries(ws.control_path, "meters")}
    assert actors and all(a.startswith("api:") for a in actors), actors

    started = client.post("/api/v1/pipelines/meters/runs", headers=AUTH)
    assert started.status_code == 202, started.text
    doc = started.json()
    run_id, url = doc["run_id"], doc["poll"]
    assert url == f"/api/v1/pipelines/meters/runs/{run_id}" == started.headers["location"]
    # One run of a pipeline at a time: the second request is refused, naming the first.
    busy = client.post("/api/v1/pipelines/meters/runs", headers=AUTH)
    assert busy.status_code == 409 and run_id in busy.json()["detail"]

    ended = poll(client, url)
    assert ended["status"] == "published" and ended["exit_code"] == 0, ended
    assert ended["release_id"] == releases.current_id(ws.releases_dir, "meters")
    record = runlog.get_run(ws.control_path, run_id)
    assert record is not None and record["status"] == "published"
    started_by = [e for e in audit_entries(ws.control_path, "meters") if e["subject"] == run_id]
    assert started_by and all(e["actor"].startswith("api:") for e in started_by)
    assert client.get(f"/api/v1/runs/{run_id}").status_code == 200  # the run's own record

    # Nothing new since: the run is skipped (no record, no release), and says so when polled.
    skip = client.post("/api/v1/pipelines/meters/runs", headers=AUTH, json={"force": False})
    assert skip.status_code == 202
    skipped = poll(client, skip.json()["poll"])
    assert skipped["status"] == "skipped" and skipped["exit_code"] == 0, skipped
    assert skipped["release_id"] == ended["release_id"]
    assert runlog.get_run(ws.control_path, skip.json()["run_id"]) is None


def test_a_run_in_progress_elsewhere_is_a_conflict_and_a_failed_run_says_why(
    served: tuple[Workspace, httpx.Client],
) -> None:
    ws, client = served
    with runlog.pipeline_lock(ws.control_path, "meters", "meters-20240101T000000Z-cafe"):
        busy = client.post("/api/v1/pipelines/meters/runs", headers=AUTH)
    assert busy.status_code == 409, busy.text
    assert "meters-20240101T000000Z-cafe" in busy.json()["detail"]

    # A pipeline with no data and no source: the run fails, the poll says why (exit 1); an
    # ingest has nothing to read (400, naming the fix).
    failed = client.post("/api/v1/pipelines/empty/runs", headers=AUTH)
    assert failed.status_code == 202
    ended = poll(client, failed.json()["poll"])
    assert ended["status"] == "failed" and ended["exit_code"] == 1, ended
    assert ended["error"], ended
    nothing = client.post("/api/v1/pipelines/empty/ingest", headers=AUTH)
    assert nothing.status_code == 400 and "[source] path" in nothing.json()["detail"]

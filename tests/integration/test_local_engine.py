"""The local engine with one process per core: the same release, checks and records as a run in
one process, and a partition process that dies costs only a retry of its partition."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from steadycast.engines.commit import is_committed
from steadycast.ingestion.batch import ingest
from steadycast.ops.failpoints import FAILPOINT_ENV
from steadycast.pipeline.run import RunResult, run_pipeline
from steadycast.storage import releases, store
from steadycast.storage.control import connect
from steadycast.workspace import Workspace
from tests.integration.test_run import PIPELINE, fleet_csv

SERIES = 8
# Two series per partition: several partitions for the two processes to share.
PARTITIONED = PIPELINE.replace(
    "[forecast]\nworkers = 1\n", "[forecast]\nworkers = {workers}\npartition_size = 2\n"
)


def workspace(root: Path, data: Path, workers: int) -> Workspace:
    ws = Workspace.init(root)
    (ws.pipelines_dir / "meters.toml").write_text(PARTITIONED.format(workers=workers))
    ingest(ws, "meters", [data])
    return ws


def stage_detail(ws: Workspace, run_id: str, name: str) -> dict:
    with connect(ws.control_path) as con:
        row = con.execute(
            "SELECT detail FROM stages WHERE run_id = ? AND name = ?", (run_id, name)
        ).fetchone()
    return json.loads(row["detail"])


def stored_checks(ws: Workspace, run_id: str) -> pd.DataFrame:
    with store.reading(ws.store_path) as con:
        frame = con.execute(
            "SELECT * EXCLUDE (run_id) FROM check_results WHERE run_id = ?", [run_id]
        ).df()
    return frame.sort_values(["check", "unique_id"], na_position="first").reset_index(drop=True)


def content(ws: Workspace) -> str:
    release = releases.current(ws.releases_dir, "meters")
    assert release is not None
    return str(release.manifest["content_sha256"])


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, RunResult]:
    root = tmp_path_factory.mktemp("local-engine")
    data = fleet_csv(root / "fleet.csv", series=SERIES)
    ws = workspace(root / "serial", data, workers=1)
    result = run_pipeline(ws, "meters")
    assert result.status == "published", result.error
    return ws, result


def test_partitions_in_two_processes_publish_what_one_process_publishes(
    one_process: tuple[Workspace, RunResult], tmp_path: Path
) -> None:
    serial_ws, serial = one_process
    ws = workspace(tmp_path / "ws", Path(serial_ws.root.parent / "fleet.csv"), workers=2)
    result = run_pipeline(ws, "meters")
    assert result.status == "published", result.error
    assert content(ws) == content(serial_ws)
    assert result.series == serial.series == SERIES
    # Every check result is stored, passed ones included, as by one process.
    pd.testing.assert_frame_equal(
        stored_checks(ws, result.run_id), stored_checks(serial_ws, serial.run_id)
    )
    assert stage_detail(ws, result.run_id, "check")["processes"] == 2
    engine = stage_detail(ws, result.run_id, "forecast")["engine"]
    assert engine["processes"] == 2 and engine["process_restarts"] == 0
    # A second run hands each partition the rows of the release it falls back on.
    again = run_pipeline(ws, "meters")
    assert again.status == "published", again.error
    assert content(ws) == content(serial_ws)


def test_a_partition_process_killed_mid_write_and_after_commit_is_retried(
    one_process: tuple[Workspace, RunResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serial_ws, _ = one_process
    ws = workspace(tmp_path / "ws", Path(serial_ws.root.parent / "fleet.csv"), workers=2)
    # The first process to write a partition dies half-way; the first to commit dies after it.
    monkeypatch.setenv(FAILPOINT_ENV, "partition:mid-write,partition:after-commit")
    result = run_pipeline(ws, "meters")
    monkeypatch.delenv(FAILPOINT_ENV)
    assert result.status == "published", result.error
    assert content(ws) == content(serial_ws)
    detail = stage_detail(ws, result.run_id, "forecast")
    assert detail["retried_partitions"] >= 1
    # Two deaths, one restart each, unless both processes die before the pool notices the
    # first: then one restart recovers both partitions.
    assert detail["engine"]["process_restarts"] in (1, 2)
    frame = pd.read_parquet(releases.current(ws.releases_dir, "meters").forecasts_path)
    assert frame.groupby("unique_id").size().eq(12).all() and frame["unique_id"].nunique() == SERIES
    parts = list((ws.root / "runs" / result.run_id / "parts").iterdir())
    assert parts and all(is_committed(p) for p in parts)

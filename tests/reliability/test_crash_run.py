"""SIGKILL a run mid-way: the re-run resumes from its last finished partition and publishes the
same release content as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from steadycast import releases
from steadycast.control import connect
from steadycast.stages.ingest import ingest
from steadycast.workspace import Workspace
from tests.integration.test_run import PIPELINE, fleet_csv

SMALL_PARTITIONS = PIPELINE.replace(
    "[forecast]\nworkers = 1\n", "[forecast]\nworkers = 1\npartition_size = 1\n"
)


def workspace(root: Path, data: Path) -> Workspace:
    ws = Workspace.init(root)
    (ws.pipelines_dir / "meters.toml").write_text(SMALL_PARTITIONS)
    ingest(ws, "meters", [data])
    return ws


def run_cmd(ws: Workspace) -> list[str]:
    return [sys.executable, "-m", "steadycast.cli", "run", "meters", "-w", str(ws.root), "--json"]


def test_killed_run_resumes_and_publishes_the_same_release(tmp_path: Path) -> None:
    data = fleet_csv(tmp_path / "fleet.csv", series=6)
    clean = workspace(tmp_path / "clean", data)
    done = subprocess.run(run_cmd(clean), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    expected = releases.current(clean.releases_dir, "meters")
    assert expected is not None

    ws = workspace(tmp_path / "killed", data)
    proc = subprocess.Popen(run_cmd(ws), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    # Kill once two partitions are finished (their outputs are on disk), mid-way through the rest.
    while time.monotonic() < deadline and len(list(ws.root.glob("runs/*/parts/*/_SUCCESS"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert releases.current_id(ws.releases_dir, "meters") is None  # nothing half published

    rerun = subprocess.run(run_cmd(ws), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    result = json.loads(rerun.stdout)
    got = releases.current(ws.releases_dir, "meters")
    assert got is not None
    assert got.manifest["content_sha256"] == expected.manifest["content_sha256"]
    with connect(ws.control_path) as con:
        detail = con.execute(
            "SELECT detail FROM stages WHERE run_id = ? AND name = 'forecast'", (result["run_id"],)
        ).fetchone()
        killed = con.execute(
            "SELECT status, error FROM runs WHERE run_id <> ?", (result["run_id"],)
        ).fetchone()
    assert json.loads(detail["detail"])["resumed_partitions"] >= 2
    assert killed["status"] == "failed" and "interrupted" in killed["error"]


STAGES = ["snapshot", "check", "forecast", "gate", "publish"]


def test_killed_at_each_stage_the_rerun_publishes_the_same_release(tmp_path: Path) -> None:
    data = fleet_csv(tmp_path / "fleet.csv", series=3)
    clean = workspace(tmp_path / "clean", data)
    assert subprocess.run(run_cmd(clean), capture_output=True).returncode == 0
    expected = releases.current(clean.releases_dir, "meters")
    assert expected is not None
    for stage in STAGES:
        ws = workspace(tmp_path / f"killed-at-{stage}", data)
        env = {**os.environ, "STEADYCAST_FAILPOINT": f"stage:{stage}"}
        killed = subprocess.run(run_cmd(ws), capture_output=True, env=env)
        assert killed.returncode == -signal.SIGKILL, (stage, killed.stderr[-500:])
        assert releases.current_id(ws.releases_dir, "meters") is None, stage  # no half release
        rerun = subprocess.run(run_cmd(ws), capture_output=True, text=True)
        assert rerun.returncode == 0, (stage, rerun.stderr)
        got = releases.current(ws.releases_dir, "meters")
        assert got is not None, stage
        assert got.manifest["content_sha256"] == expected.manifest["content_sha256"], stage

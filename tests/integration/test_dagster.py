"""The Dagster integration on the demo pipeline: materialising its job publishes a release and
reports the gate's rules as asset checks; a held run fails the release's checks (not the Dagster
run); a run with no new data is skipped; the sensor asks for a run only when new files land."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

dg = pytest.importorskip("dagster", reason="the dagster extra is not installed")

import steadycast  # noqa: E402
from steadycast.demo import DEMO_CONFIG, DEMO_PIPELINE, _split_sample  # noqa: E402
from steadycast.integrations.dagster import definitions  # noqa: E402
from steadycast.storage import control, releases  # noqa: E402
from steadycast.workspace import Workspace  # noqa: E402

JOB = f"{DEMO_PIPELINE}_job"
# The demo's pipeline on its real sample, with cheap candidates (the models are not what is
# tested here) and the inbox as its configured source.
CONFIG = DEMO_CONFIG.replace(
    'candidates = ["SeasonalNaive", "AutoTheta", "LightGBM"]',
    'candidates = ["SeasonalNaive", "HistoricAverage"]',
).replace('time_format = ""', 'time_format = ""\npath = "inbox"')


@pytest.fixture
def demo(tmp_path: Path) -> tuple[Workspace, Path, Path]:
    """The demo workspace with an empty inbox, and its two deliveries (clean, then faulty)."""
    assert CONFIG != DEMO_CONFIG and 'path = "inbox"' in CONFIG
    ws = Workspace.init(tmp_path / "ws")
    (ws.pipelines_dir / f"{DEMO_PIPELINE}.toml").write_text(CONFIG, encoding="utf-8")
    (ws.root / "inbox").mkdir()
    first, second = _split_sample(tmp_path / "deliveries")
    return ws, first, second


def deliver(ws: Workspace, file: Path) -> Path:
    return Path(shutil.copy(file, ws.root / "inbox" / file.name))


def materialised(result: Any, asset: str) -> dict[str, Any]:
    (event,) = result.asset_materializations_for_node(asset)
    return {k: v.value for k, v in event.metadata.items()}


def checks(result: Any) -> dict[str, Any]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def run_record(ws: Workspace, run_id: str) -> dict[str, Any]:
    with control.connect(ws.control_path) as con:
        row = con.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    assert row is not None, run_id
    return dict(row)


def run_count(ws: Workspace) -> int:
    with control.connect(ws.control_path) as con:
        return int(con.execute("SELECT count(*) FROM runs").fetchone()[0])


def test_materialising_the_demo_publishes_holds_and_skips(
    demo: tuple[Workspace, Path, Path],
) -> None:
    ws, first, second = demo
    job = definitions(ws.root).resolve_job_def(JOB)

    # 1. A clean delivery: ingested, run, published; every gate rule a passed check.
    deliver(ws, first)
    result = job.execute_in_process()
    assert result.success
    ingested = materialised(result, "meters_ingest")
    assert (ingested["batches"], ingested["ingested"]) == (1, 1)
    assert ingested["rows_stored"] == 46746 and ingested["rows_quarantined"] == 0
    run = materialised(result, "meters_run")
    assert run["status"] == "published"
    current = releases.current(ws.releases_dir, DEMO_PIPELINE)
    assert current is not None and current.release_id == run["release_id"] == run["run_id"]
    release = materialised(result, "meters_release")
    assert release["release_id"] == current.release_id
    assert release["rows"] == current.manifest["rows"] == 49 * 48
    assert release["series"] == 49 and release["published_at"]

    gate = json.loads(run_record(ws, run["run_id"])["detail"])["gate"]
    assert len(gate) >= 5
    found = checks(result)
    assert set(found) == {"published"} | {g["check"] for g in gate}
    assert found["published"].passed
    for g in gate:
        assert found[g["check"]].passed is g["passed"] is True
        assert found[g["check"]].description == g["detail"]
        assert found[g["check"]].severity == dg.AssetCheckSeverity.ERROR  # blocking rules
    limit = found["fallback_share"].metadata["limit"].value
    assert limit == next(g["limit"] for g in gate if g["check"] == "fallback_share")

    # 2. A faulty delivery (a third of the meters stop): the gate holds the run. The Dagster run
    # succeeds (a hold is a decision, not a failure); the release asset still shows the last
    # good release and its checks fail with the gate's figures and the lever to pull.
    deliver(ws, second)
    result = job.execute_in_process()
    assert result.success
    run = materialised(result, "meters_run")
    assert run["status"] == "held"
    assert "steadycast approve " + run["run_id"] in run["approve"]
    assert releases.current_id(ws.releases_dir, DEMO_PIPELINE) == current.release_id
    release = materialised(result, "meters_release")
    assert release["release_id"] == current.release_id
    assert (release["decided_run"], release["decided_status"]) == (run["run_id"], "held")
    found = checks(result)
    assert not found["published"].passed
    assert found["published"].severity == dg.AssetCheckSeverity.ERROR
    assert "steadycast approve " + run["run_id"] in found["published"].metadata["approve"].value
    held = {g["check"]: g for g in json.loads(run_record(ws, run["run_id"])["detail"])["gate"]}
    assert not found["blocking_checks"].passed and not held["blocking_checks"]["passed"]
    assert "volume parity" in found["blocking_checks"].description
    assert {n for n, e in found.items() if not e.passed} == {"published"} | {
        n for n, g in held.items() if not g["passed"]
    }

    # 3. Nothing new: the run is skipped (no run recorded), the hold still shows.
    runs = run_count(ws)
    result = job.execute_in_process()
    assert result.success
    skipped = materialised(result, "meters_run")
    assert skipped["status"] == "skipped" and "no new data" in skipped["skipped"]
    assert skipped["decided_run"] == run["run_id"]
    assert run_count(ws) == runs
    assert not checks(result)["published"].passed

    # 4. force: a new run on the same data (held again, as the same data is).
    result = job.execute_in_process(run_config={"ops": {"meters_run": {"config": {"force": True}}}})
    assert materialised(result, "meters_run")["status"] == "held"
    assert run_count(ws) == runs + 1


def test_a_sink_behind_shows_on_the_run_asset(demo: tuple[Workspace, Path, Path]) -> None:
    ws, first, _ = demo
    lake = ws.root / "lake"
    lake.write_text("a file where the sink's folder must go")  # the sink cannot write
    path = ws.pipelines_dir / f"{DEMO_PIPELINE}.toml"
    path.write_text(path.read_text() + '\n[[sinks]]\nkind = "parquet"\npath = "lake"\n')
    deliver(ws, first)
    result = definitions(ws.root).resolve_job_def(JOB).execute_in_process()
    run = materialised(result, "meters_run")
    assert run["status"] == "published" and run["sinks_behind"] == "lake"
    [sink] = run["sinks"]
    assert sink["state"] == "pending" and sink["incident_id"] is not None


def test_a_failed_run_fails_the_step(demo: tuple[Workspace, Path, Path]) -> None:
    """The platform could not finish the run (here: nothing was ever ingested): the Dagster
    step fails with the run's error, and the release asset is not materialised."""
    ws, _first, _second = demo
    (ws.pipelines_dir / f"{DEMO_PIPELINE}.toml").write_text(
        CONFIG.replace('path = "inbox"\n', ""), encoding="utf-8"
    )
    result = definitions(ws.root).resolve_job_def(JOB).execute_in_process(raise_on_error=False)
    assert not result.success
    assert "no [source] path" in str(materialised(result, "meters_ingest")["note"])
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "meters_run"
    failed = failure.event_specific_data.user_failure_data
    assert "of pipeline 'meters' failed: pipeline 'meters' has no stored observations" in (
        failed.description
    )
    assert failed.metadata["status"].value == "failed"
    assert (
        failed.metadata["run_id"].value == run_record(ws, failed.metadata["run_id"].value)["run_id"]
    )
    assert not result.asset_materializations_for_node("meters_release")


def test_sensor_requests_a_run_only_for_new_files(demo: tuple[Workspace, Path, Path]) -> None:
    ws, first, second = demo
    sensor = definitions(ws.root).resolve_sensor_def("meters_new_files")
    empty = sensor(dg.build_sensor_context())
    assert isinstance(empty, dg.SkipReason)  # an empty inbox is not an error

    steadycast.ingest(ws, DEMO_PIPELINE, [deliver(ws, first)])
    assert isinstance(sensor(dg.build_sensor_context()), dg.SkipReason)  # all in the ledger

    new = deliver(ws, second)
    asked = sensor(dg.build_sensor_context())
    assert isinstance(asked, dg.SensorResult)
    (request,) = asked.run_requests
    assert request.tags["steadycast/pipeline"] == DEMO_PIPELINE
    assert json.loads(asked.cursor)["newest"] == str(new)
    # The same set again, before its run ingested it: asked once only.
    again = sensor(dg.build_sensor_context(cursor=asked.cursor))
    assert isinstance(again, dg.SkipReason) and "already requested" in again.skip_message

    steadycast.ingest(ws, DEMO_PIPELINE, [new])
    done = sensor(dg.build_sensor_context(cursor=asked.cursor))
    assert isinstance(done, dg.SkipReason) and "no new files" in done.skip_message


def test_the_module_for_dagster_dev_reads_the_workspace_from_the_environment(
    demo: tuple[Workspace, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, _first, _second = demo
    monkeypatch.setenv("STEADYCAST_WORKSPACE", str(ws.root))
    sys.modules.pop("steadycast.integrations.dagster_defs", None)
    from steadycast.integrations import dagster_defs

    defs = dagster_defs.defs
    assert defs.resolve_job_def(JOB).name == JOB
    assert defs.resolve_sensor_def("meters_new_files").name == "meters_new_files"
    sys.modules.pop("steadycast.integrations.dagster_defs", None)


def test_a_broken_pipeline_file_fails_its_own_job_only(
    demo: tuple[Workspace, Path, Path],
) -> None:
    ws, _first, _second = demo
    (ws.pipelines_dir / "broken.toml").write_text("[source]\nid_column = 1\n", encoding="utf-8")
    defs = definitions(ws.root)  # the other pipelines still load
    assert defs.resolve_job_def(JOB).name == JOB
    result = defs.resolve_job_def("broken_job").execute_in_process(raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "broken_ingest"
    assert "pipelines/broken.toml" in str(failure.event_specific_data.error.cause.message)


def test_two_pipelines_with_one_dagster_name_are_refused(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    for name in ("north-meters", "north.meters"):
        (ws.pipelines_dir / f"{name}.toml").write_text(CONFIG, encoding="utf-8")
    with pytest.raises(steadycast.ConfigError, match="both become 'north_meters'"):
        definitions(ws.root)


def test_import_steadycast_never_loads_dagster() -> None:
    lazy = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, steadycast; steadycast.run_pipeline; steadycast.ingest; "
            "print('dagster' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert lazy.stdout.strip() == "False", lazy.stderr


def test_dagster_command_line_loads_the_workspace(demo: tuple[Workspace, Path, Path]) -> None:
    """What ``dagster dev -m steadycast.integrations.dagster_defs`` loads, through Dagster's
    own command line."""
    ws, _first, _second = demo
    env = {**os.environ, "STEADYCAST_WORKSPACE": str(ws.root), "DAGSTER_HOME": str(ws.root)}
    dagster = Path(sys.executable).parent / "dagster"
    done = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "steadycast.integrations.dagster_defs"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_dagster_executes_the_job_in_its_own_step_processes(
    demo: tuple[Workspace, Path, Path], tmp_path: Path
) -> None:
    """The job as a Dagster deployment runs it: its command line, a persistent instance and the
    multiprocess executor (each step in its own process, the run's workers below it)."""
    ws, first, _second = demo
    deliver(ws, first)
    home = tmp_path / "dagster-home"
    home.mkdir()
    env = {**os.environ, "STEADYCAST_WORKSPACE": str(ws.root), "DAGSTER_HOME": str(home)}
    dagster = Path(sys.executable).parent / "dagster"
    done = subprocess.run(
        [str(dagster), "job", "execute", "-m", "steadycast.integrations.dagster_defs", "-j", JOB],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "multiprocess executor" in done.stdout + done.stderr
    assert "Asset check 'fallback_share' on 'meters_release' passed" in done.stdout + done.stderr
    current = releases.current_id(ws.releases_dir, DEMO_PIPELINE)
    assert current is not None
    assert run_record(ws, current)["status"] == "published"

"""crash-run: SIGKILL ``steadycast run`` at every stage, and mid-way through the forecast.

The promise: whatever the moment, no half release is ever visible (the current pointer is
absent or names a complete release), and the re-run finishes and publishes the same content
(hash) as an uninterrupted run, resuming the partitions the killed run had finished.

The quick run kills one run after another in the same workspace, each at the start of the next
stage, and finishes with a clean re-run: a run that resumes a run that had itself resumed. The
long run kills at every point of the chain (also while a partition is written, right after it
is committed, and from outside between partitions), then a fresh workspace at each point on its
own, and at random moments of a run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from steadycast.ingestion.batch import ingest
from steadycast.storage import releases
from steadycast.storage.control import connect
from steadycast.workspace import Workspace
from tests.integration.test_run import PIPELINE, fleet_csv
from tests.reliability.conftest import LONG, Record, size

SERIES = 4
# One series per partition, so a run can be killed between partitions; two cheap models and
# one backtest window keep each of the many runs short.
SMALL_PARTITIONS = PIPELINE.replace(
    '"Naive", "SeasonalNaive", "HistoricAverage", "SES"', '"Naive", "SeasonalNaive"'
).replace(
    "[forecast]\nworkers = 1\n",
    "[forecast]\nworkers = 1\npartition_size = 1\n\n[backtest]\nwindows = 1\n",
)
# Where a run is killed: at the start of a stage (``stage:NAME``), while a partition's outputs
# are written or right after it is committed (``partition:...``), or from outside once two
# partitions are committed (``mid-forecast``).
KILL_POINTS = [
    "stage:snapshot",
    "stage:check",
    "stage:forecast",
    "partition:mid-write",
    "partition:after-commit",
    "mid-forecast",
    "stage:gate",
    "stage:publish",
]
# The quick chain kills at the start of each stage; the long chain at every point.
CHAIN = KILL_POINTS if LONG else [p for p in KILL_POINTS if p.startswith("stage:")]
RANDOM_KILLS = size(0, 8, env="STEADYCAST_CRASH_RUN_RANDOM")


@dataclass(frozen=True)
class Reference:
    data: Path
    content: str  # the clean run's release content, hashed from its file (see file_hash)
    duration_s: float


def workspace(root: Path, data: Path) -> Workspace:
    ws = Workspace.init(root)
    (ws.pipelines_dir / "meters.toml").write_text(SMALL_PARTITIONS)
    ingest(ws, "meters", [data])
    return ws


def run_cmd(ws: Workspace) -> list[str]:
    return [sys.executable, "-m", "steadycast.cli", "run", "meters", "-w", str(ws.root), "--json"]


def file_hash(release: releases.Release) -> str:
    """The content hash of what the release's file holds (not what its manifest claims)."""
    return releases.content_hash(pd.read_parquet(release.forecasts_path))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    root = tmp_path_factory.mktemp("crash-run")
    data = fleet_csv(root / "fleet.csv", series=SERIES)
    clean = workspace(root / "clean", data)
    started = time.monotonic()
    done = subprocess.run(run_cmd(clean), capture_output=True, text=True)
    duration = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    release = releases.current(clean.releases_dir, "meters")
    assert release is not None
    return Reference(data, file_hash(release), duration)


def half_releases(ws: Workspace, ref: Reference) -> list[str]:
    """Anything a reader could see that is not a complete release of the expected content."""
    problems = []
    for release in releases.list_releases(ws.releases_dir, "meters"):
        if not release.forecasts_path.exists() or file_hash(release) != ref.content:
            problems.append(f"release {release.release_id} is incomplete or differs")
    base = releases.pipeline_dir(ws.releases_dir, "meters")
    for path in base.iterdir() if base.exists() else []:
        if (
            not path.name.startswith(".")
            and path.is_dir()
            and not (path / "manifest.json").exists()
        ):
            problems.append(f"{path.name}: a release directory without a manifest is visible")
    current = releases.current_id(ws.releases_dir, "meters")
    if current is not None and not (base / current / "manifest.json").exists():
        problems.append(f"CURRENT names {current}, which is not a complete release")
    return problems


def committed_partitions(run_dir: Path) -> int:
    return len(list(run_dir.glob("parts/part=*/_SUCCESS")))


def kill(ws: Workspace, point: str, delay: float | None = None) -> tuple[int, str]:
    """Start a run and kill it at ``point`` (or after ``delay`` seconds); returns the exit
    code and the id of the run that was killed."""
    before = set(ws.root.glob("runs/*"))
    if point.startswith(("stage:", "partition:")):
        env = {**os.environ, "STEADYCAST_FAILPOINT": point}
        done = subprocess.run(run_cmd(ws), capture_output=True, env=env, timeout=600)
        code = done.returncode
    else:
        proc = subprocess.Popen(run_cmd(ws), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + (delay if delay is not None else 300)
        while time.monotonic() < deadline and proc.poll() is None:
            if delay is None and any(
                committed_partitions(d) >= 2 for d in set(ws.root.glob("runs/*")) - before
            ):
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        code = proc.wait()
    new = sorted(set(ws.root.glob("runs/*")) - before)
    return code, new[-1].name if new else ""


def finish(ws: Workspace, ref: Reference) -> list[str]:
    """The re-run after the kills: it must publish the reference content."""
    done = subprocess.run(run_cmd(ws), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return [f"the re-run failed ({done.returncode}): {done.stderr[-300:]}"]
    release = releases.current(ws.releases_dir, "meters")
    if release is None or file_hash(release) != ref.content:
        return ["the re-run published different content than an uninterrupted run"]
    result = json.loads(done.stdout)
    with connect(ws.control_path) as con:
        killed = con.execute(
            # A run killed after its record was complete (published or held: the kill landed
            # while the process was exiting) is recorded truly; every other killed run must be
            # recorded as interrupted.
            "SELECT status FROM runs WHERE run_id <> ? AND status NOT IN ('published', 'held') "
            "AND (status <> 'failed' OR error NOT LIKE 'interrupted%')",
            (result["run_id"],),
        ).fetchall()
    statuses = sorted(str(row[0]) for row in killed)
    return [f"killed runs not recorded as interrupted: {statuses}"] if killed else []


def stage_resumed(ws: Workspace, run_id: str) -> int:
    with connect(ws.control_path) as con:
        row = con.execute(
            "SELECT detail FROM stages WHERE run_id = ? AND name = 'forecast'", (run_id,)
        ).fetchone()
    return int(json.loads(row["detail"] or "{}").get("resumed_partitions", 0)) if row else 0


@pytest.mark.timeout(1800 if LONG else 600)
def test_killed_runs_rerun_to_the_same_release(
    tmp_path: Path, reference: Reference, figure: Record
) -> None:
    mismatches: list[str] = []
    scenarios = 0

    # Every kill point once, one run after another in the same workspace.
    ws = workspace(tmp_path / "chain", reference.data)
    killed_ids = []
    for point in CHAIN:
        code, run_id = kill(ws, point)
        killed_ids.append(run_id)
        if code != -signal.SIGKILL:
            mismatches.append(f"chain, {point}: the run was not killed (exit {code})")
        mismatches += [f"chain, {point}: {p}" for p in half_releases(ws, reference)]
        if releases.current_id(ws.releases_dir, "meters") is not None:
            mismatches.append(f"chain, {point}: a release was published by a killed run")
    # The run killed as it began to publish had resumed every partition of the run before it
    # (killed at the gate, after its forecast stage).
    resumed = stage_resumed(ws, killed_ids[CHAIN.index("stage:publish")])
    done = committed_partitions(ws.root / "runs" / killed_ids[CHAIN.index("stage:gate")])
    if not 0 < resumed == done:
        mismatches.append(f"chain: the last killed run resumed {resumed} of {done} partitions")
    mismatches += [f"chain: {p}" for p in finish(ws, reference)]
    scenarios += len(CHAIN)

    # Long: each point on its own, then random moments of a run.
    points = KILL_POINTS if LONG else []
    rng = random.Random(11)
    moments = [rng.uniform(0.5, reference.duration_s) for _ in range(RANDOM_KILLS)]
    finished_first = 0
    for label, point, delay in [
        *((p, p, None) for p in points),
        *((f"after {d:.1f} s", "random", d) for d in moments),
    ]:
        ws = workspace(tmp_path / f"alone-{scenarios}", reference.data)
        code, _ = kill(ws, point, delay)
        if point != "random" and code != -signal.SIGKILL:
            mismatches.append(f"{label}: the run was not killed (exit {code})")
        finished_first += code == 0
        mismatches += [f"{label}: {p}" for p in half_releases(ws, reference)]
        if code != 0:
            mismatches += [f"{label}: {p}" for p in finish(ws, reference)]
        scenarios += 1

    figure(
        "crash-run",
        violations=len(mismatches),
        value=(
            f"{len(mismatches)} mismatches in {scenarios} killed runs "
            f"({len(CHAIN)} kill points in a row"
            + (f", each alone, {RANDOM_KILLS} random moments" if LONG else "")
            + ")"
        ),
        kill_points=CHAIN,
        random_kills=RANDOM_KILLS,
        finished_before_the_kill=finished_first,
        clean_run_s=round(reference.duration_s, 1),
        mismatches=mismatches[:5],
    )
    assert not mismatches, mismatches

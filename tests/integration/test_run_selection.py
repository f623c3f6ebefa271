"""``steadycast run --all`` / ``--select`` and the skip of a run with nothing new, through the
CLI as a scheduler calls it: one line per pipeline, the worst exit code, and no new release
(and no new run record) when no data arrived since the last published or held run."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from steadycast.ingestion.batch import ingest
from steadycast.storage import releases
from steadycast.storage.control import connect
from steadycast.workspace import Workspace
from tests.conftest import run_cli
from tests.integration.test_run import PIPELINE, fleet_csv

FLAT_STOPS = '\n[checks.flat_line]\npolicy = "stop"\nseverity = "error"\nmax_steps = 12\n'


def workspace_with(tmp_path: Path, names: dict[str, str], data: bool = True) -> Workspace:
    """A workspace with exactly the pipelines named (text of each file), each with a fleet."""
    ws = Workspace.init(tmp_path / "ws")
    for stray in ws.pipelines_dir.glob("*.toml"):
        stray.unlink()
    for name, text in names.items():
        (ws.pipelines_dir / f"{name}.toml").write_text(text)
        if data:
            ingest(ws, name, [fleet_csv(tmp_path / f"{name}.csv")])
    return ws


def stuck_fleet(path: Path) -> Path:
    """A fleet with one meter stuck on one value: its flat-line check stops the run."""
    fleet_csv(path)
    frame = pd.read_csv(path)
    frame.loc[frame.meter_id == "m1", "kwh"] = 3.0
    frame.to_csv(path, index=False)
    return path


def runs_of(ws: Workspace) -> list[tuple[str, str]]:
    with connect(ws.control_path) as con:
        rows = con.execute("SELECT pipeline, status FROM runs ORDER BY started_at").fetchall()
    return [(r["pipeline"], r["status"]) for r in rows]


def release_ids(ws: Workspace, pipeline: str) -> list[str]:
    return [r.release_id for r in releases.list_releases(ws.releases_dir, pipeline)]


def pasted(command: str) -> subprocess.CompletedProcess[str]:
    """A printed command run as a person pastes it into a shell, with the installed
    ``steadycast`` on the PATH."""
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run(command, shell=True, capture_output=True, text=True, env=env, timeout=600)


def test_all_runs_every_pipeline_then_skips_them_when_nothing_is_new(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, {"a": PIPELINE, "b": PIPELINE})

    done = run_cli("run", "--all", "-w", str(ws.root))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["a", "b"], done.stdout
    assert all(": published: run " in line for line in lines), done.stdout
    assert runs_of(ws) == [("a", "published"), ("b", "published")]
    first = {p: release_ids(ws, p) for p in ("a", "b")}

    again = run_cli("run", "--all", "--json", "-w", str(ws.root))
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert [(d["pipeline"], d["status"], d["exit_code"]) for d in doc] == [
        ("a", "skipped", 0),
        ("b", "skipped", 0),
    ]
    assert all(d["run_id"] is None for d in doc)
    assert [d["release_id"] for d in doc] == [first["a"][0], first["b"][0]]
    assert "no new data since run" in doc[0]["skipped"]["message"]
    # Nothing recorded, nothing published.
    assert runs_of(ws) == [("a", "published"), ("b", "published")]
    assert {p: release_ids(ws, p) for p in ("a", "b")} == first


def test_select_runs_only_the_pipelines_named(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, {"a": PIPELINE, "b": PIPELINE, "c": PIPELINE})

    done = run_cli("run", "--select", "c", "a", "-w", str(ws.root), "--json")
    assert done.returncode == 0, done.stderr
    assert [(d["pipeline"], d["status"]) for d in json.loads(done.stdout)] == [
        ("c", "published"),
        ("a", "published"),
    ]
    assert sorted(runs_of(ws)) == [("a", "published"), ("c", "published")]


def test_an_unknown_name_runs_nothing_and_lists_the_pipelines(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, {"a": PIPELINE, "b": PIPELINE}, data=False)

    done = run_cli("run", "--select", "a", "nope", "-w", str(ws.root))
    assert done.returncode == 2
    assert "no pipeline named 'nope'" in done.stderr
    assert "nothing was run" in done.stderr and "Pipelines: a, b" in done.stderr
    assert runs_of(ws) == []


def test_the_worst_exit_code_names_the_pipelines_that_did_not_publish(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, {"a": PIPELINE})
    (ws.pipelines_dir / "empty.toml").write_text(PIPELINE)  # no data: its run fails
    (ws.pipelines_dir / "stuck.toml").write_text(PIPELINE + FLAT_STOPS)
    ingest(ws, "stuck", [stuck_fleet(tmp_path / "stuck.csv")])

    done = run_cli("run", "--all", "-w", str(ws.root))
    assert done.returncode == 1, (done.stdout, done.stderr)  # failed is worse than held
    assert "3 pipelines" in done.stderr, done.stderr
    assert "empty (failed, exit 1)" in done.stderr and "stuck (held, exit 3)" in done.stderr
    assert "a (" not in done.stderr
    # One failure does not stop the others: every pipeline ran.
    assert sorted(runs_of(ws)) == [("a", "published"), ("empty", "failed"), ("stuck", "held")]


def test_a_run_with_no_new_data_skips_and_the_printed_force_runs(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, {"meters": PIPELINE})
    first = run_cli("run", "meters", "-w", str(ws.root), "--json")
    assert first.returncode == 0, first.stderr
    run_id = json.loads(first.stdout)["run_id"]

    began = time.monotonic()
    again = run_cli("run", "meters", "-w", str(ws.root))
    took = time.monotonic() - began
    assert again.returncode == 0, again.stderr
    assert f"no new data since run {run_id} (published " in again.stdout, again.stdout
    assert "nothing to do. Force with: " in again.stdout
    assert took < 15, took  # no snapshot, no forecast
    assert len(runs_of(ws)) == 1 and len(release_ids(ws, "meters")) == 1

    force = " ".join(again.stdout.split()).split("Force with: ")[1]
    assert shlex.split(force)[:4] == ["steadycast", "run", "meters", "--force"], force
    forced = pasted(force)
    assert forced.returncode == 0, forced.stderr
    assert "published" in forced.stdout
    assert len(runs_of(ws)) == 2 and len(release_ids(ws, "meters")) == 2

    # New data after a skip: the next run works on it without being forced.
    ingest(ws, "meters", [fleet_csv(tmp_path / "more.csv", days=11, seed=3)])
    fresh = run_cli("run", "meters", "-w", str(ws.root), "--json")
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads(fresh.stdout)["status"] == "published"
    assert len(release_ids(ws, "meters")) == 3

    # A changed pipeline file is something new too (the engine alone is not).
    assert run_cli("run", "meters", "-w", str(ws.root)).stdout.startswith("meters: skipped")
    (ws.pipelines_dir / "meters.toml").write_text(PIPELINE.replace("horizon = 12", "horizon = 6"))
    changed = run_cli("run", "meters", "-w", str(ws.root), "--json")
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)["status"] == "published"


def test_a_held_run_is_not_run_again_on_the_same_data(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, {"p": PIPELINE + FLAT_STOPS}, data=False)
    ingest(ws, "p", [stuck_fleet(tmp_path / "stuck.csv")])
    held = run_cli("run", "p", "-w", str(ws.root), "--json")
    assert held.returncode == 3, held.stderr
    run_id = json.loads(held.stdout)["run_id"]

    again = run_cli("run", "p", "-w", str(ws.root))
    assert again.returncode == 3, again.stderr  # still held: what a scheduler should keep seeing
    text = " ".join(again.stdout.split())
    assert f"no new data since run {run_id} (held " in text and "still held" in text, text
    assert f"steadycast approve {run_id} --reason" in text
    assert "steadycast run p --force" in text
    assert runs_of(ws) == [("p", "held")]

    forced = run_cli("run", "p", "--force", "-w", str(ws.root))
    assert forced.returncode == 3  # the same data, held again: what --force asked for
    assert runs_of(ws) == [("p", "held"), ("p", "held")]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--all", "a"], "--all runs every pipeline; name none with it (got a)"),
        ([], "name the pipelines to run, or use --all; pipelines: a"),
    ],
)
def test_all_with_names_or_no_name_is_a_usage_error(
    tmp_path: Path, args: list[str], said: str
) -> None:
    ws = workspace_with(tmp_path, {"a": PIPELINE}, data=False)
    done = run_cli("run", *args, "-w", str(ws.root))
    assert done.returncode == 2
    assert said in done.stderr and runs_of(ws) == []


def test_batches_that_change_no_data_do_not_make_a_run(tmp_path: Path) -> None:
    """A header-only file and the same rows with their columns in another order are batches
    of their own, but the data is what it was: the scheduled run after them is skipped, not a
    full run."""
    ws = workspace_with(tmp_path, {"meters": PIPELINE})
    first = run_cli("run", "meters", "-w", str(ws.root), "--json")
    assert first.returncode == 0, first.stderr

    fleet = pd.read_csv(fleet_csv(tmp_path / "meters.csv"), dtype=str)  # values as written
    empty = tmp_path / "empty.csv"
    fleet.head(0).to_csv(empty, index=False)
    reordered = tmp_path / "reordered.csv"
    fleet[list(reversed(fleet.columns))].to_csv(reordered, index=False)
    stored = run_cli("ingest", "meters", str(empty), str(reordered), "-w", str(ws.root), "--json")
    assert stored.returncode == 0, stored.stderr
    batches = json.loads(stored.stdout)["batches"]
    assert [b["status"] for b in batches] == ["ingested", "ingested"], batches

    again = run_cli("run", "meters", "-w", str(ws.root))
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("meters: skipped"), again.stdout
    assert len(runs_of(ws)) == 1

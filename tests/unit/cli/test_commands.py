"""The command line is parse-and-print: every command of the contract is there in its order,
``--help`` loads none of the work, and what a command prints is what the Python API returns."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime

import pandas as pd
import pytest

from steadycast.ops.watch import watch_pipelines
from steadycast.pipeline.levers import approval_outcome
from steadycast.pipeline.status import release_history, workspace_status
from steadycast.storage import releases, runlog
from steadycast.workspace import Workspace
from tests.conftest import run_cli

#: The commands in the order ``steadycast --help`` has always listed them.
COMMANDS = [
    "init",
    "ingest",
    "quarantine",
    "run",
    "forecast",
    "releases",
    "rollback",
    "report",
    "runs",
    "hogs",
    "approve",
    "incidents",
    "ack",
    "resolve",
    "status",
    "synth",
    "serve",
    "monitor",
    "validate",
    "metrics",
    "models",
    "demo",
    "sinks",
]
#: What a command's work loads; asking for help must load none of it.
WORK = (
    "statsforecast",
    "mlforecast",
    "lightgbm",
    "plotly",
    "fastapi",
    "uvicorn",
    "pyspark",
    "steadycast.pipeline.run",
    "steadycast.pipeline.levers",
    "steadycast.ingestion.batch",
    "steadycast.server",
    "steadycast.report",
    "steadycast.models.registry",
    "steadycast.ops.watch",
    "steadycast.synth",
    "steadycast.demo",
)


def test_help_lists_every_command_in_its_order() -> None:
    done = run_cli("--help", env={"COLUMNS": "120"})
    assert done.returncode == 0, done.stderr
    listed = re.findall(r"^│ ([a-z]+) {2,}", done.stdout.split("Commands")[1], re.M)
    assert listed == COMMANDS


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["status", "--help"]])
def test_help_loads_none_of_the_work(args: list[str]) -> None:
    code = (
        "import contextlib, io, sys\n"
        "from steadycast.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = main({args!r})\n"
        f"print(code, ' '.join(m for m in {WORK!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.split() == ["0"], done.stdout


@pytest.fixture
def two_releases(workspace: Workspace, make_pipeline: Callable[..., str]) -> list[str]:
    """Pipeline ``p`` with two releases, the older one current (as after a rollback)."""
    make_pipeline("p")
    ids = []
    for run_id, value in (("p-1", 1.0), ("p-2", 2.0)):
        frame = pd.DataFrame(
            {
                "unique_id": ["a", "a"],
                "ds": pd.date_range("2024-03-01", periods=2, freq="1h"),
                "yhat": [value, value],
                "model": ["Naive", "Naive"],
            }
        )
        ids.append(
            releases.write_release(workspace.releases_dir, "p", run_id, frame, {}).release_id
        )
    releases.make_current(workspace.releases_dir, "p", ids[0])
    return ids


def test_releases_marks_the_current_one(workspace: Workspace, two_releases: list[str]) -> None:
    done = run_cli("releases", "p", "-w", str(workspace.root), "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc == json.loads(json.dumps(release_history(workspace, "p"), default=str))
    assert doc["current"] == two_releases[0]
    assert {r["release_id"]: r["current"] for r in doc["releases"]} == {
        two_releases[0]: True,
        two_releases[1]: False,
    }
    text = run_cli("releases", "p", "-w", str(workspace.root), env={"COLUMNS": "200"}).stdout
    marked = [line for line in text.splitlines() if "*" in line]
    assert len(marked) == 1 and two_releases[0] in marked[0]


def test_releases_of_an_unknown_pipeline_is_a_usage_error(workspace: Workspace) -> None:
    done = run_cli("releases", "nope", "-w", str(workspace.root))
    assert done.returncode == 2
    assert "nope" in done.stderr and "Traceback" not in done.stderr


def test_status_covers_every_pipeline_or_the_one_named(
    workspace: Workspace, make_pipeline: Callable[..., str], two_releases: list[str]
) -> None:
    make_pipeline("q")
    every = json.loads(run_cli("status", "-w", str(workspace.root), "--json").stdout)
    assert [p["pipeline"] for p in every["pipelines"]] == ["example", "p", "q"]
    assert every["pipelines"][1]["current_release"] == two_releases[0]
    one = json.loads(run_cli("status", "q", "-w", str(workspace.root), "--json").stdout)
    assert [p["pipeline"] for p in one["pipelines"]] == ["q"]
    assert [p["pipeline"] for p in workspace_status(workspace, "q")["pipelines"]] == ["q"]
    unknown = run_cli("status", "nope", "-w", str(workspace.root))
    assert unknown.returncode == 2 and "nope" in unknown.stderr


def test_monitor_watches_every_pipeline(
    workspace: Workspace, make_pipeline: Callable[..., str]
) -> None:
    make_pipeline("p")
    make_pipeline("q", extra="[monitor]\nenabled = false\n")
    done = run_cli("monitor", "-w", str(workspace.root), "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)["pipelines"]
    assert [e["pipeline"] for e in doc] == ["example", "p", "q"]
    assert doc[1]["accuracy"]["judged_release"] is None and "accuracy" not in doc[2]
    assert all(e["sla"]["state"] for e in doc)
    now = datetime.now(UTC)
    assert [e["pipeline"] for e in watch_pipelines(workspace, "q", now)] == ["q"]
    unknown = run_cli("monitor", "nope", "-w", str(workspace.root))
    assert unknown.returncode == 2 and "nope" in unknown.stderr


def test_approval_outcome_reads_back_what_the_approval_overrode(workspace: Workspace) -> None:
    runlog.start_run(workspace.control_path, "p-1", "p", "local", "sha")
    assert approval_outcome(workspace, "p-1") == {
        "overridden_checks": [],
        "series": 0,
        "gate_failed": [],
    }
    failed = {"check": "jump", "passed": False, "detail": "a jumped"}
    runlog.update_run(
        workspace.control_path,
        "p-1",
        series=3,
        detail={
            "approval": {"overridden_checks": ["volume_parity"]},
            "gate": [{"check": "finite", "passed": True, "detail": ""}, failed],
        },
    )
    assert approval_outcome(workspace, "p-1") == {
        "overridden_checks": ["volume_parity"],
        "series": 3,
        "gate_failed": [failed],
    }

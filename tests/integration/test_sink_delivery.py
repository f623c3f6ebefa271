"""Delivery to sinks: each release made current is written to every ``[[sinks]]`` of the
pipeline; a sink that fails opens one incident, is retried by the next run (a skipped one too)
or ``steadycast sinks retry``, and never un-publishes the release.

The end-to-end test runs the CLI in a subprocess with a Parquet sink on a local folder; the
failure is real (a file stands where the sink's folder must go, which stops even root), and
so is the recovery (the file removed). The fast tests publish releases by hand and give
``deliver`` sinks of their own (a fake driver where ``open_sink`` looks for one).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

import steadycast.sinks
from steadycast.frames import read_forecast
from steadycast.ingestion.batch import ingest
from steadycast.ops import incidents
from steadycast.pipeline import levers
from steadycast.sinks import deliver
from steadycast.sinks.base import ReleaseRows
from steadycast.storage import releases
from steadycast.storage.control import connect
from steadycast.workspace import Workspace
from tests.conftest import run_cli
from tests.integration.test_run import PIPELINE, fleet_csv


def sink_table(path: Path) -> str:
    return f'\n[[sinks]]\nkind = "parquet"\npath = "{path}"\n'


def live_sink_incidents(ws: Workspace, pipeline: str) -> list[incidents.Incident]:
    return [
        i
        for i in incidents.list_incidents(ws.control_path, pipeline=pipeline)
        if i.kind == "sink" and i.state != "resolved"
    ]


def run_count(ws: Workspace) -> int:
    with connect(ws.control_path) as con:
        return int(con.execute("SELECT count(*) FROM runs").fetchone()[0])


def test_a_failed_sink_keeps_the_release_opens_one_incident_and_is_retried(
    tmp_path: Path,
) -> None:
    ws = Workspace.init(tmp_path / "ws")
    sink = tmp_path / "lake"
    (ws.pipelines_dir / "meters.toml").write_text(PIPELINE + sink_table(sink))
    ingest(ws, "meters", [fleet_csv(tmp_path / "fleet.csv")])
    sink.write_text("a file where the sink's folder must go")  # no folder can be made here
    root = str(ws.root)

    first = run_cli("run", "meters", "--json", "-w", root)
    assert first.returncode == 4, first.stderr  # published, but a sink is behind
    doc = json.loads(first.stdout)
    assert doc["status"] == "published" and doc["release_id"]
    release = doc["release_id"]
    [state] = doc["sinks"]
    assert state["state"] == "pending" and state["current_release_id"] == release
    assert state["sink"] == str(sink) and state["release_id"] is None
    assert "warning: meters: sink" in first.stderr and "sinks retry meters" in first.stderr
    # Never un-published: the release is current and served.
    assert releases.current_id(ws.releases_dir, "meters") == release
    [incident] = live_sink_incidents(ws, "meters")
    assert incident.fingerprint == f"sink:meters:{sink}"
    assert release in incident.title and incident.occurrences == 1
    # Every report of the sink behind names its incident: the run's, and `sinks list`'s.
    assert state["incident_id"] == incident.id
    listed = run_cli("sinks", "list", "meters", "--json", "-w", root)
    assert listed.returncode == 4 and f"incident {incident.id};" in listed.stderr
    assert json.loads(listed.stdout)["sinks"][0]["incident_id"] == incident.id
    shown = run_cli("sinks", "list", "meters", "-w", root)  # the sink behind is listed too
    assert f"sink {sink}: holds no release, behind the current {release}" in shown.stdout

    status = run_cli("status", "meters", "-w", root)
    assert f"sink:            {sink}: holds release -, behind" in status.stdout, status.stdout

    # Nothing new: the run is skipped, but the sink is tried again; still failing, still one
    # incident (seen twice), still exit 4 for the scheduler.
    again = run_cli("run", "meters", "--json", "-w", root)
    assert again.returncode == 4, again.stderr
    assert json.loads(again.stdout)["status"] == "skipped"
    [same] = live_sink_incidents(ws, "meters")
    assert same.id == incident.id and same.occurrences == 2

    sink.unlink()  # the cause is gone
    retried = run_cli("sinks", "retry", "meters", "--json", "-w", root)
    assert retried.returncode == 0, retried.stderr
    [done] = json.loads(retried.stdout)["sinks"]
    assert done["state"] == "delivered" and done["release_id"] == release
    assert not live_sink_incidents(ws, "meters")
    resolved = incidents.get_incident(ws.control_path, incident.id)
    assert resolved.state == "resolved" and release in (resolved.resolution or "")

    # The dataset holds the release: every forecast row, the release id in each.
    marker = json.loads((sink / "pipeline=meters" / "_CURRENT").read_text())
    assert marker["release_id"] == release
    table = pq.read_table(sink / "pipeline=meters" / f"release_id={release}" / "part-0.parquet")
    served = read_forecast(ws, "meters")
    assert table.num_rows == len(served) > 0
    assert set(table.column("release_id").to_pylist()) == {release}
    assert set(table.column("run_id").to_pylist()) == {doc["run_id"]}

    # The next run (nothing new) leaves a sink that holds the release alone: exit 0.
    written = (sink / "pipeline=meters" / "_CURRENT").stat().st_mtime_ns
    last = run_cli("run", "meters", "--json", "-w", root)
    assert last.returncode == 0, last.stderr
    assert json.loads(last.stdout)["sinks"][0]["state"] == "current"
    assert (sink / "pipeline=meters" / "_CURRENT").stat().st_mtime_ns == written
    assert run_count(ws) == 1  # one real run; the others were skipped
    assert releases.current_id(ws.releases_dir, "meters") == release


# ----------------------------------------------------------------------------------------------
# Fast: releases published by hand, sinks of the test's own
# ----------------------------------------------------------------------------------------------


def publish_by_hand(ws: Workspace, pipeline: str, run_id: str, level: float) -> str:
    """A small release made current as a run would, without the run."""
    frame = pd.DataFrame(
        {
            "unique_id": ["a", "a", "b", "b"],
            "ds": pd.to_datetime(["2024-01-01 00:00", "2024-01-01 01:00"] * 2),
            "yhat": [level, level + 1, level + 2, level + 3],
            "model": ["Naive"] * 4,
            "yhat_lo_80": [level - 1] * 4,
            "yhat_hi_80": [level + 5] * 4,
        }
    )
    release = releases.write_release(
        ws.releases_dir, pipeline, run_id, frame, {"levels": [80], "horizon": 2}
    )
    releases.make_current(ws.releases_dir, pipeline, release.release_id)
    return release.release_id


class Recording:
    """A sink that keeps what it was given, or raises what it is told to."""

    def __init__(self) -> None:
        self.written: list[ReleaseRows] = []
        self.fail: BaseException | None = None

    @property
    def label(self) -> str:
        return "recording"

    def write(self, release: ReleaseRows) -> None:
        if self.fail is not None:
            raise self.fail
        self.written.append(release)


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Workspace, Recording]:
    ws = Workspace.init(tmp_path / "ws")
    (ws.pipelines_dir / "meters.toml").write_text(PIPELINE + sink_table(tmp_path / "lake"))
    sink = Recording()
    monkeypatch.setattr(steadycast.sinks, "open_sink", lambda cfg: sink)
    return ws, sink


def test_rollback_delivers_the_release_made_current(recorded: tuple[Workspace, Any]) -> None:
    ws, sink = recorded
    cfg = ws.pipeline("meters")
    first = publish_by_hand(ws, "meters", "meters-20240101T000000Z-aaaa", 1.0)
    [d] = deliver.deliver(ws, cfg)
    assert d.state == "delivered" and sink.written[-1].release_id == first
    second = publish_by_hand(ws, "meters", "meters-20240102T000000Z-bbbb", 10.0)
    deliver.deliver(ws, cfg)
    assert sink.written[-1].release_id == second
    rows = sink.written[-1].rows
    assert rows.num_rows == 4 and set(rows.column("release_id").to_pylist()) == {second}
    assert set(rows.column("run_id").to_pylist()) == {"meters-20240102T000000Z-bbbb"}

    assert levers.rollback(ws, "meters", "bad numbers", to=first) == first
    assert sink.written[-1].release_id == first  # the sink follows the rollback
    assert [s.state for s in deliver.sink_states(ws, cfg)] == ["current"]
    # Delivered once each: a sink holding the current release is not written again.
    assert deliver.deliver(ws, cfg)[0].state == "current" and len(sink.written) == 3


def test_whatever_a_sink_raises_is_recorded_without_its_secrets(
    recorded: tuple[Workspace, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, sink = recorded
    secret = "wJalrXUtnFEMI-K7MDENG-sink-secret"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    publish_by_hand(ws, "meters", "meters-20240101T000000Z-aaaa", 1.0)
    sink.fail = RuntimeError(
        f"signature for {secret} refused by postgresql://loader:hunter2pw@db.example/x"
    )
    [d] = deliver.deliver(ws, ws.pipeline("meters"), "meters-20240101T000000Z-aaaa")
    assert d.state == "pending" and d.incident_id is not None
    assert d.error is not None and "RuntimeError" in d.error and "loader:***@" in d.error
    raw = b"".join(p.read_bytes() for p in ws.root.glob("control.sqlite*"))
    assert secret.encode() not in raw and b"hunter2pw" not in raw
    assert secret not in json.dumps([i.as_dict() for i in live_sink_incidents(ws, "meters")])
    with sqlite3.connect(ws.control_path) as con:
        [(error,)] = con.execute("SELECT last_error FROM sinks").fetchall()
    assert "***" in error and secret not in error


def test_a_forced_rewrite_that_fails_leaves_no_incident_behind_an_up_to_date_sink(
    recorded: tuple[Workspace, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from steadycast.cli.run import warn_sinks_behind

    ws, sink = recorded
    cfg = ws.pipeline("meters")
    release = publish_by_hand(ws, "meters", "meters-20240101T000000Z-aaaa", 1.0)
    assert deliver.deliver(ws, cfg)[0].state == "delivered"
    sink.fail = RuntimeError("the store is down")
    [forced] = deliver.deliver(ws, cfg, force=True)
    assert forced.state == "pending" and forced.release_id == release  # it still holds it
    warn_sinks_behind("meters", [forced.as_dict()])
    warned = capsys.readouterr().err
    assert "could not write release" in warned
    assert "`steadycast sinks retry meters --force`" in warned
    [incident] = live_sink_incidents(ws, "meters")
    # The next delivery finds the sink up to date: the incident does not outlive the outage.
    sink.fail = None
    assert deliver.deliver(ws, cfg)[0].state == "current"
    assert not live_sink_incidents(ws, "meters")
    assert incidents.get_incident(ws.control_path, incident.id).state == "resolved"


def test_sinks_list_before_any_release_says_so(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    (ws.pipelines_dir / "meters.toml").write_text(PIPELINE + sink_table(tmp_path / "lake"))
    listed = run_cli("sinks", "list", "meters", "-w", str(ws.root))
    assert listed.returncode == 0, listed.stderr
    assert f"sink {tmp_path / 'lake'}: no release published yet" in listed.stdout
    assert "None" not in listed.stdout


def test_a_sink_that_cannot_even_be_opened_is_pending_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = Workspace.init(tmp_path / "ws")
    (ws.pipelines_dir / "meters.toml").write_text(PIPELINE + sink_table(tmp_path / "lake"))

    def broken(cfg: Any) -> Any:
        raise ImportError("No module named 'a_driver'")

    monkeypatch.setattr(steadycast.sinks, "open_sink", broken)
    release = publish_by_hand(ws, "meters", "meters-20240101T000000Z-aaaa", 1.0)
    [d] = deliver.deliver(ws, ws.pipeline("meters"))
    assert d.state == "pending" and "ImportError" in (d.error or "")
    assert releases.current_id(ws.releases_dir, "meters") == release
    assert len(live_sink_incidents(ws, "meters")) == 1


def test_a_relative_folder_is_the_workspaces_wherever_the_run_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = Workspace.init(tmp_path / "ws")
    (ws.pipelines_dir / "meters.toml").write_text(
        PIPELINE + '\n[[sinks]]\nkind = "parquet"\npath = "lake"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    release = publish_by_hand(ws, "meters", "meters-20240101T000000Z-aaaa", 1.0)
    [d] = deliver.deliver(ws, ws.pipeline("meters"))
    assert d.state == "delivered" and d.sink == "lake"
    marker = json.loads((ws.root / "lake" / "pipeline=meters" / "_CURRENT").read_text())
    assert marker["release_id"] == release and not (elsewhere / "lake").exists()


def test_a_sink_behind_is_exit_4_between_published_and_held() -> None:
    from steadycast.pipeline.many import Outcome, exit_code, result_exit_code
    from steadycast.pipeline.scope import RunResult

    behind = [{"sink": "lake", "state": "pending"}]
    assert result_exit_code(RunResult("r", "p", "published", sinks=behind)) == 4
    assert result_exit_code(RunResult("r", "p", "published", sinks=[{"state": "current"}])) == 0
    after_published = {"since_status": "published", "message": "nothing new"}
    skipped = RunResult("r", "p", "skipped", skipped=after_published, sinks=behind)
    assert result_exit_code(skipped) == 4
    still_held = RunResult("r", "p", "skipped", skipped={"since_status": "held"}, sinks=behind)
    assert result_exit_code(still_held) == 3  # the hold is what a person must see first
    assert result_exit_code(RunResult("r", "p", "failed", sinks=behind)) == 1
    ranked = [Outcome("a", 0, 1.0), Outcome("b", 4, 1.0)]
    assert exit_code(ranked) == 4
    assert exit_code([*ranked, Outcome("c", 3, 1.0)]) == 3

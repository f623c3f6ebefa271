"""The gate inside real runs: a tripped rule holds the run (exit 3), the last good release stays,
an incident opens, the webhook hears about it; approve and rollback are the levers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steadycast.ingestion.batch import ingest
from steadycast.ops.incidents import list_incidents
from steadycast.pipeline.levers import approve, rollback
from steadycast.pipeline.run import run_pipeline
from steadycast.storage import releases
from steadycast.storage.control import audit_entries
from steadycast.workspace import Workspace
from tests.conftest import run_cli


class Hook:
    """A real HTTP server on 127.0.0.1 that records what alerts it receives."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                hook.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


def make(
    tmp_path: Path,
    hook: Hook,
    extra: str = "",
    candidates: str = '"SeasonalNaive", "HistoricAverage"',
) -> Workspace:
    ws = Workspace.init(tmp_path / "ws")
    (ws.pipelines_dir / "p.toml").write_text(
        '[source]\nid_column="id"\ntime_column="t"\nvalue_column="v"\n'
        '[series]\nfrequency="1h"\nhorizon=12\nseason_lengths=[24]\nmin_value=0\n'
        f"[models]\ncandidates=[{candidates}]\n[forecast]\nworkers=1\n"
        f'[alerts]\nwebhook_url="{hook.url}"\nbackoff_s=0.1\n' + extra
    )
    return ws


def data(
    path: Path,
    days: int = 8,
    scale: float = 1.0,
    stuck: str | None = None,
    start: str = "2024-01-01",
) -> Path:
    ds = pd.date_range(start, periods=24 * days, freq="h")
    frames = []
    for i in range(6):
        y = scale * (5 + i + np.sin(2 * np.pi * ds.hour.to_numpy() / 24))
        if stuck == f"s{i}":
            y = np.full(len(ds), 3.0)
        frames.append(pd.DataFrame({"id": f"s{i}", "t": ds.strftime("%Y-%m-%d %H:%M"), "v": y}))
    pd.concat(frames).to_csv(path, index=False)
    return path


def held_checks(result_gate: list[dict]) -> set[str]:
    return {g["check"] for g in result_gate if not g["passed"]}


def test_blocking_check_holds_the_run_and_alerts(tmp_path: Path, hook: Hook) -> None:
    ws = make(tmp_path, hook, '[checks.flat_line]\npolicy="stop"\nseverity="error"\n')
    ingest(ws, "p", [data(tmp_path / "a.csv")])
    first = run_pipeline(ws, "p")
    assert first.status == "published", first.error
    ingest(ws, "p", [data(tmp_path / "b.csv", days=4, stuck="s2", start="2024-01-09")])
    done = run_cli("run", "p", "-w", str(ws.root), "--json")
    assert done.returncode == 3, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "held" and "blocking_checks" in held_checks(doc["gate"])
    assert releases.current_id(ws.releases_dir, "p") == first.release_id
    open_ = list_incidents(ws.control_path, state="open", pipeline="p")
    # One cause, one incident: the stopping check and the rule it tripped are named in the
    # held incident, not opened beside it.
    held = [i for i in open_ if i.kind == "held"]
    assert len(held) == 1 and not [i for i in open_ if i.kind == "gate"], open_
    assert "flat_line" in (held[0].detail or "") and "s2" in (held[0].detail or "")
    titles = [b.get("title", "") + b.get("text", "") for b in hook.bodies]
    assert any("held" in t for t in titles)


def test_fallback_share_holds_then_approve_publishes(tmp_path: Path, hook: Hook) -> None:
    ws = make(tmp_path, hook, candidates='"ChaosNaN"')
    ingest(ws, "p", [data(tmp_path / "a.csv")])
    held = run_pipeline(ws, "p")
    assert held.status == "held"
    assert "fallback_share" in held_checks(held.gate)
    assert releases.current_id(ws.releases_dir, "p") is None
    release_id = approve(ws, held.run_id, "fallbacks are fine for this new pipeline")
    assert releases.current_id(ws.releases_dir, "p") == release_id
    assert (
        releases.read_forecasts(releases.current(ws.releases_dir, "p"))
        .groupby("unique_id")
        .size()
        .eq(12)
        .all()
    )  # type: ignore[arg-type]
    approved = [e for e in audit_entries(ws.control_path, "p") if e["action"] == "run.approved"]
    assert approved and approved[0]["reason"] == "fallbacks are fine for this new pipeline"
    held_incidents = [i for i in list_incidents(ws.control_path, pipeline="p") if i.kind == "held"]
    assert held_incidents and all(i.state == "resolved" for i in held_incidents)
    again = run_cli("approve", held.run_id, "--reason", "twice", "-w", str(ws.root))
    assert again.returncode == 2 and "not held" in again.stderr


def test_total_jump_holds_and_rollback_restores(tmp_path: Path, hook: Hook) -> None:
    ws = make(
        tmp_path,
        hook,
        "[checks.level_shift]\nenabled=false\n[checks.volume_parity]\nenabled=false\n",
    )
    ingest(ws, "p", [data(tmp_path / "a.csv")])
    first = run_pipeline(ws, "p")
    assert first.status == "published", first.error
    # The same period delivered again at three times the level: a correction of every value.
    ingest(ws, "p", [data(tmp_path / "b.csv", scale=3.0)])
    jumped = run_pipeline(ws, "p")
    assert jumped.status == "held" and "total_jump" in held_checks(jumped.gate)
    assert releases.current_id(ws.releases_dir, "p") == first.release_id
    second_release = approve(ws, jumped.run_id, "the tripling is real: new tariff")
    assert rollback(ws, "p", "tariff news was wrong") == first.release_id
    actions = [e["action"] for e in audit_entries(ws.control_path, "p")]
    assert actions.index("release.rollback") < actions.index("run.approved")
    assert releases.current_id(ws.releases_dir, "p") == first.release_id != second_release


def test_config_change_is_audited_with_its_diff(tmp_path: Path, hook: Hook) -> None:
    ws = make(tmp_path, hook)
    ingest(ws, "p", [data(tmp_path / "a.csv")])
    run_pipeline(ws, "p")
    path = ws.pipelines_dir / "p.toml"
    path.write_text(path.read_text().replace("horizon=12", "horizon=6"))
    run_pipeline(ws, "p")
    changed = [e for e in audit_entries(ws.control_path, "p") if e["action"] == "config.changed"]
    assert len(changed) == 1
    assert any('"horizon": 6' in line for line in changed[0]["detail"]["diff"])


def test_negative_forecast_for_a_never_negative_series_holds(tmp_path: Path, hook: Hook) -> None:
    """A falling series forecast by an honest straight line goes below zero: held, alerted."""
    ws = Workspace.init(tmp_path / "ws")
    (ws.pipelines_dir / "p.toml").write_text(
        '[source]\nid_column="id"\ntime_column="t"\nvalue_column="v"\n'
        '[series]\nfrequency="1h"\nhorizon=24\n'  # no min_value: the gate is the safety net
        '[models]\ncandidates=["ChaosLinear", "Naive"]\n[backtest]\nensemble_top_k=0\n'
        "[checks.level_shift]\nenabled=false\n[forecast]\nworkers=1\n"
        f'[alerts]\nwebhook_url="{hook.url}"\nbackoff_s=0.1\n'
    )
    ds = pd.date_range("2024-01-01", periods=120, freq="h")
    frame = pd.concat(
        pd.DataFrame(
            {"id": f"s{i}", "t": ds.strftime("%Y-%m-%d %H:%M"), "v": 12.0 - 0.1 * np.arange(120)}
        )
        for i in range(3)
    )
    frame.to_csv(tmp_path / "falling.csv", index=False)
    ingest(ws, "p", [tmp_path / "falling.csv"])
    done = run_cli("run", "p", "-w", str(ws.root), "--json")
    assert done.returncode == 3, done.stderr
    doc = json.loads(done.stdout)
    assert "negative" in held_checks(doc["gate"])
    assert releases.current_id(ws.releases_dir, "p") is None
    assert any(
        i.kind == "held" and "negative" in i.title
        for i in list_incidents(ws.control_path, state="open")
    )
    assert any("negative" in json.dumps(b) for b in hook.bodies)

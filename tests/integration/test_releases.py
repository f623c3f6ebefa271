"""Releases are immutable; the current pointer swaps atomically; rollback is one audited step."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steadycast.errors import NotFoundError, UsageError
from steadycast.pipeline.levers import rollback
from steadycast.storage import releases
from steadycast.storage.control import audit_entries
from steadycast.workspace import Workspace
from tests.conftest import run_cli


def frame(value: float, series: int = 200, steps: int = 48) -> pd.DataFrame:
    ds = pd.date_range("2024-01-01", periods=steps, freq="h")
    return pd.DataFrame(
        {
            "unique_id": np.repeat([f"s{i}" for i in range(series)], steps),
            "ds": np.tile(ds, series),
            "yhat": value,
            "model": "Naive",
        }
    )


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    ws = Workspace.init(tmp_path / "ws")
    (ws.pipelines_dir / "p.toml").write_text(
        '[source]\nid_column="a"\ntime_column="b"\nvalue_column="c"\n[series]\nfrequency="1h"\nhorizon=48\n'
    )
    return ws


def publish(ws: Workspace, run_id: str, value: float) -> str:
    rel = releases.write_release(ws.releases_dir, "p", run_id, frame(value), {})
    releases.make_current(ws.releases_dir, "p", rel.release_id)
    return rel.release_id


def test_reader_during_swaps_only_ever_sees_a_whole_release(ws: Workspace) -> None:
    ids = [publish(ws, f"run-{i}", float(i)) for i in range(3)]
    stop = threading.Event()

    def swapper() -> None:
        i = 0
        while not stop.is_set():
            releases.make_current(ws.releases_dir, "p", ids[i % 3])
            i += 1

    thread = threading.Thread(target=swapper)
    thread.start()
    try:
        seen = set()
        for _ in range(200):
            rel = releases.current(ws.releases_dir, "p")
            assert rel is not None
            got = releases.read_forecasts(rel)
            # Complete (every row) and from exactly one release (one value throughout).
            assert len(got) == 200 * 48
            assert got["yhat"].nunique() == 1
            assert releases.content_hash(got) == rel.manifest["content_sha256"]
            seen.add(rel.release_id)
    finally:
        stop.set()
        thread.join()
    assert len(seen) >= 2


def test_rollback_to_previous_and_to_a_named_release_is_audited(ws: Workspace) -> None:
    first, second, third = (publish(ws, f"run-{i}", float(i)) for i in range(3))
    assert rollback(ws, "p", "third looks wrong") == second
    assert releases.current_id(ws.releases_dir, "p") == second
    assert rollback(ws, "p", "back to the start", to=first) == first
    entries = [e for e in audit_entries(ws.control_path, "p") if e["action"] == "release.rollback"]
    assert [(e["detail"]["from"], e["detail"]["to"], e["reason"]) for e in entries] == [
        (second, first, "back to the start"),
        (third, second, "third looks wrong"),
    ]
    with pytest.raises(NotFoundError, match="no release 'nope'"):
        rollback(ws, "p", "x", to="nope")
    with pytest.raises(UsageError, match="already the current release"):
        rollback(ws, "p", "x", to=first)
    with pytest.raises(UsageError, match="needs a reason"):
        rollback(ws, "p", "  ")


def test_rollback_cli(ws: Workspace) -> None:
    publish(ws, "run-a", 1.0)
    only = run_cli("rollback", "p", "--reason", "x", "-w", str(ws.root))
    assert only.returncode == 2 and "no earlier release" in only.stderr
    publish(ws, "run-b", 2.0)
    missing_reason = run_cli("rollback", "p", "-w", str(ws.root))
    assert missing_reason.returncode == 2
    done = run_cli("rollback", "p", "--reason", "bad numbers", "-w", str(ws.root))
    assert done.returncode == 0, done.stderr
    assert releases.current_id(ws.releases_dir, "p") == "run-a"

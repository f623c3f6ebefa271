"""The run-level checks judge a run against the last *published* run: a held run is not a
baseline, so re-running the data that held it (``run --force``) holds again instead of
publishing the fault it was held for."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from steadycast.ingestion.batch import ingest
from steadycast.storage import releases
from steadycast.workspace import Workspace
from tests.conftest import run_cli
from tests.integration.test_run import PIPELINE, fleet_csv


def test_a_forced_rerun_of_a_held_delivery_holds_again(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    (ws.pipelines_dir / "meters.toml").write_text(PIPELINE)
    first = fleet_csv(tmp_path / "fleet.csv", series=10, days=10)
    ingest(ws, "meters", [first])
    assert run_cli("run", "meters", "-w", str(ws.root)).returncode == 0
    published = [r.release_id for r in releases.list_releases(ws.releases_dir, "meters")]

    # Two more days, from half of the meters only: half the fleet stopped reporting.
    later = pd.read_csv(fleet_csv(tmp_path / "later.csv", series=10, days=12))
    later = later[pd.to_datetime(later["timestamp"]) >= pd.Timestamp("2024-03-11")]
    later = later[later["meter_id"].isin([f"m{i}" for i in range(5)])]
    later.to_csv(tmp_path / "later_half.csv", index=False)
    ingest(ws, "meters", [tmp_path / "later_half.csv"])

    held = run_cli("run", "meters", "-w", str(ws.root))
    assert held.returncode == 3, held.stdout + held.stderr
    assert "volume parity" in held.stdout

    forced = run_cli("run", "meters", "--force", "-w", str(ws.root))
    assert forced.returncode == 3, forced.stdout + forced.stderr
    assert "volume parity" in forced.stdout
    after = [r.release_id for r in releases.list_releases(ws.releases_dir, "meters")]
    assert after == published

"""A broken delivery of real hourly load never reaches the release.

A pipeline of seven GEFCom2012 load zones publishes from eight weeks of history; its next
48-hour delivery is then corrupted. The whole fleet x1000 (a unit change) holds the run and
the current release stays; one zone x1000 excludes that zone only: the run publishes, the zone
keeps serving its last good forecast, and the provenance and an open incident name the zone
and the fault.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from steadycast.ingestion.batch import ingest
from steadycast.ops.incidents import list_incidents
from steadycast.pipeline.run import run_pipeline
from steadycast.storage import releases
from steadycast.workspace import Workspace
from tests.conftest import run_cli
from tests.reliability import feeds

CUT = pd.Timestamp("2006-03-01")
ZONE_NUMBERS = (1, 2, 4, 5, 6, 8, 9)
ZONES = [f"zone{z}" for z in ZONE_NUMBERS]


def gefcom() -> pd.DataFrame:
    """Eight weeks of history and the next 48-hour delivery of seven real load zones."""
    feed = feeds.gefcom(ZONE_NUMBERS)
    return feed.between(CUT - pd.Timedelta(weeks=8), CUT + pd.Timedelta(hours=48))


def write(frame: pd.DataFrame, path: Path) -> Path:
    out = frame.assign(ds=frame["ds"].dt.strftime("%Y-%m-%d %H:%M"))
    out.to_csv(path, index=False)
    return path


@pytest.fixture
def published(tmp_path: Path) -> tuple[Workspace, pd.DataFrame, pd.DataFrame]:
    """A workspace whose pipeline published from the history; and the clean next delivery."""
    frame = gefcom()
    history, delivery = frame[frame["ds"] < CUT], frame[frame["ds"] >= CUT]
    ws = Workspace.init(tmp_path / "ws")
    (ws.pipelines_dir / "load.toml").write_text(
        '[source]\nid_column="unique_id"\ntime_column="ds"\nvalue_column="y"\n'
        '[series]\nfrequency="1h"\nhorizon=48\nseason_lengths=[24]\n'
        '[models]\ncandidates=["SeasonalNaive", "HistoricAverage"]\n[forecast]\nworkers=1\n'
    )
    ingest(ws, "load", [write(history, tmp_path / "history.csv")])
    first = run_pipeline(ws, "load")
    assert first.status == "published", first.error
    return ws, history, delivery


def test_a_fleet_wide_unit_change_holds_the_run(
    published: tuple[Workspace, pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    ws, _, delivery = published
    before = releases.current_id(ws.releases_dir, "load")
    bad = delivery.assign(y=delivery["y"] * 1000.0)
    ingest(ws, "load", [write(bad, tmp_path / "x1000.csv")])
    done = run_cli("run", "load", "-w", str(ws.root), "--json")
    assert done.returncode == 3, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "held"
    assert "feed fault" in doc["error"] and "'scale'" in doc["error"]
    assert releases.current_id(ws.releases_dir, "load") == before


def test_one_zone_x1000_is_excluded_and_keeps_its_last_good_forecast(
    published: tuple[Workspace, pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    ws, history, delivery = published
    before = releases.current_id(ws.releases_dir, "load")
    bad = delivery.copy()
    bad.loc[bad["unique_id"] == "zone4", "y"] *= 1000.0
    ingest(ws, "load", [write(bad, tmp_path / "zone4.csv")])
    done = run_cli("run", "load", "-w", str(ws.root), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    release = releases.current(ws.releases_dir, "load")
    assert release is not None and release.release_id != before
    served = releases.read_forecasts(release)
    level = served.groupby("unique_id")["yhat"].median()
    typical = history.groupby("unique_id")["y"].median()
    assert set(level.index) == set(ZONES)
    ratio = level / typical[level.index]
    assert ratio.between(0.5, 2.0).all(), ratio.to_dict()  # zone4 included: no garbage served
    provenance = pd.read_parquet(release.path / "provenance.parquet")
    row = provenance.set_index("unique_id").loc["zone4"]
    assert row["source"] == "carried_over"
    assert "feed fault 'scale'" in row["fallback_reason"]
    others = provenance[provenance["unique_id"] != "zone4"]
    assert (others["source"] != "carried_over").all()
    opened = list_incidents(ws.control_path, state="open", pipeline="load")
    named = [i for i in opened if "zone4" in i.title + i.detail and "scale" in i.detail]
    assert named, [(i.title, i.detail) for i in opened]

"""A run end to end on a small fleet: snapshot, backtest, select, forecast, publish, export."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steadycast.config import ModelsConfig
from steadycast.errors import NotFoundError, StoreBusyError
from steadycast.forecasting.selection import ensemble_members
from steadycast.ingestion.batch import ingest
from steadycast.pipeline.run import run_pipeline
from steadycast.storage import releases, store
from steadycast.storage.control import connect
from steadycast.storage.export import current_forecast, export_forecast
from steadycast.storage.runlog import pipeline_lock
from steadycast.workspace import Workspace
from tests.conftest import run_cli
from tests.pipelines import CHEAP_MODELS, pipeline_toml

PIPELINE = pipeline_toml(models=CHEAP_MODELS, forecast={"workers": 1})


def fleet_csv(path: Path, series: int = 5, days: int = 10, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    hours = pd.date_range("2024-03-01", periods=24 * days, freq="1h")
    rows = []
    for i in range(series):
        daily = 1.0 + 0.5 * np.sin(2 * np.pi * (hours.hour.to_numpy() + i) / 24)
        values = np.maximum(0, daily * (1 + i) + rng.normal(0, 0.05, len(hours)))
        rows.append(
            pd.DataFrame(
                {"meter_id": f"m{i}", "timestamp": hours.strftime("%Y-%m-%d %H:%M"), "kwh": values}
            )
        )
    # One series with a gap of a few hours, which prepare fills.
    frame = pd.concat(rows, ignore_index=True)
    frame = frame.drop(
        frame[(frame.meter_id == "m0") & frame.timestamp.str.startswith("2024-03-05 1")].index
    )
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def ready(tmp_path: Path) -> Workspace:
    ws = Workspace.init(tmp_path / "ws")
    (ws.pipelines_dir / "meters.toml").write_text(PIPELINE)
    ingest(ws, "meters", [fleet_csv(tmp_path / "fleet.csv")])
    return ws


def test_run_publishes_a_release_with_every_series_and_its_provenance(ready: Workspace) -> None:
    result = run_pipeline(ready, "meters")
    assert result.status == "published", result.error
    assert result.series == 5
    assert [s["name"] for s in result.stages] == [
        "snapshot",
        "check",
        "forecast",
        "gate",
        "publish",
    ]
    assert result.stages[0]["rows_in"] == result.stages[2]["rows_in"]
    release_id, frame = current_forecast(ready, "meters")
    assert release_id == result.release_id
    assert list(frame.columns) == [
        "unique_id",
        "ds",
        "yhat",
        "model",
        "yhat_lo_80",
        "yhat_hi_80",
        "yhat_lo_95",
        "yhat_hi_95",
    ]
    assert frame.groupby("unique_id").size().to_dict() == {f"m{i}": 12 for i in range(5)}
    assert np.isfinite(frame[["yhat", "yhat_lo_95", "yhat_hi_95"]]).all().all()
    assert (frame["yhat_lo_95"] <= frame["yhat"]).all() and (
        frame["yhat"] <= frame["yhat_hi_95"]
    ).all()
    assert (frame["yhat_lo_95"] >= 0).all()  # min_value = 0 bounds the intervals too
    # Forecasts start one step after each series' last observation.
    assert frame.groupby("unique_id")["ds"].min().eq(pd.Timestamp("2024-03-11 00:00")).all()
    with store.reading(ready.store_path) as con:
        prov = con.execute(
            "SELECT unique_id, model, source, selection_reason FROM series_provenance WHERE run_id = ?",
            [result.run_id],
        ).fetchdf()
        scored = con.execute(
            "SELECT count(DISTINCT model) FROM backtest_scores WHERE run_id = ?", [result.run_id]
        ).fetchone()
    assert sorted(prov["unique_id"]) == [f"m{i}" for i in range(5)]
    assert prov["selection_reason"].str.len().gt(0).all()
    assert scored is not None and scored[0] >= 4
    with connect(ready.control_path) as con:
        run = con.execute(
            "SELECT status, release_id FROM runs WHERE run_id = ?", (result.run_id,)
        ).fetchone()
        stages = con.execute(
            "SELECT name, status, cpu_s FROM stages WHERE run_id = ?", (result.run_id,)
        ).fetchall()
    assert tuple(run) == ("published", result.release_id)
    assert all(s["status"] == "ok" for s in stages)


def test_cli_run_json_and_forecast_export(ready: Workspace, tmp_path: Path) -> None:
    done = run_cli("run", "meters", "-w", str(ready.root), "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert set(doc) == {
        "run_id",
        "pipeline",
        "status",
        "release_id",
        "series",
        "fallback_series",
        "gate",
        "stages",
        "config",
    }
    assert doc["status"] == "published"
    # The backtest judged the hours the forecast covers (00:00 to 11:00): its origins are whole
    # days before the forecast's (2024-03-10 23:00), not half days.
    with store.reading(ready.store_path) as con:
        cutoffs = con.execute(
            "SELECT DISTINCT cutoff FROM backtest_scores WHERE run_id = ? ORDER BY cutoff DESC",
            [doc["run_id"]],
        ).fetchdf()["cutoff"]
    assert [pd.Timestamp(c).tz_localize(None) for c in cutoffs] == [
        pd.Timestamp(f"2024-03-{day:02d} 23:00") for day in (9, 8, 7)
    ]
    # The pipeline config as the run used it: an object, defaults filled in.
    assert doc["config"]["name"] == "meters" and doc["config"]["series"]["horizon"] == 12
    assert set(doc["stages"][0]) == {
        "name",
        "wall_s",
        "cpu_s",
        "peak_rss_mb",
        "rows_in",
        "rows_out",
    }
    csv = run_cli("forecast", "meters", "--series", "m1", "-w", str(ready.root))
    assert csv.returncode == 0, csv.stderr
    frame = pd.read_csv(io.StringIO(csv.stdout))
    assert set(frame["unique_id"]) == {"m1"} and len(frame) == 12
    assert frame["ds"].iloc[0] == "2024-03-11T00:00:00Z"
    as_json = json.loads(
        run_cli("forecast", "meters", "--format", "json", "-w", str(ready.root)).stdout
    )
    assert as_json["release_id"] == doc["release_id"] and len(as_json["rows"]) == 60
    out = tmp_path / "f.parquet"
    assert (
        run_cli(
            "forecast", "meters", "--format", "parquet", "-o", str(out), "-w", str(ready.root)
        ).returncode
        == 0
    )
    assert len(pd.read_parquet(out)) == 60
    unknown = run_cli("forecast", "meters", "--series", "nope", "-w", str(ready.root))
    assert unknown.returncode == 2 and "no series 'nope'" in unknown.stderr


def test_second_run_of_the_same_pipeline_fails_fast_naming_the_first(ready: Workspace) -> None:
    with pipeline_lock(ready.control_path, "meters", "meters-first"):
        with pytest.raises(
            StoreBusyError,
            match=r"another run of pipeline 'meters' is in progress since .*run meters-first",
        ):
            run_pipeline(ready, "meters")
        busy = run_cli("run", "meters", "-w", str(ready.root))
        assert busy.returncode == 1 and "run meters-first" in busy.stderr


def test_lock_of_a_dead_process_is_taken_over(ready: Workspace) -> None:
    with connect(ready.control_path) as con:
        con.execute(
            "INSERT INTO runs (run_id, pipeline, status, started_at, pid, host) VALUES ('old', 'meters', 'running', 'x', 999999999, ?)",
            (__import__("socket").gethostname(),),
        )
        con.execute(
            "INSERT INTO locks VALUES ('meters', 'old', 999999999, ?, 'x')",
            (__import__("socket").gethostname(),),
        )
    assert run_pipeline(ready, "meters").status == "published"
    with connect(ready.control_path) as con:
        old = con.execute("SELECT status, error FROM runs WHERE run_id = 'old'").fetchone()
    assert old["status"] == "failed" and "interrupted" in old["error"]


def test_run_without_data_fails_with_a_clear_message(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    (ws.pipelines_dir / "meters.toml").write_text(PIPELINE)
    result = run_pipeline(ws, "meters")
    assert result.status == "failed"
    assert "has no stored observations; ingest data first" in str(result.error)
    with pytest.raises(NotFoundError, match="has no published release yet"):
        export_forecast(ws, "meters", series=None, fmt="csv", output=None, stdout=io.StringIO())
    assert releases.current(ws.releases_dir, "meters") is None


def test_unknown_candidate_model_is_a_configuration_error(ready: Workspace) -> None:
    path = ready.pipelines_dir / "meters.toml"
    path.write_text(path.read_text().replace('"SES"]', '"SES", "AutoETZ"]'))
    done = run_cli("run", "meters", "-w", str(ready.root))
    assert done.returncode == 2
    assert "pipelines/meters.toml: models.candidates: unknown model 'AutoETZ'" in done.stderr


def test_auto_tier_splits_the_fleet_and_records_the_plan(ready: Workspace) -> None:
    (ready.pipelines_dir / "meters.toml").write_text(
        PIPELINE.replace("[models]\n", '[models]\ntier = "auto"\nfull_share = 0.4\n')
    )
    result = run_pipeline(ready, "meters")
    assert result.status == "published", result.error
    with store.reading(ready.store_path) as con:
        rows = con.execute(
            "SELECT unique_id, tier, model FROM series_provenance WHERE run_id = ?",
            [result.run_id],
        ).fetchall()
    tiers_of = {uid: tier for uid, tier, _ in rows}
    # 5 series in one partition, 40% of them full: the two largest (m4 and m3, by volume).
    assert {uid for uid, tier in tiers_of.items() if tier == "full"} == {"m3", "m4"}
    fast_pool = set(ModelsConfig().fast_candidates)
    assert all(
        set(ensemble_members(model)) <= fast_pool for uid, tier, model in rows if tier == "fast"
    )
    assert not any(str(model).startswith("Fast") for uid, tier, model in rows if tier == "full")
    with connect(ready.control_path) as con:
        detail = json.loads(
            con.execute("SELECT detail FROM runs WHERE run_id = ?", [result.run_id]).fetchone()[0]
        )
    assert detail["tiers"]["full_share"] == 0.4
    assert detail["tiers"]["series_by_tier"] == {"fast": 3, "full": 2}


def test_check_stage_sees_a_series_whole_when_its_partition_has_several_files(
    tmp_path: Path,
) -> None:
    """DuckDB writes a large snapshot partition as several files and a series can continue
    from one into the next: each series is checked once, on its whole history."""
    import tomllib

    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from steadycast.config import parse_pipeline
    from steadycast.engines.pool import PartitionPool
    from steadycast.pipeline.checking import check_partitions
    from steadycast.storage.runlog import StageRecord

    cfg = parse_pipeline(tomllib.loads(PIPELINE), "meters", "meters.toml")
    hours = pd.date_range("2024-01-01", periods=96, freq="h")
    a = pd.DataFrame({"unique_id": "a", "ds": hours, "y": 1.0 + (hours.hour % 24 == 12)})
    b = a.assign(unique_id="b")
    part = tmp_path / "snapshot" / "part=0"
    part.mkdir(parents=True)
    # "a" is split across the two files; a check over half of it would see a flat line.
    pq.write_table(pa.Table.from_pandas(a.iloc[:12], preserve_index=False), part / "data_0.parquet")
    rest = pd.concat([a.iloc[12:], b])
    pq.write_table(pa.Table.from_pandas(rest, preserve_index=False), part / "data_1.parquet")
    rec = StageRecord("check")
    with PartitionPool(1) as pool:
        checked = check_partitions(
            sorted(part.glob("*.parquet")), cfg, hours[-1], None, rec, pool, tmp_path / "checks"
        )
    assert (rec.rows_in, rec.series_in) == (192, 2)
    # Every result of the partition is kept in its file (only failed ones stay in memory).
    stored = pd.concat([pd.read_parquet(f) for f in checked.stored])
    assert stored["unique_id"].value_counts().to_dict() == {
        "a": len(stored) // 2,
        "b": len(stored) // 2,
    }
    outcomes = {(r.check, r.unique_id): r.passed for r in stored.itertuples()}
    assert all(outcomes[c, "a"] == outcomes[c, "b"] for c, uid in outcomes if uid == "b")

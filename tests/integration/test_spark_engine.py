"""The Spark engine in local mode gives the release of the local engine: same forecasts, same
models, same fallbacks, even when plugins crash in executors and tasks die and are retried.

One SparkSession (``local[2,4]``: two cores, four attempts per task) serves the module; the
engine uses the active session, as it would in a notebook on a cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from steadycast.config import EngineConfig
from steadycast.engines import check_engine
from steadycast.engines.commit import STAGING, commit, is_committed, staging_dir
from steadycast.engines.spark import _conform, _write_published
from steadycast.errors import ConfigError, UsageError
from steadycast.ingestion.batch import ingest
from steadycast.ops.failpoints import FAILPOINT_ENV
from steadycast.pipeline.run import RunResult, run_pipeline
from steadycast.storage import releases, store
from steadycast.storage.runlog import get_run
from steadycast.workspace import Workspace
from tests.conftest import run_cli, shared_data
from tests.integration.test_plugins_in_run import planted_workspace
from tests.pipelines import pipeline_toml

pytestmark = pytest.mark.spark

HORIZON = 48
PIPELINE = pipeline_toml(
    id_column="customer_id",
    time_column="reading_datetime",
    value_column="general_supply_kwh",
    frequency="30min",
    horizon=HORIZON,
    season_lengths=[48],
    models=["SeasonalNaive", "SES", "HistoricAverage", "FastSES"],
    forecast={"partition_size": 20, "workers": 2},
)
COMPARED = ["yhat", "yhat_lo_80", "yhat_hi_80", "yhat_lo_95", "yhat_hi_95"]
PROVENANCE = [
    "unique_id",
    "model",
    "source",
    "fallback_reason",
    "selection_reason",
    "interval_source",
    "backtest_score",
]


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    pyspark_sql = pytest.importorskip("pyspark.sql")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("the spark engine needs Java")
    # No PYSPARK_PYTHON: the engine gives the workers this interpreter, as for a user.
    env = {"SPARK_LOCAL_IP": "127.0.0.1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    session = (
        pyspark_sql.SparkSession.builder.master("local[2,4]")
        .appName("steadycast tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def sgsc_subset(path: Path, days: int = 7) -> pd.DataFrame:
    """The last week of each of the 50 SGSC households (ragged ends, real gaps)."""
    frame = pd.read_csv(
        shared_data("sgsc_smart_meter_50", "sm_cust50.csv.gz"),
        usecols=["customer_id", "reading_datetime", "general_supply_kwh"],
        dtype={"customer_id": str},
    )
    ts = pd.to_datetime(frame["reading_datetime"])
    last = ts.groupby(frame["customer_id"]).transform("max")
    subset = frame[ts > last - pd.Timedelta(days=days)].reset_index(drop=True)
    subset.to_csv(path, index=False)
    return subset


def seed_release(ws: Workspace, data: pd.DataFrame) -> None:
    """A current release to start from (yesterday's readings as the forecast), so the run has
    last published forecasts to fall back on and the engines must ship them to the tasks."""
    ds = pd.to_datetime(data["reading_datetime"])
    rows = []
    for uid, group in data.assign(ds=ds).groupby("customer_id"):
        tail = group.sort_values("ds").tail(HORIZON)
        future = pd.date_range(tail["ds"].iloc[-1], periods=HORIZON + 1, freq="30min")[1:]
        rows.append(
            pd.DataFrame({"unique_id": uid, "ds": future, "yhat": tail["general_supply_kwh"]})
        )
    frame = pd.concat(rows, ignore_index=True)
    frame["model"] = "SeasonalNaive"
    for level, width in ((80, 0.2), (95, 0.4)):
        frame[f"yhat_lo_{level}"] = frame["yhat"] * (1 - width)
        frame[f"yhat_hi_{level}"] = frame["yhat"] * (1 + width)
    meta = {"levels": [80, 95], "frequency": "30min", "horizon": HORIZON, "fallback_series": 0}
    release = releases.write_release(ws.releases_dir, "sgsc", "seed", frame, meta)
    releases.make_current(ws.releases_dir, "sgsc", release.release_id)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with the SGSC subset ingested and a current release; copied per test."""
    root = tmp_path_factory.mktemp("spark")
    data = sgsc_subset(root / "sgsc.csv")
    assert data["customer_id"].nunique() == 50
    ws = Workspace.init(root / "base")
    (ws.pipelines_dir / "sgsc.toml").write_text(PIPELINE)
    ingest(ws, "sgsc", [root / "sgsc.csv"])
    seed_release(ws, data)
    return ws.root


def copy_of(base: Path, target: Path) -> Workspace:
    shutil.copytree(base, target)
    return Workspace.open(target)


@pytest.fixture(scope="module")
def local_run(base: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, RunResult]:
    ws = copy_of(base, tmp_path_factory.mktemp("local") / "ws")
    result = run_pipeline(ws, "sgsc")
    assert result.status == "published", result.error
    return ws, result


def forecasts(ws: Workspace, result: RunResult) -> pd.DataFrame:
    if result.release_id is not None:
        release = releases.read_release(ws.releases_dir, "sgsc", result.release_id)
        frame = releases.read_forecasts(release)
    else:
        frame = pd.read_parquet(ws.root / "runs" / result.run_id / "held" / releases.FORECASTS)
    return frame.sort_values(["unique_id", "ds"]).reset_index(drop=True)


def provenance(ws: Workspace, run_id: str) -> pd.DataFrame:
    with store.reading(ws.store_path) as con:
        frame = con.execute(
            "SELECT * FROM series_provenance WHERE run_id = ? ORDER BY unique_id", [run_id]
        ).fetchdf()
    return frame[PROVENANCE]


def assert_same_release(
    local: tuple[Workspace, RunResult], other: tuple[Workspace, RunResult]
) -> None:
    (lws, lres), (ows, ores) = local, other
    assert ores.status == lres.status, ores.error
    assert (ores.series, ores.fallback_series) == (lres.series, lres.fallback_series)
    mine, theirs = forecasts(lws, lres), forecasts(ows, ores)
    assert list(mine.columns) == list(theirs.columns)
    assert mine[["unique_id", "ds", "model"]].equals(theirs[["unique_id", "ds", "model"]])
    compared = [c for c in COMPARED if c in mine]
    gap = np.abs(mine[compared].to_numpy() - theirs[compared].to_numpy())
    assert np.nanmax(gap) <= 1e-9
    assert mine[compared].isna().equals(theirs[compared].isna())
    pd.testing.assert_frame_equal(
        provenance(lws, lres.run_id), provenance(ows, ores.run_id), rtol=0, atol=1e-9
    )


def forecast_stage(ws: Workspace, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    run = get_run(ws.control_path, run_id)
    assert run is not None
    stage = next(s for s in run["stages"] if s["name"] == "forecast")
    models = {m["model"]: m for m in run["models"]}
    return {**stage, "detail": json.loads(stage["detail"])}, models


def test_spark_publishes_the_release_of_the_local_engine(
    spark: Any, base: Path, local_run: tuple[Workspace, RunResult], tmp_path: Path
) -> None:
    ws = copy_of(base, tmp_path / "ws")
    calls: list[tuple[str, int, int]] = []
    result = run_pipeline(ws, "sgsc", engine="spark", progress=lambda *call: calls.append(call))
    assert_same_release(local_run, (ws, result))
    assert result.series == 50
    assert calls[-1] == ("forecast", 3, 3)
    # Same engine-neutral accounting: model calls counted once each, stage CPU covers them.
    stage, models = forecast_stage(ws, result.run_id)
    local_stage, local_models = forecast_stage(local_run[0], local_run[1].run_id)
    assert stage["detail"]["engine"]["name"] == "spark"
    assert stage["detail"]["engine"]["master"] == spark.sparkContext.master
    assert {m: (u["tasks"], u["failures"]) for m, u in models.items()} == {
        m: (u["tasks"], u["failures"]) for m, u in local_models.items()
    }
    assert stage["cpu_s"] >= sum(u["cpu_s"] for u in models.values()) > 0
    assert stage["peak_rss_mb"] >= max(u["peak_rss_mb"] for u in models.values()) > 0
    assert (stage["rows_in"], stage["rows_out"]) == (
        local_stage["rows_in"],
        local_stage["rows_out"],
    )
    parts = sorted(p.name for p in (ws.root / "runs" / result.run_id / "parts").iterdir())
    assert parts == ["part=0", "part=1", "part=2"]


def test_tasks_killed_mid_write_and_after_commit_are_retried_without_duplicates(
    spark: Any,
    base: Path,
    local_run: tuple[Workspace, RunResult],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws = copy_of(base, tmp_path / "ws")
    # The first task to write dies half-way; the first to commit dies right after its commit.
    monkeypatch.setenv(FAILPOINT_ENV, "partition:mid-write,partition:after-commit")
    result = run_pipeline(ws, "sgsc", engine="spark")
    monkeypatch.delenv(FAILPOINT_ENV)
    assert_same_release(local_run, (ws, result))
    prov = provenance(ws, result.run_id)
    assert prov["unique_id"].is_unique and len(prov) == 50
    frame = forecasts(ws, result)
    assert frame.groupby("unique_id").size().eq(HORIZON).all()
    stage, models = forecast_stage(ws, result.run_id)
    assert stage["detail"]["retried_partitions"] >= 1
    _, local_models = forecast_stage(local_run[0], local_run[1].run_id)
    # The usage of a partition is the committed attempt's, counted once despite the retries.
    assert {m: u["tasks"] for m, u in models.items()} == {
        m: u["tasks"] for m, u in local_models.items()
    }
    parts_dir = ws.root / "runs" / result.run_id / "parts"
    assert sorted(p.name for p in parts_dir.iterdir()) == ["part=0", "part=1", "part=2"]
    assert all(is_committed(p) for p in parts_dir.iterdir())


def test_a_plugin_crashing_in_an_executor_ends_in_the_fallback_as_locally(
    spark: Any, tmp_path: Path
) -> None:
    ws = planted_workspace(tmp_path / "planted", ["ChaosSegfault"], series=4)
    pipeline = ws.pipelines_dir / "p.toml"
    # One backtest window: one crash per engine is the point, each costs a worker restart.
    pipeline.write_text(pipeline.read_text().replace("windows=2", "windows=1"))
    spark_ws = copy_of(ws.root, tmp_path / "spark")
    local = run_pipeline(ws, "p")
    distributed = run_pipeline(spark_ws, "p", engine="spark")
    # Every series on a recorded fallback: the gate holds both runs, with the same forecasts.
    assert local.status == distributed.status == "held"
    local_prov = provenance(ws, local.run_id)
    pd.testing.assert_frame_equal(local_prov, provenance(spark_ws, distributed.run_id))
    assert set(local_prov["source"]) == {"fallback"}
    assert local_prov["fallback_reason"].str.contains("SIGSEGV").all()
    assert forecasts(ws, local).equals(forecasts(spark_ws, distributed))


@pytest.mark.parametrize("tz", [None, "Australia/Sydney"])
def test_release_rows_reach_the_tasks_as_the_driver_holds_them(
    spark: Any, tmp_path: Path, tz: str | None
) -> None:
    ds = pd.date_range("2024-03-30 12:00", periods=6, freq="30min", tz=tz)
    frame = pd.DataFrame(
        {
            "unique_id": ["b", "b", "b", "a", "a", "a"],
            "ds": ds,
            "yhat": [1.5, np.nan, 2.25, 1e-12, 3.0, 4.0],
            "model": "SeasonalNaive",
        }
    )
    published, schema = _write_published(frame, tmp_path / "rows.parquet", "p")
    # What a task receives arrives in any order, with extra columns from the join.
    rows = spark.read.schema(schema).parquet(str(tmp_path / "rows.parquet")).toPandas()
    got = _conform(rows.assign(part=1).iloc[::-1], published)
    expected = frame.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)


def test_commit_first_attempt_wins_and_later_ones_are_discarded(tmp_path: Path) -> None:
    final = tmp_path / "parts" / "part=0"
    first, second = staging_dir(final), staging_dir(final)
    (first / "forecasts.parquet").write_text("first")
    (second / "forecasts.parquet").write_text("second")
    assert commit(first, final) is True
    assert commit(second, final) is False
    assert (final / "forecasts.parquet").read_text() == "first"
    assert is_committed(final) and not second.exists()
    assert list((tmp_path / "parts" / STAGING).iterdir()) == []


def test_spark_without_pyspark_or_java_is_a_configuration_error(
    workspace: Workspace, make_pipeline: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pyspark")
    make_pipeline("meters")
    done = run_cli(
        "run",
        "meters",
        "--engine",
        "spark",
        "-w",
        str(workspace.root),
        env={"PATH": str(Path(sys.executable).parent), "JAVA_HOME": ""},
    )
    assert done.returncode == 2, done.stderr
    assert "needs Java 17 or newer" in done.stderr and "JAVA_HOME" in done.stderr
    assert "Traceback" not in done.stderr
    monkeypatch.setitem(sys.modules, "pyspark", None)
    with pytest.raises(ConfigError, match=r"PySpark is not installed.*steadycast\[spark\]"):
        check_engine(EngineConfig(name="spark"), "meters")


def test_a_spark_master_needs_the_spark_engine(workspace: Workspace, make_pipeline: Any) -> None:
    make_pipeline("meters")
    with pytest.raises(UsageError, match=r"pipeline 'meters' runs on the local engine"):
        run_pipeline(workspace, "meters", spark_master="yarn")
    with pytest.raises(UsageError, match=r"'mapreduce' is not an engine; use local or spark"):
        run_pipeline(workspace, "meters", engine="mapreduce")

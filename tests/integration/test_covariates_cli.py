"""Covariates end to end through the command line: a weather file ingested as its own checked
source, joined to the series, used by the covariate-aware model, and a visible fallback for a
series whose weather forecast does not cover its horizon."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from tests.conftest import run_cli
from tests.pipelines import CHEAP_MODELS, pipeline_toml

HOURS, HORIZON, SERIES = 24 * 28, 24, 6
COVARIATES = """
[covariates]
columns = ["temperature"]
ranges = { temperature = [-50, 60] }
"""


def _fleet(tmp_path: Path) -> tuple[Path, Path, pd.DataFrame]:
    """Load driven by temperature (a U-shaped heating/cooling curve, so no calendar model can
    guess it), the temperatures themselves for the history and the horizon, and the truth."""
    rng = np.random.default_rng(11)
    stamps = pd.date_range("2024-03-01", periods=HOURS + HORIZON, freq="h")
    loads, weather, truth = [], [], []
    for i in range(SERIES):
        temp = 12 + 6 * np.sin(np.arange(len(stamps)) / 40 + i) + rng.normal(0, 5, len(stamps))
        daily = 5 * np.sin(2 * np.pi * stamps.hour.to_numpy() / 24)
        load = 50 + 0.8 * (temp - 12) ** 2 + daily + rng.normal(0, 1, len(stamps))
        uid = f"m{i}"
        loads.append(
            pd.DataFrame({"meter_id": uid, "timestamp": stamps[:HOURS], "kwh": load[:HOURS]})
        )
        weather.append(pd.DataFrame({"meter_id": uid, "timestamp": stamps, "temperature": temp}))
        truth.append(pd.DataFrame({"unique_id": uid, "ds": stamps[HOURS:], "y": load[HOURS:]}))
    weather_frame = pd.concat(weather, ignore_index=True).round(3).astype({"temperature": object})
    # m5's weather forecast stops 4 hours short of the horizon.
    short = (weather_frame.meter_id == "m5") & (weather_frame.timestamp >= stamps[-4])
    weather_frame = weather_frame[~short].reset_index(drop=True)
    # One unreadable temperature (line 12 of the file) and one in the wrong unit (Kelvin).
    weather_frame.loc[10, "temperature"] = "warm"
    weather_frame.loc[20, "temperature"] = 285.15
    obs, cov = tmp_path / "loads.csv", tmp_path / "weather.csv"
    pd.concat(loads, ignore_index=True).round(3).to_csv(obs, index=False)
    weather_frame.to_csv(cov, index=False)
    return obs, cov, pd.concat(truth, ignore_index=True)


def _workspace(root: Path, covariates: bool) -> Path:
    ws = root / ("with" if covariates else "without")
    assert run_cli("init", str(ws)).returncode == 0
    text = pipeline_toml(
        horizon=HORIZON,
        models=CHEAP_MODELS,
        forecast={"workers": 1},
        extra=COVARIATES if covariates else "",
    )
    (ws / "pipelines" / "loads.toml").write_text(text)
    return ws


def _forecast(ws: Path) -> pd.DataFrame:
    done = run_cli("forecast", "loads", "-w", str(ws), "--format", "csv")
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(pd.io.common.StringIO(done.stdout))
    frame["ds"] = pd.to_datetime(frame["ds"]).dt.tz_localize(None)
    return frame


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("covariates")
    obs, cov, truth = _fleet(root)
    out: dict[str, object] = {"truth": truth, "cov": cov}
    for covariates in (True, False):
        ws = _workspace(root, covariates)
        assert run_cli("ingest", "loads", str(obs), "-w", str(ws)).returncode == 0
        if covariates:
            done = run_cli("ingest", "loads", str(cov), "--covariates", "-w", str(ws), "--json")
            assert done.returncode == 0, done.stderr
            out["ingest"] = json.loads(done.stdout)
            again = run_cli("ingest", "loads", str(cov), "--covariates", "-w", str(ws), "--json")
            out["again"] = json.loads(again.stdout)
            quarantine = run_cli("quarantine", "loads", "-w", str(ws), "--json")
            out["quarantine"] = json.loads(quarantine.stdout)
        done = run_cli("run", "loads", "-w", str(ws), "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        key = "with" if covariates else "without"
        out[f"run_{key}"] = json.loads(done.stdout)
        out[f"forecast_{key}"] = _forecast(ws)
        out[f"ws_{key}"] = ws
    return out


def test_the_covariate_model_forecasts_from_the_weather(runs: dict[str, object]) -> None:
    with_cov = runs["forecast_with"]
    without = runs["forecast_without"]
    truth = runs["truth"]
    assert isinstance(with_cov, pd.DataFrame) and isinstance(without, pd.DataFrame)
    assert isinstance(truth, pd.DataFrame)
    by_series = with_cov.groupby("unique_id")["model"].first()
    assert (by_series.drop("m5") == "CovariateRegression").all(), by_series
    assert by_series["m5"] != "CovariateRegression"

    def error(frame: pd.DataFrame) -> float:
        joined = frame.merge(truth, on=["unique_id", "ds"])
        joined = joined[joined.unique_id != "m5"]
        assert len(joined) == (SERIES - 1) * HORIZON
        return float(np.mean(np.abs(joined["yhat"] - joined["y"])))

    # Same data, same models: only the covariates differ, and they make the forecast better.
    assert error(with_cov) < 0.5 * error(without)


def test_a_bad_covariate_row_is_quarantined_with_file_line_and_reason(
    runs: dict[str, object],
) -> None:
    ingest = runs["ingest"]
    assert isinstance(ingest, dict)
    (batch,) = ingest["batches"]
    assert batch["covariate"] == "temperature"
    assert batch["status"] == "ingested"
    assert batch["rows_read"] == batch["rows_stored"] + batch["rows_quarantined"]
    assert batch["quarantine_reasons"] == {"not_a_number": 1, "above_max": 1}
    again = runs["again"]
    assert isinstance(again, dict)
    assert [b["status"] for b in again["batches"]] == ["skipped"]
    quarantine = runs["quarantine"]
    assert isinstance(quarantine, dict)
    rows = {r["reason"]: r for r in quarantine["rows"]}
    assert rows["not_a_number"]["file"].endswith("weather.csv")
    assert rows["not_a_number"]["line"] == 12
    assert "warm" in rows["not_a_number"]["raw"]
    assert rows["above_max"]["line"] == 22


def test_a_horizon_without_its_covariate_falls_back_visibly(runs: dict[str, object]) -> None:
    run = runs["run_with"]
    assert isinstance(run, dict)
    assert run["status"] == "published"
    assert run["fallback_series"] == 1
    ws = runs["ws_with"]
    assert isinstance(ws, Path)
    history = run_cli("runs", "loads", "-w", str(ws), "--json")
    detail = json.loads(history.stdout)["runs"][0]["detail"]
    assert detail["covariate_fallback_series"] == 1
    why = detail["covariate_fallbacks"]["m5"]
    assert "'temperature' is missing at 4 of 24 horizon steps" in why
    con = duckdb.connect(str(ws / "store.duckdb"), read_only=True)
    try:
        source, reason = con.execute(
            "SELECT source, fallback_reason FROM series_provenance WHERE unique_id = 'm5'"
        ).fetchone() or (None, None)
    finally:
        con.close()
    assert source == "fallback"
    assert "temperature" in str(reason)


def test_a_first_heat_wave_is_forecast_by_the_weather_model_and_the_store_says_why(
    tmp_path: Path,
) -> None:
    """Feeders whose load follows the heat above 18 C: hot spells, then three mild weeks (the
    backtest windows), then a forecast into the first heat wave. The run takes the weather
    model for every feeder, the stored reason and the run record name the temperatures the
    windows never had, and the published forecast carries the heat's load."""
    hours, horizon = 24 * 7 * 8, 48
    stamps = pd.date_range("2024-05-01", periods=hours + horizon, freq="h")
    step = np.arange(hours + horizon)
    daily = 4 * np.sin(2 * np.pi * (stamps.hour.to_numpy() - 9) / 24)
    rng = np.random.default_rng(5)
    loads, weather = [], []
    for i in range(3):
        temp = np.where(step < hours - 24 * 21, 26 + 4 * np.sin(step / 40 + i), 14.0) + daily
        temp[hours:] = 31 + daily[hours:]
        load = 80 + 10 * np.sin(2 * np.pi * stamps.hour.to_numpy() / 24)
        load = load + 2 * np.maximum(temp - 18, 0) ** 1.5 + rng.normal(0, 1, len(step))
        uid = f"feeder{i}"
        loads.append(
            pd.DataFrame({"meter_id": uid, "timestamp": stamps[:hours], "kwh": load[:hours]})
        )
        weather.append(pd.DataFrame({"meter_id": uid, "timestamp": stamps, "temperature": temp}))
    obs, cov = tmp_path / "feeders.csv", tmp_path / "weather.csv"
    pd.concat(loads).round(3).to_csv(obs, index=False)
    pd.concat(weather).round(3).to_csv(cov, index=False)
    ws = tmp_path / "ws"
    assert run_cli("init", str(ws)).returncode == 0
    text = pipeline_toml(
        horizon=horizon, models=CHEAP_MODELS, forecast={"workers": 1}, extra=COVARIATES
    )
    (ws / "pipelines" / "loads.toml").write_text(text)
    assert run_cli("ingest", "loads", str(obs), "-w", str(ws)).returncode == 0
    assert run_cli("ingest", "loads", str(cov), "--covariates", "-w", str(ws)).returncode == 0
    done = run_cli("run", "loads", "-w", str(ws), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    con = duckdb.connect(str(ws / "store.duckdb"), read_only=True)
    try:
        chosen = con.execute(
            "SELECT unique_id, model, selection_reason FROM series_provenance ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    assert [m for _, m, _ in chosen] == ["CovariateRegression"] * 3
    for _, _, reason in chosen:
        assert "100% of its horizon has temperature outside" in reason
        assert "the range of its backtest windows" in reason
    # The run record counts them and says why, for whoever reads it later.
    record = run_cli("runs", "loads", "-w", str(ws), "--json")
    detail = json.loads(record.stdout)["runs"][0]["detail"]
    assert detail["unseen_conditions_series"] == 3
    assert detail["unseen_conditions"]["feeder0"] == chosen[0][2]
    published = _forecast(ws)
    mild_peak = pd.concat(loads).groupby("meter_id")["kwh"].apply(lambda s: s.tail(24 * 7).max())
    assert (published.groupby("unique_id")["yhat"].mean() > mild_peak.to_numpy()).all()

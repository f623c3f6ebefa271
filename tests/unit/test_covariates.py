"""Covariates: the declaration, the join to the series, the frames covariate-aware models get,
and the built-in covariate regression."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from steadycast.config import parse_pipeline
from steadycast.errors import ConfigError
from steadycast.forecasting.covariates import (
    CovariateRunner,
    exogenous_frame,
    for_series,
    mark_fallbacks,
    missing_future,
)
from steadycast.models.base import Capabilities, ForecastTask
from steadycast.models.exogenous import CovariateRegression
from steadycast.models.registry import create_model

BASE = {
    "source": {"id_column": "id", "time_column": "t", "value_column": "v"},
    "series": {"frequency": "1h", "horizon": 3},
}
TASK = ForecastTask(horizon=3, frequency="1h", season_length=24)


def _config(**covariates: object) -> object:
    return parse_pipeline({**BASE, "covariates": covariates}, "meters", "pipelines/meters.toml")


def _stored(ids: list[str], hours: int, column: str = "temperature") -> pd.DataFrame:
    stamps = pd.date_range("2024-01-01", periods=hours, freq="h")
    return pd.concat(
        [
            pd.DataFrame({"covariate_id": i, "ds": stamps, column: np.arange(hours) + 100.0 * k})
            for k, i in enumerate(ids)
        ],
        ignore_index=True,
    )


def _history(ids: list[str], hours: int) -> pd.DataFrame:
    stamps = pd.date_range("2024-01-01", periods=hours, freq="h")
    return pd.concat(
        [
            pd.DataFrame({"unique_id": i, "ds": stamps, "y": np.arange(hours, dtype=float)})
            for i in ids
        ],
        ignore_index=True,
    )


@pytest.mark.parametrize(
    ("covariates", "message"),
    [
        ({"columns": ["temp"], "ranges": {"tmp": [0, 1]}}, r"ranges names 'tmp', which is not"),
        ({"columns": ["temp"], "ranges": {"temp": [5, 1]}}, r"ranges.temp must be \[low, high\]"),
        ({"columns": ["temp", "temp"]}, r"a column is named twice"),
    ],
)
def test_a_bad_declaration_is_named(covariates: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(**covariates)


def test_series_take_their_mapped_own_or_default_covariate_series() -> None:
    cfg = _config(columns=["temperature"], series_map={"a": "zone1"}, default_id="city")
    stored = _stored(["zone1", "b", "city"], 4)
    joined = for_series(stored, ["a", "b", "c"], cfg)  # type: ignore[arg-type]
    assert joined is not None
    first = joined.frame.groupby("unique_id")["temperature"].first().to_dict()
    assert first == {"a": 0.0, "b": 100.0, "c": 200.0}


def test_the_model_frame_has_covariates_after_y_and_the_future_rows() -> None:
    cfg = _config(columns=["temperature"])
    covariates = for_series(_stored(["a", "b"], 10), ["a", "b"], cfg)  # type: ignore[arg-type]
    assert covariates is not None
    frame, task = exogenous_frame(_history(["a", "b"], 7), covariates, TASK)
    assert list(frame.columns) == ["unique_id", "ds", "y", "temperature"]
    assert task.covariates == ("temperature",)
    a = frame[frame.unique_id == "a"]
    assert len(a) == 10 and a["y"].isna().sum() == 3 and a["y"].tail(3).isna().all()
    assert a["temperature"].tolist() == list(np.arange(10.0))


def test_only_covariate_aware_models_get_covariates() -> None:
    cfg = _config(columns=["temperature"])
    covariates = for_series(_stored(["a"], 10), ["a"], cfg)  # type: ignore[arg-type]
    assert covariates is not None
    seen: list[pd.DataFrame] = []

    class Recorder:
        def map(self, jobs):  # type: ignore[no-untyped-def]
            for job in jobs:
                seen.append(job[2])
                yield job[2]

    caps = {"CovariateRegression": Capabilities(exogenous=True), "Naive": Capabilities()}
    runner = CovariateRunner(Recorder(), covariates, caps)
    history = _history(["a"], 7)
    jobs = [(m, {}, history, TASK) for m in ("Naive", "CovariateRegression")]
    list(runner.map(jobs))
    assert seen[0] is history
    assert "temperature" in seen[1] and len(seen[1]) == 10


def test_a_horizon_step_without_covariate_is_named_and_marked_a_fallback() -> None:
    cfg = _config(columns=["temperature"])
    stored = _stored(["a", "b"], 10)
    stored = stored[~((stored.covariate_id == "b") & (stored.ds >= "2024-01-01 08:00"))]
    covariates = for_series(stored, ["a", "b"], cfg)  # type: ignore[arg-type]
    missing = missing_future(_history(["a", "b"], 7), covariates, TASK)
    assert list(missing) == ["b"]
    assert (
        "'temperature' is missing at 2 of 3 horizon steps (first 2024-01-01T08:00:00)"
        in missing["b"]
    )
    provenance = pd.DataFrame(
        {
            "unique_id": ["a", "b"],
            "source": ["selected", "selected"],
            "fallback_reason": [None, None],
        }
    )
    marked = mark_fallbacks(provenance, missing)
    assert marked["source"].tolist() == ["selected", "fallback"]
    assert marked["fallback_reason"].iloc[1] == missing["b"]


def test_covariate_regression_learns_the_weather_curve_for_every_series() -> None:
    rng = np.random.default_rng(0)
    frames, truth = [], []
    for i, hours in enumerate((24 * 60, 24 * 60, 24 * 45)):  # two shapes, solved in two batches
        stamps = pd.date_range("2024-01-01", periods=hours + 24, freq="h")
        temp = 10 + 8 * np.sin(np.arange(hours + 24) / 50 + i) + rng.normal(0, 4, hours + 24)
        y = 100 + (temp - 10) ** 2 + 3 * np.sin(2 * np.pi * stamps.hour.to_numpy() / 24)
        past = y.copy()
        past[hours:] = np.nan
        frames.append(pd.DataFrame({"unique_id": f"s{i}", "ds": stamps, "y": past, "temp": temp}))
        truth.append(y[hours:])
    task = ForecastTask(horizon=24, frequency="1h", season_length=24, covariates=("temp",))
    out = CovariateRegression().forecast(pd.concat(frames, ignore_index=True), task)
    assert out.groupby("unique_id").size().tolist() == [24, 24, 24]
    errors = np.abs(out["yhat"].to_numpy() - np.concatenate(truth))
    spread = np.abs(np.concatenate(truth) - np.concatenate(truth).mean())
    assert errors.mean() < 0.05 * spread.mean()


def test_covariate_regression_follows_the_day_s_heat_as_well_as_the_hour_s() -> None:
    """Load that follows the temperature of the last 24 hours (buildings keep the heat): the
    regression with its recency terms (the default) tracks it, without them it cannot."""
    rng = np.random.default_rng(4)
    hours = 24 * 70
    stamps = pd.date_range("2024-06-01", periods=hours + 48, freq="h")
    temp = 20 + 6 * np.sin(np.arange(hours + 48) / 30) + rng.normal(0, 3, hours + 48)
    recent = pd.Series(temp).rolling(24, min_periods=1).mean().to_numpy()
    y = 100 + 4 * (recent - 15) ** 2 + rng.normal(0, 1, hours + 48)
    past = y.copy()
    past[hours:] = np.nan
    frame = pd.DataFrame({"unique_id": "s", "ds": stamps, "y": past, "temp": temp})
    task = ForecastTask(horizon=48, frequency="1h", season_length=24, covariates=("temp",))

    def error(model: CovariateRegression) -> float:
        out = model.forecast(frame, task)
        return float(np.abs(out["yhat"].to_numpy() - y[hours:]).mean())

    assert error(CovariateRegression()) < 0.3 * error(CovariateRegression(recency_hours=0))


def test_covariate_regression_without_covariates_is_a_calendar_model() -> None:
    history = _history(["a"], 24 * 14)
    history["y"] = np.tile(np.arange(24.0), 14)
    out = create_model("CovariateRegression").forecast(history, ForecastTask(3, "1h", 24))
    assert out["ds"].tolist() == list(pd.date_range("2024-01-15", periods=3, freq="h"))
    np.testing.assert_allclose(out["yhat"], [0.0, 1.0, 2.0], atol=0.05)


def test_covariate_regression_refuses_bad_parameters() -> None:
    with pytest.raises(ConfigError, match="degree"):
        CovariateRegression(degree=5)
    with pytest.raises(ConfigError, match="recency_hours"):
        CovariateRegression(recency_hours=-1)


def test_a_model_backtesting_itself_gets_covariates_but_no_future_rows() -> None:
    from steadycast.models.base import BacktestTask

    cfg = _config(columns=["temperature"])
    covariates = for_series(_stored(["a"], 10), ["a"], cfg)  # type: ignore[arg-type]
    assert covariates is not None
    history = _history(["a"], 7)
    history.loc[3, "y"] = 3.0
    task = BacktestTask(horizon=3, frequency="1h", season_length=24, windows=2, step=1)
    frame, asked = exogenous_frame(history, covariates, task)
    assert isinstance(asked, BacktestTask) and asked.covariates == ("temperature",)
    assert len(frame) == 7 and frame["y"].notna().all()
    assert frame["temperature"].tolist() == list(np.arange(7.0))


def test_a_gap_in_a_covariate_history_is_filled_from_its_neighbours() -> None:
    cfg = _config(columns=["temperature"])
    stored = _stored(["a"], 10).drop(index=[2, 3])
    covariates = for_series(stored, ["a"], cfg)  # type: ignore[arg-type]
    assert covariates is not None
    frame, _ = exogenous_frame(_history(["a"], 7), covariates, TASK)
    assert frame["temperature"].tolist()[:5] == [0.0, 1.0, 1.0, 1.0, 4.0]


def test_covariate_models_join_the_candidates_only_when_columns_are_declared() -> None:
    from steadycast.forecasting.covariates import candidates

    assert candidates(_config(), ["Naive"]) == ["Naive"]  # type: ignore[arg-type]
    declared = _config(columns=["temperature"])
    assert candidates(declared, ["Naive"]) == ["Naive", "CovariateRegression"]  # type: ignore[arg-type]


def _first_heat_wave() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """History, covariates and the week to come of one feeder whose load follows the
    temperature above 60 F: seven weeks with hot spells, then four mild weeks (the last three the backtest
    windows), then the first hot week of the year (the forecast)."""
    hours = 24 * 7 * 11
    stamps = pd.date_range("2024-04-01", periods=hours + 168, freq="h")
    rng = np.random.default_rng(3)
    hour = stamps.hour.to_numpy()
    daily = 8 * np.sin(2 * np.pi * (hour - 9) / 24)
    spells = 78 + 8 * np.sin(np.arange(hours + 168) / 40.0)  # hot spells in the early weeks
    temp = np.where(np.arange(hours + 168) < hours - 24 * 28, spells, 55.0) + daily
    temp[hours:] = 86 + daily[hours:]
    y = 200 + 20 * np.sin(2 * np.pi * hour / 24) + 3 * np.maximum(temp - 60, 0) ** 1.5
    y += rng.normal(0, 2, len(y))
    history = pd.DataFrame({"unique_id": "feeder", "ds": stamps[:hours], "y": y[:hours]})
    covariates = pd.DataFrame({"unique_id": "feeder", "ds": stamps, "temperature": temp})
    week = pd.DataFrame({"unique_id": "feeder", "ds": stamps[hours:], "y": y[hours:]})
    return history, covariates, week


def test_a_forecast_in_weather_its_backtest_never_had_takes_the_covariate_model() -> None:
    """A heat wave after mild backtest weeks: the series takes the weather model, its reason
    says why, and the forecast follows the heat a seasonal naive would miss. (That the rule
    overrides a better-ranked model is tested on the selection itself.)"""
    from steadycast.forecasting.covariates import Covariates
    from steadycast.forecasting.forecast import run_partition

    history, frame, week = _first_heat_wave()
    cfg = parse_pipeline(
        {
            "source": {},
            "series": {"frequency": "1h", "horizon": 168, "season_lengths": [24]},
            "models": {"candidates": ["SeasonalNaive"], "plugins": False},
            "backtest": {"windows": 3, "ensemble_top_k": 2},
            "covariates": {"columns": ["temperature"]},
        },
        "feeders",
        "pipelines/feeders.toml",
    )
    covariates = Covariates(frame, ("temperature",))
    result = run_partition(history, cfg, None, covariates=covariates)  # type: ignore[arg-type]
    chosen = result.selection.set_index("unique_id").loc["feeder"]
    assert chosen["model"] == "CovariateRegression"
    assert "100% of its horizon has temperature outside" in chosen["reason"]
    assert "the series takes CovariateRegression" in chosen["reason"]
    published = result.forecasts.merge(week, on=["unique_id", "ds"])
    error = (published["yhat"] - published["y"]).abs().mean()
    naive = (history["y"].iloc[-24:].to_numpy() - week["y"].to_numpy()[:24]).__abs__().mean()
    assert error < naive / 3


def test_a_forecast_in_weather_its_backtest_had_is_left_to_the_backtest() -> None:
    from steadycast.forecasting.covariates import unseen_conditions

    history, frame, _ = _first_heat_wave()
    task = ForecastTask(horizon=168, frequency="1h", season_length=24)
    covariates = for_series(
        frame.rename(columns={"unique_id": "covariate_id"}),
        ["feeder"],
        _config(columns=["temperature"]),  # type: ignore[arg-type]
    )
    windows = history.tail(24 * 21)[["unique_id", "ds"]]  # the three mild weeks
    hot = unseen_conditions(history, covariates, windows, task)
    assert list(hot) == ["feeder"] and hot["feeder"].startswith("100% of its horizon")
    # Windows that had the hot spells judged the models in such weather: no flag.
    earlier = history.head(24 * 21)[["unique_id", "ds"]]
    assert unseen_conditions(history, covariates, earlier, task) == {}

"""The global model takes future-known covariates: a load driven by temperature is forecast
from the horizon's temperatures, in the forecast and in its own backtest."""

from __future__ import annotations

import numpy as np
import pandas as pd

from steadycast.forecasting.covariates import Covariates, exogenous_frame
from steadycast.models.base import BacktestTask, ForecastTask, answer
from steadycast.models.ml import LightGBM

HORIZON = 48
TASK = ForecastTask(
    horizon=HORIZON, frequency="h", season_length=24, season_lengths=(24, 168), levels=(80,)
)


def fleet() -> pd.DataFrame:
    """Four hourly series whose level follows a wandering temperature, plus a daily shape."""
    rng = np.random.default_rng(0)
    n = 24 * 60 + HORIZON
    frames = []
    for k in range(4):
        temperature = rng.normal(0, 1, n).cumsum() * 0.3 + rng.normal(0, 1, n)
        shape = 5 * np.sin(2 * np.pi * np.arange(n) / 24)
        y = 50 + 10 * temperature + shape + rng.normal(0, 0.5, n)
        frames.append(
            pd.DataFrame(
                {
                    "unique_id": f"s{k}",
                    "ds": pd.date_range("2024-01-01", periods=n, freq="h"),
                    "y": y,
                    "temperature": temperature,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_lightgbm_forecasts_from_the_horizons_covariates() -> None:
    full = fleet()
    held = full.groupby("unique_id").tail(HORIZON)
    history = full.drop(held.index)
    covariates = Covariates(full[["unique_id", "ds", "temperature"]], ("temperature",))
    frame, task = exogenous_frame(history[["unique_id", "ds", "y"]], covariates, TASK)
    model = LightGBM(n_estimators=60)
    with_temperature = model.forecast(frame, task)
    without = model.forecast(history[["unique_id", "ds", "y"]], TASK)

    def mae(fc: pd.DataFrame) -> float:
        joined = held.merge(fc, on=["unique_id", "ds"], validate="1:1")
        assert len(joined) == len(held)
        return float((joined["y"] - joined["yhat"]).abs().mean())

    assert mae(with_temperature) < 0.6 * mae(without)
    assert {"yhat_lo_80", "yhat_hi_80"} <= set(with_temperature.columns)


def test_lightgbm_backtests_itself_with_covariates() -> None:
    history = fleet()
    covariates = Covariates(history[["unique_id", "ds", "temperature"]], ("temperature",))
    backtest_task = BacktestTask(**{**TASK.__dict__, "windows": 2, "step": HORIZON})
    frame, task = exogenous_frame(history[["unique_id", "ds", "y"]], covariates, backtest_task)
    assert isinstance(task, BacktestTask)
    model = LightGBM(n_estimators=60)
    out = answer(model, frame, task)
    assert len(out) == 4 * 2 * HORIZON
    assert out.groupby("unique_id")["cutoff"].nunique().eq(2).all()
    without = answer(model, history[["unique_id", "ds", "y"]], backtest_task)

    def mae(fc: pd.DataFrame) -> float:
        joined = history.merge(fc, on=["unique_id", "ds"], validate="1:1")
        assert len(joined) == 4 * 2 * HORIZON
        return float((joined["y"] - joined["yhat"]).abs().mean())

    assert mae(out) < 0.75 * mae(without)

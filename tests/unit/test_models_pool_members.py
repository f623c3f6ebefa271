"""The statsforecast members of the default pools: AutoCES, DynamicOptimizedTheta, AutoETS's
season cap, the capped recent history of the automatic models, and MSTL's trend model and
Box-Cox step.

Each model is reached the way a pipeline reaches it (registry lookup by name, then
``forecast(history, task)``), and its output goes through ``validate_forecast`` like any model's.
Where a promise is "fits X", the forecast is compared with statsforecast fitting X directly.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest

from steadycast.errors import ConfigError
from steadycast.models.base import ForecastTask
from steadycast.models.registry import builtin_models, create_model
from steadycast.models.statistical import (
    MIN_CAPPED_HISTORY,
    default_max_history,
)
from steadycast.models.validation import validate_forecast
from tests.unit.models.series import HOURLY, batch, seasonal, series

WEEKLY = ForecastTask(
    horizon=8, frequency="W-SUN", season_length=52, season_lengths=(52,), levels=(80, 95)
)


def weekly(uid: str, n: int, seed: int = 0) -> pd.DataFrame:
    return series(uid, seasonal(n, season=52, seed=seed), freq="W-SUN")


def statsforecast_yhat(model: Any, history: pd.DataFrame, task: ForecastTask) -> np.ndarray:
    """The point forecast statsforecast itself gives for ``model``."""
    from statsforecast import StatsForecast

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = StatsForecast(models=[model], freq=task.frequency, n_jobs=1).forecast(
            df=history, h=task.horizon
        )
    return out["yhat"].to_numpy()


def sf(name: str, **params: Any) -> Any:
    import statsforecast.models

    return getattr(statsforecast.models, name)(**params, alias="yhat")


# -- AutoCES and DynamicOptimizedTheta ----------------------------------------------------------


@pytest.mark.parametrize("name", ["AutoCES", "DynamicOptimizedTheta"])
def test_new_members_forecast_a_seasonal_fleet_with_intervals(name: str) -> None:
    assert name in builtin_models()
    model = create_model(name)
    assert model.capabilities.cost == "full" and model.capabilities.intervals
    history = batch(
        series("a", seasonal(24 * 5)),
        series("b", seasonal(24 * 5, level=200.0, seed=1)),
        series("short", seasonal(30, seed=2)),  # under two days: fitted without the season
    )
    valid, failures = validate_forecast(model.forecast(history, HOURLY), history, HOURLY, name)
    assert failures == {}
    assert valid.groupby("unique_id").size().to_dict() == {"a": 12, "b": 12, "short": 12}
    bounds = valid[["yhat_lo_95", "yhat_lo_80", "yhat", "yhat_hi_80", "yhat_hi_95"]].to_numpy()
    assert np.isfinite(bounds).all() and (np.diff(bounds, axis=1) >= 0).all()
    # The season is fitted where a series covers two cycles of it, and not where it does not.
    long = history[history["unique_id"] == "a"]
    short = history[history["unique_id"] == "short"]
    by_id = valid.set_index("unique_id")["yhat"]
    np.testing.assert_allclose(
        by_id["a"], statsforecast_yhat(sf(name, season_length=24), long, HOURLY), rtol=1e-9
    )
    np.testing.assert_allclose(
        by_id["short"], statsforecast_yhat(sf(name, season_length=1), short, HOURLY), rtol=1e-9
    )
    # A seasonal fit follows the daily cycle: far closer to it than a flat line would be.
    truth = 50 + 15 * np.sin(2 * np.pi * np.arange(120, 132) / 24)
    assert np.abs(by_id["a"].to_numpy() - truth).mean() < 3.0


def test_library_parameters_of_the_new_members_are_passed_and_typos_refused() -> None:
    history = series("s", seasonal(24 * 4))
    task = ForecastTask(horizon=6, frequency="h", season_length=24)
    out = create_model("DynamicOptimizedTheta", {"decomposition_type": "additive"})
    expected = sf("DynamicOptimizedTheta", season_length=24, decomposition_type="additive")
    np.testing.assert_allclose(
        out.forecast(history, task)["yhat"], statsforecast_yhat(expected, history, task)
    )
    with pytest.raises(ConfigError, match=r"model 'AutoCES' has no parameter 'modle'"):
        create_model("AutoCES", {"modle": "S"})
    with pytest.raises(ConfigError, match=r"has no parameter 'season_length'"):
        create_model("DynamicOptimizedTheta", {"season_length": 52})


# -- AutoETS fits only the seasons it can -------------------------------------------------------


def test_auto_ets_fits_a_season_of_52_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # statsforecast would try (and pay for) seasonal fits at 52 before discarding them.
    import statsforecast.models

    seasons: list[int] = []

    class Recording(statsforecast.models.AutoETS):  # type: ignore[misc]
        def __init__(self, season_length: int = 1, **params: Any) -> None:
            seasons.append(season_length)
            super().__init__(season_length=season_length, **params)

    history = weekly("w", 160)
    expected = statsforecast_yhat(sf("AutoETS", season_length=1), history, WEEKLY)
    monkeypatch.setattr(statsforecast.models, "AutoETS", Recording)
    out = create_model("AutoETS").forecast(history, WEEKLY)
    assert seasons == [1]
    np.testing.assert_allclose(out["yhat"], expected, rtol=1e-9)
    create_model("AutoETS", {"max_season": 52}).forecast(history, WEEKLY)
    assert seasons == [1, 52]


def test_auto_ets_season_cap_is_a_parameter_and_takes_the_first_season_under_it() -> None:
    history = series("s", seasonal(24 * 15))
    task = ForecastTask(horizon=6, frequency="h", season_length=168, season_lengths=(24, 168))
    # Main season 168 is above the cap: the daily season (24) is fitted instead.
    out = create_model("AutoETS").forecast(history, task)
    expected = statsforecast_yhat(sf("AutoETS", season_length=24), history, task)
    np.testing.assert_allclose(out["yhat"], expected, rtol=1e-9)
    # With a cap below every season, none is fitted.
    out = create_model("AutoETS", {"max_season": 12}).forecast(history, task)
    expected = statsforecast_yhat(sf("AutoETS", season_length=1), history, task)
    np.testing.assert_allclose(out["yhat"], expected, rtol=1e-9)
    with pytest.raises(ConfigError, match=r"max_season must be a positive integer, not 0"):
        create_model("AutoETS", {"max_season": 0})


# -- the capped recent history ------------------------------------------------------------------


def test_default_cap_is_a_few_longest_seasons_with_a_floor() -> None:
    assert default_max_history(WEEKLY) == 5 * 52
    hourly = ForecastTask(horizon=48, frequency="h", season_length=24, season_lengths=(24, 168))
    assert default_max_history(hourly) == 5 * 168
    no_season = ForecastTask(horizon=4, frequency="D")
    assert default_max_history(no_season) == MIN_CAPPED_HISTORY == 260
    assert create_model("AutoTheta").history_cap(WEEKLY) == 260  # type: ignore[attr-defined]
    # The naive family keeps its meaning ("mean of the whole history") unless told otherwise.
    assert create_model("HistoricAverage").history_cap(WEEKLY) is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["AutoTheta", "DynamicOptimizedTheta"])
def test_automatic_models_fit_only_the_newest_points_by_default(name: str) -> None:
    long = weekly("w", 700)
    out = create_model(name).forecast(long, WEEKLY)
    cut = create_model(name, {"max_history": 0}).forecast(long.tail(260), WEEKLY)
    whole = create_model(name, {"max_history": 0}).forecast(long, WEEKLY)
    np.testing.assert_allclose(out["yhat"], cut["yhat"], rtol=1e-12)
    assert not np.allclose(out["yhat"], whole["yhat"], rtol=1e-6)  # 0 turns the cap off


def test_max_history_decides_what_is_fitted_and_the_seasons_that_fit() -> None:
    history = batch(series("a", seasonal(300)), series("b", seasonal(200, seed=4)))
    capped = create_model("AutoTheta", {"max_history": 100}).forecast(history, HOURLY)
    truncated = history.groupby("unique_id").tail(100)
    assert capped[["unique_id", "yhat"]].equals(
        create_model("AutoTheta").forecast(truncated, HOURLY)[["unique_id", "yhat"]]
    )
    # 40 points cover less than two days: the cut series is fitted without the daily season.
    out = create_model("AutoTheta", {"max_history": 40}).forecast(history, HOURLY)
    a = history[history["unique_id"] == "a"].tail(40)
    expected = statsforecast_yhat(sf("AutoTheta", season_length=1), a, HOURLY)
    np.testing.assert_allclose(out.loc[out["unique_id"] == "a", "yhat"], expected, rtol=1e-9)
    # Every statsforecast model takes it, the naive family included.
    mean = create_model("HistoricAverage", {"max_history": 10}).forecast(history, HOURLY)
    assert mean["yhat"].iloc[0] == pytest.approx(history["y"].iloc[290:300].mean())


@pytest.mark.parametrize("value", [-5, "520", 2.5, True])
def test_bad_max_history_is_a_config_error(value: object) -> None:
    with pytest.raises(ConfigError, match=r"model 'AutoCES': max_history must be a positive"):
        create_model("AutoCES", {"max_history": value})


# -- MSTL: trend model and Box-Cox ----------------------------------------------------------------


def multiplicative(n: int, season: int = 24, seed: int = 0) -> np.ndarray:
    """A positive series whose daily swing is proportional to a falling level."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    level = 100.0 * np.exp(-t / 120.0)
    return level * np.exp(0.9 * np.sin(2 * np.pi * t / season) + rng.normal(0, 0.05, n))


def test_mstl_box_cox_keeps_forecasts_and_bounds_positive_on_multiplicative_data() -> None:
    history = series("m", multiplicative(24 * 14))
    task = ForecastTask(horizon=48, frequency="h", season_length=24, levels=(80, 95))
    plain = create_model("MSTL").forecast(history, task)
    assert (plain["yhat_lo_95"] < 0).any()  # the untransformed fit goes below zero
    model = create_model("MSTL", {"box_cox": True})
    valid, failures = validate_forecast(model.forecast(history, task), history, task, "MSTL")
    assert failures == {}
    assert (valid[["yhat_lo_95", "yhat", "yhat_hi_95"]].to_numpy() > 0).all()
    # It is MSTL on the log scale, transformed back (the median forecast).
    logged = create_model("MSTL").forecast(history.assign(y=np.log(history["y"])), task)
    np.testing.assert_allclose(valid["yhat"], np.exp(logged["yhat"]), rtol=1e-9)
    np.testing.assert_allclose(valid["yhat_hi_80"], np.exp(logged["yhat_hi_80"]), rtol=1e-9)


def test_mstl_box_cox_lambda_and_untransformed_series_with_zeros() -> None:
    positive = series("pos", multiplicative(24 * 10))
    with_zero = series("zero", np.r_[0.0, seasonal(24 * 10 - 1)])
    history = batch(positive, with_zero)
    task = ForecastTask(horizon=12, frequency="h", season_length=24, levels=(80,))
    out = create_model("MSTL", {"box_cox": 0.5}).forecast(history, task).set_index("unique_id")
    root = create_model("MSTL").forecast(positive.assign(y=2 * (np.sqrt(positive["y"]) - 1)), task)
    np.testing.assert_allclose(out.loc["pos", "yhat"], (root["yhat"] / 2 + 1) ** 2, rtol=1e-9)
    untouched = create_model("MSTL").forecast(with_zero, task)
    np.testing.assert_allclose(out.loc["zero", "yhat"], untouched["yhat"], rtol=1e-12)


@pytest.mark.parametrize("trend", ["AutoTheta", "AutoCES", "AutoARIMA", "DynamicOptimizedTheta"])
def test_mstl_trend_model_is_a_parameter(trend: str) -> None:
    from statsforecast.models import MSTL as LibraryMSTL

    history = series("s", seasonal(24 * 10) + np.linspace(0, 20, 240))
    task = ForecastTask(horizon=12, frequency="h", season_length=24, levels=(80,))
    model = create_model("MSTL", {"trend": trend})
    valid, failures = validate_forecast(model.forecast(history, task), history, task, "MSTL")
    assert failures == {} and np.isfinite(valid["yhat_lo_80"]).all()
    extra = {"approximation": True} if trend == "AutoARIMA" else {}
    library = LibraryMSTL(season_length=[24], trend_forecaster=sf(trend, **extra), alias="yhat")
    np.testing.assert_allclose(valid["yhat"], statsforecast_yhat(library, history, task))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"trend": "AutoET"}, r"model 'MSTL': trend 'AutoET' is not offered; use one of: AutoETS"),
        ({"box_cox": "log"}, r"box_cox must be true \(log\), false or a lambda"),
        ({"box_cox": 5}, r"box_cox must be .* between -1 and 2, not 5"),
        ({"box_cx": True}, r"model 'MSTL' has no parameter 'box_cx'; it accepts: box_cox"),
        ({"trend_forecaster": "AutoETS"}, r"has no parameter 'trend_forecaster'"),
    ],
)
def test_mstl_parameter_mistakes_are_config_errors(params: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_model("MSTL", params)

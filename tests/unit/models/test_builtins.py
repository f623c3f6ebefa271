"""Every built-in model on the series a fleet really has: normal, flat, all-zero, short, sparse.

A series shorter than a model's ``min_history`` is *excluded*: the model leaves it out of its
output (``validate_forecast`` then reports it missing) and forecasts the rest of the batch; a
batch where no series can be fitted raises ``ModelError`` naming the model. The platform filters
series by ``capabilities.min_history`` before calling a model, so this is the safety net.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from steadycast.errors import ConfigError, ModelError
from steadycast.models.base import ForecastTask
from steadycast.models.ml import LightGBM, candidate_lags, date_features_for
from steadycast.models.registry import builtin_models, create_model
from steadycast.models.statistical import MSTL, AutoARIMA, SeasonalNaive, seasons_of
from steadycast.models.validation import validate_forecast

from .series import HOURLY, batch, intermittent, seasonal, series

BUILTINS = sorted(builtin_models())


def fleet(min_history: int) -> pd.DataFrame:
    """One batch with a series of each kind; the short one has exactly ``min_history`` points."""
    return batch(
        series("normal", seasonal(24 * 6)),
        series("constant", np.full(60, 4.2)),
        series("zeros", np.zeros(60)),
        series("short", seasonal(24 * 6)[-min_history:]),
        series("intermittent", intermittent(24 * 6)),
    )


@pytest.mark.parametrize("name", BUILTINS)
def test_every_kind_of_series_gets_a_finite_forecast_of_the_horizon(name: str) -> None:
    model = create_model(name)
    history = fleet(model.capabilities.min_history)
    valid, failures = validate_forecast(model.forecast(history, HOURLY), history, HOURLY, name)
    assert failures == {}
    assert valid.groupby("unique_id").size().to_dict() == dict.fromkeys(
        ["normal", "constant", "zeros", "short", "intermittent"], HOURLY.horizon
    )
    assert np.isfinite(valid["yhat"]).all()
    if model.capabilities.intervals:  # every batch above is long enough for every model
        normal = valid[valid["unique_id"] == "normal"]
        assert np.isfinite(normal[["yhat_lo_80", "yhat_hi_95"]].to_numpy()).all()


# statsforecast cannot fit these on one point (AutoARIMA, min_history 4, declares a margin: it
# fails on some noisy 3-point series, not on every short one).
@pytest.mark.parametrize("name", ["AutoETS", "AutoTheta", "MSTL"])
def test_series_below_min_history_is_left_out_and_the_rest_forecast(name: str) -> None:
    model = create_model(name)
    history = batch(series("ok", seasonal(72)), series("tiny", [3.0]))
    valid, failures = validate_forecast(model.forecast(history, HOURLY), history, HOURLY, name)
    assert set(valid["unique_id"]) == {"ok"}
    assert failures == {"tiny": f"missing from the output of model {name!r}"}


def test_batch_of_only_too_short_series_raises_model_error_naming_the_model() -> None:
    history = batch(series("a", [1.0, 2.0]), series("b", [3.0]))
    with pytest.raises(ModelError, match=r"model 'AutoETS': could not fit any of 2 series"):
        create_model("AutoETS").forecast(history, HOURLY)


def test_seasonal_naive_falls_back_to_naive_below_one_season() -> None:
    history = series("s", [1.0, 2.0, 3.0, 4.0, 5.0])
    out = SeasonalNaive().forecast(history, HOURLY)
    assert out["yhat"].tolist() == [5.0] * HOURLY.horizon


def test_seasonal_naive_repeats_the_last_season() -> None:
    y = np.tile(np.arange(24.0), 3)
    out = SeasonalNaive().forecast(series("s", y), HOURLY)
    assert out["yhat"].tolist() == list(np.arange(12.0))


def test_seasonal_naive_can_repeat_the_longest_season_the_series_covers() -> None:
    weekly = ForecastTask(horizon=48, frequency="h", season_length=24, season_lengths=(24, 168))
    y = np.arange(24.0 * 7 * 3) % 168  # every hour of the week differs
    main = SeasonalNaive().forecast(series("s", y), weekly)["yhat"].to_numpy()
    longest = SeasonalNaive(season="longest").forecast(series("s", y), weekly)["yhat"].to_numpy()
    np.testing.assert_array_equal(main, np.tile(np.arange(144.0, 168.0), 2))  # the last day
    np.testing.assert_array_equal(longest, np.arange(48.0))  # the same hours a week ago
    # Shorter than a week: the season it covers.
    short = SeasonalNaive(season="longest").forecast(series("s", y[:100]), weekly)
    np.testing.assert_array_equal(short["yhat"].to_numpy(), np.tile(y[76:100], 2))
    with pytest.raises(ConfigError, match="season must be one of main, longest, not 'week'"):
        SeasonalNaive(season="week")


def test_season_length_one_means_non_seasonal() -> None:
    task = ForecastTask(horizon=4, frequency="D", season_length=1, levels=(80,))
    assert seasons_of(task) == ()
    history = series("d", seasonal(40, season=7), freq="D")
    for name in BUILTINS:
        model = create_model(name)
        valid, failures = validate_forecast(model.forecast(history, task), history, task, name)
        assert failures == {}, name
        assert len(valid) == task.horizon


def test_mstl_uses_only_the_seasons_a_series_covers_twice() -> None:
    task = ForecastTask(horizon=6, frequency="h", season_length=24, season_lengths=(24, 168))
    assert MSTL()._plan(24 * 10, task) == (24,)
    assert MSTL()._plan(24 * 14, task) == (24, 168)
    assert MSTL()._plan(30, task) == ()  # plain AutoETS
    history = batch(series("long", seasonal(24 * 14)), series("mid", seasonal(24 * 3)))
    valid, failures = validate_forecast(MSTL().forecast(history, task), history, task, "MSTL")
    assert failures == {} and len(valid) == 12


def test_flat_history_gets_flat_finite_intervals() -> None:
    # MSTL on a constant series of this length returns NaN bounds inside statsforecast.
    history = series("stuck", np.full(335, 3.0))
    task = ForecastTask(horizon=5, frequency="h", season_length=24, levels=(80,))
    out = MSTL().forecast(history, task)
    np.testing.assert_allclose(out[["yhat_lo_80", "yhat_hi_80"]].to_numpy(), 3.0)


def test_auto_arima_uses_the_approximation_by_default_and_can_be_told_otherwise() -> None:
    assert AutoARIMA().params["approximation"] is True
    assert AutoARIMA(approximation=False).params["approximation"] is False


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        (
            "AutoETS",
            {"dampd": True},
            r"model 'AutoETS' has no parameter 'dampd'; it accepts: .*damped",
        ),
        ("AutoETS", {"season_length": 7}, r"has no parameter 'season_length'"),
        (
            "WindowAverage",
            {"size": 3},
            r"model 'WindowAverage' has no parameter 'size'; it accepts: max_history, window_size",
        ),
        ("LightGBM", {"lags": [0, 24]}, r"lags must be a list of positive integers"),
        ("LightGBM", {"interval_windows": 1}, r"interval_windows must be an integer >= 2"),
    ],
)
def test_bad_parameters_are_config_errors_naming_them(
    name: str, params: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        create_model(name, params)


def test_parameters_reach_the_library() -> None:
    history = series("s", np.arange(30.0))
    out = create_model("WindowAverage", {"window_size": 2}).forecast(history, HOURLY)
    assert out["yhat"].iloc[0] == pytest.approx(28.5)
    out = create_model("SES", {"alpha": 1.0}).forecast(history, HOURLY)
    assert out["yhat"].iloc[0] == pytest.approx(29.0)


def test_history_with_extra_columns_is_not_mistaken_for_exogenous_input() -> None:
    history = series("s", seasonal(72)).assign(temperature=1.0)
    for name in ("AutoETS", "LightGBM"):
        out = create_model(name).forecast(history, HOURLY)
        assert len(out) == HOURLY.horizon


def test_lightgbm_features_follow_the_frequency() -> None:
    assert date_features_for("15min") == ["minute", "hour", "dayofweek"]
    assert date_features_for("1h") == ["hour", "dayofweek"]
    assert date_features_for("D") == ["dayofweek", "month"]
    assert date_features_for("W") == ["month"]
    assert date_features_for("MS") == ["month"]
    assert date_features_for("YS") == []
    task = ForecastTask(horizon=6, frequency="h", season_length=24, season_lengths=(24, 168))
    assert candidate_lags(task) == [24, 48, 72, 96, 120, 144, 168, 336]
    # Hourly data is learnt on its level; 100 points train lags up to 50.
    assert LightGBM()._plan(100, task).lags == (24, 48)
    assert LightGBM()._plan(100, task).differences == ()
    assert LightGBM()._plan(3, task).lags == (1,)
    weekly = ForecastTask(horizon=13, frequency="W-SUN", season_length=52)
    assert candidate_lags(weekly) == [1, 2, 3, 52, 104]
    assert LightGBM()._plan(300, weekly).differences == (1,)


def test_lightgbm_gives_intervals_only_where_the_history_allows() -> None:
    # Conformal intervals need 2 * horizon points plus twice the largest lag; "short" has fewer.
    history = batch(series("long", seasonal(24 * 6)), series("short", seasonal(20)))
    valid, failures = validate_forecast(
        LightGBM().forecast(history, HOURLY), history, HOURLY, "LightGBM"
    )
    assert failures == {}
    by_id = valid.set_index("unique_id")
    assert np.isfinite(by_id.loc["long", "yhat_lo_95"]).all()
    assert by_id.loc["short", "yhat_lo_95"].isna().all()


DAILY = ForecastTask(
    horizon=14, frequency="D", season_length=7, season_lengths=(7,), levels=(80, 95)
)


@pytest.mark.parametrize(
    ("length", "intervals"), [(29, False), (37, False), (42, False), (56, True)]
)
def test_lightgbm_forecasts_a_history_too_short_to_calibrate_its_intervals(
    length: int, intervals: bool
) -> None:
    # Daily data cut at a level shift: 37 points, horizon 14, lags 7 and 14. The two
    # calibration windows leave 9 points, fewer than lag 14, so calibrating would train on
    # nothing; the series gets point forecasts (the platform fills the intervals) instead of
    # failing the final fit that its shorter backtest never reached.
    history = batch(
        series("wide", seasonal(length, season=7), freq="D"),
        series("narrow", seasonal(length, season=7, level=5.0, seed=1), freq="D"),
    )
    valid, failures = validate_forecast(
        LightGBM().forecast(history, DAILY), history, DAILY, "LightGBM"
    )
    assert failures == {}
    assert valid.groupby("unique_id").size().to_dict() == {"wide": 14, "narrow": 14}
    assert np.isfinite(valid["yhat"]).all()
    assert np.isfinite(valid["yhat_lo_95"]).all() == intervals


def test_lightgbm_is_one_threaded_whatever_it_is_given() -> None:
    assert LightGBM(num_threads=4, n_estimators=10).lgb_params["num_threads"] == 1


def test_the_global_model_learns_one_pattern_across_series() -> None:
    # Two series with the same daily shape at different levels: one model fits both.
    history = batch(
        series("low", seasonal(24 * 8, level=10.0)), series("high", seasonal(24 * 8, level=1000.0))
    )
    out = LightGBM().forecast(history, HOURLY).set_index("unique_id")
    assert out.loc["low", "yhat"].between(0, 20).all()
    assert out.loc["high", "yhat"].between(600, 1400).all()

"""FastTheta: the standard Theta method, vectorised: right on known shapes, no mixing of series,
and close to statsforecast's Theta on the series where both apply."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from steadycast.models.base import ForecastTask
from steadycast.models.fast import (
    THETA_ALPHA_TOLERANCE,
    FastSES,
    FastTheta,
    Runs,
    seasonality_test,
    ses_forecasts,
)

from .series import batch, series

DAILY = ForecastTask(horizon=14, frequency="D", season_length=7, season_lengths=(7,))


def daily(uid: str, values: np.ndarray) -> pd.DataFrame:
    return series(uid, values, freq="D")


def weekly_cycle(n: int, seed: int, level: float = 100.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    shape = np.array([1.3, 1.1, 1.0, 0.9, 0.95, 0.8, 0.95])
    return level * (1 + 0.001 * t) * shape[t % 7] * rng.lognormal(0.0, 0.03, n)


def yhat(out: pd.DataFrame, uid: str) -> np.ndarray:
    return out.loc[out["unique_id"] == uid, "yhat"].to_numpy()


def test_a_noiseless_trend_gets_the_theta_line_forecast() -> None:
    """On ``y = a + b t`` the regression line is exact and SES on the theta-2 line (the series
    itself) follows it, so the forecast keeps half the slope from the last point."""
    t = np.arange(120.0)
    out = FastTheta().forecast(daily("trend", 10.0 + 2.0 * t), DAILY)
    steps = np.arange(1, DAILY.horizon + 1)
    last = 10.0 + 2.0 * 119
    # SES lags a trend by slope * (1 - alpha) / alpha; alpha stops at 0.99, so 0.02 here.
    np.testing.assert_allclose(yhat(out, "trend"), last + (2.0 / 2) * steps, atol=0.02)
    # Exactly: mean of SES on the series and the regression line extrapolated.
    runs = Runs(y=10.0 + 2.0 * t, starts=np.array([0]), lengths=np.array([120]))
    ses = ses_forecasts(runs, None, THETA_ALPHA_TOLERANCE)[0]
    np.testing.assert_allclose(yhat(out, "trend"), 0.5 * (ses + 10.0 + 2.0 * (119 + steps)))


def test_on_a_seasonal_series_it_beats_ses() -> None:
    n, h = 364, DAILY.horizon
    y = weekly_cycle(n + h, seed=1)
    history = daily("weekly", y[:n])
    truth = y[n:]
    theta = yhat(FastTheta().forecast(history, DAILY), "weekly")
    ses = yhat(FastSES().forecast(history, DAILY), "weekly")
    error_theta, error_ses = np.abs(theta - truth).mean(), np.abs(ses - truth).mean()
    assert error_theta < 0.5 * error_ses, (error_theta, error_ses)
    # The cycle comes back in the forecast: the peak day (phase 0) above the trough (phase 5).
    phase = (n + np.arange(h)) % 7
    assert theta[phase == 0].min() > theta[phase == 5].max()


def test_a_batch_gives_each_series_what_it_gets_alone() -> None:
    rng = np.random.default_rng(4)
    frames = [
        daily("seasonal", weekly_cycle(300, seed=2)),
        daily("trend", 5.0 + 0.3 * np.arange(90) + rng.normal(0, 1, 90)),
        daily("negative", rng.normal(0, 5, 200)),  # not positive: never decomposed
        daily("short", [3.0, 4.0, 6.0]),
        daily("one", [8.0]),
        daily("flat", np.full(50, 4.2)),
        daily("seasonal2", weekly_cycle(250, seed=3, level=1e4)),
    ]
    together = FastTheta().forecast(batch(*frames), DAILY)
    for frame in frames:
        uid = frame["unique_id"].iloc[0]
        alone = FastTheta().forecast(frame, DAILY)
        # Not bit for bit: alone, a series is summed pairwise, in a batch of unequal lengths
        # sequentially; SES's search turns those last bits into about 1e-10. Mixing would not.
        np.testing.assert_allclose(yhat(together, uid), yhat(alone, uid), rtol=1e-8)


def test_constant_short_and_one_point_series() -> None:
    history = batch(
        daily("flat", np.full(40, 4.2)),
        daily("one", [8.0]),
        daily("two", [1.0, 3.0]),
        daily("zeros", np.zeros(30)),
    )
    out = FastTheta().forecast(history, DAILY)
    assert (yhat(out, "flat") == 4.2).all()
    assert (yhat(out, "one") == 8.0).all()
    assert (yhat(out, "zeros") == 0.0).all()
    # Two points: slope 2, SES on the theta-2 line returns its last point (5), the line
    # goes on from 4: the mean continues with half the slope from 4.5.
    np.testing.assert_allclose(yhat(out, "two"), 3.5 + np.arange(DAILY.horizon), rtol=1e-12)
    assert np.isfinite(out["yhat"]).all() and len(out) == 4 * DAILY.horizon


def test_seasonality_test_needs_three_seasons_and_a_real_cycle() -> None:
    rng = np.random.default_rng(0)
    cycle = weekly_cycle(60, seed=5)
    noise = rng.normal(100, 1, 60)
    y = np.concatenate([cycle, noise, cycle[:20]])
    runs = Runs(y=y, starts=np.array([0, 60, 120]), lengths=np.array([60, 60, 20]))
    assert seasonality_test(runs, 7).tolist() == [True, False, False]


def test_close_to_statsforecast_theta() -> None:
    """statsforecast's Theta (same test, decomposition and theta line; it also optimises the
    initial level): close on every series of a mixed batch."""
    from statsforecast import StatsForecast
    from statsforecast.models import Theta

    rng = np.random.default_rng(8)
    frames = [daily(f"s{i}", weekly_cycle(200 + 20 * i, seed=10 + i)) for i in range(6)]
    frames += [
        daily(f"t{i}", 50 + 0.2 * np.arange(150) + rng.normal(0, 2, 150).cumsum()) for i in range(4)
    ]
    history = batch(*frames)
    ours = FastTheta().forecast(history, DAILY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = StatsForecast(models=[Theta(season_length=7)], freq="D").forecast(
            df=history, h=DAILY.horizon
        )
    merged = ours.merge(theirs, on=["unique_id", "ds"])
    assert len(merged) == len(ours)
    level = history.groupby("unique_id")["y"].apply(lambda s: s.tail(28).abs().mean())
    gap = (merged["yhat"] - merged["Theta"]).abs().groupby(merged["unique_id"]).max() / level
    assert gap.max() < 0.05, gap.sort_values().tail(3)


@pytest.mark.parametrize("season_lengths", [(), (7,), (7, 365)])
def test_any_season_setting_gives_finite_forecasts(season_lengths: tuple[int, ...]) -> None:
    task = ForecastTask(
        horizon=14,
        frequency="D",
        season_length=season_lengths[0] if season_lengths else 1,
        season_lengths=season_lengths,
    )
    history = batch(daily("a", weekly_cycle(730, seed=6)), daily("b", [2.0, 5.0, 4.0]))
    out = FastTheta().forecast(history, task)
    assert len(out) == 2 * 14 and np.isfinite(out["yhat"]).all()

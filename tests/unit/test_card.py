"""Card: a vectorised least-squares autoregression in logs.

The promises: it recovers a noiseless log-linear seasonal series; one call over many series gives
each series the forecast it gets alone (the batching never mixes series), whatever their lengths;
series with zeros, negative values, a flat line or a few points still get a sound forecast; an
explosive fit is replaced by seasonal naive; the registry and the CLI know it by name; and on
real hourly load it beats seasonal naive.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from steadycast.errors import ConfigError
from steadycast.models import card
from steadycast.models.base import ForecastTask
from steadycast.models.card import Card
from steadycast.models.registry import builtin_models, create_model
from steadycast.models.validation import validate_forecast
from steadycast.testing import check_model
from tests.conftest import run_cli, shared_data

HOURLY = ForecastTask(horizon=48, frequency="h", season_length=24, season_lengths=(24, 168))
WEEKLY = ForecastTask(horizon=13, frequency="W-SUN", season_length=52, season_lengths=(52,))


def frame(series: dict[str, np.ndarray], frequency: str = "h") -> pd.DataFrame:
    """Long history, every series ending at the same time."""
    parts = []
    for uid, y in series.items():
        ds = pd.date_range(end="2024-06-30 23:00", periods=len(y), freq=frequency)
        parts.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": np.asarray(y, float)}))
    return pd.concat(parts, ignore_index=True)


def yhat(out: pd.DataFrame, uid: str) -> np.ndarray:
    return out.loc[out["unique_id"] == uid, "yhat"].to_numpy()


def log_linear(n: int, horizon: int, level: float = 3.0) -> np.ndarray:
    """exp(level + trend + daily and weekly pattern): linear in logs, no noise."""
    t = np.arange(n + horizon)
    daily = 0.4 * np.sin(2 * np.pi * t / 24) + 0.1 * np.cos(4 * np.pi * t / 24)
    weekly = 0.2 * np.sin(2 * np.pi * t / 168)
    return np.exp(level + 0.001 * t + daily + weekly)


def noisy(n: int, seed: int, level: float = 50.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return level * np.exp(0.3 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.1, n))


def test_noiseless_log_linear_seasonal_series_is_recovered() -> None:
    truth = log_linear(700, HOURLY.horizon)
    out = Card().forecast(frame({"a": truth[:700]}), HOURLY)
    np.testing.assert_allclose(yhat(out, "a"), truth[700:], rtol=1e-3)


def test_a_batch_gives_each_series_its_own_forecast() -> None:
    series = {
        "small": noisy(700, 1, level=0.5),
        "big": noisy(700, 2, level=5000.0),
        "trend": log_linear(700, 0),
        "flat": np.full(700, 3.0),
    }
    together = Card().forecast(frame(series), HOURLY)
    for uid, y in series.items():
        alone = Card().forecast(frame({uid: y}), HOURLY)
        np.testing.assert_allclose(yhat(together, uid), yhat(alone, uid), rtol=1e-9)


def test_a_batch_cut_into_chunks_gives_the_same_forecasts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    history = frame({f"s{k}": noisy(700, k) for k in range(5)})
    whole = Card().forecast(history, HOURLY)
    monkeypatch.setattr(card, "CHUNK_VALUES", 1000)  # one or two series a chunk
    chunked = Card().forecast(history, HOURLY)
    np.testing.assert_allclose(chunked["yhat"], whole["yhat"], rtol=1e-9)


def test_series_of_different_lengths_in_one_call() -> None:
    series = {f"n{n}": noisy(n, n) for n in (30, 100, 400, 1500, 3000)}
    history = frame(series)
    out = Card().forecast(history, HOURLY)
    valid, failures = validate_forecast(out, history, HOURLY, "Card")
    assert failures == {}
    assert len(valid) == len(series) * HOURLY.horizon
    for uid, y in series.items():
        alone = Card().forecast(frame({uid: y}), HOURLY)
        np.testing.assert_allclose(yhat(out, uid), yhat(alone, uid), rtol=1e-9)


def test_zeros_are_modelled_with_an_offset_log_and_stay_non_negative() -> None:
    y = noisy(700, 3, level=2.0)
    y[::5] = 0.0
    history = frame({"zeros": y})
    forecast = yhat(Card().forecast(history, HOURLY), "zeros")
    assert np.all(np.isfinite(forecast)) and np.all(forecast >= 0)
    on_own_scale = yhat(Card(log=False).forecast(history, HOURLY), "zeros")
    assert not np.allclose(forecast, on_own_scale)  # logs were used


def test_a_negative_value_means_no_log() -> None:
    y = noisy(700, 4)
    y[100] = -1.0
    history = frame({"negative": y})
    forecast = yhat(Card().forecast(history, HOURLY), "negative")
    on_own_scale = yhat(Card(log=False).forecast(history, HOURLY), "negative")
    assert np.all(np.isfinite(forecast))
    np.testing.assert_allclose(forecast, on_own_scale, rtol=1e-12)


def test_a_constant_series_is_forecast_flat() -> None:
    out = Card().forecast(frame({"flat": np.full(500, 7.25)}), HOURLY)
    np.testing.assert_array_equal(yhat(out, "flat"), np.full(HOURLY.horizon, 7.25))


def test_short_series_get_a_simpler_fit() -> None:
    need = Card.capabilities.min_history
    y = np.array([10.0, 12.0, 11.0, 13.0, 12.5, 14.0])
    history = frame({"min": y[:need], "weekly": noisy(80, 5)}, frequency="W-SUN")
    out = Card().forecast(history, WEEKLY)
    valid, failures = validate_forecast(out, history, WEEKLY, "Card")
    assert failures == {}
    assert np.all(np.isfinite(valid["yhat"]))


def test_an_explosive_fit_falls_back_to_seasonal_naive() -> None:
    y = np.exp(0.05 * np.arange(100))  # exact growth in logs: e^30 a long horizon later
    task = ForecastTask(horizon=600, frequency="h", season_length=24, season_lengths=(24,))
    forecast = yhat(Card().forecast(frame({"boom": y}), task), "boom")
    np.testing.assert_array_equal(forecast, y[-24:][np.arange(600) % 24])


def test_the_registry_and_the_cli_know_it_by_name() -> None:
    assert builtin_models()["Card"] is Card
    assert isinstance(create_model("Card", {"max_history": 200}), Card)
    listed = run_cli("models", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)["models"]}
    assert rows["Card"]["tier"] == "fast"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"lags": 3}, "model 'Card' has no parameter 'lags'; it accepts: max_history"),
        ({"max_history": 2}, "max_history must be a whole number of at least 4, got 2"),
        ({"trend": "damped"}, "trend must be 'average', 'with' or 'without'"),
        ({"log": "yes"}, "log must be true or false"),
    ],
)
def test_bad_parameters_are_config_errors(params: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_model("Card", params)


def test_contract() -> None:
    check_model(Card)
    check_model(Card, task=WEEKLY)


def test_beats_seasonal_naive_on_real_hourly_load() -> None:
    """GEFCom2012 zones 1-3: the last week of each of four quarters, from 6 weeks before it."""
    raw = pd.read_csv(shared_data("gefcom2012_load", "Load_history.csv.gz"), thousands=",")
    raw = raw[raw["zone_id"] <= 3]
    hours = [f"h{k}" for k in range(1, 25)]
    long = raw.melt(id_vars=["zone_id", "year", "month", "day"], value_vars=hours, var_name="h")
    long["ds"] = pd.to_datetime(long[["year", "month", "day"]]) + pd.to_timedelta(
        long["h"].str[1:].astype(int) - 1, unit="h"
    )
    long = long.dropna(subset=["value"]).sort_values(["zone_id", "ds"])
    task = ForecastTask(horizon=168, frequency="h", season_length=24, season_lengths=(24, 168))
    histories, truths = [], []
    for zone, rows in long.groupby("zone_id"):
        y = rows["value"].to_numpy(float)
        for origin in (2000, 4200, 6400, 8600):
            uid = f"z{zone}@{origin}"
            histories.append(pd.DataFrame({"unique_id": uid, "y": y[origin - 1008 : origin]}))
            truths.append(pd.DataFrame({"unique_id": uid, "y": y[origin : origin + 168]}))
    history = pd.concat(histories, ignore_index=True)
    history["ds"] = np.tile(pd.date_range("2004-01-01", periods=1008, freq="h"), len(histories))
    truth = pd.concat(truths, ignore_index=True)["y"].to_numpy()
    card = Card().forecast(history, task)["yhat"].to_numpy()
    seasonal_naive = create_model("FastSeasonalNaive").forecast(history, task)["yhat"].to_numpy()
    card_error = np.mean(np.abs(card - truth))
    naive_error = np.mean(np.abs(seasonal_naive - truth))
    assert card_error < 0.9 * naive_error, (card_error, naive_error)

"""Calibrated intervals: published 80/95% bounds cover held-out data at their level."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from steadycast.config import PipelineConfig, parse_pipeline
from steadycast.forecasting import intervals
from steadycast.forecasting.forecast import forecast_partition, run_partition
from steadycast.forecasting.intervals import conformal_quantile
from steadycast.models.base import Capabilities

from .stages.test_backtest import FakeRunner, frame, planted, truth, with_intervals
from .stages.test_forecast import _selection, config

LEVELS = (80, 95)
HORIZON = 6


def _config(windows: int = 3) -> PipelineConfig:
    return parse_pipeline(
        {
            "source": {},
            "series": {"frequency": "D", "horizon": HORIZON, "season_lengths": [1]},
            "models": {"candidates": ["Naive", "HistoricAverage"], "plugins": False},
            "backtest": {"windows": windows, "ensemble_top_k": 0},
        },
        "test",
        "test.toml",
    )


def _random_walks(
    seed: int, n: int = 120, length: int = 90, calm_until: int | None = None, jump: float = 1.0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gaussian random walks, each with its own noise level (0.5 to 20), split into history
    and the next ``HORIZON`` points; from ``calm_until`` on the noise is ``jump`` times larger."""
    rng = np.random.default_rng(seed)
    series = {}
    for i in range(n):
        sigma = np.exp(rng.uniform(np.log(0.5), np.log(20.0)))
        noise = rng.normal(0.0, sigma, length + HORIZON)
        if calm_until is not None:
            noise[calm_until:] *= jump
        series[f"s{i:03d}"] = 1000.0 + np.cumsum(noise)
    full = frame(series)
    position = full.groupby("unique_id").cumcount()
    return full[position < length].reset_index(drop=True), full[position >= length]


def _coverage(forecasts: pd.DataFrame, test: pd.DataFrame) -> dict[int, float]:
    merged = test.merge(forecasts, on=["unique_id", "ds"])
    assert len(merged) == len(test)
    return {
        lv: float(merged["y"].between(merged[f"yhat_lo_{lv}"], merged[f"yhat_hi_{lv}"]).mean())
        for lv in LEVELS
    }


def _ordered(forecasts: pd.DataFrame) -> None:
    fc = forecasts
    assert (fc["yhat_lo_95"] <= fc["yhat_lo_80"]).all()
    assert (fc["yhat_lo_80"] <= fc["yhat"]).all()
    assert (fc["yhat"] <= fc["yhat_hi_80"]).all()
    assert (fc["yhat_hi_80"] <= fc["yhat_hi_95"]).all()


def test_conformal_quantile_uses_the_finite_sample_rank() -> None:
    values = np.arange(1.0, 20.0)  # 19 values: rank ceil(20 L)
    assert conformal_quantile(values, 0.95) == 19.0
    assert conformal_quantile(values, 0.80) == 16.0
    assert conformal_quantile(np.array([3.0, 1.0, 2.0]), 0.95) == 3.0  # rank past n: the largest
    assert np.isnan(conformal_quantile(np.array([np.nan]), 0.8))


@pytest.mark.parametrize("seed", [1, 2])
def test_fleet_of_random_walks_is_covered_at_each_level(seed: int) -> None:
    # One held-out period of 200 series: its coverage varies by a few points from fleet to
    # fleet (the steps of a series move together), hence the band. The factor only widens.
    history, test = _random_walks(seed, n=200)
    result = run_partition(history, _config(), runner=None)
    assert set(result.provenance["interval_source"]) == {"calibrated"}
    cover = _coverage(result.forecasts, test)
    assert 0.76 <= cover[80] <= 0.88, cover
    assert 0.92 <= cover[95] <= 0.995, cover
    _ordered(result.forecasts)


def test_half_widths_never_shrink_with_the_step() -> None:
    history, _ = _random_walks(3, n=40)
    fc = run_partition(history, _config(), runner=None).forecasts
    for level in LEVELS:
        half = (fc[f"yhat_hi_{level}"] - fc["yhat"]).to_numpy().reshape(-1, HORIZON)
        assert (np.diff(half, axis=1) >= -1e-9).all()
        # A random walk's error grows with the step: so do the pooled quantiles.
        assert (half[:, -1] > 1.5 * half[:, 0]).all()


def test_volatility_rising_in_the_newest_window_widens_the_bounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The noise triples over the last backtest window and the future: the older windows alone
    # would under-cover; the factor tuned on the newest window widens every bound.
    history, test = _random_walks(4, calm_until=90 - HORIZON, jump=3.0)
    calibrated = run_partition(history, _config(), runner=None)
    cover = _coverage(calibrated.forecasts, test)
    # Per-series quantiles of the backtest errors, pooled over steps, covered 0.34 / 0.49 here.
    assert cover[80] >= 0.78 and cover[95] >= 0.93, cover
    monkeypatch.setattr(intervals, "FACTOR_RANGE", (1.0, 1.0))
    plain = run_partition(history, _config(), runner=None)
    width = (calibrated.forecasts["yhat_hi_95"] - calibrated.forecasts["yhat"]).to_numpy()
    plain_width = (plain.forecasts["yhat_hi_95"] - plain.forecasts["yhat"]).to_numpy()
    assert (width > 1.3 * plain_width).all()
    assert _coverage(plain.forecasts, test)[95] < cover[95]


def test_single_window_has_no_factor_and_still_orders_bounds() -> None:
    history, test = _random_walks(5)
    result = run_partition(history, _config(windows=1), runner=None)
    _ordered(result.forecasts)
    cover = _coverage(result.forecasts, test)
    assert cover[95] > cover[80] > 0.6


def test_model_intervals_far_too_narrow_are_widened() -> None:
    rng = np.random.default_rng(6)
    days = pd.Series(pd.date_range("2022-01-03", periods=60, freq="D"))
    history = frame({f"n{i}": truth(days) + rng.normal(0, 5.0, 60) for i in range(20)})
    narrow = with_intervals(planted(0.0), width=0.01)  # yhat ± 0.0095 at 95%
    runner = FakeRunner({"Narrow": narrow, "Naive": planted(50.0)})
    caps: dict[str, Any] = {"Narrow": Capabilities(intervals=True), "Naive": Capabilities()}
    cfg = config(windows=3)
    sel = _selection(history, runner, ["Narrow"], cfg)
    result = forecast_partition(history, cfg, runner, sel, capabilities=caps)
    assert set(result.provenance["interval_source"]) == {"calibrated"}
    half = result.forecasts["yhat_hi_95"] - result.forecasts["yhat"]
    assert (half > 5.0).all()  # about 2 noise sds, not the model's 0.0095
    _ordered(result.forecasts)


def test_lower_bounds_stop_at_zero_for_a_never_negative_fleet() -> None:
    rng = np.random.default_rng(8)
    history = frame({f"z{i}": rng.poisson(0.5, 60).astype(float) for i in range(10)})
    result = run_partition(history, _config(), runner=None)
    fc = result.forecasts
    assert (fc["yhat_lo_95"] >= 0).all()
    _ordered(fc)

"""Tiers: the plan follows the time budget, and each partition gives the full tier to its
largest series in the planned share."""

from __future__ import annotations

import tomllib

import pandas as pd
import pytest

from steadycast.config import PipelineConfig, parse_pipeline
from steadycast.errors import ConfigError
from steadycast.forecasting import tiers
from steadycast.models.registry import builtin_models


def config(models: str) -> PipelineConfig:
    text = (
        '[source]\n[series]\nfrequency = "1h"\nhorizon = 24\n'
        f"[models]\n{models}\n[forecast]\nworkers = 2\n"
    )
    return parse_pipeline(tomllib.loads(text), "meters", "pipelines/meters.toml")


def fleet(volumes: dict[str, float], points: int = 48) -> pd.DataFrame:
    ds = pd.date_range("2024-01-01", periods=points, freq="1h")
    return pd.concat(
        [pd.DataFrame({"unique_id": k, "ds": ds, "y": v}) for k, v in volumes.items()],
        ignore_index=True,
    )


def test_full_and_fast_tiers_are_all_or_nothing() -> None:
    assert tiers.plan(config('tier = "full"'), 1000, 700).full_share == 1.0
    fast = tiers.plan(config('tier = "fast"'), 1000, 700)
    assert fast.full_share == 0.0 and fast.estimated_s == fast.estimated_fast_s


def test_auto_gives_the_full_tier_to_what_the_budget_affords() -> None:
    cfg = config('candidates = ["AutoETS"]\ntier = "auto"\ntime_budget = "10min"')
    decided = tiers.plan(cfg, 10_000, 700)
    # AutoETS costs about 0.57 s a series a fit, plus the platform's own work per series and
    # fit; one fit per backtest window and one for the forecast, on 2 workers.
    fits = cfg.backtest.windows + 1
    per_full = (0.57 + tiers.PLATFORM_S) * fits / 2
    assert decided.estimated_full_s == pytest.approx(10_000 * per_full, rel=1e-3)
    assert 0 < decided.full_share < 1
    assert decided.estimated_s == pytest.approx(600, rel=0.01)
    assert tiers.plan(cfg, 10, 700).full_share == 1.0  # a small fleet fits whole
    assert tiers.plan(config('tier = "auto"\ntime_budget = "1s"'), 10**6, 700).full_share == 0.0


def test_auto_needs_a_budget_or_a_share() -> None:
    with pytest.raises(ConfigError, match="time_budget"):
        config('tier = "auto"')


def test_a_partition_gives_the_full_tier_to_its_largest_series() -> None:
    cfg = tiers.applied(
        config('tier = "auto"\nfull_share = 0.5'),
        tiers.plan(config('tier = "auto"\nfull_share = 0.5'), 4, 48),
    )
    parts = tiers.split(fleet({"a": 1.0, "b": 40.0, "c": 3.0, "d": 20.0}), cfg)
    by_tier = {tier: (c, set(h["unique_id"])) for tier, c, h in parts}
    assert by_tier["full"][1] == {"b", "d"}
    assert by_tier["fast"][1] == {"a", "c"}
    assert by_tier["fast"][0].models.candidates == list(cfg.models.fast_candidates)
    assert by_tier["full"][0].models.candidates == list(cfg.models.candidates)


def test_fast_tier_forecasts_with_the_fast_candidates_only() -> None:
    cfg = config('tier = "fast"')
    [(tier, fast_cfg, history)] = tiers.split(fleet({"a": 1.0, "b": 2.0}), cfg)
    assert tier == "fast" and len(history) == 96
    assert fast_cfg.models.candidates == ["FastSeasonalNaive", "FastTheta", "Card"]
    caps = builtin_models()
    assert all(caps[m].capabilities.cost == "fast" for m in fast_cfg.models.candidates)


def test_the_fast_default_is_an_accurate_pool_priced_from_measured_costs() -> None:
    """Theta and Card, not the naive family, and the plan prices them from their own measured
    costs (not the default for an unknown model)."""
    fast = config("").models.fast_candidates
    assert {"FastTheta", "Card"} <= set(fast)
    assert all(tiers.COST_S[m] < 0.001 for m in fast)  # measured, far below DEFAULT_COST_S
    decided = tiers.plan(config('tier = "fast"'), 1_000_000, 730)
    fits = config("").backtest.windows + 1
    per_series = sum(tiers.COST_S[m] for m in fast) * 730 / tiers.REFERENCE_POINTS
    expected = 1_000_000 * (per_series + tiers.PLATFORM_S) * fits / 2
    assert decided.estimated_fast_s == pytest.approx(expected, rel=1e-3)
    assert decided.estimated_fast_s < 3600  # a million daily series fit in the hour on 2 cores


def test_auto_with_a_budget_picks_a_share_from_the_new_costs() -> None:
    cfg = config('candidates = ["AutoETS"]\ntier = "auto"\ntime_budget = "45min"')
    decided = tiers.plan(cfg, 1_000_000, 730)
    assert 0 < decided.full_share < 0.01
    assert decided.estimated_s == pytest.approx(2700, rel=0.01)
    # The fast tier alone takes most of the budget; what is left buys full-tier series.
    assert decided.estimated_fast_s < 2700 < decided.estimated_full_s
    # The platform's own work per series is counted: it dominates the fast models' arithmetic.
    fits = cfg.backtest.windows + 1
    assert decided.estimated_fast_s > 1_000_000 * tiers.PLATFORM_S * fits / 2

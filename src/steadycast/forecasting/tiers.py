"""Tiers of models, so that a fleet is forecast within its time budget.

The *full* tier is the configured candidates (statsforecast's auto models, the global LightGBM
model, plugins); the *fast* tier is the vectorised models computed for whole batches of series
at once (``models/fast.py``: FastTheta, seasonal naive, SES...; ``models/card.py``: Card),
hundreds to thousands of times cheaper per series and, combined like the full tier (each
series' best three, ``[backtest] combination``), accurate rather than naive. ``[models] tier``
chooses: ``full`` (the default), ``fast``, or ``auto``: the full tier for as many series as
``time_budget`` allows, the largest series first (they carry most of the volume, so most of
the error), the fast tier for the rest.

The plan is made once per run, from the fleet's size and an estimate of what each model costs,
and recorded with the run; each partition then applies it on its own (ranking its series by
volume), so the same plan gives the same split on any engine. The estimate uses costs measured
per series on a 2-core reference machine, plus what the platform itself spends per series and
fit (preparing, validating, scoring, selecting: more than the fast models' own arithmetic); the
run's own stage timings are recorded next to it.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

import pandas as pd

from steadycast.config import PipelineConfig

FULL, FAST = "full", "fast"

# CPU seconds per series for one fit and forecast of REFERENCE_POINTS points on one core, scaled
# linearly to other lengths. statsforecast 2.1.1 models: hourly data, season 24, one series at
# a time. Fast models (vectorised, batches of 5,000 to 10,000 series): FastTheta and FastSES
# measured on daily series of 730 points, h = 14, seasons 7 (and 7, 365): FastTheta 0.14-0.25
# ms, FastSES 0.13-0.15 ms, Card 0.13-0.15 ms, the naive family about 0.012 ms (2026-12-06, a
# shared 2-core machine). A model not listed costs DEFAULT_COST_S.
REFERENCE_POINTS = 700
COST_S = {
    "Naive": 0.0001,
    "SeasonalNaive": 0.00013,
    "HistoricAverage": 0.0001,
    "WindowAverage": 0.0001,
    "SeasonalWindowAverage": 0.0001,
    "SES": 0.002,
    "CrostonOptimized": 0.002,
    "IMAPA": 0.01,
    "AutoTheta": 0.13,
    "MSTL": 0.21,
    "AutoETS": 0.57,
    "AutoARIMA": 3.0,
    # 700 hourly points, seasons 24 and 168, h = 48 (2026-12-06, shared 2-core machine; AutoTheta
    # 0.07 and MSTL 0.17 in the same run). The automatic models fit at most 5 of the longest
    # seasons (models/statistical.py): on M4 Weekly (season 52, fitted without it by AutoETS)
    # about 0.01 s a series for AutoETS and DynamicOptimizedTheta, 0.02 s AutoTheta, 0.1 s AutoCES.
    "AutoCES": 0.25,
    "DynamicOptimizedTheta": 0.04,
    # One fit for the whole backtest and two for the forecast (conformal calibration): 0.033 s
    # per series for 3 windows and the forecast, 1,000 hourly series of 840 points, h = 48
    # (2026-12-06), spread over the 4 fits the plan counts and scaled to 700 points.
    "LightGBM": 0.007,
    "FastNaive": 0.00002,
    "FastSeasonalNaive": 0.00003,
    "FastHistoricAverage": 0.00002,
    "FastWindowAverage": 0.00003,
    "FastSeasonalWindowAverage": 0.00003,
    "FastSES": 0.00014,
    "FastTheta": 0.0002,
    "Card": 0.0002,  # both specifications, seasons 24 and 168, batches of 10,000 series
}
DEFAULT_COST_S = 0.1
# CPU seconds the platform spends per series and fit besides the model (prepare, validate the
# output, score the window, select): a million daily series of 730 points through the naive
# fast pool (four baselines, 2 windows and the forecast: 3 fits) took 2.6 ms of CPU per series
# in the forecast stage (bench/RESULTS.md, 2026-11-26), about 0.5 ms of it in the models.
PLATFORM_S = 0.0007
# How far back a series' volume is measured when ranking series for the full tier.
VOLUME_POINTS = 168


@dataclass(frozen=True)
class TierPlan:
    """What a run decided, recorded with it."""

    tier: str
    full_share: float
    series: int
    full_series_estimate: int
    estimated_full_s: float
    estimated_fast_s: float
    estimated_s: float
    budget_s: float | None
    workers: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def fit_cost_s(models: list[str], points: float) -> float:
    """Estimated CPU seconds to fit and forecast ``models`` on one series of ``points`` points."""
    scale = max(points, 1.0) / REFERENCE_POINTS
    return sum(COST_S.get(m, DEFAULT_COST_S) for m in models) * scale


def plan(cfg: PipelineConfig, series: int, points: float) -> TierPlan:
    """Decide the share of series given the full tier (``points``: mean points per series)."""
    models = cfg.models
    workers = cfg.forecast.workers or os.cpu_count() or 1
    fits = cfg.backtest.windows + 1  # each backtest window, then the forecast itself
    per_full = (fit_cost_s(models.candidates, points) + PLATFORM_S) * fits / workers
    per_fast = (fit_cost_s(models.fast_candidates, points) + PLATFORM_S) * fits / workers
    full_s, fast_s = series * per_full, series * per_fast
    budget = pd.Timedelta(models.time_budget).total_seconds() if models.time_budget else None
    if models.tier == FULL:
        share = 1.0
    elif models.tier == FAST:
        share = 0.0
    elif models.full_share is not None:
        share = models.full_share
    else:
        assert budget is not None  # the configuration requires one or the other
        extra = per_full - per_fast
        share = 1.0 if extra <= 0 else (budget - fast_s) / (series * extra) if series else 1.0
        share = min(1.0, max(0.0, share))
    full_series = math.ceil(share * series)
    return TierPlan(
        tier=models.tier,
        full_share=share,
        series=series,
        full_series_estimate=full_series,
        estimated_full_s=round(full_s, 1),
        estimated_fast_s=round(fast_s, 1),
        estimated_s=round(full_series * per_full + (series - full_series) * per_fast, 1),
        budget_s=budget,
        workers=workers,
    )


def applied(cfg: PipelineConfig, decided: TierPlan) -> PipelineConfig:
    """The configuration each partition runs with: the plan's share written into it."""
    models = cfg.models.model_copy(update={"full_share": decided.full_share})
    return cfg.model_copy(update={"models": models})


def _fast(cfg: PipelineConfig) -> PipelineConfig:
    models = cfg.models.model_copy(update={"candidates": list(cfg.models.fast_candidates)})
    return cfg.model_copy(update={"models": models})


def split(
    history: pd.DataFrame, cfg: PipelineConfig
) -> list[tuple[str, PipelineConfig, pd.DataFrame]]:
    """One partition's series by tier: ``(tier, configuration, history)``, non-empty only.

    With ``auto``, the partition's largest series (mean absolute value over their last
    VOLUME_POINTS points; ties by id) get the full tier, in the planned share.
    """
    models = cfg.models
    if models.tier == FULL:
        return [(FULL, cfg, history)]
    share = (
        0.0
        if models.tier == FAST
        else (models.full_share if models.full_share is not None else 1.0)
    )
    ids = history["unique_id"].drop_duplicates()
    take = math.ceil(share * len(ids))
    if take >= len(ids):
        return [(FULL, cfg, history)]
    if take <= 0:
        return [(FAST, _fast(cfg), history)]
    recent = history.groupby("unique_id", sort=False).tail(VOLUME_POINTS)
    volume = recent["y"].abs().groupby(recent["unique_id"]).mean()
    ranked = volume.reset_index().sort_values(["y", "unique_id"], ascending=[False, True])
    chosen = set(ranked["unique_id"].iloc[:take])
    full = history["unique_id"].isin(chosen)
    return [
        (FULL, cfg, history[full].reset_index(drop=True)),
        (FAST, _fast(cfg), history[~full].reset_index(drop=True)),
    ]

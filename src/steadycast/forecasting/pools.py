"""The default candidate pool of each frequency: the models that compete when a pipeline file
names none.

A pool is a few cheap, diverse members, each fitted on a capped recent history, whose
combination beats every one of them alone. Pools are chosen on development data (half of each
benchmark dataset, see bench/accuracy.py) and fixed here, one line per frequency class, so a
release changes them deliberately and the change shows in review. A pipeline that names
``[models] candidates`` keeps its own list; the resolved pool is written into the pipeline's
configuration (and so into every run's recorded config) by ``steadycast.config``.

Frequency classes, by the length of one step:

    hourly    shorter than a day (sub-hourly and hourly data; two seasons such as 24 and 168)
    daily     a day up to a week (daily and business-daily data)
    weekly    a week up to four weeks
    monthly   four weeks or longer (monthly, quarterly, yearly)
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

__all__ = [
    "POOLS",
    "POOL_PARAMS",
    "FrequencyClass",
    "default_candidates",
    "default_params",
    "frequency_class",
]

FrequencyClass = Literal["hourly", "daily", "weekly", "monthly"]

# One line per frequency class. AutoETS fits a season only up to 24 steps (longer seasons fit
# non-seasonally), every statsforecast member is fitted on a capped recent history.
POOLS: Mapping[FrequencyClass, tuple[str, ...]] = {
    # GEFCom2012 zones 1-10 and SGSC's first 25 households (DEV), 3 windows, mean of the top 3:
    # OWA 0.804 at 0.15 CPU-s a series and 0.722 at 0.35. Adding MSTL (on logs) and
    # DynamicOptimizedTheta: 0.802 and 0.733 at 1.0 and 2.9 CPU-s a series; adding
    # DynamicOptimizedTheta alone: 0.783 and 0.748. (Measured with all GEFCom weeks in one
    # partition, where LightGBM saw later weeks; one week at a time, with the partition's
    # pooled check of the combination, the pool scores 0.763 on the same DEV zones.)
    # Tried on the DEV halves of GEFCom2012, SGSC and 500 generated meters (h = 48), against
    # 0.759 / 0.719 / 0.913: SeasonalNaive at the weekly season 0.855 / 0.727 / 0.767; the mean
    # of the top 2 instead of 3, 0.794 / 0.788 / 0.721; FastTheta as a fourth member 0.786 /
    # 0.834 / 0.770. None kept: each loses more on the real data than it gains on the meters.
    "hourly": ("SeasonalNaive", "Card", "LightGBM"),
    "daily": ("SeasonalNaive", "AutoETS", "DynamicOptimizedTheta", "MSTL", "Card", "LightGBM"),
    # M4 Weekly DEV (180 series): OWA 0.720 at 0.29 CPU-s a series; with AutoTheta 0.719 at
    # 0.42. AutoCES doubled the cost (1.15 against 0.59 CPU-s a series on a 30-series DEV
    # sample) and scored worse there (0.814 against 0.782).
    "weekly": ("Naive", "SES", "SeasonalNaive", "AutoETS", "DynamicOptimizedTheta", "MSTL"),
    "monthly": (
        "Naive",
        "SES",
        "SeasonalNaive",
        "AutoETS",
        "AutoCES",
        "DynamicOptimizedTheta",
        "AutoTheta",
    ),
}

# Parameters a pool gives its members (a pipeline's own ``[models.params]`` win, key by key).
# Hourly load and meter data are multiplicative: MSTL is fitted on logs there.
# (None today: MSTL on logs left the hourly pool, see above.)
POOL_PARAMS: Mapping[FrequencyClass, Mapping[str, Mapping[str, Any]]] = {
    "hourly": {},
    "daily": {},
    "weekly": {},
    "monthly": {},
}

# Members that only repeat another member (or cannot fit) when the data has no season.
_SEASONAL_ONLY = frozenset({"SeasonalNaive", "MSTL"})
# What a pool without its seasonal members still needs: a level to fall back on.
_NON_SEASONAL_FLOOR = ("Naive", "SES")

_DAY_NS = 86_400 * 10**9


def step_days(frequency: str) -> float:
    """The typical length of one step of a pandas offset alias, in days."""
    import pandas as pd  # loaded on first use: ``import steadycast.config`` stays light

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Three stamps from a Monday: anchored offsets (W-SUN, MS, B) show their usual step.
        stamps = pd.date_range("2001-01-01", periods=3, freq=frequency)
    return float((stamps[2] - stamps[1]).value) / _DAY_NS


def frequency_class(frequency: str) -> FrequencyClass:
    """Which pool a pipeline of this frequency gets (see the module docstring)."""
    days = step_days(frequency)
    if days < 1:
        return "hourly"
    if days < 7:
        return "daily"
    if days < 28:
        return "weekly"
    return "monthly"


def _seasonal(season_lengths: Sequence[int]) -> bool:
    return any(s > 1 for s in season_lengths)


def default_candidates(frequency: str, season_lengths: Sequence[int]) -> list[str]:
    """The candidates of a pipeline whose file names none: its frequency class's pool, without
    the seasonal-only members when the pipeline declares no season longer than one step."""
    pool = list(POOLS[frequency_class(frequency)])
    if _seasonal(season_lengths):
        return pool
    kept = [name for name in pool if name not in _SEASONAL_ONLY]
    return [*(n for n in _NON_SEASONAL_FLOOR if n not in kept), *kept]


def default_params(frequency: str, season_lengths: Sequence[int]) -> dict[str, dict[str, Any]]:
    """The parameters the default pool gives its members, for the members it keeps."""
    members = set(default_candidates(frequency, season_lengths))
    given = POOL_PARAMS[frequency_class(frequency)]
    return {name: dict(params) for name, params in given.items() if name in members}

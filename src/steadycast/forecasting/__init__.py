"""Forecasting: from a partition's history to its forecasts, one step per module.

The modules follow a partition of series through the forecast stage:

    prepare.py     regularize: every series on a regular grid at the pipeline's frequency
    pools.py       the default candidate pool of each frequency (when a pipeline names none)
    tiers.py       the fast and full model tiers, and which series each one gets
    profile.py     profile_series and route: what each series is, which models may take it
    covariates.py  future-known covariates joined to the series, the frames covariate models get
    backtest.py    rolling-origin backtest of the routed models, every score kept
    metrics.py     MASE, sMAPE, RMSSE and coverage, on frames and on arrays (same bits)
    selection.py   select: the model or ensemble per series from its scores, and why
    intervals.py   calibrated bounds: pooled conformal quantiles of scaled backtest errors
    forecast.py    forecast_partition and run_partition: fit, validate, walk the fallback chain
    _segments.py   series laid end to end in sorted arrays, and reductions that keep pandas' bits

Importing this package loads none of its modules: callers import the module they need
(``from steadycast.forecasting import tiers``).
"""

__all__ = [
    "backtest",
    "covariates",
    "forecast",
    "intervals",
    "metrics",
    "pools",
    "prepare",
    "profile",
    "selection",
    "tiers",
]

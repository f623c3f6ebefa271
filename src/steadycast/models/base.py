"""The model contract: a small Protocol with frames in and frames out.

A model receives the history of a batch of series in long format (``unique_id, ds, y``, sorted by
id then time, no missing values, regular at the task's frequency) and returns one row per series
and step: ``unique_id, ds, yhat`` and, when it declares intervals, ``yhat_lo_L, yhat_hi_L`` for
each requested level L. The platform validates what comes back; the model only computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar, Protocol, runtime_checkable

import pandas as pd


@dataclass(frozen=True)
class Capabilities:
    """What a model declares about itself, so the platform never probes with ``hasattr``."""

    intervals: bool = False
    min_history: int = 1  # points of history a series needs
    handles_zeros: bool = True  # all-zero or mostly-zero series
    intermittent: bool = False  # designed for intermittent demand
    global_model: bool = False  # learns across series (fit once per batch)
    cost: str = "fast"  # "fast" or "full": the tier it belongs to
    # Has ``cross_validation(history, task, windows, step)``: the backtest calls it once for
    # all windows instead of ``forecast`` once per window (one fit instead of one per window).
    backtests_itself: bool = False
    # Fast enough that all backtest windows fit one job: the backtest sends the history once
    # and the worker refits the model at each origin (``refit_per_window``), instead of one job
    # (and one copy of the history) per window. The answers are the same.
    windows_in_one_call: bool = False
    exogenous: bool = False  # takes future-known covariates (docs/covariates.md)


@dataclass(frozen=True)
class ForecastTask:
    """What to forecast: the same for every series of a pipeline."""

    horizon: int
    frequency: str
    season_length: int = 1
    season_lengths: tuple[int, ...] = ()
    levels: tuple[int, ...] = field(default_factory=tuple)
    covariates: tuple[str, ...] = ()  # covariate columns after ``y`` (exogenous models)


@runtime_checkable
class ForecastModel(Protocol):
    """A forecasting model, built-in or plugged in through the ``steadycast.models`` entry points."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        """Fit on ``history`` and return ``task.horizon`` rows per series."""
        ...


@dataclass(frozen=True)
class BacktestTask(ForecastTask):
    """A whole backtest in one job: the last ``windows`` origins, ``step`` points apart, each
    forecast ``horizon`` steps ahead (see :func:`answer`)."""

    windows: int = 1
    step: int = 1

    def forecast_task(self) -> ForecastTask:
        """The same task without the backtest fields, as ``forecast`` takes it."""
        names = [f.name for f in fields(ForecastTask)]
        return ForecastTask(**{name: getattr(self, name) for name in names})


def answer(model: ForecastModel, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
    """Run one model job: ``forecast``, or a whole backtest for a :class:`BacktestTask`.

    A model that declares ``backtests_itself`` runs the backtest through its
    ``cross_validation(history, task, windows, step)``; any other model is refitted at each
    origin (:func:`refit_per_window`). Either way the answer is ``unique_id, ds, cutoff, yhat``
    (and bounds): one block of ``horizon`` rows per series and origin, ``cutoff`` being the last
    time the forecast saw.
    """
    if not isinstance(task, BacktestTask):
        return model.forecast(history, task)
    if not model.capabilities.backtests_itself:
        return refit_per_window(model, history, task)
    cross_validation = getattr(model, "cross_validation", None)
    if cross_validation is None:
        raise TypeError(
            f"model {model.name!r} declares backtests_itself but has no cross_validation"
        )
    out: pd.DataFrame = cross_validation(history, task.forecast_task(), task.windows, task.step)
    return out


def refit_per_window(
    model: ForecastModel, history: pd.DataFrame, task: BacktestTask
) -> pd.DataFrame:
    """A backtest from one history, for a model that fits per series: at each origin, the
    ``forecast`` of each series' points before it, named by its cutoff. The answers are those
    of one call per window; only the history travels once instead of once per window.

    ``history`` holds each series' points in time order (as the backtest sends them)."""
    plain = task.forecast_task()
    from_end = history.groupby("unique_id", sort=False, observed=True).cumcount(ascending=False)
    from_end = from_end.to_numpy()
    answers = []
    for window in range(task.windows):
        seen = history[from_end >= task.horizon + window * task.step].reset_index(drop=True)
        out = model.forecast(seen, plain)
        cutoffs = seen.groupby("unique_id", sort=False, observed=True)["ds"].max()
        answers.append(out.assign(cutoff=out["unique_id"].map(cutoffs)))
    return pd.concat(answers, ignore_index=True)

"""The built-in global model: LightGBM through mlforecast, one model across the series of a batch.

A global model learns one function across all the series of a batch, which is what makes it
scale where a per-series auto model cannot (figures in the benchmarks). The features follow
mlforecast's own M4 experiments, cut to a compact set so that a partition trains in seconds on
one thread. For main season m and longest season L (hourly data: 24 and 168):

- **first differences when the data has no season up to ``MAX_SEASON_KEPT``** (weekly data,
  whose yearly season is 52 points, or no season at all; ``Differences([1])``): the trees then
  learn the change rather than a level they cannot extrapolate. Data with a shorter season
  (hourly, half-hourly, daily) is learnt on its level: the seasonal lags carry it, and
  differencing noisy loads adds noise (figures at :func:`difference_lag`). Only for series of
  at least ``DIFFERENCE_CYCLES`` points;
- **lags** the multiples of m up to L, and 2L (hourly: 24, 48, ..., 168, 336), and 1, 2, 3 for
  differenced data (weekly with season 52: 1, 2, 3, 52, 104); short lags on hourly data with a
  horizon of days only feed the recursion its own errors. A lag is used for a series only when
  the series is at least twice as long as the lag (after differencing), so that most of its
  rows train the model;
- **a rolling mean** over L at the smallest lag (the recent level);
- **calendar features** follow the frequency: minute and hour below an hour, hour and weekday
  below a day, weekday and month for daily data, month above that;
- **a local standard scaler** after differencing, so series of very different levels share one
  model;
- **trees**: 300 of up to 63 leaves at learning rate 0.05, 80% of the features per tree;
  ``num_threads=1`` and ``verbosity=-1``: the platform parallelises across processes, and
  LightGBM's OpenMP threads spin when processes already fill the cores.

Series are grouped by the features their length allows (lags, differencing, intervals); each
group gets its own model. A batch of equal-length series (the usual case) is one model.

**Backtest without refitting**: ``cross_validation`` fits once on the history before the oldest
window and predicts every window from that fit (mlforecast's ``refit=False``), so a backtest
of k windows costs one fit, not k. ``capabilities.backtests_itself`` tells the backtest to call
it.

**Covariates** (``capabilities.exogenous``; docs/covariates.md): with covariate columns in the
task, each is one more feature at its own time (mlforecast's dynamic exogenous features), known
for the history and handed over for the horizon (``X_df``); in the backtest the recorded values
of each window's times are used. Without covariates the model is what it always was.

With covariates the backtest gives point forecasts only (see :meth:`LightGBM.cross_validation`).

**Intervals** are mlforecast's conformal intervals (``interval_windows`` calibration windows of
one horizon, scored without refitting). Calibration needs history before those windows that
itself passes the lag rule (``windows * horizon + 2 * max lag`` points, plus the points
differencing takes); a shorter series gets point forecasts only: ``capabilities.intervals`` is
True, but intervals are returned only where the history allows, and the platform fills the rest
(see ``validate_forecast``).

Parameters: ``lags`` (list of positive ints), ``differences`` (list of lags to difference
at, ``[]`` for none), ``date_features`` (names of ``ds`` attributes), ``interval_windows``
(calibration windows, >= 2), ``max_history`` (newest points trained on; 0, the default: 12
longest seasons, at least 1,000 points); everything else goes to ``LGBMRegressor`` unchanged (LightGBM has
hundreds of parameters and aliases; it ignores unknown ones).

``min_history`` is ``MIN_HISTORY`` (300) points: on shorter series (M4 Weekly has many) the
trees see too few rows of their own and lose to the per-series models, so routing leaves them
out. ``forecast`` itself still answers for any length (lags shrink to what the series allows).
``mlforecast`` and ``lightgbm`` are imported on first use.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import pandas as pd

from steadycast.errors import ConfigError
from steadycast.models.base import Capabilities, ForecastTask
from steadycast.models.statistical import seasons_of

_DEFAULTS: dict[str, Any] = {
    "n_estimators": 300,
    "learning_rate": 0.05,
    "num_leaves": 63,
    "min_child_samples": 20,
    "feature_fraction": 0.8,
    "num_threads": 1,
    "verbosity": -1,
}
#: Keys that are not LightGBM parameters but shape the features or the intervals.
_OWN_PARAMS = frozenset({"lags", "differences", "date_features", "interval_windows", "max_history"})
#: Newest points trained on by default: ``HISTORY_SEASONS`` longest seasons, at least
#: ``HISTORY_FLOOR``. The pool was tuned on 12 weeks of hourly load (GEFCom2012 DEV); with
#: temperatures a year of history cost twice the CPU for OWA 0.624 against 0.637.
HISTORY_SEASONS = 12
HISTORY_FLOOR = 1_000
#: Points a series needs before it is differenced.
DIFFERENCE_CYCLES = 3
#: Longest main season learnt on the level; data without such a season is differenced once.
MAX_SEASON_KEPT = 48
#: Points of history below which LightGBM is not offered. M4 Weekly DEV, LightGBM alone
#: against Naive2 (OWA) by length: 1.14 up to 150 points (33 series; AutoTheta 0.99), 0.95-0.99
#: from 300 to 800, 0.68 above 800 (110 series; AutoTheta 0.78).
MIN_HISTORY = 300


def date_features_for(frequency: str) -> list[str]:
    """Calendar attributes of ``ds`` worth learning from at ``frequency``."""
    offset = pd.tseries.frequencies.to_offset(frequency)
    start = pd.Timestamp("2024-01-01")
    step = (start + 2 * offset) - (start + offset)
    if step < pd.Timedelta(hours=1):
        return ["minute", "hour", "dayofweek"]
    if step < pd.Timedelta(days=1):
        return ["hour", "dayofweek"]
    if step < pd.Timedelta(days=7):
        return ["dayofweek", "month"]
    if step < pd.Timedelta(days=360):
        return ["month"]
    return []


def candidate_lags(task: ForecastTask) -> list[int]:
    """The multiples of the main season up to the longest, and twice the longest; and 1, 2, 3
    when the target is not differenced at a season (see :func:`difference_lag`)."""
    seasons = seasons_of(task)
    lags: set[int] = set()
    if seasons:
        main, longest = seasons[0], max(seasons)
        lags.update(range(main, longest + 1, main))
        lags.update((longest, 2 * longest))
    if difference_lag(task):
        lags.update((1, 2, 3))
    return sorted(lags)


def difference_lag(task: ForecastTask) -> int:
    """1 (first differences) unless the data has a season up to ``MAX_SEASON_KEPT``; else 0.

    Measured on development halves, LightGBM alone, OWA against Naive2: M4 Weekly 1.24 on the
    level, 1.16 differenced at 52 (the 52-week year drifts a day a year), 0.81 at 1; GEFCom2012
    hourly 0.74 on the level, 0.77 differenced at 24; SGSC half-hourly 0.91 on the level, 1.11
    differenced at 48.
    """
    seasons = seasons_of(task)
    return 0 if seasons and seasons[0] <= MAX_SEASON_KEPT else 1


@dataclass(frozen=True)
class _Plan:
    """The features a group of series gets: what their length allows."""

    lags: tuple[int, ...]
    differences: tuple[int, ...]
    rolling: tuple[tuple[int, int], ...]  # (lag, window) of each rolling mean
    intervals: bool


class LightGBM:
    """Gradient-boosted trees over lags, rolling means and calendar features, one model per
    batch."""

    name: ClassVar[str] = "LightGBM"
    capabilities: ClassVar[Capabilities] = Capabilities(
        intervals=True,
        min_history=MIN_HISTORY,
        global_model=True,
        cost="full",
        backtests_itself=True,
        exogenous=True,
    )

    def __init__(self, **params: Any) -> None:
        for key in ("lags", "differences"):
            value = params.get(key)
            if value is not None and (
                not isinstance(value, list | tuple)
                or not all(isinstance(x, int) and x > 0 for x in value)
            ):
                raise ConfigError(
                    f"model 'LightGBM': {key} must be a list of positive integers, not {value!r}"
                )
        max_history = params.get("max_history", 0)
        if not isinstance(max_history, int) or isinstance(max_history, bool) or max_history < 0:
            raise ConfigError(
                "model 'LightGBM': max_history must be an integer >= 0 (0: "
                f"{HISTORY_SEASONS} longest seasons, at least {HISTORY_FLOOR} points), "
                f"not {max_history!r}"
            )
        self.max_history = max_history
        windows = params.get("interval_windows", 2)
        if not isinstance(windows, int) or windows < 2:
            raise ConfigError(
                f"model 'LightGBM': interval_windows must be an integer >= 2, not {windows!r}"
            )
        lags = params.get("lags")
        differences = params.get("differences")
        self.lags: list[int] | None = sorted(set(lags)) if lags is not None else None
        self.differences: list[int] | None = (
            sorted(set(differences)) if differences is not None else None
        )
        self.date_features: list[str] | None = params.get("date_features")
        self.interval_windows = windows
        self.lgb_params = {**_DEFAULTS, **{k: v for k, v in params.items() if k not in _OWN_PARAMS}}
        # Whatever the user passes, more than one thread spins on small machines.
        self.lgb_params["num_threads"] = 1

    def _plan(self, n: int, task: ForecastTask) -> _Plan:
        """Features for a series with ``n`` points to train on (before any held-out part)."""
        seasons = seasons_of(task)
        if self.differences is not None:
            differences = tuple(d for d in self.differences if n >= DIFFERENCE_CYCLES * d)
        else:
            lag = difference_lag(task)
            differences = (lag,) if lag and n >= DIFFERENCE_CYCLES * lag else ()
        usable = n - sum(differences)
        lags = self.lags if self.lags is not None else candidate_lags(task)
        kept = tuple(lag for lag in lags if usable >= 2 * lag) or (1,)
        rolling: list[tuple[int, int]] = []
        if self.lags is None:
            # Rolling means at the smallest lag: the recent level of the (differenced) target.
            first = kept[0]
            span = max(seasons, default=1)
            rolling = [(first, span)] if span > 1 and usable >= 2 * (first + span) else []
        longest_need = max([*kept, *(lag + w for lag, w in rolling)])
        spare = n - sum(differences) - self.interval_windows * task.horizon
        intervals = bool(task.levels) and spare >= 2 * longest_need
        return _Plan(kept, differences, tuple(rolling), intervals)

    def _kept(self, task: ForecastTask) -> int:
        """How many of each series' newest points it trains on."""
        if self.max_history:
            return self.max_history
        return max(HISTORY_FLOOR, HISTORY_SEASONS * max(seasons_of(task), default=1))

    def _recent(self, history: pd.DataFrame, task: ForecastTask, extra: int) -> pd.DataFrame:
        """Each series' newest ``_kept`` points (and ``extra`` more: held-out windows)."""
        keep = self._kept(task) + extra
        age = history.groupby("unique_id", sort=False, observed=True).cumcount(ascending=False)
        return history if bool((age < keep).all()) else history[age.to_numpy() < keep]

    def _groups(
        self, lengths: pd.Series, task: ForecastTask, held_out: int
    ) -> dict[_Plan, list[Any]]:
        """Series ids grouped by the plan their training length allows."""
        groups: dict[_Plan, list[Any]] = {}
        plans: dict[int, _Plan] = {}
        for uid, n in lengths.items():
            size = int(n) - held_out
            plan = plans.get(size)
            if plan is None:
                plan = plans[size] = self._plan(size, task)
            groups.setdefault(plan, []).append(uid)
        return groups

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        covariates = _covariates(history, task)
        history = history[["unique_id", "ds", "y", *covariates]]
        future = None
        if covariates:  # the horizon's rows come after each series' history, y empty
            known = history["y"].notna()
            future = history.loc[~known, ["unique_id", "ds", *covariates]]
            history = history.loc[known]
        history = self._recent(history, task, 0)
        lengths = history.groupby("unique_id", sort=False, observed=True).size()
        groups = self._groups(lengths, task, held_out=0)
        frames = []
        for plan, ids in groups.items():
            part = history if len(groups) == 1 else history[history["unique_id"].isin(ids)]
            known_future = (
                future
                if future is None or len(groups) == 1
                else future[future["unique_id"].isin(ids)]
            )
            engine = self._engine(plan, task)
            with warnings.catch_warnings():
                # mlforecast warns about rows dropped for lags; the plan already decides which
                # series are long enough for which lags.
                warnings.simplefilter("ignore")
                engine.fit(
                    part, static_features=[], prediction_intervals=self._intervals(plan, task)
                )
                out = engine.predict(
                    task.horizon,
                    level=list(task.levels) if plan.intervals else None,
                    X_df=known_future,
                )
            frames.append(_tidy(out))
        return pd.concat(frames, ignore_index=True)

    def cross_validation(
        self, history: pd.DataFrame, task: ForecastTask, windows: int, step: int
    ) -> pd.DataFrame:
        """Forecasts at the last ``windows`` origins, ``step`` apart, from one fit per group.

        Returns ``unique_id, ds, cutoff, yhat`` (and bounds where calibrated): one block of
        ``task.horizon`` rows per series and origin, every series having all the windows.
        """
        covariates = _covariates(history, task)
        history = history[["unique_id", "ds", "y", *covariates]]
        held_out = task.horizon + (windows - 1) * step
        history = self._recent(history, task, held_out)
        lengths = history.groupby("unique_id", sort=False, observed=True).size()
        groups = self._groups(lengths, task, held_out=held_out)
        frames = []
        for plan, ids in groups.items():
            part = history if len(groups) == 1 else history[history["unique_id"].isin(ids)]
            engine = self._engine(plan, task)
            if covariates:
                # mlforecast 1.1 calibrates the later windows of a backtest without refitting
                # on a frozen backtest that has no covariates: point forecasts only (the
                # platform's intervals come from the backtest errors).
                plan = replace(plan, intervals=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = engine.cross_validation(
                    part,
                    n_windows=windows,
                    h=task.horizon,
                    step_size=step,
                    static_features=[],
                    refit=False,
                    prediction_intervals=self._intervals(plan, task),
                    level=list(task.levels) if plan.intervals else None,
                    validate_data=False,
                )
            frames.append(_recentred(_tidy(out.drop(columns="y")), task.levels))
        return pd.concat(frames, ignore_index=True)

    def _intervals(self, plan: _Plan, task: ForecastTask) -> Any:
        from mlforecast.utils import PredictionIntervals

        if not plan.intervals:
            return None
        return PredictionIntervals(n_windows=self.interval_windows, h=task.horizon)

    def _engine(self, plan: _Plan, task: ForecastTask) -> Any:
        import lightgbm
        from mlforecast import MLForecast
        from mlforecast.lag_transforms import RollingMean
        from mlforecast.target_transforms import Differences, LocalStandardScaler

        transforms: list[Any] = [Differences(list(plan.differences))] if plan.differences else []
        transforms.append(LocalStandardScaler())
        rolling: dict[int, list[Any]] = {}
        for lag, window in plan.rolling:
            rolling.setdefault(lag, []).append(RollingMean(window_size=window))
        features = self.date_features
        return MLForecast(
            models={"yhat": lightgbm.LGBMRegressor(**self.lgb_params)},
            freq=task.frequency,
            lags=list(plan.lags),
            lag_transforms=rolling or None,
            date_features=date_features_for(task.frequency) if features is None else features,
            target_transforms=transforms,
        )


def _covariates(history: pd.DataFrame, task: ForecastTask) -> list[str]:
    """The task's covariate columns the frame holds (none without covariates)."""
    return [c for c in task.covariates if c in history.columns]


def _recentred(out: pd.DataFrame, levels: tuple[int, ...]) -> pd.DataFrame:
    """Conformal bounds centred on each window's own forecast.

    Without refitting, mlforecast 1.1 centres the bounds of every window after the first on
    the first window's forecasts (the bounds may then exclude the forecast). Its conformal
    intervals are symmetric, so their half-width is right; only the centre is moved.
    """
    for level in levels:
        lo, hi = f"yhat_lo_{level}", f"yhat_hi_{level}"
        if lo in out.columns and hi in out.columns:
            half = (out[hi] - out[lo]) / 2
            out[lo], out[hi] = out["yhat"] - half, out["yhat"] + half
    return out


def _tidy(out: pd.DataFrame) -> pd.DataFrame:
    """mlforecast's columns in the platform's names (``yhat-lo-80`` -> ``yhat_lo_80``)."""
    out = out.rename(columns=lambda c: str(c).replace("-lo-", "_lo_").replace("-hi-", "_hi_"))
    out["unique_id"] = out["unique_id"].astype(str)
    return out.reset_index(drop=True)

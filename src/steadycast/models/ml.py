"""The built-in global model: LightGBM over lags and calendar features, through mlforecast.

A global model learns one function across all the series of a batch, which is what makes it
scale where a per-series auto model cannot (figures in the benchmarks). Choices, and why:

- **lags** 1, each season and twice the main season (for hourly data with seasons 24 and 168:
  1, 24, 48, 168, 336). A lag is used for a series only when the series is at least twice as
  long as the lag, so that most of its rows train the model; series are grouped by the lags
  their length allows and each group gets its own model. A batch of equal-length series (the
  usual case) is one model;
- **calendar features** follow the frequency: minute and hour below an hour, hour and weekday
  below a day, weekday and month for daily data, month above that;
- **a local standard scaler** on the target, so series of very different levels share one model;
- ``num_threads=1`` and ``verbosity=-1``: the platform parallelises across processes, and
  LightGBM's OpenMP threads spin when processes already fill the cores;
- **intervals** are mlforecast's conformal intervals (two calibration windows of one horizon).
  Calibration fits the model on the history without those windows, so that shorter history must
  itself pass the lag rule above (``windows * horizon + 2 * max lag`` points; with fewer, every
  calibration row is dropped for its lags and LightGBM refuses the empty frame). A shorter series
  gets point forecasts only: ``capabilities.intervals`` is True, but intervals are returned only
  where the history allows, and the platform fills the rest (see ``validate_forecast``). This
  matters most right after a level shift cuts the training window: the backtest then fits on too
  few points to calibrate, and the final fit, a horizon longer, must not take a path it cannot
  finish.

Parameters: ``lags`` (list of positive ints), ``date_features`` (names of ``ds`` attributes),
``interval_windows`` (calibration windows, >= 2); everything else goes to ``LGBMRegressor``
unchanged (LightGBM has hundreds of parameters and aliases; it ignores unknown ones).

``min_history`` is 2: lag 1 needs one earlier point to produce a training row. With very few
rows the trees cannot split and the forecast is the series' scaled mean, which is honest.
``mlforecast`` and ``lightgbm`` are imported on first use.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import pandas as pd

from steadycast.errors import ConfigError
from steadycast.models.base import Capabilities, ForecastTask
from steadycast.models.statistical import seasons_of

_DEFAULTS: dict[str, Any] = {
    "n_estimators": 100,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "num_threads": 1,
    "verbosity": -1,
}
#: Keys that are not LightGBM parameters but shape the features or the intervals.
_OWN_PARAMS = frozenset({"lags", "date_features", "interval_windows"})


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
    """1, every season, and twice the main season."""
    seasons = seasons_of(task)
    lags = {1, *seasons}
    if seasons:
        lags.add(2 * seasons[0])
    return sorted(lags)


class LightGBM:
    """Gradient-boosted trees over lags and calendar features, one model per batch."""

    name: ClassVar[str] = "LightGBM"
    capabilities: ClassVar[Capabilities] = Capabilities(
        intervals=True, min_history=2, global_model=True, cost="full"
    )

    def __init__(self, **params: Any) -> None:
        lags = params.get("lags")
        if lags is not None and (
            not isinstance(lags, list | tuple)
            or not all(isinstance(x, int) and x > 0 for x in lags)
        ):
            raise ConfigError(
                f"model 'LightGBM': lags must be a list of positive integers, not {lags!r}"
            )
        windows = params.get("interval_windows", 2)
        if not isinstance(windows, int) or windows < 2:
            raise ConfigError(
                f"model 'LightGBM': interval_windows must be an integer >= 2, not {windows!r}"
            )
        self.lags: list[int] | None = sorted(set(lags)) if lags is not None else None
        self.date_features: list[str] | None = params.get("date_features")
        self.interval_windows = windows
        self.lgb_params = {**_DEFAULTS, **{k: v for k, v in params.items() if k not in _OWN_PARAMS}}
        # Whatever the user passes, more than one thread spins on small machines.
        self.lgb_params["num_threads"] = 1

    def _lags_for(self, n: int, task: ForecastTask) -> tuple[int, ...]:
        lags = self.lags if self.lags is not None else candidate_lags(task)
        usable = tuple(lag for lag in lags if n >= 2 * lag)
        return usable or (1,)

    def _can_calibrate(self, n: int, lags: tuple[int, ...], task: ForecastTask) -> bool:
        """Whether the history left before the calibration windows trains with ``lags``."""
        calibration = n - self.interval_windows * task.horizon
        return bool(task.levels) and calibration >= 2 * max(lags)

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        history = history[["unique_id", "ds", "y"]]
        lengths = history.groupby("unique_id", sort=False, observed=True).size()
        groups: dict[tuple[tuple[int, ...], bool], list[Any]] = {}
        for uid, n in lengths.items():
            lags = self._lags_for(int(n), task)
            with_intervals = self._can_calibrate(int(n), lags, task)
            groups.setdefault((lags, with_intervals), []).append(uid)
        frames = []
        for (lags, with_intervals), ids in groups.items():
            part = history if len(groups) == 1 else history[history["unique_id"].isin(ids)]
            frames.append(self._fit_predict(part, task, lags, with_intervals))
        return pd.concat(frames, ignore_index=True)

    def _fit_predict(
        self, part: pd.DataFrame, task: ForecastTask, lags: tuple[int, ...], with_intervals: bool
    ) -> pd.DataFrame:
        import lightgbm
        from mlforecast import MLForecast
        from mlforecast.target_transforms import LocalStandardScaler
        from mlforecast.utils import PredictionIntervals

        features = self.date_features
        engine = MLForecast(
            models={"yhat": lightgbm.LGBMRegressor(**self.lgb_params)},
            freq=task.frequency,
            lags=list(lags),
            date_features=date_features_for(task.frequency) if features is None else features,
            target_transforms=[LocalStandardScaler()],
        )
        intervals = (
            PredictionIntervals(n_windows=self.interval_windows, h=task.horizon)
            if with_intervals
            else None
        )
        with warnings.catch_warnings():
            # mlforecast warns about rows dropped for lags; min_history and the grouping above
            # already decide which series are long enough for which lags.
            warnings.simplefilter("ignore")
            engine.fit(part, static_features=[], prediction_intervals=intervals)
            out = engine.predict(task.horizon, level=list(task.levels) if with_intervals else None)
        out = out.rename(columns=lambda c: str(c).replace("-lo-", "_lo_").replace("-hi-", "_hi_"))
        out["unique_id"] = out["unique_id"].astype(str)
        return out.reset_index(drop=True)

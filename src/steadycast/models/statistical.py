"""Built-in statistical models: thin wrappers around statsforecast, one class per model.

Every class here is a few lines on top of ``StatsForecastModel``, which owns what the platform
needs from every local model and statsforecast does not do for us:

- **parameters are checked at construction**, against the statsforecast signature, so a typo in a
  pipeline file fails as a ``ConfigError`` before any series is fitted;
- **seasonality degrades per series**: a season is kept only when a series has ``_min_cycles``
  full cycles of it; shorter series are fitted without it (statsforecast would otherwise return
  NaN, as SeasonalNaive does below one season, or fit a season it cannot estimate). Series are
  grouped by the plan their length allows, so a batch of equal-length series is one call;
- **one failing series does not sink the batch**: when statsforecast raises on a group, the
  group is retried series by series and the series that still fail are left out of the output,
  where ``validate_forecast`` reports them and the platform walks its fallback chain. If no
  series of the batch can be fitted (say, all shorter than ``min_history``), ``forecast`` raises
  ``ModelError`` naming the model and the library's complaint;
- **flat histories get flat intervals**: a constant series has no residual spread, and some
  models (MSTL) return NaN bounds for it; we set its bounds to the point forecast;
- library warnings (convergence notes, numpy runtime warnings) are silenced inside the fit: the
  platform judges a model by its validated output and its backtest score, not by its chatter.

``statsforecast`` is imported on first use, so listing models (``steadycast models``) stays fast.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from steadycast.errors import ConfigError, ModelError
from steadycast.models.base import Capabilities, ForecastTask

#: Parameters the wrapper sets itself (from the task, or to name the output column).
_CONTROLLED = frozenset({"alias", "season_length", "prediction_intervals"})

_FAST_POINT = Capabilities(intervals=False, min_history=1, cost="fast")
_FAST_INTERVALS = Capabilities(intervals=True, min_history=1, cost="fast")


def _statsforecast_class(name: str) -> type:
    import statsforecast.models

    cls: type = getattr(statsforecast.models, name)
    return cls


def seasons_of(task: ForecastTask) -> tuple[int, ...]:
    """The task's seasonal periods above 1, main season first."""
    listed = task.season_lengths or (task.season_length,)
    ordered = (task.season_length, *listed) if task.season_length > 1 else listed
    return tuple(dict.fromkeys(s for s in ordered if s > 1))


def fitting_seasons(n: int, task: ForecastTask, min_cycles: int) -> tuple[int, ...]:
    """Seasons of ``task`` that a series of ``n`` points covers at least ``min_cycles`` times."""
    return tuple(s for s in seasons_of(task) if n >= min_cycles * s)


class StatsForecastModel:
    """One statsforecast model behind the steadycast ``ForecastModel`` contract.

    Subclasses set ``name``, ``capabilities`` and ``_sf_name`` and, when seasonality or a window
    matters, override ``_plan`` (what a series of ``n`` points allows, hashable so series can be
    grouped) and ``_build`` (the statsforecast model for that plan).
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    _sf_name: ClassVar[str]
    _min_cycles: ClassVar[int] = 2
    _defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = {**self._defaults, **params}
        self._check_params(params)

    def _accepted_params(self) -> set[str]:
        signature = inspect.signature(_statsforecast_class(self._sf_name))
        return set(signature.parameters) - {"self"} - _CONTROLLED

    def _check_params(self, params: Mapping[str, Any]) -> None:
        accepted = self._accepted_params()
        unknown = sorted(set(params) - accepted)
        if unknown:
            allowed = ", ".join(sorted(accepted)) or "none"
            raise ConfigError(
                f"model {self.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                f"it accepts: {allowed}"
            )

    # -- hooks ---------------------------------------------------------------------------------

    def _plan(self, n: int, task: ForecastTask) -> Hashable:
        """What a series of ``n`` points allows; the default is the seasons it covers."""
        return fitting_seasons(n, task, self._min_cycles)

    def _build(self, plan: Any) -> Any:
        """The statsforecast model for ``plan``; the default ignores seasonality."""
        return _statsforecast_class(self._sf_name)(**self.params, alias="yhat")

    # -- the contract --------------------------------------------------------------------------

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        history = history[["unique_id", "ds", "y"]]
        lengths = history.groupby("unique_id", sort=False, observed=True).size()
        groups: dict[Hashable, list[Any]] = {}
        for uid, n in lengths.items():
            groups.setdefault(self._plan(int(n), task), []).append(uid)
        frames: list[pd.DataFrame] = []
        errors: list[Exception] = []
        for plan, ids in groups.items():
            part = history if len(groups) == 1 else history[history["unique_id"].isin(ids)]
            frames += self._forecast_group(plan, part, task, errors)
        if errors and not frames:
            raise ModelError(
                self.name,
                f"could not fit any of {len(lengths)} series "
                f"({type(errors[0]).__name__}: {errors[0]})",
            ) from errors[0]
        result = pd.concat(frames, ignore_index=True) if frames else _empty(task)
        return _flatten_constant_intervals(result, history)

    def _forecast_group(
        self, plan: Any, part: pd.DataFrame, task: ForecastTask, errors: list[Exception]
    ) -> list[pd.DataFrame]:
        """Forecasts of one group; series the library cannot fit are left out (and noted)."""
        try:
            return [self._call(plan, part, task)]
        except Exception as error:
            errors.append(error)
        # Retry one series at a time so one series the library cannot fit does not take the
        # others of its group down.
        frames = []
        for _, one in part.groupby("unique_id", sort=False, observed=True):
            try:
                frames.append(self._call(plan, one, task))
            except Exception as error:
                errors.append(error)
        return frames

    def _call(self, plan: Any, part: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        from statsforecast import StatsForecast

        levels = list(task.levels) if task.levels and self.capabilities.intervals else None
        engine = StatsForecast(models=[self._build(plan)], freq=task.frequency, n_jobs=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = engine.forecast(df=part, h=task.horizon, level=levels)
        out = out.rename(columns=lambda c: str(c).replace("-lo-", "_lo_").replace("-hi-", "_hi_"))
        out["unique_id"] = out["unique_id"].astype(str)
        return out.reset_index(drop=True)


def _empty(task: ForecastTask) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unique_id": pd.Series(dtype=object),
            "ds": pd.Series(dtype="datetime64[ns]"),
            "yhat": pd.Series(dtype=float),
        }
    )


def _flatten_constant_intervals(out: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    bounds = [c for c in out.columns if c.startswith(("yhat_lo_", "yhat_hi_"))]
    if not bounds or out.empty:
        return out
    spread = history.groupby("unique_id", observed=True)["y"].agg(lambda y: y.max() - y.min())
    flat = set(spread.index[spread.to_numpy() == 0].astype(str))
    if not flat:
        return out
    rows = out["unique_id"].isin(flat).to_numpy()
    for column in bounds:
        missing = rows & ~np.isfinite(out[column].to_numpy(dtype=float))
        out.loc[missing, column] = out.loc[missing, "yhat"]
    return out


# -- the family of naive and average models ("fast" tier) -----------------------------------


class Naive(StatsForecastModel):
    """Last value carried forward: the simplest honest baseline."""

    name = "Naive"
    capabilities = _FAST_INTERVALS
    _sf_name = "Naive"


class SeasonalNaive(StatsForecastModel):
    """Value one season ago; Naive for series shorter than one season."""

    name = "SeasonalNaive"
    capabilities = _FAST_INTERVALS
    _sf_name = "SeasonalNaive"
    _min_cycles = 1

    def _build(self, plan: tuple[int, ...]) -> Any:
        if not plan:
            return _statsforecast_class("Naive")(alias="yhat")
        return _statsforecast_class("SeasonalNaive")(season_length=plan[0], alias="yhat")


class HistoricAverage(StatsForecastModel):
    """Mean of the whole history."""

    name = "HistoricAverage"
    capabilities = _FAST_INTERVALS
    _sf_name = "HistoricAverage"


class WindowAverage(StatsForecastModel):
    """Mean of the last ``window_size`` points (default: one season, else 7), clipped to the
    history a series has."""

    name = "WindowAverage"
    capabilities = _FAST_POINT
    _sf_name = "WindowAverage"

    def _accepted_params(self) -> set[str]:
        return {"window_size"}

    def _plan(self, n: int, task: ForecastTask) -> Hashable:
        seasons = seasons_of(task)
        window = int(self.params.get("window_size", seasons[0] if seasons else 7))
        return max(1, min(window, n))

    def _build(self, plan: int) -> Any:
        return _statsforecast_class("WindowAverage")(window_size=plan, alias="yhat")


class SeasonalWindowAverage(StatsForecastModel):
    """Mean of the same phase over the last ``window_size`` seasons (default 2); fewer seasons,
    or a plain window average, when the history is shorter."""

    name = "SeasonalWindowAverage"
    capabilities = _FAST_POINT
    _sf_name = "SeasonalWindowAverage"
    _defaults: ClassVar[Mapping[str, Any]] = {"window_size": 2}

    def _accepted_params(self) -> set[str]:
        return {"window_size"}

    def _plan(self, n: int, task: ForecastTask) -> Hashable:
        window = int(self.params["window_size"])
        seasons = fitting_seasons(n, task, 1)
        season = seasons[0] if seasons else 1
        return season, max(1, min(window, n // season))

    def _build(self, plan: tuple[int, int]) -> Any:
        season, window = plan
        return _statsforecast_class("SeasonalWindowAverage")(
            season_length=season, window_size=window, alias="yhat"
        )


class SES(StatsForecastModel):
    """Simple exponential smoothing; ``alpha`` is optimised unless given."""

    name = "SES"
    capabilities = _FAST_POINT
    _sf_name = "SimpleExponentialSmoothingOptimized"

    def _accepted_params(self) -> set[str]:
        return {"alpha"}

    def _build(self, plan: Any) -> Any:
        if "alpha" in self.params:
            cls = _statsforecast_class("SimpleExponentialSmoothing")
            return cls(alpha=float(self.params["alpha"]), alias="yhat")
        return _statsforecast_class("SimpleExponentialSmoothingOptimized")(alias="yhat")


#: The long name, for pipeline files that spell it out.
SimpleExponentialSmoothing = SES


# -- automatic models ("full" tier) ---------------------------------------------------------


class _SeasonalAuto(StatsForecastModel):
    """An auto model with one season, fitted without it when a series covers < 2 cycles."""

    def _build(self, plan: tuple[int, ...]) -> Any:
        season = plan[0] if plan else 1
        return _statsforecast_class(self._sf_name)(
            **self.params, season_length=season, alias="yhat"
        )


class AutoETS(_SeasonalAuto):
    """Exponential smoothing state-space model chosen by AICc (statsforecast fails below 7
    points on noisy data, hence ``min_history``)."""

    name = "AutoETS"
    capabilities = Capabilities(intervals=True, min_history=7, cost="full")
    _sf_name = "AutoETS"


class AutoTheta(_SeasonalAuto):
    """Theta family chosen by MSE; statsforecast needs at least 4 points."""

    name = "AutoTheta"
    capabilities = Capabilities(intervals=True, min_history=4, cost="full")
    _sf_name = "AutoTheta"


class AutoARIMA(_SeasonalAuto):
    """ARIMA chosen stepwise; ``approximation=True`` by default (much faster on long series, with
    the same accuracy in the benchmarks)."""

    name = "AutoARIMA"
    capabilities = Capabilities(intervals=True, min_history=4, cost="full")
    _sf_name = "AutoARIMA"
    _defaults: ClassVar[Mapping[str, Any]] = {"approximation": True}


class MSTL(StatsForecastModel):
    """Multiple seasonal decomposition (every season the series covers twice) with an AutoETS
    trend; plain AutoETS when no season fits."""

    name = "MSTL"
    capabilities = Capabilities(intervals=True, min_history=7, cost="full")
    _sf_name = "MSTL"

    def _accepted_params(self) -> set[str]:
        return {"stl_kwargs"}

    def _build(self, plan: tuple[int, ...]) -> Any:
        if not plan:
            return _statsforecast_class("AutoETS")(season_length=1, alias="yhat")
        return _statsforecast_class("MSTL")(season_length=list(plan), **self.params, alias="yhat")


# -- intermittent demand ---------------------------------------------------------------------


class CrostonOptimized(StatsForecastModel):
    """Croston's method with optimised smoothing, for series that are mostly zeros."""

    name = "CrostonOptimized"
    capabilities = Capabilities(intervals=False, min_history=1, intermittent=True, cost="fast")
    _sf_name = "CrostonOptimized"


class IMAPA(StatsForecastModel):
    """Intermittent multiple aggregation prediction algorithm."""

    name = "IMAPA"
    capabilities = Capabilities(intervals=False, min_history=1, intermittent=True, cost="fast")
    _sf_name = "IMAPA"


#: Built-in statistical models in the order ``steadycast models`` lists them.
STATISTICAL_MODELS: tuple[type[StatsForecastModel], ...] = (
    Naive,
    SeasonalNaive,
    HistoricAverage,
    WindowAverage,
    SeasonalWindowAverage,
    SES,
    AutoETS,
    AutoTheta,
    AutoARIMA,
    MSTL,
    CrostonOptimized,
    IMAPA,
)

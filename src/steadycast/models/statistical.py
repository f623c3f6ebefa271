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
- **the automatic models see a recent history only**: ``max_history`` (an own parameter of every
  model here) keeps the newest points of each series, by default ``HISTORY_SEASONS`` times the
  task's longest season and at least ``MIN_CAPPED_HISTORY`` for the "full" tier models (the naive
  family and the intermittent models see everything unless told). On M4 Weekly the last 260
  points forecast better than the last 520 or all of up to 2,600, at a fraction of the cost (the
  recent seasons say more about the next ones than old regimes do). The cut comes before the
  grouping, so the seasons a series covers are judged on what is fitted;
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

#: Default history cap of the automatic models: this many of the task's longest season...
HISTORY_SEASONS = 5
#: ...and never fewer points than this (five years of weekly data, 11 days of hourly data).
MIN_CAPPED_HISTORY = 260

_FAST_POINT = Capabilities(intervals=False, min_history=1, cost="fast", windows_in_one_call=True)
_FAST_INTERVALS = Capabilities(intervals=True, min_history=1, cost="fast", windows_in_one_call=True)


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


def default_max_history(task: ForecastTask) -> int:
    """Points an automatic model keeps by default: a few of the longest seasons, or a floor.

    Non-seasonal tasks get the floor too: older points rarely help a level or trend model and
    only cost fitting time.
    """
    return max(MIN_CAPPED_HISTORY, HISTORY_SEASONS * max(seasons_of(task), default=0))


def _positive_int(model: str, name: str, value: Any, *, allow_off: bool = False) -> int | None:
    """``value`` as a positive integer (``0`` or ``None`` meaning "off" when ``allow_off``)."""
    if allow_off and (value is None or (isinstance(value, int) and value == 0)):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        off = " (0 turns it off)" if allow_off else ""
        raise ConfigError(f"model {model!r}: {name} must be a positive integer{off}, not {value!r}")
    return value


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
    #: Parameters the wrapper uses itself; everything else goes to statsforecast.
    _own_params: ClassVar[frozenset[str]] = frozenset({"max_history"})
    #: Whether the history is cut to ``default_max_history`` when ``max_history`` is not given.
    _capped: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = {**self._defaults, **params}
        self._check_params(params)
        self._max_history = _positive_int(
            self.name, "max_history", self.params.get("max_history"), allow_off=True
        )

    def _accepted_params(self) -> set[str]:
        signature = inspect.signature(_statsforecast_class(self._sf_name))
        return set(signature.parameters) - {"self"} - _CONTROLLED

    def _library_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.params.items() if k not in self._own_params}

    def history_cap(self, task: ForecastTask) -> int | None:
        """Newest points of each series that are fitted (``None``: all of them)."""
        if "max_history" in self.params:
            return self._max_history
        return default_max_history(task) if self._capped else None

    def _check_params(self, params: Mapping[str, Any]) -> None:
        accepted = self._accepted_params() | self._own_params
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
        return _statsforecast_class(self._sf_name)(**self._library_params(), alias="yhat")

    # -- the contract --------------------------------------------------------------------------

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        history = history[["unique_id", "ds", "y"]]
        lengths = history.groupby("unique_id", sort=False, observed=True).size()
        cap = self.history_cap(task)
        if cap is not None and len(lengths) and int(lengths.max()) > cap:
            history = history.groupby("unique_id", sort=False, observed=True).tail(cap)
            lengths = lengths.clip(upper=cap)
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
    """Value one season ago; Naive for series shorter than one season.

    ``season = "longest"`` repeats the longest season a series covers instead of the main one:
    for hourly data with a weekly cycle, the same hour a week ago, so a Monday is forecast from
    a Monday rather than from the Sunday before it."""

    name = "SeasonalNaive"
    capabilities = _FAST_INTERVALS
    _sf_name = "SeasonalNaive"
    _min_cycles = 1
    _own_params = StatsForecastModel._own_params | {"season"}
    _seasons = ("main", "longest")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        season = self.params.get("season", "main")
        if season not in self._seasons:
            raise ConfigError(
                f"model {self.name!r}: season must be one of {', '.join(self._seasons)}, "
                f"not {season!r}"
            )
        self._longest = season == "longest"

    def _build(self, plan: tuple[int, ...]) -> Any:
        if not plan:
            return _statsforecast_class("Naive")(alias="yhat")
        season = max(plan) if self._longest else plan[0]
        return _statsforecast_class("SeasonalNaive")(season_length=season, alias="yhat")


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

    _capped = True

    def _build(self, plan: tuple[int, ...]) -> Any:
        season = plan[0] if plan else 1
        return _statsforecast_class(self._sf_name)(
            **self._library_params(), season_length=season, alias="yhat"
        )


class AutoETS(_SeasonalAuto):
    """Exponential smoothing state-space model chosen by AICc (statsforecast fails below 7
    points on noisy data, hence ``min_history``).

    Seasons above ``max_season`` (default 24) are not fitted: R's ``ets`` refuses them, and
    statsforecast tries them at great cost (about 2 s a series on long weekly series at season
    52, against 0.01 s without it on the capped history, for an OWA within 0.02 on M4 Weekly).
    The first of the task's seasons within the cap is used, else none.
    """

    name = "AutoETS"
    capabilities = Capabilities(intervals=True, min_history=7, cost="full")
    _sf_name = "AutoETS"
    _own_params = frozenset({"max_history", "max_season"})
    _defaults: ClassVar[Mapping[str, Any]] = {"max_season": 24}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._max_season = _positive_int(self.name, "max_season", self.params["max_season"])

    def _plan(self, n: int, task: ForecastTask) -> Hashable:
        limit = self._max_season or 1
        return tuple(s for s in fitting_seasons(n, task, self._min_cycles) if s <= limit)


class AutoTheta(_SeasonalAuto):
    """Theta family chosen by MSE; statsforecast needs at least 4 points."""

    name = "AutoTheta"
    capabilities = Capabilities(intervals=True, min_history=4, cost="full")
    _sf_name = "AutoTheta"


class AutoCES(_SeasonalAuto):
    """Complex exponential smoothing chosen by AICc, seasonal when a series covers 2 cycles.

    A member that models level and trend in one complex-valued state, unlike ETS and Theta,
    which makes it a useful voice in a combination (SCUM). ``model`` ("N", "S", "P", "F" or
    "Z" for automatic) is passed through.
    """

    name = "AutoCES"
    capabilities = Capabilities(intervals=True, min_history=5, cost="full")
    _sf_name = "AutoCES"


class DynamicOptimizedTheta(_SeasonalAuto):
    """Dynamic optimised Theta (DOTM): Theta whose theta line and smoothing are re-estimated as
    data arrive; seasonally adjusted by classical decomposition when a series covers 2 cycles
    (multiplicative by default, additive for series with values <= 0)."""

    name = "DynamicOptimizedTheta"
    capabilities = Capabilities(intervals=True, min_history=4, cost="full")
    _sf_name = "DynamicOptimizedTheta"


class AutoARIMA(_SeasonalAuto):
    """ARIMA chosen stepwise; ``approximation=True`` by default (much faster on long series, with
    the same accuracy in the benchmarks)."""

    name = "AutoARIMA"
    capabilities = Capabilities(intervals=True, min_history=4, cost="full")
    _sf_name = "AutoARIMA"
    _defaults: ClassVar[Mapping[str, Any]] = {"approximation": True}


#: Trend forecasters MSTL offers (``trend``): non-seasonal statsforecast models with intervals.
MSTL_TRENDS: Mapping[str, Mapping[str, Any]] = {
    "AutoETS": {"model": "ZZN"},
    "AutoTheta": {},
    "AutoCES": {},
    "DynamicOptimizedTheta": {},
    "AutoARIMA": {"approximation": True},
}


class MSTL(StatsForecastModel):
    """Multiple seasonal decomposition (every season the series covers twice) with a
    non-seasonal trend model (``trend``, default AutoETS); the trend model alone when no season
    fits.

    ``box_cox`` fits strictly positive series on a transformed scale and transforms forecasts and
    bounds back: ``true`` is the log (lambda 0), a number is the Box-Cox lambda. Multiplicative
    seasonality becomes additive there, which is what STL can decompose, and forecasts stay
    positive. The back-transformed point forecast is the median, not the mean, of the forecast
    distribution (median-unbiased: what MASE and sMAPE reward). Series with any value <= 0 are
    fitted untransformed.
    """

    name = "MSTL"
    capabilities = Capabilities(intervals=True, min_history=7, cost="full")
    _sf_name = "MSTL"
    _own_params = frozenset({"max_history", "trend", "box_cox"})
    _capped = True

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        trend = self.params.get("trend", "AutoETS")
        if trend not in MSTL_TRENDS:
            raise ConfigError(
                f"model 'MSTL': trend {trend!r} is not offered; use one of: "
                + ", ".join(MSTL_TRENDS)
            )
        self._trend: str = trend
        self._lambda = _box_cox_lambda(self.params.get("box_cox", False))

    def _accepted_params(self) -> set[str]:
        return {"stl_kwargs"}

    def _trend_model(self, alias: str) -> Any:
        cls = _statsforecast_class(self._trend)
        return cls(**MSTL_TRENDS[self._trend], season_length=1, alias=alias)

    def _build(self, plan: tuple[int, ...]) -> Any:
        if not plan:
            return self._trend_model("yhat")
        return _statsforecast_class("MSTL")(
            season_length=list(plan),
            trend_forecaster=self._trend_model(self._trend),
            **self._library_params(),
            alias="yhat",
        )

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        if self._lambda is None:
            return super().forecast(history, task)
        history = history[["unique_id", "ds", "y"]]
        low = history.groupby("unique_id", sort=False, observed=True)["y"].transform("min")
        positive = low.to_numpy() > 0
        frames: list[pd.DataFrame] = []
        errors: list[ModelError] = []
        for rows, transform in ((positive, True), (~positive, False)):
            if not rows.any():
                continue
            part = history[rows]
            if transform:
                part = part.assign(y=box_cox(part["y"].to_numpy(dtype=float), self._lambda))
            try:
                out = super().forecast(part, task)
            except ModelError as error:
                errors.append(error)
                continue
            frames.append(_inverse_box_cox_frame(out, self._lambda) if transform else out)
        if not frames:
            raise errors[0]
        return pd.concat(frames, ignore_index=True)


def _box_cox_lambda(value: Any) -> float | None:
    """The lambda that ``box_cox`` asks for: ``true`` is the log, ``false`` none."""
    if isinstance(value, bool):
        return 0.0 if value else None
    if isinstance(value, int | float) and -1.0 <= float(value) <= 2.0:
        return float(value)
    raise ConfigError(
        f"model 'MSTL': box_cox must be true (log), false or a lambda between -1 and 2, "
        f"not {value!r}"
    )


def box_cox(y: np.ndarray, lam: float) -> np.ndarray:
    """The Box-Cox transform of strictly positive ``y`` (the log when ``lam`` is 0)."""
    z: np.ndarray = np.log(y) if lam == 0 else (np.power(y, lam) - 1.0) / lam
    return z


def inverse_box_cox(z: np.ndarray, lam: float) -> np.ndarray:
    """Back from the Box-Cox scale; values beyond the transform's range go to its edge."""
    with np.errstate(over="ignore", divide="ignore"):
        y: np.ndarray = (
            np.exp(z) if lam == 0 else np.power(np.maximum(lam * z + 1.0, 1e-12), 1.0 / lam)
        )
    return y


def _inverse_box_cox_frame(out: pd.DataFrame, lam: float) -> pd.DataFrame:
    columns = [c for c in out.columns if c == "yhat" or c.startswith(("yhat_lo_", "yhat_hi_"))]
    for column in columns:
        out[column] = inverse_box_cox(out[column].to_numpy(dtype=float), lam)
    return out


# -- intermittent demand ---------------------------------------------------------------------


class CrostonOptimized(StatsForecastModel):
    """Croston's method with optimised smoothing, for series that are mostly zeros."""

    name = "CrostonOptimized"
    capabilities = Capabilities(
        intervals=False, min_history=1, intermittent=True, cost="fast", windows_in_one_call=True
    )
    _sf_name = "CrostonOptimized"


class IMAPA(StatsForecastModel):
    """Intermittent multiple aggregation prediction algorithm."""

    name = "IMAPA"
    capabilities = Capabilities(
        intervals=False, min_history=1, intermittent=True, cost="fast", windows_in_one_call=True
    )
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
    AutoCES,
    DynamicOptimizedTheta,
    AutoARIMA,
    MSTL,
    CrostonOptimized,
    IMAPA,
)

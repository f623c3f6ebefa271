"""The fast tier: models computed for a whole batch of series at once, with numpy.

statsforecast fits one series at a time, so even seasonal naive costs a per-series overhead
that adds up to minutes for a million series before any real model runs.
The models here give the same forecasts as statsforecast's implementations (same formulas, same
interval formulas, float64) but compute every series of a batch in a few array operations.

How a batch is laid out. The history arrives sorted by id then time (the model contract); it is
cut where ``unique_id`` changes, and series ``i`` is the run ``y[starts[i]:starts[i] +
lengths[i]]`` of one flat float64 array. Per-series sums are strided row sums when all runs have
one length and one spacing (the common fleet: numpy's pairwise sum, so the same bits as
statsforecast's ``y.mean()``), ``np.add.reduceat`` otherwise; per-series picks (last value, last
season) are gathers. SES is a recursion in time, so it runs on a time-major copy of a chunk of
series, longest first, so that step ``t`` works on the prefix of columns still running. Loops run
over time steps, seasons, window positions or chunks of series, never over series.

The same behaviour as the statsforecast-backed built-ins of ``statistical.py``:

- ``FastNaive``: last value; 1-point series get a zero-width interval (no residual to spread).
- ``FastSeasonalNaive``: value one season ago, with the first season of the task a series covers
  once (``season_length`` first); Naive below every season, as ``SeasonalNaive`` does.
- ``FastHistoricAverage``: mean of the history.
- ``FastWindowAverage``: mean of the last ``window_size`` points (default: the task's season,
  else 7), the window clipped to the history a series has.
- ``FastSeasonalWindowAverage``: mean of the same phase over the last ``window_size`` seasons
  (default 2), fewer seasons when the history is shorter, a plain window without a season.
- ``FastSES``: simple exponential smoothing with the given ``alpha``; without one, alpha is
  optimised exactly as statsforecast's ``SimpleExponentialSmoothingOptimized`` does (the same
  golden-section search on [0.01, 0.99], run for every series in lockstep: the same alpha, bit
  for bit). The search makes up to 58 passes over the history, one numpy call per time step and
  pass, so it needs wide batches to pay (bench/fast_tier.py measures where). A fixed alpha is
  one pass.
- ``FastTheta``: the standard Theta method of the M3/M4 benchmarks (seasonality test, classical
  multiplicative decomposition, SES on the theta-2 line averaged with the regression line). It
  is close to statsforecast's ``Theta`` rather than equal to it: statsforecast also optimises
  the initial level, and FastTheta stops its alpha search at a bracket of 1e-4, a third of the
  passes. The seasonality test and the moving average loop over lags and window offsets.

Intervals come only where statsforecast's ``forecast`` gives them natively: Naive, SeasonalNaive
and HistoricAverage (normal quantiles times the in-sample residual standard deviation, with their
horizon scaling). statsforecast's WindowAverage, SeasonalWindowAverage and SES raise without
conformal settings, so their fast twins declare no intervals and the platform supplies them.

Differences from statsforecast, on purpose: values are always float64 (statsforecast computes
integer-typed ``y`` in float32); series of unequal lengths are summed with ``reduceat``
(sequential) rather than pairwise, so they agree to about 1e-15 relative rather than bit for bit;
the normal quantile comes from the standard library (within 1e-15 of scipy's); and a history
with NaN values gets NaN forecasts for those series, which ``validate_forecast`` rejects (the
platform never passes missing values). SES steps through time one numpy call per step for a
chunk of series, so on very long histories (tens of thousands of points a series) with few
series it loses its advantage; the built-in ``SES`` is then the cheaper choice.
"""

from __future__ import annotations

import itertools
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from steadycast.errors import ConfigError
from steadycast.models.base import Capabilities, ForecastTask
from steadycast.models.statistical import seasons_of
from steadycast.models.validation import empty_forecast

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

#: Rows of history computed at once: bounds the temporaries (64 MB each) and keeps SES's
#: per-step vectors around 10,000 series wide, where numpy's per-call overhead is small.
ROWS_PER_PART = 1 << 23

_POINT = Capabilities(intervals=False, min_history=1, cost="fast", windows_in_one_call=True)
_INTERVALS = Capabilities(intervals=True, min_history=1, cost="fast", windows_in_one_call=True)

# statsforecast's golden-section search for SES (src/ses.cpp, golden_section_ses).
_SES_BOUNDS = (0.01, 0.99)
_GOLDEN = (np.sqrt(5.0) + 1.0) / 2.0
_SES_TOLERANCE = 1e-12
#: FastTheta stops its alpha search at this bracket: 20 passes over the history instead of 58,
#: and alpha to 4 decimals changes the forecasts by far less than their error.
THETA_ALPHA_TOLERANCE = 1e-4


# -- the batch -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Runs:
    """Series laid end to end: ``y[starts[i]:starts[i] + lengths[i]]`` is series ``i``."""

    y: Floats
    starts: Ints
    lengths: Ints

    @property
    def count(self) -> int:
        return len(self.starts)

    @property
    def ends(self) -> Ints:
        return self.starts + self.lengths

    def parts(self, rows: int) -> Iterator[Runs]:
        """Consecutive groups of whole series of about ``rows`` rows each (views of ``y``)."""
        if len(self.y) <= rows:
            yield self
            return
        ends = self.ends
        first = 0
        while first < self.count:
            limit = self.starts[first] + rows
            stop = max(first + 1, int(np.searchsorted(ends, limit, side="right")))
            offset = int(self.starts[first])
            yield Runs(
                y=self.y[offset : int(ends[stop - 1])],
                starts=self.starts[first:stop] - offset,
                lengths=self.lengths[first:stop],
            )
            first = stop


@dataclass(frozen=True)
class SeriesBatch:
    """A long history cut into series: their ids, values and last timestamps."""

    ids: npt.NDArray[Any]
    runs: Runs
    last_ds: pd.DatetimeIndex


def split_series(history: pd.DataFrame) -> SeriesBatch:
    """Cut a long ``unique_id, ds, y`` frame into runs, one per series, in order of appearance.

    The contract promises rows grouped by series and sorted by time; that is checked (two cheap
    comparisons) and, if not so, the three columns are sorted by id and time first. A series
    with a repeated timestamp cannot be forecast on a regular grid and raises ``ValueError``.
    """
    if not pd.api.types.is_datetime64_any_dtype(history["ds"]):
        raise TypeError(
            f"column 'ds' holds {history['ds'].dtype} values; the fast tier needs timestamps"
        )
    batch = _split_sorted(history)
    if batch is not None:
        return batch
    resorted = history[["unique_id", "ds", "y"]].sort_values(["unique_id", "ds"], kind="stable")
    repeated = resorted.duplicated(["unique_id", "ds"]).to_numpy()
    if repeated.any():
        raise ValueError(
            f"series {resorted['unique_id'].iloc[repeated.argmax()]!r} has a repeated timestamp"
        )
    batch = _split_sorted(resorted.reset_index(drop=True))
    if batch is None:
        raise ValueError("column 'unique_id' has missing values")
    return batch


def _split_sorted(history: pd.DataFrame) -> SeriesBatch | None:
    """The batch, or None when rows are not grouped by id and sorted by time."""
    ids = history["unique_id"]
    keys = (
        ids.cat.codes.to_numpy()
        if isinstance(ids.dtype, pd.CategoricalDtype)
        else ids.to_numpy(dtype=object)
    )
    stamps = pd.DatetimeIndex(history["ds"])
    ticks = stamps.asi8
    rows = len(history)
    new = np.ones(rows, dtype=bool)
    if rows:
        np.not_equal(keys[1:], keys[:-1], out=new[1:])
    starts = np.flatnonzero(new).astype(np.int64)
    if not pd.Index(keys[starts]).is_unique:
        return None
    if not bool(np.all((ticks[1:] > ticks[:-1]) | new[1:])):
        return None
    lengths = np.diff(np.append(starts, rows)).astype(np.int64)
    return SeriesBatch(
        ids=ids.take(starts).to_numpy(dtype=object),
        runs=Runs(y=history["y"].to_numpy(dtype=np.float64), starts=starts, lengths=lengths),
        last_ds=stamps[starts + lengths - 1],
    )


def segment_sums(values: Floats, starts: Ints, stops: Ints) -> Floats:
    """``values[starts[i]:stops[i]].sum()`` for each i (0.0 for an empty run).

    Runs come in order and do not overlap. When all runs have one width and one spacing (a
    batch of equal-length series) they are summed as rows of a strided view, which numpy sums
    pairwise like a 1-D ``.sum()``: the same bits as statsforecast's per-series sums. Otherwise
    ``np.add.reduceat`` sums each run sequentially (within about 1e-15 relative).
    """
    count = len(starts)
    out = np.zeros(count)
    if count == 0:
        return out
    widths = stops - starts
    width = int(widths[0])
    step = int(starts[1] - starts[0]) if count > 1 else 0
    regular = bool(np.all(widths == width)) and (
        count == 1 or (step >= 0 and bool(np.all(np.diff(starts) == step)))
    )
    if regular:
        if width == 0:
            return out
        item = values.strides[0]
        rows = np.lib.stride_tricks.as_strided(
            values[int(starts[0]) :], shape=(count, width), strides=(step * item, item)
        )
        return np.asarray(rows.sum(axis=1), dtype=np.float64)
    filled = widths > 0
    if not filled.any():
        return out
    bounds = np.empty(2 * int(filled.sum()), dtype=np.intp)
    bounds[0::2] = starts[filled]
    bounds[1::2] = stops[filled]
    if bounds[-1] >= len(values):  # the last run ends the array: reduceat sums to the end
        bounds = bounds[:-1]
    out[filled] = np.add.reduceat(values, bounds)[0::2]
    return out


def future_stamps(last: pd.DatetimeIndex, horizon: int, frequency: str) -> pd.DatetimeIndex:
    """The ``horizon`` timestamps after each of ``last``, series after series."""
    offset = pd.tseries.frequencies.to_offset(frequency)
    steps = np.arange(1, horizon + 1)
    if isinstance(offset, pd.offsets.Tick):
        delta = pd.Timedelta(offset).to_timedelta64()
        return last.repeat(horizon) + pd.TimedeltaIndex(np.tile(steps, len(last)) * delta)
    with warnings.catch_warnings():
        # Calendar offsets pandas cannot vectorise warn once per call; one call per step here.
        warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
        per_step = [last + int(k) * offset for k in steps]
    utc = [p.tz_convert(None) if p.tz is not None else p for p in per_step]
    stacked = np.stack([p.to_numpy() for p in utc], axis=1).reshape(-1)
    stamps = pd.DatetimeIndex(stacked)
    return stamps.tz_localize("UTC").tz_convert(last.tz) if last.tz is not None else stamps


def normal_quantile(level: float) -> float:
    """The z of a central ``level``% normal interval (statsforecast's ``_quantiles``)."""
    return NormalDist().inv_cdf(0.5 + level / 200)


def season_per_series(lengths: Ints, task: ForecastTask) -> Ints:
    """The first season of the task each series covers once (1 when it covers none), as the
    statsforecast-backed SeasonalNaive and SeasonalWindowAverage choose it."""
    season = np.ones_like(lengths)
    for s in reversed(seasons_of(task)):  # the earliest season that fits wins
        season = np.where(lengths >= s, s, season)
    return season


# -- the models ------------------------------------------------------------------------------


class FastModel(ABC):
    """A fast-tier model: checks its parameters, cuts the batch, and builds the frame.

    Subclasses set ``name``, ``capabilities`` and ``_accepted`` (parameter names) and implement
    ``_compute``: the ``(series, horizon)`` point forecasts of a part of the batch and, when
    asked, the standard deviation of each step (``sigmah``), from which the intervals follow.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    _accepted: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self._accepted))
        if unknown:
            allowed = ", ".join(self._accepted) or "none"
            raise ConfigError(
                f"model {self.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                f"it accepts: {allowed}"
            )
        self.params: dict[str, Any] = dict(params)

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        """Forecast every series of ``history`` at once; intervals only when declared."""
        levels = tuple(task.levels) if self.capabilities.intervals else ()
        batch = split_series(history)
        if batch.runs.count == 0:
            return empty_forecast(replace(task, levels=levels))
        means: list[Floats] = []
        spreads: list[Floats] = []
        for part in batch.runs.parts(ROWS_PER_PART):
            mean, sigmah = self._compute(part, task, bool(levels))
            means.append(mean)
            if sigmah is not None:
                spreads.append(sigmah)
        mean = np.concatenate(means)
        columns: dict[str, Any] = {
            "unique_id": np.repeat(batch.ids, task.horizon),
            "ds": future_stamps(batch.last_ds, task.horizon, task.frequency),
            "yhat": mean.reshape(-1),
        }
        if levels:
            sigmah = np.concatenate(spreads)
            for level in levels:
                half = normal_quantile(level) * sigmah
                columns[f"yhat_lo_{level}"] = (mean - half).reshape(-1)
                columns[f"yhat_hi_{level}"] = (mean + half).reshape(-1)
        return pd.DataFrame(columns)

    @abstractmethod
    def _compute(
        self, runs: Runs, task: ForecastTask, spread: bool
    ) -> tuple[Floats, Floats | None]:
        """Point forecasts ``(series, horizon)`` and, when ``spread``, each step's sigma."""

    def _whole_number(self, key: str, default: int) -> int:
        value = self.params.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(
                f"model {self.name!r}: {key} must be a whole number of at least 1, got {value!r}"
            )
        return int(value)


def _flat(values: Floats, horizon: int) -> Floats:
    """One value per series repeated over the horizon, as a ``(series, horizon)`` array."""
    return np.repeat(values, horizon).reshape(len(values), horizon)


def _seasonal_naive(
    runs: Runs, seasons: Ints, horizon: int, spread: bool
) -> tuple[Floats, Floats | None]:
    """statsforecast's SeasonalNaive with a season per series (Naive is season 1).

    Residuals are ``y[t] - y[t - s]``; sigma is ``sqrt(sum of squares / (n - s))``, 0 when
    ``n <= s``; step ``k`` (from 0) gets ``sigma * sqrt(k // s + 1)``.
    """
    steps = np.arange(horizon)
    s = seasons[:, None]
    mean = runs.y[(runs.ends - seasons)[:, None] + steps % s]
    if not spread:
        return mean, None
    sum_sq = np.zeros(runs.count)
    for season in np.unique(seasons):
        lag = int(season)
        chosen = seasons == season
        # Squares laid out like the series, with zeros where a series has no residual yet,
        # so each series sums over its whole run (as statsforecast's nansum does).
        squares = np.zeros(len(runs.y))
        diff = runs.y[lag:] - runs.y[:-lag]
        squares[lag:] = diff * diff
        heads = runs.starts[chosen][:, None] + np.arange(lag)
        squares[heads.reshape(-1)] = 0.0
        sum_sq[chosen] = segment_sums(squares, runs.starts[chosen], runs.ends[chosen])
    dof = runs.lengths - seasons
    sigma = np.sqrt(np.divide(sum_sq, dof, out=np.zeros(runs.count), where=dof > 0))
    return mean, sigma[:, None] * np.sqrt(np.floor(steps / s) + 1)


class FastNaive(FastModel):
    """Last value carried forward, for the whole batch at once."""

    name = "FastNaive"
    capabilities = _INTERVALS

    def _compute(
        self, runs: Runs, task: ForecastTask, spread: bool
    ) -> tuple[Floats, Floats | None]:
        return _seasonal_naive(runs, np.ones_like(runs.lengths), task.horizon, spread)


class FastSeasonalNaive(FastModel):
    """Value one season ago; the last value for series shorter than every season."""

    name = "FastSeasonalNaive"
    capabilities = _INTERVALS

    def _compute(
        self, runs: Runs, task: ForecastTask, spread: bool
    ) -> tuple[Floats, Floats | None]:
        seasons = season_per_series(runs.lengths, task)
        return _seasonal_naive(runs, seasons, task.horizon, spread)


class FastHistoricAverage(FastModel):
    """Mean of the whole history; intervals from the spread around it."""

    name = "FastHistoricAverage"
    capabilities = _INTERVALS

    def _compute(
        self, runs: Runs, task: ForecastTask, spread: bool
    ) -> tuple[Floats, Floats | None]:
        n = runs.lengths
        mean = segment_sums(runs.y, runs.starts, runs.ends) / n
        if not spread:
            return _flat(mean, task.horizon), None
        residuals = runs.y - np.repeat(mean, n)
        sum_sq = segment_sums(residuals * residuals, runs.starts, runs.ends)
        dof = n - 1
        sigma = np.sqrt(np.divide(sum_sq, dof, out=np.zeros(runs.count), where=dof > 0))
        return _flat(mean, task.horizon), _flat(sigma * np.sqrt(1 + (1 / n)), task.horizon)


class FastWindowAverage(FastModel):
    """Mean of the last ``window_size`` points (default: the task's season, else 7), the window
    clipped to the history a series has."""

    name = "FastWindowAverage"
    capabilities = _POINT
    _accepted = ("window_size",)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if "window_size" in self.params:
            self._whole_number("window_size", 1)

    def _compute(
        self, runs: Runs, task: ForecastTask, spread: bool
    ) -> tuple[Floats, Floats | None]:
        seasons = seasons_of(task)
        window = self._whole_number("window_size", seasons[0] if seasons else 7)
        width = np.clip(runs.lengths, 1, window)
        ends = runs.ends
        return _flat(segment_sums(runs.y, ends - width, ends) / width, task.horizon), None


class FastSeasonalWindowAverage(FastModel):
    """Mean of the same phase over the last ``window_size`` seasons (default 2): fewer seasons
    when the history is shorter, a plain window average when it covers no season."""

    name = "FastSeasonalWindowAverage"
    capabilities = _POINT
    _accepted = ("window_size",)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._whole_number("window_size", 2)

    def _compute(
        self, runs: Runs, task: ForecastTask, spread: bool
    ) -> tuple[Floats, Floats | None]:
        seasons = season_per_series(runs.lengths, task)
        cycles = np.clip(runs.lengths // seasons, 1, self._whole_number("window_size", 2))
        s = seasons[:, None]
        first = (runs.ends - cycles * seasons)[:, None] + np.arange(task.horizon) % s
        # Add the cycles oldest first, then divide: the order of statsforecast's mean over
        # the reshaped (cycles, season) window, so the sums agree bit for bit.
        total = runs.y[first]
        for cycle in range(1, int(cycles.max())):
            more = cycles > cycle
            total[more] += runs.y[first[more] + cycle * s[more]]
        return total / cycles[:, None], None


class FastSES(FastModel):
    """Simple exponential smoothing; ``alpha`` is optimised (as statsforecast's
    ``SimpleExponentialSmoothingOptimized`` does, bit for bit) unless given."""

    name = "FastSES"
    capabilities = _POINT
    _accepted = ("alpha",)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        alpha = self.params.get("alpha")
        if alpha is not None and (
            isinstance(alpha, bool)
            or not isinstance(alpha, (int, float, np.floating, np.integer))
            or not 0.0 <= float(alpha) <= 1.0
        ):
            raise ConfigError(f"model {self.name!r}: alpha must be between 0 and 1, got {alpha!r}")

    def _compute(
        self, runs: Runs, task: ForecastTask, spread: bool
    ) -> tuple[Floats, Floats | None]:
        alpha = self.params.get("alpha")
        level = ses_forecasts(runs, None if alpha is None else float(alpha))
        return _flat(level, task.horizon), None


class FastTheta(FastModel):
    """The standard Theta method of the M3 and M4 benchmarks, for the whole batch at once.

    Per series: the 90% autocorrelation test at the task's main season (three seasons of
    history needed); a seasonal, positive series is divided by its classical multiplicative
    seasonal indices. The (adjusted) series is split into its linear regression line (theta 0)
    and the theta-2 line ``2 y - line``; SES with optimised alpha forecasts the theta-2 line,
    the regression line is extrapolated, the forecast is their mean (so half the fitted slope
    survives), then reseasonalised. A constant series forecasts its value.
    """

    name = "FastTheta"
    capabilities = _POINT

    def _compute(
        self, runs: Runs, task: ForecastTask, spread: bool
    ) -> tuple[Floats, Floats | None]:
        seasons = seasons_of(task)
        season = seasons[0] if seasons else 1
        index = seasonal_indices(runs, season) if season > 1 else None
        if index is None:
            return theta_forecasts(runs, task.horizon), None
        row = np.repeat(np.arange(runs.count), runs.lengths)
        adjusted = runs.y / index[row, _positions(runs) % season]
        mean = theta_forecasts(replace(runs, y=adjusted), task.horizon)
        ahead = (runs.lengths[:, None] + np.arange(task.horizon)) % season
        return mean * np.take_along_axis(index, ahead, axis=1), None


#: The fast tier, in the order ``steadycast models`` lists it.
FAST_MODELS: tuple[type[FastModel], ...] = (
    FastNaive,
    FastSeasonalNaive,
    FastHistoricAverage,
    FastWindowAverage,
    FastSeasonalWindowAverage,
    FastSES,
    FastTheta,
)


# -- SES, vectorised over series -----------------------------------------------------------


@dataclass(frozen=True)
class _TimeMajor:
    """A chunk of series as columns of a ``(time, series)`` matrix, longest series first and
    left-aligned, so the series still running at any step are a prefix of the columns.

    ``spans``: ``(first, stop, width)``: steps ``first <= t < stop`` (from 1) run ``width``
    columns, one span per distinct length (worked out once per matrix, not per pass), so a
    pass binds its views once per span, not per step.
    """

    values: Floats
    order: Ints  # column j holds series order[j]
    lengths: Ints  # of the columns, non-increasing
    spans: list[tuple[int, int, int]]

    @classmethod
    def of(cls, values: Floats, order: Ints, lengths: Ints) -> _TimeMajor:
        distinct = np.unique(lengths)  # ascending
        spans = []
        first = 1
        for stop in distinct.tolist():
            if stop > first:
                width = int(np.count_nonzero(lengths >= stop))
                spans.append((first, int(stop), width))
                first = int(stop)
        return cls(values, order, lengths, spans)


def _time_major(runs: Runs) -> _TimeMajor:
    n = runs.count
    longest = int(runs.lengths.max())
    if bool(np.all(runs.lengths == longest)):
        values = np.ascontiguousarray(runs.y.reshape(n, longest).T)
        order = np.arange(n, dtype=np.int64)
    else:
        order = np.argsort(-runs.lengths, kind="stable").astype(np.int64)
        column = np.empty(n, dtype=np.int64)
        column[order] = np.arange(n)
        step = np.arange(len(runs.y)) - np.repeat(runs.starts, runs.lengths)
        values = np.zeros((longest, n))
        values[step, np.repeat(column, runs.lengths)] = runs.y
    return _TimeMajor.of(values, order, runs.lengths[order])


def _ses_pass(matrix: _TimeMajor, alpha: Floats, want_sse: bool) -> tuple[Floats, Floats]:
    """The last smoothed level before the final point, and the in-sample SSE, per column.

    The arithmetic is statsforecast's (``alpha * x[t-1] + (1 - alpha) * f``, one error
    squared and added per step), in the same order, so the results are the same bits. The
    loop is over time steps, with every column of the chunk in each numpy call.
    """
    x = matrix.values
    level = x[0].copy()
    sse = np.zeros(x.shape[1])
    keep = 1.0 - alpha
    scratch = np.empty(x.shape[1])
    for first, stop, width in matrix.spans:
        f, tmp, total = level[:width], scratch[:width], sse[:width]
        a, k = alpha[:width], keep[:width]
        rows = x[first - 1 : stop, :width]
        for prev, cur in itertools.pairwise(rows):
            np.multiply(a, prev, out=tmp)
            np.multiply(f, k, out=f)
            np.add(f, tmp, out=f)
            if want_sse:
                np.subtract(cur, f, out=tmp)
                np.multiply(tmp, tmp, out=tmp)
                np.add(total, tmp, out=total)
    return level, sse


def _optimal_alpha(matrix: _TimeMajor, tolerance: float = _SES_TOLERANCE) -> Floats:
    """statsforecast's golden-section search for alpha, run for every column in lockstep.

    Each column keeps its own bracket and stops where statsforecast stops (bracket below 1e-12
    or an exact tie of the two SSEs); once half the columns have stopped, the rest are copied
    out so the remaining passes are narrower.
    """
    width = matrix.values.shape[1]
    a = np.full(width, _SES_BOUNDS[0])
    b = np.full(width, _SES_BOUNDS[1])
    c = b - (b - a) / _GOLDEN
    d = a + (b - a) / _GOLDEN
    fc = _ses_pass(matrix, c, True)[1]
    fd = _ses_pass(matrix, d, True)[1]
    running = np.ones(width, dtype=bool)
    columns = np.arange(width)
    working = matrix
    while True:
        running &= np.abs(b - a) >= tolerance
        left = running & (fc < fd)
        right = running & (fd < fc)
        running = left | right
        count = int(running.sum())
        if count == 0:
            break
        b[left] = d[left]
        d[left] = c[left]
        fd[left] = fc[left]
        c[left] = b[left] - (b[left] - a[left]) / _GOLDEN
        a[right] = c[right]
        c[right] = d[right]
        fc[right] = fd[right]
        d[right] = a[right] + (b[right] - a[right]) / _GOLDEN
        if count <= len(columns) // 2:
            columns = np.flatnonzero(running)
            lengths = matrix.lengths[columns]
            working = _TimeMajor.of(
                np.ascontiguousarray(matrix.values[: int(lengths[0]), columns]),
                matrix.order[columns],
                lengths,
            )
        sse = np.empty(width)
        sse[columns] = _ses_pass(working, np.where(left, c, d)[columns], True)[1]
        fc = np.where(left, sse, fc)
        fd = np.where(right, sse, fd)
    alpha: Floats = (b + a) / 2.0
    return alpha


def ses_forecasts(runs: Runs, alpha: float | None, tolerance: float = _SES_TOLERANCE) -> Floats:
    """The SES forecast of every series of ``runs`` (alpha optimised when None, until its
    bracket is narrower than ``tolerance``: statsforecast's 1e-12 by default)."""
    matrix = _time_major(runs)
    alphas = (
        _optimal_alpha(matrix, tolerance)
        if alpha is None
        else np.full(matrix.values.shape[1], alpha)
    )
    level = _ses_pass(matrix, alphas, False)[0]
    last = runs.y[runs.ends - 1][matrix.order]
    forecast = alphas * last + (1.0 - alphas) * level
    forecast = np.where(matrix.lengths == 1, last, forecast)  # statsforecast returns x[0]
    out = np.empty(runs.count)
    out[matrix.order] = forecast
    return out


# -- Theta, vectorised over series -----------------------------------------------------------


def _positions(runs: Runs) -> Ints:
    """Each row's position within its series (0 for the first point)."""
    return np.arange(len(runs.y)) - np.repeat(runs.starts, runs.lengths)


def _per_row(values: npt.NDArray[Any], runs: Runs) -> npt.NDArray[Any]:
    """One value per series, repeated over that series' rows."""
    return np.repeat(values, runs.lengths)


def theta_forecasts(runs: Runs, horizon: int) -> Floats:
    """The mean of SES on the theta-2 line and the extrapolated regression line, per series.

    The regression is on time centred per series (so sums stay small on long histories); a
    1-point series has no slope. A series whose values are all equal forecasts that value.
    """
    n = runs.lengths.astype(np.float64)
    mean = segment_sums(runs.y, runs.starts, runs.ends) / n
    centre = (n - 1.0) / 2.0
    time = _positions(runs) - _per_row(centre, runs)
    spread = n * (n * n - 1.0) / 12.0  # sum of the centred times squared
    moment = segment_sums(time * runs.y, runs.starts, runs.ends)
    slope = np.divide(moment, spread, out=np.zeros(runs.count), where=spread > 0)
    line = _per_row(mean, runs) + _per_row(slope, runs) * time
    smoothed = ses_forecasts(replace(runs, y=2.0 * runs.y - line), None, THETA_ALPHA_TOLERANCE)
    ahead = (n - centre)[:, None] + np.arange(horizon)
    out = 0.5 * (smoothed[:, None] + mean[:, None] + slope[:, None] * ahead)
    low = np.minimum.reduceat(runs.y, runs.starts) if runs.count else np.zeros(0)
    high = np.maximum.reduceat(runs.y, runs.starts) if runs.count else np.zeros(0)
    flat = low == high
    out[flat] = runs.y[runs.ends - 1][flat, None]
    return out


def seasonality_test(runs: Runs, season: int) -> npt.NDArray[np.bool_]:
    """M4's 90% autocorrelation test at lag ``season``, per series (three seasons needed).

    The autocorrelations up to the season are per-series sums of lagged products of the
    demeaned values, one pass over the batch per lag.
    """
    n = runs.lengths
    x = runs.y - _per_row(segment_sums(runs.y, runs.starts, runs.ends) / n, runs)
    denom = segment_sums(x * x, runs.starts, runs.ends)
    tested = (n >= 3 * season) & (denom > 0)
    if season <= 1 or not tested.any():
        return np.zeros(runs.count, dtype=bool)
    safe = np.where(tested, denom, 1.0)
    squares = np.zeros(runs.count)
    acf = np.zeros(runs.count)
    ends = runs.ends
    for lag in range(1, season + 1):
        lagged = np.zeros(len(x))
        np.multiply(x[lag:], x[:-lag], out=lagged[lag:])
        acf = segment_sums(lagged, np.minimum(runs.starts + lag, ends), ends) / safe
        if lag < season:
            squares += acf * acf
    limit = 1.645 / np.sqrt(n) * np.sqrt(1.0 + 2.0 * squares)
    return tested & (np.abs(acf) > limit)


def seasonal_indices(runs: Runs, season: int) -> Floats | None:
    """Classical multiplicative seasonal indices ``(series, season)`` by position from each
    series' start (R's ``decompose``), ones for series the test finds not seasonal or that
    are not positive; None when no series of the batch is seasonal.

    The trend is the centred moving average (2 x season for an even season), summed one
    offset at a time in a fixed order, so a point's trend is the same bits however the batch
    is laid out.
    """
    low = np.minimum.reduceat(runs.y, runs.starts)
    seasonal = (low > 0) & seasonality_test(runs, season)
    if not seasonal.any():
        return None
    y = runs.y
    half = season // 2
    trend = np.full(len(y), np.nan)
    count = len(y) - 2 * half
    if count > 0:
        even = season % 2 == 0
        window = (0.5 if even else 1.0) * y[:count]
        for offset in range(1, 2 * half):
            window += y[offset : offset + count]
        window += (0.5 if even else 1.0) * y[2 * half : 2 * half + count]
        trend[half : half + count] = window / season
    position = _positions(runs)
    row = np.repeat(np.arange(runs.count), runs.lengths)
    use = seasonal[row] & (position >= half) & (position < _per_row(runs.lengths, runs) - half)
    ratio = y[use] / trend[use]
    key = row[use] * season + position[use] % season
    cells = runs.count * season
    sums = np.bincount(key, weights=ratio, minlength=cells).reshape(runs.count, season)
    counts = np.bincount(key, minlength=cells).reshape(runs.count, season)
    figure = np.divide(sums, counts, out=np.ones_like(sums), where=counts > 0)
    figure /= figure.mean(axis=1, keepdims=True)
    figure[~seasonal] = 1.0
    return figure

"""Card: a least-squares autoregression in logs, fitted for a whole batch of series at once.

After Doornik, Castle and Hendry's "Card" forecasts (the best M4 Hourly method, which ran all of
M4 in about half a minute): each series gets its own ordinary least-squares regression of its
(log) value on

- its own lags: 1, 2, the main season and the second season (where the history allows),
- the phase in the main season (dummies for seasons up to ``DUMMY_LIMIT`` steps, Fourier terms
  above), sine/cosine terms of the second (longer) season, ``harmonics`` of each,
- an intercept and, in one of the two averaged specifications, a linear trend,

and is forecast recursively over the horizon. The forecast is the mean of the specification with
a trend and the one without (Card's averaging: on development data it beat either alone on
weekly and half-hourly data; hourly load preferred no trend by a little), back-transformed.

Why it is cheap: the regressors that do not depend on the data (intercept, trend, dummies,
Fourier terms) are one matrix shared by every series of one length, so the normal equations of a
group of equal-length series are built from a few batched matrix products and solved as one
stack (``np.linalg.solve``); the forecast steps through the horizon once for the whole group.
Loops run over lengths, chunks and horizon steps, never over series. Series are cut to their
newest ``max_history`` points first (default ``max(DEFAULT_MIN_CAP, 6 x longest season)``),
which also makes most of a fleet one length.

Robustness, on purpose:

- **Logs only where they are defined**: a strictly positive series is modelled in logs; a
  non-negative series with zeros in ``log(y + c)`` with ``c`` a tenth of its mean; a series with
  a negative value on its own scale. Each series is standardised before the fit, so a tiny ridge
  (``RIDGE`` times the rows) keeps every stack of normal equations solvable and scale-free.
- **Short series get a simpler specification**: components are dropped (second season, then
  main season, then trend, then lag 2) until the rows are at least twice the coefficients; at the
  least an AR(1) with an intercept, hence ``min_history`` = 4. A constant series is forecast flat.
- **Absurd forecasts are replaced**: a series whose forecast is not finite or strays more than
  ``CLIP_RANGES`` times its history's range beyond that range (an explosive autoregression) is
  forecast by seasonal naive instead; non-negative histories get non-negative forecasts.

The model gives point forecasts only; the platform supplies intervals from backtest errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from steadycast.errors import ConfigError
from steadycast.models.base import Capabilities, ForecastTask
from steadycast.models.fast import Runs, future_stamps, split_series
from steadycast.models.statistical import seasons_of
from steadycast.models.validation import empty_forecast

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

#: Seasons up to this many steps get one dummy per phase; longer ones get Fourier terms.
DUMMY_LIMIT = 60
#: Ridge penalty per row of the regression, on standardised data (keeps solves well posed).
RIDGE = 1e-6
#: History kept per series is at least this many points (when the series has them).
DEFAULT_MIN_CAP = 1000
#: A forecast straying beyond this many history ranges outside the history is replaced.
CLIP_RANGES = 10.0
#: Offset of ``log(y + c)`` for non-negative series with zeros, as a share of the mean.
ZERO_OFFSET = 0.1
#: Values held in one chunk's design matrix (bounds the temporaries to ~64 MB).
CHUNK_VALUES = 1 << 23


@dataclass(frozen=True)
class Spec:
    """One regression: lags of the target, deterministic regressors, rows it needs."""

    lags: tuple[int, ...]
    trend: bool
    dummies: int  # season whose phase gets dummies (0: none)
    fourier: tuple[tuple[int, int], ...]  # (period, harmonics)

    @property
    def deterministic(self) -> int:
        """Columns of the shared matrix: intercept, trend, dummies, sine/cosine pairs."""
        return 1 + int(self.trend) + max(self.dummies - 1, 0) + sum(2 * k for _, k in self.fourier)

    @property
    def width(self) -> int:
        return self.deterministic + len(self.lags)

    @property
    def max_lag(self) -> int:
        return max(self.lags)


def spec_for(n: int, seasons: tuple[int, ...], trend: bool, harmonics: int) -> Spec:
    """The richest specification a series of ``n`` points supports (rows >= 2 x coefficients).

    Components in order of priority; the last ones are dropped first when rows run short.
    """
    parts: list[tuple[str, int, int]] = [("lag", 1, 0), ("lag", 2, 0)]
    if trend:
        parts.append(("trend", 0, 0))
    for rank, season in enumerate(seasons[:2]):
        if rank == 0 and season <= DUMMY_LIMIT and n >= 3 * season:
            parts.append(("dummies", season, 0))
        elif n >= 2 * season:
            parts.append(("fourier", season, min(harmonics, season // 2)))
        if n >= 3 * season:
            parts.append(("lag", season, 0))
    while True:
        spec = Spec(
            lags=tuple(dict.fromkeys(v for kind, v, _ in parts if kind == "lag")),
            trend=any(kind == "trend" for kind, _, _ in parts),
            dummies=next((v for kind, v, _ in parts if kind == "dummies"), 0),
            fourier=tuple((v, k) for kind, v, k in parts if kind == "fourier" and k > 0),
        )
        if len(parts) == 1 or n - spec.max_lag >= 2 * spec.width:
            return spec
        parts.pop()


def design(spec: Spec, first: int, stop: int, n: int) -> Floats:
    """The deterministic regressors of positions ``first <= t < stop`` (``n``: fitted points)."""
    t = np.arange(first, stop, dtype=np.float64)
    columns = [np.ones_like(t)]
    if spec.trend:
        columns.append(t / n)
    if spec.dummies:
        phase = np.arange(first, stop) % spec.dummies
        columns.extend((phase == p).astype(np.float64) for p in range(1, spec.dummies))
    for period, harmonics in spec.fourier:
        for k in range(1, harmonics + 1):
            angle = 2.0 * np.pi * k * t / period
            columns.extend((np.sin(angle), np.cos(angle)))
    return np.stack(columns, axis=1)


def fit_forecast(z: Floats, spec: Spec, horizon: int) -> Floats:
    """OLS (tiny ridge) of each row of ``z`` (series x time, standardised) on ``spec``, then the
    recursive forecast: ``(series, horizon)``.

    The normal equations are assembled from blocks: deterministic x deterministic is shared,
    the rest are batched products over the stack of series.
    """
    count, n = z.shape
    m = spec.max_lag
    rows = n - m
    shared = design(spec, m, n, n)  # (rows, q)
    lags = np.stack([z[:, m - lag : n - lag] for lag in spec.lags], axis=2)  # (S, rows, r)
    target = z[:, m:]
    q, r = shared.shape[1], len(spec.lags)
    gram = np.empty((count, q + r, q + r))
    gram[:, :q, :q] = shared.T @ shared
    cross = np.einsum("tq,str->sqr", shared, lags, optimize=True)
    gram[:, :q, q:] = cross
    gram[:, q:, :q] = cross.transpose(0, 2, 1)
    gram[:, q:, q:] = np.einsum("str,stu->sru", lags, lags, optimize=True)
    moment = np.empty((count, q + r))
    moment[:, :q] = target @ shared
    moment[:, q:] = np.einsum("str,st->sr", lags, target, optimize=True)
    penalty = np.full(q + r, RIDGE * rows)
    penalty[0] = 0.0  # the intercept is not shrunk
    gram += np.diag(penalty)
    beta = np.linalg.solve(gram, moment[:, :, None])[:, :, 0]
    future = design(spec, n, n + horizon, n)  # (horizon, q)
    path = np.empty((count, n + horizon))
    path[:, :n] = z
    path[:, n:] = beta[:, :q] @ future.T
    weights = beta[:, q:]
    for step in range(n, n + horizon):
        for j, lag in enumerate(spec.lags):
            path[:, step] += weights[:, j] * path[:, step - lag]
    return path[:, n:]


def _chunks(count: int, per_series: int) -> Iterator[slice]:
    size = max(1, CHUNK_VALUES // max(per_series, 1))
    for first in range(0, count, size):
        yield slice(first, min(count, first + size))


@dataclass(frozen=True)
class _Scale:
    """How a group of series was transformed, to undo it after the forecast."""

    kind: Ints  # 0: on its own scale, 1: log, 2: log(y + offset)
    offset: Floats
    centre: Floats
    spread: Floats


def _transform(y: Floats, use_log: bool) -> tuple[Floats, _Scale]:
    """Logs where defined, then standardised per series (a flat series gets spread 1)."""
    positive = np.all(y > 0, axis=1) & use_log
    nonneg = np.all(y >= 0, axis=1) & ~positive & use_log
    offset = np.where(nonneg, ZERO_OFFSET * y.mean(axis=1), 0.0)
    nonneg &= offset > 0  # an all-zero series stays on its own scale
    kind = np.where(positive, 1, np.where(nonneg, 2, 0)).astype(np.int64)
    logged = kind[:, None] > 0
    z = np.where(logged, np.log(np.where(logged, y + offset[:, None], 1.0)), y)
    centre = z.mean(axis=1)
    spread = z.std(axis=1)
    spread = np.where(spread > 1e-12 * np.maximum(np.abs(centre), 1.0), spread, 0.0)
    z = (z - centre[:, None]) / np.where(spread > 0, spread, 1.0)[:, None]
    return z, _Scale(kind, offset, centre, spread)


def _untransform(z: Floats, scale: _Scale) -> Floats:
    values = z * scale.spread[:, None] + scale.centre[:, None]
    logged = scale.kind[:, None] > 0
    with np.errstate(over="ignore"):
        back = np.exp(np.where(logged, values, 0.0)) - scale.offset[:, None]
    return np.where(logged, back, values)


def _seasonal_naive(y: Floats, seasons: tuple[int, ...], horizon: int) -> Floats:
    """The value one main season ago (Naive when the history is shorter), per row of ``y``."""
    n = y.shape[1]
    season = next((s for s in seasons if n >= s), 1)
    steps = n - season + np.arange(horizon) % season
    return y[:, steps]


def card_forecasts(y: Floats, task: ForecastTask, params: CardParams) -> Floats:
    """Card's forecasts ``(series, horizon)`` for a group of equal-length series ``y``."""
    seasons = seasons_of(task)
    horizon = task.horizon
    count, n = y.shape
    if n < Card.capabilities.min_history:  # below what any regression can be fitted on
        return _seasonal_naive(y, seasons, horizon)
    z, scale = _transform(y, params.log)
    trends = {"average": (True, False), "with": (True,), "without": (False,)}[params.trend]
    total = np.zeros((count, horizon))
    for trend in trends:
        spec = spec_for(n, seasons, trend, params.harmonics)
        out = np.empty((count, horizon))
        for part in _chunks(count, (n - spec.max_lag) * spec.width):
            out[part] = fit_forecast(z[part], spec, horizon)
        total += _untransform(out, scale)
    forecast = total / len(trends)
    low, high = y.min(axis=1), y.max(axis=1)
    reach = CLIP_RANGES * (high - low)
    with np.errstate(invalid="ignore"):
        absurd = ~np.all(
            np.isfinite(forecast)
            & (forecast >= (low - reach)[:, None])
            & (forecast <= (high + reach)[:, None]),
            axis=1,
        )
    absurd |= scale.spread == 0  # flat history: a flat forecast, exactly
    if absurd.any():
        forecast[absurd] = _seasonal_naive(y[absurd], seasons, horizon)
    nonneg = low >= 0
    forecast[nonneg] = np.maximum(forecast[nonneg], 0.0)
    return forecast


@dataclass(frozen=True)
class CardParams:
    """Card's parameters, checked."""

    max_history: int | None = None
    harmonics: int = 3
    trend: str = "average"
    log: bool = True

    def kept(self, task: ForecastTask) -> int:
        """Points kept per series (the newest)."""
        if self.max_history is not None:
            return self.max_history
        return max(DEFAULT_MIN_CAP, 6 * max(seasons_of(task), default=1))


def _whole(name: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ConfigError(
            f"model 'Card': {name} must be a whole number of at least {least}, got {value!r}"
        )
    return int(value)


class Card:
    """Least-squares autoregression in logs with seasonal dummies and Fourier terms, averaged
    over a specification with and without trend (after Doornik, Castle and Hendry)."""

    name: ClassVar[str] = "Card"
    capabilities: ClassVar[Capabilities] = Capabilities(
        intervals=False, min_history=4, cost="fast", windows_in_one_call=True
    )
    _accepted: ClassVar[tuple[str, ...]] = ("max_history", "harmonics", "trend", "log")

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self._accepted))
        if unknown:
            raise ConfigError(
                f"model 'Card' has no parameter {', '.join(map(repr, unknown))}; "
                f"it accepts: {', '.join(self._accepted)}"
            )
        max_history = params.get("max_history")
        trend = params.get("trend", "average")
        if trend not in ("average", "with", "without"):
            raise ConfigError(
                f"model 'Card': trend must be 'average', 'with' or 'without', got {trend!r}"
            )
        log = params.get("log", True)
        if not isinstance(log, bool):
            raise ConfigError(f"model 'Card': log must be true or false, got {log!r}")
        self.params = CardParams(
            max_history=None if max_history is None else _whole("max_history", max_history, 4),
            harmonics=_whole("harmonics", params.get("harmonics", 3), 0),
            trend=trend,
            log=log,
        )

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        """Forecast every series of ``history``, one vectorised fit per history length."""
        batch = split_series(history)
        runs = batch.runs
        if runs.count == 0:
            return empty_forecast(replace(task, levels=()))
        mean = forecast_runs(runs, task, self.params)
        return pd.DataFrame(
            {
                "unique_id": np.repeat(batch.ids, task.horizon),
                "ds": future_stamps(batch.last_ds, task.horizon, task.frequency),
                "yhat": mean.reshape(-1),
            }
        )


def forecast_runs(runs: Runs, task: ForecastTask, params: CardParams) -> Floats:
    """Card's forecasts ``(series, horizon)`` for every run, grouped by (capped) length and cut
    into chunks of about ``CHUNK_VALUES`` values, so memory stays bounded on any batch."""
    kept = np.minimum(runs.lengths, params.kept(task))
    out = np.empty((runs.count, task.horizon))
    for length in np.unique(kept).tolist():
        group = np.flatnonzero(kept == length)
        for part in _chunks(len(group), length):
            chosen = group[part]
            first = runs.ends[chosen] - length
            y = runs.y[first[:, None] + np.arange(length)]
            out[chosen] = card_forecasts(y, task, params)
    return out

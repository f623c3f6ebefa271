"""Calibrated prediction intervals: conformal quantiles of scaled backtest errors.

A series' own backtest has a handful of errors per horizon step (one per window), too few to
take a 95% quantile of. Errors divided by each series' own scale are comparable across series,
so they are pooled over the whole partition, and every published forecast gets

    yhat ± q_L(step) × factor_L × scale_series

- ``scale_series``: the mean absolute one-step change over the series' recent history (the
  last ``max(RECENT_SEASONS seasons, RECENT_HORIZONS horizons)`` points: the level of noise
  now, not decades ago), at each backtest
  window's cutoff for the errors and at the end of the history for the forecast; the mean
  |level| when that is zero or undefined, then 1.0. (On development data the one-step change
  calibrated as well as the seasonal one on hourly data and better on weekly data.)
- ``q_L(step)``: the split-conformal quantile of scaled absolute backtest errors over all
  series and windows: the ``ceil((n + 1) L)``-th smallest of the ``n`` errors, the largest
  when that rank exceeds ``n``. The errors are out of sample for the choice of model, as the
  future is for the published forecast: at each window, those of the model the series would
  have published on its other windows alone, which is its published model (an ensemble's
  errors scored as it is published) when that scored within ``CHOICE_TOLERANCE`` (25%) of the
  best model there, else the best (lowest mean scaled error). The tolerance follows the
  selection, which keeps a series' combination unless a single model was clearly better;
  a plain best-of-the-other-windows choice is noisier than the published one. A series with a
  single window uses its published model's errors. On development data (each half also one
  horizon earlier): the published model's own errors, which it won on, covered M4 Weekly
  0.78 / 0.96 and 0.78 / 0.94 at 80 / 95%; the plain other-window choice 0.83 / 0.97 and
  0.81 / 0.95; this rule 0.80 / 0.96 and 0.79 / 0.95 (GEFCom2012, a partition per hidden
  week, 0.79 / 0.93; smart meters 0.82 / 0.96 and 0.81 / 0.95).
  Errors of the steps within ``SMOOTH_STEPS`` of the horizon around each step are pooled
  with it (a half-hourly horizon of 336 steps has few errors per step), then the quantiles
  are made non-decreasing in the step by the least-squares non-decreasing fit
  (pool-adjacent-violators): uncertainty does not shrink further ahead,
  and an hourly horizon's daily peaks are averaged with the hours around them instead of
  widening every later step (the running maximum over-covered GEFCom2012 and smart meters by
  4-9 points at 80%).
- ``factor_L``: one width factor per level, tuned on the newest window (window 0): the
  conformal quantile (at ``L``) of its errors divided by ``q`` from the older windows alone.
  Only the part beyond ``FACTOR_TOLERANCE`` widens (``factor / FACTOR_TOLERANCE``, clamped
  to ``FACTOR_RANGE``; 1.0 with a single window): on development data (M4 Weekly,
  GEFCom2012, smart meters, each also one horizon earlier) the newest window's ratio ranged
  0.84-1.11 without predicting the future's, and applying it moved coverage away from the
  level as often as towards it; a newest window clearly harder than the older ones (a
  volatility that has risen) still widens the bounds. It never narrows them.

Because the errors are pooled, a series' bounds depend on the other series of its partition:
the same partition gives the same bounds on any engine (both engines partition the same way),
but moving a series to another partition changes its width a little.

Series whose model has no backtest errors (a fallback that was not a candidate) still get
calibrated bounds when the partition has a pool, their own scale times the pooled quantile;
with no pool at all (every series too short to backtest), :func:`history_halves` gives the
quantile of the one-step changes times sqrt(step).

Plain functions on arrays and frames, no I/O and no global state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from steadycast.forecasting._segments import Layout, comparable, rows_up_to

__all__ = [
    "CHOICE_TOLERANCE",
    "FACTOR_RANGE",
    "FACTOR_TOLERANCE",
    "RECENT_HORIZONS",
    "RECENT_SEASONS",
    "Calibration",
    "calibrate",
    "calibrated_halves",
    "conformal_quantile",
    "history_halves",
    "nondecreasing",
    "recent_scales",
]

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

RECENT_SEASONS = 1
RECENT_HORIZONS = 10
FACTOR_RANGE = (1.0, 3.0)
FACTOR_TOLERANCE = 1.25
CHOICE_TOLERANCE = 0.25
SMOOTH_STEPS = 0.01
SCALE_LAG = 1


@dataclass(frozen=True)
class Calibration:
    """The pooled, calibrated half-width per step and level, in units of a series' scale.

    ``steps``: the scored steps (sorted); ``q``: ``(len(steps), len(levels))``, the conformal
    quantile over all windows times ``factor``, non-decreasing in the step; ``factor``: the
    width factor per level; ``errors``: how many scaled errors were pooled.
    """

    steps: Ints
    q: Floats
    factor: Floats
    errors: int
    lag: int
    recent: int

    def at(self, steps: Ints) -> Floats:
        """``q`` at each of ``steps``; a step past the last scored one takes the last."""
        column = np.clip(np.searchsorted(self.steps, steps, side="right") - 1, 0, None)
        return self.q[column]


def conformal_quantile(values: Floats, level: float) -> float:
    """The split-conformal quantile at ``level`` (0..1) of ``values`` (NaN ignored): the
    ``ceil((n + 1) level)``-th smallest, the largest when that rank exceeds ``n``; NaN for
    no values."""
    finite = np.sort(values[~np.isnan(values)])
    n = len(finite)
    if n == 0:
        return float("nan")
    rank = int(np.ceil((n + 1) * level - 1e-9))
    return float(finite[min(max(rank, 1), n) - 1])


def _step_table(step: Ints, error: Floats, steps: Ints, levels: Sequence[int]) -> Floats:
    """Per scored step and level, the conformal quantile of the errors at that step (and its
    neighbours), made non-decreasing in the step by :func:`nondecreasing`."""
    table = np.full((len(steps), len(levels)), np.nan)
    order = np.argsort(step, kind="stable")
    step, error = step[order], error[order]
    width = int(SMOOTH_STEPS * len(steps))
    for j in range(len(steps)):
        lo, hi = steps[max(j - width, 0)], steps[min(j + width, len(steps) - 1)]
        here = error[np.searchsorted(step, lo) : np.searchsorted(step, hi, side="right")]
        for k, level in enumerate(levels):
            table[j, k] = conformal_quantile(here, level / 100)
    for k in range(len(levels)):
        table[:, k] = nondecreasing(table[:, k])
    return table


def nondecreasing(values: Floats) -> Floats:
    """The least-squares non-decreasing fit of ``values`` (pool-adjacent-violators); NaN
    entries (steps without errors) take the fit of the step before, NaN before the first."""
    out = np.full(len(values), np.nan)
    known = np.flatnonzero(~np.isnan(values))
    if not len(known):
        return out
    sums: list[float] = []
    counts: list[int] = []
    for value in values[known].tolist():
        sums.append(value)
        counts.append(1)
        while len(sums) > 1 and sums[-2] * counts[-1] > sums[-1] * counts[-2]:
            total, count = sums.pop(), counts.pop()
            sums[-1] += total
            counts[-1] += count
    out[known] = np.repeat(np.divide(sums, counts), counts)
    # Carry the fit forward over steps without errors (a later step is never narrower).
    filled = np.where(np.isnan(out), -np.inf, out)
    carried: Floats = np.maximum.accumulate(filled)
    return np.where(np.isneginf(carried), np.nan, carried)


def recent_scales(y: Floats, starts: Ints, ends: Ints, lag: int, recent: int) -> Floats:
    """Mean |y_t − y_{t−lag}| over rows ``max(start, end − recent) .. end`` of each query (rows
    of ``y``), never 0 or NaN: the one-step change when ``lag`` has none, then the mean
    |level|, then 1.0."""
    begins = np.maximum(starts, ends - recent)
    out = np.full(len(starts), np.nan)
    for step in dict.fromkeys((max(int(lag), 1), 1)):
        todo = np.flatnonzero(np.isnan(out))
        if not len(todo):
            break
        diff = np.full(len(y), np.nan)
        if len(y) > step:
            diff[step:] = np.abs(y[step:] - y[:-step])
        # A change is inside the window when both of its points are.
        first = begins[todo] + step
        out[todo] = _segment_means(diff, first, ends[todo])
    bad = np.flatnonzero(~(np.isfinite(out) & (out > 0)))
    if len(bad):
        out[bad] = _segment_means(np.abs(y), begins[bad], ends[bad])
    out[~(np.isfinite(out) & (out > 0))] = 1.0
    return out


def _segment_means(values: Floats, begins: Ints, ends: Ints) -> Floats:
    """NaN-ignoring mean of ``values[b:e]`` for each pair (NaN when empty): sums over each
    segment alone, so a series' result does not depend on its neighbours."""
    ok = ~np.isnan(values)
    padded = np.r_[np.where(ok, values, 0.0), 0.0]
    counted = np.r_[ok.astype(np.float64), 0.0]
    out = np.full(len(begins), np.nan)
    live = np.flatnonzero(ends > begins)
    if not len(live):
        return out
    edges = np.column_stack([begins[live], ends[live]]).reshape(-1)
    sums = np.add.reduceat(padded, edges)[::2]
    counts = np.add.reduceat(counted, edges)[::2]
    with np.errstate(invalid="ignore", divide="ignore"):
        out[live] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return out


def _recent(season_length: int, horizon: int) -> int:
    return max(RECENT_SEASONS * max(season_length, 1), RECENT_HORIZONS * horizon)


def calibrate(
    window_forecasts: pd.DataFrame,
    layout: Layout,
    pairs: pd.MultiIndex,
    season_length: int,
    horizon: int,
    levels: Sequence[int],
) -> Calibration | None:
    """The partition's calibration from the backtest ``window_forecasts`` (``unique_id, model,
    window, cutoff, step, y, yhat``) of the ``(unique_id, model)`` ``pairs`` that were
    published; None when those have no scored error."""
    fc = window_forecasts
    if fc.empty or not len(pairs) or not levels:
        return None
    y = fc["y"].to_numpy(dtype=float)
    yhat = fc["yhat"].to_numpy(dtype=float)
    at = pd.Index(layout.ids).get_indexer(fc["unique_id"].to_numpy(dtype=object))
    usable = np.flatnonzero(~(np.isnan(y) | np.isnan(yhat)) & (at >= 0))
    if not len(usable):
        return None
    rows = fc.iloc[usable]
    at = at[usable]
    keys = pd.MultiIndex.from_arrays(
        [rows["unique_id"].to_numpy(dtype=object), rows["model"].to_numpy(dtype=object)]
    )
    published = pairs.get_indexer_for(keys) >= 0
    if not published.any():
        return None
    cutoffs = comparable(rows["cutoff"]).astype("datetime64[ns]").view(np.int64)
    counts = rows_up_to(layout.ticks, layout.starts[at], layout.lengths[at], cutoffs)
    recent = _recent(season_length, horizon)
    y_all = layout.frame["y"].to_numpy(dtype=float)
    starts = layout.starts[at]
    scale = recent_scales(y_all, starts, starts + counts, SCALE_LAG, recent)
    error = np.abs(y[usable] - yhat[usable]) / scale
    step = rows["step"].to_numpy(dtype=np.int64)
    window = rows["window"].to_numpy(dtype=np.int64)
    used = _out_of_sample(keys, window, error, published)
    steps = np.unique(step[used])
    q_all = _step_table(step[used], error[used], steps, levels)
    factor = _factors(used, window, step, error, steps, levels)
    q = q_all * factor[None, :]
    # Wider at a higher level, whatever the factors did.
    order = np.argsort(np.asarray(levels))
    q[:, order] = np.fmax.accumulate(q[:, order], axis=1)
    return Calibration(steps, q, factor, int(used.sum()), SCALE_LAG, recent)


def _out_of_sample(
    keys: pd.MultiIndex, window: Ints, error: Floats, published: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """Which error rows ``q`` is taken from: at each window, those of the model each series
    would have published on its other windows alone (see the module docstring); the published
    model's rows for a series with no other window."""
    pair, series = _pairs(keys)
    n_series = int(series.max()) + 1 if len(series) else 0
    is_published = np.zeros(len(series), dtype=bool)
    is_published[pair[published]] = True
    used = np.zeros(len(keys), dtype=bool)
    for w in np.unique(window).tolist():
        other = window != w
        sums = np.bincount(pair[other], weights=error[other], minlength=len(series))
        counts = np.bincount(pair[other], minlength=len(series))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)
        ranked = np.lexsort((mean, series))
        first = ranked[np.r_[True, series[ranked][1:] != series[ranked][:-1]]]
        chosen = np.zeros(len(series), dtype=bool)
        chosen[first[counts[first] > 0]] = True
        best = np.full(n_series, np.inf)
        np.minimum.at(best, series, mean)
        kept = is_published & (counts > 0) & (mean <= best[series] * (1 + CHOICE_TOLERANCE))
        keeps = np.zeros(n_series, dtype=bool)
        keeps[series[kept]] = True
        chosen = np.where(keeps[series], kept, chosen)
        used |= chosen[pair] & (window == w)
    row_series = series[pair]
    covered = np.zeros(n_series, dtype=bool)
    covered[row_series[used]] = True
    out: npt.NDArray[np.bool_] = used | (published & ~covered[row_series])
    return out


def _pairs(keys: pd.MultiIndex) -> tuple[Ints, Ints]:
    """Each row's ``(unique_id, model)`` pair and each pair's series, both numbered in order of
    first appearance: what factorizing the index's tuples gives, from its integer codes (a
    partition's error rows run to millions; building their tuples cost more than the rest)."""
    width = len(keys.levels[1])
    combined = keys.codes[0].astype(np.int64) * width + keys.codes[1]
    pair, uniques = pd.factorize(combined)
    series = pd.factorize(uniques // width)[0]
    return pair.astype(np.int64), series.astype(np.int64)


def _factors(
    used: npt.NDArray[np.bool_],
    window: Ints,
    step: Ints,
    error: Floats,
    steps: Ints,
    levels: Sequence[int],
) -> Floats:
    """The width factor per level (see the module docstring): how much harder the newest
    window (0) was than ``q`` of the older windows, beyond ``FACTOR_TOLERANCE``; 1.0 when
    either side has no errors."""
    factor = np.ones(len(levels))
    newest = window == 0
    calib = used & ~newest
    latest = np.flatnonzero(used & newest)
    if not calib.any() or not len(latest):
        return factor
    q_old = _step_table(step[calib], error[calib], steps, levels)
    column = np.clip(np.searchsorted(steps, step[latest]), 0, len(steps) - 1)
    e = error[latest]
    for k, level in enumerate(levels):
        base = q_old[column, k]
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(base > 0, e / base, np.where(e > 0, np.inf, 0.0))
        ratio[np.isnan(base)] = np.nan
        found = conformal_quantile(ratio, level / 100)
        if not np.isnan(found):
            factor[k] = float(np.clip(found / FACTOR_TOLERANCE, *FACTOR_RANGE))
    return factor


def calibrated_halves(
    calibration: Calibration, layout: Layout, ids: npt.NDArray[Any], steps: Ints
) -> Floats:
    """Half-widths ``(len(ids), levels)`` for forecast rows ``(ids, steps)``: the pooled
    quantile at the step times the series' scale at the end of its history."""
    series, series_of = np.unique(ids.astype(str), return_inverse=True)
    at = pd.Index(layout.ids).get_indexer(series)
    scales = np.ones(len(series))
    known = at >= 0
    if known.any():
        starts = layout.starts[at[known]]
        y = layout.frame["y"].to_numpy(dtype=float)
        scales[known] = recent_scales(
            y, starts, starts + layout.lengths[at[known]], calibration.lag, calibration.recent
        )
    halves: Floats = calibration.at(steps) * scales[series_of.reshape(-1)][:, None]
    return halves


def history_halves(
    layout: Layout, ids: npt.NDArray[Any], steps: Ints, levels: Sequence[int]
) -> Floats:
    """Half-widths from the quantile (level L, "higher") of the series' one-step changes,
    grown by sqrt(step): the random-walk growth of the naive forecast's error."""
    series, series_of = np.unique(ids.astype(str), return_inverse=True)
    at = pd.Index(layout.ids).get_indexer(series)
    known = np.flatnonzero(at >= 0)
    quantiles = np.zeros((len(series), len(levels)))
    if len(known):
        y = layout.frame["y"].to_numpy(dtype=float)
        rows = layout.rows(at[known], 1)  # every point after the first
        label = np.repeat(np.arange(len(known)), layout.lengths[at[known]] - 1)
        change = np.abs(y[rows] - y[rows - 1])
        order = np.lexsort((change, label))
        label, change = label[order], change[order]
        count = np.bincount(label[~np.isnan(change)], minlength=len(known))
        first = np.searchsorted(label, np.arange(len(known)))
        has = count > 0
        for li, level in enumerate(levels):
            where = level / 100 * (count[has] - 1).astype(np.float64)
            index = where.astype(np.int64)
            index = np.where(where == index, index, index + 1)
            values = np.zeros(len(known))
            values[has] = change[first[has] + index]
            quantiles[known, li] = values
    result = quantiles[series_of.reshape(-1)] * np.sqrt(steps.astype(float))[:, None]
    return np.asarray(result, dtype=float)

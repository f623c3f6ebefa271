"""Scale-free accuracy metrics, as plain functions with one shared signature.

Every metric is called the same way, so a list of them can be applied in one pass
(:func:`evaluate`) and a new one is a function, not a class::

    metric(df, models, train_df, season_length, *, id_col, time_col, target_col, cutoff_col)
        -> one row per series (and per ``cutoff`` when ``df`` has that column), one column per model

``df`` is wide, in the convention of utilsforecast and statsforecast's cross-validation: the
actuals in ``target_col``, one point-forecast column per model, and interval bounds named
``{model}-lo-{level}`` / ``{model}-hi-{level}``. ``train_df`` is the history the forecasts were
made from (long format); when ``df`` has a ``cutoff`` column only the history up to each cutoff
is used for that cutoff's scale, so a backtest can pass the full history without leaking.

Definitions (those of the M4 competition, so the published tables can be reproduced):

- ``smape``: 200 · mean |y − ŷ| / (|y| + |ŷ|); a point where y = ŷ = 0 scores 0 (perfect).
- ``mase``: mean |y − ŷ| / mean |yₜ − yₜ₋ₘ| over the in-sample history (m = season length).
- ``rmsse``: sqrt(mean (y − ŷ)² / mean (yₜ − yₜ₋ₘ)²), the M5 variant of MASE.
- ``coverage(L)``: share of actuals inside the level-L interval; NaN for a model without bounds.
- :func:`owa`: ½ (sMAPE / sMAPE_Naive2 + MASE / MASE_Naive2), on averages over series.

Zero or undefined scale. A constant history has a seasonal-naive error of 0, which would make
MASE and RMSSE infinite (or NaN when the forecast is perfect) and break the ranking of models.
The scale is therefore replaced, in this order, by: the lag-1 (naive) scale when the history is
shorter than one season plus one point; the mean absolute (or squared) level of the history when
the scale is still 0 or undefined; 1.0 when the history is all zeros. Any positive per-series
constant keeps the ranking of models on that series unchanged, which is all selection needs, and
keeps every score finite; the fallback only matters for averages across series.

The same numbers on arrays. The backtest scores hundreds of thousands of window forecasts per
partition; :func:`block_scores` computes the built-in metrics from ``(groups, steps)`` arrays and
:func:`series_scales` the in-sample scales of many history prefixes in one pass, adding the same
values in the same order as pandas does behind :func:`evaluate`
(``steadycast.forecasting._segments``), so the scores are the same bits whichever way they were
computed.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np
import pandas as pd
import utilsforecast.losses as ufl

from steadycast.forecasting._segments import RunningMean, comparable, prefix_means, rows_up_to

__all__ = [
    "DEFAULT_METRICS",
    "Metric",
    "block_scores",
    "coverage",
    "evaluate",
    "insample_scale",
    "mase",
    "metric_name",
    "owa",
    "rmsse",
    "series_scales",
    "smape",
]


class Metric(Protocol):
    """The one signature every metric shares (see the module docstring)."""

    __name__: str

    def __call__(
        self,
        df: pd.DataFrame,
        models: Sequence[str],
        train_df: pd.DataFrame,
        season_length: int,
        *,
        id_col: str = ...,
        time_col: str = ...,
        target_col: str = ...,
        cutoff_col: str = ...,
    ) -> pd.DataFrame: ...


def _group_cols(df: pd.DataFrame, id_col: str, cutoff_col: str) -> list[str]:
    return [cutoff_col, id_col] if cutoff_col in df.columns else [id_col]


def smape(
    df: pd.DataFrame,
    models: Sequence[str],
    train_df: pd.DataFrame,
    season_length: int,
    *,
    id_col: str = "unique_id",
    time_col: str = "ds",
    target_col: str = "y",
    cutoff_col: str = "cutoff",
) -> pd.DataFrame:
    """M4 sMAPE in percent (0..200); utilsforecast's is the same ratio without the factor 200."""
    del train_df, season_length, time_col  # part of the shared signature, unused here
    out = ufl.smape(df, list(models), id_col=id_col, target_col=target_col, cutoff_col=cutoff_col)
    out[list(models)] = out[list(models)] * 200.0
    return out


def insample_scale(
    train_df: pd.DataFrame,
    df: pd.DataFrame,
    season_length: int,
    *,
    power: int = 1,
    id_col: str = "unique_id",
    time_col: str = "ds",
    target_col: str = "y",
    cutoff_col: str = "cutoff",
) -> pd.DataFrame:
    """Mean |yₜ − yₜ₋ₘ|**power of each series' history (up to each cutoff), never 0 or NaN.

    Returns the group columns of ``df`` and ``scale``. The fallbacks for a zero or undefined
    scale are described in the module docstring.
    """
    group_cols = _group_cols(df, id_col, cutoff_col)
    keys = df[group_cols].drop_duplicates()
    key_codes, uniques = pd.factorize(keys[id_col])
    # Only the series ``df`` asks about matter; the history is cut into runs of them once.
    codes = pd.Index(uniques).get_indexer(train_df[id_col])
    kept = np.flatnonzero(codes >= 0)
    codes = codes[kept]
    times = comparable(train_df[time_col]).take(kept)
    values = train_df[target_col].to_numpy(dtype=float)[kept]
    order = np.lexsort((times, codes)) if not _grouped_in_time(codes, times) else None
    if order is not None:
        codes, times, values = codes[order], times[order], values[order]
    starts = np.searchsorted(codes, np.arange(len(uniques)), side="left").astype(np.int64)
    lengths = np.searchsorted(codes, np.arange(len(uniques)), side="right") - starts
    asked = key_codes >= 0
    series = np.where(asked, key_codes, 0).astype(np.int64)
    if cutoff_col in df.columns:
        counts = rows_up_to(times, starts[series], lengths[series], comparable(keys[cutoff_col]))
    else:
        counts = lengths[series].copy()
    counts[~asked] = 0
    scale = series_scales(values, starts, lengths, series, counts, season_length, (power,))
    return keys.reset_index(drop=True).assign(scale=scale[:, 0])


def series_scales(
    y: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    series: np.ndarray,
    counts: np.ndarray,
    season_length: int,
    powers: Sequence[int] = (1,),
) -> np.ndarray:
    """:func:`insample_scale` on arrays: the scale of the first ``counts[q]`` points of series
    ``series[q]``, where series ``i`` is ``y[starts[i]:starts[i] + lengths[i]]`` in time order,
    for each of ``powers`` (a column each).

    The same bits as the frame-based definition (pandas' compensated means over the same
    values in the same order); a query with no points gets 1.0.
    """
    y = np.asarray(y, dtype=float)
    lag = max(int(season_length), 1)
    # One pass over the history for every power at once.
    with np.errstate(all="ignore"):  # as pandas: inf - inf is NaN, silently
        losses = np.column_stack([_lagged_loss(y, starts, lengths, lag, p) for p in powers])
    scales = prefix_means(losses, starts, lengths, series, counts)
    for k, power in enumerate(powers):
        scale = scales[:, k]

        def mean_of(values: np.ndarray, which: np.ndarray) -> np.ndarray:
            return prefix_means(values, starts, lengths, series[which], counts[which])

        if season_length > 1:
            # Shorter than a season plus one point: the naive (lag-1) scale instead.
            missing = np.flatnonzero(np.isnan(scale))
            if len(missing):
                with np.errstate(all="ignore"):
                    loss = _lagged_loss(y, starts, lengths, 1, power)
                scale[missing] = mean_of(loss, missing)
        with np.errstate(invalid="ignore"):
            bad = np.flatnonzero(~(np.isfinite(scale) & (scale > 0)))
        if len(bad):
            with np.errstate(all="ignore"):
                level = np.abs(y) ** power
            scale[bad] = mean_of(level, bad)
            with np.errstate(invalid="ignore"):
                scale[~(np.isfinite(scale) & (scale > 0))] = 1.0
    return scales


def _lagged_loss(
    y: np.ndarray, starts: np.ndarray, lengths: np.ndarray, lag: int, power: int
) -> np.ndarray:
    """|yₜ − yₜ₋ₗₐ₉|**power within each series (NaN for its first ``lag`` points)."""
    diff = np.full(len(y), np.nan)
    diff[lag:] = y[lag:] - y[:-lag]
    position = np.arange(len(y)) - np.repeat(starts, lengths)
    diff[position < lag] = np.nan
    loss: np.ndarray = np.abs(diff) if power == 1 else diff**power
    return loss


def _grouped_in_time(codes: np.ndarray, times: np.ndarray) -> bool:
    """Whether rows are already sorted by series code, then time."""
    if len(codes) < 2:
        return True
    same = codes[1:] == codes[:-1]
    if not bool(np.all(same | (codes[1:] > codes[:-1]))):
        return False
    with np.errstate(invalid="ignore"):
        return bool(np.all((times[1:] >= times[:-1]) | ~same))


def _scaled(
    errors: pd.DataFrame,
    scale: pd.DataFrame,
    models: Sequence[str],
    group_cols: list[str],
) -> pd.DataFrame:
    out = errors.merge(scale, on=group_cols, how="left")
    out[list(models)] = out[list(models)].div(out["scale"], axis=0)
    return out.drop(columns="scale")


def _insample_relative(
    error: Callable[..., pd.DataFrame],
    power: int,
    df: pd.DataFrame,
    models: Sequence[str],
    train_df: pd.DataFrame,
    season_length: int,
    id_col: str,
    time_col: str,
    target_col: str,
    cutoff_col: str,
) -> pd.DataFrame:
    """An error of the forecasts over the same error of the in-sample seasonal naive."""
    errors = error(df, list(models), id_col=id_col, target_col=target_col, cutoff_col=cutoff_col)
    scale = insample_scale(
        train_df,
        df,
        season_length,
        power=power,
        id_col=id_col,
        time_col=time_col,
        target_col=target_col,
        cutoff_col=cutoff_col,
    )
    return _scaled(errors, scale, models, _group_cols(df, id_col, cutoff_col))


def mase(
    df: pd.DataFrame,
    models: Sequence[str],
    train_df: pd.DataFrame,
    season_length: int,
    *,
    id_col: str = "unique_id",
    time_col: str = "ds",
    target_col: str = "y",
    cutoff_col: str = "cutoff",
) -> pd.DataFrame:
    """M4 MASE: mean absolute error over the in-sample seasonal-naive mean absolute error."""
    return _insample_relative(
        ufl.mae, 1, df, models, train_df, season_length, id_col, time_col, target_col, cutoff_col
    )


def rmsse(
    df: pd.DataFrame,
    models: Sequence[str],
    train_df: pd.DataFrame,
    season_length: int,
    *,
    id_col: str = "unique_id",
    time_col: str = "ds",
    target_col: str = "y",
    cutoff_col: str = "cutoff",
) -> pd.DataFrame:
    """Root mean squared error over the in-sample seasonal-naive mean squared error (M5)."""
    out = _insample_relative(
        ufl.mse, 2, df, models, train_df, season_length, id_col, time_col, target_col, cutoff_col
    )
    out[list(models)] = np.sqrt(out[list(models)])
    return out


def coverage(level: int) -> Metric:
    """The metric "share of actuals inside the level-``level`` interval", named ``coverage_L``.

    A factory, so coverage at each level has the shared signature and its own name. A model
    whose bounds are missing (column absent or NaN) gets NaN, not a coverage of 0.
    """

    def coverage_at_level(
        df: pd.DataFrame,
        models: Sequence[str],
        train_df: pd.DataFrame,
        season_length: int,
        *,
        id_col: str = "unique_id",
        time_col: str = "ds",
        target_col: str = "y",
        cutoff_col: str = "cutoff",
    ) -> pd.DataFrame:
        del train_df, season_length, time_col
        group_cols = _group_cols(df, id_col, cutoff_col)
        work = df.copy()
        missing: dict[str, pd.Series] = {}
        for model in models:
            lo, hi = f"{model}-lo-{level}", f"{model}-hi-{level}"
            if lo not in work.columns or hi not in work.columns:
                work[lo] = np.nan
                work[hi] = np.nan
            missing[model] = work[lo].isna() | work[hi].isna()
        out = ufl.coverage(
            work, list(models), level, id_col=id_col, target_col=target_col, cutoff_col=cutoff_col
        )
        no_bounds = (
            pd.DataFrame(missing).assign(**{c: work[c] for c in group_cols}).groupby(group_cols)
        ).any()
        out = out.set_index(group_cols)
        out[list(models)] = out[list(models)].astype(float).mask(no_bounds.reindex(out.index))
        return out.reset_index()

    coverage_at_level.__name__ = f"coverage_{level}"
    coverage_at_level.__qualname__ = f"coverage_{level}"
    _COVERAGE_LEVELS[coverage_at_level] = level
    return coverage_at_level


# The level of each metric made by ``coverage`` (so ``block_scores`` knows it as its own).
_COVERAGE_LEVELS: weakref.WeakKeyDictionary[Callable[..., pd.DataFrame], int] = (
    weakref.WeakKeyDictionary()
)


DEFAULT_METRICS: tuple[Metric, ...] = (mase, smape, rmsse)


def metric_name(metric: Metric) -> str:
    """The column a metric's values get in :func:`evaluate`'s output."""
    return metric.__name__


def block_scores(
    metrics: Sequence[Metric],
    y: np.ndarray,
    yhat: np.ndarray,
    bounds: Mapping[int, tuple[np.ndarray, np.ndarray]],
    scale: Callable[[Sequence[int]], np.ndarray],
) -> dict[str, np.ndarray] | None:
    """What :func:`evaluate` gives for forecasts laid out as blocks, from arrays.

    Each row of ``y`` and ``yhat`` (``groups x steps``) is one group (series and cutoff) of
    one model, its steps in time order; ``bounds`` holds ``(lo, hi)`` of the same shape per
    level the model has; ``scale(powers)`` is each group's in-sample scale for each power
    (:func:`series_scales`), asked for once. The values are the same bits as the frame-based metrics give.
    Returns None when a metric is not one of this module's (the caller then uses
    :func:`evaluate`).
    """
    out: dict[str, np.ndarray] = {}
    powers = [p for m, p in ((mase, 1), (rmsse, 2)) if any(x is m for x in metrics)]
    table = scale(powers) if powers else np.zeros((len(y), 0))
    scales: dict[int, np.ndarray] = {p: table[:, k] for k, p in enumerate(powers)}

    def scale_of(power: int) -> np.ndarray:
        return scales[power]

    def step_mean(values: np.ndarray) -> np.ndarray:
        return RunningMean.of(values[:, k] for k in range(values.shape[1]))

    with np.errstate(all="ignore"):  # as pandas' arithmetic: NaN and inf, silently
        for metric in metrics:
            name = metric_name(metric)
            level = _COVERAGE_LEVELS.get(metric)
            if metric is mase:
                out[name] = step_mean(np.abs(y - yhat)) / scale_of(1)
            elif metric is rmsse:
                out[name] = np.sqrt(step_mean((y - yhat) ** 2) / scale_of(2))
            elif metric is smape:
                ratio = np.abs(yhat - y) / (np.abs(yhat) + np.abs(y))
                ratio[(np.abs(yhat) + np.abs(y)) == 0] = 0.0
                out[name] = step_mean(ratio) * 200.0
            elif level is not None:
                if level not in bounds:
                    out[name] = np.full(len(y), np.nan)
                    continue
                lo, hi = bounds[level]
                inside = ((y >= lo) & (y <= hi)).astype(float)
                share = step_mean(inside)
                share[(np.isnan(lo) | np.isnan(hi)).any(axis=1)] = np.nan
                out[name] = share
            else:
                return None
    return out


def evaluate(
    df: pd.DataFrame,
    metrics: Sequence[Metric],
    models: Sequence[str],
    train_df: pd.DataFrame,
    season_length: int,
    *,
    id_col: str = "unique_id",
    time_col: str = "ds",
    target_col: str = "y",
    cutoff_col: str = "cutoff",
) -> pd.DataFrame:
    """Apply every metric and return a tidy frame: the group columns, ``model``, one column each.

    Rows where a model has no forecast at all (its columns are NaN for that group) are dropped,
    so a wide frame holding models that ran on different series is scored correctly.
    """
    group_cols = _group_cols(df, id_col, cutoff_col)
    models = list(models)
    present = (
        df[models]
        .notna()
        .assign(**{c: df[c] for c in group_cols})
        .groupby(group_cols, sort=True)
        .any()
        .melt(ignore_index=False, var_name="model", value_name="_present")
        .reset_index()
    )
    result = present[present["_present"]].drop(columns="_present")
    for metric in metrics:
        values = metric(
            df,
            models,
            train_df,
            season_length,
            id_col=id_col,
            time_col=time_col,
            target_col=target_col,
            cutoff_col=cutoff_col,
        )
        long = values.melt(
            id_vars=group_cols, value_vars=models, var_name="model", value_name=metric_name(metric)
        )
        result = result.merge(long, on=[*group_cols, "model"], how="left")
    return result.sort_values([*group_cols, "model"], kind="stable").reset_index(drop=True)


def owa(smape_value: float, mase_value: float, smape_naive2: float, mase_naive2: float) -> float:
    """M4's Overall Weighted Average of a method against Naive2 (< 1 beats Naive2).

    Not a per-series metric: M4 computes it from sMAPE and MASE already averaged over series.
    """
    return 0.5 * (smape_value / smape_naive2 + mase_value / mase_naive2)

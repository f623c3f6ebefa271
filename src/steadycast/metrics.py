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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import pandas as pd
import utilsforecast.losses as ufl

__all__ = [
    "DEFAULT_METRICS",
    "Metric",
    "coverage",
    "evaluate",
    "insample_scale",
    "mase",
    "metric_name",
    "owa",
    "rmsse",
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
    train = train_df[[id_col, time_col, target_col]]
    if cutoff_col in df.columns:
        cutoffs = df[[cutoff_col, id_col]].drop_duplicates()
        train = train.merge(cutoffs, on=id_col, how="inner")
        train = train[train[time_col] <= train[cutoff_col]]
    train = train.sort_values([*group_cols, time_col], kind="stable")
    grouped = train.groupby(group_cols, sort=False, observed=True)[target_col]
    loss = ufl.mae if power == 1 else ufl.mse

    def mean_loss(lag: int) -> pd.Series:
        naive = train[group_cols].assign(
            **{target_col: train[target_col], "_naive": grouped.shift(lag)}
        )
        res = loss(naive, ["_naive"], id_col=id_col, target_col=target_col, cutoff_col=cutoff_col)
        return res.set_index(group_cols)["_naive"]

    scale = mean_loss(max(int(season_length), 1))
    if season_length > 1:
        scale = scale.fillna(mean_loss(1))
    level = (
        train[group_cols]
        .assign(_level=np.abs(train[target_col].to_numpy(dtype=float)) ** power)
        .groupby(group_cols, sort=False, observed=True)["_level"]
        .mean()
        .reindex(scale.index)
    )
    scale = scale.where(np.isfinite(scale) & (scale > 0), level)
    scale = scale.where(np.isfinite(scale) & (scale > 0), 1.0)
    keys = df[group_cols].drop_duplicates().set_index(group_cols).index
    # A group with no history at all (never the case in a backtest) still gets a finite scale.
    return scale.reindex(keys).fillna(1.0).rename("scale").reset_index()


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
    return coverage_at_level


DEFAULT_METRICS: tuple[Metric, ...] = (mase, smape, rmsse)


def metric_name(metric: Metric) -> str:
    """The column a metric's values get in :func:`evaluate`'s output."""
    return metric.__name__


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

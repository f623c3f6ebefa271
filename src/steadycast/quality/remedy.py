"""Per-series remedies for forecasts the output gate would reject, before the gate judges.

A problem in a few series must not hold a whole fleet, and must not be published either: each
series is judged against its own history and fixed on its own, and the provenance says what
was done and why. The gate then holds the run only when a large share of the fleet needed a
remedy (``gate.<rule>.limit``).

    non_finite        a forecast value or bound is NaN or infinite: the series takes the
                      seasonal naive forecast of its history
    level_vs_history  the forecast's typical magnitude (median and 90th percentile of |yhat|)
                      is more than ``gate.level_vs_history.max_ratio`` times above or below
                      every reference of its history (the same positions of the last periods,
                      the last period, the last value): the series takes the seasonal naive
                      forecast (or its last value when shorter than a season)
    negative          negative values for a series never negative in its history: clipped to
                      0, its known lower bound (interval bounds too)

Provenance gains ``remedy`` (the rules that acted, "" for none) and ``level_ratio`` (the
served forecast's magnitude against its history, for the gate to judge); a replaced series'
``source`` becomes "fallback", and ``fallback_reason`` carries the sentence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from steadycast.config import PipelineConfig
from steadycast.forecasting.forecast import PartitionResult
from steadycast.quality.checks import reference_period

__all__ = ["level_ratio", "remedy"]

ID, DS, Y = "unique_id", "ds", "y"
_PERIODS = 4  # reference periods of history


def level_ratio(yhat: np.ndarray, history: np.ndarray, m: int) -> float:
    """How far the forecast's typical magnitude is from its history's, as a ratio (>1 above,
    <1 below; 1 when in line with at least one reference, or when it cannot be judged).

    ``history`` holds the series' values in time order, the forecast starting right after.
    References: the same positions of the last ``_PERIODS`` periods, the last period, the last
    value; the forecast is out of line only when beyond every one of them, for the median and
    the 90th percentile of |y| both (a unit error moves both; a quiet night only the median).
    """
    v = history[np.isfinite(history)]
    f = yhat[np.isfinite(yhat)]
    if len(v) < 2 or len(f) == 0:
        return 1.0
    period = min(reference_period(m), len(v))
    h = len(f)
    n = len(v)
    pos = n - 1 + np.arange(1, h + 1)
    refs = []
    first = -(-np.arange(1, h + 1) // period)  # periods back to land before the forecast
    for k in range(_PERIODS):
        at = pos - (first + k) * period
        refs.append(np.where(at >= 0, v[np.clip(at, 0, n - 1)], np.nan))
    seasonal = np.abs(np.concatenate(refs))
    seasonal = seasonal[np.isfinite(seasonal)]
    recent = np.abs(v[-max(period, h) :])
    last = abs(float(v[-1]))
    scale = float(np.quantile(np.abs(v[-(_PERIODS + 1) * period :]), 0.9))
    if scale <= 0:
        return 1.0
    crossing = 0.02 < float(np.mean(v < 0)) < 0.98
    floor = (0.05 if crossing else 1e-3) * scale
    af = np.abs(f)
    pairs = [
        (
            float(np.median(af)),
            [np.median(seasonal) if len(seasonal) else np.nan, float(np.median(recent)), last],
        ),
        (
            float(np.quantile(af, 0.9)),
            [
                np.quantile(seasonal, 0.9) if len(seasonal) else np.nan,
                float(np.quantile(recent, 0.9)),
                last,
            ],
        ),
    ]
    logs = [
        math.log((mine + floor) / (float(r) + floor))
        for mine, rs in pairs
        for r in rs
        if math.isfinite(float(r))
    ]
    if not logs:
        return 1.0
    if min(logs) > 0:
        return math.exp(min(logs))
    if max(logs) < 0:
        return math.exp(max(logs))
    return 1.0


def _seasonal_naive(
    v: np.ndarray, h: int, m: int, levels: list[int], nonnegative: bool
) -> tuple[str, np.ndarray, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """The seasonal naive forecast of ``v`` (Naive when shorter than a season), with bounds
    from the quantiles of its own in-sample errors."""
    m = max(1, m)
    if len(v) >= m and m > 1:
        name, yhat = "SeasonalNaive", v[-m:][np.arange(h) % m]
        errors = np.abs(v[m:] - v[:-m])
    else:
        name, yhat = "Naive", np.full(h, v[-1])
        errors = np.abs(np.diff(v))
    bounds = {}
    for level in levels:
        q = float(np.quantile(errors, level / 100, method="higher")) if len(errors) else 0.0
        lo, hi = yhat - q, yhat + q
        if nonnegative:
            lo = np.maximum(lo, 0.0)
        bounds[level] = (lo, hi)
    return name, yhat.astype(np.float64), bounds


def remedy(result: PartitionResult, history: pd.DataFrame, cfg: PipelineConfig) -> PartitionResult:
    """Apply the per-series remedies (see the module doc) to one partition's forecasts."""
    fc, prov = result.forecasts, result.provenance
    if fc is None or fc.empty or prov.empty:
        return result
    value_cols = [c for c in fc.columns if c == "yhat" or c.startswith(("yhat_lo_", "yhat_hi_"))]
    fc = fc.sort_values([ID, DS], kind="stable").reset_index(drop=True)
    hist = history.sort_values([ID, DS], kind="stable")
    hist_by = {str(k): v for k, v in hist.groupby(ID, sort=False)[Y]}
    fc_ids = fc[ID].astype(str).to_numpy()
    starts = np.flatnonzero(np.r_[True, fc_ids[1:] != fc_ids[:-1]])
    ends = np.r_[starts[1:], len(fc_ids)]
    prov = prov.copy()
    prov["remedy"] = ""
    prov["level_ratio"] = np.nan
    where = {str(u): i for i, u in enumerate(prov[ID].astype(str))}
    part = _Partition(
        cfg,
        prov,
        fc[value_cols].to_numpy(dtype=np.float64, na_value=np.nan),
        value_cols,
        fc["model"].astype(object).to_numpy() if "model" in fc else None,
    )
    for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
        uid = fc_ids[lo]
        series = hist_by.get(uid)
        row = where.get(uid)
        if series is None or row is None:
            continue
        v = series.to_numpy(dtype=np.float64)
        v = v[np.isfinite(v)]
        if len(v) == 0:
            continue
        _remedy_series(part, v, row, lo, hi)
    fc = fc.copy()
    fc[value_cols] = part.values
    if part.model is not None:
        fc["model"] = part.model
    return replace(result, forecasts=fc, provenance=part.prov)


@dataclass
class _Partition:
    """One partition's forecasts (``values``: the value columns, series by series in rows
    ``lo:hi``) and provenance, remedied in place."""

    cfg: PipelineConfig
    prov: pd.DataFrame
    values: np.ndarray
    value_cols: list[str]
    model: np.ndarray | None

    @property
    def m(self) -> int:
        return max(1, self.cfg.series.season_length)

    @property
    def yhat_col(self) -> int:
        return self.value_cols.index("yhat")

    def note(self, row: int, note: str) -> None:
        """Add a sentence to the series' ``fallback_reason``."""
        earlier = str(self.prov.at[row, "fallback_reason"] or "")
        self.prov.at[row, "fallback_reason"] = f"{earlier}; {note}" if earlier else note


def _remedy_series(part: _Partition, v: np.ndarray, row: int, lo: int, hi: int) -> None:
    """Judge one series' forecast (rows ``lo:hi``) against its finite history ``v``; replace
    it, clip it, or leave it, and say so in the provenance."""
    g = part.cfg.gate
    block = part.values[lo:hi]
    nonneg = bool((v >= 0).all())
    acted, why = [], []
    replace_it = False
    if g.non_finite.enabled and not np.isfinite(block).all():
        replace_it = True
        acted.append("non_finite")
        why.append(f"{int((~np.isfinite(block)).sum())} forecast values were NaN or infinite")
    max_ratio = float(g.level_vs_history.max_ratio)
    ratio = level_ratio(block[:, part.yhat_col], v, part.m)
    out_of_line = ratio > max_ratio or ratio < 1.0 / max_ratio
    if g.level_vs_history.enabled and not replace_it and out_of_line:
        replace_it = True
        acted.append("level_vs_history")
        side = f"{ratio:,.3g}x above" if ratio > 1 else f"{1 / ratio:,.3g}x below"
        why.append(
            f"the forecast ({part.prov.at[row, 'model']}) was {side} its history's level at "
            f"the same positions (limit {max_ratio:g}x)"
        )
    if replace_it:
        ratio = _replace_by_naive(part, block, v, row, (lo, hi), why, nonneg)
    if g.negative.enabled and nonneg and (block[:, part.yhat_col] < 0).any():
        count = int((block[:, part.yhat_col] < 0).sum())
        low = float(block[:, part.yhat_col].min())
        np.maximum(block, 0.0, out=block, where=np.isfinite(block))
        acted.append("negative")
        part.note(
            row,
            f"{count} negative forecasts (lowest {low:.4g}) clipped to 0: the series was "
            "never negative in its history",
        )
    part.values[lo:hi] = block
    part.prov.at[row, "remedy"] = ",".join(acted)
    part.prov.at[row, "level_ratio"] = ratio


def _replace_by_naive(
    part: _Partition,
    block: np.ndarray,
    v: np.ndarray,
    row: int,
    rows: tuple[int, int],
    why: list[str],
    nonneg: bool,
) -> float:
    """Replace the series' forecast by the seasonal naive forecast of its history; returns
    the new forecast's level ratio."""
    lo, hi = rows
    name, yhat, bounds = _seasonal_naive(v, hi - lo, part.m, list(part.cfg.models.levels), nonneg)
    block[:, part.yhat_col] = yhat
    for level, (b_lo, b_hi) in bounds.items():
        for col, b in ((f"yhat_lo_{level}", b_lo), (f"yhat_hi_{level}", b_hi)):
            if col in part.value_cols:
                block[:, part.value_cols.index(col)] = b
    if part.model is not None:
        part.model[lo:hi] = name
    part.prov.at[row, "model"] = name
    part.prov.at[row, "source"] = "fallback"
    part.note(row, "; ".join(why) + f"; replaced by {name}")
    return level_ratio(yhat, v, part.m)

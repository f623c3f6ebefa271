"""Series-level checks on the raw observations: freshness, completeness, flat lines, spikes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from steadycast.quality.checks._arrays import _CHUNK_CELLS, _chunks, _grouped_quantiles
from steadycast.quality.checks._frame import _Frame, _prepare
from steadycast.quality.checks._text import _fmt_num, _fmt_ts, _steps
from steadycast.quality.checks.context import CheckContext
from steadycast.quality.checks.spec import CheckResult, CheckSpec, _result

__all__ = ["check_completeness", "check_flat_line", "check_freshness", "check_spikes"]


def check_freshness(frame: pd.DataFrame, spec: CheckSpec, ctx: CheckContext) -> list[CheckResult]:
    """Fail a series whose latest data lags the pipeline's newest by more than
    ``max_lag_steps`` steps, or (with ``max_age``) is older than ``now - max_age``."""
    return _freshness(_prepare(frame, ctx), spec, ctx)


def _freshness(f: _Frame, spec: CheckSpec, ctx: CheckContext) -> list[CheckResult]:
    limit = int(spec.params["max_lag_steps"])
    max_age: pd.Timedelta | None = spec.params.get("max_age")
    now = ctx.now if ctx.now is not None else pd.Timestamp.now("UTC").tz_localize(None)
    last_rows = f.ends - 1
    lags = f.newest_idx - f.idx[last_rows]
    out = []
    for s in range(f.n_series):
        uid = str(f.ids[s])
        last = f.ts(int(last_rows[s]))
        lag = int(lags[s])
        age = now - last
        stale = lag > limit
        too_old = max_age is not None and age > max_age
        if stale:
            sentence = (
                f"series {uid!r}: latest data {_fmt_ts(last)} is {lag} steps ({ctx.frequency}) "
                f"behind the pipeline's newest {_fmt_ts(f.newest)} (limit {limit} steps)"
            )
        elif too_old:
            sentence = (
                f"series {uid!r}: latest data {_fmt_ts(last)} is {age} old "
                f"at {_fmt_ts(now)} (limit {max_age})"
            )
        else:
            sentence = (
                f"series {uid!r}: latest data {_fmt_ts(last)} is {_steps(lag)} behind the "
                f"pipeline's newest (limit {limit})"
            )
        out.append(
            _result(
                spec,
                uid,
                not (stale or too_old),
                sentence,
                value=float(lag),
                threshold=float(limit),
                at=last,
            )
        )
    return out


def check_completeness(
    frame: pd.DataFrame, spec: CheckSpec, ctx: CheckContext
) -> list[CheckResult]:
    """Fail a series missing more than ``max_missing_share`` of the steps of its last
    ``lookback_steps`` (from its first observation when shorter), or with a gap longer than
    ``max_gap_steps`` in that window (prepare cuts history before such a gap, so the series
    trains on less than it seems to have). The window keeps a gap of long ago, already cut
    away by prepare, from failing the series, and opening an incident, forever."""
    return _completeness(_prepare(frame, ctx), spec, ctx)


def _completeness(f: _Frame, spec: CheckSpec, ctx: CheckContext) -> list[CheckResult]:
    share_limit = float(spec.params["max_missing_share"])
    gap_limit = int(spec.params["max_gap_steps"])
    lookback = int(spec.params["lookback_steps"])
    if f.n_series == 0:
        return []
    first, last = f.idx[f.starts], f.idx[f.ends - 1]
    start = np.maximum(first, last - lookback + 1)  # first step of each series' window
    series_of = np.repeat(np.arange(f.n_series), f.counts)
    inside = f.idx >= start[series_of]
    new_step = np.r_[True, (np.diff(f.idx) != 0) | (np.diff(f.codes) != 0)]
    distinct = np.add.reduceat((new_step & inside).astype(np.int64), f.starts)
    expected = last - start + 1
    missing_share = 1.0 - distinct / expected
    # A gap belongs to the window when it ends inside it; only its part inside counts.
    gaps = np.r_[0, np.diff(f.idx) - 1]
    gaps[f.starts] = 0
    gaps = np.where(inside, np.minimum(gaps, f.idx - start[series_of]), 0)
    longest = np.maximum.reduceat(gaps, f.starts)
    after = np.full(f.n_series, -1, dtype=np.int64)  # row just after the longest gap
    if (longest > 0).any():
        after[:] = pd.Series(gaps).groupby(series_of).idxmax().to_numpy(dtype=np.int64)
    out = []
    for s in range(f.n_series):
        uid = str(f.ids[s])
        share, gap, n_exp = float(missing_share[s]), int(longest[s]), int(expected[s])
        bad_share, bad_gap = share > share_limit, gap > gap_limit
        gap_at = f.ts(int(after[s]) - 1) if gap > 0 else None
        span = f"from {_fmt_ts(f.step_time(int(start[s])))} to {_fmt_ts(f.ts(int(f.ends[s]) - 1))}"
        parts = [
            f"{share:.1%} of the {n_exp} expected {ctx.frequency} steps {span} are missing "
            f"(limit {share_limit:.1%})"
        ]
        if gap > 0:
            parts.append(f"longest gap {gap} steps after {_fmt_ts(gap_at)} (limit {gap_limit})")
        gap_first = bad_gap and not bad_share
        out.append(
            _result(
                spec,
                uid,
                not (bad_share or bad_gap),
                f"series {uid!r}: " + "; ".join(parts),
                value=float(gap) if gap_first else share,
                threshold=float(gap_limit) if gap_first else share_limit,
                at=gap_at,
            )
        )
    return out


def check_flat_line(frame: pd.DataFrame, spec: CheckSpec, ctx: CheckContext) -> list[CheckResult]:
    """Fail a series with more than ``max_steps`` identical readings in a row (a stuck meter),
    when that run ends within the last ``lookback_steps`` steps: an old episode that has since
    ended does not fail the series forever. Zero runs count unless ``include_zero`` is off; a
    series constant over all its history passes only with ``allow_constant``."""
    return _flat_line(_prepare(frame, ctx), spec)


def _flat_line(f: _Frame, spec: CheckSpec) -> list[CheckResult]:
    limit = int(spec.params["max_steps"])
    include_zero = bool(spec.params.get("include_zero", True))
    allow_constant = bool(spec.params.get("allow_constant", False))
    lookback = int(spec.params["lookback_steps"])
    n = len(f.y)
    best_len = np.zeros(f.n_series, dtype=np.int64)
    best_start = np.full(f.n_series, -1, dtype=np.int64)
    if n:
        same = np.r_[False, (f.y[1:] == f.y[:-1]) & (f.codes[1:] == f.codes[:-1])]
        run_start = np.flatnonzero(~same)
        run_len = np.diff(np.r_[run_start, n])
        run_code = f.codes[run_start]
        run_end = run_start + run_len - 1
        series_last = f.idx[f.ends - 1][run_code]
        keep = (run_len > limit) & (f.idx[run_end] > series_last - lookback)
        if not include_zero:
            keep &= f.y[run_start] != 0
        if allow_constant:
            keep &= run_len < f.counts[run_code]
        if keep.any():
            runs = pd.DataFrame(
                {"code": run_code[keep], "len": run_len[keep], "start": run_start[keep]}
            ).sort_values(["code", "len"])
            top = runs.drop_duplicates("code", keep="last")
            best_len[top["code"].to_numpy()] = top["len"].to_numpy()
            best_start[top["code"].to_numpy()] = top["start"].to_numpy()
    out = []
    for s in range(f.n_series):
        uid = str(f.ids[s])
        if best_len[s] == 0:
            out.append(
                _result(
                    spec,
                    uid,
                    True,
                    f"series {uid!r}: no run of identical readings longer than {limit} steps "
                    f"in the last {lookback} steps",
                    value=0.0,
                    threshold=float(limit),
                )
            )
            continue
        start = int(best_start[s])
        length = int(best_len[s])
        first, last = f.ts(start), f.ts(start + length - 1)
        out.append(
            _result(
                spec,
                uid,
                False,
                f"series {uid!r}: stuck at {_fmt_num(float(f.y[start]))} for {length} readings "
                f"in a row from {_fmt_ts(first)} to {_fmt_ts(last)} (limit {limit})",
                value=float(length),
                threshold=float(limit),
                at=first,
            )
        )
    return out


def check_spikes(frame: pd.DataFrame, spec: CheckSpec, ctx: CheckContext) -> list[CheckResult]:
    """Fail a series with a value in its last ``lookback_steps`` steps that is more than
    ``max_z`` robust standard deviations away from its seasonal neighbours.

    The residual of a value is its distance to the median of the same phase in up to three
    seasons before and three after (``t ± m, ± 2m, ± 3m``): the daily or weekly pattern drops
    out, a spike cannot hide itself by being its own reference, and it does not make its
    neighbours look like spikes (a plain seasonal difference would flag ``t + m`` as well).
    Each series' residuals are scaled by the larger of 1.4826 x MAD and the 90th percentile of
    absolute deviations / 1.645: MAD alone calls every kettle a spike in household meter data
    (heavy tails) and is 0 when most residuals are equal.
    """
    return _spikes(_prepare(frame, ctx), spec, ctx)


_NEIGHBOURS = (-3, -2, -1, 1, 2, 3)  # seasons either side whose median is a value's reference


def _seasonal_residuals(f: _Frame, m: int) -> np.ndarray:
    """``y`` minus the median of the same phase up to three seasons either side (NaN when
    none of them was observed).

    Series are laid on a grid matrix (one row per series, one column per step, NaN where no
    observation), a chunk of series at a time, so a neighbour is a column shift rather than a
    lookup: contiguous array work instead of fancy indexing over millions of rows.
    """
    resid = np.full(len(f.y), np.nan)
    first = f.idx[f.starts]
    spans = f.idx[f.ends - 1] - first + 1
    reach = 3 * m
    for lo, hi in _chunks(spans, _CHUNK_CELLS // (len(_NEIGHBOURS) + 1)):
        width = int(spans[lo:hi].max())
        rows = slice(int(f.starts[lo]), int(f.ends[hi - 1]))
        r_idx = f.codes[rows] - lo
        c_idx = f.idx[rows] - first[f.codes[rows]]
        padded = np.full((hi - lo, width + 2 * reach), np.nan)
        padded[r_idx, c_idx + reach] = f.y[rows]
        near = np.stack(
            [padded[:, reach + k * m : reach + k * m + width] for k in _NEIGHBOURS], axis=2
        )
        near.sort(axis=2)  # NaN sort last
        count = np.isfinite(near).sum(axis=2)
        lower = np.take_along_axis(near, (np.maximum(count - 1, 0) // 2)[..., None], axis=2)
        upper = np.take_along_axis(near, (count // 2)[..., None], axis=2)
        median = np.where(count > 0, (lower[..., 0] + upper[..., 0]) / 2, np.nan)
        resid[rows] = f.y[rows] - median[r_idx, c_idx]
    return resid


def _spikes(f: _Frame, spec: CheckSpec, ctx: CheckContext) -> list[CheckResult]:
    limit = float(spec.params["max_z"])
    lookback = int(spec.params["lookback_steps"])
    m = max(1, ctx.season_length)
    worst_z = np.zeros(f.n_series)
    worst_row = np.full(f.n_series, -1, dtype=np.int64)
    if len(f.y):
        resid = _seasonal_residuals(f, m)
        rows = np.flatnonzero(np.isfinite(resid))
        r = resid[rows]
        group = f.codes[rows]
        (med,) = _grouped_quantiles(r, group, f.n_series, (0.5,))
        dev = np.abs(r - med[group])
        mad, q90 = _grouped_quantiles(dev, group, f.n_series, (0.5, 0.9))
        scale = np.maximum(1.4826 * mad, q90 / 1.6449)[group]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(scale > 0, dev / scale, 0.0)
        series_last = f.idx[f.ends - 1]
        recent = np.flatnonzero(f.idx[rows] > series_last[group] - lookback)
        if len(recent):
            zr = pd.Series(z[recent])
            top = zr.groupby(group[recent]).idxmax()
            codes_top = top.index.to_numpy(dtype=np.int64)
            at = top.to_numpy(dtype=np.int64)
            worst_z[codes_top] = zr.to_numpy()[at]
            worst_row[codes_top] = rows[recent[at]]
    out = []
    for s in range(f.n_series):
        uid = str(f.ids[s])
        z_s = float(worst_z[s])
        if worst_row[s] < 0 or z_s <= limit:
            out.append(
                _result(
                    spec,
                    uid,
                    True,
                    f"series {uid!r}: no spike in the last {lookback} steps (largest robust "
                    f"z-score {z_s:.1f}, limit {limit:g})",
                    value=z_s,
                    threshold=limit,
                )
            )
            continue
        row = int(worst_row[s])
        at = f.ts(row)
        out.append(
            _result(
                spec,
                uid,
                False,
                f"series {uid!r}: outlier {_fmt_num(float(f.y[row]))} at {_fmt_ts(at)}, robust "
                f"z-score {z_s:.1f} against its seasonal neighbours (limit {limit:g})",
                value=z_s,
                threshold=limit,
                at=at,
            )
        )
    return out

"""The level-shift check: the latest lasting jump in each series' level, and when it happened."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.tseries.offsets import Tick

from steadycast.ingestion.timegrid import offset_of
from steadycast.quality.checks._arrays import _CHUNK_CELLS
from steadycast.quality.checks._frame import _Frame, _prepare
from steadycast.quality.checks._text import _fmt_num, _fmt_ts
from steadycast.quality.checks.context import CheckContext
from steadycast.quality.checks.spec import CheckResult, CheckSpec, _result

__all__ = ["check_level_shift"]


def check_level_shift(frame: pd.DataFrame, spec: CheckSpec, ctx: CheckContext) -> list[CheckResult]:
    """Find the latest lasting jump in each series' level; the result's ``at`` is when it
    happened, and ``level_shift_cuts`` turns failed results into training-window starts.

    Method, in three steps:

    1. *Candidates.* The series is cut into blocks of one season (the daily or weekly pattern
       cancels in a block's median). At each block boundary the median of the ``window_steps``
       before is compared with the median of the same span after, and the difference is scaled
       by the series' noise (MAD of block-to-block changes, which a step or a slow trend barely
       moves) into a robust z. A boundary is a candidate when ``z >= min_z`` and the relative
       change (against the larger level) is at least ``min_relative_change``: the first rules
       out noise, the second a change nobody would call a new regime.
    2. *Lasting.* A candidate must hold over windows four times as long (an outage of a week, a
       cold snap, a holiday, is not a new regime), and, when the series has a year of history
       before it, it must remain after dividing out the change across the same dates a year
       earlier (the first cold week of winter or the summer peak is the annual cycle, not a new
       regime). The latest candidate that lasts is the shift.
    3. *When.* A median window cannot place a step exactly (it flips as soon as most of the
       window has moved), so the time is refined to the step by a CUSUM split (largest
       standardised difference of means, on winsorised raw values) within a window either side.
    """
    return _level_shift(_prepare(frame, ctx), spec, ctx)


@dataclass
class _Shift:
    block: int  # boundary block (first block of the new level)
    z: float
    before: float
    after: float
    yearly: float | None  # the same change a year earlier (ratio), when there is history


def _level_shift(f: _Frame, spec: CheckSpec, ctx: CheckContext) -> list[CheckResult]:
    min_z = float(spec.params["min_z"])
    min_rel = float(spec.params["min_relative_change"])
    m = max(1, ctx.season_length)
    w = max(1, round(int(spec.params["window_steps"]) / m))  # window, in blocks
    year_blocks = _year_steps(ctx.frequency) // m
    if year_blocks < 4 * w:
        year_blocks = 0  # a block spans most of a year: the annual cycle is already inside it
    shifts: dict[int, _Shift] = {}
    best_z = np.zeros(f.n_series)
    if len(f.y):
        keys, values, n_blocks = _block_medians(f, m)
        for lo, mat, live in _block_matrices(keys, values, n_blocks, f.n_series, w):
            for row, found in _scan(mat, live, w, min_z, min_rel, year_blocks, best_z, lo):
                shifts[lo + row] = found
    out = []
    cut = bool(spec.params.get("cut_training", True))
    for s in range(f.n_series):
        uid = str(f.ids[s])
        shift = shifts.get(s)
        if shift is None:
            out.append(
                _result(
                    spec,
                    uid,
                    True,
                    f"series {uid!r}: no lasting level shift (largest robust z {best_z[s]:.1f}; "
                    f"limits z {min_z:g} and {min_rel:.0%} change over {w * m} steps)",
                    value=float(best_z[s]),
                    threshold=min_z,
                )
            )
            continue
        at = _refine(f, s, shift.block, w, m)
        sentence = _shift_sentence(uid, at, shift, min_z, min_rel)
        out.append(
            _result(
                spec,
                uid,
                False,
                sentence + ("; training starts there" if cut else ""),
                value=shift.z,
                threshold=min_z,
                at=at,
            )
        )
    return out


def _block_medians(f: _Frame, m: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The median of each block of one season (key ``series * n_blocks + block``) observed on
    at least half its steps, and the number of blocks of the longest series."""
    first = f.idx[f.starts]
    block = (f.idx - first[f.codes]) // m
    n_blocks = int(block.max()) + 1
    ok = np.isfinite(f.y)
    key = f.codes[ok] * n_blocks + block[ok]
    grouped = pd.Series(f.y[ok]).groupby(key)
    med = grouped.median()
    cnt = grouped.size()
    # A block with less than half its steps observed says little about the level.
    med = med[cnt.to_numpy() >= max(1, m // 2)]
    return med.index.to_numpy(dtype=np.int64), med.to_numpy(), n_blocks


def _block_matrices(
    keys: np.ndarray, values: np.ndarray, n_blocks: int, n_s: int, w: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Block medians as rows of a matrix, a chunk of series at a time: (first series, matrix,
    rows with at least two windows of blocks), for chunks with any such row."""
    blocks_of = np.bincount(keys // n_blocks, minlength=n_s)
    chunk = max(1, _CHUNK_CELLS // max(1, n_blocks * w))
    for lo in range(0, n_s, chunk):
        hi = min(n_s, lo + chunk)
        sel = (keys >= lo * n_blocks) & (keys < hi * n_blocks)
        mat = np.full((hi - lo, n_blocks), np.nan)
        k = keys[sel]
        mat[k // n_blocks - lo, k % n_blocks] = values[sel]
        live = blocks_of[lo:hi] >= 2 * w
        if live.any():
            yield lo, mat, live


def _shift_sentence(uid: str, at: pd.Timestamp, shift: _Shift, min_z: float, min_rel: float) -> str:
    change = (
        f"x{shift.after / shift.before:.2f}"
        if shift.before * shift.after > 0
        else f"a change of {_fmt_num(shift.after - shift.before)}"
    )
    yearly = (
        f", against x{shift.yearly:.2f} over the same dates a year earlier"
        if shift.yearly is not None
        else ""
    )
    return (
        f"series {uid!r}: level shift at {_fmt_ts(at)} from about "
        f"{_fmt_num(shift.before)} to about {_fmt_num(shift.after)} ({change}"
        f"{yearly}; robust z {shift.z:.1f}; limits z {min_z:g} and {min_rel:.0%} change)"
    )


def _year_steps(frequency: str) -> int:
    """Steps in 52 weeks (364 days keeps weekdays aligned a year apart)."""
    offset = offset_of(frequency)
    if isinstance(offset, Tick):
        return int(pd.Timedelta(days=364) // pd.Timedelta(offset))
    grid = pd.date_range("2001-01-01", periods=2, freq=offset)
    return max(1, int(pd.Timedelta(days=364) / (grid[1] - grid[0]) + 0.5))


def _scan(
    mat: np.ndarray,
    live: np.ndarray,
    w: int,
    min_z: float,
    min_rel: float,
    year_blocks: int,
    best_z: np.ndarray,
    offset: int,
) -> list[tuple[int, _Shift]]:
    """Candidates for a chunk of series at once (rows of ``mat``, block medians), then the
    lasting test for the few rows that have any."""
    n_blocks = mat.shape[1]
    if n_blocks < 2 * w:
        return []
    windows = np.lib.stride_tricks.sliding_window_view(mat, w, axis=1)  # (S, B-w+1, w)
    valid = np.isfinite(windows).sum(axis=2)
    # All-NaN windows (gaps) are expected here and give NaN, which the masks below handle.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        wmed = np.nanmedian(windows, axis=2)
        noise = np.nanmedian(np.abs(np.diff(mat, axis=1)), axis=1)
        floor = 1e-9 * np.nanmax(np.abs(mat), axis=1, initial=0.0)
    wmed[valid < max(1, (w + 1) // 2)] = np.nan
    before = wmed[:, : n_blocks - 2 * w + 1]  # window ending at block k-1, k = w .. B-w
    after = wmed[:, w:]
    diff = after - before
    # Noise of one block: MAD of block-to-block changes / sqrt(2); a difference of two window
    # medians of w blocks then has a spread of about 1.2533 * sigma * sqrt(2 / w).
    sigma = 1.4826 * noise / math.sqrt(2.0)
    spread = np.maximum(1.2533 * sigma * math.sqrt(2.0 / w), floor)[:, None]
    level = np.maximum(np.abs(before), np.abs(after))
    with np.errstate(all="ignore"):
        z = np.abs(diff) / spread
        rel = np.abs(diff) / level
    z = np.where(np.isfinite(z), z, 0.0)
    rel = np.where(np.isfinite(rel), rel, 0.0)
    z[~live] = 0.0
    best_z[offset : offset + len(mat)] = np.max(z, axis=1, initial=0.0)
    hit = (z >= min_z) & (rel >= min_rel)
    found = []
    for row in np.flatnonzero(hit.any(axis=1)):
        shift = _latest_lasting(mat[row], hit[row], z[row], w, min_rel, year_blocks)
        if shift is not None:
            found.append((int(row), shift))
    return found


def _latest_lasting(
    x: np.ndarray, hit: np.ndarray, z: np.ndarray, w: int, min_rel: float, year_blocks: int
) -> _Shift | None:
    """Walk the runs of candidate boundaries from the latest back; the first that lasts wins.

    One true shift lights up every boundary within a window of it, so each run of neighbouring
    candidates is one event, tested at its peak.
    """
    cols = np.flatnonzero(hit)
    breaks = np.flatnonzero(np.diff(cols) > 1)
    runs = np.split(cols, breaks + 1)
    long_w = 4 * w
    n = len(x)
    for run in reversed(runs):
        peak = int(run[np.argmax(z[run])])
        k = peak + w
        before = _median(x[max(0, k - long_w) : k], w)
        after = _median(x[k : min(n, k + long_w)], w)
        if before is None or after is None:
            continue
        if _relative(before, after) < min_rel:
            continue
        yearly: float | None = None
        if year_blocks and k - year_blocks - long_w >= 0:
            b1 = _median(x[k - year_blocks - long_w : k - year_blocks], w)
            a1 = _median(x[k - year_blocks : min(n, k - year_blocks + long_w)], w)
            if b1 is not None and a1 is not None and min(before, after, b1, a1) > 0:
                yearly = a1 / b1
                adjusted = (after / before) / yearly
                if 1.0 - min(adjusted, 1.0 / adjusted) < min_rel:
                    continue
        return _Shift(k, float(z[peak]), before, after, yearly)
    return None


def _median(values: np.ndarray, need: int) -> float | None:
    """Median of the finite values, or None when fewer than ``need`` of them."""
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if len(finite) >= need else None


def _relative(a: float, b: float) -> float:
    level = max(abs(a), abs(b))
    return abs(b - a) / level if level > 0 else 0.0


def _refine(f: _Frame, s: int, boundary_block: int, w: int, m: int) -> pd.Timestamp:
    """The step where the shift happened: the CUSUM split (largest standardised difference of
    means) of the winsorised values within ``w`` blocks either side of the boundary."""
    lo, hi = int(f.starts[s]), int(f.ends[s])
    rel = f.idx[lo:hi] - f.idx[lo]
    centre = boundary_block * m
    inside = np.flatnonzero(
        (rel >= centre - w * m) & (rel < centre + w * m) & np.isfinite(f.y[lo:hi])
    )
    if len(inside) < 3:
        return f.ts(lo + int(np.searchsorted(rel, centre)))
    v = f.y[lo:hi][inside]
    q_lo, q_hi = np.quantile(v, [0.05, 0.95])
    v = np.clip(v, q_lo, q_hi)
    n = len(v)
    i = np.arange(1, n)
    csum = np.cumsum(v)[:-1]
    mean_before = csum / i
    mean_after = (v.sum() - csum) / (n - i)
    stat = np.abs(mean_after - mean_before) * np.sqrt(i * (n - i) / n)
    split = int(np.argmax(stat)) + 1  # first row of the new level
    return f.ts(lo + int(inside[split]))

"""Vectorised helpers over many series at once: padded matrices, a chunk of series at a time."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Padded matrices (series x steps, blocks or windows) are built this many cells at a time.
_CHUNK_CELLS = 4_000_000


def _grouped_quantiles(
    values: np.ndarray, groups: np.ndarray, n: int, qs: Sequence[float]
) -> list[np.ndarray]:
    """Quantiles (lower, no interpolation) of finite ``values`` per group code in ``range(n)``;
    NaN where a group has none. ``groups`` must be sorted ascending.

    Groups are laid out as rows of a padded matrix, a chunk of groups at a time, and sorted
    row-wise: an order of magnitude faster than a lexsort or a pandas groupby quantile.
    """
    outs = [np.full(n, np.nan) for _ in qs]
    if len(values) == 0:
        return outs
    starts = np.flatnonzero(np.r_[True, np.diff(groups) != 0])
    counts = np.diff(np.r_[starts, len(groups)])
    codes = groups[starts]
    pos = np.arange(len(groups)) - np.repeat(starts, counts)
    rank = np.repeat(np.arange(len(starts)), counts)
    for lo, hi in _chunks(counts):
        width = int(counts[lo:hi].max())
        mat = np.full((hi - lo, width), np.inf)
        rows = slice(int(starts[lo]), int(starts[hi - 1] + counts[hi - 1]))
        mat[rank[rows] - lo, pos[rows]] = values[rows]
        mat.sort(axis=1)
        take = np.arange(hi - lo)
        for out, q in zip(outs, qs, strict=True):
            at = np.floor(q * (counts[lo:hi] - 1)).astype(np.int64)
            out[codes[lo:hi]] = mat[take, at]
    return outs


def _chunks(counts: np.ndarray, budget: int = _CHUNK_CELLS) -> list[tuple[int, int]]:
    """Consecutive ranges of groups whose padded matrix (groups x longest) fits ``budget``."""
    out, lo, widest = [], 0, 0
    for i, c in enumerate(counts.tolist()):
        wider = max(widest, c)
        if i > lo and (i - lo + 1) * wider > budget:
            out.append((lo, i))
            lo, wider = i, c
        widest = wider
    out.append((lo, len(counts)))
    return out


def _run_lengths(mat: np.ndarray) -> np.ndarray:
    """For each cell, how many equal finite values end there in its row (1 for a new value,
    0 for NaN)."""
    out = np.zeros(mat.shape, dtype=np.int64)
    if mat.shape[1] == 0:
        return out
    out[:, 0] = np.isfinite(mat[:, 0])
    for c in range(1, mat.shape[1]):
        same = mat[:, c] == mat[:, c - 1]
        out[:, c] = np.where(same, out[:, c - 1] + 1, np.isfinite(mat[:, c]).astype(np.int64))
    return out


def _nanmedian(a: np.ndarray, axis: int) -> np.ndarray:
    return _nanquantiles(a, (0.5,), axis)[0]


def _nanquantiles(a: np.ndarray, qs: Sequence[float], axis: int = -1) -> list[np.ndarray]:
    """Quantiles (linear) of the finite values along ``axis``, NaN where there are none: one
    sort for all of them, where numpy's nanquantile loops over rows in Python."""
    s = np.sort(np.moveaxis(np.where(np.isfinite(a), a, np.nan), axis, -1), axis=-1)
    if s.shape[-1] == 0:
        return [np.full(s.shape[:-1], np.nan) for _ in qs]
    count = np.isfinite(s).sum(axis=-1)
    out = []
    for q in qs:
        pos = q * np.maximum(count - 1, 0)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
        a_lo = np.take_along_axis(s, lo[..., None], axis=-1)[..., 0]
        a_hi = np.take_along_axis(s, hi[..., None], axis=-1)[..., 0]
        value = a_lo + (pos - lo) * (a_hi - a_lo)
        out.append(np.where(count > 0, value, np.nan))
    return out

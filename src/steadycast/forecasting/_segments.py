"""Series laid end to end in sorted arrays, and reductions over them that keep pandas' bits.

The per-partition stages work on a long frame sorted by ``unique_id`` then time, so series ``i``
is the run of rows ``starts[i]:starts[i] + lengths[i]``. The id column is read once to find the
runs; after that a series is an integer position, and a per-series question is an array
operation instead of one more group-by on strings.

Where the stages used to take a mean with pandas (``groupby().mean()``, which compensates its
running sum, Kahan style, and skips NaN), the vectorised code adds the same values in the same
order with the same compensation (:class:`RunningMean`, :func:`prefix_means`). Scores and
forecasts are then the same bits as the frame-based code gives, not merely close, so a selection
that compares scores cannot flip on a tie.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "NAT",
    "Layout",
    "RunningMean",
    "canonical_ids",
    "comparable",
    "factorize_runs",
    "prefix_means",
    "rows_of",
    "rows_up_to",
    "runs",
    "sorted_runs",
]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

#: NaT as int64 (the smallest int64): timestamps are compared as their int64 ticks.
NAT = np.iinfo(np.int64).min

# prefix_means walks the rows in lockstep, one numpy call per step for all series; when the
# longest series is long next to the rows in all, it gathers the rows and lets pandas do it.
_STEP_COST_ROWS = 750


def canonical_ids(values: pd.Series) -> npt.NDArray[Any]:
    """The ids as ``str`` (the platform's canonical id type), without converting, or copying,
    a column that holds strings already."""
    array: npt.NDArray[Any] = np.asarray(values.to_numpy())
    if array.dtype == object and pd.api.types.infer_dtype(array, skipna=False) == "string":
        return array
    converted: npt.NDArray[Any] = values.astype(str).to_numpy()
    return converted


def sorted_runs(ids: npt.NDArray[Any], times: npt.NDArray[Any]) -> tuple[Ints | None, Ints, Ints]:
    """``(order, starts, lengths)``: the stable order that sorts rows by id then time (None when
    they already are), and the runs of equal ids once so sorted.

    Sorting as ``sort_values([id, time], kind="stable")`` does (missing ids and times last).
    The id column is compared once: its runs of equal ids also tell whether the ids are in
    order (each run's id above the one before). Out of order, whole runs are sorted by their
    id, which for a frame made of a few sorted pieces (what a parallel writer leaves) is the
    whole sort; only when times then go back within a series are rows sorted one by one.
    """
    rows = len(ids)
    empty = np.zeros(0, dtype=np.int64)
    if rows == 0:
        return None, empty, empty
    starts, lengths = runs(ids)
    heads = ids[starts]
    missing = pd.isna(heads)
    if not missing.any() and bool(np.all(heads[1:] > heads[:-1])) and _in_time(times, starts):
        return None, starts, lengths
    # Sort the runs by id (stably: the pieces of one series keep their order), missing last.
    if missing.any():
        present = np.flatnonzero(~missing)
        by_id = np.r_[present[np.argsort(heads[present], kind="stable")], np.flatnonzero(missing)]
    else:
        by_id = np.argsort(heads, kind="stable").astype(np.int64)
    order = rows_of(starts[by_id], lengths[by_id])
    ordered_heads = heads[by_id]
    same = ordered_heads[1:] == ordered_heads[:-1]
    same &= ~missing[by_id][1:]  # each missing id is a series of its own, as groupby drops them
    first = np.r_[True, ~same]
    sizes = np.add.reduceat(lengths[by_id], np.flatnonzero(first))
    new_starts = np.cumsum(sizes) - sizes
    if _in_time(times[order], new_starts):
        return order, new_starts.astype(np.int64), sizes.astype(np.int64)
    # Times go back within a series: sort rows by (series, time).
    series_of_run = np.empty(len(by_id), dtype=np.int64)
    series_of_run[by_id] = np.cumsum(first) - 1
    codes = np.repeat(series_of_run, lengths)
    order = np.lexsort((times, codes)).astype(np.int64)
    return order, new_starts.astype(np.int64), sizes.astype(np.int64)


def _in_time(times: npt.NDArray[Any], starts: Ints) -> bool:
    """Whether times never go back within the runs beginning at ``starts`` (NaT/NaN: back)."""
    if len(times) < 2:
        return not bool(pd.isna(times).any())
    within = np.ones(len(times) - 1, dtype=bool)
    within[starts[1:] - 1] = False
    with np.errstate(invalid="ignore"):
        back = within & ~(times[1:] >= times[:-1])
    return not bool(back.any())


def comparable(values: pd.Series) -> npt.NDArray[Any]:
    """Times as a numpy array that sorts and compares like the column (zones as UTC)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return np.asarray(values.to_numpy())


def runs(ids: npt.NDArray[Any]) -> tuple[Ints, Ints]:
    """``(starts, lengths)`` of the runs of equal ids in a sorted (or grouped) id array."""
    rows = len(ids)
    if rows == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    new = np.ones(rows, dtype=bool)
    np.not_equal(ids[1:], ids[:-1], out=new[1:])
    starts = np.flatnonzero(new).astype(np.int64)
    lengths = np.diff(np.append(starts, rows)).astype(np.int64)
    return starts, lengths


def factorize_runs(values: npt.NDArray[Any], sort: bool = False) -> tuple[Ints, npt.NDArray[Any]]:
    """``pd.factorize(values, sort=sort)`` for a column whose equal values come in runs (a
    long frame's id or model column): only the first value of each run is hashed."""
    starts, lengths = runs(values)
    head_codes, uniques = pd.factorize(values[starts], sort=sort)
    codes: Ints = np.repeat(head_codes.astype(np.int64), lengths)
    return codes, np.asarray(uniques, dtype=object)


def rows_of(starts: Ints, lengths: Ints, series: npt.ArrayLike | None = None) -> Ints:
    """Row positions of ``series`` (positions into ``starts``), series after series, in order."""
    chosen = np.arange(len(starts)) if series is None else np.asarray(series, dtype=np.int64)
    sizes = lengths[chosen]
    total = int(sizes.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    # Each row is its series' start plus its place in the series.
    offsets = np.cumsum(sizes) - sizes
    rows: Ints = np.repeat(starts[chosen] - offsets, sizes) + np.arange(total, dtype=np.int64)
    return rows


@dataclass(frozen=True)
class Layout:
    """A long frame sorted by id, then time, cut into series: series ``i`` is rows
    ``starts[i]:starts[i] + lengths[i]`` of ``frame``; ``ids`` are sorted and ``ticks`` are
    the timestamps as int64."""

    frame: pd.DataFrame
    ids: npt.NDArray[Any]
    starts: Ints
    lengths: Ints
    ticks: Ints

    @classmethod
    def of(
        cls,
        frame: pd.DataFrame,
        id_col: str = "unique_id",
        time_col: str = "ds",
        cuts: tuple[Ints, Ints] | None = None,
    ) -> Layout:
        """The layout of a frame already sorted by ``id_col`` then ``time_col`` (``cuts``: its
        ``(starts, lengths)`` when the caller has them)."""
        ids = frame[id_col].to_numpy()
        starts, lengths = runs(ids) if cuts is None else cuts
        ticks = frame[time_col].to_numpy().view(np.int64)
        return cls(frame, ids[starts], starts, lengths, ticks)

    def rows(self, series: Ints, offset: Ints | int = 0, count: Ints | int | None = None) -> Ints:
        """Rows ``offset .. offset + count`` (default: to the end) of each series, in order."""
        firsts = self.starts[series] + offset
        sizes = self.lengths[series] - offset if count is None else count
        sizes = np.broadcast_to(np.asarray(sizes, dtype=np.int64), firsts.shape)
        return rows_of(firsts, np.ascontiguousarray(sizes))

    def take(self, rows: Ints) -> pd.DataFrame:
        """The frame's ``rows`` as a new frame of its own (a model may do what it likes with it)."""
        if len(rows) == len(self.frame) and bool(np.all(rows == np.arange(len(rows)))):
            return self.frame.copy()
        out = self.frame.take(rows)
        out.index = pd.RangeIndex(len(out))  # a new frame already: no second copy to reset it
        return out

    def last_ticks(self, series: Ints, count: Ints | None = None) -> Ints:
        """The latest timestamp among the first ``count`` rows (default: all) of each series,
        ignoring NaT (NaT when there is nothing else), as groupby().max() gives it."""
        sizes = self.lengths[series] if count is None else np.asarray(count, dtype=np.int64)
        ticks = self.ticks
        if not bool(np.any(ticks == NAT)):  # sorted in time: the last row is the latest
            found: Ints = ticks[self.starts[series] + sizes - 1]
            return found
        rows = rows_of(self.starts[series], sizes)
        latest = np.full(len(series), NAT, dtype=np.int64)
        np.maximum.at(latest, np.repeat(np.arange(len(series)), sizes), ticks[rows])
        return latest

    def strictly_increasing(self) -> bool:
        """Whether no series repeats (or lacks) a timestamp."""
        ticks = self.ticks
        if bool(np.any(ticks == NAT)):
            return False
        if len(ticks) < 2:
            return True
        later = ticks[1:] > ticks[:-1]
        later[self.starts[1:] - 1] = True
        return bool(later.all())


class RunningMean:
    """Means accumulated one value per group at a time, as pandas' cython ``group_mean`` does.

    Values are added Kahan-compensated in the order given and NaN is skipped, so feeding each
    group's values in its row order gives the same bits as ``groupby().mean()``.
    """

    def __init__(self, shape: int | tuple[int, ...]) -> None:
        self.total: Floats = np.zeros(shape)
        self.compensation: Floats = np.zeros(shape)
        self.count: Ints = np.zeros(shape, dtype=np.int64)

    def add(self, values: Floats) -> None:
        values = np.asarray(values, dtype=np.float64)
        observed = ~np.isnan(values)
        with np.errstate(all="ignore"):  # infinities give NaN here, as in pandas, silently
            y = values - self.compensation
            t = self.total + y
            compensation = (t - self.total) - y
        # An infinite value makes the compensation NaN; pandas resets it (GH#50367).
        compensation[np.isnan(compensation)] = 0.0
        np.copyto(self.total, t, where=observed)
        np.copyto(self.compensation, compensation, where=observed)
        self.count += observed

    def mean(self) -> Floats:
        out = np.full(self.total.shape, np.nan)
        np.divide(self.total, self.count, out=out, where=self.count > 0)
        return out

    @classmethod
    def of(cls, columns: Iterable[Floats]) -> Floats:
        """The mean across ``columns`` (equal shapes), added in the order given."""
        running: RunningMean | None = None
        for column in columns:
            if running is None:
                running = cls(np.shape(column))
            running.add(column)
        if running is None:
            raise ValueError("no values to average")
        return running.mean()


def prefix_means(values: Floats, starts: Ints, lengths: Ints, series: Ints, counts: Ints) -> Floats:
    """Mean of the first ``counts[q]`` rows of series ``series[q]`` (NaN skipped), for each q.

    ``values`` is ``(rows,)`` or ``(rows, channels)``; series ``i`` is the rows
    ``starts[i]:starts[i] + lengths[i]``. The same bits as ``groupby().mean()`` over each
    prefix, without building one copy of the rows per query: the prefixes of one series share
    a single pass over its rows, taken for every series at once, step by step in time, and the
    running sums are read off where a prefix ends.
    """
    channels = values.shape[1:]
    queries = len(series)
    out = np.full((queries, *channels), np.nan)
    counts = np.minimum(np.asarray(counts, dtype=np.int64), lengths[series])
    wanted = np.flatnonzero(counts > 0)
    if len(wanted) == 0:
        return out
    depth = np.zeros(len(starts), dtype=np.int64)
    np.maximum.at(depth, series[wanted], counts[wanted])
    steps = int(depth.max())
    if steps * _STEP_COST_ROWS > int(counts[wanted].sum()):
        out[wanted] = _gathered_means(values, starts, series[wanted], counts[wanted])
        return out
    # Longest first, so the series still running at any step are a prefix of the columns.
    active = np.flatnonzero(depth > 0)
    active = active[np.argsort(-depth[active], kind="stable")]
    column = np.empty(len(starts), dtype=np.int64)
    column[active] = np.arange(len(active))
    widths = np.searchsorted(-depth[active], -np.arange(1, steps + 1), side="right")
    ends = counts[wanted] - 1
    by_end = np.argsort(ends, kind="stable")
    bounds = np.searchsorted(ends[by_end], np.arange(steps + 1))
    query_column = column[series[wanted]]
    running = RunningMean((len(active), *channels))
    total, compensation, count = running.total, running.compensation, running.count
    position = starts[active].copy()
    found_total = np.zeros((len(wanted), *channels))
    found_count = np.zeros((len(wanted), *channels), dtype=np.int64)
    with np.errstate(all="ignore"):  # infinities give NaN here, as in pandas, silently
        for step in range(steps):
            width = int(widths[step])
            value = values[position[:width]]
            observed = ~np.isnan(value)
            s, c = total[:width], compensation[:width]
            y = value - c
            t = s + y
            new_c = (t - s) - y
            new_c[np.isnan(new_c)] = 0.0
            np.copyto(s, t, where=observed)
            np.copyto(c, new_c, where=observed)
            count[:width] += observed
            position[:width] += 1
            first, last = bounds[step], bounds[step + 1]
            if first < last:
                done = by_end[first:last]
                found_total[done] = total[query_column[done]]
                found_count[done] = count[query_column[done]]
    means = np.full(found_total.shape, np.nan)
    np.divide(found_total, found_count, out=means, where=found_count > 0)
    out[wanted] = means
    return out


def _gathered_means(values: Floats, starts: Ints, series: Ints, counts: Ints) -> Floats:
    """:func:`prefix_means` for a few long series: copy the prefixes out and let pandas add."""
    rows = rows_of(starts[series], counts)
    labels = np.repeat(np.arange(len(series)), counts)
    frame = pd.DataFrame(values[rows].reshape(len(rows), -1))
    means = frame.groupby(labels, sort=True).mean().to_numpy()
    result: Floats = means.reshape((len(series), *values.shape[1:]))
    return result


def rows_up_to(
    times: np.ndarray, starts: np.ndarray, lengths: np.ndarray, cutoffs: np.ndarray
) -> np.ndarray:
    """How many of the first rows of each run (rows sorted in time) are at or before its cutoff.

    A binary search for every run at once; NaN and NaT times (sorted last) are never before.
    """
    low = starts.astype(np.int64)
    high = low + lengths
    last = max(len(times) - 1, 0)
    while True:
        open_ = low < high
        if not open_.any():
            break
        mid = np.minimum((low + high) // 2, last)
        with np.errstate(invalid="ignore"):
            before = times[mid] <= cutoffs if len(times) else np.zeros(len(low), dtype=bool)
        low = np.where(open_ & before, mid + 1, low)
        high = np.where(open_ & ~before, mid, high)
    counts: np.ndarray = low - starts
    return counts

"""Prepare: put every series on a regular grid at the pipeline's frequency, ready for models.

Models need regular series without missing values. Interior gaps up to ``max_fill`` steps are
filled by linear interpolation in time; a longer gap means the older history no longer tells
much about the present, so the training window starts after it. Both are counted per series,
so a person can see what was done to each.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.tseries.offsets import BaseOffset, Tick

from steadycast.errors import DataError
from steadycast.forecasting._segments import Layout, rows_of, sorted_runs
from steadycast.ingestion.timegrid import offset_of

ID, DS, Y = "unique_id", "ds", "y"
REPORT_COLUMNS = (ID, "points_in", "points_out", "filled", "cut_before")


def regularize(
    history: pd.DataFrame, frequency: str, max_fill: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (regular history, per-series report). ``history`` is ``unique_id, ds, y``.

    Raises :class:`DataError` naming the series and time when two rows share a series and time
    or a time is off the series' grid: ingest quarantines such rows, so they mean the stage was
    handed something else.
    """
    if history.empty:
        return history[[ID, DS, Y]].copy(), pd.DataFrame(columns=list(REPORT_COLUMNS))
    offset = offset_of(frequency)
    ids = history[ID]
    stamps = history[DS]
    step = pd.Timedelta(offset).value if isinstance(offset, Tick) else 0
    if (
        step < _MIN_STEP_NS
        or ids.dtype.kind not in "Oi"
        or stamps.dtype != np.dtype("datetime64[ns]")
        or bool(stamps.isna().any())
    ):
        # Calendar frequencies, zones or missing times: series by series.
        return _regularize_each(history, offset, max_fill, frequency)
    order, starts, lengths = sorted_runs(ids.to_numpy(), stamps.to_numpy())
    # One copy of the three columns, sorted on the way when they need to be.
    columns = {c: history[c] if order is None else history[c].take(order) for c in (ID, DS, Y)}
    frame = pd.DataFrame({c: v.array for c, v in columns.items()}, copy=order is None)
    del columns
    layout = Layout.of(frame, ID, DS, cuts=(starts, lengths))
    if bool(pd.isna(layout.ids).any()):  # a missing id: the series-by-series way drops it
        return _regularize_each(history, offset, max_fill, frequency)
    ticks, starts, lengths = layout.ticks, layout.starts, layout.lengths
    first = ticks[starts]
    _check_grid(layout, first, step, frequency)
    span = ticks[starts + lengths - 1] - first
    grid_len = span // step + 1
    irregular = np.flatnonzero(grid_len != lengths)
    report = {
        ID: np.asarray([str(uid) for uid in layout.ids], dtype=object),
        "points_in": lengths,
        "points_out": lengths.copy(),
        "filled": np.zeros(len(starts), dtype=np.int64),
    }
    if not len(irregular):
        report["cut_before"] = np.full(len(starts), None, dtype=object)
        frame[DS] = frame[DS].astype("datetime64[ns]")
        return frame, pd.DataFrame(report, columns=list(REPORT_COLUMNS))
    filled = _fill_gaps(layout, irregular, grid_len[irregular], step, max_fill)
    if filled is None:  # something the series-by-series way raises on: let it say what
        return _regularize_each(history, offset, max_fill, frequency)
    _report_fills(report, irregular, filled, first, step)
    prepared = _grid_rows(frame, layout, irregular, filled, report["points_out"])
    return prepared, pd.DataFrame(report, columns=list(REPORT_COLUMNS))


def _report_fills(
    report: dict[str, np.ndarray],
    irregular: np.ndarray,
    filled: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    first: np.ndarray,
    step: int,
) -> None:
    """Points out, points filled and where the history was cut, for the gapped series."""
    part_series, _, _, cut, n_filled = filled
    report["points_out"][irregular] = np.bincount(part_series, minlength=len(irregular))
    report["filled"][irregular] = n_filled
    cut_before = np.full(len(first), np.datetime64("NaT"), dtype="datetime64[ns]")
    was_cut = cut >= 0
    cut_before[irregular[was_cut]] = (first[irregular] + cut * step)[was_cut].view("datetime64[ns]")
    report["cut_before"] = cut_before if was_cut.any() else np.full(len(first), None, object)


def _grid_rows(
    frame: pd.DataFrame,
    layout: Layout,
    irregular: np.ndarray,
    filled: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    sizes: np.ndarray,
) -> pd.DataFrame:
    """The prepared rows: the regular series keep their rows (``frame``, sorted), the gapped
    ones take their rows on the grid (``filled``); ``sizes`` is each series' points out."""
    _, part_ticks, part_y, _, _ = filled
    starts, ticks = layout.starts, layout.ticks
    out_start = np.cumsum(sizes) - sizes
    regular = np.ones(len(starts), dtype=bool)
    regular[irregular] = False
    total = int(sizes.sum())
    out_ticks = np.empty(total, dtype=np.int64)
    out_y = np.empty(total, dtype=np.float64)
    kept = layout.rows(np.flatnonzero(regular))
    target = rows_of(out_start[regular], sizes[regular])
    out_ticks[target] = ticks[kept]
    out_y[target] = frame[Y].to_numpy(dtype=np.float64)[kept]
    del kept, target
    target = rows_of(out_start[irregular], sizes[irregular])
    out_ticks[target] = part_ticks
    out_y[target] = part_y
    del target
    ids_out = frame[ID].to_numpy()[starts][np.repeat(np.arange(len(starts)), sizes)]
    return pd.DataFrame({ID: ids_out, DS: out_ticks.view("datetime64[ns]"), Y: out_y}, copy=False)


def _check_grid(layout: Layout, first: np.ndarray, step: int, frequency: str) -> None:
    """Every series' times distinct and on its grid (a whole number of steps from its first)."""
    ticks = layout.ticks
    owner = np.repeat(np.arange(len(layout.starts)), layout.lengths)
    same = np.flatnonzero((np.diff(ticks) == 0) & (np.diff(owner) == 0))
    off = np.flatnonzero((ticks - first[owner]) % step != 0)
    if not len(same) and not len(off):
        return
    # The earlier in the frame's order, so the message is the same whichever is found first.
    at = min(int(same[0]) + 1 if len(same) else len(ticks), int(off[0]) if len(off) else len(ticks))
    series = str(layout.ids[owner[at]])
    when = pd.Timestamp(int(ticks[at]))
    if len(same) and at == int(same[0]) + 1:
        raise DataError(series, f"two rows at {when} (one row per series and time expected)")
    start = pd.Timestamp(int(first[owner[at]]))
    raise DataError(series, f"time {when} is not on the {frequency} grid starting at {start}")


# Below a microsecond, two grid times can be the same float64 and the vectorised time
# interpolation would part from pandas'; such frequencies go series by series.
_MIN_STEP_NS = 1_000


def _fill_gaps(
    layout: Layout, irregular: np.ndarray, grid_len: np.ndarray, step: int, max_fill: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """The gapped series on their grid, all at once: returns, for their kept grid points in
    order, ``(series, ticks, y)`` (series numbered as in ``irregular``), and per series where
    the history was cut (-1: not cut) and how many points were filled.

    None when a series has a repeated timestamp or loses every point to a trailing gap (the
    series-by-series way raises on both).
    """
    starts, lengths = layout.starts[irregular], layout.lengths[irregular]
    rows = rows_of(starts, lengths)
    owner = np.repeat(np.arange(len(irregular)), lengths)
    first = layout.ticks[starts]
    offset_in = layout.ticks[rows] - first[owner]
    on_grid = offset_in % step == 0
    if bool(np.any((np.diff(layout.ticks[rows]) == 0) & (np.diff(owner) == 0))):
        return None  # a repeated timestamp: reindexing onto the grid fails
    grid_start = np.cumsum(grid_len) - grid_len
    values = np.full(int(grid_len.sum()), np.nan)
    y = layout.frame[Y].to_numpy(dtype=np.float64)[rows]
    values[(grid_start[owner] + offset_in // step)[on_grid]] = y[on_grid]
    grid_owner = np.repeat(np.arange(len(irregular)), grid_len)
    position = np.arange(len(values)) - grid_start[grid_owner]
    # Runs of missing steps: a run longer than max_fill cuts the history before it.
    missing = np.isnan(values)
    opens = missing & ((position == 0) | ~np.r_[False, missing[:-1]])
    closes = missing & ((position == grid_len[grid_owner] - 1) | ~np.r_[missing[1:], False])
    run_start, run_stop = np.flatnonzero(opens), np.flatnonzero(closes) + 1
    long_run = run_stop - run_start > max_fill
    cut = np.full(len(irregular), -1, dtype=np.int64)
    np.maximum.at(cut, grid_owner[run_start[long_run]], position[run_stop[long_run] - 1] + 1)
    if bool(np.any(cut == grid_len)):
        return None  # the whole series is cut: its cut has no timestamp to report
    keep = position >= cut[grid_owner]
    values, grid_owner, position = values[keep], grid_owner[keep], position[keep]
    missing = np.isnan(values)
    n_filled = np.bincount(grid_owner[missing], minlength=len(irregular))
    ticks = first[grid_owner] + position * step
    _interpolate_in_time(values, ticks, grid_owner)
    return grid_owner, ticks, values, cut, n_filled


def _interpolate_in_time(values: np.ndarray, ticks: np.ndarray, owner: np.ndarray) -> None:
    """Fill NaN between two observed values of the same series, linearly in time, in place.

    The arithmetic of ``np.interp`` (which pandas' ``interpolate(method="time")`` calls per
    series) on the same float64 times, so the values are the same bits.
    """
    missing = np.isnan(values)
    if not missing.any():
        return
    index = np.arange(len(values))
    observed = np.where(missing, -1, index)
    left = np.maximum.accumulate(observed)
    observed = np.where(missing, len(values), index)
    right = np.minimum.accumulate(observed[::-1])[::-1]
    inside = missing & (left >= 0) & (right < len(values))
    inside[inside] &= (owner[left[inside]] == owner[inside]) & (
        owner[right[inside]] == owner[inside]
    )
    at = np.flatnonzero(inside)
    if not len(at):
        return
    x = ticks[at].astype(np.float64)
    x0, x1 = ticks[left[at]].astype(np.float64), ticks[right[at]].astype(np.float64)
    y0, y1 = values[left[at]], values[right[at]]
    with np.errstate(all="ignore"):
        slope = (y1 - y0) / (x1 - x0)
        found = slope * (x - x0) + y0
        # If we get NaN in one direction, numpy tries the other.
        again = np.isnan(found)
        found[again] = slope[again] * (x[again] - x1[again]) + y1[again]
        flat = np.isnan(found) & (y0 == y1)
        found[flat] = y0[flat]
    values[at] = found


def _regularize_each(
    history: pd.DataFrame, offset: BaseOffset, max_fill: int, frequency: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`regularize` series by series, for what the vectorised way does not take."""
    frame = history[[ID, DS, Y]].sort_values([ID, DS], kind="stable").reset_index(drop=True)
    out: list[pd.DataFrame] = []
    report: list[tuple[str, int, int, int, object]] = []
    for uid, group in frame.groupby(ID, sort=False):
        grid = pd.date_range(group[DS].iloc[0], group[DS].iloc[-1], freq=offset)
        repeated = group[DS].duplicated()
        if repeated.any():
            when = group[DS][repeated].iloc[0]
            raise DataError(str(uid), f"two rows at {when} (one row per series and time expected)")
        off_grid = ~group[DS].isin(grid)
        if off_grid.any():
            raise DataError(
                str(uid),
                f"time {group[DS][off_grid].iloc[0]} is not on the {frequency} grid "
                f"starting at {grid[0]}",
            )
        if len(grid) == len(group):
            out.append(group)
            report.append((str(uid), len(group), len(group), 0, None))
            continue
        series = group.set_index(DS)[Y].reindex(grid)
        missing = series.isna().to_numpy()
        # Runs of missing steps: a run longer than max_fill cuts the history before it.
        cut_at = None
        if missing.any():
            edges = np.flatnonzero(np.diff(np.concatenate(([0], missing.astype(np.int8), [0]))))
            for start, stop in zip(edges[::2], edges[1::2], strict=True):
                if stop - start > max_fill:
                    cut_at = stop
        if cut_at is not None:
            series = series.iloc[cut_at:]
        filled = int(series.isna().sum())
        series = series.interpolate(method="time", limit_area="inside")
        part = pd.DataFrame({ID: uid, DS: series.index, Y: series.to_numpy()})
        out.append(part)
        report.append(
            (str(uid), len(group), len(part), filled, grid[cut_at] if cut_at is not None else None)
        )
    prepared = pd.concat(out, ignore_index=True)
    prepared[DS] = prepared[DS].astype("datetime64[ns]")
    return prepared, pd.DataFrame(report, columns=list(REPORT_COLUMNS))

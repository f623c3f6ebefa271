"""The long frame of observations, sorted and indexed once for every check."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.tseries.offsets import Tick

from steadycast.ingestion.timegrid import offset_of
from steadycast.quality.checks.context import CheckContext

ID, DS, Y = "unique_id", "ds", "y"


@dataclass
class _Frame:
    """A long frame as sorted numpy arrays: one contiguous segment of rows per series."""

    ids: np.ndarray  # series ids, by code
    codes: np.ndarray  # int64 per row, sorted
    ds: np.ndarray  # datetime64[ns] per row
    y: np.ndarray  # float64 per row
    idx: np.ndarray  # int64 step index per row on the pipeline's grid
    starts: np.ndarray  # first row of each series
    ends: np.ndarray  # one past the last row of each series
    newest_idx: int  # step index of the pipeline's newest ds
    newest: pd.Timestamp | None
    grid: np.ndarray  # int64 ns: the time of step 0 and the step length (Tick), or every step

    def step_time(self, step: int) -> pd.Timestamp:
        """The time of a step index (inverse of the step index)."""
        if len(self.grid) == 2 and self.grid[1] < 0:  # Tick: (origin, -step)
            return pd.Timestamp(int(self.grid[0] - step * self.grid[1]))
        return pd.Timestamp(int(self.grid[min(max(step, 0), len(self.grid) - 1)]))

    @property
    def n_series(self) -> int:
        return len(self.ids)

    @property
    def counts(self) -> np.ndarray:
        return np.asarray(self.ends - self.starts)

    def ts(self, row: int) -> pd.Timestamp:
        return pd.Timestamp(self.ds[row])


def _prepare(frame: pd.DataFrame, ctx: CheckContext) -> _Frame:
    missing = [c for c in (ID, DS, Y) if c not in frame.columns]
    if missing:
        raise ValueError(f"checks need the columns unique_id, ds, y; missing: {missing}")
    codes, ids = pd.factorize(frame[ID].astype(str), sort=True)
    ds = pd.to_datetime(frame[DS]).to_numpy(dtype="datetime64[ns]")
    y = frame[Y].to_numpy(dtype=np.float64, na_value=np.nan)
    codes = codes.astype(np.int64)
    ds_int = ds.view(np.int64)
    if len(codes) and not (
        (np.diff(codes) >= 0).all() and ((np.diff(codes) > 0) | (np.diff(ds_int) > 0)).all()
    ):
        order = np.lexsort((ds_int, codes))
        codes, ds, y = codes[order], ds[order], y[order]
    newest = ctx.newest if ctx.newest is not None else (pd.Timestamp(ds.max()) if len(ds) else None)
    stamps = ds if newest is None else np.append(ds, np.datetime64(newest, "ns"))
    steps, grid = _step_index(stamps, ctx.frequency)
    idx = steps[: len(ds)]
    newest_idx = int(steps[-1]) if newest is not None and len(steps) else 0
    if len(codes):
        starts = np.flatnonzero(np.r_[True, np.diff(codes) != 0])
        ends = np.r_[starts[1:], len(codes)]
    else:
        starts = ends = np.zeros(0, dtype=np.int64)
    return _Frame(
        np.asarray(ids, dtype=object), codes, ds, y, idx, starts, ends, newest_idx, newest, grid
    )


def _step_index(ds: np.ndarray, frequency: str) -> tuple[np.ndarray, np.ndarray]:
    """The step number of each time on the pipeline's grid, counted from the earliest, and the
    grid to turn a step back into a time: ``(origin, -step)`` for fixed-length steps, else
    the time of every step."""
    if len(ds) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    offset = offset_of(frequency)
    ints = ds.view(np.int64)
    if isinstance(offset, Tick):
        step = pd.Timedelta(offset).value
        origin = int(ints.min())
        return np.asarray((ints - origin) // step), np.array([origin, -step], dtype=np.int64)
    # Calendar frequencies (W-SUN, MS, ...): position on one grid over the whole span.
    lo, hi = pd.Timestamp(ds.min()), pd.Timestamp(ds.max())
    grid = pd.date_range(offset.rollback(lo), hi, freq=offset).asi8
    return np.searchsorted(grid, ints, side="right").astype(np.int64) - 1, grid

"""Prepare: put every series on a regular grid at the pipeline's frequency, ready for models.

Models need regular series without missing values. Interior gaps up to ``max_fill`` steps are
filled by linear interpolation in time; a longer gap means the older history no longer tells
much about the present, so the training window starts after it. Both are counted per series,
so a person can see what was done to each.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from steadycast.timegrid import offset_of

ID, DS, Y = "unique_id", "ds", "y"
REPORT_COLUMNS = (ID, "points_in", "points_out", "filled", "cut_before")


def regularize(
    history: pd.DataFrame, frequency: str, max_fill: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (regular history, per-series report). ``history`` is ``unique_id, ds, y``."""
    if history.empty:
        return history[[ID, DS, Y]].copy(), pd.DataFrame(columns=list(REPORT_COLUMNS))
    offset = offset_of(frequency)
    frame = history[[ID, DS, Y]].sort_values([ID, DS], kind="stable").reset_index(drop=True)
    out: list[pd.DataFrame] = []
    report: list[tuple[str, int, int, int, object]] = []
    for uid, group in frame.groupby(ID, sort=False):
        grid = pd.date_range(group[DS].iloc[0], group[DS].iloc[-1], freq=offset)
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

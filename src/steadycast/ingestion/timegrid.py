"""Where a timestamp belongs: local wall-clock time to UTC, and on or off the pipeline's grid.

Policy (docs/ingest.md has the long form):

- Sub-daily frequencies: ``ds`` is the UTC instant. Naive timestamps are wall-clock times in
  ``[source].timezone``; aware ones (``Z``, ``+01:00``, epoch numbers) are instants already.
- Daily and longer frequencies: ``ds`` is the calendar period's start in local wall-clock time,
  never shifted (a day is a date, not an instant 5 hours after UTC midnight).
- A local time that does not exist (skipped by a spring-forward change) cannot be placed: the row
  is quarantined as ``nonexistent_local_time``.
- A local time that exists twice (repeated by a fall-back change) is placed by the order in which
  a series reports it: the first row is the earlier instant (summer time), the second the later
  one. A series that reports such a time once, or more than twice, cannot be placed unambiguously:
  those rows are quarantined as ``ambiguous_local_time``.
- On the grid means on the frequency's boundaries in local wall-clock time (10:17 is off an hourly
  grid). With ``snap_to_frequency`` the time is floored to the grid instead of quarantined.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from pandas.tseries.offsets import BaseOffset, Tick

DAY = pd.Timedelta(days=1)

# The times a pipeline accepts. Forecasting works on nanosecond timestamps, which end in 1677 and
# 2262; the margin leaves room for the horizon and the season arithmetic past the last time.
EARLIEST = pd.Timestamp("1700-01-01")
LATEST = pd.Timestamp("2200-01-01")  # exclusive
TIME_RANGE = f"{EARLIEST:%Y-%m-%d} to {LATEST - DAY:%Y-%m-%d}"


def in_range_sql(column: str) -> str:
    """SQL test that a TIMESTAMP column holds a time a pipeline accepts."""
    return f"({column} >= TIMESTAMP '{EARLIEST:%Y-%m-%d}' AND {column} < TIMESTAMP '{LATEST:%Y-%m-%d}')"


def offset_of(frequency: str) -> BaseOffset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pd.tseries.frequencies.to_offset(frequency)


def is_calendar(frequency: str) -> bool:
    """True for daily and longer frequencies, whose ``ds`` stays in local calendar time."""
    offset = offset_of(frequency)
    if isinstance(offset, Tick):
        return bool(pd.Timedelta(offset) >= DAY)
    return True


def grid_map(local: pd.Series, frequency: str, timezone: str, snap: bool) -> pd.DataFrame:
    """For distinct local wall-clock times: whether each is on the grid and where it lands.

    Returns ``ts_local, on_grid, local_snapped, ds_first, ds_second``. ``ds_first`` and
    ``ds_second`` differ only for repeated (ambiguous) local times; both are NaT for local times
    that do not exist in ``timezone``.
    """
    idx = pd.DatetimeIndex(pd.to_datetime(local.drop_duplicates()), name="ts_local")
    offset = offset_of(frequency)
    if isinstance(offset, Tick):
        floored = idx.floor(offset)
    else:
        # Anchored offsets (W-SUN, MS, QS ...): a time is on the grid when it is midnight of an
        # anchor day; otherwise it snaps back to the previous anchor.
        day = idx.normalize()
        on_anchor = np.fromiter((offset.is_on_offset(d) for d in day), dtype=bool, count=len(day))
        rolled = pd.DatetimeIndex(
            [d if ok else offset.rollback(d) for d, ok in zip(day, on_anchor, strict=True)]
        )
        floored = rolled
    on_grid = np.asarray(idx == floored)
    target = floored if snap else idx
    if is_calendar(frequency) or timezone in ("UTC", "Etc/UTC"):
        first = second = pd.DatetimeIndex(target)
    else:
        n = len(target)
        first = (
            pd.DatetimeIndex(target)
            .tz_localize(timezone, ambiguous=np.ones(n, dtype=bool), nonexistent="NaT")
            .tz_convert("UTC")
            .tz_localize(None)
        )
        second = (
            pd.DatetimeIndex(target)
            .tz_localize(timezone, ambiguous=np.zeros(n, dtype=bool), nonexistent="NaT")
            .tz_convert("UTC")
            .tz_localize(None)
        )
    return pd.DataFrame(
        {
            "ts_local": idx.astype("datetime64[us]"),
            "on_grid": on_grid,
            "local_snapped": pd.DatetimeIndex(target).astype("datetime64[us]"),
            "ds_first": pd.DatetimeIndex(first).astype("datetime64[us]"),
            "ds_second": pd.DatetimeIndex(second).astype("datetime64[us]"),
        }
    )

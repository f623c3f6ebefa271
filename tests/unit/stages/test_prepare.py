"""Prepare: gaps filled in time or the history cut, all series at once, as series by series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steadycast.forecasting.prepare import REPORT_COLUMNS, regularize


def reference(
    history: pd.DataFrame, frequency: str, max_fill: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rule written plainly, one series at a time, with pandas doing the filling."""
    frame = history.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
    out, report = [], []
    for uid, group in frame.groupby("unique_id", sort=False):
        grid = pd.date_range(group["ds"].iloc[0], group["ds"].iloc[-1], freq=frequency)
        if len(grid) == len(group):
            out.append(group)
            report.append((str(uid), len(group), len(group), 0, None))
            continue
        series = group.set_index("ds")["y"].reindex(grid)
        missing = series.isna().to_numpy()
        cut_at = None
        edges = np.flatnonzero(np.diff(np.concatenate(([0], missing.astype(np.int8), [0]))))
        for start, stop in zip(edges[::2], edges[1::2], strict=True):
            if stop - start > max_fill:
                cut_at = stop
        if cut_at is not None:
            series = series.iloc[cut_at:]
        filled = int(series.isna().sum())
        series = series.interpolate(method="time", limit_area="inside")
        out.append(pd.DataFrame({"unique_id": uid, "ds": series.index, "y": series.to_numpy()}))
        cut = grid[cut_at] if cut_at is not None else None
        report.append((str(uid), len(group), len(series), filled, cut))
    prepared = pd.concat(out, ignore_index=True)
    prepared["ds"] = prepared["ds"].astype("datetime64[ns]")
    return prepared, pd.DataFrame(report, columns=list(REPORT_COLUMNS))


@st.composite
def histories(draw: st.DrawFn) -> tuple[pd.DataFrame, str, int]:
    frequency = draw(st.sampled_from(["h", "D", "30min"]))
    frames = []
    for k in range(draw(st.integers(min_value=1, max_value=5))):
        n = draw(st.integers(min_value=1, max_value=40))
        y = np.asarray(draw(st.lists(st.floats(-50, 50), min_size=n, max_size=n)))
        nan_at = draw(st.lists(st.integers(0, n - 1), max_size=n // 3))
        y[nan_at] = np.nan
        keep = np.ones(n, dtype=bool)
        keep[draw(st.lists(st.integers(1, max(n - 2, 1)), max_size=n // 2))] = False
        keep[-1] = True  # the last observation ends the grid
        if np.isnan(y[-1]):
            y[-1] = 1.0  # a trailing gap longer than max_fill has no timestamp to cut at
        ds = pd.date_range("2024-01-01", periods=n, freq=frequency)
        frames.append(pd.DataFrame({"unique_id": f"s{k}", "ds": ds[keep], "y": y[keep]}))
    history = pd.concat(frames, ignore_index=True)
    if draw(st.booleans()):
        history = history.sample(frac=1.0, random_state=draw(st.integers(0, 100)))
    return history, frequency, draw(st.integers(min_value=1, max_value=6))


@settings(max_examples=80, deadline=None)
@given(case=histories())
def test_same_as_series_by_series(case: tuple[pd.DataFrame, str, int]) -> None:
    history, frequency, max_fill = case
    prepared, report = regularize(history, frequency, max_fill)
    expected, expected_report = reference(history, frequency, max_fill)
    pd.testing.assert_frame_equal(prepared, expected, check_exact=True)
    pd.testing.assert_frame_equal(report, expected_report, check_exact=True)


def test_short_gap_filled_in_time_long_gap_cuts() -> None:
    ds = pd.date_range("2024-01-01", periods=12, freq="h")
    history = pd.concat(
        [
            pd.DataFrame({"unique_id": "filled", "ds": ds[[0, 1, 4, 5]], "y": [1.0, 2, 5, 6]}),
            pd.DataFrame({"unique_id": "cut", "ds": ds[[0, 1, 9, 10, 11]], "y": [1.0, 1, 3, 4, 5]}),
        ]
    )
    prepared, report = regularize(history, "h", max_fill=3)
    filled = prepared[prepared["unique_id"] == "filled"]
    assert filled["y"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    rows = report.set_index("unique_id")
    assert rows.loc["filled", "filled"] == 2
    assert rows.loc["cut", "cut_before"] == ds[9]
    assert prepared[prepared["unique_id"] == "cut"]["ds"].tolist() == list(ds[9:12])


@pytest.mark.parametrize("frequency", ["W", "MS"])
def test_calendar_frequencies_go_series_by_series(frequency: str) -> None:
    ds = pd.date_range("2024-01-01", periods=8, freq=frequency)
    history = pd.DataFrame({"unique_id": "w", "ds": ds[[0, 1, 3, 7]], "y": [1.0, 2, 4, 8]})
    prepared, report = regularize(history, frequency, max_fill=2)
    expected, expected_report = reference(history, frequency, 2)
    pd.testing.assert_frame_equal(prepared, expected)
    pd.testing.assert_frame_equal(report, expected_report)

"""Series as sorted runs: the vectorised reductions give pandas' bits, the sort pandas' order."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from steadycast.forecasting import _segments as segments
from steadycast.forecasting._segments import RunningMean, prefix_means, rows_up_to, sorted_runs

# Values whose sums lose bits in any order but pandas' (compensated, row by row).
values = st.floats(min_value=-1e6, max_value=1e6) | st.sampled_from([0.1, 1e-9, 3.3e5, np.nan])


@settings(max_examples=60, deadline=None)
@given(columns=st.lists(st.lists(values, min_size=5, max_size=5), min_size=1, max_size=12))
def test_running_mean_is_pandas_groupby_mean(columns: list[list[float]]) -> None:
    data = np.asarray(columns, dtype=float)  # (steps, groups): one value per group per step
    expected = (
        pd.Series(data.T.reshape(-1)).groupby(np.repeat(np.arange(5), len(data))).mean()
    ).to_numpy()
    np.testing.assert_array_equal(RunningMean.of(list(data)), expected)


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=6),
    seed=st.integers(min_value=0, max_value=10_000),
    gather=st.booleans(),
)
def test_prefix_means_are_pandas_means_of_each_prefix(
    lengths: list[int], seed: int, gather: bool
) -> None:
    rng = np.random.default_rng(seed)
    sizes = np.asarray(lengths, dtype=np.int64)
    starts = np.cumsum(sizes) - sizes
    data = rng.normal(0, 1, (int(sizes.sum()), 2)) * 10.0 ** rng.integers(-3, 6, (sizes.sum(), 2))
    data[rng.random(data.shape) < 0.2] = np.nan
    series = rng.integers(0, len(sizes), 8).astype(np.int64)
    counts = (rng.random(8) * (sizes[series] + 1)).astype(np.int64)
    # Either way of computing (step by step, or copying the prefixes out) gives the same bits.
    cost = 10**9 if gather else 0
    original = segments._STEP_COST_ROWS
    segments._STEP_COST_ROWS = cost
    try:
        got = prefix_means(data, starts, sizes, series, counts)
    finally:
        segments._STEP_COST_ROWS = original
    for q, (s, n) in enumerate(zip(series, counts, strict=True)):
        rows = data[starts[s] : starts[s] + n]
        expected = (
            pd.DataFrame(rows).groupby(np.zeros(n, dtype=int)).mean().to_numpy()[0]
            if n
            else np.full(2, np.nan)
        )
        np.testing.assert_array_equal(got[q], expected)


@settings(max_examples=100, deadline=None)
@given(
    ids=st.lists(st.sampled_from(["a", "b", "c10", "c9", "z"]), max_size=30),
    days=st.lists(st.integers(min_value=0, max_value=5) | st.none(), max_size=30),
    presorted=st.booleans(),
)
def test_sorted_runs_sort_as_pandas_does(
    ids: list[str], days: list[int | None], presorted: bool
) -> None:
    n = min(len(ids), len(days))
    frame = pd.DataFrame(
        {
            "id": np.asarray(ids[:n], dtype=object),
            "t": pd.to_datetime(
                [pd.NaT if d is None else pd.Timestamp(2024, 1, 1 + d) for d in days[:n]]
            ),
        }
    )
    if presorted:
        frame = frame.sort_values(["id", "t"], kind="stable").reset_index(drop=True)
    expected = frame.sort_values(["id", "t"], kind="stable").index.to_numpy()
    order, starts, lengths = sorted_runs(frame["id"].to_numpy(), frame["t"].to_numpy())
    got = np.arange(n) if order is None else order
    np.testing.assert_array_equal(got, expected)
    sorted_ids = frame["id"].to_numpy()[got]
    assert [sorted_ids[s] for s in starts] == list(dict.fromkeys(sorted_ids))
    assert lengths.sum() == n


def test_rows_up_to_counts_rows_at_or_before_each_cutoff() -> None:
    times = np.array([1.0, 2.0, 3.0, 5.0, 1.0, 4.0, np.nan])
    starts = np.array([0, 4])
    lengths = np.array([4, 3])
    counts = rows_up_to(times, starts, lengths, np.array([3.0, 4.0]))
    np.testing.assert_array_equal(counts, [3, 2])

"""validate_forecast: each kind of bad output fails only its series, with a reason naming it."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steadycast.models.base import ForecastTask
from steadycast.models.validation import expected_timestamps, validate_forecast

from .series import batch, series

TASK = ForecastTask(horizon=3, frequency="h", season_length=1, levels=(80,))


def history() -> pd.DataFrame:
    return batch(series("b", [1.0, 2.0, 3.0]), series("a", [5.0, 5.0, 5.0, 5.0]))


def good_output() -> pd.DataFrame:
    """A valid forecast for history(): 3 hourly steps after each series' last timestamp."""
    rows = []
    for uid, last in (("b", "2024-01-01 02:00"), ("a", "2024-01-01 03:00")):
        for k in range(1, 4):
            ds = pd.Timestamp(last) + pd.Timedelta(hours=k)
            rows.append(
                {"unique_id": uid, "ds": ds, "yhat": 1.0, "yhat_lo_80": 0.5, "yhat_hi_80": 1.5}
            )
    return pd.DataFrame(rows)


def test_good_output_is_kept_in_history_order_with_canonical_dtypes() -> None:
    out = good_output().sample(frac=1.0, random_state=1)  # any row order
    valid, failures = validate_forecast(out, history(), TASK, "m")
    assert failures == {}
    assert list(valid.columns) == ["unique_id", "ds", "yhat", "yhat_lo_80", "yhat_hi_80"]
    assert valid["unique_id"].tolist() == ["b"] * 3 + ["a"] * 3  # the history's order
    assert valid.groupby("unique_id")["ds"].apply(lambda s: s.is_monotonic_increasing).all()
    assert str(valid["ds"].dtype) == "datetime64[ns]"
    assert valid["yhat"].dtype == np.float64
    assert all(isinstance(u, str) for u in valid["unique_id"])


@pytest.mark.parametrize(
    ("corrupt", "reason"),
    [
        (lambda o: o[o["unique_id"] != "a"], r"missing from the output of model 'm'"),
        (lambda o: o.drop(index=5), r"returned 2 rows, expected 3"),
        (lambda o: o.assign(ds=o["ds"].where(o.index != 4, o["ds"][3])), r"duplicate timestamps"),
        (
            lambda o: o.assign(ds=o["ds"].where(o.index != 3, pd.Timestamp("2024-01-01 03:00"))),
            r"off the forecast grid, first 2024-01-01 03:00:00; expected 3 steps of h from 2024-01-01 04:00:00",
        ),
        (lambda o: o.assign(yhat=o["yhat"].where(o.index != 4, np.nan)), r"non-finite yhat"),
        (lambda o: o.assign(yhat=o["yhat"].where(o.index != 4, np.inf)), r"non-finite yhat"),
        (
            lambda o: o.assign(yhat_lo_80=o["yhat_lo_80"].where(o.index != 4, 9.0)),
            r"yhat_lo_80 > yhat",
        ),
        (
            lambda o: o.assign(yhat_hi_80=o["yhat_hi_80"].where(o.index != 4, -9.0)),
            r"yhat > yhat_hi_80",
        ),
        (
            lambda o: o.assign(yhat_hi_80=o["yhat_hi_80"].where(o.index != 4, np.nan)),
            r"non-finite or partly missing 80% interval",
        ),
        (
            lambda o: o.assign(unique_id=o["unique_id"].replace("a", "A")),
            r"missing from the output .* ids that are not in the history: 'A'",
        ),
    ],
)
def test_one_bad_series_fails_alone(
    corrupt: Callable[[pd.DataFrame], pd.DataFrame], reason: str
) -> None:
    valid, failures = validate_forecast(corrupt(good_output()), history(), TASK, "m")
    assert set(failures) == {"a"}
    assert re.search(reason, failures["a"]), failures["a"]
    assert valid["unique_id"].unique().tolist() == ["b"]
    assert len(valid) == 3


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ([1.0, 2.0], r"model 'm' returned a list, not a pandas DataFrame"),
        (None, r"returned a NoneType, not a pandas DataFrame"),
        (good_output().drop(columns="yhat"), r"returned no column 'yhat' \(columns: unique_id, ds"),
        (
            good_output().drop(columns="yhat_hi_80"),
            r"one bound of the 80% interval but no 'yhat_hi_80'",
        ),
        (good_output().assign(ds="not a time"), r"'ds' column that is not timestamps"),
    ],
)
def test_output_unusable_as_a_whole_fails_every_series(output: object, reason: str) -> None:
    valid, failures = validate_forecast(output, history(), TASK, "m")
    assert valid.empty
    assert set(failures) == {"a", "b"}
    assert all(re.search(reason, r) for r in failures.values()), failures


def test_series_without_intervals_is_valid_with_nan_bounds() -> None:
    out = good_output().drop(columns=["yhat_lo_80", "yhat_hi_80"])
    valid, failures = validate_forecast(out, history(), TASK, "m")
    assert failures == {}
    assert valid["yhat_lo_80"].isna().all() and valid["yhat_hi_80"].isna().all()


def test_several_problems_of_one_series_are_all_named() -> None:
    out = good_output()
    out = out[~((out["unique_id"] == "a") & (out.index == 5))].copy()
    out.loc[3, "yhat"] = np.nan
    _, failures = validate_forecast(out, history(), TASK, "m")
    assert "returned 2 rows, expected 3" in failures["a"]
    assert "non-finite yhat" in failures["a"]


def test_timezone_aware_output_is_converted_to_naive_utc() -> None:
    out = good_output()
    out["ds"] = out["ds"].dt.tz_localize("UTC").dt.tz_convert("Europe/Berlin")
    valid, failures = validate_forecast(out, history(), TASK, "m")
    assert failures == {}
    assert valid["ds"].dt.tz is None
    assert valid["ds"].iloc[0] == pd.Timestamp("2024-01-01 03:00")


def test_integer_ids_in_history_and_output_are_compared_as_strings() -> None:
    hist = history().assign(unique_id=lambda d: d["unique_id"].map({"a": 7, "b": 8}))
    out = good_output().assign(unique_id=lambda d: d["unique_id"].map({"a": 7, "b": 8}))
    valid, failures = validate_forecast(out, hist, TASK, "m")
    assert failures == {}
    assert set(valid["unique_id"]) == {"7", "8"}


def test_expected_grid_follows_calendar_frequencies() -> None:
    last = pd.Series([pd.Timestamp("2024-01-01")], index=["m"])
    task = ForecastTask(horizon=3, frequency="MS")
    grid = expected_timestamps(last, task)
    assert grid["ds"].tolist() == [
        pd.Timestamp(d) for d in ("2024-02-01", "2024-03-01", "2024-04-01")
    ]


@settings(max_examples=40, deadline=None)
@given(
    n_series=st.integers(min_value=1, max_value=6),
    bad=st.sets(st.integers(min_value=0, max_value=5)),
    kind=st.sampled_from(["nan", "drop", "shift", "lo"]),
)
def test_exactly_the_corrupted_series_fail(n_series: int, bad: set[int], kind: str) -> None:
    ids = [f"s{i}" for i in range(n_series)]
    hist = batch(*[series(uid, np.arange(5.0)) for uid in ids])
    rows = [
        {
            "unique_id": uid,
            "ds": pd.Timestamp("2024-01-01 04:00") + pd.Timedelta(hours=k),
            "yhat": 2.0,
            "yhat_lo_80": 1.0,
            "yhat_hi_80": 3.0,
        }
        for uid in ids
        for k in range(1, 4)
    ]
    out = pd.DataFrame(rows)
    corrupted = {f"s{i}" for i in bad if i < n_series}
    hit = out["unique_id"].isin(corrupted) & (out.groupby("unique_id").cumcount() == 1)
    if kind == "nan":
        out.loc[hit, "yhat"] = np.nan
    elif kind == "drop":
        out = out[~hit]
    elif kind == "shift":
        out.loc[hit, "ds"] += pd.Timedelta(minutes=30)
    else:
        out.loc[hit, "yhat_lo_80"] = 5.0
    valid, failures = validate_forecast(out, hist, TASK, "m")
    assert set(failures) == corrupted
    assert set(valid["unique_id"]) == set(ids) - corrupted

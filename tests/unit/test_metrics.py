"""Metrics against hand-computed values, and the published M4 Weekly Naive2 figures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steadycast.forecasting import metrics as M

DATA = Path(__file__).parents[2] / ".." / "shared" / "data"


def _train() -> pd.DataFrame:
    # a: 1 2 4 3 5   -> |lag-1 changes| 1 2 1 2, mean 1.5; squared 1 4 1 4, mean 2.5
    # b: constant 7  -> lag-1 scale 0, replaced by the mean level 7 (49 for squares)
    return pd.DataFrame(
        {
            "unique_id": ["a"] * 5 + ["b"] * 4,
            "ds": [*range(5), *range(4)],
            "y": [1, 2, 4, 3, 5, 7, 7, 7, 7.0],
        }
    )


def _forecasts() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unique_id": ["a", "a", "b", "b"],
            "ds": [5, 6, 4, 5],
            "y": [6, 6, 7, 8.0],
            "m1": [5, 7, 7, 7.0],
            "m2": [6, 6, np.nan, np.nan],
            "m1-lo-80": [4, 6.5, 6, 6.0],
            "m1-hi-80": [6, 8, 8, 8.0],
        }
    )


def _value(frame: pd.DataFrame, uid: str, model: str) -> float:
    return float(frame.set_index("unique_id").loc[uid, model])


def test_smape_is_m4_percent() -> None:
    out = M.smape(_forecasts(), ["m1"], _train(), 1)
    assert _value(out, "a", "m1") == pytest.approx(100 * (1 / 11 + 1 / 13))
    assert _value(out, "b", "m1") == pytest.approx(100 * (0 / 14 + 1 / 15))


def test_smape_of_zero_actual_and_zero_forecast_is_perfect() -> None:
    df = pd.DataFrame({"unique_id": ["z"] * 2, "ds": [1, 2], "y": [0.0, 0.0], "m": [0.0, 1.0]})
    out = M.smape(df, ["m"], df[["unique_id", "ds", "y"]], 1)
    assert _value(out, "z", "m") == pytest.approx(100.0)  # (0 + 200) / 2


def test_mase_uses_in_sample_seasonal_naive_scale() -> None:
    out = M.mase(_forecasts(), ["m1"], _train(), 1)
    assert _value(out, "a", "m1") == pytest.approx(1.0 / 1.5)
    # season 2: |4-1|, |3-2|, |5-4| -> mean 5/3
    out2 = M.mase(_forecasts(), ["m1"], _train(), 2)
    assert _value(out2, "a", "m1") == pytest.approx(1.0 / (5 / 3))


def test_rmsse_hand_computed() -> None:
    out = M.rmsse(_forecasts(), ["m1"], _train(), 1)
    assert _value(out, "a", "m1") == pytest.approx(math.sqrt(1.0 / 2.5))


def test_zero_scale_falls_back_to_level_and_stays_finite() -> None:
    out = M.mase(_forecasts(), ["m1"], _train(), 1)
    assert _value(out, "b", "m1") == pytest.approx(0.5 / 7)
    rm = M.rmsse(_forecasts(), ["m1"], _train(), 1)
    assert _value(rm, "b", "m1") == pytest.approx(math.sqrt(0.5 / 49))


def test_all_zero_history_uses_scale_one() -> None:
    train = pd.DataFrame({"unique_id": ["z"] * 3, "ds": [0, 1, 2], "y": [0.0] * 3})
    df = pd.DataFrame({"unique_id": ["z"] * 2, "ds": [3, 4], "y": [0.0, 2.0], "m": [0.0, 0.0]})
    assert _value(M.mase(df, ["m"], train, 1), "z", "m") == pytest.approx(1.0)
    assert _value(M.mase(df.assign(y=0.0), ["m"], train, 1), "z", "m") == 0.0


def test_season_longer_than_history_falls_back_to_lag_one() -> None:
    out = M.mase(_forecasts(), ["m1"], _train(), 52)
    assert _value(out, "a", "m1") == pytest.approx(1.0 / 1.5)


def test_coverage_share_inside_and_nan_without_bounds() -> None:
    out = M.coverage(80)(_forecasts(), ["m1", "m2"], _train(), 1)
    assert _value(out, "a", "m1") == pytest.approx(0.5)  # 6 in [4, 6]; 6 not in [6.5, 8]
    assert _value(out, "b", "m1") == pytest.approx(1.0)
    assert math.isnan(_value(out, "a", "m2"))
    assert M.coverage(95).__name__ == "coverage_95"


def test_scale_uses_history_up_to_each_cutoff_only() -> None:
    train = pd.DataFrame({"unique_id": ["a"] * 6, "ds": range(6), "y": [0, 1, 2, 3, 13, 23.0]})
    df = pd.DataFrame(
        {"unique_id": ["a"] * 2, "cutoff": [3, 4], "ds": [4, 5], "y": [13, 23.0], "m": [3, 13.0]}
    )
    out = M.mase(df, ["m"], train, 1).set_index("cutoff")["m"]
    assert out.loc[3] == pytest.approx(10.0)  # scale 1 from 0..3
    assert out.loc[4] == pytest.approx(10 / (13 / 4))  # scale (1+1+1+10)/4


def test_evaluate_composes_a_list_into_one_tidy_frame() -> None:
    metrics = [M.mase, M.smape, M.rmsse, M.coverage(80)]
    out = M.evaluate(_forecasts(), metrics, ["m1", "m2"], _train(), 1)
    assert list(out.columns) == ["unique_id", "model", "mase", "smape", "rmsse", "coverage_80"]
    # m2 has no forecast for b: no row rather than a row of NaN
    assert set(zip(out["unique_id"], out["model"], strict=True)) == {
        ("a", "m1"),
        ("a", "m2"),
        ("b", "m1"),
    }
    assert out.loc[out["model"] == "m2", "mase"].item() == 0.0


def test_owa_against_naive2() -> None:
    assert M.owa(9.161, 2.777, 9.161, 2.777) == pytest.approx(1.0)
    assert M.owa(7.817, 2.356, 9.161, 2.777) == pytest.approx(0.5 * (7.817 / 9.161 + 2.356 / 2.777))


def _m4_long(path: Path) -> pd.DataFrame:
    wide = pd.read_csv(path).rename(columns={"V1": "unique_id"})
    long = wide.melt(id_vars="unique_id", var_name="col", value_name="y").dropna()
    long["ds"] = long["col"].str[1:].astype(int) - 2  # V2 is the first value
    return long.drop(columns="col").sort_values(["unique_id", "ds"]).reset_index(drop=True)


def test_reproduces_published_m4_weekly_naive2() -> None:
    m4 = DATA / "m4"
    if not (m4 / "Weekly-train.csv").exists():
        pytest.skip(f"M4 data not available at {m4}")
    train = _m4_long(m4 / "Weekly-train.csv")
    test = _m4_long(m4 / "Weekly-test.csv")
    last = train.groupby("unique_id")["ds"].max()
    test["ds"] += test["unique_id"].map(last) + 1
    bench = pd.read_csv(m4 / "point_forecasts" / "submission-Naive2-HDW.csv")
    bench = bench[bench["id"].str.startswith("W")].rename(columns={"id": "unique_id"})
    bench = bench.melt(id_vars="unique_id", var_name="h", value_name="Naive2").dropna()
    bench["ds"] = bench["h"].str[1:].astype(int) - 1 + bench["unique_id"].map(last) + 1
    df = test.merge(bench[["unique_id", "ds", "Naive2"]], on=["unique_id", "ds"])
    # Weekly has m = 1 in M4, so Naive2 (no seasonal adjustment) is the last value.
    df["own"] = df["unique_id"].map(train.groupby("unique_id")["y"].last())
    assert len(df) == 359 * 13
    scores = M.evaluate(df, [M.smape, M.mase], ["Naive2", "own"], train, 1)
    means = scores.groupby("model")[["smape", "mase"]].mean().round(3)
    assert means.loc["Naive2"].tolist() == [9.161, 2.777]
    assert means.loc["own"].tolist() == [9.161, 2.777]


# -- the array forms give the frame forms' numbers, bit for bit -------------------------------


def _reference_scale(
    train: pd.DataFrame, df: pd.DataFrame, season_length: int, power: int
) -> pd.Series:
    """insample_scale written plainly: each (cutoff, series) history copied out and scored."""
    out = {}
    for (cutoff, uid), _ in df.groupby(["cutoff", "unique_id"], sort=False):
        rows = train[(train["unique_id"] == uid) & (train["ds"] <= cutoff)]
        rows = rows.sort_values("ds", kind="stable")
        y = rows["y"]

        def loss(lag: int, y: pd.Series = y) -> float:
            diff = (y - y.shift(lag)).abs() ** power
            return float(diff.groupby(np.zeros(len(diff), dtype=int)).mean().iloc[0])

        scale = loss(max(season_length, 1)) if len(y) else np.nan
        if season_length > 1 and np.isnan(scale) and len(y):
            scale = loss(1)
        if not (np.isfinite(scale) and scale > 0) and len(y):
            level = (y.abs() ** power).groupby(np.zeros(len(y), dtype=int)).mean()
            scale = float(level.iloc[0])
        out[(cutoff, uid)] = scale if np.isfinite(scale) and scale > 0 else 1.0
    return pd.Series(out)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=10_000),
    season_length=st.sampled_from([1, 2, 7, 30]),
    power=st.sampled_from([1, 2]),
)
def test_insample_scale_is_each_prefix_scored_alone(
    seed: int, season_length: int, power: int
) -> None:
    rng = np.random.default_rng(seed)
    parts = []
    for uid in ("a", "b", "c"):
        n = int(rng.integers(0, 25))
        y = np.round(rng.normal(5, 3, n), 1)
        y[rng.random(n) < 0.1] = np.nan
        if rng.random() < 0.3:
            y[:] = 4.0  # constant: the level takes over
        parts.append(pd.DataFrame({"unique_id": uid, "ds": np.sort(rng.choice(40, n)), "y": y}))
    train = pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=seed)
    df = pd.DataFrame(
        {
            "unique_id": rng.choice(["a", "b", "c", "ghost"], 6),
            "cutoff": rng.integers(-2, 42, 6),
            "y": 1.0,
            "m": 1.0,
        }
    )
    got = M.insample_scale(train, df, season_length, power=power)
    expected = _reference_scale(train, df, season_length, power)
    keys = list(zip(got["cutoff"], got["unique_id"], strict=True))
    np.testing.assert_array_equal(got["scale"].to_numpy(), expected.loc[keys].to_numpy())


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(min_value=0, max_value=10_000), with_bounds=st.booleans())
def test_block_scores_are_what_evaluate_gives(seed: int, with_bounds: bool) -> None:
    rng = np.random.default_rng(seed)
    groups, steps = 6, 4
    y = np.round(rng.normal(10, 5, (groups, steps)), 1)
    y[0] = 0.0  # sMAPE of 0 against 0
    yhat = np.round(y + rng.normal(0, 2, (groups, steps)), 1)
    yhat[0, :2] = 0.0
    lo, hi = yhat - rng.random((groups, steps)) * 3, yhat + rng.random((groups, steps)) * 3
    lo[1, 2] = np.nan  # a bound missing for one step: no coverage for that group
    wide = pd.DataFrame(
        {
            "unique_id": np.repeat([f"s{g}" for g in range(groups)], steps),
            "ds": np.tile(np.arange(steps), groups),
            "y": y.reshape(-1),
            "m": yhat.reshape(-1),
        }
    )
    if with_bounds:
        wide["m-lo-80"], wide["m-hi-80"] = lo.reshape(-1), hi.reshape(-1)
    metrics = [M.mase, M.smape, M.rmsse, M.coverage(80), M.coverage(95)]
    # A history of two points, 0 then s, has the in-sample scale s (and s² for squares).
    s = np.round(rng.random(groups) * 3 + 0.5, 2)
    train = pd.DataFrame(
        {
            "unique_id": np.repeat([f"s{g}" for g in range(groups)], 2),
            "ds": np.tile([-2, -1], groups),
            "y": np.column_stack([np.zeros(groups), s]).reshape(-1),
        }
    )
    expected = M.evaluate(wide, metrics, ["m"], train, 1)
    scale = np.column_stack([s, (s - 0.0) ** 2])
    bounds = {80: (lo, hi)} if with_bounds else {}
    got = M.block_scores(metrics, y, yhat, bounds, lambda powers: scale[:, [p - 1 for p in powers]])
    assert got is not None
    for metric in metrics:
        name = M.metric_name(metric)
        np.testing.assert_array_equal(got[name], expected[name].to_numpy(), err_msg=name)
    assert M.block_scores([lambda *a, **k: None], y, yhat, {}, lambda p: scale) is None  # type: ignore[list-item]

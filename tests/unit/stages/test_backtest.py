"""Backtest windows and scores (exactly, with models whose errors are known), and selection."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steadycast.errors import ModelError
from steadycast.forecasting._segments import Layout
from steadycast.forecasting.backtest import (
    SCORE_COLUMNS,
    BacktestResult,
    auto_step,
    backtest,
    interval_columns,
    model_history,
    wide_for_metrics,
)
from steadycast.forecasting.metrics import evaluate, metric_name
from steadycast.forecasting.selection import Selection, ensemble_name, select
from steadycast.models.base import Capabilities, ForecastTask

ModelFn = Callable[[pd.DataFrame, ForecastTask], pd.DataFrame]
START = pd.Timestamp("2022-01-03")  # a Monday


def future(history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
    """The ``horizon`` timestamps after each series' last one."""
    frames = []
    for uid, rows in history.groupby("unique_id", sort=True):
        ds = pd.date_range(rows["ds"].iloc[-1], periods=task.horizon + 1, freq=task.frequency)
        frames.append(pd.DataFrame({"unique_id": uid, "ds": ds[1:]}))
    return pd.concat(frames, ignore_index=True)


def echo(history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
    """Naive: repeats the last value the model was given (so leakage would show in scores)."""
    out = future(history, task)
    return out.assign(yhat=out["unique_id"].map(history.groupby("unique_id")["y"].last()))


def seasonal(history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
    """Seasonal naive: the value one season before each step."""
    out = future(history, task)
    m = task.season_length
    values = []
    for _uid, rows in history.groupby("unique_id", sort=True):
        last = rows["y"].to_numpy()[-m:]
        values.extend(last[k % m] for k in range(task.horizon))
    return out.assign(yhat=np.asarray(values, dtype=float))


def truth(ds: pd.Series) -> np.ndarray:
    """The planted pattern: a weekly shape, a function of the date only."""
    return 10.0 + 3.0 * np.asarray(pd.DatetimeIndex(ds).dayofweek, dtype=float)


def planted(offset: float) -> ModelFn:
    """A model that knows the pattern and is off by ``offset``."""

    def model(history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        out = future(history, task)
        return out.assign(yhat=truth(out["ds"]) + offset)

    return model


def with_intervals(fn: ModelFn, width: float = 1.0) -> ModelFn:
    def model(history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        out = fn(history, task)
        for level in task.levels:
            out[f"yhat_lo_{level}"] = out["yhat"] - width * level / 100
            out[f"yhat_hi_{level}"] = out["yhat"] + width * level / 100
        return out

    return model


def crash(history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
    raise RuntimeError("boom")


class FakeRunner:
    """The runner interface over in-test model functions; records every call.

    A model named in ``broken`` raises, as a crashed worker would, which the real runner
    reports as a ModelError.
    """

    def __init__(self, models: dict[str, ModelFn]) -> None:
        self.models = models
        self.broken: set[str] = set()
        self.calls: list[dict[str, Any]] = []

    def map(
        self, jobs: Iterable[tuple[str, dict[str, Any], pd.DataFrame, ForecastTask]]
    ) -> Iterator[pd.DataFrame | ModelError]:
        for name, _params, history, task in jobs:
            self.calls.append(
                {
                    "model": name,
                    "ids": sorted(history["unique_id"].unique()),
                    "last": history.groupby("unique_id")["ds"].max().to_dict(),
                    "levels": task.levels,
                }
            )
            try:
                if name in self.broken:
                    raise RuntimeError(f"{name} is broken")
                yield self.models[name](history, task)
            except RuntimeError as exc:
                yield ModelError(name, str(exc))


def frame(series: dict[str, np.ndarray | list[float]]) -> pd.DataFrame:
    parts = [
        pd.DataFrame(
            {
                "unique_id": uid,
                "ds": pd.date_range(START, periods=len(y), freq="D"),
                "y": np.asarray(y, dtype=float),
            }
        )
        for uid, y in series.items()
    ]
    return pd.concat(parts, ignore_index=True)


def routing(ids: Iterable[str], models: list[str]) -> pd.DataFrame:
    ids = list(ids)
    return pd.DataFrame({"unique_id": ids, "models": [list(models) for _ in ids], "note": ""})


TASK = ForecastTask(horizon=3, frequency="D", season_length=7, levels=(80, 95))
CAPS = {name: Capabilities(intervals=False) for name in ("Naive", "SeasonalNaive", "Crash")}


def test_echo_model_scores_exactly_without_leakage() -> None:
    n = 30
    history = frame({"a": np.arange(n), "b": 100 + np.arange(n)})
    runner = FakeRunner({"Naive": echo})
    task = ForecastTask(horizon=3, frequency="D", season_length=1)
    result = backtest(history, routing("ab", ["Naive"]), task, windows=2, runner=runner)

    scores = result.scores.set_index(["unique_id", "window"])
    assert (result.scores["status"] == "ok").all()
    # Errors are exactly 1, 2, 3 at every origin; the in-sample naive scale is 1.
    assert scores["mase"].tolist() == pytest.approx([2.0] * 4)
    assert scores["rmsse"].tolist() == pytest.approx([math.sqrt(14 / 3)] * 4)
    for uid, base in (("a", 0.0), ("b", 100.0)):
        for window in (0, 1):
            last = base + n - 4 - 3 * window  # last value the model saw
            expected = 200 / 3 * sum(k / (2 * last + k) for k in (1, 2, 3))
            assert scores.loc[(uid, window), "smape"] == pytest.approx(expected)
    # One call per window with every series; each saw history up to its origin only.
    assert [c["model"] for c in runner.calls] == ["Naive", "Naive"]
    assert all(c["ids"] == ["a", "b"] for c in runner.calls)
    cutoffs = [START + pd.Timedelta(days=n - 4 - 3 * w) for w in (0, 1)]
    assert [c["last"]["a"] for c in runner.calls] == cutoffs
    assert scores.loc[("a", 0), "cutoff"] == cutoffs[0]


def test_origins_follow_step() -> None:
    n = 40
    history = frame({"a": np.arange(n)})
    runner = FakeRunner({"Naive": echo})
    result = backtest(history, routing("a", ["Naive"]), TASK, windows=3, step=1, runner=runner)
    cutoffs = sorted(result.scores["cutoff"])
    assert cutoffs == [START + pd.Timedelta(days=n - 4 - k) for k in (2, 1, 0)]
    # Overlapping windows: each scored on the next three points after its own origin.
    fc = result.forecasts[result.forecasts["window"] == 2]
    assert fc["y"].tolist() == [n - 5.0, n - 4.0, n - 3.0]
    assert fc["step"].tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    ("frequency", "horizon", "seasons", "step"),
    [
        ("h", 48, (24, 168), 168),  # day-ahead hourly: the same two weekdays, a week apart
        ("h", 168, (24, 168), 168),
        ("h", 24, (24,), 24),
        ("30min", 48, (48, 336), 336),
        ("D", 10, (7, 365), 14),  # whole weeks; a year is too long a cycle to wait for
        ("W-SUN", 13, (52,), 13),
        ("MS", 12, (12,), 12),
        ("h", 5, (), 5),
    ],
)
def test_default_step_is_whole_cycles_of_at_most_a_week(
    frequency: str, horizon: int, seasons: tuple[int, ...], step: int
) -> None:
    task = ForecastTask(horizon=horizon, frequency=frequency, season_lengths=seasons)
    assert auto_step(task) == step


def test_default_windows_cover_the_weekdays_of_the_forecast() -> None:
    start = pd.Timestamp("2022-01-03")  # a Monday
    n = 24 * 7 * 5  # ends on a Sunday night: the forecast covers Monday and Tuesday
    ds = pd.date_range(start, periods=n, freq="h")
    history = pd.DataFrame({"unique_id": "a", "ds": ds, "y": np.arange(n, dtype=float)})
    task = ForecastTask(horizon=48, frequency="h", season_length=24, season_lengths=(24, 168))
    result = backtest(
        history, routing("a", ["Naive"]), task, windows=3, runner=FakeRunner({"Naive": echo})
    )
    first = result.forecasts[result.forecasts["step"] == 1]["ds"]
    assert len(first) == 3
    assert set(first.dt.dayofweek) == {0} and set(first.dt.hour) == {0}  # Monday, midnight
    # The newest window is the week before the forecast's; the five days after it are in none.
    assert first.max() == ds[-1] + pd.Timedelta(hours=1) - pd.Timedelta(weeks=1)
    # A step set by hand keeps the newest window at the history's end.
    by_hand = backtest(
        history,
        routing("a", ["Naive"]),
        task,
        windows=3,
        step=168,
        runner=FakeRunner({"Naive": echo}),
    )
    assert by_hand.forecasts["ds"].max() == ds[-1]


def test_a_series_too_short_for_an_aligned_window_keeps_its_newest_window_at_its_end() -> None:
    task = ForecastTask(horizon=48, frequency="h", season_length=24, season_lengths=(24, 168))
    start = pd.Timestamp("2022-01-03")
    long = pd.date_range(start, periods=24 * 7 * 4, freq="h")
    short = long[-200:]  # one aligned window needs 120 + 48 + 48 points
    history = pd.concat(
        [
            pd.DataFrame({"unique_id": "long", "ds": long, "y": np.arange(len(long), dtype=float)}),
            pd.DataFrame({"unique_id": "short", "ds": short, "y": np.ones(len(short))}),
        ],
        ignore_index=True,
    )
    result = backtest(
        history,
        routing(["long", "short"], ["Naive"]),
        task,
        windows=3,
        runner=FakeRunner({"Naive": echo}),
    )
    newest = result.forecasts.groupby("unique_id")["ds"].max()
    assert newest["short"] == long[-1]
    assert newest["long"] == long[-1] - pd.Timedelta(hours=120)
    notes = result.series.set_index("unique_id")["note"]
    assert notes["short"] == "1 of 3 windows (200 points)"
    assert notes["long"] == ""  # every window


def test_short_series_get_fewer_windows_or_none() -> None:
    history = frame({"long": np.arange(30), "mid": np.arange(8), "tiny": np.arange(5)})
    runner = FakeRunner({"Naive": echo, "SeasonalNaive": seasonal})
    result = backtest(
        history,
        routing(["long", "mid", "tiny"], ["SeasonalNaive"]),
        TASK,
        windows=2,
        step=3,
        runner=runner,
    )
    series = result.series.set_index("unique_id")
    assert series["windows"].to_dict() == {"long": 2, "mid": 1, "tiny": 0}
    assert "too short to backtest" in series.loc["tiny", "note"]
    assert series.loc["tiny", "models"] == ["Naive"]
    assert "1 of 2 windows" in series.loc["mid", "note"]
    assert set(result.scores["unique_id"]) == {"long", "mid"}


def test_model_needing_more_history_than_first_window_is_skipped() -> None:
    history = frame({"a": np.arange(25)})
    caps = {"SeasonalNaive": Capabilities(min_history=20), "Naive": Capabilities()}
    runner = FakeRunner({"Naive": echo, "SeasonalNaive": seasonal})
    result = backtest(
        history,
        routing("a", ["SeasonalNaive", "Naive"]),
        TASK,
        windows=2,
        step=3,  # consecutive windows
        runner=runner,
        capabilities=caps,
    )
    skipped = result.scores[result.scores["status"] == "skipped"]
    assert skipped["model"].tolist() == ["SeasonalNaive"]
    assert "needs 20 points, the first backtest window has 19" in skipped["reason"].item()
    assert {c["model"] for c in runner.calls} == {"Naive"}


def test_failing_model_is_scored_failed_not_raised() -> None:
    history = frame({"a": np.arange(30), "b": np.arange(30)})
    runner = FakeRunner({"Naive": echo, "Crash": crash})
    result = backtest(history, routing("ab", ["Naive", "Crash"]), TASK, windows=2, runner=runner)
    failed = result.scores[result.scores["model"] == "Crash"]
    assert len(failed) == 4
    assert (failed["status"] == "failed").all()
    assert failed["reason"].str.contains("boom").all()
    assert failed["mase"].isna().all()
    assert (result.scores.loc[result.scores["model"] == "Naive", "status"] == "ok").all()


def test_invalid_output_fails_only_that_series() -> None:
    def nan_for_b(history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        out = echo(history, task)
        out.loc[out["unique_id"] == "b", "yhat"] = np.nan
        return out

    history = frame({"a": np.arange(30), "b": np.arange(30)})
    runner = FakeRunner({"Naive": nan_for_b})
    result = backtest(history, routing("ab", ["Naive"]), TASK, windows=1, runner=runner)
    status = result.scores.set_index("unique_id")["status"].to_dict()
    assert status == {"a": "ok", "b": "failed"}


def test_intervals_requested_only_from_models_that_declare_them() -> None:
    history = frame({"a": np.arange(30)})
    runner = FakeRunner({"Naive": with_intervals(echo), "SeasonalNaive": seasonal})
    caps = {"Naive": Capabilities(intervals=True), "SeasonalNaive": Capabilities()}
    result = backtest(
        history,
        routing("a", ["Naive", "SeasonalNaive"]),
        TASK,
        windows=1,
        runner=runner,
        capabilities=caps,
    )
    levels = {c["model"]: c["levels"] for c in runner.calls}
    assert levels == {"Naive": (80, 95), "SeasonalNaive": ()}
    scores = result.scores.set_index("model")
    # Naive's 80% band is +-0.8 around errors of 1, 2, 3: nothing inside.
    assert scores.loc["Naive", "coverage_80"] == 0.0
    assert math.isnan(scores.loc["SeasonalNaive", "coverage_80"])


def test_slow_models_are_called_in_chunks_fast_and_global_ones_whole() -> None:
    history = frame({f"s{i:03d}": np.arange(20.0) for i in range(120)})
    caps = {
        "AutoETS": Capabilities(cost="full"),
        "LightGBM": Capabilities(cost="full", global_model=True),
        "Naive": Capabilities(),
    }
    runner = FakeRunner({"AutoETS": echo, "LightGBM": echo, "Naive": echo})
    ids = history["unique_id"].unique()
    backtest(
        history,
        routing(ids, ["AutoETS", "LightGBM", "Naive"]),
        TASK,
        windows=1,
        runner=runner,
        capabilities=caps,
    )
    sizes = {}
    for call in runner.calls:
        sizes.setdefault(call["model"], []).append(len(call["ids"]))
    assert sizes == {"AutoETS": [50, 50, 20], "LightGBM": [120], "Naive": [120]}


# --- selection -------------------------------------------------------------------------------


def _select(
    history: pd.DataFrame,
    models: dict[str, ModelFn],
    *,
    top_k: int = 0,
    windows: int = 2,
    task: ForecastTask = TASK,
) -> Selection:
    runner = FakeRunner(models)
    ids = history["unique_id"].unique()
    result = backtest(history, routing(ids, list(models)), task, windows=windows, runner=runner)
    return select(result, history, metric="mase", ensemble_top_k=top_k, levels=task.levels)


def test_selection_finds_the_planted_pattern() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(70)
    history = frame(
        {
            "weekly": truth(pd.Series(pd.date_range(START, periods=70, freq="D"))),
            "walk": 50 + np.cumsum(rng.normal(0, 1, 70)) + 0 * t,
        }
    )
    sel = _select(history, {"Naive": echo, "SeasonalNaive": seasonal}, windows=3)
    chosen = sel.table.set_index("unique_id")
    assert chosen.loc["weekly", "model"] == "SeasonalNaive"
    assert chosen.loc["weekly", "score"] == 0.0
    assert chosen.loc["weekly", "fallbacks"] == ["Naive"]
    assert chosen.loc["walk", "model"] == "Naive"
    assert chosen.loc["weekly", "reason"].startswith("SeasonalNaive: MASE 0 over 3 windows")


def test_exact_tie_goes_to_the_simpler_model_whatever_the_order() -> None:
    history = frame({"a": 20 + np.sin(np.arange(50)) + np.arange(50) * 0.1})
    for models in (
        {"AutoETS": seasonal, "SeasonalNaive": seasonal},
        {"SeasonalNaive": seasonal, "AutoETS": seasonal},
    ):
        row = _select(history, models).table.iloc[0]
        assert row["model"] == "SeasonalNaive"
        assert row["fallbacks"] == ["AutoETS"]
        assert "tied with AutoETS" in row["reason"]


def _scores_only(scores: dict[str, list[float]]) -> BacktestResult:
    rows = [
        {
            "unique_id": "s",
            "model": model,
            "window": w,
            "cutoff": START + pd.Timedelta(days=10 - w),
            "status": "ok",
            "reason": "",
            "mase": value,
            "smape": value,
            "rmsse": value,
        }
        for model, values in scores.items()
        for w, value in enumerate(values)
    ]
    series = pd.DataFrame(
        {"unique_id": ["s"], "windows": [2], "models": [list(scores)], "note": [""]}
    )
    empty = pd.DataFrame(columns=["unique_id", "model", "window", "cutoff", "ds", "step", "y"])
    return BacktestResult(
        scores=pd.DataFrame(rows), forecasts=empty, series=series, horizon=3, season_length=1
    )


def test_near_tie_within_tolerance_goes_to_the_simpler_model() -> None:
    history = frame({"s": np.arange(20)})
    # AutoARIMA is 0.5% better: within the 1% tolerance, so SES (simpler) wins.
    bt = _scores_only({"AutoARIMA": [0.995, 0.995], "SES": [1.0, 1.0], "MSTL": [1.2, 1.2]})
    row = select(bt, history, metric="mase").table.iloc[0]
    assert row["model"] == "SES"
    assert row["fallbacks"] == ["AutoARIMA", "MSTL"]
    # 5% better is not a tie.
    bt = _scores_only({"AutoARIMA": [0.95, 0.95], "SES": [1.0, 1.0]})
    assert select(bt, history, metric="mase").table.iloc[0]["model"] == "AutoARIMA"


def test_model_failing_in_any_window_is_not_selected() -> None:
    history = frame({"s": np.arange(20)})
    bt = _scores_only({"AutoETS": [0.5, 0.5], "Naive": [1.0, 1.0]})
    scores = bt.scores.copy()
    scores.loc[(scores["model"] == "AutoETS") & (scores["window"] == 1), "status"] = "failed"
    scores.loc[(scores["model"] == "AutoETS") & (scores["window"] == 1), "reason"] = "timeout"
    bt = BacktestResult(scores, bt.forecasts, bt.series, bt.horizon, bt.season_length)
    row = select(bt, history, metric="mase").table.iloc[0]
    assert row["model"] == "Naive"
    assert "AutoETS failed (timeout)" in row["reason"]


def test_ensemble_chosen_when_it_backtests_better() -> None:
    history = frame({"a": truth(pd.Series(pd.date_range(START, periods=40, freq="D")))})
    models = {"Over": planted(+1.0), "Under": planted(-1.0), "Far": planted(+5.0)}
    sel = _select(history, models, top_k=2)
    row = sel.table.iloc[0]
    assert row["model"] == "Ensemble(Over+Under)"
    assert row["source"] == "ensemble"
    assert row["members"] == ["Over", "Under"]
    assert row["fallbacks"] == ["Over", "Under", "Far"]
    assert row["score"] == 0.0
    assert "better than the best single model Over" in row["reason"]
    ens = sel.scores[sel.scores["model"] == "Ensemble(Over+Under)"]
    assert len(ens) == 2 and (ens["mase"] == 0.0).all()


def test_ensemble_not_chosen_when_it_is_worse() -> None:
    history = frame({"a": truth(pd.Series(pd.date_range(START, periods=40, freq="D")))})
    sel = _select(history, {"Over": planted(+1.0), "Over3": planted(+3.0)}, top_k=3)
    row = sel.table.iloc[0]
    assert row["model"] == "Over"
    assert row["source"] == "selected"
    assert "the mean of the top 2 scored" in row["reason"]


def test_no_ensemble_when_disabled() -> None:
    history = frame({"a": truth(pd.Series(pd.date_range(START, periods=40, freq="D")))})
    sel = _select(history, {"Over": planted(+1.0), "Under": planted(-1.0)}, top_k=0)
    assert sel.table.iloc[0]["model"] == "Over"
    assert not sel.scores["model"].str.startswith("Ensemble").any()


# --- the vectorised stage against plain, series-by-series ways of doing the same -------------


def _plain_model_history(history: pd.DataFrame) -> pd.DataFrame:
    """model_history written plainly: series by series, pandas interpolating."""
    data = history[["unique_id", "ds", "y"]].assign(unique_id=lambda d: d["unique_id"].astype(str))
    data = data.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
    parts = []
    for _uid, group in data.groupby("unique_id", sort=False):
        seen = group["y"].notna()
        if not seen.any():
            continue
        group = group.loc[seen.idxmax() : seen[::-1].idxmax()]
        parts.append(group.assign(y=group["y"].interpolate(limit_area="inside")))
    return pd.concat(parts, ignore_index=True)


@settings(max_examples=60, deadline=None)
@given(
    series=st.lists(
        st.lists(st.floats(-100, 100) | st.just(float("nan")), min_size=1, max_size=15),
        min_size=1,
        max_size=5,
    ),
    shuffle=st.booleans(),
)
def test_model_history_fills_as_pandas_does_series_by_series(
    series: list[list[float]], shuffle: bool
) -> None:
    history = frame({f"s{i}": values for i, values in enumerate(series)})
    if not history["y"].notna().any():
        history.loc[0, "y"] = 1.0
    if shuffle:
        history = history.sample(frac=1.0, random_state=len(history))
    pd.testing.assert_frame_equal(
        model_history(history), _plain_model_history(history), check_exact=True
    )


def _random_fleet(seed: int, holes: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lengths = [30, *rng.integers(3, 40, 5)]
    history = frame(
        {f"s{i}": np.round(20 + np.cumsum(rng.normal(0, 1, n)), 2) for i, n in enumerate(lengths)}
    )
    if holes:  # missing days in held-out steps: those windows do not line up with the forecast
        history = history.drop(index=history.index[history["unique_id"] == "s0"][[-2, -6]])
    return history


@pytest.mark.parametrize("seed", range(6))
def test_block_join_and_scores_are_the_frame_join_and_evaluate(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = _random_fleet(seed, holes=seed % 2 == 1)
    models = {
        "Naive": echo,
        "SeasonalNaive": seasonal,
        "Good": with_intervals(planted(0.5), width=2.0),
        "Crash": crash,
    }
    caps = {**CAPS, "Good": Capabilities(intervals=True)}

    def run() -> BacktestResult:
        return backtest(
            history,
            routing(history["unique_id"].unique(), list(models)),
            TASK,
            windows=3,
            step=seed % 3,
            runner=FakeRunner(models),
            capabilities=caps,
        )

    blockwise = run()
    # Every series repeating a timestamp (as far as the stage knows): the general join.
    monkeypatch.setattr(Layout, "strictly_increasing", lambda self: False)
    general = run()
    for name in ("scores", "forecasts", "series"):
        pd.testing.assert_frame_equal(
            getattr(blockwise, name), getattr(general, name), check_exact=True, obj=name
        )


def test_output_unusable_as_a_whole_fails_every_series_of_the_call() -> None:
    history = frame({"a": np.arange(30), "b": np.arange(30)})
    runner = FakeRunner({"Naive": echo, "NoYhat": future})  # no yhat column at all
    result = backtest(history, routing("ab", ["Naive", "NoYhat"]), TASK, windows=2, runner=runner)
    failed = result.scores[result.scores["model"] == "NoYhat"]
    assert len(failed) == 4
    assert (failed["status"] == "failed").all()
    assert failed["reason"].str.contains("returned no column 'yhat'").all()
    assert (result.scores.loc[result.scores["model"] == "Naive", "status"] == "ok").all()


def frame_based_ensembles(
    ranked: pd.DataFrame,
    result: BacktestResult,
    layout: Layout,
    metrics: list[Any],
    top_k: int,
    combination: str = "mean",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ensemble rule written with pandas group-bys: the mean of each series' top-k models
    per window and step (a bound only when every member has it), scored with ``evaluate``."""
    assert combination == "mean"
    top = ranked.sort_values(["unique_id", "score"], kind="stable")
    top = top.groupby("unique_id", sort=False).head(top_k)
    top = top[top.groupby("unique_id")["model"].transform("size") >= 2]
    if top.empty:
        return pd.DataFrame(), pd.DataFrame()
    names = top.groupby("unique_id")["model"].agg(lambda m: ensemble_name(list(m)))
    fc = result.forecasts.merge(top[["unique_id", "model"]], on=["unique_id", "model"])
    levels = [int(c.split("_")[-1]) for c in fc.columns if c.startswith("yhat_lo_")]
    values = ["yhat", *interval_columns(levels)]
    keys = ["unique_id", "window", "cutoff", "ds", "step", "y"]
    mean = fc.groupby(keys, sort=True)[values].mean()
    complete = fc.groupby(keys, sort=True)[values].count()
    n_members = fc.groupby(keys, sort=True)["model"].size()
    ens = mean.where(complete.eq(n_members, axis=0)).reset_index()
    ens["model"] = ens["unique_id"].map(names)
    wide, models = wide_for_metrics(ens, levels)
    scored = evaluate(wide, metrics, models, layout.frame, result.season_length)
    windows = ens[["unique_id", "model", "cutoff", "window"]].drop_duplicates()
    scored = scored.merge(windows, on=["unique_id", "model", "cutoff"], how="inner")
    scored["status"] = "ok"
    scored["reason"] = ""
    columns = [*SCORE_COLUMNS, *(metric_name(m) for m in metrics)]
    return scored[columns], ens[[c for c in result.forecasts.columns if c in ens.columns]]


@pytest.mark.parametrize("seed", range(6))
def test_blockwise_ensembles_are_the_frame_based_mean(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from steadycast.forecasting import selection as selection_module

    rng = np.random.default_rng(seed)
    history = frame({f"s{i}": truth(pd.Series(pd.date_range(START, periods=40))) for i in range(4)})
    history["y"] += np.round(rng.normal(0, 1, len(history)), 2)
    offsets = np.round(rng.normal(0, 1, 3), 3)
    models = {
        "Over": planted(offsets[0]),
        "Under": with_intervals(planted(-offsets[1])),
        "Far": with_intervals(planted(5 * offsets[2])),
        "Naive": echo,
    }
    caps = {"Under": Capabilities(intervals=True), "Far": Capabilities(intervals=True)}
    result = backtest(
        history,
        routing(history["unique_id"].unique(), list(models)),
        TASK,
        windows=3,
        runner=FakeRunner(models),
        capabilities=caps,
    )
    blockwise = select(result, history, metric="rmsse", ensemble_top_k=3, levels=TASK.levels)
    assert blockwise.scores["model"].str.startswith("Ensemble(").any()
    monkeypatch.setattr(selection_module, "_ensembles", frame_based_ensembles)
    general = select(result, history, metric="rmsse", ensemble_top_k=3, levels=TASK.levels)
    for name in ("table", "scores", "forecasts"):
        pd.testing.assert_frame_equal(
            getattr(blockwise, name), getattr(general, name), check_exact=True, obj=name
        )


def test_window_forecasts_not_in_blocks_get_no_ensemble_and_keep_the_single_ranking() -> None:
    # A series repeating a timestamp (history the prepare stage never hands over): the backtest
    # joins it the general way, its window forecasts are not blocks of one horizon.
    history = frame({f"s{i}": truth(pd.Series(pd.date_range(START, periods=40))) for i in range(2)})
    history = pd.concat([history, history.iloc[[35]]], ignore_index=True)
    models = {"Over": planted(0.5), "Under": planted(-0.7), "Naive": echo}
    result = backtest(
        history,
        routing(history["unique_id"].unique(), list(models)),
        TASK,
        windows=2,
        step=3,  # consecutive windows, the repeated time inside the older one
        runner=FakeRunner(models),
    )
    # The case: a window forecast holding one time twice, not a block of steps in time order.
    assert result.forecasts.duplicated(["unique_id", "model", "window", "ds"]).any()
    chosen = select(result, history, metric="mase", ensemble_top_k=2)
    single = select(result, history, metric="mase", ensemble_top_k=0)
    assert not chosen.scores["model"].str.startswith("Ensemble(").any()
    pd.testing.assert_frame_equal(chosen.table, single.table, check_exact=True)
    assert chosen.table.set_index("unique_id")["model"].to_dict() == {"s0": "Over", "s1": "Over"}

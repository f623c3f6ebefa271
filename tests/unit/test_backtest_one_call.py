"""Fast per-series models get all their backtest windows in one call: the worker refits them at
each origin from the one history it was sent, and the backtest is the one per-window calls give."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pandas as pd
import pytest

from steadycast.errors import ModelError
from steadycast.forecasting import backtest as backtest_module
from steadycast.forecasting.backtest import backtest, model_history
from steadycast.models.base import BacktestTask, Capabilities, ForecastTask, answer
from steadycast.models.registry import create_model

from .models.series import batch, seasonal, series

TASK = ForecastTask(horizon=24, frequency="h", season_length=24, season_lengths=(24,), levels=(80,))
FAST = ["FastSeasonalNaive", "FastTheta", "Card", "SeasonalNaive", "Naive"]


def history() -> pd.DataFrame:
    # Lengths differ, so series get 1, 2 or 3 windows and calls group them by their windows.
    lengths = [24 * 20, 24 * 20, 24 * 5, 24 * 3 + 7, 24 * 2 + 7]
    return model_history(
        batch(
            *(
                series(f"s{i}", seasonal(n, level=10.0 * (i + 1), seed=i))
                for i, n in enumerate(lengths)
            )
        )
    )


def routing(ids: Iterable[str], models: list[str]) -> pd.DataFrame:
    ids = list(ids)
    return pd.DataFrame({"unique_id": ids, "models": [list(models) for _ in ids], "note": ""})


class Recording:
    """Runs jobs in this process and keeps the tasks it was given."""

    def __init__(self) -> None:
        self.tasks: list[tuple[str, ForecastTask]] = []

    def map(self, jobs: Iterable[Any]) -> Iterator[pd.DataFrame | ModelError]:
        for name, params, frame, task in jobs:
            self.tasks.append((name, task))
            try:
                yield answer(create_model(name, params), frame, task)
            except Exception as exc:
                yield ModelError(name, str(exc))


def run(frame: pd.DataFrame, models: list[str], runner: Any = None) -> Any:
    return backtest(
        frame,
        routing(frame["unique_id"].unique(), models),
        TASK,
        windows=3,
        runner=runner,
        capabilities={m: create_model(m).capabilities for m in models},
    )


def test_fast_models_are_called_once_for_all_their_windows() -> None:
    runner = Recording()
    run(history(), FAST, runner)
    calls = [(name, type(task)) for name, task in runner.tasks]
    # One call per model and number of windows (3, 2 and 1 here), never one per window.
    for name in FAST:
        mine = [kind for model, kind in calls if model == name]
        assert mine == [BacktestTask] * 3, name


def test_one_call_gives_the_backtest_of_one_call_per_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frame = history()
    together = run(frame, FAST)
    monkeypatch.setattr(
        backtest_module, "_one_call", lambda caps: caps is not None and caps.backtests_itself
    )
    per_window = run(frame, FAST)
    keys = ["unique_id", "model", "window"]
    pd.testing.assert_frame_equal(
        together.scores.sort_values(keys).reset_index(drop=True),
        per_window.scores.sort_values(keys).reset_index(drop=True),
    )
    order = ["unique_id", "model", "window", "ds"]
    pd.testing.assert_frame_equal(
        together.forecasts.sort_values(order).reset_index(drop=True),
        per_window.forecasts.sort_values(order).reset_index(drop=True),
    )
    assert set(together.scores["status"]) == {"ok"}
    assert together.scores.groupby("unique_id")["window"].nunique().to_dict() == {
        "s0": 3,
        "s1": 3,
        "s2": 3,
        "s3": 2,
        "s4": 1,
    }


def test_other_models_stay_one_call_per_window() -> None:
    # A plugged-in model keeps one job per window unless it declares otherwise.
    assert not backtest_module._one_call(Capabilities())
    assert not backtest_module._one_call(Capabilities(windows_in_one_call=True, exogenous=True))
    assert backtest_module._one_call(Capabilities(windows_in_one_call=True))
    assert not backtest_module._one_call(None)
    runner = Recording()
    run(history(), ["AutoETS"], runner)
    assert {type(task) for _, task in runner.tasks} == {ForecastTask}
    assert len(runner.tasks) == 3  # one per window


def test_a_fast_model_that_fails_fails_all_its_windows() -> None:
    class Broken(Recording):
        def map(self, jobs: Iterable[Any]) -> Iterator[pd.DataFrame | ModelError]:
            for name, _, _, _ in jobs:
                yield ModelError(name, "raised RuntimeError: boom")

    result = run(history(), ["FastTheta"], Broken())
    assert set(result.scores["status"]) == {"failed"}
    assert result.scores["reason"].str.contains("boom").all()
    assert len(result.scores) == 3 + 3 + 3 + 2 + 1

"""The global LightGBM model backtests itself: one fit for all windows, same output shape."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

import lightgbm
import numpy as np
import pandas as pd
import pytest

from steadycast.errors import ConfigError, ModelError
from steadycast.forecasting.backtest import backtest, model_history
from steadycast.models.base import BacktestTask, Capabilities, ForecastTask, answer
from steadycast.models.ml import LightGBM

from .models.series import batch, seasonal, series

TASK = ForecastTask(
    horizon=24, frequency="h", season_length=24, season_lengths=(24, 168), levels=(80, 95)
)
POINT_TASK = ForecastTask(horizon=24, frequency="h", season_length=24, season_lengths=(24, 168))
SMALL = {"n_estimators": 20}


def hourly(n: int = 24 * 30, count: int = 4) -> pd.DataFrame:
    return model_history(
        batch(*(series(f"s{i}", seasonal(n, level=10.0 * (i + 1), seed=i)) for i in range(count)))
    )


def routing(ids: Iterable[str], models: list[str]) -> pd.DataFrame:
    ids = list(ids)
    return pd.DataFrame({"unique_id": ids, "models": [list(models) for _ in ids], "note": ""})


@pytest.fixture
def fits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts LightGBM fits made in this process (the backtest runs models inline here)."""
    counted: list[int] = []
    original = lightgbm.LGBMRegressor.fit

    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        counted.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(lightgbm.LGBMRegressor, "fit", fit)
    return counted


def run(history: pd.DataFrame, task: ForecastTask, caps: Capabilities | None = None) -> Any:
    capabilities = {"LightGBM": caps or LightGBM.capabilities}
    return backtest(
        history,
        routing(history["unique_id"].unique(), ["LightGBM"]),
        task,
        windows=3,
        step=24,  # consecutive days (the default would space them a week apart)
        capabilities=capabilities,
        params={"LightGBM": SMALL},
    )


def test_three_backtest_windows_cost_one_fit(fits: list[int]) -> None:
    result = run(hourly(), POINT_TASK)
    assert len(fits) == 1
    ok = result.scores[result.scores["status"] == "ok"]
    assert sorted(ok["window"].unique()) == [0, 1, 2]
    assert len(ok) == 4 * 3


def test_one_fit_or_one_per_window_the_backtest_looks_the_same() -> None:
    history = hourly()
    own = run(history, TASK)
    per_window = run(history, TASK, Capabilities(intervals=True, global_model=True, cost="full"))
    assert list(own.scores.columns) == list(per_window.scores.columns)
    assert list(own.forecasts.columns) == list(per_window.forecasts.columns)
    keys = ["unique_id", "model", "window", "cutoff", "status"]
    pd.testing.assert_frame_equal(own.scores[keys], per_window.scores[keys])
    same = ["unique_id", "model", "window", "cutoff", "ds", "step", "y"]
    pd.testing.assert_frame_equal(own.forecasts[same], per_window.forecasts[same])
    pd.testing.assert_frame_equal(own.series, per_window.series)
    assert np.isfinite(own.forecasts["yhat"]).all()
    assert np.isfinite(own.forecasts["yhat_lo_95"]).all()  # the windows are calibrated too


def test_window_forecasts_are_mlforecast_cross_validation_without_refit() -> None:
    from mlforecast import MLForecast

    history = hourly(count=3)
    model = LightGBM(**SMALL)
    result = run(history, POINT_TASK)
    plan = model._plan(24 * 30 - 24 * 3, POINT_TASK)
    engine: MLForecast = model._engine(plan, POINT_TASK)
    expected = engine.cross_validation(
        history, n_windows=3, h=24, step_size=24, static_features=[], refit=False
    )
    got = result.forecasts.merge(
        expected[["unique_id", "ds", "cutoff", "yhat"]],
        on=["unique_id", "ds", "cutoff"],
        suffixes=("", "_mlforecast"),
    )
    assert len(got) == len(result.forecasts) == 3 * 3 * 24
    np.testing.assert_allclose(got["yhat"], got["yhat_mlforecast"])


def test_series_with_fewer_windows_get_their_own_call(fits: list[int]) -> None:
    # "short" leaves room for two windows only; it gets the two most recent, as it would
    # per window.
    history = model_history(
        batch(hourly(), series("short", seasonal(24 * 3 + 5, level=30.0, seed=9)))
    )
    result = run(history, POINT_TASK, replace(LightGBM.capabilities, min_history=2))
    windows = result.series.set_index("unique_id")["windows"]
    assert windows["short"] == 2 and windows["s0"] == 3
    ok = result.scores[result.scores["status"] == "ok"]
    assert sorted(ok.loc[ok["unique_id"] == "short", "window"]) == [0, 1]
    assert len(fits) == 2  # one call per number of windows


class _Runner:
    """A runner whose LightGBM answers a backtest with ``reply``."""

    def __init__(self, reply: pd.DataFrame | ModelError) -> None:
        self.reply = reply
        self.tasks: list[ForecastTask] = []

    def map(
        self, jobs: Iterable[tuple[str, dict[str, Any], pd.DataFrame, ForecastTask]]
    ) -> Iterator[pd.DataFrame | ModelError]:
        for _, _, _, task in jobs:
            self.tasks.append(task)
            yield self.reply


def test_a_failed_self_backtest_fails_every_window_with_the_reason() -> None:
    history = hourly(count=2)
    runner = _Runner(ModelError("LightGBM", "raised ValueError: boom"))
    result = backtest(
        history,
        routing(["s0", "s1"], ["LightGBM"]),
        POINT_TASK,
        windows=3,
        step=24,
        runner=runner,
        capabilities={"LightGBM": LightGBM.capabilities},
    )
    assert [type(t) for t in runner.tasks] == [BacktestTask]
    assert runner.tasks[0].windows == 3  # type: ignore[attr-defined]
    failed = result.scores
    assert set(failed["status"]) == {"failed"}
    assert sorted(failed["window"].unique()) == [0, 1, 2]
    assert failed["reason"].str.contains("boom").all()
    assert failed["cutoff"].notna().all()


def test_rows_for_an_origin_the_backtest_did_not_ask_for_count_as_missing() -> None:
    history = hourly(count=1)
    reply = LightGBM(**SMALL).cross_validation(history, POINT_TASK, windows=3, step=24)
    reply.loc[reply["cutoff"] == reply["cutoff"].min(), "cutoff"] -= pd.Timedelta(hours=1)
    result = backtest(
        history,
        routing(["s0"], ["LightGBM"]),
        POINT_TASK,
        windows=3,
        step=24,
        runner=_Runner(reply),
        capabilities={"LightGBM": LightGBM.capabilities},
    )
    status = result.scores.set_index("window")["status"].to_dict()
    assert status == {0: "ok", 1: "ok", 2: "failed"}
    assert "missing" in result.scores.set_index("window").loc[2, "reason"]


def test_a_model_that_declares_its_own_backtest_must_have_one() -> None:
    class Plain:
        name = "Plain"
        capabilities = Capabilities(backtests_itself=True)

        def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
            raise AssertionError("not called")

    task = BacktestTask(**vars(POINT_TASK), windows=2, step=24)
    with pytest.raises(TypeError, match="'Plain' declares backtests_itself but has no"):
        answer(Plain(), hourly(count=1), task)


def test_an_isolated_worker_runs_the_whole_backtest_in_one_task() -> None:
    from steadycast.models.isolation import IsolatedRunner

    # The default step: origins a week apart, the newest a week before the forecast's.
    history = hourly(n=24 * 45, count=2)
    with IsolatedRunner(workers=1, timeout_s=120, memory_mb=1024) as runner:
        result = backtest(
            history,
            routing(["s0", "s1"], ["LightGBM"]),
            POINT_TASK,
            windows=3,
            runner=runner,
            capabilities={"LightGBM": LightGBM.capabilities},
            params={"LightGBM": SMALL},
        )
        tasks = runner.usage()["LightGBM"].tasks
    assert set(result.scores["status"]) == {"ok"}
    assert len(result.scores) == 2 * 3
    assert tasks == 1
    gaps = history["ds"].max() - result.scores["cutoff"]
    assert sorted(gaps.unique()) == [pd.Timedelta(weeks=k) for k in (1, 2, 3)]


def test_trained_on_each_series_newest_points_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """``max_history`` caps what the trees learn from, in the forecast and in the backtest (the
    cost of a global model grows with every point it trains on)."""
    trained: list[int] = []
    original = lightgbm.LGBMRegressor.fit

    def fit(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
        trained.append(len(x))
        return original(self, x, *args, **kwargs)

    monkeypatch.setattr(lightgbm.LGBMRegressor, "fit", fit)
    data = hourly()  # 4 series of 720 points
    LightGBM(**SMALL).forecast(data, POINT_TASK)
    LightGBM(**SMALL, max_history=300).forecast(data, POINT_TASK)
    everything, capped = trained
    assert capped <= 4 * 300 < everything
    trained.clear()
    LightGBM(**SMALL, max_history=300).cross_validation(data, POINT_TASK, windows=2, step=24)
    # The held-out windows come on top of the cap: the fit before them sees at most 300 points.
    assert trained[0] <= 4 * 300


def test_max_history_must_be_a_count() -> None:
    with pytest.raises(ConfigError, match="max_history"):
        LightGBM(max_history=-5)

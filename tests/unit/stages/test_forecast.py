"""The forecast stage: chosen model, fallback chain in order, intervals for every series."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from steadycast.config import PipelineConfig, parse_pipeline
from steadycast.forecasting.backtest import backtest, task_for
from steadycast.forecasting.forecast import PROVENANCE_COLUMNS, forecast_partition, run_partition
from steadycast.forecasting.selection import Selection, select
from steadycast.models.base import Capabilities
from steadycast.models.isolation import IsolatedRunner

from .test_backtest import (
    START,
    FakeRunner,
    echo,
    frame,
    planted,
    routing,
    seasonal,
    truth,
    with_intervals,
)

LEVELS = [80, 95]


def config(**backtest: Any) -> PipelineConfig:
    return parse_pipeline(
        {
            "source": {},
            "series": {"frequency": "D", "horizon": 3, "season_lengths": [7]},
            # Built-ins only: whatever plugins the environment has must not change these tests.
            "models": {
                "candidates": ["SeasonalNaive", "Naive", "HistoricAverage"],
                "plugins": False,
            },
            "backtest": {"windows": 2, "ensemble_top_k": 0, **backtest},
        },
        "test",
        "test.toml",
    )


def pattern(n: int = 40) -> np.ndarray:
    return truth(pd.Series(pd.date_range(START, periods=n, freq="D")))


def models() -> dict[str, Any]:
    return {
        "Good": with_intervals(planted(0.0)),
        "Okay": planted(1.0),
        "SeasonalNaive": seasonal,
        "Naive": echo,
    }


CAPS = {
    "Good": Capabilities(intervals=True),
    "Okay": Capabilities(),
    "SeasonalNaive": Capabilities(),
    "Naive": Capabilities(),
}


def _selection(
    history: pd.DataFrame, runner: FakeRunner, candidates: list[str], cfg: PipelineConfig
) -> Selection:
    result = backtest(
        history,
        routing(history["unique_id"].unique(), candidates),
        task_for(cfg),
        windows=cfg.backtest.windows,
        runner=runner,
        capabilities=CAPS,
    )
    return select(
        result,
        history,
        metric=cfg.backtest.metric,
        ensemble_top_k=cfg.backtest.ensemble_top_k,
        levels=LEVELS,
    )


def _run(
    history: pd.DataFrame,
    candidates: list[str],
    broken: set[str],
    cfg: PipelineConfig | None = None,
    last_published: pd.DataFrame | None = None,
) -> tuple[Any, FakeRunner]:
    cfg = cfg or config()
    runner = FakeRunner(models())
    sel = _selection(history, runner, candidates, cfg)
    runner.broken = broken
    runner.calls.clear()
    result = forecast_partition(history, cfg, runner, sel, last_published, capabilities=CAPS)
    return result, runner


def test_chosen_model_gets_calibrated_intervals_in_place_of_its_own() -> None:
    history = frame({"a": pattern()})
    result, _ = _run(history, ["Good", "Okay"], broken=set())
    prov = result.provenance.iloc[0]
    assert list(result.provenance.columns) == list(PROVENANCE_COLUMNS)
    assert (prov["model"], prov["source"], prov["interval_source"]) == (
        "Good",
        "selected",
        "calibrated",
    )
    assert prov["backtest_score"] == 0.0
    assert prov["selection_reason"].startswith("Good: MASE 0 over 2 windows, best of 2")
    fc = result.forecasts
    assert list(fc.columns) == [
        "unique_id",
        "ds",
        "yhat",
        "yhat_lo_80",
        "yhat_hi_80",
        "yhat_lo_95",
        "yhat_hi_95",
        "model",
    ]
    assert len(fc) == 3
    # Good's own bounds are yhat ± 0.95; its backtest errors are all 0, and so are its bounds.
    np.testing.assert_allclose(fc["yhat_hi_95"] - fc["yhat"], 0.0)


@pytest.mark.parametrize(
    ("broken", "model", "reason"),
    [
        ({"Good"}, "Okay", "Good failed: Good is broken"),
        ({"Good", "Okay"}, "SeasonalNaive", "Good failed: Good is broken; Okay failed"),
        (
            {"Good", "Okay", "SeasonalNaive"},
            "Naive",
            "Good failed: Good is broken; Okay failed: Okay is broken; SeasonalNaive failed",
        ),
    ],
)
def test_fallback_chain_in_order(broken: set[str], model: str, reason: str) -> None:
    history = frame({"a": pattern()})
    result, runner = _run(history, ["Good", "Okay"], broken=broken)
    prov = result.provenance.iloc[0]
    assert (prov["model"], prov["source"]) == (model, "fallback")
    assert prov["fallback_reason"].startswith(reason)
    assert [c["model"] for c in runner.calls] == ["Good", "Okay", "SeasonalNaive", "Naive"][
        : len(broken) + 1
    ]
    assert (result.forecasts["model"] == model).all()
    assert result.forecasts[["yhat_lo_80", "yhat_hi_95"]].notna().all().all()


def test_last_published_then_none() -> None:
    history = frame({"a": pattern(), "b": pattern()})
    last_day = history["ds"].max()
    published = pd.DataFrame(
        {
            "unique_id": "a",
            "ds": pd.date_range(last_day, periods=3, freq="D"),  # overlaps 2 of 3 steps
            "yhat": [1.0, 2.0, 3.0],
            "yhat_lo_80": [0.0, 1.0, 2.0],
            "yhat_hi_80": [2.0, 3.0, 4.0],
            "model": "Okay",
        }
    )
    everything = {"Good", "Okay", "SeasonalNaive", "Naive"}
    result, _ = _run(history, ["Good", "Okay"], broken=everything, last_published=published)
    prov = result.provenance.set_index("unique_id")
    assert prov.loc["a", "model"] == "LastPublished"
    assert prov.loc["a", "source"] == "fallback"
    assert prov.loc["a", "fallback_reason"].endswith("last published forecast (2 of 3 steps)")
    assert prov.loc["a", "steps"] == 2
    fc = result.forecasts
    assert fc["yhat"].tolist() == [2.0, 3.0]
    assert fc["yhat_lo_80"].tolist() == [1.0, 2.0]  # kept from the release
    assert fc[["yhat_lo_95", "yhat_hi_95"]].notna().all().all()  # derived for missing levels
    assert prov.loc["b", "source"] == "none"
    assert prov.loc["b", "model"] == ""
    assert "Naive failed" in prov.loc["b", "fallback_reason"]
    assert "no last published forecast" in prov.loc["b", "fallback_reason"]


def test_intervals_from_backtest_errors_when_model_has_none() -> None:
    # y = t and a naive forecast: the backtest error at step k is exactly k in every window.
    history = frame({"a": np.arange(1.0, 41.0)})
    result, _ = _run(history, ["Naive"], broken=set())
    fc = result.forecasts
    assert result.provenance.iloc[0]["interval_source"] == "calibrated"
    steps = np.array([1.0, 2.0, 3.0])  # scaled by the one-step change, 1
    np.testing.assert_allclose(fc["yhat"], 40.0)
    for level in LEVELS:
        np.testing.assert_allclose(fc[f"yhat_hi_{level}"], 40.0 + steps)
        np.testing.assert_allclose(fc[f"yhat_lo_{level}"], 40.0 - steps)


def test_intervals_from_history_for_a_fallback_never_backtested() -> None:
    history = frame({"a": np.arange(1.0, 41.0)})
    result, _ = _run(history, ["Good"], broken={"Good"})
    prov = result.provenance.iloc[0]
    assert (prov["model"], prov["interval_source"]) == ("SeasonalNaive", "history")
    half = np.sqrt([1.0, 2.0, 3.0])  # one-step changes are all 1, grown by sqrt(step)
    fc = result.forecasts
    np.testing.assert_allclose(fc["yhat_hi_80"] - fc["yhat"], half)


def test_derived_lower_bounds_clipped_for_nonnegative_series() -> None:
    history = frame({"a": np.r_[np.zeros(30), [0.0, 5.0] * 5]})
    result, _ = _run(history, ["Naive"], broken=set())
    assert (result.forecasts["yhat_lo_95"] >= 0).all()


def test_ensemble_forecast_is_the_member_mean_and_falls_back_to_a_member() -> None:
    history = frame({"a": pattern()})
    cfg = config(ensemble_top_k=2)
    runner = FakeRunner({**models(), "Over": planted(1.0), "Under": planted(-1.0)})
    sel = _selection(history, runner, ["Over", "Under"], cfg)
    caps = {**CAPS, "Over": Capabilities(), "Under": Capabilities()}
    result = forecast_partition(history, cfg, runner, sel, capabilities=caps)
    prov = result.provenance.iloc[0]
    assert (prov["model"], prov["source"]) == ("Ensemble(Over+Under)", "ensemble")
    assert prov["interval_source"] == "calibrated"
    expected = truth(pd.Series(pd.date_range(history["ds"].max(), periods=4, freq="D")[1:]))
    np.testing.assert_allclose(result.forecasts["yhat"], expected)

    runner.broken = {"Under"}
    runner.calls.clear()
    result = forecast_partition(history, cfg, runner, sel, capabilities=caps)
    prov = result.provenance.iloc[0]
    assert (prov["model"], prov["source"]) == ("Over", "fallback")
    assert "Ensemble(Over+Under) failed: member Under: Under is broken" in prov["fallback_reason"]
    assert sorted(c["model"] for c in runner.calls) == ["Over", "Under"]  # Over reused


def test_series_without_values_is_reported_not_dropped() -> None:
    history = pd.concat(
        [frame({"a": pattern()}), frame({"empty": [np.nan] * 10})], ignore_index=True
    )
    result, _ = _run(history, ["Good"], broken=set())
    prov = result.provenance.set_index("unique_id")
    assert prov.loc["empty", "source"] == "none"
    assert "no observed values" in prov.loc["empty", "fallback_reason"]
    assert set(result.forecasts["unique_id"]) == {"a"}


def test_run_partition_with_builtin_models() -> None:
    rng = np.random.default_rng(7)
    t = np.arange(60)
    history = frame(
        {
            "weekly": 20 + 5 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 0.2, 60),
            "flat": np.full(60, 3.0),
            "short": rng.normal(5, 1, 6),
            "zeros": np.where(rng.random(60) < 0.2, 4.0, 0.0),
        }
    )
    result = run_partition(history, config(ensemble_top_k=2), runner=None)
    prov = result.provenance.set_index("unique_id")
    assert set(prov.index) == {"weekly", "flat", "short", "zeros"}
    assert (prov["source"] != "none").all()
    assert prov.loc["weekly", "model"] == "SeasonalNaive"
    assert prov.loc["flat", "model"] == "Naive"
    fc = result.forecasts
    assert fc.groupby("unique_id").size().eq(3).all()
    assert fc.drop(columns=["unique_id", "ds", "model"]).notna().all().all()
    assert {"unique_id", "model", "window", "status", "mase", "coverage_95"} <= set(result.scores)
    assert {"demand_class", "models", "note"} <= set(result.profile)
    assert result.selection.set_index("unique_id").loc["weekly", "reason"]


def test_run_partition_through_the_isolated_runner() -> None:
    t = np.arange(50)
    history = frame({"weekly": 20 + 5 * np.sin(2 * np.pi * t / 7), "trend": 1.0 + t})
    with IsolatedRunner(workers=1, timeout_s=120, memory_mb=1024) as runner:
        result = run_partition(history, config(), runner)
    prov = result.provenance.set_index("unique_id")
    assert prov.loc["weekly", "model"] == "SeasonalNaive"
    assert prov.loc["trend", "model"] == "Naive"
    assert (result.scores["status"] == "ok").all()
    assert result.forecasts.groupby("unique_id").size().eq(3).all()


def test_integer_ids_and_aware_timestamps_come_out_canonical() -> None:
    history = frame({"7": np.arange(1.0, 31.0)})
    history["unique_id"] = 7
    history["ds"] = history["ds"].dt.tz_localize("UTC")
    result, _ = _run(history, ["Naive"], broken=set())
    assert result.provenance["unique_id"].tolist() == ["7"]
    assert result.provenance["source"].tolist() == ["selected"]
    assert result.forecasts["ds"].dt.tz is None
    assert result.forecasts["unique_id"].tolist() == ["7"] * 3


@pytest.mark.parametrize(
    ("values", "source"),
    [([], None), ([np.nan] * 5, "none"), ([3.0], "selected"), ([0.0] * 8, "selected")],
)
def test_degenerate_partitions_never_raise(values: list[float], source: str | None) -> None:
    history = frame({"a": values or [1.0]}).iloc[: len(values)]
    result = run_partition(history, config(), runner=None)
    if source is None:
        assert result.provenance.empty and result.forecasts.empty
    else:
        assert result.provenance["source"].tolist() == [source]
        assert len(result.forecasts) == (0 if source == "none" else 3)


def test_output_unusable_as_a_whole_walks_the_chain() -> None:
    history = frame({"a": pattern(), "b": pattern()})
    cfg = config()
    runner = FakeRunner({**models(), "Good": lambda h, t: h.head(0)[["unique_id", "ds"]]})
    sel = _selection(history, FakeRunner(models()), ["Good", "Okay"], cfg)
    result = forecast_partition(history, cfg, runner, sel, capabilities=CAPS)
    prov = result.provenance.set_index("unique_id")
    assert (prov["model"] == "Okay").all()
    assert (
        prov["fallback_reason"].str.startswith("Good failed: model 'Good' returned no column").all()
    )

"""Ensembles robust to a bad member: median and trimmed combinations, end to end."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from steadycast.config import BacktestConfig, parse_pipeline
from steadycast.errors import ConfigError
from steadycast.forecasting.backtest import backtest
from steadycast.forecasting.forecast import run_partition
from steadycast.forecasting.selection import (
    combine,
    ensemble_combination,
    ensemble_members,
    ensemble_name,
    select,
)
from steadycast.models.base import Capabilities, ForecastTask

from .stages.test_backtest import START, TASK, FakeRunner, ModelFn, frame, future, routing, truth

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def swinging(even: float, odd: float) -> ModelFn:
    """Knows the pattern, off by ``even`` on even days of the year and ``odd`` on odd ones."""

    def model(history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        out = future(history, task)
        day = pd.DatetimeIndex(out["ds"]).dayofyear.to_numpy()
        return out.assign(yhat=truth(out["ds"]) + np.where(day % 2 == 0, even, odd))

    return model


# Two sensible models wrong in turn, and one wildly wrong: the median at each point is the
# larger of the sensible two (truth + 1), better than either alone; the mean is dragged ~333 off.
MODELS: dict[str, ModelFn] = {
    "Up": swinging(+1.0, -3.0),
    "Down": swinging(-3.0, +1.0),
    "Wild": swinging(+1000.0, +1000.0),
}
WILD_ENSEMBLE = "Ensemble(median:Down+Up+Wild)"


def history() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    days = pd.Series(pd.date_range(START, periods=60, freq="D"))
    return frame({"a": truth(days) + rng.normal(0, 0.5, 60)})


def _backtest() -> Any:
    return backtest(
        history(), routing(["a"], list(MODELS)), TASK, windows=3, runner=FakeRunner(MODELS)
    )


def _select(combination: str, pooled: bool = True) -> Any:
    return select(
        _backtest(),
        history(),
        metric="mase",
        ensemble_top_k=3,
        combination=combination,
        pooled=pooled,
    )


def test_median_ensemble_ignores_a_wildly_wrong_member_and_the_mean_does_not() -> None:
    median = _select("median").table.iloc[0]
    assert median["model"] == WILD_ENSEMBLE
    assert median["source"] == "ensemble"
    assert median["members"] == ["Down", "Up", "Wild"]
    assert "better than the best single model" in median["reason"]

    mean = _select("mean", pooled=False).table.iloc[0]
    assert mean["source"] == "selected"
    assert mean["model"] in {"Up", "Down"}
    assert "the mean of the top 3 scored" in mean["reason"]
    # Judged as a partition, the single model beats the dragged mean, and the mean of the two
    # sensible models (1 off everywhere) beats that model in every window: the pair is taken.
    paired = _select("mean").table.iloc[0]
    assert paired["model"] == "Ensemble(Down+Up)"
    assert "paired with the runner-up" in paired["reason"]
    # The mean's own backtest score is far worse than the median's.
    scores = pd.concat([_select("mean").scores, _select("median").scores])
    by_model = scores.groupby("model")["mase"].mean()
    assert by_model["Ensemble(Down+Up+Wild)"] > 100 * by_model[WILD_ENSEMBLE]


def test_trimmed_ensemble_drops_the_extremes_and_is_named_for_it() -> None:
    sel = _select("trimmed")
    row = sel.table.iloc[0]
    assert row["model"] == "Ensemble(trimmed:Down+Up+Wild)"
    window = sel.forecasts[sel.forecasts["model"] == row["model"]]
    np.testing.assert_allclose(window["yhat"], truth(window["ds"]) + 1.0)


def test_combine_median_trimmed_and_missing_bounds() -> None:
    members = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, np.nan], [4.0, 4.0], [100.0, 100.0]])
    assert combine(members, "median").tolist()[0] == 3.0
    assert combine(members, "trimmed")[0] == pytest.approx(3.0)  # mean of 2, 3, 4
    assert combine(members, "mean")[0] == pytest.approx(22.0)
    # A point is combined only where every member has it.
    assert np.isnan(combine(members, "median")[1])
    # Below three members the median and the trimmed mean are the mean.
    assert combine(members[:2], "median")[0] == combine(members[:2], "mean")[0] == 1.5
    # Groups of different sizes stacked together, padded with NaN.
    padded = np.array([[1.0, 1.0], [2.0, 5.0], [9.0, np.nan]])
    np.testing.assert_allclose(combine(padded, "median", np.array([3, 2])), [2.0, 3.0])


def test_ensemble_names_record_the_combination_and_old_names_still_read() -> None:
    name = ensemble_name(["MSTL", "SeasonalNaive", "AutoETS"], "median")
    assert name == "Ensemble(median:SeasonalNaive+AutoETS+MSTL)"
    assert ensemble_members(name) == ["SeasonalNaive", "AutoETS", "MSTL"]
    assert ensemble_combination(name) == "median"
    # The mean is unmarked, as every release before combinations were configurable named it.
    assert ensemble_members("Ensemble(Naive+SES)") == ["Naive", "SES"]
    assert ensemble_combination("Ensemble(Naive+SES)") == "mean"
    # Two members: the median is the mean, and is named as one.
    assert ensemble_name(["SES", "Naive"], "median") == "Ensemble(Naive+SES)"
    assert ensemble_combination("AutoETS") == "mean"


def _config(combination: str) -> Any:
    return parse_pipeline(
        {
            "source": {},
            "series": {"frequency": "D", "horizon": 3, "season_lengths": [7]},
            "models": {"candidates": list(MODELS), "plugins": False},
            "backtest": {"windows": 3, "ensemble_top_k": 3, "combination": combination},
        },
        "test",
        "test.toml",
    )


@pytest.mark.parametrize("combination", ["median", "trimmed"])
def test_the_configured_combination_is_what_the_forecast_stage_publishes(
    combination: str,
) -> None:
    data = history()
    caps = {name: Capabilities() for name in MODELS}
    result = run_partition(data, _config(combination), FakeRunner(MODELS), capabilities=caps)
    prov = result.provenance.iloc[0]
    assert prov["model"] == f"Ensemble({combination}:Down+Up+Wild)"
    assert prov["source"] == "ensemble"
    fc = result.forecasts
    np.testing.assert_allclose(fc["yhat"], truth(fc["ds"]) + 1.0)

    # The mean of all three is dragged off by Wild: the partition takes the best single model,
    # paired with the runner-up (their mean is 1 below the pattern everywhere).
    mean = run_partition(data, _config("mean"), FakeRunner(MODELS), capabilities=caps)
    assert mean.provenance.iloc[0]["model"] == "Ensemble(Down+Up)"
    np.testing.assert_allclose(mean.forecasts["yhat"], truth(mean.forecasts["ds"]) - 1.0)


def test_an_unknown_combination_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"backtest.combination: 'average'.*'median'"):
        _config("average")
    with pytest.raises(ValueError, match=r"combination 'average' is not one of mean, median"):
        select(_backtest(), history(), ensemble_top_k=3, combination="average")


def test_backtest_defaults_documented_match_the_code() -> None:
    rows = dict(re.findall(r"^\| `backtest\.(\w+)` \| `([^`]*)` \|", DOCS.read_text(), re.M))
    defaults = BacktestConfig().model_dump()
    assert set(rows) == set(defaults)
    for key, value in defaults.items():
        documented = rows[key].strip('"')
        assert documented == str(value), f"backtest.{key}: docs say {rows[key]}, code {value!r}"


def test_a_combination_that_ties_with_the_best_single_model_is_chosen() -> None:
    # Members off by +1 and +1.01: their mean (+1.005) scores within 1% of the better one.
    models = {"Near": swinging(1.0, 1.0), "Nearer": swinging(1.01, 1.01)}
    data = history()
    result = backtest(
        data, routing(["a"], list(models)), TASK, windows=3, runner=FakeRunner(models)
    )
    tied = select(result, data, ensemble_top_k=2).table.iloc[0]
    assert tied["model"] == "Ensemble(Near+Nearer)"
    assert "tied within 1% with the best single model Near" in tied["reason"]
    strict = select(result, data, ensemble_top_k=2, ensemble_on_tie=False).table.iloc[0]
    assert strict["model"] == "Near"

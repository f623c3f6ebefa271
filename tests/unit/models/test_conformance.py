"""The conformance kit: it passes every built-in and the template, and names the broken check."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from steadycast_chaos_models.models import (
    ChaosNaN,
    ChaosNotAFrame,
    ChaosOracle,
    ChaosRaise,
    ChaosShort,
    ChaosWrongIds,
    last_value,
)
from steadycast_model_template import SeasonalMedian

from steadycast.errors import ModelOutputError
from steadycast.models.base import Capabilities, ForecastTask
from steadycast.models.registry import builtin_models
from steadycast.testing import ModelContractError, check_model

SLOW = {"AutoARIMA"}  # about 25 s through every check on 2 cores


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(builtin_models())],
)
def test_every_builtin_passes(name: str) -> None:
    check_model(builtin_models()[name])


@pytest.mark.parametrize("model_cls", [SeasonalMedian, ChaosOracle])
def test_plugins_pass(model_cls: type) -> None:
    check_model(model_cls)


def test_parameters_and_a_custom_task_are_used() -> None:
    task = ForecastTask(horizon=7, frequency="D", season_length=7, season_lengths=(7,))
    check_model(builtin_models()["SeasonalWindowAverage"], params={"window_size": 3}, task=task)


class _Mutates:
    name: ClassVar[str] = "Mutates"
    capabilities: ClassVar[Capabilities] = Capabilities()

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        history["y"] = 0.0
        return last_value(history, task)


class _Random:
    name: ClassVar[str] = "Random"
    capabilities: ClassVar[Capabilities] = Capabilities()

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        out = last_value(history, task)
        return out.assign(yhat=np.random.default_rng().random(len(out)))


class _NoIntervals:
    name: ClassVar[str] = "NoIntervals"
    capabilities: ClassVar[Capabilities] = Capabilities(intervals=True)

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        return last_value(history, task)


class _CrossedIntervals:
    name: ClassVar[str] = "Crossed"
    capabilities: ClassVar[Capabilities] = Capabilities(intervals=True)

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        out = last_value(history, task)
        return out.assign(
            yhat_lo_80=out["yhat"] - 2,
            yhat_hi_80=out["yhat"] + 2,
            yhat_lo_95=out["yhat"] - 1,
            yhat_hi_95=out["yhat"] + 1,
        )


class _NeedsArgument:
    name: ClassVar[str] = "NeedsArgument"
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, path: str) -> None:
        self.path = path

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        return last_value(history, task)


class _NoName:
    capabilities: ClassVar[Capabilities] = Capabilities()

    def forecast(self, history: pd.DataFrame, task: ForecastTask) -> pd.DataFrame:
        return last_value(history, task)


@pytest.mark.parametrize(
    ("model_cls", "message"),
    [
        (_NoName, r"check 'declares' failed: .* has no class attribute 'name'"),
        (_NeedsArgument, r"model 'NeedsArgument': check 'instantiates' failed: TypeError"),
        (ChaosRaise, r"check 'seasonal batch' failed: forecast raised ValueError: chaos"),
        (ChaosNaN, r"series 'seasonal_0': check 'seasonal batch' failed: .*non-finite yhat"),
        (ChaosShort, r"check 'seasonal batch' failed: .*returned 11 rows, expected 12"),
        (ChaosWrongIds, r"check 'seasonal batch' failed: missing from the output .*'seasonal_0_x'"),
        (
            ChaosNotAFrame,
            r"check 'seasonal batch' failed: .*returned a list, not a pandas DataFrame",
        ),
        (_Mutates, r"check 'history untouched' failed: forecast modified its input"),
        (_Random, r"check 'deterministic' failed: two forecasts of the same history differ"),
        (
            _NoIntervals,
            r"check 'intervals' failed: declares intervals but returned no 80% interval",
        ),
        (_CrossedIntervals, r"check 'intervals' failed: the 80% interval is not inside the 95%"),
    ],
)
def test_a_broken_contract_names_the_check(model_cls: type, message: str) -> None:
    with pytest.raises(ModelContractError, match=message) as caught:
        check_model(model_cls)
    assert isinstance(caught.value, ModelOutputError)  # one error tree

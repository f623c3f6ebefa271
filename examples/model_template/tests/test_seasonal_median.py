"""The template's own tests: the steadycast conformance kit, then what is special about it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from steadycast_model_template import SeasonalMedian

from steadycast.models.base import ForecastTask
from steadycast.testing import check_model


def test_passes_the_steadycast_contract() -> None:
    check_model(SeasonalMedian)


def test_passes_the_contract_with_parameters() -> None:
    check_model(SeasonalMedian, params={"seasons": 2})


def test_one_outlier_does_not_move_the_forecast() -> None:
    y = np.tile(np.arange(24, dtype=float), 5)
    y[-3] = 1000.0  # a spike in the last season
    history = pd.DataFrame(
        {"unique_id": "m1", "ds": pd.date_range("2024-01-01", periods=y.size, freq="h"), "y": y}
    )
    task = ForecastTask(horizon=24, frequency="h", season_length=24)
    out = SeasonalMedian().forecast(history, task)
    np.testing.assert_allclose(out["yhat"].to_numpy(), np.arange(24, dtype=float))


def test_rejects_a_bad_parameter() -> None:
    with pytest.raises(ValueError, match="seasons must be a whole number"):
        SeasonalMedian(seasons=0)

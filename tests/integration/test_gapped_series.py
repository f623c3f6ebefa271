"""Every built-in model, alone, on series with holes in them (timestamps missing, as stored data
has them after quarantine): prepare fills or cuts, and each series gets a finite forecast of the
horizon or a recorded fallback."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from steadycast.config import parse_pipeline
from steadycast.models.registry import builtin_models
from steadycast.pipeline.run import forecast_one_partition


def gapped_history() -> pd.DataFrame:
    ds = pd.date_range("2024-01-01", periods=24 * 8, freq="h")
    rng = np.random.default_rng(3)
    frames = []
    for i, holes in enumerate([slice(30, 33), slice(100, 101), slice(0, 0), slice(20, 70)]):
        y = 5 + np.sin(2 * np.pi * ds.hour.to_numpy() / 24) + rng.normal(0, 0.1, len(ds))
        keep = np.ones(len(ds), dtype=bool)
        keep[holes] = False  # the last series has a gap longer than a season: history is cut
        frames.append(pd.DataFrame({"unique_id": f"g{i}", "ds": ds[keep], "y": y[keep]}))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("model", sorted(builtin_models()))
def test_each_builtin_on_gapped_series(model: str) -> None:
    cfg = parse_pipeline(
        {
            "source": {},
            "series": {"frequency": "1h", "horizon": 12, "season_lengths": [24]},
            "models": {"candidates": [model], "plugins": False},
            "backtest": {"windows": 1, "ensemble_top_k": 0},
        },
        "gapped",
        "test",
    )
    result, report = forecast_one_partition(gapped_history(), cfg, None, None)
    assert report.set_index("unique_id").loc["g0", "filled"] == 3
    assert pd.notna(report.set_index("unique_id").loc["g3", "cut_before"])
    sizes = result.forecasts.groupby("unique_id").size()
    assert sizes.to_dict() == {f"g{i}": 12 for i in range(4)}
    assert np.isfinite(result.forecasts["yhat"]).all()
    prov = result.provenance.set_index("unique_id")
    assert set(prov["source"]) <= {"selected", "fallback"}
    fallen = prov[prov["source"] == "fallback"]
    assert fallen["fallback_reason"].str.len().gt(0).all()

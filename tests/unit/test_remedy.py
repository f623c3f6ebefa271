"""Per-series remedies before the gate, the gate rules that judge them, and the carry-over of
excluded series: a problem in a few series is fixed series by series, never published, and
holds the run only when a large share of the fleet has it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from steadycast.config import GateConfig, PipelineConfig
from steadycast.forecasting.forecast import PartitionResult
from steadycast.pipeline.carry import carry_over
from steadycast.quality.gate import evaluate_gate
from steadycast.quality.remedy import level_ratio, remedy

IDS = [f"s{i}" for i in range(10)]
H = 24


def config() -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "name": "t",
            "source": {},
            "series": {"frequency": "1h", "horizon": H, "season_lengths": [24]},
            "models": {"levels": [80]},
        }
    )


def history() -> pd.DataFrame:
    ds = pd.date_range("2024-01-01", periods=24 * 35, freq="h")
    frames = []
    for i, uid in enumerate(IDS):
        y = 50 + 10 * i + 20 * np.sin(2 * np.pi * ds.hour.to_numpy() / 24)
        frames.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": y}))
    return pd.concat(frames, ignore_index=True)


def partition(hist: pd.DataFrame, bad: dict[str, float] | None = None) -> PartitionResult:
    """Seasonal-naive-like forecasts, each multiplied by ``bad.get(series, 1)``."""
    bad = bad or {}
    start = hist["ds"].max() + pd.Timedelta("1h")
    rows = []
    for uid, g in hist.groupby("unique_id"):
        y = g["y"].to_numpy()[-H:] * bad.get(str(uid), 1.0)
        rows.append(
            pd.DataFrame(
                {
                    "unique_id": uid,
                    "ds": pd.date_range(start, periods=H, freq="h"),
                    "yhat": y,
                    "yhat_lo_80": y - 5,
                    "yhat_hi_80": y + 5,
                    "model": "AutoETS",
                }
            )
        )
    prov = pd.DataFrame(
        {"unique_id": IDS, "model": "AutoETS", "source": "selected", "fallback_reason": ""}
    )
    return PartitionResult(forecasts=pd.concat(rows, ignore_index=True), provenance=prov)


def gate(result: PartitionResult, nonnegative: set[str] | None = None):  # type: ignore[no-untyped-def]
    return evaluate_gate(
        GateConfig(), result.forecasts, result.provenance, nonnegative=nonnegative or set(IDS)
    )


def rule(decision, name: str):  # type: ignore[no-untyped-def]
    (found,) = [r for r in decision.results if r.check == name]
    return found


def test_level_ratio_sees_1000x_and_zero_but_not_a_forecast_in_line() -> None:
    v = 50 + 20 * np.sin(2 * np.pi * np.arange(24 * 35) / 24)
    same = v[-24:]
    assert level_ratio(same, v, 24) == 1.0
    assert level_ratio(same * 1000, v, 24) > 500
    assert level_ratio(same * 0.0, v, 24) < 1 / 500
    assert 1.5 < level_ratio(same * 1.8, v, 24) < 2.0  # a real change of level, in line
    assert level_ratio(same * 1000, np.r_[v, v[-1] * 1000], 24) < 2  # in line with its last value


def test_a_series_1000x_its_history_takes_its_seasonal_naive_and_the_run_publishes() -> None:
    hist = history()
    fixed = remedy(partition(hist, {"s3": 1000.0}), hist, config())
    prov = fixed.provenance.set_index("unique_id")
    assert prov.loc["s3", "remedy"] == "level_vs_history"
    assert prov.loc["s3", "source"] == "fallback" and prov.loc["s3", "model"] == "SeasonalNaive"
    assert "(AutoETS) was 993x above its history's level" in prov.loc["s3", "fallback_reason"]
    served = fixed.forecasts[fixed.forecasts["unique_id"] == "s3"]
    assert served["yhat"].median() == hist[hist["unique_id"] == "s3"]["y"].median()
    assert (served["yhat_lo_80"] <= served["yhat"]).all()
    assert (prov.drop(index="s3")["remedy"] == "").all()
    decision = gate(fixed)
    level = rule(decision, "level_vs_history")
    assert level.passed and level.series == ("s3",)
    assert "1 of 10 series (10.0%)" in level.detail and decision.passed


def test_a_fleet_out_of_line_holds_the_run() -> None:
    hist = history()
    fixed = remedy(partition(hist, {u: 0.0 for u in IDS[:5]}), hist, config())
    level = rule(gate(fixed), "level_vs_history")
    assert not level.passed and level.blocking
    assert "5 of 10 series (50.0%)" in level.detail and "above the limit of 20%" in level.detail


def test_a_forecast_left_out_of_line_without_remedy_holds() -> None:
    hist = history()
    result = partition(hist, {"s1": 1000.0})
    prov = result.provenance.assign(remedy="", level_ratio=1.0)
    prov.loc[prov["unique_id"] == "s1", "level_ratio"] = 1000.0
    decision = evaluate_gate(GateConfig(), result.forecasts, prov)
    level = rule(decision, "level_vs_history")
    assert not level.passed and "'s1'" in level.detail and not decision.passed


def test_negative_forecasts_are_clipped_per_series_and_hold_only_a_large_share() -> None:
    hist = history()
    result = partition(hist)
    fc = result.forecasts
    fc.loc[fc["unique_id"] == "s2", "yhat"] = -3.0
    fixed = remedy(result, hist, config())
    served = fixed.forecasts[fixed.forecasts["unique_id"] == "s2"]
    assert (served["yhat"] >= 0).all() and (served["yhat_lo_80"] >= 0).all()
    prov = fixed.provenance.set_index("unique_id")
    assert prov.loc["s2", "remedy"] == "negative"
    assert "24 negative forecasts (lowest -3) clipped to 0" in prov.loc["s2", "fallback_reason"]
    negative = rule(gate(fixed), "negative")
    assert negative.passed and negative.series == ("s2",)

    many = partition(hist)
    many.forecasts.loc[many.forecasts["unique_id"].isin(IDS[:4]), "yhat"] = -3.0
    held = rule(gate(remedy(many, hist, config())), "negative")
    assert not held.passed and "4 of 10 series (40.0%)" in held.detail


def test_non_finite_forecasts_take_a_fallback_per_series() -> None:
    hist = history()
    result = partition(hist)
    result.forecasts.loc[result.forecasts["unique_id"] == "s4", "yhat_hi_80"] = np.nan
    fixed = remedy(result, hist, config())
    assert np.isfinite(fixed.forecasts[["yhat", "yhat_lo_80", "yhat_hi_80"]].to_numpy()).all()
    assert fixed.provenance.set_index("unique_id").loc["s4", "remedy"] == "non_finite"
    decision = gate(fixed)
    assert rule(decision, "non_finite").passed and decision.passed


def test_excluded_series_carry_over_their_current_forecast_or_are_named_absent() -> None:
    hist = history()
    current = partition(hist).forecasts
    run = partition(hist)
    keep = ~run.forecasts["unique_id"].isin(["s0", "s1"])
    forecasts = run.forecasts[keep].reset_index(drop=True)
    provenance = run.provenance[~run.provenance["unique_id"].isin(["s0", "s1"])]
    why = {"s0": ["series 's0': feed fault 'scale': ..."], "gone": ["series 'gone': ..."]}
    out, prov, missing = carry_over(forecasts, provenance, why, current)
    assert missing == ["gone"]
    carried = out[out["unique_id"] == "s0"].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        carried, current[current["unique_id"] == "s0"].reset_index(drop=True)
    )
    row = prov.set_index("unique_id").loc["s0"]
    assert row["source"] == "carried_over" and "feed fault 'scale'" in row["fallback_reason"]
    decision = evaluate_gate(GateConfig(), out, prov, nonnegative=set(IDS))
    assert rule(decision, "fallback_share").passed
    assert rule(decision, "series_without_forecast").passed

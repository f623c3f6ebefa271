"""The gate: each rule trips on crafted input with a sentence naming the figure and the limit,
and passes on clean input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from steadycast.config import GateConfig
from steadycast.quality.checks import CheckResult
from steadycast.quality.gate import (
    GateResult,
    build_gate_specs,
    evaluate_gate,
    nonnegative_series,
)

IDS = [f"s{i}" for i in range(10)]
HORIZON = pd.date_range("2024-03-01", periods=4, freq="1h")


def forecasts(ids: list[str] = IDS, level: float = 10.0) -> pd.DataFrame:
    rows = [
        {
            "unique_id": uid,
            "ds": ds,
            "yhat": level,
            "yhat_lo_80": level - 1,
            "yhat_hi_80": level + 1,
            "model": "AutoETS",
        }
        for uid in ids
        for ds in HORIZON
    ]
    return pd.DataFrame(rows)


def provenance(ids: list[str] = IDS, sources: dict[str, str] | None = None) -> pd.DataFrame:
    sources = sources or {}
    return pd.DataFrame(
        {
            "unique_id": ids,
            "model": ["SeasonalNaive" if sources.get(u) == "fallback" else "AutoETS" for u in ids],
            "source": [sources.get(u, "selected") for u in ids],
            "fallback_reason": [
                "AutoETS failed: timeout" if sources.get(u) == "fallback" else "" for u in ids
            ],
            "metric": "mase",
            "backtest_score": 0.8,
        }
    )


def scores(chosen: dict[str, float] | None = None, naive: float = 1.0) -> pd.DataFrame:
    chosen = chosen or {}
    rows = []
    for uid in IDS:
        for window in (0, 1):
            rows.append((uid, "SeasonalNaive", window, "ok", naive))
            rows.append((uid, "AutoETS", window, "ok", chosen.get(uid, 0.8)))
    return pd.DataFrame(rows, columns=["unique_id", "model", "window", "status", "mase"])


def rule(decision_results: list[GateResult], name: str) -> GateResult:
    (found,) = [r for r in decision_results if r.check == name]
    return found


def clean_decision(**overrides: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {
        "forecasts": forecasts(),
        "provenance": provenance(),
        "check_results": [],
        "current_release": forecasts(level=10.5),
        "nonnegative": set(IDS),
        "scores": scores(),
    }
    args.update(overrides)
    return evaluate_gate(GateConfig(), **args)  # type: ignore[arg-type]


def test_clean_run_passes_every_rule_and_has_the_run_json_shape() -> None:
    decision = clean_decision()
    assert decision.passed, decision.summary()
    assert [r.check for r in decision.results] == [
        "blocking_checks",
        "fallback_share",
        "non_finite",
        "negative",
        "level_vs_history",
        "total_jump",
        "worse_than_naive",
        "series_without_forecast",
    ]
    assert all(r.passed for r in decision.results)
    assert decision.as_json()[0].keys() == {"check", "passed", "detail"}
    assert decision.summary() == "gate passed: 8 rules"


def test_blocking_checks_holds_on_a_failed_stop_check_and_ignores_warn_and_exclude() -> None:
    stop = CheckResult(
        "volume_parity", False, "error", True, "stop", None,
        "volume parity: 40 of 100 series reporting at the previous run (40.0%) no longer report "
        "(limit 20.0%)",
    )  # fmt: skip
    warn = CheckResult("spikes", False, "info", False, "warn", "s1", "series 's1': outlier")
    exclude = CheckResult("flat_line", False, "error", True, "exclude", "s2", "series 's2': stuck")
    passed = rule(clean_decision(check_results=[warn, exclude]).results, "blocking_checks")
    assert passed.passed
    assert passed.detail == (
        "no data-quality check with policy 'stop' failed (1 series excluded by policy 'exclude')"
    )
    decision = clean_decision(check_results=[warn, exclude, stop])
    held = rule(decision.results, "blocking_checks")
    assert not decision.passed and not held.passed
    assert held.detail == (
        "1 data-quality check with policy 'stop' failed: volume parity: 40 of 100 series "
        "reporting at the previous run (40.0%) no longer report (limit 20.0%)"
    )


def test_fallback_share_holds_above_its_limit_and_names_the_main_reason() -> None:
    sources = {"s0": "fallback", "s1": "fallback", "s2": "none"}
    decision = clean_decision(
        provenance=provenance(sources=sources), forecasts=forecasts(IDS[:2] + IDS[3:])
    )
    result = rule(decision.results, "fallback_share")
    assert not result.passed
    assert result.detail == (
        "3 of 10 series (30.0%) are on a fallback or have no forecast, above the limit of 20% "
        "of the fleet; most often because 'AutoETS failed: timeout' (2)"
    )
    assert result.value == pytest.approx(0.3) and result.limit == 0.2
    assert result.series == ("s0", "s1", "s2")
    within = rule(
        clean_decision(provenance=provenance(sources={"s0": "fallback"})).results,
        "fallback_share",
    )
    assert within.passed and "10.0%) are on a fallback" in within.detail


def test_non_finite_holds_on_nan_or_infinite_values_naming_the_series() -> None:
    fc = forecasts()
    fc.loc[fc.unique_id == "s3", "yhat"] = np.nan
    fc.loc[(fc.unique_id == "s7") & (fc.ds == HORIZON[0]), "yhat_hi_80"] = np.inf
    result = rule(clean_decision(forecasts=fc).results, "non_finite")
    assert not result.passed
    assert result.detail == (
        "5 forecast values in 2 series are NaN or infinite (limit 0): 's3', 's7'"
    )
    assert rule(clean_decision().results, "non_finite").detail == (
        "all 120 forecast values (yhat, yhat_lo_80, yhat_hi_80) are finite"
    )


def test_negative_holds_only_for_series_never_negative_in_history() -> None:
    history = pd.DataFrame({"unique_id": ["s0", "s0", "s1", "s1"], "y": [1.0, 2.0, -3.0, 4.0]})
    nonneg = nonnegative_series(history) | set(IDS[2:])
    assert "s1" not in nonneg and "s0" in nonneg
    fc = forecasts()
    # Three series never negative in history get negative forecasts: 30% of the fleet, above
    # the 20% limit, holds the run; s1 was negative before and does not count.
    fc.loc[fc.unique_id.isin(["s0", "s1", "s2", "s3"]), "yhat"] = -0.5
    result = rule(clean_decision(forecasts=fc, nonnegative=nonneg).results, "negative")
    assert not result.passed
    assert result.detail == (
        "12 negative forecasts (lowest -0.5) in 3 series that were never negative in their "
        "history; 3 of 10 series (30.0%) affected, above the limit of 20% of the fleet: 's0', "
        "'s2', 's3'"
    )
    fc.loc[fc.unique_id.isin(["s2", "s3"]), "yhat"] = 0.0
    one = rule(clean_decision(forecasts=fc, nonnegative=nonneg).results, "negative")
    assert one.passed and one.series == ("s0",)  # one series of ten: not a fleet problem


def test_a_few_series_of_a_small_fleet_are_a_per_series_matter() -> None:
    """1 or 2 series of 3 are above the share limit, but fewer than ``min_series``: the remedy
    series by series is enough; all 3 hold the run (a small real fleet, e.g. bus, rail and
    total ridership, where one series' model goes negative at a real break). Every series of a
    fleet smaller than ``min_series`` holds it too."""
    small = ["s0", "s1", "s2"]
    fc = forecasts(small)
    fc.loc[fc.unique_id.isin(["s0", "s1"]), "yhat"] = -0.5
    two = rule(
        clean_decision(forecasts=fc, provenance=provenance(small), nonnegative=set(small)).results,
        "negative",
    )
    assert two.passed
    assert "above 20% of the fleet but fewer than 3 series, so a per-series matter" in two.detail
    fc.loc[fc.unique_id == "s2", "yhat"] = -0.5
    three = rule(
        clean_decision(forecasts=fc, provenance=provenance(small), nonnegative=set(small)).results,
        "negative",
    )
    assert not three.passed
    on_fallback = provenance(small, sources={"s0": "fallback", "s1": "fallback"})
    share = rule(
        clean_decision(forecasts=forecasts(small), provenance=on_fallback).results, "fallback_share"
    )
    assert share.passed and "fewer than 3 series" in share.detail
    pair = ["s0", "s1"]
    both = provenance(pair, sources={"s0": "fallback", "s1": "fallback"})
    assert not rule(
        clean_decision(forecasts=forecasts(pair), provenance=both).results, "fallback_share"
    ).passed


def test_total_jump_holds_when_the_total_moves_beyond_the_limit() -> None:
    current = forecasts(level=4.0)
    result = rule(clean_decision(current_release=current).results, "total_jump")
    assert not result.passed
    assert result.detail == (
        "the forecast total over 10 series and 4 common steps (2024-03-01 00:00 to 2024-03-01 "
        "03:00) moved +150.0% against the current release (160 -> 400), above the limit of 50%"
    )
    assert result.value == pytest.approx(1.5) and result.limit == 0.5
    assert rule(clean_decision().results, "total_jump").passed
    first = rule(clean_decision(current_release=None).results, "total_jump")
    assert first.passed and first.detail == "no current release to compare with"


def test_worse_than_naive_holds_when_too_many_series_lose_to_seasonal_naive() -> None:
    prov = provenance()
    prov.loc[prov.unique_id.isin(["s0", "s1", "s2", "s3"]), "backtest_score"] = 1.5
    result = rule(clean_decision(provenance=prov).results, "worse_than_naive")
    assert not result.passed
    assert result.detail == (
        "4 of 10 series (40.0%) use a model that backtests worse than SeasonalNaive by more "
        "than 10% (mase), above the limit of 30.0%: 's0', 's1', 's2', 's3'"
    )
    # Within the tolerance (1.05 < 1.0 * 1.1) is not worse.
    prov.loc[prov.unique_id.isin(["s0", "s1", "s2", "s3"]), "backtest_score"] = 1.05
    assert rule(clean_decision(provenance=prov).results, "worse_than_naive").passed


def test_worse_than_naive_reads_the_chosen_score_from_the_backtest_when_missing() -> None:
    prov = provenance().assign(backtest_score=np.nan)
    bad = {uid: 2.0 for uid in IDS[:5]}
    result = rule(clean_decision(provenance=prov, scores=scores(bad)).results, "worse_than_naive")
    assert not result.passed and "5 of 10 series (50.0%)" in result.detail


def test_series_without_forecast_holds_when_a_series_has_none() -> None:
    prov = provenance(sources={"s9": "none"})
    decision = clean_decision(provenance=prov, forecasts=forecasts(IDS[:9]))
    result = rule(decision.results, "series_without_forecast")
    assert not result.passed
    assert result.detail == (
        "1 of 10 series (10.0%) have no forecast, above the limit of 0.0%: 's9'"
    )
    assert not decision.passed
    assert "gate held the run: " in decision.summary()


def test_rules_can_be_turned_off_or_made_non_blocking() -> None:
    config = GateConfig.model_validate(
        {"total_jump": {"blocking": False}, "negative": {"enabled": False}}
    )
    specs = build_gate_specs(config)
    assert "negative" not in [s.name for s in specs if s.enabled]
    decision = evaluate_gate(
        config,
        forecasts(),
        provenance(),
        current_release=forecasts(level=1.0),
        nonnegative=None,
        scores=scores(),
    )
    jump = rule(decision.results, "total_jump")
    assert not jump.passed and not jump.blocking
    assert decision.passed
    assert decision.summary() == "gate passed: 7 rules (not blocking: total_jump)"
    assert "negative" not in [r.check for r in decision.results]

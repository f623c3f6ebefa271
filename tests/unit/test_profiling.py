"""Profiles of degenerate series, and routing that is never empty."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from steadycast.forecasting.profile import profile_series, route
from steadycast.models.base import Capabilities

CAPS = {
    "Naive": Capabilities(intervals=True),
    "HistoricAverage": Capabilities(intervals=True),
    "SeasonalNaive": Capabilities(intervals=True, min_history=7),
    "AutoETS": Capabilities(intervals=True, min_history=14, cost="full", handles_zeros=False),
    "AutoTheta": Capabilities(intervals=True, min_history=14, cost="full"),
    "CrostonOptimized": Capabilities(intermittent=True),
    "IMAPA": Capabilities(intermittent=True),
}
CANDIDATES = ["SeasonalNaive", "AutoETS", "AutoTheta"]


def _series(uid: str, values: list[float] | np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unique_id": uid,
            "ds": pd.date_range("2021-01-01", periods=len(values), freq="D"),
            "y": np.asarray(values, dtype=float),
        }
    )


def _history() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    t = np.arange(140)
    gappy = rng.normal(10, 1, 40)
    gappy[[0, 1, 17, 18, 19]] = np.nan
    demand = np.zeros(120)
    demand[::4] = [3, 5, 4, 6, 2, 5, 4, 3, 5, 4] * 3
    return pd.concat(
        [
            _series("constant", [4.2] * 30),
            _series("zeros", [0.0] * 30),
            _series("short", rng.normal(50, 5, 10)),
            _series("intermittent", demand),
            _series("gappy", gappy),
            _series("weekly", 100 + 10 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 1, 140)),
            _series("empty", [np.nan] * 6),
        ],
        ignore_index=True,
    )


def _profile() -> pd.DataFrame:
    return profile_series(_history(), season_length=7).set_index("unique_id")


def test_constant_and_all_zero_series() -> None:
    p = _profile()
    assert p.loc["constant", "constant"] and not p.loc["constant", "all_zero"]
    assert p.loc["zeros", "constant"] and p.loc["zeros", "all_zero"]
    assert p.loc["zeros", "zero_share"] == 1.0
    assert not p.loc["zeros", "intermittent"]


def test_short_series_length() -> None:
    p = _profile()
    assert p.loc["short", "length"] == 10
    assert p.loc["short", "usable_length"] == 10
    assert p.loc["short", "seasonal_strength"] == 0.0


def test_intermittent_by_syntetos_boylan() -> None:
    p = _profile()
    assert p.loc["intermittent", "adi"] == 4.0
    assert p.loc["intermittent", "zero_share"] == 0.75
    assert p.loc["intermittent", "demand_class"] == "intermittent"
    assert p.loc["intermittent", "intermittent"]
    assert p.loc["weekly", "demand_class"] == "smooth"


def test_nan_gaps_are_counted_and_edges_trimmed() -> None:
    p = _profile()
    assert p.loc["gappy", "length"] == 40
    assert p.loc["gappy", "nan_share"] == 5 / 40
    assert p.loc["gappy", "usable_length"] == 38  # leading two dropped, interior gap kept
    assert p.loc["empty", "usable_length"] == 0
    assert p.loc["empty", "nan_share"] == 1.0


def test_seasonality_strength() -> None:
    p = _profile()
    assert p.loc["weekly", "seasonal_strength"] > 0.5
    assert p.loc["weekly", "seasonal"]
    assert not p.loc["constant", "seasonal"]


def test_route_degenerate_series_to_simple_models() -> None:
    r = route(_profile().reset_index(), CANDIDATES, CAPS, season_length=7).set_index("unique_id")
    assert r.loc["constant", "models"] == ["Naive"]
    assert r.loc["zeros", "models"] == ["Naive"]
    assert "all zeros" in r.loc["zeros", "note"]
    # 10 points: AutoETS/AutoTheta need 14; SeasonalNaive (7) stays, simple models added
    assert r.loc["short", "models"] == ["SeasonalNaive", "Naive", "HistoricAverage"]
    assert "AutoETS needs 14" in r.loc["short", "note"]
    assert r.loc["empty", "models"] == ["Naive"]
    assert "no observed values" in r.loc["empty", "note"]


def test_route_offers_croston_to_intermittent_only() -> None:
    r = route(_profile().reset_index(), CANDIDATES, CAPS, season_length=7).set_index("unique_id")
    models = r.loc["intermittent", "models"]
    assert "CrostonOptimized" in models and "IMAPA" in models
    assert "AutoETS" not in models  # declares handles_zeros=False
    assert "CrostonOptimized" not in r.loc["weekly", "models"]
    assert r.loc["weekly", "models"] == CANDIDATES


def test_route_skips_unknown_models_with_a_note() -> None:
    r = route(_profile().reset_index(), ["Prophet9000", "AutoETS"], CAPS, season_length=7)
    weekly = r.set_index("unique_id").loc["weekly"]
    assert weekly["models"] == ["AutoETS"]
    assert "Prophet9000" in weekly["note"]


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False), st.just(0.0)),
        min_size=1,
        max_size=40,
    ),
    candidates=st.lists(st.sampled_from([*CAPS, "Unknown"]), max_size=4),
)
def test_route_is_never_empty(values: list[float | None], candidates: list[str]) -> None:
    y = [np.nan if v is None else v for v in values]
    profile = profile_series(_series("s", y), season_length=7)
    routed = route(profile, candidates, CAPS, season_length=7)
    assert len(routed) == 1
    assert routed["models"].iloc[0]

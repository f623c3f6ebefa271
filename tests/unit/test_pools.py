"""The default candidate pools: which pool a frequency gets, and that a pipeline naming no
candidates runs (and records) its frequency's pool while a named list stays the user's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steadycast.config import candidates_origin, parse_pipeline
from steadycast.forecasting import pools
from steadycast.pipeline.scope import config_doc
from tests.conftest import run_cli
from tests.pipelines import pipeline_toml


def _pipeline(series: dict[str, object], models: dict[str, object] | None = None):  # type: ignore[no-untyped-def]
    data: dict[str, object] = {"source": {}, "series": {"horizon": 12, **series}}
    if models is not None:
        data["models"] = models
    return parse_pipeline(data, "p", "pipelines/p.toml")


@pytest.mark.parametrize(
    ("frequency", "expected"),
    [
        ("15min", "hourly"),
        ("30min", "hourly"),
        ("1h", "hourly"),
        ("6h", "hourly"),
        ("1D", "daily"),
        ("B", "daily"),
        ("W-SUN", "weekly"),
        ("1W", "weekly"),
        ("2W", "weekly"),
        ("MS", "monthly"),
        ("QS", "monthly"),
        ("YS", "monthly"),
    ],
)
def test_frequency_class_by_the_length_of_a_step(frequency: str, expected: str) -> None:
    assert pools.frequency_class(frequency) == expected


def test_each_class_gets_its_own_pool_and_every_pool_has_a_seasonal_baseline() -> None:
    seasons = {"1h": [24, 168], "1D": [7], "W-SUN": [52], "MS": [12]}
    chosen = {f: pools.default_candidates(f, s) for f, s in seasons.items()}
    assert chosen["1h"] == list(pools.POOLS["hourly"])
    assert chosen["W-SUN"] == list(pools.POOLS["weekly"])
    assert len({tuple(c) for c in chosen.values()}) == 4
    assert all("SeasonalNaive" in c for c in chosen.values())


@pytest.fixture
def hourly_params(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool that gives its MSTL member a parameter (the shipped pools give none today)."""
    monkeypatch.setitem(pools.POOLS, "hourly", ("SeasonalNaive", "MSTL", "Card"))  # type: ignore[arg-type]
    monkeypatch.setitem(pools.POOL_PARAMS, "hourly", {"MSTL": {"box_cox": True}})  # type: ignore[arg-type]


@pytest.mark.usefixtures("hourly_params")
def test_without_a_season_seasonal_only_members_leave_and_a_level_model_joins() -> None:
    for frequency in ("1h", "1D", "W-SUN", "MS"):
        for seasons in ([], [1]):
            chosen = pools.default_candidates(frequency, seasons)
            assert "SeasonalNaive" not in chosen and "MSTL" not in chosen
            assert {"Naive", "SES"} <= set(chosen)
    assert "MSTL" not in pools.default_params("1h", [])


@pytest.mark.usefixtures("hourly_params")
def test_a_pipeline_naming_no_candidates_gets_its_frequencys_pool_with_its_params() -> None:
    cfg = _pipeline({"frequency": "1h", "season_lengths": [24, 168]})
    assert cfg.models.candidates == list(pools.POOLS["hourly"])
    assert cfg.models.params["MSTL"] == {"box_cox": True}
    assert candidates_origin(cfg) == "the default pool for hourly data"
    weekly = _pipeline({"frequency": "W-SUN", "season_lengths": [52]})
    assert weekly.models.candidates == list(pools.POOLS["weekly"])


@pytest.mark.usefixtures("hourly_params")
def test_the_files_own_params_win_key_by_key_over_the_pools() -> None:
    cfg = _pipeline(
        {"frequency": "1h", "season_lengths": [24, 168]},
        {"params": {"MSTL": {"box_cox": False}, "AutoARIMA": {"approximation": True}}},
    )
    assert cfg.models.params == {
        "MSTL": {"box_cox": False},
        "AutoARIMA": {"approximation": True},
    }


def test_named_candidates_stay_the_users_and_get_no_pool_params() -> None:
    cfg = _pipeline(
        {"frequency": "1h", "season_lengths": [24, 168]}, {"candidates": ["Naive", "MSTL"]}
    )
    assert cfg.models.candidates == ["Naive", "MSTL"]
    assert cfg.models.params == {}
    assert candidates_origin(cfg) == "named in the pipeline file"


def test_the_recorded_config_of_a_run_holds_the_resolved_pool() -> None:
    cfg = _pipeline({"frequency": "W-SUN", "season_lengths": [52]}, {"levels": [90]})
    doc = config_doc(cfg)
    assert doc["models"]["candidates"] == list(pools.POOLS["weekly"])
    assert doc["models"]["levels"] == [90]
    # The recorded config loads back to the same models, now named explicitly.
    again = parse_pipeline({k: v for k, v in doc.items() if k != "name"}, "p", "p.toml")
    assert again.models.candidates == cfg.models.candidates


def test_validate_shows_each_pipelines_candidates_and_where_they_come_from(
    tmp_path: Path,
) -> None:
    ws = tmp_path / "ws"
    assert run_cli("init", str(ws)).returncode == 0
    for path in (ws / "pipelines").glob("*.toml"):
        path.unlink()
    pipelines = ws / "pipelines"
    weekly = pipeline_toml(frequency="W-SUN", horizon=13, season_lengths=[52])
    (pipelines / "weekly.toml").write_text(weekly, encoding="utf-8")
    named = pipeline_toml(models=["Naive", "SeasonalNaive"])
    (pipelines / "named.toml").write_text(named, encoding="utf-8")
    shown = run_cli("validate", "-w", str(ws), "--json")
    doc = json.loads(shown.stdout)
    assert doc["candidates"]["pipelines/named.toml"] == {
        "models": ["Naive", "SeasonalNaive"],
        "origin": "named in the pipeline file",
    }
    assert doc["candidates"]["pipelines/weekly.toml"] == {
        "models": list(pools.POOLS["weekly"]),
        "origin": "the default pool for weekly data",
    }
    text = run_cli("validate", "-w", str(ws)).stdout
    assert "pipelines/weekly.toml: models.candidates = [" in text
    assert "(the default pool for weekly data)" in text

"""Realised accuracy: a release is scored when its actuals arrive in a later ingest, checked
against hand computation, rescored when more arrive, compared with its backtest's promise."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steadycast.config import MonitorConfig, PipelineConfig, parse_pipeline
from steadycast.errors import ConfigError
from steadycast.ingestion.batch import ingest
from steadycast.ops.accuracy import (
    accuracy_trend,
    drift_findings,
    min_points,
    monitor,
    score_releases,
    stored_scores,
)
from steadycast.ops.incidents import record_findings
from steadycast.storage import releases, store
from steadycast.workspace import Workspace
from tests.pipelines import pipeline_toml

# History 00:00-05:00. Season 1 scales: a = mean |diff| = (1+2+1+2+1)/5 = 1.4, b = 4/5 = 0.8.
HISTORY = {"a": [1, 2, 4, 3, 5, 6], "b": [10, 10, 12, 12, 14, 14]}
# The release forecasts 06:00-08:00: a flat 6 (80%: 5..7) by SeasonalNaive, b flat 14 (13..15)
# by AutoETS.
FORECAST = {"a": (6.0, 5.0, 7.0, "SeasonalNaive"), "b": (14.0, 13.0, 15.0, "AutoETS")}
HOURS = pd.date_range("2024-03-01", periods=9, freq="1h")


def csv(path: Path, rows: list[tuple[str, int, float]]) -> Path:
    """rows of (series, hour index, value) -> an input file of the test pipeline."""
    pd.DataFrame(
        {
            "meter_id": [r[0] for r in rows],
            "timestamp": [HOURS[r[1]].strftime("%Y-%m-%d %H:%M") for r in rows],
            "kwh": [r[2] for r in rows],
        }
    ).to_csv(path, index=False)
    return path


def write_release(ws: Workspace, run_id: str, shift: float = 0.0) -> releases.Release:
    rows = []
    for uid, (yhat, lo, hi, model) in FORECAST.items():
        for step in range(3):
            rows.append(
                {
                    "unique_id": uid,
                    "ds": HOURS[6 + step],
                    "yhat": yhat + shift,
                    "model": model,
                    "yhat_lo_80": lo + shift,
                    "yhat_hi_80": hi + shift,
                }
            )
    release = releases.write_release(
        ws.releases_dir, "meters", run_id, pd.DataFrame(rows), {"levels": [80]}
    )
    releases.make_current(ws.releases_dir, "meters", release.release_id)
    return release


def promise(ws: Workspace, run_id: str) -> None:
    """Backtest scores of the release's run: a's SeasonalNaive promised MASE 0.6 (mean of two
    windows), b's AutoETS 1.0. Other models and failed windows must not count."""
    rows = [
        ("a", "SeasonalNaive", 0, "ok", "mase", 0.5),
        ("a", "SeasonalNaive", 1, "ok", "mase", 0.7),
        ("a", "SeasonalNaive", 2, "failed", "mase", 99.0),
        ("a", "SeasonalNaive", 0, "ok", "smape", 10.0),
        ("a", "SeasonalNaive", 1, "ok", "smape", 20.0),
        ("a", "SeasonalNaive", 0, "ok", "coverage_80", 0.75),
        ("a", "AutoETS", 0, "ok", "mase", 0.1),
        ("b", "AutoETS", 0, "ok", "mase", 1.0),
        ("b", "SeasonalNaive", 0, "ok", "mase", 0.1),
    ]
    with store.writing(ws.store_path) as con:
        con.executemany(
            "INSERT INTO backtest_scores "
            '(pipeline, run_id, unique_id, model, "window", status, metric, value) '
            "VALUES ('meters', ?, ?, ?, ?, ?, ?, ?)",
            [(run_id, *row) for row in rows],
        )


@pytest.fixture
def setup(
    workspace: Workspace, make_pipeline: Callable[..., str], tmp_path: Path
) -> Callable[..., PipelineConfig]:
    """History ingested, one release of run r1 written and promised; returns a config maker."""

    def make(season_lengths: str = "[1]", extra: str = "") -> PipelineConfig:
        make_pipeline("meters", horizon=3, season_lengths=season_lengths, extra=extra)
        rows = [(uid, i, float(v)) for uid, values in HISTORY.items() for i, v in enumerate(values)]
        ingest(workspace, "meters", [csv(tmp_path / "history.csv", rows)])
        write_release(workspace, "r1")
        promise(workspace, "r1")
        return workspace.pipeline("meters")

    return make


def smape(pairs: list[tuple[float, float]]) -> float:
    return 200 / len(pairs) * sum(abs(y - f) / (abs(y) + abs(f)) for y, f in pairs)


NOW = datetime(2024, 3, 2, 12, tzinfo=UTC)


def test_nothing_is_scored_before_actuals_arrive(
    workspace: Workspace, setup: Callable[..., PipelineConfig]
) -> None:
    cfg = setup()
    assert score_releases(workspace, "meters", cfg, now=NOW).empty
    assert stored_scores(workspace, "meters").empty
    result = monitor(workspace, "meters", cfg, now=NOW)
    assert (result.findings, result.kinds, result.judged_release) == ([], [], None)
    assert accuracy_trend(workspace, "meters") == []


def test_a_release_is_scored_when_its_actuals_arrive_in_a_later_ingest(
    workspace: Workspace, setup: Callable[..., PipelineConfig], tmp_path: Path
) -> None:
    cfg = setup()
    ingest(
        workspace, "meters", [csv(tmp_path / "b1.csv", [("a", 6, 7), ("a", 7, 5), ("b", 6, 14)])]
    )
    scores = score_releases(workspace, "meters", cfg, now=NOW)

    overall, a, b = (scores.iloc[i] for i in range(3))
    assert overall["unique_id"] is None and overall["model"] is None
    assert (a["unique_id"], a["model"], b["unique_id"], b["model"]) == (
        "a",
        "SeasonalNaive",
        "b",
        "AutoETS",
    )
    assert (a["points"], a["expected"], b["points"], b["expected"]) == (2, 3, 1, 3)
    assert (overall["series"], overall["points"], overall["expected"]) == (2, 3, 6)
    # MASE: the mean absolute error over the history's naive error, history before 06:00 only.
    assert a["mase"] == pytest.approx((1 + 1) / 2 / 1.4)
    assert b["mase"] == 0.0
    assert a["smape"] == pytest.approx(smape([(7, 6), (5, 6)]))
    assert a["coverage_80"] == 1.0
    assert overall["mase"] == pytest.approx((1 / 1.4 + 0) / 2)
    # The promise: the mean ok backtest score of the model that made the forecast, that run.
    assert (a["promised_mase"], b["promised_mase"]) == (pytest.approx(0.6), 1.0)
    assert a["promised_smape"] == pytest.approx(15.0)
    assert a["promised_coverage_80"] == 0.75
    assert np.isnan(b["promised_smape"])
    assert overall["promised_mase"] == pytest.approx(0.8)
    assert (overall["release_id"], overall["run_id"]) == ("r1", "r1")
    assert overall["scored_at"] == pd.Timestamp("2024-03-02 12:00")

    stored = stored_scores(workspace, "meters")
    pd.testing.assert_frame_equal(stored, scores, check_dtype=False)


@pytest.mark.parametrize(("season_lengths", "scale_a"), [("[1]", 1.4), ("[2, 4]", 2.0)])
def test_mase_is_scaled_with_the_main_season(
    workspace: Workspace,
    setup: Callable[..., PipelineConfig],
    tmp_path: Path,
    season_lengths: str,
    scale_a: float,
) -> None:
    # Lag-2 naive errors of a: |4-1|, |3-2|, |5-4|, |6-3| -> mean 2.0.
    cfg = setup(season_lengths)
    ingest(workspace, "meters", [csv(tmp_path / "b1.csv", [("a", 6, 7), ("a", 7, 5), ("a", 8, 9)])])
    scores = score_releases(workspace, "meters", cfg, now=NOW)
    a = scores[scores["unique_id"] == "a"].iloc[0]
    assert a["mase"] == pytest.approx((1 + 1 + 3) / 3 / scale_a)


def test_more_actuals_replace_the_scores_and_unchanged_ones_cost_nothing(
    workspace: Workspace, setup: Callable[..., PipelineConfig], tmp_path: Path
) -> None:
    cfg = setup()
    ingest(
        workspace, "meters", [csv(tmp_path / "b1.csv", [("a", 6, 7), ("a", 7, 5), ("b", 6, 14)])]
    )
    score_releases(workspace, "meters", cfg, now=NOW)
    assert score_releases(workspace, "meters", cfg, now=NOW).empty  # nothing new

    later = datetime(2024, 3, 3, tzinfo=UTC)
    ingest(
        workspace, "meters", [csv(tmp_path / "b2.csv", [("a", 8, 9), ("b", 7, 16), ("b", 8, 22)])]
    )
    scores = score_releases(workspace, "meters", cfg, now=later)
    a = scores[scores["unique_id"] == "a"].iloc[0]
    b = scores[scores["unique_id"] == "b"].iloc[0]
    assert a["points"] == b["points"] == 3
    assert a["mase"] == pytest.approx(5 / 3 / 1.4)
    assert a["smape"] == pytest.approx(smape([(7, 6), (5, 6), (9, 6)]))
    assert a["coverage_80"] == pytest.approx(2 / 3)
    assert b["mase"] == pytest.approx(10 / 3 / 0.8)
    with store.reading(workspace.store_path) as con:
        rows = con.execute(
            "SELECT count(*), count(DISTINCT scored_at) FROM realised_accuracy WHERE release_id = 'r1'"
        ).fetchone()
    # 3 rows (a, b, overall) x 4 metrics (mase, smape, rmsse, coverage_80), all of the rescoring.
    assert rows == (12, 1)
    assert stored_scores(workspace, "meters")["scored_at"].unique().tolist() == [
        pd.Timestamp("2024-03-03")
    ]

    # A correction of an actual changes what the release is judged on: it is rescored.
    ingest(workspace, "meters", [csv(tmp_path / "fix.csv", [("a", 8, 6)])])
    fixed = score_releases(workspace, "meters", cfg, now=later)
    assert fixed[fixed["unique_id"] == "a"].iloc[0]["mase"] == pytest.approx(2 / 3 / 1.4)
    assert score_releases(workspace, "meters", cfg, rescore=True, now=later)[
        "release_id"
    ].unique().tolist() == ["r1"]


def test_drift_opens_an_incident_when_actuals_are_far_off(
    workspace: Workspace, setup: Callable[..., PipelineConfig], tmp_path: Path
) -> None:
    cfg = setup()
    assert min_points(cfg) == 2  # half the horizon of 3, rounded up
    ingest(
        workspace, "meters", [csv(tmp_path / "b1.csv", [("a", 6, 7), ("a", 7, 5), ("b", 6, 14)])]
    )
    calm = monitor(workspace, "meters", cfg, now=NOW)
    # Only a has min_points actuals: realised 0.714 against 0.6 promised, within the factor 2.
    assert (calm.judged_release, calm.kinds, calm.findings) == ("r1", ["drift"], [])
    assert calm.ratio == pytest.approx((1 / 1.4) / 0.6)

    ingest(
        workspace, "meters", [csv(tmp_path / "b2.csv", [("a", 8, 9), ("b", 7, 16), ("b", 8, 22)])]
    )
    result = monitor(workspace, "meters", cfg, now=NOW)
    realised = (5 / 3 / 1.4 + 10 / 3 / 0.8) / 2
    assert result.ratio == pytest.approx(realised / 0.8)
    overall, series = result.findings
    assert (overall.fingerprint, overall.kind, overall.severity) == (
        "drift:meters",
        "drift",
        "warning",
    )
    assert overall.title == "realised MASE of pipeline 'meters' is 3.3x what its backtest promised"
    assert overall.detail == (
        f"release r1: realised MASE {realised:.3g} over 2 series and 6 actuals, against 0.8 "
        "promised by the backtest of run r1 (drift_factor 2)"
    )
    assert series.fingerprint == "drift:meters:series"
    assert (
        series.title == "1 of 2 series of pipeline 'meters' drifted beyond 2x their promised MASE"
    )
    assert "worst b (4.2x)" in series.detail

    changes = record_findings(workspace.control_path, "meters", "r2", result.findings, result.kinds)
    assert sorted(i.fingerprint for i in changes.opened) == ["drift:meters", "drift:meters:series"]


def test_the_newest_release_with_enough_actuals_is_judged(
    workspace: Workspace, setup: Callable[..., PipelineConfig], tmp_path: Path
) -> None:
    cfg = setup()
    write_release(workspace, "r2", shift=10.0)  # a worse forecast, published later
    promise(workspace, "r2")
    ingest(workspace, "meters", [csv(tmp_path / "b1.csv", [("a", 6, 7), ("a", 7, 5)])])
    result = monitor(workspace, "meters", cfg, now=NOW)
    assert result.judged_release == "r2"
    # a alone is judged (b has no actuals): 1 of 1 series drifted, so both findings.
    assert [f.fingerprint for f in result.findings] == ["drift:meters", "drift:meters:series"]
    assert set(result.scored["release_id"]) == {"r1", "r2"}

    trend = accuracy_trend(workspace, "meters")
    assert [t["release_id"] for t in trend] == ["r1", "r2"]  # oldest first
    first = trend[0]
    assert first["mase"] == pytest.approx(1 / 1.4)
    assert first["promised"] == pytest.approx(0.6)
    assert first["ratio"] == pytest.approx(1 / 1.4 / 0.6)
    assert first["metric"] == "mase"
    assert first["coverage_80"] == 1.0
    assert first["promised_smape"] == pytest.approx(15.0)
    assert (first["series"], first["points"], first["expected"]) == (1, 2, 6)
    assert first["created_at"].endswith("Z") and first["scored_at"] == "2024-03-02T12:00:00Z"
    assert trend[1]["mase"] == pytest.approx((11 + 9) / 2 / 1.4)
    assert accuracy_trend(workspace, "meters", limit=1)[0]["release_id"] == "r2"


def test_monitoring_can_be_turned_off(
    workspace: Workspace, setup: Callable[..., PipelineConfig], tmp_path: Path
) -> None:
    cfg = setup(extra="[monitor]\nenabled = false\n")
    ingest(workspace, "meters", [csv(tmp_path / "b1.csv", [("a", 6, 70), ("a", 7, 50)])])
    result = monitor(workspace, "meters", cfg, now=NOW)
    assert result.scored.empty and result.findings == [] and result.kinds == []
    assert stored_scores(workspace, "meters").empty


def frame(rows: list[tuple[str, str | None, int, float, float]]) -> pd.DataFrame:
    """(release, series, points, realised mase, promised mase) -> the shape of stored_scores."""
    return pd.DataFrame(
        {
            "release_id": [r[0] for r in rows],
            "run_id": [r[0] for r in rows],
            "created_at": [
                pd.Timestamp("2024-03-01") + pd.Timedelta(days=int(r[0][1:])) for r in rows
            ],
            "unique_id": [r[1] for r in rows],
            "points": [r[2] for r in rows],
            "mase": [r[3] for r in rows],
            "promised_mase": [r[4] for r in rows],
        }
    )


def test_drift_findings_follow_factor_min_points_and_share() -> None:
    results = frame(
        [
            ("r1", None, 9, 5.0, 1.0),
            ("r1", "a", 3, 3.0, 1.0),
            ("r1", "b", 3, 1.0, 1.0),
            ("r1", "c", 3, 1.0, 1.0),
            ("r1", "d", 1, 50.0, 1.0),  # too few actuals to judge
            ("r1", "e", 3, 9.0, np.nan),  # no promise (a fallback): not judged
        ]
    )
    # Mean realised 5/3 over mean promised 1: under 2, over 1.5.
    assert [
        f.fingerprint for f in drift_findings("m", results, 2.0, min_points=2, series_share=0.5)
    ] == []
    assert [
        f.fingerprint for f in drift_findings("m", results, 1.5, min_points=2, series_share=0.5)
    ] == ["drift:m"]
    # One of three judged series drifted: above a share of 0.2, not above 0.5 or when off (1.0).
    share = drift_findings("m", results, 2.0, min_points=2, series_share=0.2)
    assert [f.fingerprint for f in share] == ["drift:m:series"]
    assert drift_findings("m", results, 2.0, min_points=2, series_share=1.0) == []
    # With min_points 1, d counts: realised (3+1+1+50)/4 against 1.
    assert [f.fingerprint for f in drift_findings("m", results, 2.0, series_share=1.0)] == [
        "drift:m"
    ]
    assert drift_findings("m", results.iloc[:0], 2.0) == []
    with pytest.raises(
        ValueError, match=r"drift is judged on an error metric .* not 'coverage_80'"
    ):
        drift_findings("m", results, 2.0, metric="coverage_80")


MINIMAL = {
    "source": {"id_column": "id", "time_column": "t", "value_column": "v"},
    "series": {"frequency": "1h", "horizon": 24},
}


def test_monitor_config_has_defaults_and_checks_its_values() -> None:
    cfg = parse_pipeline(MINIMAL, "meters", "pipelines/meters.toml")
    assert cfg.monitor == MonitorConfig()
    assert (cfg.monitor.enabled, cfg.monitor.drift_factor, cfg.monitor.min_points) == (True, 2.0, 0)
    assert min_points(cfg) == 12
    cfg = parse_pipeline(
        {**MINIMAL, "monitor": {"min_points": 5}}, "meters", "pipelines/meters.toml"
    )
    assert min_points(cfg) == 5
    with pytest.raises(
        ConfigError, match=r"monitor.drift_factor: 0.5: .*greater than or equal to 1"
    ):
        parse_pipeline(
            {**MINIMAL, "monitor": {"drift_factor": 0.5}}, "meters", "pipelines/meters.toml"
        )
    with pytest.raises(ConfigError, match=r"monitor.drift: unknown key"):
        parse_pipeline({**MINIMAL, "monitor": {"drift": 3}}, "meters", "pipelines/meters.toml")


REAL_PIPELINE = pipeline_toml(models=["Naive", "SeasonalNaive", "SES"], forecast={"workers": 1})


def daily_csv(path: Path, start: str, hours: int, noise: float = 0.05) -> Path:
    """Three meters with a daily cycle, ``hours`` hourly readings from ``start``."""
    rng = np.random.default_rng(7)
    stamps = pd.date_range(start, periods=hours, freq="1h")
    frames = []
    for i in range(3):
        level = (1 + i) * (1.0 + 0.5 * np.sin(2 * np.pi * (stamps.hour.to_numpy() + i) / 24))
        values = np.maximum(0, level + rng.normal(0, noise, hours))
        frames.append(
            pd.DataFrame(
                {"meter_id": f"m{i}", "timestamp": stamps.strftime("%Y-%m-%d %H:%M"), "kwh": values}
            )
        )
    pd.concat(frames).to_csv(path, index=False)
    return path


@pytest.mark.slow  # a whole run with isolated model workers: ~15 s
def test_a_real_run_is_scored_against_its_own_backtest(
    workspace: Workspace, tmp_path: Path
) -> None:
    from steadycast.pipeline.run import run_pipeline  # the whole run: only this test needs it

    (workspace.pipelines_dir / "meters.toml").write_text(REAL_PIPELINE)
    ingest(workspace, "meters", [daily_csv(tmp_path / "history.csv", "2024-03-01", 24 * 8)])
    run = run_pipeline(workspace, "meters")
    assert run.status == "published", run.error
    cfg = workspace.pipeline("meters")
    assert monitor(workspace, "meters", cfg).scored.empty  # the future has not happened yet

    # The next day arrives in a later batch: the 12 forecast hours are among it.
    ingest(workspace, "meters", [daily_csv(tmp_path / "next.csv", "2024-03-09", 24)])
    result = monitor(workspace, "meters", cfg)
    overall = result.scored[result.scored["unique_id"].isna()].iloc[0]
    assert (overall["release_id"], overall["series"], overall["points"]) == (run.release_id, 3, 36)
    per_series = result.scored[result.scored["unique_id"].notna()]
    assert per_series["promised_mase"].notna().all()  # every chosen model has backtest scores
    assert per_series["coverage_80"].between(0, 1).all()
    # Same process, same data: realised accuracy close to what the backtest promised.
    assert result.judged_release == run.release_id
    assert result.ratio is not None and result.ratio < cfg.monitor.drift_factor
    assert result.findings == [] and result.kinds == ["drift"]

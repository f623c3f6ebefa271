"""The fleet generator: reproducible, realistic, faults really planted, and ingestible."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steadycast.config import load_pipeline
from steadycast.errors import UsageError
from steadycast.ingestion.batch import ingest
from steadycast.synth import (
    DEFAULT_MAPPING,
    FAULTS,
    FaultRates,
    FleetSummary,
    generate_fleet,
    score_checks,
)
from steadycast.workspace import Workspace

SERIES = 2000


def read_all(summary: FleetSummary) -> pd.DataFrame:
    """Every delivered row, with the file it came in."""
    frames = []
    for path in summary.files:
        frame = pd.read_parquet(path)
        frame["unique_id"] = frame["unique_id"].astype(str)
        frame["file"] = f"data/{path.name}"
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> FleetSummary:
    """Hourly, local time over the spring-forward change, default fault rates, several chunks."""
    return generate_fleet(
        tmp_path_factory.mktemp("fleet"),
        series=SERIES,
        days=28,
        frequency="1h",
        seed=7,
        start="2024-03-18",
        timezone="Europe/London",
        rows_per_file=300_000,
    )


@pytest.fixture(scope="module")
def rows(fleet: FleetSummary) -> pd.DataFrame:
    return read_all(fleet)


@pytest.fixture(scope="module")
def truth(fleet: FleetSummary) -> pd.DataFrame:
    return pd.read_parquet(fleet.ground_truth)


@pytest.fixture(scope="module")
def values(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (series, local time, occurrence): duplicated deliveries dropped."""
    return rows[~rows.duplicated(["unique_id", "ds", "y"])]


def test_same_seed_same_files_other_seed_other_data(tmp_path: Path) -> None:
    def make(name: str, seed: int) -> FleetSummary:
        return generate_fleet(tmp_path / name, series=30, days=5, seed=seed, rows_per_file=1000)

    a, b, c = make("a", 1), make("b", 1), make("c", 2)
    assert [p.name for p in a.files] == [p.name for p in b.files]
    for pa_, pb in zip(a.files, b.files, strict=True):
        assert pa_.read_bytes() == pb.read_bytes()
    pd.testing.assert_frame_equal(pd.read_parquet(a.ground_truth), pd.read_parquet(b.ground_truth))
    assert not read_all(a)["y"].equals(read_all(c)["y"])


def test_files_have_the_canonical_columns_and_types(
    fleet: FleetSummary, rows: pd.DataFrame
) -> None:
    first = pd.read_parquet(fleet.files[0])
    assert list(first.columns) == ["unique_id", "ds", "y"]
    assert first["ds"].dtype.kind == "M" and first["ds"].dt.tz is None
    assert first["y"].dtype == np.float64
    assert first["unique_id"].astype(str).str.match(r"^M\d{6}$").all()
    assert fleet.rows == len(rows)
    assert rows["unique_id"].nunique() == SERIES
    assert fleet.files == tuple(sorted(fleet.files))  # lexical order is delivery order
    assert all(p.name.startswith("part-") for p in fleet.files)
    per_chunk = 300_000 // fleet.steps
    assert len(fleet.files) >= -(-SERIES // per_chunk)


def test_values_are_finite_and_never_negative(rows: pd.DataFrame) -> None:
    assert np.isfinite(rows["y"]).all()
    assert (rows["y"] >= 0).all()


def test_hourly_data_has_daily_and_weekly_cycles(tmp_path: Path) -> None:
    s = generate_fleet(tmp_path / "f", series=60, days=28, faults=FaultRates.none())
    y = read_all(s).sort_values(["unique_id", "ds"])["y"].to_numpy().reshape(60, -1)

    def acf(lag: int) -> float:
        z = y - y.mean(axis=1, keepdims=True)
        return float(np.median((z[:, lag:] * z[:, :-lag]).sum(axis=1) / (z * z).sum(axis=1)))

    assert acf(24) > 0.3
    assert acf(168) > 0.3
    assert acf(24) > acf(12) + 0.3


def test_daily_data_keeps_the_weekly_and_annual_cycles(tmp_path: Path) -> None:
    s = generate_fleet(
        tmp_path / "d", series=200, days=366, frequency="1D", faults=FaultRates.none()
    )
    frame = read_all(s)
    assert len(frame) == 200 * 366
    assert (frame["ds"] == frame["ds"].dt.normalize()).all()
    fleet_day = frame.groupby("ds")["y"].mean()
    winter = fleet_day[fleet_day.index.month.isin([1, 2, 12])].mean()
    summer = fleet_day[fleet_day.index.month.isin([6, 7, 8])].mean()
    assert winter > 1.1 * summer  # heating
    weekday = fleet_day.index.dayofweek
    assert fleet_day[weekday == 6].mean() > 1.05 * fleet_day[weekday < 5].mean()
    christmas = fleet_day[pd.Timestamp("2024-12-25")]
    assert christmas > fleet_day[(weekday < 5) & (fleet_day.index.month == 12)].mean()


def test_households_differ(fleet: FleetSummary) -> None:
    """Base load and peak hour vary from home to home (one file's worth of homes is plenty)."""
    y = pd.read_parquet(fleet.files[0])
    y["unique_id"] = y["unique_id"].astype(str)
    means = y.groupby("unique_id")["y"].median()
    assert means.quantile(0.9) > 2 * means.quantile(0.1)
    by_hour = y.groupby(["unique_id", y["ds"].dt.hour])["y"].mean().unstack()
    assert by_hour.idxmax(axis=1).nunique() >= 4


def test_each_fault_is_planted_at_about_its_rate(fleet: FleetSummary, truth: pd.DataFrame) -> None:
    rates = FaultRates()
    for fault in FAULTS:
        expected = getattr(rates, fault) * SERIES
        found = truth.loc[truth["fault"] == fault, "unique_id"].nunique()
        assert 0.5 * expected <= found <= 1.6 * expected, (fault, found, expected)
        assert fleet.faults[fault] == found
    value_faults = truth[~truth["fault"].isin(["late", "duplicate"])]
    assert value_faults.groupby("unique_id")["fault"].nunique().max() == 1


@pytest.fixture(scope="module")
def faulty(values: pd.DataFrame, truth: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The delivered values of each series with a planted fault, by id."""
    some = values[values["unique_id"].isin(set(truth["unique_id"]))]
    return {str(uid): frame for uid, frame in some.groupby("unique_id")}


def test_stuck_meters_and_zero_runs_are_in_the_data(
    faulty: dict[str, pd.DataFrame], truth: pd.DataFrame
) -> None:
    for fault in ("stuck", "zeros"):
        planted = truth[truth["fault"] == fault]
        for row in planted.itertuples():
            s = faulty[row.unique_id]
            window = s[(s["ds"] >= row.start) & (s["ds"] <= row.end)]["y"]
            assert len(window) >= row.rows - 2  # a repeated local hour may sit inside
            assert (window == row.magnitude).all()
            if fault == "zeros":
                assert row.magnitude == 0


def test_spikes_stand_far_above_the_median(
    faulty: dict[str, pd.DataFrame], truth: pd.DataFrame
) -> None:
    for row in truth[truth["fault"] == "spike"].itertuples():
        s = faulty[row.unique_id]
        at = s.loc[s["ds"] == row.start, "y"]
        assert (at >= 5 * s["y"].median()).all() and len(at) >= 1


def test_gaps_are_missing_steps(faulty: dict[str, pd.DataFrame], truth: pd.DataFrame) -> None:
    for row in truth[truth["fault"] == "gap"].itertuples():
        s = faulty[row.unique_id]
        assert not ((s["ds"] >= row.start) & (s["ds"] <= row.end)).any()
        assert (s["ds"] < row.start).any() or (s["ds"] > row.end).any()


def test_level_shifts_change_the_mean_by_their_factor(
    faulty: dict[str, pd.DataFrame], truth: pd.DataFrame
) -> None:
    week = pd.Timedelta(days=7)
    ratios = []
    for row in truth[truth["fault"] == "level_shift"].itertuples():
        s = faulty[row.unique_id]
        before = s[(s["ds"] >= row.start - week) & (s["ds"] < row.start)]["y"].mean()
        after = s[(s["ds"] >= row.start) & (s["ds"] < row.start + week)]["y"].mean()
        ratios.append(after / before / row.magnitude)
    assert len(ratios) >= 10
    assert 0.8 < np.median(ratios) < 1.25
    assert all(0.5 < r < 2.0 for r in ratios)


def test_duplicates_repeat_rows_in_another_file(
    rows: pd.DataFrame, truth: pd.DataFrame, fleet: FleetSummary
) -> None:
    repeated = rows[rows.duplicated(["unique_id", "ds", "y"], keep=False)]
    by_file = repeated.groupby(["unique_id", "ds"])["file"].nunique()
    assert (by_file == 2).all()
    planted = truth[truth["fault"] == "duplicate"]
    assert planted["rows"].sum() == fleet.rows_duplicate == len(repeated) // 2
    assert set(repeated["unique_id"]) == set(planted["unique_id"])
    assert (
        planted["file"] > rows.loc[rows["unique_id"].isin(planted["unique_id"]), "file"].min()
    ).all()


def test_late_tails_arrive_in_a_later_file(rows: pd.DataFrame, truth: pd.DataFrame) -> None:
    planted = truth[truth["fault"] == "late"]
    assert len(planted)
    some = rows[rows["unique_id"].isin(set(planted["unique_id"]))]
    late_rows = {str(uid): frame for uid, frame in some.groupby("unique_id")}
    for row in planted.itertuples():
        s = late_rows[row.unique_id]
        tail = s[s["ds"] >= row.start]
        on_time = s[s["ds"] < row.start]
        assert (tail["file"] == row.file).all() and len(tail) == row.rows
        assert (on_time["file"] < row.file).all()


def test_dst_artefacts_only_where_clocks_change(tmp_path: Path, truth: pd.DataFrame) -> None:
    dst = truth[truth["fault"] == "dst"]
    assert (dst["start"].dt.date == pd.Timestamp("2024-03-31").date()).all()
    utc = generate_fleet(tmp_path / "utc", series=300, days=14, start="2024-03-25")
    assert utc.faults["dst"] == 0


def test_pipeline_toml_is_a_valid_pipeline(fleet: FleetSummary, tmp_path: Path) -> None:
    cfg = load_pipeline(fleet.pipeline)
    assert (cfg.source.id_column, cfg.source.time_column, cfg.source.value_column) == (
        "unique_id",
        "ds",
        "y",
    )
    assert cfg.source.timezone == "Europe/London"
    assert cfg.series.frequency == "1h" and cfg.series.horizon == 24
    assert cfg.series.season_lengths == [24, 168] and cfg.series.min_value == 0
    for freq, horizon, seasons in (("30min", 48, [48, 336]), ("1D", 14, [7])):
        s = generate_fleet(tmp_path / freq, series=3, days=3, frequency=freq)
        cfg = load_pipeline(s.pipeline)
        assert (cfg.series.frequency, cfg.series.horizon, cfg.series.season_lengths) == (
            freq,
            horizon,
            seasons,
        )


def test_fleet_ingests_cleanly_with_parity(tmp_path: Path) -> None:
    """Clock changes both ways, every fault kind: only DST artefacts are quarantined, and a
    duplicated delivery is counted unchanged."""
    rates = FaultRates(
        stuck=0.1, zeros=0.1, spike=0.1, gap=0.1, level_shift=0.1, dst=0.2, late=0.2, duplicate=0.2
    )
    for start in ("2024-03-28", "2024-10-24"):
        s = generate_fleet(
            tmp_path / start,
            series=40,
            days=7,
            seed=3,
            start=start,
            timezone="Europe/London",
            faults=rates,
            rows_per_file=6000,
        )
        ws = Workspace.init(tmp_path / f"ws-{start}")
        shutil.copy(s.pipeline, ws.pipelines_dir / "synth.toml")
        results = ingest(ws, "synth", sorted(s.files))
        assert sum(r.rows_read for r in results) == s.rows
        for r in results:
            assert r.rows_read == r.rows_stored + r.rows_quarantined
            assert set(r.quarantine_reasons) <= {"nonexistent_local_time", "ambiguous_local_time"}
        truth = pd.read_parquet(s.ground_truth)
        dst_rows = int(truth.loc[truth["fault"] == "dst", "rows"].sum())
        assert dst_rows > 0
        quarantined = sum(r.rows_quarantined for r in results)
        assert quarantined == dst_rows  # a skipped hour: its rows; a repeated one: the lone copy
        assert sum(r.rows_unchanged for r in results) == s.rows_duplicate > 0


def test_score_checks_counts_series() -> None:
    truth = pd.DataFrame(
        {
            "unique_id": ["a", "b", "c", "d", "e"],
            "fault": ["stuck", "stuck", "zeros", "spike", "spike"],
            "end": pd.to_datetime(["2024-01-05"] * 4 + ["2024-01-01"]),
        }
    )
    findings = pd.DataFrame(
        {
            "check": ["flat_line", "flat_line", "flat_line", "flat_line", "spikes", "spikes"],
            "unique_id": ["a", "a", "c", "x", "d", "e"],
            "passed": [False, False, False, False, False, True],
        }
    )
    mapping = {"stuck": "flat_line", "zeros": "flat_line", "spike": "spikes"}
    score = score_checks(truth, findings, mapping).set_index("fault")
    assert score.loc["stuck", "recall"] == 0.5  # a found, b missed
    assert score.loc["stuck", "precision"] == pytest.approx(2 / 3)  # a, c right; x wrong
    assert score.loc["zeros", "recall"] == 1.0
    assert score.loc["spike", "recall"] == 0.5 and score.loc["spike", "precision"] == 1.0
    recent = score_checks(truth, findings, mapping, since=pd.Timestamp("2024-01-03"))
    assert recent.set_index("fault").loc["spike", "recall"] == 1.0
    with pytest.raises(ValueError, match="unique_id and check"):
        score_checks(truth, findings.drop(columns="check"), mapping)
    assert set(DEFAULT_MAPPING) <= set(FAULTS)


def test_clean_fleet_has_no_truth_and_progress_is_reported(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    s = generate_fleet(
        tmp_path / "clean",
        series=25,
        days=2,
        faults=FaultRates.none(),
        rows_per_file=480,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert len(pd.read_parquet(s.ground_truth)) == 0
    assert s.rows == 25 * 48 and len(s.files) == 3
    assert seen == [(10, 25), (20, 25), (25, 25)]


def test_bad_arguments_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="frequency '15min' is not supported"):
        generate_fleet(tmp_path / "x", series=1, days=1, frequency="15min")
    with pytest.raises(UsageError, match="add up to"):
        FaultRates(stuck=0.6, gap=0.6)
    with pytest.raises(UsageError, match="between 0 and 1"):
        dataclasses.replace(FaultRates(), spike=-0.1)
    with pytest.raises(UsageError, match="not a time zone"):
        generate_fleet(tmp_path / "x", series=1, days=1, timezone="Mars/Olympus")
    generate_fleet(tmp_path / "y", series=1, days=1)
    with pytest.raises(UsageError, match="already holds a generated fleet"):
        generate_fleet(tmp_path / "y", series=1, days=1)
    again = generate_fleet(tmp_path / "y", series=2, days=1, overwrite=True)
    assert read_all(again)["unique_id"].nunique() == 2

"""Data-quality checks: each trips on crafted input, passes on clean input, names the series;
level shifts are found where they are on synthetic and on real data."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from steadycast.config import PipelineConfig, parse_pipeline
from steadycast.quality.checks import (
    RESULT_COLUMNS,
    SERIES_CHECKS,
    CheckContext,
    CheckResult,
    RunFigures,
    build_specs,
    check_completeness,
    check_flat_line,
    check_freshness,
    check_level_shift,
    check_pass_share,
    check_spikes,
    check_volume_parity,
    excluded_series,
    level_shift_cuts,
    results_frame,
    run_checks,
    stop_results,
)
from tests.conftest import shared_data
from tests.reliability import feeds

START = pd.Timestamp("2024-01-01")


def config(frequency: str = "1h", season: int = 24, **checks: object) -> PipelineConfig:
    return parse_pipeline(
        {
            "source": {},
            "series": {"frequency": frequency, "horizon": 24, "season_lengths": [season]},
            "checks": checks,
        },
        "meters",
        "pipelines/meters.toml",
    )


def series(uid: str, hours: int = 24 * 42, level: float = 10.0, seed: int = 0) -> pd.DataFrame:
    """A clean hourly series: a daily cycle plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(hours)
    y = level * (1.0 + 0.3 * np.sin(2 * np.pi * t / 24)) + rng.normal(0, 0.03 * level, hours)
    return pd.DataFrame({"unique_id": uid, "ds": START + pd.to_timedelta(t, unit="h"), "y": y})


def fleet(n: int = 4, hours: int = 24 * 42) -> pd.DataFrame:
    return pd.concat([series(f"m{i}", hours, 5.0 + i, seed=i) for i in range(n)], ignore_index=True)


def context(cfg: PipelineConfig, frame: pd.DataFrame, **kw: object) -> CheckContext:
    return CheckContext.from_config(cfg, now=frame["ds"].max(), **kw)  # type: ignore[arg-type]


def failed(results: list[CheckResult]) -> dict[str | None, CheckResult]:
    return {r.unique_id: r for r in results if not r.passed}


# ---------------------------------------------------------------------------------------------
# Clean input, specs, helpers
# ---------------------------------------------------------------------------------------------


def test_clean_fleet_passes_every_check_with_one_result_per_series_and_check() -> None:
    cfg = config()
    frame = fleet()
    results, figures = run_checks(frame, build_specs(cfg), context(cfg, frame))
    assert [r for r in results if not r.passed] == []
    per_series = [r for r in results if r.unique_id is not None]
    assert len(per_series) == 4 * len(SERIES_CHECKS)
    assert {r.check for r in results if r.unique_id is None} == {
        "volume_parity",
        "pass_share",
        "feed_fault",
    }
    assert figures == RunFigures(series=4, rows=len(frame), active_series=4, passing_series=4)
    assert all(r.sentence.startswith(f"series {r.unique_id!r}") for r in per_series)


def test_specs_resolve_auto_limits_and_policy_makes_a_check_blocking() -> None:
    specs = build_specs(config(flat_line={"max_steps": 48, "policy": "exclude"}))
    assert specs["flat_line"].params["max_steps"] == 48
    assert specs["flat_line"].blocking is True
    assert specs["spikes"].blocking is False
    assert specs["freshness"].params["max_lag_steps"] == 24  # max(horizon, season)
    assert specs["level_shift"].params["window_steps"] == 7 * 24
    assert specs["volume_parity"].policy == "stop"


def test_unsorted_input_gives_the_same_results() -> None:
    cfg = config()
    frame = fleet(3)
    frame.loc[frame.index[-30:], "y"] = 0.0  # something to find
    shuffled = frame.sample(frac=1.0, random_state=1)
    specs, ctx = build_specs(cfg), context(cfg, frame)
    assert run_checks(frame, specs, ctx)[0] == run_checks(shuffled, specs, ctx)[0]


def test_results_frame_has_the_stored_columns_and_constants() -> None:
    cfg = config()
    frame = fleet(2)
    results, _ = run_checks(frame, build_specs(cfg), context(cfg, frame))
    stored = results_frame(results, pipeline="meters", run_id="r1")
    assert list(stored.columns) == ["pipeline", "run_id", *RESULT_COLUMNS]
    assert len(stored) == len(results)
    assert results[0].as_dict()["check"] == "freshness"


# ---------------------------------------------------------------------------------------------
# Series-level checks
# ---------------------------------------------------------------------------------------------


def test_freshness_fails_a_series_that_stopped_reporting() -> None:
    cfg = config()
    frame = fleet(3)
    frame = frame[~((frame.unique_id == "m1") & (frame.ds > frame.ds.max() - pd.Timedelta("3D")))]
    results = check_freshness(frame, build_specs(cfg)["freshness"], context(cfg, frame))
    bad = failed(results)
    assert list(bad) == ["m1"]
    assert bad["m1"].value == 72 and bad["m1"].threshold == 24
    assert "series 'm1': latest data" in bad["m1"].sentence
    assert "72 steps (1h) behind the pipeline's newest" in bad["m1"].sentence


def test_freshness_max_age_fails_data_older_than_the_clock_allows() -> None:
    cfg = config(freshness={"max_age": "2D"})
    frame = fleet(2)
    ctx = CheckContext.from_config(cfg, now=frame.ds.max() + pd.Timedelta("5D"))
    bad = failed(check_freshness(frame, build_specs(cfg)["freshness"], ctx))
    assert set(bad) == {"m0", "m1"}
    assert "old at" in bad["m0"].sentence and "(limit 2 days" in bad["m0"].sentence


def test_completeness_fails_missing_share_and_long_gaps_naming_where() -> None:
    cfg = config()
    frame = fleet(4)
    rng = np.random.default_rng(3)
    m0 = frame.index[frame.unique_id == "m0"]
    sparse = frame.drop(rng.choice(m0, size=int(0.4 * len(m0)), replace=False))
    recent_gap = (sparse.unique_id == "m2") & sparse.ds.between("2024-02-01", "2024-02-03 23:00")
    # m3 lost three days a month before its window of 28 days: long ago, prepare cut it off.
    old_gap = (sparse.unique_id == "m3") & sparse.ds.between("2024-01-05", "2024-01-07 23:00")
    frame = sparse[~(recent_gap | old_gap)]
    bad = failed(check_completeness(frame, build_specs(cfg)["completeness"], context(cfg, frame)))
    assert set(bad) == {"m0", "m2"}
    assert "of the 672 expected 1h steps from 2024-01-15 to 2024-02-11 23:00" in bad["m0"].sentence
    assert "missing (limit 20.0%)" in bad["m0"].sentence
    assert bad["m0"].value == pytest.approx(0.4, abs=0.03)
    assert "longest gap 72 steps after 2024-01-31 23:00 (limit 24)" in bad["m2"].sentence
    assert bad["m2"].at == pd.Timestamp("2024-01-31 23:00")
    assert bad["m2"].value == 72 and bad["m2"].threshold == 24


def test_completeness_works_on_calendar_frequencies() -> None:
    cfg = config("W-SUN", season=52)
    weeks = pd.date_range("2020-01-05", periods=150, freq="W-SUN")
    frame = pd.DataFrame({"unique_id": "w", "ds": weeks, "y": np.arange(150.0)})
    frame = frame.drop(index=range(40, 50))
    (result,) = check_completeness(frame, build_specs(cfg)["completeness"], context(cfg, frame))
    assert result.passed
    assert "6.7% of the 150 expected W-SUN steps" in result.sentence


def test_flat_line_fails_a_stuck_meter_and_says_for_how_long() -> None:
    cfg = config(flat_line={"max_steps": 48})
    frame = fleet(3)
    stuck = (frame.unique_id == "m1") & (frame.ds > frame.ds.max() - pd.Timedelta("60h"))
    frame.loc[stuck, "y"] = 4.2
    bad = failed(check_flat_line(frame, build_specs(cfg)["flat_line"], context(cfg, frame)))
    assert list(bad) == ["m1"]
    assert bad["m1"].sentence == (
        "series 'm1': stuck at 4.2 for 60 readings in a row from 2024-02-09 12:00 to "
        "2024-02-11 23:00 (limit 48)"
    )


def test_flat_line_zero_runs_count_unless_configured_otherwise() -> None:
    frame = fleet(2)
    frame.loc[(frame.unique_id == "m0") & (frame.ds >= "2024-02-08"), "y"] = 0.0
    on = config(flat_line={"max_steps": 48})
    off = config(flat_line={"max_steps": 48, "include_zero": False})
    assert (
        "stuck at 0 for"
        in failed(check_flat_line(frame, build_specs(on)["flat_line"], context(on, frame)))[
            "m0"
        ].sentence
    )
    assert failed(check_flat_line(frame, build_specs(off)["flat_line"], context(off, frame))) == {}


def test_flat_line_constant_series_fails_unless_allowed_and_old_runs_are_forgotten() -> None:
    frame = fleet(2)
    frame.loc[frame.unique_id == "m0", "y"] = 3.0
    # m1 was stuck for three days a month ago, and has reported normally since.
    frame.loc[(frame.unique_id == "m1") & frame.ds.between("2024-01-03", "2024-01-06"), "y"] = 1.0
    default = config()
    allowed = config(flat_line={"allow_constant": True})
    assert set(
        failed(check_flat_line(frame, build_specs(default)["flat_line"], context(default, frame)))
    ) == {"m0"}
    assert (
        failed(check_flat_line(frame, build_specs(allowed)["flat_line"], context(allowed, frame)))
        == {}
    )


def test_spikes_fail_a_recent_outlier_at_its_time_and_ignore_old_ones() -> None:
    cfg = config()
    frame = fleet(3).reset_index(drop=True)
    recent = frame.index[(frame.unique_id == "m2") & (frame.ds == "2024-02-10 14:00")]
    old = frame.index[(frame.unique_id == "m0") & (frame.ds == "2024-01-05 14:00")]
    frame.loc[recent, "y"] *= 8
    frame.loc[old, "y"] *= 8
    bad = failed(check_spikes(frame, build_specs(cfg)["spikes"], context(cfg, frame)))
    assert list(bad) == ["m2"]
    assert bad["m2"].at == pd.Timestamp("2024-02-10 14:00")
    assert "series 'm2': outlier" in bad["m2"].sentence
    assert "robust z-score" in bad["m2"].sentence and "(limit 12)" in bad["m2"].sentence


def test_level_shift_found_at_the_right_step_and_cut_returned() -> None:
    cfg = config()
    frame = fleet(3, hours=24 * 70)
    at = pd.Timestamp("2024-02-10 13:00")
    frame.loc[(frame.unique_id == "m1") & (frame.ds >= at), "y"] *= 3
    results = check_level_shift(frame, build_specs(cfg)["level_shift"], context(cfg, frame))
    bad = failed(results)
    assert list(bad) == ["m1"]
    assert bad["m1"].at == at
    assert "series 'm1': level shift at 2024-02-10 13:00 from about 5.9" in bad["m1"].sentence
    assert "to about 18.0 (x3.0" in bad["m1"].sentence
    assert "training starts there" in bad["m1"].sentence
    assert level_shift_cuts(results) == {"m1": at}
    no_cut = build_specs(config(level_shift={"cut_training": False}))
    assert level_shift_cuts(results, build_specs(cfg)) == {"m1": at}
    assert level_shift_cuts(results, no_cut) == {}


def test_level_shift_ignores_a_temporary_outage() -> None:
    cfg = config()
    frame = fleet(2, hours=24 * 90)
    outage = (frame.unique_id == "m0") & frame.ds.between("2024-02-01", "2024-02-07")
    frame.loc[outage, "y"] *= 0.05
    results = check_level_shift(frame, build_specs(cfg)["level_shift"], context(cfg, frame))
    assert failed(results) == {}
    assert level_shift_cuts(results) == {}


# ---------------------------------------------------------------------------------------------
# Level shifts on real data
# ---------------------------------------------------------------------------------------------


def gefcom_load() -> pd.DataFrame:
    """GEFCom2012 hourly zonal load as a long frame, all 20 zones."""
    return feeds.gefcom(range(1, 21)).frame


def cta_ridership() -> pd.DataFrame:
    """CTA daily boardings, bus and rail, exact duplicate rows dropped."""
    path = shared_data(
        "cta_ridership_daily", "CTA_-_Ridership_-_Daily_Boarding_Totals_20240528.csv"
    )
    raw = pd.read_csv(path).drop_duplicates()
    raw["ds"] = pd.to_datetime(raw["service_date"], format="%m/%d/%Y")
    return raw.melt(
        id_vars=["ds"], value_vars=["bus", "rail_boardings"], var_name="unique_id", value_name="y"
    )


def test_gefcom_zone_10_jump_on_2008_01_02_is_the_only_level_shift() -> None:
    frame = gefcom_load()
    cfg = config()
    results = check_level_shift(frame, build_specs(cfg)["level_shift"], context(cfg, frame))
    cuts = level_shift_cuts(results)
    assert set(cuts) == {"zone10"}, [r.sentence for r in results if not r.passed]
    assert abs(cuts["zone10"] - pd.Timestamp("2008-01-02")) <= pd.Timedelta("3D")


@pytest.mark.parametrize("until", ["2020-04-30", None])
def test_cta_rail_covid_break_is_found_in_march_or_april_2020(until: str | None) -> None:
    frame = cta_ridership()
    if until is not None:
        frame = frame[frame.ds <= until]
    cfg = config("1D", season=7)
    results = check_level_shift(frame, build_specs(cfg)["level_shift"], context(cfg, frame))
    cuts = level_shift_cuts(results)
    assert "rail_boardings" in cuts, [r.sentence for r in results]
    assert pd.Timestamp("2020-03-01") <= cuts["rail_boardings"] <= pd.Timestamp("2020-04-30")


# ---------------------------------------------------------------------------------------------
# Run-level checks and policies
# ---------------------------------------------------------------------------------------------


def test_volume_parity_passes_a_first_run_and_fails_series_that_vanished_in_bulk() -> None:
    spec = build_specs(config())["volume_parity"]
    now = RunFigures(series=100, rows=70_000, active_series=70, passing_series=70)
    first = check_volume_parity(now, spec, CheckContext("1h", 24))
    assert first[0].passed and "no previous run" in first[0].sentence
    previous = RunFigures(series=100, rows=69_000, active_series=100, passing_series=100)
    (result,) = check_volume_parity(now, spec, CheckContext("1h", 24, previous=previous))
    assert not result.passed and result.unique_id is None and result.policy == "stop"
    assert "30 of 100 series reporting at the previous run (30.0%) no longer report" in (
        result.sentence
    )
    assert "(limit 20.0%)" in result.sentence


def test_volume_parity_fails_bulk_appearance_and_a_drop_in_rows_per_series() -> None:
    spec = build_specs(config())["volume_parity"]
    previous = RunFigures(series=10, rows=10_000, active_series=10, passing_series=10)
    now = RunFigures(series=30, rows=12_000, active_series=30, passing_series=30)
    (result,) = check_volume_parity(now, spec, CheckContext("1h", 24, previous=previous))
    assert not result.passed
    assert "20 series appeared on top of the previous run's 10 (200.0%, limit 100.0%)" in (
        result.sentence
    )
    assert "rows per series fell 60.0% from 1,000.0 to 400.0 (limit 20.0%)" in result.sentence


def test_pass_share_fails_a_drop_against_the_previous_run() -> None:
    spec = build_specs(config())["pass_share"]
    previous = RunFigures(series=100, rows=1, active_series=100, passing_series=95)
    steady = RunFigures(series=100, rows=1, active_series=100, passing_series=90)
    fallen = RunFigures(series=100, rows=1, active_series=100, passing_series=70)
    ctx = CheckContext("1h", 24, previous=previous)
    assert check_pass_share(steady, spec, ctx)[0].passed
    (result,) = check_pass_share(fallen, spec, ctx)
    assert not result.passed
    assert result.sentence == (
        "pass share: 70.0% of series (70 of 100) pass every blocking or error check, down 25.0 "
        "points from 95.0% at the previous run (limit a drop of 10.0 points)"
    )


def test_exclude_and_stop_policies_are_read_from_the_results() -> None:
    cfg = config(flat_line={"max_steps": 48, "policy": "exclude"})
    frame = fleet(3)
    frame.loc[frame.unique_id == "m2", "y"] = 1.0
    previous = RunFigures(series=3, rows=len(frame), active_series=3, passing_series=3)
    results, figures = run_checks(frame, build_specs(cfg), context(cfg, frame, previous=previous))
    assert set(excluded_series(results)) == {"m2"}
    assert "stuck at 1" in excluded_series(results)["m2"][0]
    assert figures.passing_series == 2
    # One of three series failing a blocking check is a drop of 33 points: the run stops.
    assert [r.check for r in stop_results(results)] == ["pass_share"]


# ---------------------------------------------------------------------------------------------
# Speed
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_checks_are_fast_on_a_large_fleet() -> None:
    n_series, points = 10_000, 700
    rng = np.random.default_rng(0)
    t = np.arange(points)
    base = 10 + 3 * np.sin(2 * np.pi * t / 24)
    y = (base[None, :] * rng.uniform(0.5, 2, (n_series, 1))).ravel()
    y += rng.normal(0, 0.5, y.size)
    frame = pd.DataFrame(
        {
            "unique_id": np.repeat([f"s{i:05d}" for i in range(n_series)], points),
            "ds": np.tile(pd.date_range(START, periods=points, freq="1h").to_numpy(), n_series),
            "y": y,
        }
    )
    cfg = config()
    started = time.perf_counter()
    results, figures = run_checks(frame, build_specs(cfg), context(cfg, frame))
    elapsed = time.perf_counter() - started
    assert figures.series == n_series
    assert len(results) == len(SERIES_CHECKS) * n_series + 3  # and three run-level
    assert elapsed < 60, f"checks took {elapsed:.1f} s on 10,000 x 700"

"""The feed-fault check on real data: each fault a real feed has is caught in the newest
delivery, judged against the series' own history; clean real deliveries pass, including real
breaks (the COVID drop of transit ridership, interest rates falling thirtyfold)."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import pytest

from steadycast.config import PipelineConfig
from steadycast.quality.checks import (
    CheckContext,
    CheckResult,
    RunFigures,
    build_specs,
    check_feed_fault,
    excluded_series,
    run_checks,
    stop_results,
)
from tests.reliability import feeds

CUT = pd.Timestamp("2006-03-01")  # first hour of the newest delivery
LAST_RUN = CUT - pd.Timedelta("1h")  # the newest data at the last published run
ZONE_NUMBERS = (1, 2, 4, 5, 6, 8)
ZONES = tuple(f"zone{z}" for z in ZONE_NUMBERS)


def config(frequency: str = "1h", horizon: int = 48, seasons: list[int] | None = None):  # type: ignore[no-untyped-def]
    return PipelineConfig.model_validate(
        {
            "name": "t",
            "source": {},
            "series": {
                "frequency": frequency,
                "horizon": horizon,
                "season_lengths": [24] if seasons is None else seasons,
            },
        }
    )


@cache
def _gefcom() -> pd.DataFrame:
    return feeds.gefcom(ZONE_NUMBERS).between(
        CUT - pd.Timedelta(weeks=6), CUT + pd.Timedelta("48h")
    )


def gefcom() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history, the next 48-hour delivery) of six real load zones."""
    frame = _gefcom()
    return frame[frame["ds"] < CUT].copy(), frame[frame["ds"] >= CUT].copy()


def judge(frame: pd.DataFrame, cfg=None, after: pd.Timestamp | None = LAST_RUN):  # type: ignore[no-untyped-def]
    cfg = cfg or config()
    spec = build_specs(cfg)["feed_fault"]
    ctx = CheckContext.from_config(cfg, delivered_after=after)
    return {r.unique_id: r for r in check_feed_fault(frame, spec, ctx)}


def kind(result: CheckResult) -> str:
    return result.sentence.split("feed fault '")[1].split("'")[0]


def corrupt(delivery: pd.DataFrame, fault: str, history: pd.DataFrame, ids: list[str]):  # type: ignore[no-untyped-def]
    out = delivery.copy()
    hit = out["unique_id"].isin(ids)
    if fault == "x1000":
        out.loc[hit, "y"] *= 1000.0
    elif fault == "div1000":
        out.loc[hit, "y"] /= 1000.0
    elif fault == "zeros":
        out.loc[hit, "y"] = 0.0
    elif fault == "register":
        for uid in ids:
            rows = out["unique_id"] == uid
            start = history.loc[history["unique_id"] == uid, "y"].sum()
            out.loc[rows, "y"] = start + out.loc[rows, "y"].cumsum()
    elif fault == "stuck":
        for uid in ids:
            last = history.loc[history["unique_id"] == uid, "y"].iloc[-1]
            out.loc[out["unique_id"] == uid, "y"] = last
    elif fault == "sign":
        out.loc[hit, "y"] *= -1.0
    elif fault == "shift":
        out.loc[hit, "ds"] += pd.Timedelta(hours=5)
    return out


def test_a_clean_real_delivery_passes() -> None:
    history, delivery = gefcom()
    found = judge(pd.concat([history, delivery]))
    assert set(found) == set(ZONES)
    assert all(r.passed for r in found.values()), [r.sentence for r in found.values()]
    assert "newest delivery (48 steps from 2006-03-01" in found["zone1"].sentence


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("x1000", "scale"),
        ("div1000", "scale"),
        ("zeros", "zeros"),
        ("register", "register"),
        ("stuck", "stuck"),
        ("sign", "sign"),
    ],
)
def test_each_fault_in_one_series_is_caught_and_excludes_only_it(fault: str, expected: str) -> None:
    history, delivery = gefcom()
    bad = corrupt(delivery, fault, history, ["zone4"])
    found = judge(pd.concat([history, bad]))
    assert not found["zone4"].passed and kind(found["zone4"]) == expected, found["zone4"].sentence
    assert found["zone4"].policy == "exclude" and found["zone4"].severity == "error"
    assert [u for u, r in found.items() if not r.passed] == ["zone4"]
    assert excluded_series(found.values()).keys() == {"zone4"}


def test_the_scale_sentence_quotes_the_ratio_and_the_references() -> None:
    history, delivery = gefcom()
    found = judge(pd.concat([history, corrupt(delivery, "x1000", history, ["zone1"])]))
    sentence = found["zone1"].sentence
    assert sentence.startswith("series 'zone1': feed fault 'scale': the newest delivery")
    assert "x above the same positions of its last 4 periods" in sentence
    assert 500 < found["zone1"].value < 2000  # against the nearest reference


def test_a_fleet_wide_fault_holds_the_run_and_a_few_series_do_not() -> None:
    cfg = config()
    specs = build_specs(cfg)
    history, delivery = gefcom()
    ctx = CheckContext.from_config(cfg, delivered_after=CUT - pd.Timedelta("1h"))
    everyone = corrupt(delivery, "x1000", history, list(ZONES))
    results, figures = run_checks(pd.concat([history, everyone]), specs, ctx)
    assert figures.feed_faults == len(ZONES)
    (stop,) = [r for r in stop_results(results) if r.check == "feed_fault"]
    assert stop.unique_id is None and "6 of 6 series (100.0%)" in stop.sentence
    assert "'scale' in 6" in stop.sentence and "'zone1'" in stop.sentence
    one = corrupt(delivery, "x1000", history, ["zone2"])
    results, figures = run_checks(pd.concat([history, one]), specs, ctx)
    assert stop_results(results) == []  # pass share does not count a feed fault either
    assert figures.feed_faults == 1 and figures.passing_series == len(ZONES)


def blocking_shifts(results: list[CheckResult]) -> set[str]:
    return {
        str(r.unique_id)
        for r in results
        if r.check == "feed_fault"
        and r.unique_id
        and not r.passed
        and r.blocking
        and kind(r) == "shift"
    }


def held(results: list[CheckResult]) -> bool:
    return any(r.check == "feed_fault" and r.unique_id is None for r in stop_results(results))


@cache
def _sgsc_utc() -> pd.DataFrame:
    """The six households of the feed-fault suite as the product stores them: naive UTC."""
    frame = feeds.sgsc().frame
    local = frame["ds"].dt.tz_localize("Australia/Sydney", ambiguous="NaT", nonexistent="NaT")
    out = frame.assign(ds=local.dt.tz_convert("UTC").dt.tz_localize(None))
    return out.dropna(subset=["ds"]).reset_index(drop=True)


def sgsc(cut: str = "2012-12-03") -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """(8 weeks of history, the next 2-day delivery, the last stored time) of six households."""
    at = pd.Timestamp(cut).tz_localize("Australia/Sydney").tz_convert("UTC").tz_localize(None)
    frame = _sgsc_utc()
    history = frame[(frame["ds"] < at) & (frame["ds"] >= at - pd.Timedelta(weeks=8))]
    delivery = frame[(frame["ds"] >= at) & (frame["ds"] < at + pd.Timedelta("48h"))]
    return history, delivery, at - pd.Timedelta("30min")


def stored(history: pd.DataFrame, delivery: pd.DataFrame) -> pd.DataFrame:
    """As ingest stores a delivery: a row for a stored time replaces the stored one."""
    both = pd.concat([history, delivery])
    return both.drop_duplicates(["unique_id", "ds"], keep="last").reset_index(drop=True)


@pytest.mark.parametrize("hours", [5, -5, 11])
def test_a_time_zone_shift_of_the_whole_fleet_holds_the_run(hours: int) -> None:
    # +h: the delivery starts h hours after the stored data; -h: it rewrites the last h stored
    # hours and ends h hours early. Both the seam and the fleet's daily profile say so.
    cfg = config()
    history, delivery = gefcom()
    ctx = CheckContext.from_config(cfg, delivered_after=LAST_RUN)
    shifted = feeds.time_shift(delivery, None, hours=hours)
    results, _ = run_checks(stored(history, shifted), build_specs(cfg), ctx)
    assert blocking_shifts(results) == set(ZONES) and held(results)
    (one,) = [r for r in results if r.unique_id == "zone1" and r.check == "feed_fault"]
    assert f"moved {hours:+d} h" in one.sentence and "time-zone" in one.sentence


@pytest.mark.parametrize("hours", [5, -5, 11])
def test_a_time_zone_shift_in_one_series_excludes_only_it(hours: int) -> None:
    cfg = config()
    history, delivery = gefcom()
    ctx = CheckContext.from_config(cfg, delivered_after=LAST_RUN)
    shifted = feeds.time_shift(delivery, ["zone4"], hours=hours)
    results, _ = run_checks(stored(history, shifted), build_specs(cfg), ctx)
    assert blocking_shifts(results) == {"zone4"} and not held(results)
    assert excluded_series(results).keys() == {"zone4"}
    failed = [r for r in results if r.check == "feed_fault" and not r.passed]
    assert [r.unique_id for r in failed] == ["zone4"]  # the other zones are not even warned


@pytest.mark.parametrize("hours", [5, -5, 11])
def test_household_meters_shifted_are_caught_in_both_scopes(hours: int) -> None:
    # One household's half-hourly profile is noisy; the seam and the fleet's summed profile are
    # not. The feed-fault suite's own fault, on its six households.
    cfg = config("30min", 48, [48, 336])
    specs = build_specs(cfg)
    history, delivery, last = sgsc()
    ctx = CheckContext.from_config(cfg, delivered_after=last)
    everyone = feeds.time_shift(delivery, None, hours=hours)
    results, _ = run_checks(stored(history, everyone), specs, ctx)
    if hours > 0:  # moved earlier, six households' profile is too noisy without a seam
        assert blocking_shifts(results) == set(feeds.SGSC_HOUSEHOLDS) and held(results)
    for few in (["10006630"], ["10006630", "10018244"]):
        some = feeds.time_shift(delivery, few, hours=hours)
        results, _ = run_checks(stored(history, some), specs, ctx)
        assert blocking_shifts(results) == set(few)
        failed = {r.unique_id for r in results if r.check == "feed_fault" and not r.passed}
        assert failed - {None} == set(few)
        assert held(results) == (len(few) == 2)  # two of six is above the 30% fleet share


@pytest.mark.parametrize("dataset", ["gefcom", "sgsc"])
def test_a_gap_or_a_late_feed_is_not_a_time_zone_shift(dataset: str) -> None:
    # Clean deliveries missing their first 3 hours (all series) or their last 3 hours (one
    # series): displaced at the seam by whole hours, but their profiles do not move.
    if dataset == "gefcom":
        cfg, (history, delivery), last = config(), gefcom(), LAST_RUN
    else:
        cfg = config("30min", 48, [48, 336])
        history, delivery, last = sgsc()
    ctx = CheckContext.from_config(cfg, delivered_after=last)
    first, newest = delivery["ds"].min(), delivery["ds"].max()
    uid = sorted(delivery["unique_id"].unique())[0]
    gap = delivery[delivery["ds"] >= first + pd.Timedelta("3h")]
    late = delivery[
        (delivery["unique_id"] != uid) | (delivery["ds"] <= newest - pd.Timedelta("3h"))
    ]
    for clean in (gap, late):
        results, _ = run_checks(stored(history, clean), build_specs(cfg), ctx)
        assert not blocking_shifts(results) and not held(results)


def test_clean_weekly_deliveries_are_never_excluded_as_shifted() -> None:
    # Five months of real weekly deliveries each, utility zones and households (in UTC, so the
    # households' profiles move by an hour at each daylight-saving change).
    hourly, half_hourly = config(), config("30min", 48, [48, 336])
    zones = feeds.gefcom(ZONE_NUMBERS).frame
    cases = [
        (zones, hourly, "2005-09-04", pd.Timedelta("1h")),
        (_sgsc_utc(), half_hourly, "2012-09-02", pd.Timedelta("30min")),
    ]
    for frame, cfg, start, step in cases:
        spec = build_specs(cfg)["feed_fault"]
        for week in range(22):
            at = pd.Timestamp(start) + pd.Timedelta(weeks=week)
            part = frame[
                (frame["ds"] >= at - pd.Timedelta(weeks=7))
                & (frame["ds"] < at + pd.Timedelta(weeks=1))
            ]
            ctx = CheckContext.from_config(cfg, delivered_after=at - step)
            found = check_feed_fault(part, spec, ctx)
            shifts = [r for r in found if r.blocking and not r.passed and kind(r) == "shift"]
            assert not shifts, [r.sentence for r in shifts]


def test_the_newest_delivery_is_what_came_after_the_last_published_run() -> None:
    history, delivery = gefcom()
    bad = corrupt(delivery, "x1000", history, ["zone5"])
    frame = pd.concat([history, bad])
    # Judged again only while it is new: once published past, the same rows are history.
    assert not judge(frame)["zone5"].passed
    done = judge(frame, after=delivery["ds"].max())
    assert done["zone5"].passed and "no new data since the last published run" in (
        done["zone5"].sentence
    )
    # Without a previous run: the last max(horizon, season) steps.
    assert not judge(frame, after=None)["zone5"].passed


def test_the_fleet_share_limit_is_configurable() -> None:
    cfg = PipelineConfig.model_validate(
        {
            "name": "t",
            "source": {},
            "series": {"frequency": "1h", "horizon": 48, "season_lengths": [24]},
            "checks": {"feed_fault": {"max_share": 0.9, "max_ratio": 5000}},
        }
    )
    specs = build_specs(cfg)
    assert specs["feed_fault"].params["max_share"] == 0.9
    history, delivery = gefcom()
    ctx = CheckContext.from_config(cfg, delivered_after=CUT - pd.Timedelta("1h"))
    everyone = corrupt(delivery, "x1000", history, list(ZONES))
    results, _ = run_checks(pd.concat([history, everyone]), specs, ctx)
    assert all(r.passed for r in results if r.check == "feed_fault")  # 1000x is under 5000x


def test_real_breaks_are_not_feed_faults_covid_ridership_and_rates_near_zero() -> None:
    cta = feeds.cta().frame
    cta = cta[cta["unique_id"].isin(["bus", "rail_boardings"])]
    daily = config("1D", 14, [7])
    for start in ("2020-03-15", "2020-03-29"):  # ridership falling five- to eightfold
        at = pd.Timestamp(start)
        part = cta[
            (cta["ds"] > at - pd.Timedelta(days=120)) & (cta["ds"] < at + pd.Timedelta(days=14))
        ]
        found = judge(part, daily, at - pd.Timedelta("1D"))
        assert all(r.passed for r in found.values()), [r.sentence for r in found.values()]

    rates = feeds.fred_md().frame
    rates = rates[rates["unique_id"].isin(["FEDFUNDS", "TB3MS", "GS1", "T10YFFM"])]
    monthly = config("MS", 12, [12])
    for start in ("2008-12-01", "2009-01-01", "2020-04-01", "2020-05-01"):
        at = pd.Timestamp(start)
        part = rates[(rates["ds"] > at - pd.DateOffset(years=8)) & (rates["ds"] <= at)]
        found = judge(part, monthly, at - pd.DateOffset(months=1))
        assert all(r.passed for r in found.values()), [r.sentence for r in found.values()]


def test_household_zeros_and_short_history_are_left_alone() -> None:
    # A household often at zero may spend a week at zero; a series with no history before the
    # delivery cannot be judged at all.
    ds = pd.date_range("2024-01-01", periods=48 * 35, freq="30min")
    rng = np.random.default_rng(3)
    y = np.where(rng.random(len(ds)) < 0.3, 0.0, rng.gamma(2.0, 0.2, len(ds)))
    y[-336:] = 0.0
    frame = pd.DataFrame({"unique_id": "h1", "ds": ds, "y": y})
    new = pd.DataFrame({"unique_id": "young", "ds": ds[-10:], "y": 5.0})
    cfg = config("30min", 48, [48])
    found = judge(pd.concat([frame, new]), cfg, ds[-337])
    assert found["h1"].passed and found["young"].passed
    assert RunFigures.from_dict({"series": 2}).feed_faults == 0


def test_a_first_run_is_not_a_delivery_and_a_cycle_that_is_not_daily_is_no_shift() -> None:
    """On a first run there is no delivery boundary: the judged "delivery" is the tail of the
    history, and a fleet alike with a 37.3-hour cycle moves that tail's daily profile with
    nothing wrong in the feed: no series is flagged."""
    ds = pd.date_range("2024-01-01", periods=24 * 10, freq="h")
    t = np.arange(len(ds), dtype=float)
    pattern = 0.002 * t + np.sin(2 * np.pi * t / 24) + 0.8 * np.sin(2 * np.pi * t / 37.3)
    frame = pd.concat(
        pd.DataFrame({"unique_id": f"s{i}", "ds": ds, "y": 10 + i + (1 + i) * pattern})
        for i in range(4)
    )
    cfg = config(horizon=12)
    first = judge(frame, cfg, after=None)
    assert all(r.passed for r in first.values()), [r.sentence for r in first.values()]

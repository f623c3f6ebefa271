"""Real feeds and the ways real feeds break, for the feed-fault suite and the clean-data sweep.

A :class:`Feed` is a real dataset as a long frame (``unique_id, ds, y``; ``ds`` naive, in the
pipeline's ``timezone``) with the pipeline settings that suit it: frequency, horizon, season
lengths, and the length of one delivery (``delivery_steps``, what the fault suite corrupts) and
of one replayed delivery in the clean sweep (``sweep_steps``).

The fault functions take a delivery frame and return a corrupted copy; ``series=None`` corrupts
the whole fleet, a list corrupts only those series (the rest are left as they are).

Datasets (their layout is described in each folder's SOURCE.md):

- GEFCom2012 load zones: hourly, zones 1-7 (zones 3 and 7 are identical series in the source).
- SGSC smart meters: half-hourly, six households with complete readings around the summer
  holidays of 2012-13, in their local wall-clock time (Australia/Sydney).
- CTA daily ridership: bus, rail and their total, daily (the source's duplicate rows dropped).
- FRED-MD: 127 monthly US macro series in levels as published (untransformed).
- M4 Weekly: a sample of the competition's weekly series. M4 gives no dates; each series is put
  on a Sunday-ending weekly grid ending on the same week, training and test parts joined.
- M4 Daily: only the 14 test points per series exist (no training history, no dates). They are
  used for the one thing they can test: young series. A pipeline is started on the first 10
  points of each series (on a synthetic daily grid) and receives the last 4 as its next
  delivery; a new fleet with little history must not be held.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pandas as pd

from tests.conftest import shared_data
from tests.pipelines import pipeline_toml

# ---------------------------------------------------------------------------------------------
# Feeds
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Feed:
    """A real dataset with the pipeline settings that suit it."""

    name: str
    frame: pd.DataFrame = field(repr=False)  # unique_id, ds (naive, in `timezone`), y
    frequency: str
    horizon: int
    season_lengths: tuple[int, ...]
    delivery_steps: int  # one delivery of the fault suite
    sweep_steps: int  # one delivery of the clean sweep
    timezone: str = "UTC"
    min_value: float | None = None  # off: a bound would quarantine a sign flip at ingest

    @property
    def offset(self) -> pd.DateOffset:
        """One step, for calendar arithmetic (``cut - n * feed.offset``)."""
        return pd.tseries.frequencies.to_offset(self.frequency)

    @property
    def step(self) -> pd.Timedelta:
        """One step as a duration (a month counts as 31 days, a week as 7)."""
        first, second = pd.date_range("2001-01-01", periods=2, freq=self.offset)
        return pd.Timedelta(second - first)

    @property
    def series(self) -> list[str]:
        return sorted(self.frame["unique_id"].unique())

    def pipeline_toml(self, extra: str = "") -> str:
        """The pipeline file: the feed's settings, default checks and gate, plus ``extra``."""
        return pipeline_toml(
            id_column="unique_id",
            time_column="ds",
            value_column="y",
            timezone=self.timezone,
            frequency=self.frequency,
            horizon=self.horizon,
            season_lengths=self.season_lengths,
            min_value=self.min_value,
            extra=extra,
        )

    def between(self, start: str | pd.Timestamp, end: str | pd.Timestamp) -> pd.DataFrame:
        """Rows with ``start <= ds < end``."""
        ds = self.frame["ds"]
        return self.frame[(ds >= pd.Timestamp(start)) & (ds < pd.Timestamp(end))].reset_index(
            drop=True
        )

    def split(
        self, cut: str | pd.Timestamp, history_steps: int, delivery_steps: int | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(history of ``history_steps`` before ``cut``, the delivery of ``delivery_steps`` from it)."""
        cut = pd.Timestamp(cut)
        steps = self.delivery_steps if delivery_steps is None else delivery_steps
        history = self.between(cut - history_steps * self.offset, cut)
        delivery = self.between(cut, cut + steps * self.offset)
        return history, delivery


def write_csv(frame: pd.DataFrame, path: object) -> None:
    """A delivery file as a feed would send it: ids, naive ISO times, values."""
    out = frame[["unique_id", "ds", "y"]].copy()
    out["ds"] = pd.to_datetime(out["ds"]).dt.strftime("%Y-%m-%d %H:%M:%S")
    out.to_csv(str(path), index=False)


@cache
def _gefcom_all() -> pd.DataFrame:
    raw = pd.read_csv(shared_data("gefcom2012_load", "Load_history.csv.gz"), thousands=",")
    long = raw.melt(id_vars=["zone_id", "year", "month", "day"], var_name="h", value_name="y")
    long = long.dropna(subset=["y"])
    day = pd.to_datetime(long[["year", "month", "day"]])
    hour = pd.to_timedelta(long["h"].str[1:].astype(int) - 1, unit="h")  # h1 = hour from 00:00
    frame = pd.DataFrame(
        {"unique_id": "zone" + long["zone_id"].astype(str), "ds": day + hour, "y": long["y"]}
    )
    return frame.sort_values(["unique_id", "ds"]).reset_index(drop=True)


def gefcom(zones: Collection[int] = range(1, 8)) -> Feed:
    """GEFCom2012 zonal load in kW, hourly; 48-hour deliveries, weekly in the sweep."""
    frame = _gefcom_all()
    frame = frame[frame["unique_id"].isin([f"zone{z}" for z in zones])].reset_index(drop=True)
    return Feed(
        name="gefcom",
        frame=frame,
        frequency="1h",
        horizon=48,
        season_lengths=(24, 168),
        delivery_steps=48,
        sweep_steps=168,
    )


SGSC_HOUSEHOLDS = ("10006414", "10006630", "10018002", "10018060", "10018244", "10017562")


@cache
def _sgsc_all() -> pd.DataFrame:
    raw = pd.read_csv(
        shared_data("sgsc_smart_meter_50", "sm_cust50.csv.gz"),
        usecols=["customer_id", "reading_datetime", "general_supply_kwh"],
        dtype={"customer_id": str},
    )
    return pd.DataFrame(
        {
            "unique_id": raw["customer_id"],
            "ds": pd.to_datetime(raw["reading_datetime"]),
            "y": raw["general_supply_kwh"].astype(float),
        }
    )


def sgsc(households: Collection[str] | None = SGSC_HOUSEHOLDS) -> Feed:
    """SGSC household kWh per half hour, local time (``None``: all 50 households); 2-day
    deliveries, weekly in the sweep."""
    frame = _sgsc_all()
    if households is not None:
        frame = frame[frame["unique_id"].isin(list(households))]
    return Feed(
        name="sgsc",
        frame=frame.sort_values(["unique_id", "ds"]).reset_index(drop=True),
        frequency="30min",
        horizon=48,
        season_lengths=(48, 336),
        delivery_steps=96,
        sweep_steps=336,
        timezone="Australia/Sydney",
    )


@cache
def _cta_all() -> pd.DataFrame:
    raw = pd.read_csv(
        shared_data("cta_ridership_daily", "CTA_-_Ridership_-_Daily_Boarding_Totals_20240528.csv")
    ).drop_duplicates()
    raw["ds"] = pd.to_datetime(raw["service_date"], format="%m/%d/%Y")
    long = raw.melt(
        id_vars=["ds"],
        value_vars=["bus", "rail_boardings", "total_rides"],
        var_name="unique_id",
        value_name="y",
    )
    long["y"] = long["y"].astype(float)
    return long[["unique_id", "ds", "y"]].sort_values(["unique_id", "ds"]).reset_index(drop=True)


def cta() -> Feed:
    """CTA daily boardings (bus, rail, total); 2-week deliveries, 4-weekly in the sweep."""
    return Feed(
        name="cta",
        frame=_cta_all(),
        frequency="1D",
        horizon=14,
        season_lengths=(7,),
        delivery_steps=14,
        sweep_steps=28,
    )


@cache
def _fred_all() -> pd.DataFrame:
    raw = pd.read_csv(shared_data("fred_md", "FRED-MD.csv"))
    raw = raw.drop(columns=[c for c in ("CLI", "EPU") if c in raw.columns])
    raw = raw[raw["sasdate"] != "Transform:"].dropna(subset=["sasdate"])
    raw["ds"] = pd.to_datetime(raw["sasdate"], format="%m/%d/%Y")
    long = raw.drop(columns=["sasdate"]).melt(id_vars=["ds"], var_name="unique_id", value_name="y")
    long = long.dropna(subset=["y"])
    long["y"] = long["y"].astype(float)
    return long[["unique_id", "ds", "y"]].sort_values(["unique_id", "ds"]).reset_index(drop=True)


def fred_md() -> Feed:
    """FRED-MD monthly levels (some series are rates or spreads, negative at times)."""
    return Feed(
        name="fred_md",
        frame=_fred_all(),
        frequency="MS",
        horizon=12,
        season_lengths=(12,),
        delivery_steps=12,
        sweep_steps=12,
    )


M4_END = pd.Timestamp("2018-12-30")  # a Sunday: the last test week of every M4 Weekly series


def _m4_wide(name: str) -> dict[str, np.ndarray]:
    wide = pd.read_csv(shared_data("m4", name), index_col=0)
    return {str(uid): row.dropna().to_numpy(dtype=float) for uid, row in wide.iterrows()}


@cache
def _m4_weekly_all(sample: int) -> pd.DataFrame:
    train, test = _m4_wide("Weekly-train.csv"), _m4_wide("Weekly-test.csv")
    ids = sorted(train, key=lambda s: int(s[1:]))
    every = max(1, len(ids) // sample)
    frames = []
    for uid in ids[::every][:sample]:
        y = np.concatenate([train[uid], test[uid]])
        ds = pd.date_range(end=M4_END, periods=len(y), freq="W-SUN")
        frames.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": y}))
    return pd.concat(frames, ignore_index=True)


def m4_weekly(sample: int = 40) -> Feed:
    """Every n-th M4 Weekly series (train + test on one synthetic weekly grid); 13-week deliveries."""
    return Feed(
        name="m4_weekly",
        frame=_m4_weekly_all(sample),
        frequency="W-SUN",
        horizon=13,
        season_lengths=(),
        delivery_steps=13,
        sweep_steps=13,
    )


M4_DAILY_START = pd.Timestamp("2018-01-01")


@cache
def _m4_daily_all(sample: int) -> pd.DataFrame:
    test = _m4_wide("Daily-test.csv")
    ids = sorted(test, key=lambda s: int(s[1:]))
    every = max(1, len(ids) // sample)
    frames = []
    for uid in ids[::every][:sample]:
        y = test[uid]
        ds = pd.date_range(M4_DAILY_START, periods=len(y), freq="D")
        frames.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": y}))
    return pd.concat(frames, ignore_index=True)


def m4_daily(sample: int = 200) -> Feed:
    """Young series: 10 days of history, then a 4-day delivery (see the module docstring)."""
    return Feed(
        name="m4_daily",
        frame=_m4_daily_all(sample),
        frequency="1D",
        horizon=4,
        season_lengths=(),
        delivery_steps=4,
        sweep_steps=4,
    )


FEEDS: dict[str, Callable[[], Feed]] = {
    "gefcom": gefcom,
    "sgsc": sgsc,
    "cta": cta,
    "fred_md": fred_md,
    "m4_weekly": m4_weekly,
    "m4_daily": m4_daily,
}

# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------

Series = Collection[str] | None
Fault = Callable[..., pd.DataFrame]


def _hit(delivery: pd.DataFrame, series: Series) -> pd.Series:
    if series is None:
        return pd.Series(True, index=delivery.index)
    return delivery["unique_id"].isin(list(series))


def scale_up(delivery: pd.DataFrame, series: Series = None, **_: object) -> pd.DataFrame:
    """Every value x1000: a unit change upstream (MW sent as kW)."""
    out = delivery.copy()
    hit = _hit(out, series)
    out.loc[hit, "y"] = out.loc[hit, "y"] * 1000.0
    return out


def scale_down(delivery: pd.DataFrame, series: Series = None, **_: object) -> pd.DataFrame:
    """Every value /1000: the opposite unit change."""
    out = delivery.copy()
    hit = _hit(out, series)
    out.loc[hit, "y"] = out.loc[hit, "y"] / 1000.0
    return out


def zeros(delivery: pd.DataFrame, series: Series = None, **_: object) -> pd.DataFrame:
    """All zeros: an upstream job wrote zeros instead of readings."""
    out = delivery.copy()
    out.loc[_hit(out, series), "y"] = 0.0
    return out


def cumulative(
    delivery: pd.DataFrame,
    series: Series = None,
    *,
    history: pd.DataFrame | None = None,
    **_: object,
) -> pd.DataFrame:
    """The meter's cumulative register instead of interval values.

    Each series' register starts from a plausible reading: the total of its history (the meter
    has been counting at least that long), else 1000 deliveries' worth of its values.
    """
    out = delivery.sort_values(["unique_id", "ds"]).copy()
    hit = _hit(out, series)
    for uid, rows in out[hit].groupby("unique_id").groups.items():
        values = out.loc[rows, "y"].to_numpy(dtype=float)
        if history is not None and (history["unique_id"] == uid).any():
            start = float(history.loc[history["unique_id"] == uid, "y"].abs().sum())
        else:
            start = 1000.0 * float(np.abs(values).sum())
        out.loc[rows, "y"] = start + np.cumsum(np.abs(values))
    return out.reset_index(drop=True)


def stuck(
    delivery: pd.DataFrame,
    series: Series = None,
    *,
    history: pd.DataFrame | None = None,
    **_: object,
) -> pd.DataFrame:
    """A stuck feed: the last good value (the history's last, else the delivery's first) repeated."""
    out = delivery.sort_values(["unique_id", "ds"]).copy()
    hit = _hit(out, series)
    for uid, rows in out[hit].groupby("unique_id").groups.items():
        value = float(out.loc[rows[0], "y"])
        if history is not None:
            past = history[history["unique_id"] == uid].sort_values("ds")
            if len(past):
                value = float(past["y"].iloc[-1])
        out.loc[rows, "y"] = value
    return out.reset_index(drop=True)


def sign_flip(delivery: pd.DataFrame, series: Series = None, **_: object) -> pd.DataFrame:
    """Signs flipped: export read as import, a column subtracted the wrong way round."""
    out = delivery.copy()
    hit = _hit(out, series)
    out.loc[hit, "y"] = -out.loc[hit, "y"]
    return out


def time_shift(
    delivery: pd.DataFrame, series: Series = None, *, hours: int = 5, **_: object
) -> pd.DataFrame:
    """Timestamps shifted by whole hours: a time-zone mistake (sub-daily data only)."""
    out = delivery.copy()
    hit = _hit(out, series)
    out.loc[hit, "ds"] = out.loc[hit, "ds"] + pd.Timedelta(hours=hours)
    return out


FAULTS: dict[str, Fault] = {
    "scale_x1000": scale_up,
    "scale_div1000": scale_down,
    "zeros": zeros,
    "cumulative": cumulative,
    "stuck": stuck,
    "sign_flip": sign_flip,
    "time_shift": time_shift,
}

SUB_DAILY_ONLY = frozenset({"time_shift"})


def applicable(feed: Feed, fault: str) -> bool:
    """Whether a fault makes sense for a feed (a time-zone shift needs sub-daily data)."""
    return fault not in SUB_DAILY_ONLY or feed.step < pd.Timedelta("1D")

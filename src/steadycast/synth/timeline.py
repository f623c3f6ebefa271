"""The fleet's shared clock: steps, local days, day kinds, holidays and the temperature curve.

Everything here is the same for every series of a fleet, so it is computed once and each chunk
of series only gathers from it. Households live by the local wall clock, so the daily profile is
indexed by local time of day; sub-daily output is written in local wall-clock time (the
pipeline's ``[source] timezone``), which is what makes daylight-saving artefacts possible.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from steadycast.errors import UsageError

# Frequencies the generator speaks, with the steps per local day they imply.
FREQUENCIES = {"30min": 48, "1h": 24, "1D": 1}

# Day kinds index the household profiles: a weekend and a holiday look alike (people are home).
WORKDAY, SATURDAY, SUNDAY = 0, 1, 2


def easter(year: int) -> date:
    """Western Easter Sunday (anonymous Gregorian algorithm): the anchor of movable holidays."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month = (h + l_ - 7 * m + 114) // 31
    day = (h + l_ - 7 * m + 114) % 31 + 1
    return date(year, month, day)


def holidays(years: range) -> list[date]:
    """A fixed, generic (Western-European-like) holiday list for ``years``.

    Fixed dates plus Good Friday and Easter Monday: enough for a checker or a model to meet
    a workday that behaves like a Sunday, without pretending to be any one country's calendar.
    """
    out: list[date] = []
    for y in years:
        e = easter(y)
        out += [
            date(y, 1, 1),
            e - timedelta(days=2),
            e + timedelta(days=1),
            date(y, 5, 1),
            date(y, 12, 24),
            date(y, 12, 25),
            date(y, 12, 26),
            date(y, 12, 31),
        ]
    return sorted(out)


@dataclass(frozen=True)
class Timeline:
    """The steps of every series and what the load model needs to know about each.

    ``ds`` holds the values written to the files: naive local wall-clock times (the calendar
    date at midnight for daily data). ``ambiguous`` marks steps whose local time occurs twice
    (a fall-back change) and ``repeated`` holds, per fall-back change, the steps of the second
    occurrences; ``skipped`` lists, per spring-forward change, the step after which the skipped
    local times would fall and those local times.
    """

    frequency: str
    timezone: str
    steps_per_day: int
    ds: np.ndarray  # datetime64[us], one per step
    day: np.ndarray  # int64 local day index per step
    slot: np.ndarray  # int64 position in the local day's profile per step
    day_kind: np.ndarray  # int64 per local day: WORKDAY, SATURDAY or SUNDAY (holidays too)
    temperature: np.ndarray  # float64 per local day, degrees C
    holidays: tuple[date, ...]
    ambiguous: np.ndarray  # bool per step
    skipped: tuple[tuple[int, np.ndarray], ...]
    repeated: tuple[np.ndarray, ...]  # per fall-back change: steps of the second occurrences

    @property
    def n_steps(self) -> int:
        return len(self.ds)

    @property
    def n_days(self) -> int:
        return len(self.day_kind)

    @property
    def step_hours(self) -> float:
        return 24.0 / self.steps_per_day


def build_timeline(
    start: str, days: int, frequency: str, timezone: str, rng: np.random.Generator
) -> Timeline:
    """Lay out ``days`` local days from ``start`` (local midnight) at ``frequency``."""
    if frequency not in FREQUENCIES:
        raise UsageError(
            f"frequency {frequency!r} is not supported by synth; use one of "
            + ", ".join(FREQUENCIES)
        )
    try:
        first = pd.Timestamp(start).normalize()
    except (ValueError, TypeError):
        raise UsageError(f"start {start!r} is not a date; use YYYY-MM-DD") from None
    if first.tzinfo is not None:
        raise UsageError(f"start {start!r} must be a plain date; the zone comes from timezone")
    spd = FREQUENCIES[frequency]
    dates = pd.date_range(first, periods=days, freq="D")
    steps = _daily_steps(dates) if spd == 1 else _local_steps(first, days, frequency, timezone, spd)
    weekday = dates.weekday.to_numpy()
    hol = tuple(holidays(range(dates[0].year, dates[-1].year + 1)))
    is_holiday = np.isin(dates.date, np.array(hol, dtype=object))
    day_kind = np.where(
        (weekday == 6) | is_holiday, SUNDAY, np.where(weekday == 5, SATURDAY, WORKDAY)
    ).astype(np.int64)
    return Timeline(
        frequency=frequency,
        timezone=timezone,
        steps_per_day=spd,
        ds=np.asarray(steps.local, dtype="datetime64[us]"),
        day=steps.day,
        slot=steps.slot,
        day_kind=day_kind,
        temperature=temperature(dates, rng),
        holidays=hol,
        ambiguous=steps.ambiguous,
        skipped=steps.skipped,
        repeated=steps.repeated,
    )


@dataclass(frozen=True)
class _Steps:
    """The local time of every step, its day and slot, and the clock changes among them."""

    local: pd.DatetimeIndex
    day: np.ndarray
    slot: np.ndarray
    ambiguous: np.ndarray
    skipped: tuple[tuple[int, np.ndarray], ...]
    repeated: tuple[np.ndarray, ...]


def _daily_steps(dates: pd.DatetimeIndex) -> _Steps:
    """One step a day: no local hour to skip or repeat."""
    days = len(dates)
    return _Steps(
        local=pd.DatetimeIndex(dates),
        day=np.arange(days, dtype=np.int64),
        slot=np.zeros(days, dtype=np.int64),
        ambiguous=np.zeros(days, dtype=bool),
        skipped=(),
        repeated=(),
    )


def _local_steps(first: pd.Timestamp, days: int, frequency: str, timezone: str, spd: int) -> _Steps:
    """Sub-daily steps: every instant of the local days, read on the local clock, so a clock
    change skips or repeats local times."""
    lo = first.tz_localize(timezone)
    hi = (first + pd.Timedelta(days=days)).tz_localize(timezone)
    instants = pd.date_range(lo, hi, freq=frequency, inclusive="left")
    local = instants.tz_convert(timezone).tz_localize(None)
    minutes = np.asarray(local.hour * 60 + local.minute, dtype=np.int64)
    second = np.flatnonzero(np.asarray(local.duplicated(keep="first")))
    # Second occurrences of one change are consecutive steps; a new change starts a group.
    repeated = (
        tuple(np.split(second, np.flatnonzero(np.diff(second) > 1) + 1)) if len(second) else ()
    )
    step = pd.Timedelta(frequency)
    jumps = np.flatnonzero(np.diff(local.asi8) > step.value)
    skipped = tuple(
        (
            int(i),
            np.asarray(
                pd.date_range(local[i] + step, local[i + 1] - step, freq=step),
                dtype="datetime64[us]",
            ),
        )
        for i in jumps
    )
    return _Steps(
        local=local,
        day=np.asarray((local.normalize() - first).days, dtype=np.int64),
        slot=minutes // int(24 * 60 / spd),
        ambiguous=np.asarray(local.duplicated(keep=False)),
        skipped=skipped,
        repeated=repeated,
    )


def temperature(dates: pd.DatetimeIndex, rng: np.random.Generator) -> np.ndarray:
    """Daily mean temperature shared by the fleet: a smooth annual curve plus weather.

    The weather is an AR(1) anomaly (a cold spell lasts days, not one day), so heating and
    cooling load drifts the way real demand does rather than as white noise.
    """
    doy = dates.dayofyear.to_numpy().astype(np.float64)
    seasonal = 10.5 - 8.5 * np.cos(2 * np.pi * (doy - 20.0) / 365.25)
    shocks = rng.normal(0.0, 1.6, len(dates))
    anomaly = np.empty(len(dates))
    level = 0.0
    for i, shock in enumerate(shocks):  # one step per day of the fleet, not per row
        level = 0.8 * level + shock
        anomaly[i] = level
    return np.asarray(seasonal + anomaly, dtype=np.float64)

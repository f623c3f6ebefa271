"""The household load model: clean meter readings for a chunk of series, as one matrix.

Each household draws its own base load, morning and evening peaks (size, hour, width), a
weekend routine, a heating and cooling response to the fleet's temperature, and its own noise.
Readings are profile x temperature response x day-to-day factor x step noise: multiplicative,
so the noise grows with the load (heteroskedastic), and never negative. Daily data aggregates
the same profile to daily totals, so it keeps the weekly and annual cycles.

Everything is a (series x steps) numpy operation; the only Python loops run over the handful of
day kinds, never over rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from steadycast.synth.timeline import SATURDAY, SUNDAY, WORKDAY, Timeline

HEATING_BELOW_C = 15.5  # households heat below this daily mean temperature
COOLING_ABOVE_C = 22.0  # and cool above this one


@dataclass(frozen=True)
class Households:
    """Per-household parameters of one chunk (arrays of length ``n``), in kWh per hour."""

    base: np.ndarray
    morning_amp: np.ndarray
    morning_hour: np.ndarray
    morning_width: np.ndarray
    evening_amp: np.ndarray
    evening_hour: np.ndarray
    evening_width: np.ndarray
    weekend_shift: np.ndarray  # hours the morning peak moves later on weekends and holidays
    weekend_midday: np.ndarray  # extra load around lunch when people are at home
    heating: np.ndarray  # relative load per degree below HEATING_BELOW_C
    cooling: np.ndarray  # relative load per degree above COOLING_ABOVE_C
    noise: np.ndarray  # sigma of the log step noise
    day_noise: np.ndarray  # sigma of the log day-to-day factor

    @property
    def n(self) -> int:
        return len(self.base)


def draw_households(n: int, rng: np.random.Generator) -> Households:
    """Draw ``n`` households; about a quarter heat electrically and a sixth have air con."""
    electric_heat = rng.random(n) < 0.25
    air_con = rng.random(n) < 0.15
    return Households(
        base=rng.lognormal(np.log(0.18), 0.45, n),
        morning_amp=rng.lognormal(np.log(0.35), 0.5, n),
        morning_hour=np.clip(rng.normal(7.3, 0.7, n), 5.0, 10.0),
        morning_width=rng.uniform(0.8, 1.8, n),
        evening_amp=rng.lognormal(np.log(0.7), 0.5, n),
        evening_hour=np.clip(rng.normal(18.8, 1.0, n), 16.0, 22.0),
        evening_width=rng.uniform(1.2, 2.8, n),
        weekend_shift=rng.uniform(0.5, 2.0, n),
        weekend_midday=rng.lognormal(np.log(0.25), 0.5, n),
        heating=np.where(electric_heat, rng.uniform(0.04, 0.12, n), rng.uniform(0.0, 0.02, n)),
        cooling=np.where(air_con, rng.uniform(0.03, 0.10, n), 0.0),
        noise=rng.uniform(0.12, 0.35, n),
        day_noise=rng.uniform(0.05, 0.15, n),
    )


def _bump(hours: np.ndarray, centre: np.ndarray, width: np.ndarray) -> np.ndarray:
    """A Gaussian bump on the 24-hour circle (an evening peak at 23h spills past midnight)."""
    d = np.abs(hours[None, :] - centre[:, None])
    d = np.minimum(d, 24.0 - d)
    return np.asarray(np.exp(-0.5 * (d / width[:, None]) ** 2))


def profiles(h: Households, steps_per_day: int) -> np.ndarray:
    """Mean load in kWh per hour by (household, day kind x slot): shape (n, 3 x steps_per_day).

    Columns are laid out day kind by day kind, so a step's column is ``kind * spd + slot``.
    """
    hours = (np.arange(steps_per_day) + 0.5) * (24.0 / steps_per_day)
    workday = (
        h.base[:, None]
        + h.morning_amp[:, None] * _bump(hours, h.morning_hour, h.morning_width)
        + h.evening_amp[:, None] * _bump(hours, h.evening_hour, h.evening_width)
    )
    home = (
        h.base[:, None]
        + h.morning_amp[:, None] * _bump(hours, h.morning_hour + h.weekend_shift, h.morning_width)
        + 1.1 * h.evening_amp[:, None] * _bump(hours, h.evening_hour, h.evening_width)
        + h.weekend_midday[:, None] * _bump(hours, np.full(h.n, 13.0), np.full(h.n, 2.5))
    )
    by_kind = {WORKDAY: workday, SATURDAY: 0.5 * (workday + home), SUNDAY: home}
    return np.concatenate([by_kind[k] for k in (WORKDAY, SATURDAY, SUNDAY)], axis=1)


def day_factors(h: Households, tl: Timeline, rng: np.random.Generator) -> np.ndarray:
    """Temperature response x day-to-day variation, shape (n, days)."""
    t = tl.temperature[None, :]
    response = (
        1.0
        + h.heating[:, None] * np.maximum(0.0, HEATING_BELOW_C - t)
        + h.cooling[:, None] * np.maximum(0.0, t - COOLING_ABOVE_C)
    )
    sigma = h.day_noise[:, None]
    eps = rng.standard_normal((h.n, tl.n_days), dtype=np.float32)
    return np.asarray(response * np.exp(sigma * eps - 0.5 * sigma**2))


def readings(h: Households, tl: Timeline, rng: np.random.Generator) -> np.ndarray:
    """Clean readings (kWh per step, rounded to the Wh a meter reports): shape (n, steps)."""
    days = day_factors(h, tl, rng)
    if tl.steps_per_day == 1:
        hourly = profiles(h, 24)
        totals = hourly.reshape(h.n, 3, 24).sum(axis=2)  # kWh per day by day kind
        mean = np.take_along_axis(
            totals, np.broadcast_to(tl.day_kind[None, :], (h.n, tl.n_days)), axis=1
        )
        sigma = h.noise[:, None] / 3.0  # a day's total averages most step noise away
        values = mean * days
    else:
        prof = profiles(h, tl.steps_per_day) * tl.step_hours
        column = tl.day_kind[tl.day] * tl.steps_per_day + tl.slot
        values = np.take(prof, column, axis=1)
        values *= np.take(days, tl.day, axis=1)
        sigma = h.noise[:, None]
    eps = rng.standard_normal(values.shape, dtype=np.float32)
    values *= np.exp(sigma * eps - 0.5 * sigma**2)
    return np.asarray(np.round(values, 3), dtype=np.float64)

"""The feed-fault tests on a chunk of series laid out as rows of a grid, one named step each.

``_feed_fault_grid`` measures the delivery against its reference window once
(``_measure_delivery``), runs the tests in order (zeros, stuck, register, sign, scale, shift)
and gives each series the first kind that applies, with its value and sentence.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from steadycast.quality.checks._arrays import _nanmedian, _nanquantiles, _run_lengths
from steadycast.quality.checks._feed_shift import (
    _PROFILE_HOURS,
    _SEAM_GAIN,
    _moved_error,
    _Profiles,
)
from steadycast.quality.checks._text import _fmt_num, _fmt_ratio

_GridFound = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, _Profiles | None]
# A test's rows and how to describe one of them: (value, sentence tail).
_Test = tuple[np.ndarray, Callable[[int], tuple[float, str]]]


@dataclass(frozen=True)
class _FeedLimits:
    first_k: int
    period: int
    k_periods: int
    max_lag: int
    steps_per_hour: int
    min_steps: int
    max_ratio: float
    shift_gain: float


@dataclass(frozen=True)
class _Delivery:
    """A chunk's delivery (the last ``d`` columns) and what its reference window says."""

    grid: np.ndarray
    d: int
    new: np.ndarray
    hist: np.ndarray
    finite_new: np.ndarray
    n_new: np.ndarray
    seasonal: np.ndarray  # same positions of the reference periods, median over them
    mag_new: np.ndarray
    top_new: np.ndarray
    mag_seasonal: np.ndarray
    top_seasonal: np.ndarray
    mag_recent: np.ndarray
    top_recent: np.ndarray
    last_value: np.ndarray
    q05_abs: np.ndarray
    q90: np.ndarray
    q05: np.ndarray
    q95: np.ndarray
    zero_share: np.ndarray
    judged: np.ndarray
    crossing: np.ndarray
    floor: np.ndarray
    all_zero: np.ndarray

    @property
    def n(self) -> int:
        return int(self.grid.shape[0])


def _feed_fault_grid(
    grid: np.ndarray,
    d: int,
    lim: _FeedLimits,
    lows: np.ndarray,
    highs: np.ndarray,
    seam: np.ndarray,
) -> _GridFound:
    """The feed-fault tests on a chunk of series laid out as rows of ``grid`` (the last ``d``
    columns are the delivery); returns kind, value, sentence tail, new values and whether a
    shift is confirmed by the seam (``seam``: steps each delivery is displaced by, see
    ``_seams``) per row, and the standardised daily profiles (delivery, week before, same days
    of the reference weeks) for the fleet's sums."""
    g = _measure_delivery(grid, d, lim)
    shift = _shift(g, lim, seam)
    tests: list[tuple[str, _Test]] = [
        ("zeros", _zeros(g)),
        ("stuck", _stuck(g, lim)),
        ("register", _register(g, lim)),
        ("sign", _sign(g, lows, highs)),
        ("scale", _scale(g, lim)),
        ("shift", (shift.hit, shift.describe)),
    ]
    kind = np.full(g.n, "", dtype=object)
    value = np.zeros(g.n)
    detail = np.full(g.n, "", dtype=object)
    for name, (hit, describe) in tests:
        for r in np.flatnonzero(hit & (kind == "")).tolist():
            kind[r] = name
            value[r], detail[r] = describe(r)
    firm = shift.firm & (kind == "shift")
    return kind, value, detail, g.n_new, firm, shift.profiles


def _seasonal(grid: np.ndarray, d: int, lim: _FeedLimits) -> np.ndarray:
    """The delivery's positions in each reference period, median over the periods."""
    width = grid.shape[1]
    stack = [
        grid[:, width - d - k * lim.period : width - k * lim.period]
        for k in range(lim.first_k, lim.first_k + lim.k_periods)
    ]
    return _nanmedian(np.stack(stack, axis=2), axis=2)


def _measure_delivery(grid: np.ndarray, d: int, lim: _FeedLimits) -> _Delivery:
    """Magnitudes, quantiles and shares of the delivery and its reference window, once."""
    period = lim.period
    n, width = grid.shape
    new = grid[:, width - d :]
    hist = grid[:, : width - d]
    finite_new = np.isfinite(new)
    n_new = finite_new.sum(axis=1)
    seasonal = _seasonal(grid, d, lim)
    abs_new = np.abs(new)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        abs_seasonal = np.where(finite_new, np.abs(seasonal), np.nan)
        recent = np.abs(hist[:, -max(period, d) :])
        mag_new, top_new = _nanquantiles(abs_new, (0.5, 0.9))
        mag_seasonal, top_seasonal = _nanquantiles(abs_seasonal, (0.5, 0.9))
        mag_recent, top_recent = _nanquantiles(recent, (0.5, 0.9))
        finite_hist = np.isfinite(hist)
        last_idx = np.where(
            finite_hist.any(axis=1), hist.shape[1] - 1 - np.argmax(finite_hist[:, ::-1], axis=1), 0
        )
        last_value = np.where(finite_hist.any(axis=1), hist[np.arange(n), last_idx], np.nan)
        q05_abs, q90 = _nanquantiles(np.abs(hist), (0.05, 0.9))
        q05, q95 = _nanquantiles(hist, (0.05, 0.95))
        zero_share = np.nanmean(np.where(finite_hist, hist == 0, np.nan), axis=1)
        neg_share_hist = np.nanmean(np.where(finite_hist, hist < 0, np.nan), axis=1)
    has_hist = finite_hist.sum(axis=1) >= max(2, min(period // 4, hist.shape[1] // 8))
    judged = (n_new > 0) & has_hist
    # A series crossing zero has no meaningful level near zero: floor magnitudes by its scale.
    crossing = (neg_share_hist > 0.02) & (neg_share_hist < 0.98)
    floor = np.where(crossing, 0.05, 1e-3) * np.where(np.isfinite(q90), q90, 0.0)
    floor = np.maximum(floor, 1e-12)
    all_zero = judged & (np.where(finite_new, new == 0, True).all(axis=1))
    return _Delivery(
        grid=grid,
        d=d,
        new=new,
        hist=hist,
        finite_new=finite_new,
        n_new=n_new,
        seasonal=seasonal,
        mag_new=mag_new,
        top_new=top_new,
        mag_seasonal=mag_seasonal,
        top_seasonal=top_seasonal,
        mag_recent=mag_recent,
        top_recent=top_recent,
        last_value=last_value,
        q05_abs=q05_abs,
        q90=q90,
        q05=q05,
        q95=q95,
        zero_share=zero_share,
        judged=judged,
        crossing=crossing,
        floor=floor,
        all_zero=all_zero,
    )


def _zeros(g: _Delivery) -> _Test:
    """Every new value is 0 where under 5% of the reference window was 0."""
    # Households at zero for a week, a holiday, are real where the series is often zero.
    rarely_zero = g.zero_share < 0.05

    def describe(r: int) -> tuple[float, str]:
        return float(g.zero_share[r]), (
            f"is all zeros ({int(g.n_new[r])} values) where only "
            f"{g.zero_share[r]:.0%} of the reference window was 0"
        )

    return g.all_zero & rarely_zero, describe


def _stuck(g: _Delivery, lim: _FeedLimits) -> _Test:
    """The run of one value at the end of the delivery, far longer than any in the history."""
    d, n, width = g.d, g.n, g.grid.shape[1]
    runs = _run_lengths(g.grid)
    runs_new = runs[:, width - d :]
    last_col = d - 1 - np.argmax(g.finite_new[:, ::-1], axis=1)
    tail_run = runs_new[np.arange(n), last_col]
    last_new = g.new[np.arange(n), last_col]
    hist_run = runs[:, : width - d].max(axis=1, initial=0)
    need = max(lim.min_steps, 2)
    hit = (
        g.judged
        & ~g.all_zero
        & (tail_run >= max(need, d / 2))
        & (tail_run > 3 * hist_run)
        & (np.nan_to_num(last_new) != 0)  # a run of zeros is the zeros test's to judge
    )

    def describe(r: int) -> tuple[float, str]:
        return float(tail_run[r]), (
            f"ends in {int(tail_run[r])} identical readings of "
            f"{_fmt_num(float(g.new[r][g.finite_new[r]][-1]))}; the longest such run in the "
            f"reference window was {int(hist_run[r])}"
        )

    return hit, describe


def _register(g: _Delivery, lim: _FeedLimits) -> _Test:
    """Never falls, rises far beyond the history's range, where history went both ways."""
    new, finite_new = g.new, g.finite_new
    need = max(lim.min_steps, 2)
    diffs = np.diff(np.where(finite_new, new, np.nan), axis=1)
    fin_d = np.isfinite(diffs)
    never_falls = np.where(fin_d, diffs >= 0, True).all(axis=1)
    rises = np.where(fin_d, diffs > 0, False).sum(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rise = np.nanmax(new, axis=1) - np.nanmin(new, axis=1)
        h_diffs = np.diff(g.hist, axis=1)
        h_up = np.nanmean(np.where(np.isfinite(h_diffs), h_diffs > 0, np.nan), axis=1)
        (step_up,) = _nanquantiles(diffs, (0.5,))
    # A register grows every step by about one interval value: its steps are of the order of
    # the series' own magnitude, where a trend (prices, a recession's unemployment) creeps.
    hit = (
        g.judged
        & (g.n_new >= need)
        & never_falls
        & (rises >= 0.8 * np.maximum(fin_d.sum(axis=1), 1))
        & (rise > 2.0 * (g.q95 - g.q05))
        & (step_up >= 0.5 * np.abs(g.mag_seasonal))
        & (h_up < 0.8)
    )

    def describe(r: int) -> tuple[float, str]:
        value = float(rise[r] / max(g.q95[r] - g.q05[r], 1e-12))
        return value, (
            f"never falls and rises by {_fmt_num(float(rise[r]))}, "
            f"{value:.0f}x the range of its reference window "
            "(a cumulative meter register instead of interval values?)"
        )

    return hit, describe


def _sign(g: _Delivery, lows: np.ndarray, highs: np.ndarray) -> _Test:
    """At least 80% of the other sign than the series ever had, at its usual magnitude."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        neg_new = np.nanmean(np.where(g.finite_new, g.new < 0, np.nan), axis=1)
        pos_new = np.nanmean(np.where(g.finite_new, g.new > 0, np.nan), axis=1)
    # A flip mirrors the series: mostly of the other sign, at its usual magnitude, where the
    # series kept well away from zero (a spread drifting below zero for the first time is not).
    mirrored = (g.mag_new > 0.5 * g.mag_seasonal) & (g.mag_new < 2.0 * g.mag_seasonal)
    away = g.q05_abs > 0.1 * g.mag_recent
    became_negative = (lows >= 0) & (neg_new >= 0.8)
    became_positive = (highs <= 0) & (lows < 0) & (pos_new >= 0.8)

    def describe(r: int) -> tuple[float, str]:
        value = float(neg_new[r] if became_negative[r] else pos_new[r])
        return value, (
            f"is {value:.0%} negative where the series was never negative"
            if became_negative[r]
            else f"is {value:.0%} positive where the series was never positive"
        )

    return g.judged & (became_negative | became_positive) & mirrored & away, describe


def _scale(g: _Delivery, lim: _FeedLimits) -> _Test:
    """The typical magnitude above or below every reference by more than ``max_ratio``.

    Against the nearest of three references, for the median and the 90th percentile of |y|
    both: a unit change moves the whole distribution, a household away on holiday drops its
    median far more than its peaks. Continuity: the first new value against the last one
    before it (a unit change breaks it; a level that moved over months, as interest rates do,
    does not).
    """
    n, floor, max_ratio = g.n, g.floor, lim.max_ratio
    last_abs = np.abs(g.last_value)
    first_abs = np.abs(g.new[np.arange(n), np.argmax(g.finite_new, axis=1)])
    tiny = np.where(g.crossing, floor, 1e-6 * floor)  # night readings sit near the floor
    ratios = np.stack(
        [(g.mag_new + floor) / (r + floor) for r in (g.mag_seasonal, g.mag_recent)]
        + [(g.top_new + floor) / (r + floor) for r in (g.top_seasonal, g.top_recent)]
        + [(first_abs + tiny) / (last_abs + tiny)],
        axis=1,
    )
    with np.errstate(all="ignore"):
        log_r = np.log(ratios)
    log_r = np.where(np.isfinite(log_r), log_r, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        up = np.nanmin(log_r, axis=1)  # > 0 when above every reference
        down = np.nanmax(log_r, axis=1)  # < 0 when below every reference
    scale_by = np.where(up > 0, np.exp(up), np.where(down < 0, np.exp(down), 1.0))
    scale_by = np.where(np.isfinite(scale_by), scale_by, 1.0)
    # A series at zero over its whole reference window has no scale to compare with.
    has_scale = np.isfinite(g.q90) & (g.q90 > 0)
    # An all-zero delivery is the zeros test's to judge (a household often at zero may rest).
    hit = (
        g.judged & has_scale & ~g.all_zero & ((scale_by > max_ratio) | (scale_by < 1.0 / max_ratio))
    )

    def describe(r: int) -> tuple[float, str]:
        return float(scale_by[r]), (
            f"has a typical magnitude of {_fmt_num(float(g.mag_new[r]))}, "
            f"{_fmt_ratio(float(scale_by[r]))} the same positions of its last "
            f"{lim.k_periods} periods ({_fmt_num(float(g.mag_seasonal[r]))}), its last period "
            f"({_fmt_num(float(g.mag_recent[r]))}) and its first value against the last "
            f"before it ({_fmt_num(float(first_abs[r]))} after "
            f"{_fmt_num(float(g.last_value[r]))}) (limit {max_ratio:g}x either way; "
            "a change of units?)"
        )

    return hit, describe


def _daily_profile(values: np.ndarray, n: int, day: int) -> np.ndarray:
    """Mean daily profile over whole days, standardised (level and size drop out)."""
    days = values.shape[1] // day
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        prof = np.nanmean(values.reshape(n, days, day), axis=1)
        mean = np.nanmean(prof, axis=1, keepdims=True)
        std = np.nanstd(prof, axis=1, keepdims=True)
    with np.errstate(all="ignore"):
        return np.asarray((prof - mean) / std)


def _best_lag(
    mine: np.ndarray, ref: np.ndarray, lim: _FeedLimits
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Error unmoved, the best error moved by whole hours, and that move in hours."""
    n, steps_per_hour = len(mine), lim.steps_per_hour
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        e0 = np.asarray(np.nanmean((mine - ref) ** 2, axis=1))
        best = np.full(n, np.inf)
        hours_of = np.zeros(n, dtype=np.int64)
        for hours in range(1, min(lim.max_lag // steps_per_hour, _PROFILE_HOURS) + 1):
            for lag in (hours * steps_per_hour, -hours * steps_per_hour):
                e = np.asarray(np.nanmean((mine - np.roll(ref, lag, axis=1)) ** 2, axis=1))
                better = np.isfinite(e) & (e < best)
                best = np.where(better, e, best)
                hours_of = np.where(better, lag // steps_per_hour, hours_of)
    return e0, best, hours_of


def _profiles(g: _Delivery, lim: _FeedLimits) -> _Profiles:
    """Standardised daily profiles: the delivery's last whole days, the week just before them
    on the same phase, and the same days of the reference weeks."""
    n, d, day = g.n, g.d, lim.period // 7
    width = g.grid.shape[1]
    cols = (d // day) * day  # the delivery's last whole days
    mine = _daily_profile(g.new[:, d - cols :], n, day)
    back = (7 + (1 if d % day else 0)) * day
    start = width - cols - back
    theirs = (
        _daily_profile(g.grid[:, start : start + 7 * day], n, day) if start >= 0 else mine * np.nan
    )
    # A profile needs a day of new values and most of the week before (a feed back from an
    # outage has neither).
    week_seen = np.isfinite(g.grid[:, max(start, 0) : max(start, 0) + 7 * day]).sum(axis=1)
    enough = (g.n_new >= day) & (week_seen >= 7 * day // 2)
    mine = np.where(enough[:, None], mine, np.nan)
    same_days = _daily_profile(g.seasonal[:, d - cols :], n, day)
    return mine, theirs, same_days


@dataclass(frozen=True)
class _Shifts:
    """The shift test's findings per row: ``hit`` (shifted), ``firm`` (confirmed at the seam),
    the move in hours and its error against the unmoved one; the profiles for the fleet's sums."""

    lim: _FeedLimits
    hit: np.ndarray
    firm: np.ndarray
    best_hours: np.ndarray
    gain: np.ndarray
    profiles: _Profiles | None = None

    def describe(self, r: int) -> tuple[float, str]:
        hours = int(self.best_hours[r])
        if self.firm[r]:
            where = (
                f"starts {hours} h after the last published data"
                if hours > 0
                else f"ends {-hours} h before the rest of the fleet"
            )
            return float(self.best_hours[r]), (
                f"{where}, and its daily profile matches moved {hours:+d} h (error "
                f"{self.gain[r]:.0%} of the unmoved one, limit {_SEAM_GAIN:.0%}; "
                "a time-zone mistake?)"
            )
        return float(self.best_hours[r]), (
            f"matches its daily profile best when moved {hours:+d} h "
            f"(error {self.gain[r]:.0%} of the unmoved one, limit "
            f"{self.lim.shift_gain:.0%}; a time-zone mistake?)"
        )


def _shift(g: _Delivery, lim: _FeedLimits, seam: np.ndarray) -> _Shifts:
    """Whole hours of shift, for sub-daily data with a full day delivered: the daily profile
    matches both references best when moved by the same hours, or, displaced at the seam,
    matches them better moved back by the seam's hours (``firm``)."""
    n = g.n
    if not (lim.max_lag and lim.steps_per_hour and g.d >= lim.period // 7):
        none = np.zeros(n, dtype=bool)
        return _Shifts(lim, none, none.copy(), np.zeros(n, dtype=np.int64), np.ones(n))
    mine, theirs, same_days = profiles = _profiles(g, lim)
    # Two references, the week just before and the same days of the reference weeks, must
    # agree on the move: one alone is fooled by a holiday or a change of season.
    e_week, b_week, h_week = _best_lag(mine, theirs, lim)
    e_same, b_same, h_same = _best_lag(mine, same_days, lim)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain_week = np.where(e_week > 0, b_week / e_week, 1.0)
        gain_same = np.where(e_same > 0, b_same / e_same, 1.0)
    gain = np.fmax(gain_week, gain_same)
    # Unmoved, the profiles disagree (correlation below 0.75); moved, they agree far better.
    # Only a series with a stable daily profile (its two references agree) can show a
    # shift: a household's week-to-week noise cannot.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        stable = np.nanmean((theirs - same_days) ** 2, axis=1) < 0.2
    is_shift = (
        g.judged
        & stable
        & (h_week == h_same)
        & (np.fmin(e_week, e_same) > 0.5)
        & (gain < lim.shift_gain)
    )
    # Displaced at the seam by whole hours: moved back by them, the profile must match
    # both references better (a gap or a late end alone is common on clean feeds).
    moved_week, moved_same = (
        _moved_error(mine, theirs, seam),
        _moved_error(mine, same_days, seam),
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        seam_gain = (moved_week + moved_same) / (e_week + e_same)
    firm = (
        g.judged
        & (seam != 0)
        & (seam_gain < _SEAM_GAIN)
        & (moved_week < e_week)
        & (moved_same < e_same)
    )
    return _Shifts(
        lim,
        is_shift | firm,
        firm,
        np.where(firm, seam // lim.steps_per_hour, h_week),
        np.where(firm, seam_gain, gain),
        profiles,
    )

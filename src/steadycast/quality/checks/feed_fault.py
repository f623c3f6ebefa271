"""The feed-fault check: the newest delivery of each series against its own recent history."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from pandas.tseries.offsets import Tick

from steadycast.ingestion.timegrid import offset_of
from steadycast.quality.checks._arrays import _chunks
from steadycast.quality.checks._feed_grid import _feed_fault_grid, _FeedLimits
from steadycast.quality.checks._feed_shift import _add_profiles, _fleet_shifts, _seams
from steadycast.quality.checks._frame import _Frame, _prepare, _step_index
from steadycast.quality.checks._text import _fmt_ts, _steps
from steadycast.quality.checks.context import CheckContext
from steadycast.quality.checks.spec import CheckResult, CheckSpec, _result, reference_period
from steadycast.quality.severity import Severity

__all__ = ["FEED_FAULT_KINDS", "check_feed_fault", "feed_fault_window"]

FEED_FAULT_KINDS = ("zeros", "stuck", "register", "sign", "scale", "shift")


def feed_fault_window(
    f_newest: pd.Timestamp | None, delivered_after: pd.Timestamp | None, frequency: str
) -> int | None:
    """Steps from ``delivered_after`` (exclusive) to ``f_newest`` (inclusive), None if unknown."""
    if f_newest is None or delivered_after is None:
        return None
    if delivered_after >= f_newest:
        return 0
    steps, _ = _step_index(
        np.array([np.datetime64(delivered_after, "ns"), np.datetime64(f_newest, "ns")]), frequency
    )
    return int(steps[1] - steps[0])


def check_feed_fault(frame: pd.DataFrame, spec: CheckSpec, ctx: CheckContext) -> list[CheckResult]:
    """Fail a series whose newest delivery looks broken against its own recent history.

    The newest delivery is the data newer than ``ctx.delivered_after`` (the pipeline's newest
    at its last published run), at most ``max_window_steps``; without it, the last
    ``window_steps`` steps. It is compared with the same positions (same hour and weekday for
    hourly data) of the ``periods`` reference periods before it, the last period before it
    and the last value before it; one finding per series, the first ``kind`` that applies:

        zeros     every new value is 0 where under 5% of the reference window was 0
        stuck     the delivery ends in a run of one non-zero value, at least ``min_steps`` and
                  half the delivery long, over three times any such run in the reference window
        register  the delivery never falls and rises by more than twice the range of the
                  reference window, in steps of the series' own magnitude, where the history
                  went up and down (a cumulative meter register)
        sign      at least 80% negative where the series was never negative (or the reverse),
                  at its usual magnitude, for a series that kept away from zero
        scale     the typical magnitude (median and 90th percentile of |y|, both) is more than
                  ``max_ratio`` times above or below every reference (a unit change)
        shift     sub-daily data: the standardised mean daily profile matches both the week
                  before and the same days of the reference weeks best when moved by the same
                  whole hours, with an error below ``shift_gain`` times the unmoved one. Alone,
                  a shift only warns (policy ``warn``): clean daily profiles move sometimes

    A failed result's policy is the spec's (``exclude`` by default); ``check_feed_fault_share``
    holds the run when a large share of the fleet has a fault of any kind.
    """
    return _feed_fault(_prepare(frame, ctx), spec, ctx)


# (seam, displaced against the fleet) -> summed profiles (mine, week, same) and their counts
_Sums = dict[tuple[int, bool], list[np.ndarray]]


@dataclass(frozen=True)
class _Found:
    """Per series: the fault's kind ("" for none), value, sentence tail, how many new values,
    and whether a shift is firm (confirmed at the seam or across the fleet: excluded, not
    warned)."""

    kind: np.ndarray
    value: np.ndarray
    detail: np.ndarray
    n_new: np.ndarray
    firm: np.ndarray

    @classmethod
    def none(cls, n: int) -> _Found:
        return cls(
            np.full(n, "", dtype=object),
            np.zeros(n),
            np.full(n, "", dtype=object),
            np.zeros(n, dtype=np.int64),
            np.zeros(n, dtype=bool),
        )


def _feed_fault(f: _Frame, spec: CheckSpec, ctx: CheckContext) -> list[CheckResult]:
    lim, d = _limits(f, spec, ctx)
    found = _Found.none(f.n_series)
    if d > 0 and f.n_series:
        max_hours = lim.max_lag // lim.steps_per_hour if lim.max_lag else 0
        seam, alone = _seams(f, d, lim.steps_per_hour, max_hours)
        sums, profiled = _scan(f, d, lim, seam, alone, found)
        shifted = _fleet_shifts(
            sums,
            seam,
            alone,
            profiled,
            found.n_new,
            found.kind,
            lim.steps_per_hour,
            lim.period // 7,
            spec.params,
            delivered=ctx.delivered_after is not None,
        )
        for r, hours, note in shifted:
            found.kind[r], found.value[r], found.detail[r] = "shift", float(hours), note
            found.firm[r] = True
    return _feed_results(f, spec, d, lim.max_ratio, found)


def _limits(f: _Frame, spec: CheckSpec, ctx: CheckContext) -> tuple[_FeedLimits, int]:
    """The test limits, and ``d``: the steps of the newest delivery judged."""
    p = spec.params
    m = max(1, ctx.season_length)
    period = reference_period(m)
    window = feed_fault_window(f.newest, ctx.delivered_after, ctx.frequency)
    if window is None:
        window = int(p["window_steps"])
    d = min(window, int(p["max_window_steps"]))
    steps_per_hour = _steps_per_hour(ctx.frequency)
    max_lag = 0
    if steps_per_hour and m >= 24:
        max_lag = min(int(p["max_shift_hours"]) * steps_per_hour, m // 2)
    first_k = -(-d // period) if d > 0 else 1  # reference periods start before the delivery
    lim = _FeedLimits(
        first_k,
        period,
        int(p["periods"]),
        max_lag,
        steps_per_hour,
        int(p["min_steps"]),
        float(p["max_ratio"]),
        float(p["shift_gain"]),
    )
    return lim, d


def _sign_bounds(f: _Frame, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Each series' lowest and highest value before the delivery: never negative (or never
    positive) over everything before it."""
    before = f.idx <= f.newest_idx - d
    y_before = np.where(before, f.y, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lows = np.fmin.reduceat(np.where(np.isfinite(y_before), y_before, np.inf), f.starts)
        highs = np.fmax.reduceat(np.where(np.isfinite(y_before), y_before, -np.inf), f.starts)
    return lows, highs


def _scan(
    f: _Frame, d: int, lim: _FeedLimits, seam: np.ndarray, alone: np.ndarray, found: _Found
) -> tuple[_Sums, np.ndarray]:
    """The grid tests, a chunk of series at a time, into ``found``; returns the fleet's summed
    daily profiles and which series had one measured."""
    width = d + (lim.first_k + lim.k_periods - 1) * lim.period + lim.max_lag
    lo_col = f.newest_idx - width + 1
    keep = f.idx >= lo_col
    lows, highs = _sign_bounds(f, d)
    sums: _Sums = {}
    profiled = np.zeros(f.n_series, dtype=bool)  # a daily profile was measured
    spans = np.full(f.n_series, width, dtype=np.int64)
    for lo, hi in _chunks(spans):
        rows = np.flatnonzero(keep[f.starts[lo] : f.ends[hi - 1]]) + f.starts[lo]
        grid = np.full((hi - lo, width), np.nan)
        grid[f.codes[rows] - lo, f.idx[rows] - lo_col] = f.y[rows]
        kind, value, detail, n_new, firm, profiles = _feed_fault_grid(
            grid, d, lim, lows[lo:hi], highs[lo:hi], np.where(alone[lo:hi], seam[lo:hi], 0)
        )
        found.kind[lo:hi], found.value[lo:hi], found.detail[lo:hi] = kind, value, detail
        found.n_new[lo:hi], found.firm[lo:hi] = n_new, firm
        if profiles is not None:
            profiled[lo:hi] = np.isfinite(profiles[0]).any(axis=1)
            _add_profiles(sums, seam[lo:hi], alone[lo:hi], profiles, profiled[lo:hi])
    return sums, profiled


def _feed_results(
    f: _Frame, spec: CheckSpec, d: int, max_ratio: float, found: _Found
) -> list[CheckResult]:
    """One result per series, with the sentence naming the delivery and the fault."""
    first_new = f.step_time(f.newest_idx - d + 1) if d > 0 else None
    span = (
        f"the newest delivery ({_steps(d)} from {_fmt_ts(first_new)} to {_fmt_ts(f.newest)})"
        if d > 0
        else "no new data since the last published run"
    )
    out = []
    for s in range(f.n_series):
        uid = str(f.ids[s])
        k = str(found.kind[s])
        if not k:
            out.append(
                _result(
                    spec,
                    uid,
                    True,
                    f"series {uid!r}: {span} is in line with its history"
                    if found.n_new[s]
                    else f"series {uid!r}: no new values in {span}",
                    value=float(found.value[s]),
                    threshold=max_ratio,
                )
            )
            continue
        failed = _result(
            spec,
            uid,
            False,
            f"series {uid!r}: feed fault '{k}': {span} {found.detail[s]}",
            value=float(found.value[s]),
            threshold=max_ratio if k == "scale" else None,
            at=first_new,
        )
        if k == "shift" and not found.firm[s]:
            # One series' daily profile moves by hours often enough on clean data (a holiday,
            # twin peaks half a day apart): alone it warns; across the fleet it holds the run.
            # A delivery displaced by the same hours at its seam is excluded (``firm``).
            failed = replace(failed, severity=Severity.WARNING, blocking=False, policy="warn")
        out.append(failed)
    return out


def _steps_per_hour(frequency: str) -> int:
    """Whole steps in an hour for sub-hourly or hourly frequencies, else 0."""
    offset = offset_of(frequency)
    if not isinstance(offset, Tick):
        return 0
    step = pd.Timedelta(offset)
    hour = pd.Timedelta("1h")
    return int(hour // step) if step <= hour and hour % step == pd.Timedelta(0) else 0

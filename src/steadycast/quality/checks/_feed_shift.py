"""Time-zone shifts: deliveries displaced at their seam, and daily profiles summed over the fleet."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from steadycast.quality.checks._frame import _Frame

_Profiles = tuple[np.ndarray, np.ndarray, np.ndarray]
# A delivery displaced against the rest of the fleet at its seam is a shift when its daily
# profile, moved by the seam's hours, matches the two references (summed errors) with under this
# share of the unmoved error, and each of them better than unmoved. Measured on household
# meters: shifted deliveries 0.3-0.9, clean ones displaced at the seam (late feeds) 0.96 up.
_SEAM_GAIN = 0.8
# Without a seam to say by how much, a profile is moved at most this many hours: a daily profile
# with twin peaks half a day apart matches itself moved by about 12 hours.
_PROFILE_HOURS = 9


def _seams(f: _Frame, d: int, steps_per_hour: int, max_hours: int) -> tuple[np.ndarray, np.ndarray]:
    """Each series' newest delivery displaced by whole hours at its seam, in steps (signed; 0:
    not displaced), and whether it is displaced against the rest of the fleet (at both ends: a
    gap alone is common on clean feeds). Clean deliveries are contiguous. Moved +k hours, a
    delivery starts k hours after the last published data and ends at or k hours past the
    fleet's usual end; moved -k hours, it starts right after it (its first k hours rewrote
    stored history) and ends k hours before the fleet."""
    out = np.zeros(f.n_series, dtype=np.int64)
    if not (steps_per_hour and max_hours and d > 0 and f.n_series):
        return out, out > 0
    first = f.newest_idx - d + 1
    finite = np.isfinite(f.y)
    big = np.iinfo(np.int64).max
    start = np.minimum.reduceat(np.where(finite & (f.idx >= first), f.idx, big), f.starts)
    last = np.maximum.reduceat(np.where(finite, f.idx, -1), f.starts)
    has_new = start != big
    if not has_new.any():
        return out, out > 0
    gap = np.where(has_new, start - first, 0)
    ahead = last - int(np.median(last[has_new]))

    def whole(steps: np.ndarray) -> np.ndarray:
        hours = steps // steps_per_hour
        return np.asarray((steps % steps_per_hour == 0) & (hours >= 1) & (hours <= max_hours))

    later = has_new & whole(gap) & ((ahead == 0) | (ahead == gap))
    earlier = has_new & (gap == 0) & whole(-ahead)
    return np.where(later, gap, np.where(earlier, ahead, 0)), (later & (ahead == gap)) | earlier


def _moved_error(mine: np.ndarray, ref: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """Mean squared error of each row's profile against its reference moved by its own lag."""
    out = np.full(len(mine), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for lag in np.unique(lags[lags != 0]).tolist():
            rows = lags == lag
            out[rows] = np.nanmean((mine[rows] - np.roll(ref[rows], lag, axis=1)) ** 2, axis=1)
    return out


def _add_profiles(
    sums: dict[tuple[int, bool], list[np.ndarray]],
    seam: np.ndarray,
    alone: np.ndarray,
    profiles: _Profiles,
    keep: np.ndarray,
) -> None:
    """Add a chunk's standardised profiles to the fleet's sums, one sum per kind of seam."""
    for lag, solo in {(int(a), bool(b)) for a, b in zip(seam[keep], alone[keep], strict=True)}:
        rows = keep & (seam == lag) & (alone == solo)
        parts = [np.nansum(p[rows], axis=0) for p in profiles]
        counts = [np.isfinite(p[rows]).sum(axis=0) for p in profiles]
        old = sums.setdefault((lag, solo), [np.zeros_like(x) for x in parts + counts])
        for i, x in enumerate(parts + counts):
            old[i] = old[i] + x


def _standardise(prof: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(prof, axis=-1, keepdims=True)
        std = np.nanstd(prof, axis=-1, keepdims=True)
    with np.errstate(all="ignore"):
        return np.asarray((prof - mean) / std)


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared difference over the finite pairs; infinite when there are none."""
    both = np.isfinite(a) & np.isfinite(b)
    return float(np.mean((a[both] - b[both]) ** 2)) if both.any() else float("inf")


def _fleet_shifts(
    sums: dict[tuple[int, bool], list[np.ndarray]],
    seam: np.ndarray,
    alone: np.ndarray,
    profiled: np.ndarray,
    n_new: np.ndarray,
    kind: np.ndarray,
    steps_per_hour: int,
    day: int,
    p: Mapping[str, Any],
    *,
    delivered: bool,
) -> list[tuple[int, int, str]]:
    """Series whose shift shows in the fleet's summed daily profile, far less noisy than one
    household's: (row, hours, sentence tail) for each. A group of series displaced at the seam
    by the same hours (against the rest of the fleet, or all of them against the last published
    data) is shifted when the group's profile, moved by those hours, matches as ``_SEAM_GAIN``
    asks (a clean fleet-wide gap of a few hours: 1.7 and up). Series with no displacement are
    shifted together (a time-zone mistake of the whole fleet moving its data earlier hides the
    seam) only when they are more than ``max_share`` of the fleet, both references agree on
    the best move within an hour, and it matches far better than none; and only when there is a
    delivery to judge (``delivered``: a published run marks where it starts). On a first run
    the "newest delivery" is only the tail of the history, and a cycle that is not daily (a
    37-hour one, say) moves the tail's daily profile with nothing wrong in the feed."""
    gain, max_hours = float(p["shift_gain"]), int(p["max_shift_hours"])
    out: list[tuple[int, int, str]] = []
    total = int((n_new > 0).sum())
    for (lag, solo), acc in sums.items():
        errors = _group_errors(acc, lag, steps_per_hour, day, max_hours)
        rows = np.flatnonzero(
            (seam == lag) & (alone == solo) & profiled & ((kind == "") | (kind == "shift"))
        )
        found: tuple[int, str] | None = None
        if lag:
            found = _seam_shift(errors, lag // steps_per_hour, len(rows))
        elif (
            delivered
            and len(rows) >= max(int(p["min_series"]), 2)
            and len(rows) > p["max_share"] * total
        ):
            found = _fleet_wide_shift(errors, gain, len(rows))
        if found is not None:
            hours, note = found
            out.extend((int(r), hours, note) for r in rows)
    return out


# For each reference (the week before, the same days): the error unmoved and by each move (hours).
_Errors = list[tuple[float, dict[int, float]]]


def _group_errors(
    acc: list[np.ndarray], lag: int, steps_per_hour: int, day: int, max_hours: int
) -> _Errors:
    """A group's summed profiles, standardised, against both references, unmoved and moved."""
    with np.errstate(all="ignore"):
        mine, week, same = (_standardise(acc[i] / acc[i + 3])[None, :] for i in range(3))
    errors = []
    for ref in (week, same):
        e0 = _mse(mine, ref)
        moves = {
            h: _mse(mine, np.roll(ref, h * steps_per_hour, axis=1))
            for h in range(-max_hours, max_hours + 1)
            if h and abs(h * steps_per_hour) <= day // 2 and (lag or abs(h) <= _PROFILE_HOURS)
        }
        errors.append((e0, moves))
    return errors


def _seam_shift(errors: _Errors, hours: int, n_rows: int) -> tuple[int, str] | None:
    """A group displaced at the seam by ``hours``: shifted when its profile, moved by them,
    matches both references better and their sum as ``_SEAM_GAIN`` asks."""
    ratios = [moves.get(hours, np.inf) / e0 if 0 < e0 < np.inf else np.inf for e0, moves in errors]
    summed = sum(moves.get(hours, np.inf) for _, moves in errors) / max(
        sum(e0 for e0, _ in errors), 1e-12
    )
    if not (summed < _SEAM_GAIN and all(r < 1.0 for r in ratios)):
        return None
    where = (
        f"starts {hours} h after the last published data"
        if hours > 0
        else f"ends {-hours} h before the rest of the fleet"
    )
    return hours, (
        f"{where}, and the summed daily profile of the {n_rows:,} series displaced "
        f"so matches best moved {hours:+d} h (error {summed:.0%} of the unmoved one, "
        f"limit {_SEAM_GAIN:.0%}; a time-zone mistake?)"
    )


def _fleet_wide_shift(errors: _Errors, gain: float, n_rows: int) -> tuple[int, str] | None:
    """Series not displaced at their seam: shifted together when both references agree on the
    best move within an hour and it matches far better than none."""
    best = [min(moves, key=moves.__getitem__) for _, moves in errors if moves]
    # Half-hourly households' best moves scatter by an hour: within one, the move with the
    # least summed error.
    if len(best) != 2 or abs(best[0] - best[1]) > 1:
        return None
    hours = min(best, key=lambda h: sum(moves[h] for _, moves in errors))
    ratios = [moves[hours] / e0 if 0 < e0 < np.inf else np.inf for e0, moves in errors]
    if min(e0 for e0, _ in errors) <= 0.5 or not all(r < gain for r in ratios):
        return None
    return hours, (
        f"is not displaced at its seam, but the summed daily profile of the "
        f"{n_rows:,} series alike matches best moved {hours:+d} h (error "
        f"{max(ratios):.0%} of the unmoved one, limit {gain:.0%}; a time-zone mistake?)"
    )

"""Planted faults: which series get which fault, where, and the ground truth that says so.

Value faults (stuck, zeros, spike, gap, level_shift, dst) are exclusive: a series gets at most
one, drawn with the configured shares, so the ground truth is unambiguous and a check that flags
a series can be scored against exactly one planted cause. Delivery faults (late, duplicate)
change only which file a row arrives in, so they are drawn independently and can come on top.

Windows are sized to be findable by the default checks (a stuck run longer than the flat-line
limit, a gap longer than the completeness limit, a level change above its minimum); smaller,
harmless versions of each are left to the noise of real fleets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from steadycast.errors import UsageError
from steadycast.synth.timeline import Timeline

VALUE_FAULTS = ("stuck", "zeros", "spike", "gap", "level_shift", "dst")
DELIVERY_FAULTS = ("late", "duplicate")
FAULTS = VALUE_FAULTS + DELIVERY_FAULTS
TRUTH_COLUMNS = ("unique_id", "fault", "start", "end", "detail", "magnitude", "rows", "file")


@dataclass(frozen=True)
class FaultRates:
    """Share of series that get each fault (0 to 1).

    ``dst`` only applies to sub-daily output in a zone with daylight saving inside the
    generated dates (elsewhere there is no local hour to duplicate or miss). ``recent_days``
    plants every fault within the last that many days of the data, where a daily check run
    looks; ``None`` plants them anywhere.
    """

    stuck: float = 0.02
    zeros: float = 0.02
    spike: float = 0.03
    gap: float = 0.05
    level_shift: float = 0.02
    dst: float = 0.01
    late: float = 0.02
    duplicate: float = 0.01
    recent_days: float | None = None

    def __post_init__(self) -> None:
        for name in FAULTS:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise UsageError(f"fault rate {name}={value!r} must be a share between 0 and 1")
        total = sum(getattr(self, name) for name in VALUE_FAULTS)
        if total > 1.0 + 1e-9:
            raise UsageError(
                f"the value-fault rates ({', '.join(VALUE_FAULTS)}) add up to {total:.3f}; "
                "a series gets at most one of them, so they must add up to 1 or less"
            )
        if self.recent_days is not None and not self.recent_days > 0:
            raise UsageError(f"recent_days={self.recent_days!r} must be a positive number")

    @classmethod
    def none(cls) -> FaultRates:
        """Clean data: no fault of any kind."""
        return cls(**{name: 0.0 for name in FAULTS})

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class Planted:
    """What faults did to one chunk (``n`` series x ``T`` steps), before rows are cut.

    ``keep``: the reading was delivered at all; ``late``: it arrives in a later file;
    ``duplicate``: it arrives a second time in another file. ``extra`` holds rows that exist
    only because of a fault (a skipped local hour reported): (series, step after which they
    fall, local times, value). Masks are None when no series of the chunk needs them.
    """

    keep: np.ndarray | None = None
    late: np.ndarray | None = None
    duplicate: np.ndarray | None = None
    extra: list[tuple[int, int, np.ndarray, float]] = field(default_factory=list)
    truth: list[pd.DataFrame] = field(default_factory=list)
    late_truth: pd.DataFrame | None = None
    duplicate_truth: pd.DataFrame | None = None


def _span(tl: Timeline, rates: FaultRates) -> int:
    """First step of the region where faults may start."""
    if rates.recent_days is None:
        return 0
    return max(0, tl.n_steps - math.ceil(rates.recent_days * tl.steps_per_day))


def _windows(
    rng: np.random.Generator, n: int, lo: int, total: int, days: tuple[float, float], spd: int
) -> tuple[np.ndarray, np.ndarray]:
    """Start and length of ``n`` windows inside ``[lo, total)``, each ``days`` long (a range)."""
    length = np.rint(rng.uniform(days[0], days[1], n) * spd).astype(np.int64)
    length = np.clip(length, 1, max(1, (total - lo) // 2 if lo == 0 else total - lo))
    room = np.maximum(total - lo - length, 0)
    start = lo + np.floor(rng.random(n) * (room + 1)).astype(np.int64)
    return start, length


def _window_mask(n_cols: int, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    cols = np.arange(n_cols)[None, :]
    return np.asarray((cols >= start[:, None]) & (cols < (start + length)[:, None]))


def _frame(
    uid: np.ndarray,
    fault: str,
    start: np.ndarray,
    end: np.ndarray,
    detail: list[str],
    magnitude: np.ndarray,
    rows: np.ndarray,
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unique_id": uid,
            "fault": fault,
            "start": start.astype("datetime64[us]"),
            "end": end.astype("datetime64[us]"),
            "detail": detail,
            "magnitude": magnitude.astype(np.float64),
            "rows": rows.astype(np.int64),
            "file": "",
        }
    )


@dataclass(frozen=True)
class _Chunk:
    """What every planting step reads: the readings (changed in place), the ids, the clock,
    the first step a fault may start at (``lo``) and the delivered-at-all mask (``keep``)."""

    y: np.ndarray
    ids: np.ndarray
    tl: Timeline
    lo: int
    keep: np.ndarray

    @property
    def total(self) -> int:
        return int(self.y.shape[1])

    @property
    def sub_daily(self) -> bool:
        return self.tl.steps_per_day > 1


def plant(
    y: np.ndarray, ids: np.ndarray, tl: Timeline, rates: FaultRates, rng: np.random.Generator
) -> Planted:
    """Plant faults into the readings ``y`` (series x steps) in place; return masks and truth.

    ``ids`` are the chunk's series ids, for the ground truth. Every draw comes from ``rng``,
    so a chunk planted with the same seed plants the same faults (the steps below draw in a
    fixed order, which is part of that promise).
    """
    n, total = y.shape
    out = Planted()
    dst_ok = bool(tl.skipped or tl.repeated)
    shares = np.array([getattr(rates, k) if (k != "dst" or dst_ok) else 0.0 for k in VALUE_FAULTS])
    kind = np.searchsorted(np.cumsum(shares), rng.random(n), side="right")
    is_late = np.asarray(rng.random(n) < rates.late)
    is_dup = np.asarray(rng.random(n) < rates.duplicate)
    if not (kind < len(VALUE_FAULTS)).any() and not is_late.any() and not is_dup.any():
        return out
    chunk = _Chunk(y, ids, tl, _span(tl, rates), np.ones((n, total), dtype=bool))

    def chosen(name: str) -> np.ndarray:
        return np.flatnonzero(kind == VALUE_FAULTS.index(name))

    for name in ("stuck", "zeros"):
        _plant_run(chunk, chosen(name), name, rng, out)
    _plant_spikes(chunk, chosen("spike"), rng, out)
    _plant_gaps(chunk, chosen("gap"), rng, out)
    _plant_level_shifts(chunk, chosen("level_shift"), rates, rng, out)
    _plant_dst(chunk, chosen("dst"), rng, out)
    _plant_late(chunk, np.flatnonzero(is_late), rng, out)
    _plant_duplicates(chunk, np.flatnonzero(is_dup), rng, out)
    out.keep = chunk.keep
    return out


def _plant_run(
    chunk: _Chunk, r: np.ndarray, name: str, rng: np.random.Generator, out: Planted
) -> None:
    """A stuck meter repeats its reading at the start of the window; a dead one reports 0."""
    if len(r) == 0:
        return
    y, total, ds = chunk.y, chunk.total, chunk.tl.ds
    run_days = (2.5, 7.0) if chunk.sub_daily else (20.0, 45.0)
    start, length = _windows(rng, len(r), chunk.lo, total, run_days, chunk.tl.steps_per_day)
    value = y[r, start] if name == "stuck" else np.zeros(len(r))
    if name == "stuck":
        value = np.where(value > 0, value, 0.001)  # a stuck 0 would be a zero run
    mask = _window_mask(total, start, length)
    y[r] = np.where(mask, value[:, None], y[r])
    end = start + length - 1
    detail = (
        [f"stuck at {v:g} for {k} steps" for v, k in zip(value, length, strict=True)]
        if name == "stuck"
        else [f"0 for {k} steps" for k in length]
    )
    out.truth.append(_frame(chunk.ids[r], name, ds[start], ds[end], detail, value, length))


def _plant_spikes(chunk: _Chunk, r: np.ndarray, rng: np.random.Generator, out: Planted) -> None:
    """One to three readings far above the series' median (a meter or transfer error)."""
    if not len(r):
        return
    y, lo, ds = chunk.y, chunk.lo, chunk.tl.ds
    count = rng.integers(1, 4, len(r))
    region = chunk.total - lo
    strata = (np.arange(3)[None, :] + rng.random((len(r), 3))) / 3.0
    pos = lo + np.minimum((strata * region).astype(np.int64), region - 1)
    factor = rng.uniform(10.0, 40.0, (len(r), 3))
    median = np.median(y[r], axis=1)
    level = np.maximum(median, 0.01)[:, None]
    value = np.round(level * factor, 3)
    used = np.arange(3)[None, :] < count[:, None]
    rr = np.broadcast_to(r[:, None], pos.shape)[used]
    pp, vv, ff = pos[used], value[used], factor[used]
    y[rr, pp] = vv
    ids_rr = np.broadcast_to(chunk.ids[r][:, None], pos.shape)[used]
    detail = [f"{v:g}, {f:.1f} x the series median" for v, f in zip(vv, ff, strict=True)]
    out.truth.append(_frame(ids_rr, "spike", ds[pp], ds[pp], detail, ff, np.ones(len(pp))))


def _plant_gaps(chunk: _Chunk, r: np.ndarray, rng: np.random.Generator, out: Planted) -> None:
    """A gap: the meter delivered nothing for a while."""
    if not len(r):
        return
    total, ds = chunk.total, chunk.tl.ds
    gap_days = (1.5, 5.0) if chunk.sub_daily else (15.0, 40.0)
    start, length = _windows(rng, len(r), chunk.lo, total, gap_days, chunk.tl.steps_per_day)
    chunk.keep[r] &= ~_window_mask(total, start, length)
    end = start + length - 1
    detail = [f"{k} steps missing" for k in length]
    out.truth.append(
        _frame(chunk.ids[r], "gap", ds[start], ds[end], detail, length.astype(float), length)
    )


def _plant_level_shifts(
    chunk: _Chunk, r: np.ndarray, rates: FaultRates, rng: np.random.Generator, out: Planted
) -> None:
    """A lasting change of consumption (new tenant, heat pump, solar panels)."""
    if not len(r):
        return
    y, total, lo, ds = chunk.y, chunk.total, chunk.lo, chunk.tl.ds
    if rates.recent_days is None:
        t0 = rng.integers(total // 4, max(total // 4 + 1, 3 * total // 4), len(r))
    else:
        t0 = lo + np.floor(rng.random(len(r)) * max(1, 2 * (total - lo) // 3)).astype(int)
    up = rng.random(len(r)) < 0.5
    factor = np.where(up, rng.uniform(1.6, 2.6, len(r)), rng.uniform(0.3, 0.55, len(r)))
    after = np.arange(total)[None, :] >= t0[:, None]
    y[r] = np.where(after, np.round(y[r] * factor[:, None], 3), y[r])
    detail = [f"level x{f:.2f} from here on" for f in factor]
    last = ds[np.full(len(r), total - 1)]
    out.truth.append(_frame(chunk.ids[r], "level_shift", ds[t0], last, detail, factor, total - t0))


def _plant_dst(chunk: _Chunk, r: np.ndarray, rng: np.random.Generator, out: Planted) -> None:
    """A meter that reports a local hour the clock skipped, or a repeated one only once."""
    if not len(r):
        return
    tl, lo, ds = chunk.tl, chunk.lo, chunk.tl.ds
    skipped = [s for s in tl.skipped if s[0] >= lo] or list(tl.skipped)
    repeated = [g for g in tl.repeated if g[0] >= lo] or list(tl.repeated)
    options = [("skipped", i) for i in range(len(skipped))] + [
        ("repeated", i) for i in range(len(repeated))
    ]
    pick = rng.integers(0, len(options), len(r))
    uid, starts, ends, details, mags, nrows = [], [], [], [], [], []
    for series, p in zip(r.tolist(), pick.tolist(), strict=True):  # 1% of series, not rows
        what, i = options[p]
        if what == "skipped":
            after_step, times = skipped[i]
            value = float(chunk.y[series, after_step])
            out.extra.append((series, after_step, times, value))
            text = f"reports {len(times)} local time(s) skipped by the clock change"
            first, last, k = times[0], times[-1], len(times)
        else:
            steps = repeated[i]
            chunk.keep[series, steps] = False
            text = f"reports {len(steps)} repeated local time(s) once instead of twice"
            first, last, k = ds[steps[0]], ds[steps[-1]], len(steps)
        uid.append(chunk.ids[series])
        starts.append(first)
        ends.append(last)
        details.append(text)
        mags.append(float(k))
        nrows.append(k)
    out.truth.append(
        _frame(
            np.array(uid),
            "dst",
            np.array(starts),
            np.array(ends),
            details,
            np.array(mags),
            np.array(nrows),
        )
    )


def _plant_late(chunk: _Chunk, r: np.ndarray, rng: np.random.Generator, out: Planted) -> None:
    """Late delivery: the series' last days arrive in a later file."""
    if not len(r):
        return
    tl, total = chunk.tl, chunk.total
    late_days = rng.integers(1, 4, len(r)) if chunk.sub_daily else rng.integers(2, 8, len(r))
    first_day = np.maximum(tl.n_days - late_days, 1)
    start = np.searchsorted(tl.day, first_day)
    late = np.zeros(chunk.keep.shape, dtype=bool)
    late[r] = np.arange(total)[None, :] >= start[:, None]
    late &= chunk.keep
    out.late = late
    rows = late[r].sum(axis=1)
    detail = [f"last {d} day(s) delivered late" for d in late_days]
    out.late_truth = _frame(
        chunk.ids[r],
        "late",
        tl.ds[start],
        tl.ds[np.full(len(r), total - 1)],
        detail,
        late_days.astype(float),
        rows,
    )


def _plant_duplicates(chunk: _Chunk, r: np.ndarray, rng: np.random.Generator, out: Planted) -> None:
    """Duplicated delivery: a block of rows sent again in another file (same values)."""
    if not len(r):
        return
    tl, total = chunk.tl, chunk.total
    dup_days = (0.5, 2.0) if chunk.sub_daily else (3.0, 14.0)
    start, length = _windows(rng, len(r), chunk.lo, total, dup_days, tl.steps_per_day)
    dup = np.zeros(chunk.keep.shape, dtype=bool)
    dup[r] = _window_mask(total, start, length)
    # Repeated local hours cannot be told apart once split across files: leave them out.
    dup &= chunk.keep & ~tl.ambiguous[None, :]
    if out.late is not None:
        dup &= ~out.late
    out.duplicate = dup
    rows = dup[r].sum(axis=1)
    end = start + length - 1
    detail = [f"{k} rows delivered twice" for k in rows]
    out.duplicate_truth = _frame(
        chunk.ids[r], "duplicate", tl.ds[start], tl.ds[end], detail, rows.astype(float), rows
    )

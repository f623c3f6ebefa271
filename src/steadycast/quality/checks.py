"""The ``check`` stage: series-level data-quality checks, as Spec -> Result.

Each check is a plain function over the raw stored observations of many series (a long frame
``unique_id, ds, y``, not yet regularised: gaps, stuck meters and jumps must be seen as they
arrived) and a ``CheckContext``; it returns one ``CheckResult`` per series (or one per run for
the run-level checks), each with a severity, a ``blocking`` flag, the series it concerns and a
sentence a person understands. Results are data: the run stores them, the gate reads them,
incidents are raised from them.

Checks, and what they look at:

    freshness      a series' latest data lags the pipeline's newest (or the clock)
    completeness   share of missing steps in the recent window; longest gap in it
    flat_line      a run of identical readings (stuck meter), zero runs included
    spikes         robust z-score against the same phase of nearby seasons, recent window
    level_shift    a lasting jump in level (median of adjacent windows, scaled by the noise)
    feed_fault     the newest delivery broken against the series' own recent history: zeros,
                   stuck, cumulative register, sign flip, scale (unit) change, time-zone shift;
                   run-level, the share of the fleet with a feed fault
    volume_parity  series or rows that vanished or appeared in bulk since the previous run
    pass_share     the share of series that pass drops against the previous run

A failed check's ``policy`` says what happens: ``warn`` (recorded), ``exclude`` (the series
leaves this run), ``stop`` (the run is held by the gate's ``blocking_checks`` rule). A check with
``exclude`` or ``stop`` is *blocking*. A level shift also moves the start of the series'
training window to the shift (``level_shift_cuts``), whatever its policy, unless
``checks.level_shift.cut_training`` is off.

Everything is vectorised over series with numpy (sorted arrays, ``reduceat``, and series laid
out as rows of a padded grid matrix, a chunk of series at a time); only series that have a
level-shift candidate get a Python loop. Measured on this project's 2-core machine (shared, load
about 4) with 10,000 series x 700 hourly points (7 million rows): ``run_checks`` with every check
on takes 4.9-6.2 s; of that, sorting and indexing the frame about 1 s, spikes about 2.6 s, the
level-shift test 0.6-1.1 s (about 2.0 s when 1,000 of the series have a shift), freshness,
completeness and flat lines under 1 s each; the feed-fault check adds 2-4 s (a grid of the
last few weeks only). ``tests/unit/test_checks.py::
test_checks_are_fast_on_a_large_fleet`` (marked slow) keeps it under a generous bound.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.tseries.offsets import Tick

from steadycast.config import PipelineConfig
from steadycast.ingestion.timegrid import offset_of

__all__ = [
    "RESULT_COLUMNS",
    "RUN_LEVEL_CHECKS",
    "SERIES_CHECKS",
    "CheckContext",
    "CheckResult",
    "CheckSpec",
    "RunFigures",
    "build_specs",
    "check_completeness",
    "check_feed_fault",
    "check_feed_fault_share",
    "check_flat_line",
    "check_freshness",
    "check_level_shift",
    "check_pass_share",
    "check_run",
    "check_series",
    "check_spikes",
    "check_volume_parity",
    "excluded_series",
    "level_shift_cuts",
    "measure",
    "reference_period",
    "results_frame",
    "run_checks",
    "severity_at_least",
    "stop_results",
]

ID, DS, Y = "unique_id", "ds", "y"
Severity = Literal["info", "warning", "error"]
Policy = Literal["warn", "exclude", "stop"]

SERIES_CHECKS = ("freshness", "completeness", "flat_line", "spikes", "level_shift", "feed_fault")
RUN_LEVEL_CHECKS = ("volume_parity", "pass_share")
RESULT_COLUMNS = (
    "check",
    "passed",
    "severity",
    "blocking",
    "policy",
    "unique_id",
    "sentence",
    "value",
    "threshold",
    "at",
)
_SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2}
# Level-shift matrices are built for this many (series x block x window) cells at a time.
_CHUNK_CELLS = 4_000_000


@dataclass(frozen=True)
class CheckSpec:
    """One configured check: its name, how bad a failure is, what it does, and its limits.

    ``params`` holds the resolved thresholds (an "auto" 0 in the config is already replaced by a
    number derived from the pipeline's horizon and season), so a result can quote its limit.
    """

    name: str
    severity: Severity = "warning"
    policy: Policy = "warn"
    enabled: bool = True
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def blocking(self) -> bool:
        """A failure changes what the run does (excludes the series or holds the run)."""
        return self.policy != "warn"


@dataclass(frozen=True)
class CheckResult:
    """What one check found about one series (``unique_id``) or the run (``unique_id=None``)."""

    check: str
    passed: bool
    severity: Severity
    blocking: bool
    policy: Policy
    unique_id: str | None
    sentence: str
    value: float | None = None
    threshold: float | None = None
    at: pd.Timestamp | None = None  # when: spike time, shift time, start of a flat run or gap

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = None if self.at is None else self.at.isoformat()
        return out


@dataclass(frozen=True)
class RunFigures:
    """The volume a run saw, stored with the run so the next run can compare against it.

    Additive over disjoint partitions of series (``a + b``), so a run that checks partition by
    partition can sum them. ``active_series``: series whose latest data is within the freshness
    lag of the pipeline's newest; ``passing_series``: series with no failed blocking or error
    check.
    """

    series: int = 0
    rows: int = 0
    active_series: int = 0
    passing_series: int = 0
    feed_faults: int = 0  # series with a failed feed_fault check

    def __add__(self, other: RunFigures) -> RunFigures:
        return RunFigures(
            self.series + other.series,
            self.rows + other.rows,
            self.active_series + other.active_series,
            self.passing_series + other.passing_series,
            self.feed_faults + other.feed_faults,
        )

    @property
    def pass_share(self) -> float:
        return self.passing_series / self.series if self.series else 1.0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunFigures:
        """Read figures stored by ``as_dict``; missing keys count as 0."""
        return cls(
            *(
                int(data.get(k) or 0)
                for k in ("series", "rows", "active_series", "passing_series", "feed_faults")
            )
        )


@dataclass(frozen=True)
class CheckContext:
    """What the checks need besides the data.

    ``now``: the clock for ``freshness.max_age`` (naive UTC; default: the wall clock).
    ``newest``: the pipeline's newest ``ds`` over all partitions (default: the frame's newest),
    so a partition-by-partition check measures lag against the whole fleet. ``previous``: the
    previous run's figures, or None on a first run (volume parity and pass share then pass).
    ``delivered_after``: the pipeline's newest ``ds`` at its last published run: data newer
    than that is the newest delivery the feed-fault check judges (None: the last
    ``checks.feed_fault.window_steps`` steps).
    """

    frequency: str
    season_length: int = 1
    now: pd.Timestamp | None = None
    newest: pd.Timestamp | None = None
    previous: RunFigures | None = None
    delivered_after: pd.Timestamp | None = None

    @classmethod
    def from_config(
        cls,
        cfg: PipelineConfig,
        *,
        now: pd.Timestamp | None = None,
        newest: pd.Timestamp | None = None,
        previous: RunFigures | None = None,
        delivered_after: pd.Timestamp | None = None,
    ) -> CheckContext:
        return cls(
            cfg.series.frequency, cfg.series.season_length, now, newest, previous, delivered_after
        )


# ----------------------------------------------------------------------------------------------
# Specs from the config
# ----------------------------------------------------------------------------------------------


def build_specs(cfg: PipelineConfig) -> dict[str, CheckSpec]:
    """The pipeline's checks by name, with every "auto" (0) limit resolved to a number."""
    c = cfg.checks
    m = max(1, cfg.series.season_length)
    horizon_or_season = max(cfg.series.horizon, m)
    flat_steps = c.flat_line.max_steps or max(2 * m, 12)
    shift_window = c.level_shift.window_steps or _auto_shift_window(m)

    def spec(name: str, table: Any, **params: Any) -> CheckSpec:
        return CheckSpec(name, table.severity, table.policy, table.enabled, params)

    specs = [
        spec(
            "freshness",
            c.freshness,
            max_lag_steps=c.freshness.max_lag_steps or horizon_or_season,
            max_age=pd.Timedelta(c.freshness.max_age) if c.freshness.max_age else None,
        ),
        spec(
            "completeness",
            c.completeness,
            max_missing_share=c.completeness.max_missing_share,
            max_gap_steps=c.completeness.max_gap_steps or horizon_or_season,
            lookback_steps=c.completeness.lookback_steps or max(28 * m, 4 * cfg.series.horizon),
        ),
        spec(
            "flat_line",
            c.flat_line,
            max_steps=flat_steps,
            include_zero=c.flat_line.include_zero,
            allow_constant=c.flat_line.allow_constant,
            lookback_steps=c.flat_line.lookback_steps or 7 * flat_steps,
        ),
        spec(
            "spikes",
            c.spikes,
            max_z=c.spikes.max_z,
            lookback_steps=c.spikes.lookback_steps or max(7 * m, 28),
        ),
        spec(
            "level_shift",
            c.level_shift,
            min_z=c.level_shift.min_z,
            min_relative_change=c.level_shift.min_relative_change,
            window_steps=shift_window,
            cut_training=c.level_shift.cut_training,
        ),
        spec(
            "feed_fault",
            c.feed_fault,
            max_ratio=c.feed_fault.max_ratio,
            max_share=c.feed_fault.max_share,
            min_series=c.feed_fault.min_series,
            periods=c.feed_fault.periods,
            min_steps=c.feed_fault.min_steps or max(4, m // 4),
            window_steps=c.feed_fault.window_steps or horizon_or_season,
            max_window_steps=max(
                2 * reference_period(m), c.feed_fault.window_steps or horizon_or_season
            ),
            max_shift_hours=c.feed_fault.max_shift_hours,
            shift_gain=c.feed_fault.shift_gain,
        ),
        spec(
            "volume_parity",
            c.volume_parity,
            max_vanished_share=c.volume_parity.max_vanished_share,
            max_appeared_share=c.volume_parity.max_appeared_share,
            max_rows_drop_share=c.volume_parity.max_rows_drop_share,
            lag_steps=c.freshness.max_lag_steps or horizon_or_season,
        ),
        spec(
            "pass_share",
            c.pass_share,
            max_drop=c.pass_share.max_drop,
            min_share=c.pass_share.min_share,
        ),
    ]
    return {s.name: s for s in specs}


def _auto_shift_window(m: int) -> int:
    """A week of days for series with a daily season (m >= 24 steps), else four seasons.

    Each window must span whole seasons so the seasonal pattern cancels in its median, and
    for sub-daily data a whole week, so weekends do not look like a change of level.
    """
    if m >= 24:
        return 7 * m
    if m > 1:
        return 4 * m
    return 8


# ----------------------------------------------------------------------------------------------
# The frame, sorted and indexed once
# ----------------------------------------------------------------------------------------------


@dataclass
class _Frame:
    """A long frame as sorted numpy arrays: one contiguous segment of rows per series."""

    ids: np.ndarray  # series ids, by code
    codes: np.ndarray  # int64 per row, sorted
    ds: np.ndarray  # datetime64[ns] per row
    y: np.ndarray  # float64 per row
    idx: np.ndarray  # int64 step index per row on the pipeline's grid
    starts: np.ndarray  # first row of each series
    ends: np.ndarray  # one past the last row of each series
    newest_idx: int  # step index of the pipeline's newest ds
    newest: pd.Timestamp | None
    grid: np.ndarray  # int64 ns: the time of step 0 and the step length (Tick), or every step

    def step_time(self, step: int) -> pd.Timestamp:
        """The time of a step index (inverse of the step index)."""
        if len(self.grid) == 2 and self.grid[1] < 0:  # Tick: (origin, -step)
            return pd.Timestamp(int(self.grid[0] - step * self.grid[1]))
        return pd.Timestamp(int(self.grid[min(max(step, 0), len(self.grid) - 1)]))

    @property
    def n_series(self) -> int:
        return len(self.ids)

    @property
    def counts(self) -> np.ndarray:
        return np.asarray(self.ends - self.starts)

    def ts(self, row: int) -> pd.Timestamp:
        return pd.Timestamp(self.ds[row])


def _prepare(frame: pd.DataFrame, ctx: CheckContext) -> _Frame:
    missing = [c for c in (ID, DS, Y) if c not in frame.columns]
    if missing:
        raise ValueError(f"checks need the columns unique_id, ds, y; missing: {missing}")
    codes, ids = pd.factorize(frame[ID].astype(str), sort=True)
    ds = pd.to_datetime(frame[DS]).to_numpy(dtype="datetime64[ns]")
    y = frame[Y].to_numpy(dtype=np.float64, na_value=np.nan)
    codes = codes.astype(np.int64)
    ds_int = ds.view(np.int64)
    if len(codes) and not (
        (np.diff(codes) >= 0).all() and ((np.diff(codes) > 0) | (np.diff(ds_int) > 0)).all()
    ):
        order = np.lexsort((ds_int, codes))
        codes, ds, y = codes[order], ds[order], y[order]
    newest = ctx.newest if ctx.newest is not None else (pd.Timestamp(ds.max()) if len(ds) else None)
    stamps = ds if newest is None else np.append(ds, np.datetime64(newest, "ns"))
    steps, grid = _step_index(stamps, ctx.frequency)
    idx = steps[: len(ds)]
    newest_idx = int(steps[-1]) if newest is not None and len(steps) else 0
    if len(codes):
        starts = np.flatnonzero(np.r_[True, np.diff(codes) != 0])
        ends = np.r_[starts[1:], len(codes)]
    else:
        starts = ends = np.zeros(0, dtype=np.int64)
    return _Frame(
        np.asarray(ids, dtype=object), codes, ds, y, idx, starts, ends, newest_idx, newest, grid
    )


def _step_index(ds: np.ndarray, frequency: str) -> tuple[np.ndarray, np.ndarray]:
    """The step number of each time on the pipeline's grid, counted from the earliest, and the
    grid to turn a step back into a time: ``(origin, -step)`` for fixed-length steps, else
    the time of every step."""
    if len(ds) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    offset = offset_of(frequency)
    ints = ds.view(np.int64)
    if isinstance(offset, Tick):
        step = pd.Timedelta(offset).value
        origin = int(ints.min())
        return np.asarray((ints - origin) // step), np.array([origin, -step], dtype=np.int64)
    # Calendar frequencies (W-SUN, MS, ...): position on one grid over the whole span.
    lo, hi = pd.Timestamp(ds.min()), pd.Timestamp(ds.max())
    grid = pd.date_range(offset.rollback(lo), hi, freq=offset).asi8
    return np.searchsorted(grid, ints, side="right").astype(np.int64) - 1, grid


def _fmt_ts(ts: pd.Timestamp | None) -> str:
    if ts is None:
        return "?"
    return str(ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.strftime("%Y-%m-%d %H:%M"))


def _steps(n: int) -> str:
    return f"{n} step" if n == 1 else f"{n} steps"


def _fmt_num(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def _result(
    spec: CheckSpec, uid: str | None, passed: bool, sentence: str, **kw: Any
) -> CheckResult:
    return CheckResult(
        check=spec.name,
        passed=passed,
        severity=spec.severity,
        blocking=spec.blocking,
        policy=spec.policy,
        unique_id=uid,
        sentence=sentence,
        **kw,
    )


def _grouped_quantiles(
    values: np.ndarray, groups: np.ndarray, n: int, qs: Sequence[float]
) -> list[np.ndarray]:
    """Quantiles (lower, no interpolation) of finite ``values`` per group code in ``range(n)``;
    NaN where a group has none. ``groups`` must be sorted ascending.

    Groups are laid out as rows of a padded matrix, a chunk of groups at a time, and sorted
    row-wise: an order of magnitude faster than a lexsort or a pandas groupby quantile.
    """
    outs = [np.full(n, np.nan) for _ in qs]
    if len(values) == 0:
        return outs
    starts = np.flatnonzero(np.r_[True, np.diff(groups) != 0])
    counts = np.diff(np.r_[starts, len(groups)])
    codes = groups[starts]
    pos = np.arange(len(groups)) - np.repeat(starts, counts)
    rank = np.repeat(np.arange(len(starts)), counts)
    for lo, hi in _chunks(counts):
        width = int(counts[lo:hi].max())
        mat = np.full((hi - lo, width), np.inf)
        rows = slice(int(starts[lo]), int(starts[hi - 1] + counts[hi - 1]))
        mat[rank[rows] - lo, pos[rows]] = values[rows]
        mat.sort(axis=1)
        take = np.arange(hi - lo)
        for out, q in zip(outs, qs, strict=True):
            at = np.floor(q * (counts[lo:hi] - 1)).astype(np.int64)
            out[codes[lo:hi]] = mat[take, at]
    return outs


def _chunks(counts: np.ndarray, budget: int = _CHUNK_CELLS) -> list[tuple[int, int]]:
    """Consecutive ranges of groups whose padded matrix (groups x longest) fits ``budget``."""
    out, lo, widest = [], 0, 0
    for i, c in enumerate(counts.tolist()):
        wider = max(widest, c)
        if i > lo and (i - lo + 1) * wider > budget:
            out.append((lo, i))
            lo, wider = i, c
        widest = wider
    out.append((lo, len(counts)))
    return out


# ----------------------------------------------------------------------------------------------
# Series-level checks
# ----------------------------------------------------------------------------------------------


def check_freshness(frame: pd.DataFrame, spec: CheckSpec, ctx: CheckContext) -> list[CheckResult]:
    """Fail a series whose latest data lags the pipeline's newest by more than
    ``max_lag_steps`` steps, or (with ``max_age``) is older than ``now - max_age``."""
    return _freshness(_prepare(frame, ctx), spec, ctx)


def _freshness(f: _Frame, spec: CheckSpec, ctx: CheckContext) -> list[CheckResult]:
    limit = int(spec.params["max_lag_steps"])
    max_age: pd.Timedelta | None = spec.params.get("max_age")
    now = ctx.now if ctx.now is not None else pd.Timestamp.now("UTC").tz_localize(None)
    last_rows = f.ends - 1
    lags = f.newest_idx - f.idx[last_rows]
    out = []
    for s in range(f.n_series):
        uid = str(f.ids[s])
        last = f.ts(int(last_rows[s]))
        lag = int(lags[s])
        age = now - last
        stale = lag > limit
        too_old = max_age is not None and age > max_age
        if stale:
            sentence = (
                f"series {uid!r}: latest data {_fmt_ts(last)} is {lag} steps ({ctx.frequency}) "
                f"behind the pipeline's newest {_fmt_ts(f.newest)} (limit {limit} steps)"
            )
        elif too_old:
            sentence = (
                f"series {uid!r}: latest data {_fmt_ts(last)} is {age} old "
                f"at {_fmt_ts(now)} (limit {max_age})"
            )
        else:
            sentence = (
                f"series {uid!r}: latest data {_fmt_ts(last)} is {_steps(lag)} behind the "
                f"pipeline's newest (limit {limit})"
            )
        out.append(
            _result(
                spec,
                uid,
                not (stale or too_old),
                sentence,
                value=float(lag),
                threshold=float(limit),
                at=last,
            )
        )
    return out


def check_completeness(
    frame: pd.DataFrame, spec: CheckSpec, ctx: CheckContext
) -> list[CheckResult]:
    """Fail a series missing more than ``max_missing_share`` of the steps of its last
    ``lookback_steps`` (from its first observation when shorter), or with a gap longer than
    ``max_gap_steps`` in that window (prepare cuts history before such a gap, so the series
    trains on less than it seems to have). The window keeps a gap of long ago, already cut
    away by prepare, from failing the series, and opening an incident, forever."""
    return _completeness(_prepare(frame, ctx), spec, ctx)


def _completeness(f: _Frame, spec: CheckSpec, ctx: CheckContext) -> list[CheckResult]:
    share_limit = float(spec.params["max_missing_share"])
    gap_limit = int(spec.params["max_gap_steps"])
    lookback = int(spec.params["lookback_steps"])
    if f.n_series == 0:
        return []
    first, last = f.idx[f.starts], f.idx[f.ends - 1]
    start = np.maximum(first, last - lookback + 1)  # first step of each series' window
    series_of = np.repeat(np.arange(f.n_series), f.counts)
    inside = f.idx >= start[series_of]
    new_step = np.r_[True, (np.diff(f.idx) != 0) | (np.diff(f.codes) != 0)]
    distinct = np.add.reduceat((new_step & inside).astype(np.int64), f.starts)
    expected = last - start + 1
    missing_share = 1.0 - distinct / expected
    # A gap belongs to the window when it ends inside it; only its part inside counts.
    gaps = np.r_[0, np.diff(f.idx) - 1]
    gaps[f.starts] = 0
    gaps = np.where(inside, np.minimum(gaps, f.idx - start[series_of]), 0)
    longest = np.maximum.reduceat(gaps, f.starts)
    after = np.full(f.n_series, -1, dtype=np.int64)  # row just after the longest gap
    if (longest > 0).any():
        after[:] = pd.Series(gaps).groupby(series_of).idxmax().to_numpy(dtype=np.int64)
    out = []
    for s in range(f.n_series):
        uid = str(f.ids[s])
        share, gap, n_exp = float(missing_share[s]), int(longest[s]), int(expected[s])
        bad_share, bad_gap = share > share_limit, gap > gap_limit
        gap_at = f.ts(int(after[s]) - 1) if gap > 0 else None
        span = f"from {_fmt_ts(f.step_time(int(start[s])))} to {_fmt_ts(f.ts(int(f.ends[s]) - 1))}"
        parts = [
            f"{share:.1%} of the {n_exp} expected {ctx.frequency} steps {span} are missing "
            f"(limit {share_limit:.1%})"
        ]
        if gap > 0:
            parts.append(f"longest gap {gap} steps after {_fmt_ts(gap_at)} (limit {gap_limit})")
        gap_first = bad_gap and not bad_share
        out.append(
            _result(
                spec,
                uid,
                not (bad_share or bad_gap),
                f"series {uid!r}: " + "; ".join(parts),
                value=float(gap) if gap_first else share,
                threshold=float(gap_limit) if gap_first else share_limit,
                at=gap_at,
            )
        )
    return out


def check_flat_line(frame: pd.DataFrame, spec: CheckSpec, ctx: CheckContext) -> list[CheckResult]:
    """Fail a series with more than ``max_steps`` identical readings in a row (a stuck meter),
    when that run ends within the last ``lookback_steps`` steps: an old episode that has since
    ended does not fail the series forever. Zero runs count unless ``include_zero`` is off; a
    series constant over all its history passes only with ``allow_constant``."""
    return _flat_line(_prepare(frame, ctx), spec)


def _flat_line(f: _Frame, spec: CheckSpec) -> list[CheckResult]:
    limit = int(spec.params["max_steps"])
    include_zero = bool(spec.params.get("include_zero", True))
    allow_constant = bool(spec.params.get("allow_constant", False))
    lookback = int(spec.params["lookback_steps"])
    n = len(f.y)
    best_len = np.zeros(f.n_series, dtype=np.int64)
    best_start = np.full(f.n_series, -1, dtype=np.int64)
    if n:
        same = np.r_[False, (f.y[1:] == f.y[:-1]) & (f.codes[1:] == f.codes[:-1])]
        run_start = np.flatnonzero(~same)
        run_len = np.diff(np.r_[run_start, n])
        run_code = f.codes[run_start]
        run_end = run_start + run_len - 1
        series_last = f.idx[f.ends - 1][run_code]
        keep = (run_len > limit) & (f.idx[run_end] > series_last - lookback)
        if not include_zero:
            keep &= f.y[run_start] != 0
        if allow_constant:
            keep &= run_len < f.counts[run_code]
        if keep.any():
            runs = pd.DataFrame(
                {"code": run_code[keep], "len": run_len[keep], "start": run_start[keep]}
            ).sort_values(["code", "len"])
            top = runs.drop_duplicates("code", keep="last")
            best_len[top["code"].to_numpy()] = top["len"].to_numpy()
            best_start[top["code"].to_numpy()] = top["start"].to_numpy()
    out = []
    for s in range(f.n_series):
        uid = str(f.ids[s])
        if best_len[s] == 0:
            out.append(
                _result(
                    spec,
                    uid,
                    True,
                    f"series {uid!r}: no run of identical readings longer than {limit} steps "
                    f"in the last {lookback} steps",
                    value=0.0,
                    threshold=float(limit),
                )
            )
            continue
        start = int(best_start[s])
        length = int(best_len[s])
        first, last = f.ts(start), f.ts(start + length - 1)
        out.append(
            _result(
                spec,
                uid,
                False,
                f"series {uid!r}: stuck at {_fmt_num(float(f.y[start]))} for {length} readings "
                f"in a row from {_fmt_ts(first)} to {_fmt_ts(last)} (limit {limit})",
                value=float(length),
                threshold=float(limit),
                at=first,
            )
        )
    return out


def check_spikes(frame: pd.DataFrame, spec: CheckSpec, ctx: CheckContext) -> list[CheckResult]:
    """Fail a series with a value in its last ``lookback_steps`` steps that is more than
    ``max_z`` robust standard deviations away from its seasonal neighbours.

    The residual of a value is its distance to the median of the same phase in up to three
    seasons before and three after (``t ± m, ± 2m, ± 3m``): the daily or weekly pattern drops
    out, a spike cannot hide itself by being its own reference, and it does not make its
    neighbours look like spikes (a plain seasonal difference would flag ``t + m`` as well).
    Each series' residuals are scaled by the larger of 1.4826 x MAD and the 90th percentile of
    absolute deviations / 1.645: MAD alone calls every kettle a spike in household meter data
    (heavy tails) and is 0 when most residuals are equal.
    """
    return _spikes(_prepare(frame, ctx), spec, ctx)


_NEIGHBOURS = (-3, -2, -1, 1, 2, 3)  # seasons either side whose median is a value's reference


def _seasonal_residuals(f: _Frame, m: int) -> np.ndarray:
    """``y`` minus the median of the same phase up to three seasons either side (NaN when
    none of them was observed).

    Series are laid on a grid matrix (one row per series, one column per step, NaN where no
    observation), a chunk of series at a time, so a neighbour is a column shift rather than a
    lookup: contiguous array work instead of fancy indexing over millions of rows.
    """
    resid = np.full(len(f.y), np.nan)
    first = f.idx[f.starts]
    spans = f.idx[f.ends - 1] - first + 1
    reach = 3 * m
    for lo, hi in _chunks(spans, _CHUNK_CELLS // (len(_NEIGHBOURS) + 1)):
        width = int(spans[lo:hi].max())
        rows = slice(int(f.starts[lo]), int(f.ends[hi - 1]))
        r_idx = f.codes[rows] - lo
        c_idx = f.idx[rows] - first[f.codes[rows]]
        padded = np.full((hi - lo, width + 2 * reach), np.nan)
        padded[r_idx, c_idx + reach] = f.y[rows]
        near = np.stack(
            [padded[:, reach + k * m : reach + k * m + width] for k in _NEIGHBOURS], axis=2
        )
        near.sort(axis=2)  # NaN sort last
        count = np.isfinite(near).sum(axis=2)
        lower = np.take_along_axis(near, (np.maximum(count - 1, 0) // 2)[..., None], axis=2)
        upper = np.take_along_axis(near, (count // 2)[..., None], axis=2)
        median = np.where(count > 0, (lower[..., 0] + upper[..., 0]) / 2, np.nan)
        resid[rows] = f.y[rows] - median[r_idx, c_idx]
    return resid


def _spikes(f: _Frame, spec: CheckSpec, ctx: CheckContext) -> list[CheckResult]:
    limit = float(spec.params["max_z"])
    lookback = int(spec.params["lookback_steps"])
    m = max(1, ctx.season_length)
    worst_z = np.zeros(f.n_series)
    worst_row = np.full(f.n_series, -1, dtype=np.int64)
    if len(f.y):
        resid = _seasonal_residuals(f, m)
        rows = np.flatnonzero(np.isfinite(resid))
        r = resid[rows]
        group = f.codes[rows]
        (med,) = _grouped_quantiles(r, group, f.n_series, (0.5,))
        dev = np.abs(r - med[group])
        mad, q90 = _grouped_quantiles(dev, group, f.n_series, (0.5, 0.9))
        scale = np.maximum(1.4826 * mad, q90 / 1.6449)[group]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(scale > 0, dev / scale, 0.0)
        series_last = f.idx[f.ends - 1]
        recent = np.flatnonzero(f.idx[rows] > series_last[group] - lookback)
        if len(recent):
            zr = pd.Series(z[recent])
            top = zr.groupby(group[recent]).idxmax()
            codes_top = top.index.to_numpy(dtype=np.int64)
            at = top.to_numpy(dtype=np.int64)
            worst_z[codes_top] = zr.to_numpy()[at]
            worst_row[codes_top] = rows[recent[at]]
    out = []
    for s in range(f.n_series):
        uid = str(f.ids[s])
        z_s = float(worst_z[s])
        if worst_row[s] < 0 or z_s <= limit:
            out.append(
                _result(
                    spec,
                    uid,
                    True,
                    f"series {uid!r}: no spike in the last {lookback} steps (largest robust "
                    f"z-score {z_s:.1f}, limit {limit:g})",
                    value=z_s,
                    threshold=limit,
                )
            )
            continue
        row = int(worst_row[s])
        at = f.ts(row)
        out.append(
            _result(
                spec,
                uid,
                False,
                f"series {uid!r}: outlier {_fmt_num(float(f.y[row]))} at {_fmt_ts(at)}, robust "
                f"z-score {z_s:.1f} against its seasonal neighbours (limit {limit:g})",
                value=z_s,
                threshold=limit,
                at=at,
            )
        )
    return out


def check_level_shift(frame: pd.DataFrame, spec: CheckSpec, ctx: CheckContext) -> list[CheckResult]:
    """Find the latest lasting jump in each series' level; the result's ``at`` is when it
    happened, and ``level_shift_cuts`` turns failed results into training-window starts.

    Method, in three steps:

    1. *Candidates.* The series is cut into blocks of one season (the daily or weekly pattern
       cancels in a block's median). At each block boundary the median of the ``window_steps``
       before is compared with the median of the same span after, and the difference is scaled
       by the series' noise (MAD of block-to-block changes, which a step or a slow trend barely
       moves) into a robust z. A boundary is a candidate when ``z >= min_z`` and the relative
       change (against the larger level) is at least ``min_relative_change``: the first rules
       out noise, the second a change nobody would call a new regime.
    2. *Lasting.* A candidate must hold over windows four times as long (an outage of a week, a
       cold snap, a holiday, is not a new regime), and, when the series has a year of history
       before it, it must remain after dividing out the change across the same dates a year
       earlier (the first cold week of winter or the summer peak is the annual cycle, not a new
       regime). The latest candidate that lasts is the shift.
    3. *When.* A median window cannot place a step exactly (it flips as soon as most of the
       window has moved), so the time is refined to the step by a CUSUM split (largest
       standardised difference of means, on winsorised raw values) within a window either side.
    """
    return _level_shift(_prepare(frame, ctx), spec, ctx)


@dataclass
class _Shift:
    block: int  # boundary block (first block of the new level)
    z: float
    before: float
    after: float
    yearly: float | None  # the same change a year earlier (ratio), when there is history


def _level_shift(f: _Frame, spec: CheckSpec, ctx: CheckContext) -> list[CheckResult]:
    min_z = float(spec.params["min_z"])
    min_rel = float(spec.params["min_relative_change"])
    m = max(1, ctx.season_length)
    w = max(1, round(int(spec.params["window_steps"]) / m))  # window, in blocks
    year_blocks = _year_steps(ctx.frequency) // m
    if year_blocks < 4 * w:
        year_blocks = 0  # a block spans most of a year: the annual cycle is already inside it
    n_s = f.n_series
    shifts: dict[int, _Shift] = {}
    best_z = np.zeros(n_s)
    if len(f.y):
        first = f.idx[f.starts]
        block = (f.idx - first[f.codes]) // m
        n_blocks = int(block.max()) + 1
        ok = np.isfinite(f.y)
        key = f.codes[ok] * n_blocks + block[ok]
        grouped = pd.Series(f.y[ok]).groupby(key)
        med = grouped.median()
        cnt = grouped.size()
        # A block with less than half its steps observed says little about the level.
        med = med[cnt.to_numpy() >= max(1, m // 2)]
        keys = med.index.to_numpy(dtype=np.int64)
        values = med.to_numpy()
        blocks_of = np.bincount(keys // n_blocks, minlength=n_s)
        chunk = max(1, _CHUNK_CELLS // max(1, n_blocks * w))
        for lo in range(0, n_s, chunk):
            hi = min(n_s, lo + chunk)
            sel = (keys >= lo * n_blocks) & (keys < hi * n_blocks)
            mat = np.full((hi - lo, n_blocks), np.nan)
            k = keys[sel]
            mat[k // n_blocks - lo, k % n_blocks] = values[sel]
            live = blocks_of[lo:hi] >= 2 * w
            if live.any():
                for row, found in _scan(mat, live, w, min_z, min_rel, year_blocks, best_z, lo):
                    shifts[lo + row] = found
    out = []
    cut = bool(spec.params.get("cut_training", True))
    for s in range(n_s):
        uid = str(f.ids[s])
        shift = shifts.get(s)
        if shift is None:
            out.append(
                _result(
                    spec,
                    uid,
                    True,
                    f"series {uid!r}: no lasting level shift (largest robust z {best_z[s]:.1f}; "
                    f"limits z {min_z:g} and {min_rel:.0%} change over {w * m} steps)",
                    value=float(best_z[s]),
                    threshold=min_z,
                )
            )
            continue
        at = _refine(f, s, shift.block, w, m)
        change = (
            f"x{shift.after / shift.before:.2f}"
            if shift.before * shift.after > 0
            else f"a change of {_fmt_num(shift.after - shift.before)}"
        )
        yearly = (
            f", against x{shift.yearly:.2f} over the same dates a year earlier"
            if shift.yearly is not None
            else ""
        )
        out.append(
            _result(
                spec,
                uid,
                False,
                f"series {uid!r}: level shift at {_fmt_ts(at)} from about "
                f"{_fmt_num(shift.before)} to about {_fmt_num(shift.after)} ({change}"
                f"{yearly}; robust z {shift.z:.1f}; limits z {min_z:g} and {min_rel:.0%} change)"
                + ("; training starts there" if cut else ""),
                value=shift.z,
                threshold=min_z,
                at=at,
            )
        )
    return out


def _year_steps(frequency: str) -> int:
    """Steps in 52 weeks (364 days keeps weekdays aligned a year apart)."""
    offset = offset_of(frequency)
    if isinstance(offset, Tick):
        return int(pd.Timedelta(days=364) // pd.Timedelta(offset))
    grid = pd.date_range("2001-01-01", periods=2, freq=offset)
    return max(1, int(pd.Timedelta(days=364) / (grid[1] - grid[0]) + 0.5))


def _scan(
    mat: np.ndarray,
    live: np.ndarray,
    w: int,
    min_z: float,
    min_rel: float,
    year_blocks: int,
    best_z: np.ndarray,
    offset: int,
) -> list[tuple[int, _Shift]]:
    """Candidates for a chunk of series at once (rows of ``mat``, block medians), then the
    lasting test for the few rows that have any."""
    n_blocks = mat.shape[1]
    if n_blocks < 2 * w:
        return []
    windows = np.lib.stride_tricks.sliding_window_view(mat, w, axis=1)  # (S, B-w+1, w)
    valid = np.isfinite(windows).sum(axis=2)
    # All-NaN windows (gaps) are expected here and give NaN, which the masks below handle.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        wmed = np.nanmedian(windows, axis=2)
        noise = np.nanmedian(np.abs(np.diff(mat, axis=1)), axis=1)
        floor = 1e-9 * np.nanmax(np.abs(mat), axis=1, initial=0.0)
    wmed[valid < max(1, (w + 1) // 2)] = np.nan
    before = wmed[:, : n_blocks - 2 * w + 1]  # window ending at block k-1, k = w .. B-w
    after = wmed[:, w:]
    diff = after - before
    # Noise of one block: MAD of block-to-block changes / sqrt(2); a difference of two window
    # medians of w blocks then has a spread of about 1.2533 * sigma * sqrt(2 / w).
    sigma = 1.4826 * noise / math.sqrt(2.0)
    spread = np.maximum(1.2533 * sigma * math.sqrt(2.0 / w), floor)[:, None]
    level = np.maximum(np.abs(before), np.abs(after))
    with np.errstate(all="ignore"):
        z = np.abs(diff) / spread
        rel = np.abs(diff) / level
    z = np.where(np.isfinite(z), z, 0.0)
    rel = np.where(np.isfinite(rel), rel, 0.0)
    z[~live] = 0.0
    best_z[offset : offset + len(mat)] = np.max(z, axis=1, initial=0.0)
    hit = (z >= min_z) & (rel >= min_rel)
    found = []
    for row in np.flatnonzero(hit.any(axis=1)):
        shift = _latest_lasting(mat[row], hit[row], z[row], w, min_rel, year_blocks)
        if shift is not None:
            found.append((int(row), shift))
    return found


def _latest_lasting(
    x: np.ndarray, hit: np.ndarray, z: np.ndarray, w: int, min_rel: float, year_blocks: int
) -> _Shift | None:
    """Walk the runs of candidate boundaries from the latest back; the first that lasts wins.

    One true shift lights up every boundary within a window of it, so each run of neighbouring
    candidates is one event, tested at its peak.
    """
    cols = np.flatnonzero(hit)
    breaks = np.flatnonzero(np.diff(cols) > 1)
    runs = np.split(cols, breaks + 1)
    long_w = 4 * w
    n = len(x)
    for run in reversed(runs):
        peak = int(run[np.argmax(z[run])])
        k = peak + w
        before = _median(x[max(0, k - long_w) : k], w)
        after = _median(x[k : min(n, k + long_w)], w)
        if before is None or after is None:
            continue
        if _relative(before, after) < min_rel:
            continue
        yearly: float | None = None
        if year_blocks and k - year_blocks - long_w >= 0:
            b1 = _median(x[k - year_blocks - long_w : k - year_blocks], w)
            a1 = _median(x[k - year_blocks : min(n, k - year_blocks + long_w)], w)
            if b1 is not None and a1 is not None and min(before, after, b1, a1) > 0:
                yearly = a1 / b1
                adjusted = (after / before) / yearly
                if 1.0 - min(adjusted, 1.0 / adjusted) < min_rel:
                    continue
        return _Shift(k, float(z[peak]), before, after, yearly)
    return None


def _median(values: np.ndarray, need: int) -> float | None:
    """Median of the finite values, or None when fewer than ``need`` of them."""
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if len(finite) >= need else None


def _relative(a: float, b: float) -> float:
    level = max(abs(a), abs(b))
    return abs(b - a) / level if level > 0 else 0.0


def _refine(f: _Frame, s: int, boundary_block: int, w: int, m: int) -> pd.Timestamp:
    """The step where the shift happened: the CUSUM split (largest standardised difference of
    means) of the winsorised values within ``w`` blocks either side of the boundary."""
    lo, hi = int(f.starts[s]), int(f.ends[s])
    rel = f.idx[lo:hi] - f.idx[lo]
    centre = boundary_block * m
    inside = np.flatnonzero(
        (rel >= centre - w * m) & (rel < centre + w * m) & np.isfinite(f.y[lo:hi])
    )
    if len(inside) < 3:
        return f.ts(lo + int(np.searchsorted(rel, centre)))
    v = f.y[lo:hi][inside]
    q_lo, q_hi = np.quantile(v, [0.05, 0.95])
    v = np.clip(v, q_lo, q_hi)
    n = len(v)
    i = np.arange(1, n)
    csum = np.cumsum(v)[:-1]
    mean_before = csum / i
    mean_after = (v.sum() - csum) / (n - i)
    stat = np.abs(mean_after - mean_before) * np.sqrt(i * (n - i) / n)
    split = int(np.argmax(stat)) + 1  # first row of the new level
    return f.ts(lo + int(inside[split]))


# ----------------------------------------------------------------------------------------------
# Feed faults: the newest delivery against the series' own recent history
# ----------------------------------------------------------------------------------------------

FEED_FAULT_KINDS = ("zeros", "stuck", "register", "sign", "scale", "shift")


def reference_period(m: int) -> int:
    """The reference period: a week for sub-daily data with a daily season (same hour, same
    weekday), else the main season (same weekday of daily data, same month of monthly)."""
    return 7 * m if m >= 24 else max(1, m)


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


def _run_lengths(mat: np.ndarray) -> np.ndarray:
    """For each cell, how many equal finite values end there in its row (1 for a new value,
    0 for NaN)."""
    out = np.zeros(mat.shape, dtype=np.int64)
    if mat.shape[1] == 0:
        return out
    out[:, 0] = np.isfinite(mat[:, 0])
    for c in range(1, mat.shape[1]):
        same = mat[:, c] == mat[:, c - 1]
        out[:, c] = np.where(same, out[:, c - 1] + 1, np.isfinite(mat[:, c]).astype(np.int64))
    return out


def _nanmedian(a: np.ndarray, axis: int) -> np.ndarray:
    return _nanquantiles(a, (0.5,), axis)[0]


def _nanquantiles(a: np.ndarray, qs: Sequence[float], axis: int = -1) -> list[np.ndarray]:
    """Quantiles (linear) of the finite values along ``axis``, NaN where there are none: one
    sort for all of them, where numpy's nanquantile loops over rows in Python."""
    s = np.sort(np.moveaxis(np.where(np.isfinite(a), a, np.nan), axis, -1), axis=-1)
    if s.shape[-1] == 0:
        return [np.full(s.shape[:-1], np.nan) for _ in qs]
    count = np.isfinite(s).sum(axis=-1)
    out = []
    for q in qs:
        pos = q * np.maximum(count - 1, 0)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
        a_lo = np.take_along_axis(s, lo[..., None], axis=-1)[..., 0]
        a_hi = np.take_along_axis(s, hi[..., None], axis=-1)[..., 0]
        value = a_lo + (pos - lo) * (a_hi - a_lo)
        out.append(np.where(count > 0, value, np.nan))
    return out


def _feed_fault(f: _Frame, spec: CheckSpec, ctx: CheckContext) -> list[CheckResult]:
    p = spec.params
    m = max(1, ctx.season_length)
    period = reference_period(m)
    k_periods = int(p["periods"])
    min_steps = int(p["min_steps"])
    max_ratio = float(p["max_ratio"])
    window = feed_fault_window(f.newest, ctx.delivered_after, ctx.frequency)
    if window is None:
        window = int(p["window_steps"])
    d = min(window, int(p["max_window_steps"]))
    steps_per_hour = _steps_per_hour(ctx.frequency)
    max_lag = 0
    if steps_per_hour and m >= 24:
        max_lag = min(int(p["max_shift_hours"]) * steps_per_hour, m // 2)
    first_k = -(-d // period) if d > 0 else 1  # reference periods start before the delivery
    width = d + (first_k + k_periods - 1) * period + max_lag
    lo_col = f.newest_idx - width + 1
    kind = np.full(f.n_series, "", dtype=object)
    value = np.zeros(f.n_series)
    detail = np.full(f.n_series, "", dtype=object)
    n_new = np.zeros(f.n_series, dtype=np.int64)
    firm = np.zeros(f.n_series, dtype=bool)  # a shift the seam confirms: excluded, not warned
    if d > 0 and f.n_series:
        keep = f.idx >= lo_col
        # Never negative (or never positive) over everything before the delivery.
        before = f.idx <= f.newest_idx - d
        y_before = np.where(before, f.y, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lows = np.fmin.reduceat(np.where(np.isfinite(y_before), y_before, np.inf), f.starts)
            highs = np.fmax.reduceat(np.where(np.isfinite(y_before), y_before, -np.inf), f.starts)
        seam, alone = _seams(f, d, steps_per_hour, max_lag // steps_per_hour if max_lag else 0)
        day = period // 7
        # (seam, displaced against the fleet) -> summed profiles (mine, week, same) and counts
        sums: dict[tuple[int, bool], list[np.ndarray]] = {}
        profiled = np.zeros(f.n_series, dtype=bool)  # a daily profile was measured
        spans = np.full(f.n_series, width, dtype=np.int64)
        for lo, hi in _chunks(spans):
            rows = np.flatnonzero(keep[f.starts[lo] : f.ends[hi - 1]]) + f.starts[lo]
            grid = np.full((hi - lo, width), np.nan)
            grid[f.codes[rows] - lo, f.idx[rows] - lo_col] = f.y[rows]
            found = _feed_fault_grid(
                grid,
                d,
                _FeedLimits(
                    first_k,
                    period,
                    k_periods,
                    max_lag,
                    steps_per_hour,
                    min_steps,
                    max_ratio,
                    float(p["shift_gain"]),
                ),
                lows[lo:hi],
                highs[lo:hi],
                np.where(alone[lo:hi], seam[lo:hi], 0),
            )
            kind[lo:hi], value[lo:hi], detail[lo:hi], n_new[lo:hi], firm[lo:hi], profiles = found
            if profiles is not None:
                profiled[lo:hi] = np.isfinite(profiles[0]).any(axis=1)
                _add_profiles(sums, seam[lo:hi], alone[lo:hi], profiles, profiled[lo:hi])
        shifted = _fleet_shifts(
            sums,
            seam,
            alone,
            profiled,
            n_new,
            kind,
            steps_per_hour,
            day,
            p,
            delivered=ctx.delivered_after is not None,
        )
        for r, hours, note in shifted:
            kind[r], value[r], detail[r], firm[r] = "shift", float(hours), note, True
    first_new = f.step_time(f.newest_idx - d + 1) if d > 0 else None
    span = (
        f"the newest delivery ({_steps(d)} from {_fmt_ts(first_new)} to {_fmt_ts(f.newest)})"
        if d > 0
        else "no new data since the last published run"
    )
    out = []
    for s in range(f.n_series):
        uid = str(f.ids[s])
        k = str(kind[s])
        if not k:
            out.append(
                _result(
                    spec,
                    uid,
                    True,
                    f"series {uid!r}: {span} is in line with its history"
                    if n_new[s]
                    else f"series {uid!r}: no new values in {span}",
                    value=float(value[s]),
                    threshold=max_ratio,
                )
            )
            continue
        failed = _result(
            spec,
            uid,
            False,
            f"series {uid!r}: feed fault '{k}': {span} {detail[s]}",
            value=float(value[s]),
            threshold=max_ratio if k == "scale" else None,
            at=first_new,
        )
        if k == "shift" and not firm[s]:
            # One series' daily profile moves by hours often enough on clean data (a holiday,
            # twin peaks half a day apart): alone it warns; across the fleet it holds the run.
            # A delivery displaced by the same hours at its seam is excluded (``firm``).
            failed = replace(failed, severity="warning", blocking=False, policy="warn")
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


_Profiles = tuple[np.ndarray, np.ndarray, np.ndarray]
_GridFound = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, _Profiles | None]
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
        rows = np.flatnonzero(
            (seam == lag) & (alone == solo) & profiled & ((kind == "") | (kind == "shift"))
        )
        if lag:
            hours = lag // steps_per_hour
            ratios = [
                moves.get(hours, np.inf) / e0 if 0 < e0 < np.inf else np.inf for e0, moves in errors
            ]
            summed = sum(moves.get(hours, np.inf) for _, moves in errors) / max(
                sum(e0 for e0, _ in errors), 1e-12
            )
            if not (summed < _SEAM_GAIN and all(r < 1.0 for r in ratios)):
                continue
            where = (
                f"starts {hours} h after the last published data"
                if hours > 0
                else f"ends {-hours} h before the rest of the fleet"
            )
            note = (
                f"{where}, and the summed daily profile of the {len(rows):,} series displaced "
                f"so matches best moved {hours:+d} h (error {summed:.0%} of the unmoved one, "
                f"limit {_SEAM_GAIN:.0%}; a time-zone mistake?)"
            )
        else:
            if not delivered:
                continue
            if len(rows) < max(int(p["min_series"]), 2) or len(rows) <= p["max_share"] * total:
                continue
            best = [min(moves, key=moves.__getitem__) for _, moves in errors if moves]
            # Half-hourly households' best moves scatter by an hour: within one, the move with
            # the least summed error.
            if len(best) != 2 or abs(best[0] - best[1]) > 1:
                continue
            hours = min(best, key=lambda h: sum(moves[h] for _, moves in errors))
            ratios = [moves[hours] / e0 if 0 < e0 < np.inf else np.inf for e0, moves in errors]
            if min(e0 for e0, _ in errors) <= 0.5 or not all(r < gain for r in ratios):
                continue
            note = (
                f"is not displaced at its seam, but the summed daily profile of the "
                f"{len(rows):,} series alike matches best moved {hours:+d} h (error "
                f"{max(ratios):.0%} of the unmoved one, limit {gain:.0%}; a time-zone mistake?)"
            )
        out.extend((int(r), hours, note) for r in rows)
    return out


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
    first_k, period, k_periods, max_lag = lim.first_k, lim.period, lim.k_periods, lim.max_lag
    steps_per_hour, min_steps = lim.steps_per_hour, lim.min_steps
    max_ratio, shift_gain = lim.max_ratio, lim.shift_gain
    n, width = grid.shape
    new = grid[:, width - d :]
    hist = grid[:, : width - d]
    finite_new = np.isfinite(new)
    n_new = finite_new.sum(axis=1)
    kind = np.full(n, "", dtype=object)
    value = np.zeros(n)
    detail = np.full(n, "", dtype=object)

    def refs_at(lag: int) -> np.ndarray:
        stack = [
            grid[:, width - d - k * period + lag : width - k * period + lag]
            for k in range(first_k, first_k + k_periods)
        ]
        return _nanmedian(np.stack(stack, axis=2), axis=2)

    seasonal = refs_at(0)  # same positions of the reference periods, median over them
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

    # zeros
    all_zero = judged & (np.where(finite_new, new == 0, True).all(axis=1))
    # Households at zero for a week, a holiday, are real where the series is often zero.
    rarely_zero = zero_share < 0.05
    is_zeros = all_zero & rarely_zero
    # stuck: the run of one value at the end of the delivery
    runs = _run_lengths(grid)
    runs_new = runs[:, width - d :]
    last_col = d - 1 - np.argmax(finite_new[:, ::-1], axis=1)
    tail_run = runs_new[np.arange(n), last_col]
    last_new = new[np.arange(n), last_col]
    hist_run = runs[:, : width - d].max(axis=1, initial=0)
    need = max(min_steps, 2)
    is_stuck = (
        judged
        & ~all_zero
        & (tail_run >= max(need, d / 2))
        & (tail_run > 3 * hist_run)
        & (np.nan_to_num(last_new) != 0)  # a run of zeros is the zeros test's to judge
    )
    # register: never falls, rises far beyond the history's range, where history went both ways
    diffs = np.diff(np.where(finite_new, new, np.nan), axis=1)
    fin_d = np.isfinite(diffs)
    never_falls = np.where(fin_d, diffs >= 0, True).all(axis=1)
    rises = np.where(fin_d, diffs > 0, False).sum(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rise = np.nanmax(new, axis=1) - np.nanmin(new, axis=1)
        h_diffs = np.diff(hist, axis=1)
        h_up = np.nanmean(np.where(np.isfinite(h_diffs), h_diffs > 0, np.nan), axis=1)
        (step_up,) = _nanquantiles(diffs, (0.5,))
    # A register grows every step by about one interval value: its steps are of the order of
    # the series' own magnitude, where a trend (prices, a recession's unemployment) creeps.
    is_register = (
        judged
        & (n_new >= need)
        & never_falls
        & (rises >= 0.8 * np.maximum(fin_d.sum(axis=1), 1))
        & (rise > 2.0 * (q95 - q05))
        & (step_up >= 0.5 * np.abs(mag_seasonal))
        & (h_up < 0.8)
    )
    # sign
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        neg_new = np.nanmean(np.where(finite_new, new < 0, np.nan), axis=1)
        pos_new = np.nanmean(np.where(finite_new, new > 0, np.nan), axis=1)
    # A flip mirrors the series: mostly of the other sign, at its usual magnitude, where the
    # series kept well away from zero (a spread drifting below zero for the first time is not).
    mirrored = (mag_new > 0.5 * mag_seasonal) & (mag_new < 2.0 * mag_seasonal)
    away = q05_abs > 0.1 * mag_recent
    became_negative = (lows >= 0) & (neg_new >= 0.8)
    became_positive = (highs <= 0) & (lows < 0) & (pos_new >= 0.8)
    is_sign = judged & (became_negative | became_positive) & mirrored & away
    # scale: against the nearest of three references, for the median and the 90th percentile
    # of |y| both: a unit change moves the whole distribution, a household away on holiday
    # drops its median far more than its peaks.
    # Continuity: the first new value against the last one before it (a unit change breaks
    # it; a level that moved over months, as interest rates do, does not).
    last_abs = np.abs(last_value)
    first_abs = np.abs(new[np.arange(n), np.argmax(finite_new, axis=1)])
    tiny = np.where(crossing, floor, 1e-6 * floor)  # night readings sit near the floor
    ratios = np.stack(
        [(mag_new + floor) / (r + floor) for r in (mag_seasonal, mag_recent)]
        + [(top_new + floor) / (r + floor) for r in (top_seasonal, top_recent)]
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
    has_scale = np.isfinite(q90) & (q90 > 0)
    # An all-zero delivery is the zeros test's to judge (a household often at zero may rest).
    is_scale = (
        judged & has_scale & ~all_zero & ((scale_by > max_ratio) | (scale_by < 1.0 / max_ratio))
    )
    # shift: whole hours, sub-daily data with a full day delivered
    is_shift = np.zeros(n, dtype=bool)
    firm = np.zeros(n, dtype=bool)
    profiles: _Profiles | None = None
    best_hours = np.zeros(n, dtype=np.int64)
    shift_gain_of = np.ones(n)
    day = period // 7
    if max_lag and steps_per_hour and d >= day:
        cols = (d // day) * day  # the delivery's last whole days

        def profile(values: np.ndarray) -> np.ndarray:
            """Mean daily profile over whole days, standardised (level and size drop out)."""
            days = values.shape[1] // day
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                prof = np.nanmean(values.reshape(n, days, day), axis=1)
                mean = np.nanmean(prof, axis=1, keepdims=True)
                std = np.nanstd(prof, axis=1, keepdims=True)
            with np.errstate(all="ignore"):
                return np.asarray((prof - mean) / std)

        # The delivery's whole days against the week just before it, on the same phase.
        mine = profile(new[:, d - cols :])
        back = (7 + (1 if d % day else 0)) * day
        start = width - cols - back
        theirs = profile(grid[:, start : start + 7 * day]) if start >= 0 else mine * np.nan
        # A profile needs a day of new values and most of the week before (a feed back from an
        # outage has neither).
        week_seen = np.isfinite(grid[:, max(start, 0) : max(start, 0) + 7 * day]).sum(axis=1)
        enough = (n_new >= day) & (week_seen >= 7 * day // 2)
        mine = np.where(enough[:, None], mine, np.nan)

        same_days = profile(seasonal[:, d - cols :])

        def best_lag(ref: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            """Error unmoved, the best error moved by whole hours, and that move in hours."""
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                e0 = np.asarray(np.nanmean((mine - ref) ** 2, axis=1))
                best = np.full(n, np.inf)
                hours_of = np.zeros(n, dtype=np.int64)
                for hours in range(1, min(max_lag // steps_per_hour, _PROFILE_HOURS) + 1):
                    for lag in (hours * steps_per_hour, -hours * steps_per_hour):
                        e = np.asarray(np.nanmean((mine - np.roll(ref, lag, axis=1)) ** 2, axis=1))
                        better = np.isfinite(e) & (e < best)
                        best = np.where(better, e, best)
                        hours_of = np.where(better, lag // steps_per_hour, hours_of)
            return e0, best, hours_of

        # Two references, the week just before and the same days of the reference weeks, must
        # agree on the move: one alone is fooled by a holiday or a change of season.
        e_week, b_week, h_week = best_lag(theirs)
        e_same, b_same, h_same = best_lag(same_days)
        with np.errstate(divide="ignore", invalid="ignore"):
            gain_week = np.where(e_week > 0, b_week / e_week, 1.0)
            gain_same = np.where(e_same > 0, b_same / e_same, 1.0)
        best_hours = h_week
        shift_gain_of = np.fmax(gain_week, gain_same)
        # Unmoved, the profiles disagree (correlation below 0.75); moved, they agree far better.
        # Only a series with a stable daily profile (its two references agree) can show a
        # shift: a household's week-to-week noise cannot.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            stable = np.nanmean((theirs - same_days) ** 2, axis=1) < 0.2
        is_shift = (
            judged
            & stable
            & (h_week == h_same)
            & (np.fmin(e_week, e_same) > 0.5)
            & (shift_gain_of < shift_gain)
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
            judged
            & (seam != 0)
            & (seam_gain < _SEAM_GAIN)
            & (moved_week < e_week)
            & (moved_same < e_same)
        )
        best_hours = np.where(firm, seam // steps_per_hour, best_hours)
        shift_gain_of = np.where(firm, seam_gain, shift_gain_of)
        is_shift = is_shift | firm
        profiles = (mine, theirs, same_days)

    for name, hit in (
        ("zeros", is_zeros),
        ("stuck", is_stuck),
        ("register", is_register),
        ("sign", is_sign),
        ("scale", is_scale),
        ("shift", is_shift),
    ):
        for r in np.flatnonzero(hit & (kind == "")).tolist():
            kind[r] = name
            if name == "zeros":
                value[r] = float(zero_share[r])
                detail[r] = (
                    f"is all zeros ({int(n_new[r])} values) where only "
                    f"{zero_share[r]:.0%} of the reference window was 0"
                )
            elif name == "stuck":
                value[r] = float(tail_run[r])
                detail[r] = (
                    f"ends in {int(tail_run[r])} identical readings of "
                    f"{_fmt_num(float(new[r][finite_new[r]][-1]))}; the longest such run in the "
                    f"reference window was {int(hist_run[r])}"
                )
            elif name == "register":
                value[r] = float(rise[r] / max(q95[r] - q05[r], 1e-12))
                detail[r] = (
                    f"never falls and rises by {_fmt_num(float(rise[r]))}, "
                    f"{value[r]:.0f}x the range of its reference window "
                    "(a cumulative meter register instead of interval values?)"
                )
            elif name == "sign":
                value[r] = float(neg_new[r] if became_negative[r] else pos_new[r])
                detail[r] = (
                    f"is {value[r]:.0%} negative where the series was never negative"
                    if became_negative[r]
                    else f"is {value[r]:.0%} positive where the series was never positive"
                )
            elif name == "scale":
                value[r] = float(scale_by[r])
                detail[r] = (
                    f"has a typical magnitude of {_fmt_num(float(mag_new[r]))}, "
                    f"{_fmt_ratio(float(scale_by[r]))} the same positions of its last "
                    f"{k_periods} periods ({_fmt_num(float(mag_seasonal[r]))}), its last period "
                    f"({_fmt_num(float(mag_recent[r]))}) and its first value against the last "
                    f"before it ({_fmt_num(float(first_abs[r]))} after "
                    f"{_fmt_num(float(last_value[r]))}) (limit {max_ratio:g}x either way; "
                    "a change of units?)"
                )
            elif firm[r]:
                value[r] = float(best_hours[r])
                hours = int(best_hours[r])
                detail[r] = (
                    (
                        f"starts {hours} h after the last published data"
                        if hours > 0
                        else f"ends {-hours} h before the rest of the fleet"
                    )
                    + f", and its daily profile matches moved {hours:+d} h (error "
                    f"{shift_gain_of[r]:.0%} of the unmoved one, limit {_SEAM_GAIN:.0%}; "
                    "a time-zone mistake?)"
                )
            else:
                value[r] = float(best_hours[r])
                detail[r] = (
                    f"matches its daily profile best when moved {int(best_hours[r]):+d} h "
                    f"(error {shift_gain_of[r]:.0%} of the unmoved one, limit "
                    f"{shift_gain:.0%}; a time-zone mistake?)"
                )
    firm &= kind == "shift"
    return kind, value, detail, n_new, firm, profiles


def _fmt_ratio(ratio: float) -> str:
    if ratio >= 1:
        return f"{_fmt_num(ratio)}x above"
    return f"{_fmt_num(1.0 / ratio)}x below"


# ----------------------------------------------------------------------------------------------
# Run-level checks
# ----------------------------------------------------------------------------------------------


def measure(
    frame: pd.DataFrame,
    series_results: Sequence[CheckResult],
    specs: Mapping[str, CheckSpec],
    ctx: CheckContext,
) -> RunFigures:
    """This run's figures (for the next run's volume parity and pass share)."""
    f = _prepare(frame, ctx)
    return _measure(f, series_results, specs)


def _measure(
    f: _Frame, series_results: Sequence[CheckResult], specs: Mapping[str, CheckSpec]
) -> RunFigures:
    if f.n_series == 0:
        return RunFigures()
    vp = specs.get("volume_parity")
    fr = specs.get("freshness")
    lag = int(
        (vp.params.get("lag_steps") if vp else None)
        or (fr.params.get("max_lag_steps") if fr else None)
        or 0
    )
    active = int((f.newest_idx - f.idx[f.ends - 1] <= lag).sum())
    # A feed fault has its own fleet-level limit (``check_feed_fault_share``): it does not
    # count against the pass share, so a few faulty series are excluded, not held.
    failing = {
        r.unique_id
        for r in series_results
        if not r.passed
        and r.unique_id is not None
        and r.check != "feed_fault"
        and (r.blocking or r.severity == "error")
    }
    faulty = {
        r.unique_id
        for r in series_results
        if not r.passed and r.unique_id is not None and r.check == "feed_fault"
    }
    ids = set(map(str, f.ids))
    return RunFigures(f.n_series, len(f.y), active, len(ids - failing), len(faulty))


def check_volume_parity(
    current: RunFigures, spec: CheckSpec, ctx: CheckContext
) -> list[CheckResult]:
    """Compare this run's volume with the previous run's: the share of reporting series that
    stopped reporting, the share of series that appeared, and the drop in rows per series."""
    prev = ctx.previous
    p = spec.params
    if prev is None or prev.series == 0:
        return [
            _result(
                spec,
                None,
                True,
                f"volume parity: {current.series:,} series and {current.rows:,} rows; no "
                "previous run to compare with",
                value=0.0,
                threshold=float(p["max_vanished_share"]),
            )
        ]
    base_active = prev.active_series or prev.series
    vanished = max(0, base_active - current.active_series)
    vanished_share = vanished / base_active if base_active else 0.0
    appeared = max(0, current.series - prev.series)
    appeared_share = appeared / prev.series
    rps_prev = prev.rows / prev.series
    rps_now = current.rows / current.series if current.series else 0.0
    rows_drop = max(0.0, 1.0 - rps_now / rps_prev) if rps_prev else 0.0
    problems: list[tuple[float, float, str]] = []
    if vanished_share > p["max_vanished_share"]:
        problems.append(
            (
                vanished_share,
                float(p["max_vanished_share"]),
                f"{vanished:,} of {base_active:,} series reporting at the previous run "
                f"({vanished_share:.1%}) no longer report "
                f"(limit {p['max_vanished_share']:.1%})",
            )
        )
    if appeared_share > p["max_appeared_share"]:
        problems.append(
            (
                appeared_share,
                float(p["max_appeared_share"]),
                f"{appeared:,} series appeared on top of the previous run's {prev.series:,} "
                f"({appeared_share:.1%}, limit {p['max_appeared_share']:.1%})",
            )
        )
    if rows_drop > p["max_rows_drop_share"]:
        problems.append(
            (
                rows_drop,
                float(p["max_rows_drop_share"]),
                f"rows per series fell {rows_drop:.1%} from {rps_prev:,.1f} to {rps_now:,.1f} "
                f"(limit {p['max_rows_drop_share']:.1%})",
            )
        )
    if problems:
        value, limit, _ = max(problems, key=lambda x: x[0] / x[1] if x[1] else math.inf)
        return [
            _result(
                spec,
                None,
                False,
                "volume parity: " + "; ".join(text for _, _, text in problems),
                value=value,
                threshold=limit,
            )
        ]
    return [
        _result(
            spec,
            None,
            True,
            f"volume parity: {current.series:,} series ({current.active_series:,} reporting) and "
            f"{current.rows:,} rows against {prev.series:,} series ({base_active:,} reporting) "
            f"and {prev.rows:,} rows at the previous run",
            value=vanished_share,
            threshold=float(p["max_vanished_share"]),
        )
    ]


def check_feed_fault_share(
    current: RunFigures,
    spec: CheckSpec,
    ctx: CheckContext,
    failed_results: Sequence[CheckResult] = (),
) -> list[CheckResult]:
    """Hold the run (policy ``stop``, whatever the series-level policy) when more than
    ``max_share`` of the series, and at least ``min_series``, have a feed fault: a fault across
    the fleet is a broken delivery, not a few broken meters. ``failed_results`` (the run's
    failed series-level results) let the sentence name the faults and the series."""
    limit, least = float(spec.params["max_share"]), int(spec.params["min_series"])
    faulty = current.feed_faults
    share = faulty / current.series if current.series else 0.0
    failed = share > limit and faulty >= least
    verb = "above" if failed else "within"
    mine = [r for r in failed_results if r.check == "feed_fault" and r.unique_id is not None]
    kinds: dict[str, list[str]] = {}
    for r in mine:
        kind = r.sentence.split("feed fault '", 1)[-1].split("'", 1)[0]
        kinds.setdefault(kind, []).append(str(r.unique_id))
    named = "; ".join(
        f"'{kind}' in {len(ids):,}: "
        + ", ".join(repr(i) for i in sorted(ids)[:5])
        + (f" and {len(ids) - 5:,} more" if len(ids) > 5 else "")
        for kind, ids in sorted(kinds.items(), key=lambda kv: -len(kv[1]))
    )
    return [
        CheckResult(
            check="feed_fault",
            passed=not failed,
            severity="error" if failed else spec.severity,
            blocking=True,
            policy="stop",
            unique_id=None,
            sentence=(
                f"feed faults: {faulty:,} of {current.series:,} series ({share:.1%}) have a "
                f"faulty newest delivery, {verb} the limit of {limit:.0%} of the fleet"
                + ("; the run is held" if failed else "")
                + (f" ({named})" if named else "")
            ),
            value=share,
            threshold=limit,
        )
    ]


def check_pass_share(current: RunFigures, spec: CheckSpec, ctx: CheckContext) -> list[CheckResult]:
    """Fail when the share of series that pass every blocking or error check dropped by more
    than ``max_drop`` (in share points) since the previous run, or is below ``min_share``."""
    max_drop, min_share = float(spec.params["max_drop"]), float(spec.params["min_share"])
    share = current.pass_share
    prev = ctx.previous
    what = (
        f"pass share: {share:.1%} of series ({current.passing_series:,} of {current.series:,}) "
        "pass every blocking or error check"
    )
    if share < min_share:
        return [
            _result(
                spec,
                None,
                False,
                f"{what}, below the minimum of {min_share:.1%}",
                value=share,
                threshold=min_share,
            )
        ]
    if prev is None or prev.series == 0:
        return [
            _result(
                spec,
                None,
                True,
                f"{what}; no previous run to compare with",
                value=0.0,
                threshold=max_drop,
            )
        ]
    drop = prev.pass_share - share
    passed = drop <= max_drop + 1e-12
    trend = f"down {drop * 100:.1f} points" if drop > 0 else f"up {-drop * 100:.1f} points"
    return [
        _result(
            spec,
            None,
            passed,
            f"{what}, {trend} from {prev.pass_share:.1%} at the previous run "
            f"(limit a drop of {max_drop * 100:.1f} points)",
            value=max(0.0, drop),
            threshold=max_drop,
        )
    ]


# ----------------------------------------------------------------------------------------------
# Running them, and reading the results
# ----------------------------------------------------------------------------------------------

_SERIES_FUNCS = {
    "freshness": lambda f, spec, ctx: _freshness(f, spec, ctx),
    "completeness": lambda f, spec, ctx: _completeness(f, spec, ctx),
    "flat_line": lambda f, spec, ctx: _flat_line(f, spec),
    "spikes": lambda f, spec, ctx: _spikes(f, spec, ctx),
    "level_shift": lambda f, spec, ctx: _level_shift(f, spec, ctx),
    "feed_fault": lambda f, spec, ctx: _feed_fault(f, spec, ctx),
}


def check_series(
    frame: pd.DataFrame, specs: Mapping[str, CheckSpec], ctx: CheckContext
) -> tuple[list[CheckResult], RunFigures]:
    """Run every enabled series-level check on ``frame`` (the whole fleet or one partition of
    series); returns the results and this frame's figures (sum them over partitions)."""
    f = _prepare(frame, ctx)
    results: list[CheckResult] = []
    for name in SERIES_CHECKS:
        spec = specs.get(name)
        if spec is not None and spec.enabled:
            results.extend(_SERIES_FUNCS[name](f, spec, ctx))
    return results, _measure(f, results, specs)


def check_run(
    current: RunFigures,
    specs: Mapping[str, CheckSpec],
    ctx: CheckContext,
    failed_results: Sequence[CheckResult] = (),
) -> list[CheckResult]:
    """Run the enabled run-level checks (feed-fault share, volume parity, pass share) on the
    run's figures; ``failed_results`` name the faults in the feed-fault share's sentence."""
    results: list[CheckResult] = []
    vp, ps = specs.get("volume_parity"), specs.get("pass_share")
    ff = specs.get("feed_fault")
    if ff is not None and ff.enabled:
        results.extend(check_feed_fault_share(current, ff, ctx, failed_results))
    if vp is not None and vp.enabled:
        results.extend(check_volume_parity(current, vp, ctx))
    if ps is not None and ps.enabled:
        results.extend(check_pass_share(current, ps, ctx))
    return results


def run_checks(
    frame: pd.DataFrame, specs: Mapping[str, CheckSpec], ctx: CheckContext
) -> tuple[list[CheckResult], RunFigures]:
    """Every enabled check over a whole frame: series-level results, then run-level ones."""
    results, figures = check_series(frame, specs, ctx)
    failed = [r for r in results if not r.passed]
    return results + check_run(figures, specs, ctx, failed), figures


def excluded_series(results: Iterable[CheckResult]) -> dict[str, list[str]]:
    """Series to leave out of this run (failed a check with policy ``exclude``), with the
    sentences that say why."""
    out: dict[str, list[str]] = {}
    for r in results:
        if not r.passed and r.policy == "exclude" and r.unique_id is not None:
            out.setdefault(r.unique_id, []).append(r.sentence)
    return out


def stop_results(results: Iterable[CheckResult]) -> list[CheckResult]:
    """Failed checks whose policy is ``stop``: each one holds the run."""
    return [r for r in results if not r.passed and r.policy == "stop"]


def level_shift_cuts(
    results: Iterable[CheckResult], specs: Mapping[str, CheckSpec] | None = None
) -> dict[str, pd.Timestamp]:
    """Where each shifted series' training window should start: the time of its latest
    detected level shift (results of the ``level_shift`` check that failed). With ``specs``,
    ``checks.level_shift.cut_training = false`` turns the cuts off (empty dict)."""
    spec = (specs or {}).get("level_shift")
    if spec is not None and not spec.params.get("cut_training", True):
        return {}
    return {
        r.unique_id: r.at
        for r in results
        if r.check == "level_shift"
        and not r.passed
        and r.unique_id is not None
        and r.at is not None
    }


def results_frame(results: Iterable[CheckResult], **constants: Any) -> pd.DataFrame:
    """Results as a frame with ``RESULT_COLUMNS`` (plus ``constants`` such as ``run_id``
    and ``pipeline`` as leading columns), ready to store."""
    rows = [
        (
            r.check,
            r.passed,
            r.severity,
            r.blocking,
            r.policy,
            r.unique_id,
            r.sentence,
            r.value,
            r.threshold,
            r.at,
        )
        for r in results
    ]
    frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    frame["at"] = pd.to_datetime(frame["at"])
    frame["value"] = frame["value"].astype("float64")
    frame["threshold"] = frame["threshold"].astype("float64")
    for i, (name, value) in enumerate(constants.items()):
        frame.insert(i, name, value)
    return frame


def severity_at_least(severity: str, minimum: str) -> bool:
    """True when ``severity`` is as bad as ``minimum`` or worse (info < warning < error)."""
    return _SEVERITY_RANK[severity] >= _SEVERITY_RANK[minimum]

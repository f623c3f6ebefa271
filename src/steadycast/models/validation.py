"""Validate what a model returned before the platform trusts it.

``validate_forecast`` is the boundary between model code and the platform: built-in or plugin,
a model's frame passes through it. It judges each series on its own, so one bad series never
discards the good ones: the valid series come back in canonical form, the invalid ones as a
human reason each, and the platform sends those down the fallback chain.

A series' output is valid when it has exactly ``task.horizon`` rows, one for each of the
``horizon`` steps after the series' last history timestamp at ``task.frequency``, with a finite
``yhat``; and, for each requested level whose columns the model returned, finite bounds with
``yhat_lo_L <= yhat <= yhat_hi_L`` (up to a relative 1e-6, clipped). A series whose bounds for a level are all missing (NaN) has
no interval at that level, which is allowed: models that declare ``intervals=False``, or that can
only give intervals for long enough histories, return none, and the platform supplies them.
Bounds missing for only some steps, or infinite, make the series invalid.

Rows whose ``unique_id`` is not in the history are dropped; they cannot be trusted for any
series, and the reason given for each missing series names them (a model that turned ``"007"``
into ``7`` shows up that way).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from steadycast.models.base import ForecastTask

REQUIRED = ("unique_id", "ds", "yhat")
#: Relative slack for interval ordering: libraries compute some bounds in float32, so a
#: zero-width interval can sit 1e-7 off the point forecast. Within the slack, bounds are clipped
#: to the forecast, so the canonical output is exactly ordered.
_ORDER_TOLERANCE = 1e-6


def interval_columns(levels: Iterable[int]) -> list[str]:
    """``yhat_lo_L, yhat_hi_L`` for each level, in that order."""
    return [f"yhat_{side}_{level}" for level in levels for side in ("lo", "hi")]


def canonical_columns(task: ForecastTask) -> list[str]:
    return [*REQUIRED, *interval_columns(task.levels)]


def empty_forecast(task: ForecastTask) -> pd.DataFrame:
    """A frame with no rows and the canonical columns and dtypes."""
    columns: dict[str, pd.Series] = {
        "unique_id": pd.Series(dtype=object),
        "ds": pd.Series(dtype="datetime64[ns]"),
        "yhat": pd.Series(dtype="float64"),
    }
    for column in interval_columns(task.levels):
        columns[column] = pd.Series(dtype="float64")
    return pd.DataFrame(columns)


def to_naive_utc(values: pd.Series) -> pd.Series:
    """Timestamps as ``datetime64[ns]`` without a zone, in UTC (aware values are converted).

    Only real timestamps are accepted (datetime64 columns, or Python datetimes): guessing the
    format of strings is ingest's job, not something to do silently to a model's output.
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
    if values.dtype.kind == "M":  # timestamps already: nothing to infer or parse
        return values.astype("datetime64[ns]")
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind not in ("datetime64", "datetime", "empty"):
        raise TypeError(f"holds {kind} values (dtype {values.dtype})")
    stamps = pd.to_datetime(values)
    if isinstance(stamps.dtype, pd.DatetimeTZDtype):
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return stamps.astype("datetime64[ns]")


def _fmt(stamp: pd.Timestamp) -> str:
    return str(stamp.isoformat(sep=" "))


def _fail_all(ids: npt.NDArray[Any], task: ForecastTask, reason: str) -> Validated:
    del task  # the empty frame is the same whatever was asked
    return Validated(pd.DataFrame(), {str(uid): reason for uid in ids}, np.zeros(0, np.int64))


def expected_timestamps(last: pd.Series, task: ForecastTask) -> pd.DataFrame:
    """``unique_id, ds, step`` for the ``horizon`` steps after each series' last timestamp."""
    offset = pd.tseries.frequencies.to_offset(task.frequency)
    ids = np.repeat(last.index.to_numpy(dtype=object), task.horizon)
    steps = np.tile(np.arange(1, task.horizon + 1), len(last))
    base = pd.DatetimeIndex(last.to_numpy(dtype="datetime64[ns]"))
    if isinstance(offset, pd.offsets.Tick):
        delta = pd.Timedelta(offset).to_timedelta64()
        stamps = np.repeat(base.to_numpy(), task.horizon) + steps * delta
    else:
        per_step = [base + k * offset for k in range(1, task.horizon + 1)]
        stamps = np.stack([s.to_numpy() for s in per_step], axis=1).reshape(-1)
    return pd.DataFrame({"unique_id": ids, "ds": pd.to_datetime(stamps), "step": steps})


def validate_forecast(
    frame: object, history: pd.DataFrame, task: ForecastTask, model_name: str
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Split a model's output into valid rows (canonical) and a reason per invalid series.

    Returns ``(valid, failures)``: ``valid`` has the columns ``unique_id`` (str), ``ds``
    (datetime64[ns], naive UTC), ``yhat`` and ``yhat_lo_L, yhat_hi_L`` for every level of the task
    (float64; NaN where the model gave no interval), ordered as the series appear in ``history``
    and by time; ``failures`` maps every history series whose output is invalid to a sentence
    saying why. Every history series is in exactly one of the two.
    """
    codes, ids = pd.factorize(history["unique_id"].astype(str).to_numpy(), sort=False)
    stamps = to_naive_utc(history["ds"]).to_numpy().view(np.int64)
    # NaT is the smallest int64, so it only wins a series that has nothing else.
    last = np.full(len(ids), np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last, codes, stamps)
    checked = validate_against(frame, ids, last.view("datetime64[ns]"), task, model_name)
    return checked.valid, checked.failures


@dataclass(frozen=True)
class Validated:
    """What :func:`validate_against` found: ``valid`` and ``failures`` as
    :func:`validate_forecast` returns them, and ``series``: for each valid row, the position of
    its series in the ``ids`` it was given."""

    valid: pd.DataFrame
    failures: dict[str, str]
    series: npt.NDArray[np.int64]


def validate_against(
    frame: object,
    ids: npt.NDArray[Any],
    last: npt.NDArray[np.datetime64],
    task: ForecastTask,
    model_name: str,
) -> Validated:
    """:func:`validate_forecast` when the caller already knows the history's series: ``ids``
    (str, unique, in history order) and each one's ``last`` timestamp (naive UTC).

    The platform's stages know both from their own arrays, so a model's output is checked
    without reading its whole history again.
    """
    ids = np.asarray(ids, dtype=object)
    who = f"model {model_name!r}"
    if not isinstance(frame, pd.DataFrame):
        return _fail_all(
            ids, task, f"{who} returned a {type(frame).__name__}, not a pandas DataFrame"
        )
    levels_given = _levels_given(frame, task, who)
    if isinstance(levels_given, str):
        return _fail_all(ids, task, levels_given)
    output = _read_output(frame, ids, levels_given, who)
    if isinstance(output, str):
        return _fail_all(ids, task, output)
    failures = _series_failures(output, ids, np.asarray(last, dtype="datetime64[ns]"), task, who)
    for level in levels_given:
        _check_interval(output.values, output.codes, ids, level, who, failures.add)
    return _canonical(output, ids, failures.reasons, task, levels_given)


def _levels_given(frame: pd.DataFrame, task: ForecastTask, who: str) -> list[int] | str:
    """The task's levels whose two bounds the frame has, or why the frame is unusable as a
    whole (a required column missing, or one bound of a level without the other)."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        return (
            f"{who} returned no column {', '.join(map(repr, missing))} "
            f"(columns: {', '.join(map(str, frame.columns))})"
        )
    levels_given: list[int] = []
    for level in task.levels:
        lo, hi = f"yhat_lo_{level}", f"yhat_hi_{level}"
        if (lo in frame.columns) != (hi in frame.columns):
            absent = hi if lo in frame.columns else lo
            return f"{who} returned one bound of the {level}% interval but no {absent!r}"
        if lo in frame.columns:
            levels_given.append(level)
    return levels_given


@dataclass(frozen=True)
class _Output:
    """A model's rows for known series, as arrays: each row's series (its position in ``ids``),
    timestamp and values (``yhat`` and the bounds given), plus the ids that were not known."""

    codes: npt.NDArray[np.intp]
    stamps: npt.NDArray[np.datetime64]
    values: dict[str, npt.NDArray[np.float64]]
    unknown_ids: list[Any]

    @property
    def ticks(self) -> npt.NDArray[np.int64]:
        return self.stamps.view(np.int64)


def _read_output(
    frame: pd.DataFrame, ids: npt.NDArray[Any], levels_given: list[int], who: str
) -> _Output | str:
    """The frame's rows as arrays, rows of unknown series dropped; or why ``ds`` is unusable."""
    out_ids = frame["unique_id"].astype(str).to_numpy(dtype=object)
    try:
        stamps = to_naive_utc(frame["ds"]).to_numpy()
    except (ValueError, TypeError, OverflowError) as exc:
        return f"{who} returned a 'ds' column that is not timestamps ({exc})"
    value_columns = ["yhat", *interval_columns(levels_given)]
    values = {
        column: pd.to_numeric(frame[column], errors="coerce").astype("float64").to_numpy()
        for column in value_columns
    }
    codes = pd.Index(ids).get_indexer(out_ids) if len(ids) else np.full(len(out_ids), -1)
    known = codes >= 0
    unknown_ids = list(dict.fromkeys(out_ids[~known]))
    if not known.all():
        codes, stamps = codes[known], stamps[known]
        values = {column: v[known] for column, v in values.items()}
    return _Output(codes, stamps, values, unknown_ids)


class _Failures:
    """Reasons per series id, in the order they were found."""

    def __init__(self) -> None:
        self.reasons: dict[str, list[str]] = {}

    def add(self, uid: str, reason: str) -> None:
        self.reasons.setdefault(uid, []).append(reason)


def _series_failures(
    output: _Output,
    ids: npt.NDArray[Any],
    last: npt.NDArray[np.datetime64],
    task: ForecastTask,
    who: str,
) -> _Failures:
    """The row-count, timestamp and ``yhat`` problems of each series (intervals come after)."""
    failures = _Failures()
    codes, stamps, ticks = output.codes, output.stamps, output.ticks
    counts = np.bincount(codes, minlength=len(ids))
    stray = ""
    if output.unknown_ids:
        unknown = output.unknown_ids
        shown = ", ".join(map(repr, unknown[:3])) + (", ..." if len(unknown) > 3 else "")
        stray = f" (the output has ids that are not in the history: {shown})"
    for code in np.flatnonzero(counts != task.horizon):
        count = int(counts[code])
        if count == 0:
            failures.add(str(ids[code]), f"missing from the output of {who}{stray}")
        else:
            failures.add(
                str(ids[code]),
                f"{who} returned {count} rows, expected {task.horizon} (the horizon)",
            )
    duplicated = _duplicated(codes, ticks)
    if duplicated.any():
        for uid_code, first in _first_by_series(codes, stamps, duplicated):
            reason = f"{who} returned duplicate timestamps, first {_fmt(first)}"
            failures.add(str(ids[uid_code]), reason)
    off_grid = ~_on_grid(codes, ticks, last, task)
    if off_grid.any():
        step = pd.tseries.frequencies.to_offset(task.frequency)
        for uid_code, first in _first_by_series(codes, stamps, off_grid):
            first_expected = pd.Timestamp(last[uid_code]) + step
            failures.add(
                str(ids[uid_code]),
                f"{who} returned timestamps off the forecast grid, first {_fmt(first)}; "
                f"expected {task.horizon} steps of {task.frequency} from {_fmt(first_expected)}",
            )
    for code in pd.unique(codes[~np.isfinite(output.values["yhat"])]):
        failures.add(str(ids[code]), f"{who} returned non-finite yhat (NaN or infinite)")
    return failures


def _canonical(
    output: _Output,
    ids: npt.NDArray[Any],
    failures: dict[str, list[str]],
    task: ForecastTask,
    levels_given: list[int],
) -> Validated:
    """The rows of the series without failures in canonical form, series in ``ids`` order and
    by time, bounds clipped to the forecast (within the order tolerance already checked)."""
    values, codes, ticks = dict(output.values), output.codes, output.ticks
    yhat = values["yhat"]
    for level in levels_given:
        lo, hi = f"yhat_lo_{level}", f"yhat_hi_{level}"
        values[lo] = np.where(np.isnan(values[lo]), np.nan, np.fmin(values[lo], yhat))
        values[hi] = np.where(np.isnan(values[hi]), np.nan, np.fmax(values[hi], yhat))
    bad = np.zeros(len(ids), dtype=bool)
    if failures:
        bad[pd.Index(ids).get_indexer(list(failures))] = True
    keep = np.flatnonzero(~bad[codes])
    order = keep[np.lexsort((ticks[keep], codes[keep]))]
    series = codes[order].astype(np.int64)
    columns: dict[str, Any] = {
        "unique_id": ids[series],
        "ds": output.stamps[order],
        "yhat": yhat[order],
    }
    for column in interval_columns(task.levels):
        columns[column] = values[column][order] if column in values else np.nan
    valid = pd.DataFrame(columns)[canonical_columns(task)]
    valid["unique_id"] = valid["unique_id"].astype(object)
    return Validated(valid, {uid: "; ".join(r) for uid, r in failures.items()}, series)


def _duplicated(codes: npt.NDArray[np.intp], ticks: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Rows whose (series, timestamp) appears more than once (every copy marked)."""
    out = np.zeros(len(codes), dtype=bool)
    if len(codes) < 2:
        return out
    order = np.lexsort((ticks, codes))
    same = (codes[order][1:] == codes[order][:-1]) & (ticks[order][1:] == ticks[order][:-1])
    out[order[1:][same]] = True
    out[order[:-1][same]] = True
    return out


def _first_by_series(
    codes: npt.NDArray[np.intp], stamps: npt.NDArray[Any], rows: npt.NDArray[np.bool_]
) -> list[tuple[int, pd.Timestamp]]:
    """For the series of the marked rows, in order of appearance: the earliest marked stamp."""
    first = pd.Series(stamps[rows]).groupby(codes[rows], sort=False).min()
    return [(int(code), stamp) for code, stamp in first.items()]


def _on_grid(
    codes: npt.NDArray[np.intp],
    ticks: npt.NDArray[np.int64],
    last: npt.NDArray[np.datetime64],
    task: ForecastTask,
) -> npt.NDArray[np.bool_]:
    """Whether each row's timestamp is one of the ``horizon`` steps after its series' last."""
    offset = pd.tseries.frequencies.to_offset(task.frequency)
    base = last.view(np.int64)[codes]
    nat = np.iinfo(np.int64).min
    if isinstance(offset, pd.offsets.Tick) and pd.Timedelta(offset).value > 0:
        delta = int(pd.Timedelta(offset).value)
        gap = ticks - base
        steps, rest = np.divmod(gap, delta)
        on = (rest == 0) & (steps >= 1) & (steps <= task.horizon)
        # A series whose history has no timestamp expects NaT, which only NaT matches.
        found: npt.NDArray[np.bool_] = np.where(base == nat, ticks == nat, on & (ticks != nat))
        return found
    expected = expected_timestamps(pd.Series(last, index=np.arange(len(last))), task)
    grid = pd.DataFrame(
        {"code": expected["unique_id"].to_numpy(dtype=np.int64), "tick": expected["ds"]}
    )
    grid["tick"] = grid["tick"].to_numpy().view(np.int64)
    rows = pd.DataFrame({"code": codes.astype(np.int64), "tick": ticks})
    matched = rows.merge(grid.drop_duplicates(), on=["code", "tick"], how="left", indicator=True)
    return np.asarray(matched["_merge"].to_numpy() == "both")


def _check_interval(
    values: dict[str, npt.NDArray[np.float64]],
    codes: npt.NDArray[np.intp],
    ids: npt.NDArray[Any],
    level: int,
    who: str,
    report: Callable[[str, str], None],
) -> None:
    lo = values[f"yhat_lo_{level}"]
    hi = values[f"yhat_hi_{level}"]
    yhat = values["yhat"]
    absent = np.isnan(lo) & np.isnan(hi)
    broken = ~absent & ~(np.isfinite(lo) & np.isfinite(hi))
    # A series may have no interval at all (every bound NaN), not an interval with holes.
    n_absent = np.bincount(codes, weights=absent, minlength=len(ids))
    n_rows = np.bincount(codes, minlength=len(ids))
    partly = (n_absent > 0) & (n_absent < n_rows)
    in_order = pd.unique(codes)
    for code in dict.fromkeys([*pd.unique(codes[broken]), *in_order[partly[in_order]]]):
        report(
            str(ids[code]), f"{who} returned non-finite or partly missing {level}% interval bounds"
        )
    slack = _ORDER_TOLERANCE * np.maximum(1.0, np.abs(yhat))
    with np.errstate(invalid="ignore"):
        below = lo > yhat + slack
        above = yhat > hi + slack
    for mask, what in ((below, f"yhat_lo_{level} > yhat"), (above, f"yhat > yhat_hi_{level}")):
        for code in pd.unique(codes[mask]):
            report(
                str(ids[code]),
                f"{who} returned {what} (the {level}% interval does not contain the forecast)",
            )

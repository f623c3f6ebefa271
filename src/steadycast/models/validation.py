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

import numpy as np
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
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind not in ("datetime64", "datetime", "empty"):
        raise TypeError(f"holds {kind} values (dtype {values.dtype})")
    stamps = pd.to_datetime(values)
    if isinstance(stamps.dtype, pd.DatetimeTZDtype):
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return stamps.astype("datetime64[ns]")


def _fmt(stamp: pd.Timestamp) -> str:
    return str(stamp.isoformat(sep=" "))


def _fail_all(ids: list[str], reason: str) -> tuple[pd.DataFrame, dict[str, str]]:
    return pd.DataFrame(), {uid: reason for uid in ids}


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
    history_ids = history["unique_id"].astype(str)
    ids = list(dict.fromkeys(history_ids))
    who = f"model {model_name!r}"
    if not isinstance(frame, pd.DataFrame):
        return _fail_all(ids, f"{who} returned a {type(frame).__name__}, not a pandas DataFrame")
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        return _fail_all(
            ids,
            f"{who} returned no column {', '.join(map(repr, missing))} "
            f"(columns: {', '.join(map(str, frame.columns))})",
        )
    levels_given: list[int] = []
    for level in task.levels:
        lo, hi = f"yhat_lo_{level}", f"yhat_hi_{level}"
        if (lo in frame.columns) != (hi in frame.columns):
            absent = hi if lo in frame.columns else lo
            return _fail_all(
                ids, f"{who} returned one bound of the {level}% interval but no {absent!r}"
            )
        if lo in frame.columns:
            levels_given.append(level)

    out = pd.DataFrame({"unique_id": frame["unique_id"].astype(str)})
    try:
        out["ds"] = to_naive_utc(frame["ds"]).to_numpy()
    except (ValueError, TypeError, OverflowError) as exc:
        return _fail_all(ids, f"{who} returned a 'ds' column that is not timestamps ({exc})")
    value_columns = ["yhat", *interval_columns(levels_given)]
    for column in value_columns:
        out[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64").to_numpy()

    last = pd.Series(to_naive_utc(history["ds"]).to_numpy(), index=history_ids.to_numpy())
    last = last.groupby(level=0, sort=False).max().reindex(ids)
    known = out["unique_id"].isin(last.index)
    unknown_ids = list(dict.fromkeys(out.loc[~known, "unique_id"]))
    out = out[known.to_numpy()]

    failures: dict[str, list[str]] = {}

    def fail(uid: str, reason: str) -> None:
        failures.setdefault(uid, []).append(reason)

    counts = out["unique_id"].value_counts().reindex(ids, fill_value=0)
    stray = ""
    if unknown_ids:
        shown = ", ".join(map(repr, unknown_ids[:3])) + (", ..." if len(unknown_ids) > 3 else "")
        stray = f" (the output has ids that are not in the history: {shown})"
    for uid, count in counts[counts != task.horizon].items():
        if count == 0:
            fail(str(uid), f"missing from the output of {who}{stray}")
        else:
            fail(str(uid), f"{who} returned {count} rows, expected {task.horizon} (the horizon)")

    duplicated = out.duplicated(["unique_id", "ds"], keep=False)
    for uid, group in out[duplicated.to_numpy()].groupby("unique_id", sort=False):
        fail(str(uid), f"{who} returned duplicate timestamps, first {_fmt(group['ds'].min())}")

    expected = expected_timestamps(last, task)
    merged = out.merge(expected, on=["unique_id", "ds"], how="left")
    off_grid = merged[merged["step"].isna()]
    for uid, group in off_grid.groupby("unique_id", sort=False):
        first_expected = last[uid] + pd.tseries.frequencies.to_offset(task.frequency)
        fail(
            str(uid),
            f"{who} returned timestamps off the forecast grid, first {_fmt(group['ds'].min())}; "
            f"expected {task.horizon} steps of {task.frequency} from {_fmt(first_expected)}",
        )

    nonfinite = ~np.isfinite(out["yhat"].to_numpy())
    for uid in out.loc[nonfinite, "unique_id"].unique():
        fail(str(uid), f"{who} returned non-finite yhat (NaN or infinite)")
    for level in levels_given:
        _check_interval(out, level, who, fail)

    for level in levels_given:
        lo, hi = f"yhat_lo_{level}", f"yhat_hi_{level}"
        out[lo] = np.fmin(out[lo], out["yhat"]).where(out[lo].notna())
        out[hi] = np.fmax(out[hi], out["yhat"]).where(out[hi].notna())

    valid_ids = [uid for uid in ids if uid not in failures]
    valid = out[out["unique_id"].isin(valid_ids)].copy()
    order = {uid: i for i, uid in enumerate(ids)}
    valid["_order"] = valid["unique_id"].map(order)
    valid = valid.sort_values(["_order", "ds"], kind="stable").drop(columns="_order")
    for column in interval_columns(task.levels):
        if column not in valid.columns:
            valid[column] = np.nan
    valid = valid[canonical_columns(task)].reset_index(drop=True)
    valid["unique_id"] = valid["unique_id"].astype(object)
    return valid, {uid: "; ".join(reasons) for uid, reasons in failures.items()}


def _check_interval(
    out: pd.DataFrame, level: int, who: str, report: Callable[[str, str], None]
) -> None:
    lo = out[f"yhat_lo_{level}"].to_numpy()
    hi = out[f"yhat_hi_{level}"].to_numpy()
    yhat = out["yhat"].to_numpy()
    ids = out["unique_id"].to_numpy()
    absent = np.isnan(lo) & np.isnan(hi)
    broken = ~absent & ~(np.isfinite(lo) & np.isfinite(hi))
    # A series may have no interval at all (every bound NaN), not an interval with holes.
    absent_rows = pd.Series(absent).groupby(ids, sort=False).agg(["sum", "size"])
    partly = absent_rows.index[
        (absent_rows["sum"] > 0) & (absent_rows["sum"] < absent_rows["size"])
    ]
    for uid in dict.fromkeys([*pd.unique(ids[broken]), *partly]):
        report(str(uid), f"{who} returned non-finite or partly missing {level}% interval bounds")
    slack = _ORDER_TOLERANCE * np.maximum(1.0, np.abs(yhat))
    with np.errstate(invalid="ignore"):
        below = lo > yhat + slack
        above = yhat > hi + slack
    for mask, what in ((below, f"yhat_lo_{level} > yhat"), (above, f"yhat > yhat_hi_{level}")):
        for uid in pd.unique(ids[mask]):
            report(
                str(uid),
                f"{who} returned {what} (the {level}% interval does not contain the forecast)",
            )

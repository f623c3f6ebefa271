"""One call, one answer: ``steadycast.forecast(df, freq=..., h=...)`` without a workspace.

The whole job runs underneath, as it would in a workspace: a temporary one is made, the frame
is ingested (the same row checks and quarantine), the pipeline runs (checks, the default pool
of the frequency, backtest and selection, forecast, gate) and its release is read back; the
workspace is removed before the call returns. What a workspace would record is not lost to the
caller: rows left out raise a warning and are counted in ``frame.attrs``, a run the gate holds
raises (its forecasts did not pass), and ``details=True`` returns the rejected rows, each
series' provenance and the backtest scores beside the forecasts. (``attrs`` stays small:
pandas copies it with every operation on the frame.)
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import pandas as pd

from steadycast.errors import SteadycastError, UsageError
from steadycast.frames import read_forecast, read_scores
from steadycast.ingestion.batch import ingest, quarantined
from steadycast.pipeline.run import run_pipeline
from steadycast.workspace import Workspace

PIPELINE = "forecast"
EXPORT_FIRST = ("unique_id", "ds", "yhat", "model")


class RejectedRowsWarning(UserWarning):
    """Rows of the frame were quarantined (left out of the forecast) with a reason."""


@dataclass(frozen=True)
class QuickForecast:
    """``forecast(..., details=True)``: the forecasts and what the run recorded about them."""

    forecasts: pd.DataFrame  # what ``forecast`` returns
    provenance: pd.DataFrame  # per series: model, source (selected or which fallback), why
    scores: pd.DataFrame  # the backtest: unique_id, model, window, status, metric, value
    quarantine: pd.DataFrame  # rows left out: row (position in the frame), reason, detail, raw
    run: dict[str, Any]  # the ``steadycast run --json`` document: gate, stages


def calendar_seasons(freq: str) -> list[int]:
    """The seasons a frequency usually has, in steps: a day and a week below a day, a week for
    daily data, a year for weekly, monthly and quarterly data; none otherwise."""
    try:
        with warnings.catch_warnings():  # an old alias ("M") still names its frequency
            warnings.simplefilter("ignore")
            offset = pd.tseries.frequencies.to_offset(freq)
    except (ValueError, TypeError):
        raise UsageError(
            f"forecast: freq {freq!r} is not a frequency; use a pandas offset alias such as "
            "30min, 1h, 1D"
        ) from None
    name = offset.name.split("-")[0]
    step: pd.Timedelta | None
    try:
        step = pd.Timedelta(offset)
    except ValueError:
        step = None
    day = pd.Timedelta("1D")
    if step is not None and step < day:
        per_day = day // step
        return [int(per_day), int(7 * per_day)] if day % step == pd.Timedelta(0) else []
    if step == day:
        return [7]
    if name.startswith("W"):
        return [52] if offset.n == 1 else []
    if name in ("M", "ME", "MS", "BM", "BME", "BMS"):
        return [12 // offset.n] if 12 % offset.n == 0 and offset.n < 12 else []
    if name.startswith(("Q", "BQ")):
        return [4] if offset.n == 1 else []
    return []


def _pipeline_toml(
    *,
    freq: str,
    h: int,
    seasons: Sequence[int],
    levels: Sequence[int],
    id_col: str,
    time_col: str,
    target_col: str,
    timezone: str,
    models: Sequence[str] | None,
) -> str:
    """The pipeline file of the temporary workspace (JSON strings are TOML basic strings)."""
    q = json.dumps
    lines = [
        "[source]",
        f"id_column = {q(id_col)}",
        f"time_column = {q(time_col)}",
        f"value_column = {q(target_col)}",
        f"timezone = {q(timezone)}",
        "",
        "[series]",
        f"frequency = {q(freq)}",
        f"horizon = {int(h)}",
        f"season_lengths = {q([int(s) for s in seasons])}",
        "",
        "[models]",
        f"levels = {q([int(v) for v in levels])}",
    ]
    if models is not None:
        lines.append(f"candidates = {q(list(models))}")
    return "\n".join(lines) + "\n"


@overload
def forecast(
    df: Any,
    *,
    freq: str,
    h: int,
    season_lengths: Sequence[int] | None = ...,
    levels: Sequence[int] = ...,
    id_col: str = ...,
    time_col: str = ...,
    target_col: str = ...,
    timezone: str = ...,
    models: Sequence[str] | None = ...,
    details: Literal[False] = ...,
) -> pd.DataFrame: ...


@overload
def forecast(
    df: Any,
    *,
    freq: str,
    h: int,
    season_lengths: Sequence[int] | None = ...,
    levels: Sequence[int] = ...,
    id_col: str = ...,
    time_col: str = ...,
    target_col: str = ...,
    timezone: str = ...,
    models: Sequence[str] | None = ...,
    details: Literal[True],
) -> QuickForecast: ...


def forecast(
    df: Any,
    *,
    freq: str,
    h: int,
    season_lengths: Sequence[int] | None = None,
    levels: Sequence[int] = (80, 95),
    id_col: str = "unique_id",
    time_col: str = "ds",
    target_col: str = "y",
    timezone: str = "UTC",
    models: Sequence[str] | None = None,
    details: bool = False,
) -> pd.DataFrame | QuickForecast:
    """Forecast ``h`` steps of every series of ``df`` (long: ``unique_id, ds, y``) in one call.

    Returns ``unique_id, ds, yhat, model, yhat_lo_L, yhat_hi_L`` per level (the id and time
    columns keep the names given): the model chosen per series by backtest, with its
    intervals; ``ds`` in UTC (in the input's zone if its times carry one). ``attrs`` holds the
    run's id, its gate and the count of rows left out. Rows left out (quarantined, with a
    reason) raise a ``RejectedRowsWarning``; a run the gate holds raises ``SteadycastError``
    naming the failed checks. ``details=True`` returns a ``QuickForecast``: the forecasts with
    each series' provenance, the backtest scores and the rejected rows (by position in ``df``).

    ``season_lengths`` None: the calendar's seasons of ``freq`` (24 and 168 for hourly data);
    ``models`` None: the default pool of the frequency.
    """
    if not isinstance(h, int) or isinstance(h, bool) or h < 1:
        raise UsageError(f"forecast: h must be a whole number of steps >= 1 (got {h!r})")
    seasons = calendar_seasons(freq) if season_lengths is None else list(season_lengths)
    text = _pipeline_toml(
        freq=freq,
        h=h,
        seasons=seasons,
        levels=levels,
        id_col=id_col,
        time_col=time_col,
        target_col=target_col,
        timezone=timezone,
        models=models,
    )
    with tempfile.TemporaryDirectory(prefix="steadycast-", ignore_cleanup_errors=True) as tmp:
        ws = Workspace.init(Path(tmp))
        (ws.pipelines_dir / f"{PIPELINE}.toml").write_text(text, encoding="utf-8")
        [batch] = ingest(ws, PIPELINE, df)
        rejected = _rejected(ws)
        if batch.rows_quarantined:
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(batch.quarantine_reasons.items()))
            rows = ", ".join(str(r) for r in rejected["row"].head(5))
            warnings.warn(
                f"{batch.rows_quarantined} of {batch.rows_read} rows were left out ({reasons}); "
                f"rows {rows}{', ...' if len(rejected) > 5 else ''} of the frame; "
                "details=True returns each with its reason",
                RejectedRowsWarning,
                stacklevel=2,
            )
        run = run_pipeline(ws, PIPELINE)
        doc = run.as_dict()
        if run.status != "published":
            raise _not_published(doc, run.error)
        frame = read_forecast(ws, PIPELINE)
        scores = read_scores(ws, PIPELINE, run.run_id)
    out, provenance = _shaped(frame, df, id_col, time_col)
    out.attrs = {
        "run_id": run.run_id,
        "release_id": run.release_id,
        "rows_read": batch.rows_read,
        "rows_rejected": batch.rows_quarantined,
        "quarantine_reasons": dict(batch.quarantine_reasons),
        "gate": doc["gate"],
    }
    if not details:
        return out
    return QuickForecast(out, provenance, scores, rejected, doc)


def _rejected(ws: Workspace) -> pd.DataFrame:
    """The quarantined rows of the frame: ``row`` is the position in it (``df.iloc[row]``)."""
    found = pd.DataFrame(
        quarantined(ws, PIPELINE),
        columns=["batch_id", "file", "line", "reason", "detail", "unique_id", "raw"],
    )
    found = found.rename(columns={"line": "row"}).drop(columns=["batch_id", "file"])
    return found.sort_values("row", ignore_index=True)


def _not_published(run: dict[str, Any], error: str | None) -> SteadycastError:
    """The error of a run that published nothing, naming the failed gate checks."""
    failed = [g for g in run.get("gate", []) if not g.get("passed")]
    if run["status"] == "held":
        shown = "; ".join(f"{g['check']}: {g.get('detail', '')}" for g in failed) or "see run"
        exc = SteadycastError(
            f"the forecast was held by the gate, so it is not returned ({shown}); check the "
            "input (gaps, spikes, too short a history for h) or forecast fewer steps"
        )
    else:
        exc = SteadycastError(f"the forecast failed: {error or 'see the run record'}")
    exc.add_note(f"run: {json.dumps(run, default=str)[:2000]}")
    return exc


def _shaped(
    frame: pd.DataFrame, df: Any, id_col: str, time_col: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The export columns under the caller's column names, and the provenance per series."""
    intervals = [c for c in frame.columns if c.startswith(("yhat_lo_", "yhat_hi_"))]
    out = frame[[*EXPORT_FIRST, *intervals]].copy()
    provenance = (
        frame.drop(columns=["ds", "yhat", *intervals])
        .drop_duplicates("unique_id")
        .reset_index(drop=True)
    )
    if isinstance(df, pd.DataFrame) and time_col in df.columns:
        zone = getattr(df[time_col].dtype, "tz", None)
        if zone is not None:  # an aware input gets aware times back, in its zone
            out["ds"] = out["ds"].dt.tz_localize("UTC").dt.tz_convert(zone)
    out = out.rename(columns={"unique_id": id_col, "ds": time_col})
    out.attrs = {}
    return out, provenance

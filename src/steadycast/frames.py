"""Releases and backtest scores as DataFrames, for notebooks and services.

A thin layer over what the workspace already keeps: releases are read by ``storage.releases``
(the current one through ``storage.export``, as ``steadycast forecast`` reads it), scores from
the store's ``backtest_scores`` table. Nothing here computes; it joins what was recorded, so a
frame says where each forecast came from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from steadycast.errors import NotFoundError
from steadycast.storage import control, releases, store
from steadycast.storage.export import current_forecast
from steadycast.workspace import Workspace

PROVENANCE = "provenance.parquet"  # beside a release's forecasts (pipeline/publish.py)
SCORE_COLUMNS = ["run_id", "unique_id", "model", "window", "cutoff", "status", "metric", "value"]


def workspace_of(ws: Workspace | str | os.PathLike[str]) -> Workspace:
    """A workspace, or the folder of one (a notebook passes a path)."""
    return ws if isinstance(ws, Workspace) else Workspace.open(Path(ws))


def read_forecast(
    ws: Workspace | str | os.PathLike[str],
    pipeline: str,
    release: str | None = None,
    *,
    series: list[str] | None = None,
) -> pd.DataFrame:
    """The forecasts of the current release (or of ``release``) with their provenance.

    Columns: the export's ``unique_id, ds, yhat, model, yhat_lo_L, yhat_hi_L`` (``ds`` in UTC,
    without a zone, as stored), then each series' provenance (``source``: selected or which
    fallback, ``fallback_reason``, ``selection_reason``, ``backtest_score``...), then
    ``release_id`` and ``run_id``. ``frame.attrs`` holds the release's manifest.
    """
    ws = workspace_of(ws)
    if release is None:
        release_id, frame = current_forecast(ws, pipeline, series)
        found = releases.read_release(ws.releases_dir, pipeline, release_id)
    else:
        ws.pipeline(pipeline)
        found = releases.read_release(ws.releases_dir, pipeline, release)
        frame = releases.read_forecasts(found, series)
        missing = sorted(set(series or ()) - set(frame["unique_id"]))
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5])
            raise NotFoundError(f"no series {shown} in release {release} of {pipeline!r}")
    provenance = found.path / PROVENANCE
    if provenance.exists():
        why = pd.read_parquet(provenance).drop(columns=["model"], errors="ignore")
        frame = frame.merge(why, on="unique_id", how="left", validate="many_to_one")
    frame["release_id"] = found.release_id
    frame["run_id"] = str(found.manifest.get("run_id", found.release_id))
    frame.attrs["manifest"] = dict(found.manifest)
    frame.attrs["release_id"] = found.release_id
    return frame


def read_scores(
    ws: Workspace | str | os.PathLike[str], pipeline: str, run: str | None = None
) -> pd.DataFrame:
    """The backtest scores of a run (default: the latest run that recorded scores), long:
    ``run_id, unique_id, model, window, cutoff, status, metric, value``, one row per series,
    model, rolling origin and metric (``metric`` is mase, smape, rmsse or coverage_L;
    ``cutoff`` the last time, UTC, the window's model saw; empty for runs stored before it
    was recorded)."""
    ws = workspace_of(ws)
    ws.pipeline(pipeline)
    if run is None:
        run = _latest_scored_run(ws, pipeline)
    with store.reading(ws.store_path) as con:
        frame = con.execute(
            'SELECT run_id, unique_id, model, "window", cutoff, status, metric, value '
            "FROM backtest_scores WHERE pipeline = ? AND run_id = ? "
            'ORDER BY unique_id, model, "window", metric',
            [pipeline, run],
        ).fetchdf()
    if frame.empty:
        raise NotFoundError(
            f"run {run!r} of pipeline {pipeline!r} recorded no backtest scores; "
            f"`steadycast runs {pipeline}` lists its runs"
        )
    return frame[SCORE_COLUMNS]


def _latest_scored_run(ws: Workspace, pipeline: str) -> str:
    with store.reading(ws.store_path) as con:
        scored = {
            str(r[0])
            for r in con.execute(
                "SELECT DISTINCT run_id FROM backtest_scores WHERE pipeline = ?", [pipeline]
            ).fetchall()
        }
    if scored:
        with control.connect(ws.control_path) as con:
            ordered: list[Any] = con.execute(
                "SELECT run_id FROM runs WHERE pipeline = ? ORDER BY started_at DESC", [pipeline]
            ).fetchall()
        for (run_id,) in ordered:
            if run_id in scored:
                return str(run_id)
        return max(scored)
    raise NotFoundError(
        f"pipeline {pipeline!r} has no backtest scores yet; run `steadycast run {pipeline}`"
    )
